// Kernels for the stand-in driver tests (tools/ptx-emu-driver/tests, tests/emu_driver.rs).
// One correct kernel per feature the driver wires up, and one broken kernel per fault class.
// PTX: tools/ptx-emu-driver/tests/ptx/driver_test_kernels.ptx (tests/gen_ptx.py, NVRTC compute_80).

// ------------------------------------------------------------------------------------------------
// correct kernels

// out[i] = alpha * a[i] + b[i]
extern "C" __global__ void axpy_f32(const float* a, const float* b, float* out, float alpha, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = alpha * a[i] + b[i];
}

// One partial sum per block via a shared-memory tree (blockDim.x must be 256).
extern "C" __global__ void block_sum_f32(const float* x, float* partial, int n) {
    __shared__ float s[256];
    int t = threadIdx.x;
    int i = blockIdx.x * 256 + t;
    s[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if (t < w) s[t] += s[t + w];
        __syncthreads();
    }
    if (t == 0) partial[blockIdx.x] = s[0];
}

// Module-scope variable set from the host through cuModuleGetGlobal.
__device__ float g_scale;

// x[i] *= g_scale
extern "C" __global__ void scale_by_global_f32(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= g_scale;
}

// Dynamic shared memory: reverse each block's chunk through extern smem.
extern "C" __global__ void reverse_block_f32(const float* x, float* out) {
    extern __shared__ float buf[];
    int t = threadIdx.x;
    int base = blockIdx.x * blockDim.x;
    buf[t] = x[base + t];
    __syncthreads();
    out[base + t] = buf[blockDim.x - 1 - t];
}

// ------------------------------------------------------------------------------------------------
// broken kernels (each must fault in the emulator)

// Out-of-bounds: writes n floats past the end of an n-float buffer -> 700.
extern "C" __global__ void oob_write_f32(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i + n] = 1.0f;
}

// Shared-memory race: after a barrier every thread rewrites s[t] and reads s[t ^ 32] (a slot of
// the other warp) with no barrier in between (launch with 64 threads) -> 719.
extern "C" __global__ void smem_race_f32(float* out) {
    volatile __shared__ float s[64];
    int t = threadIdx.x;
    s[t] = (float)t;
    __syncthreads();
    s[t] = (float)(2 * t);
    out[t] = s[t ^ 32];
}

// Barrier divergence: odd threads wait at an extra __syncthreads that even threads skip -> 719.
extern "C" __global__ void barrier_divergence_f32(float* out) {
    __shared__ float s[64];
    int t = threadIdx.x;
    s[t] = (float)t;
    if (t & 1) __syncthreads();
    __syncthreads();
    out[t] = s[t ^ 1];
}

// Uninitialised shared read: s[] is read without ever being written -> 719.
extern "C" __global__ void uninit_smem_f32(float* out) {
    __shared__ float s[64];
    out[threadIdx.x] = s[threadIdx.x];
}
