// Emulator self-test kernels (compiled with NVRTC 12.4, --gpu-architecture=compute_80).
// Regenerate features.ptx with tests/ptx/gen_ptx.py.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// Data-dependent loops, nested branches and early return.
extern "C" __global__ void divergence(const int* __restrict__ in, int* __restrict__ out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int v = in[i];
  int acc = 0;
  if (v % 3 == 0) {
    for (int k = 0; k < (v & 15); ++k) acc += k * v;
    if (acc > 100) { out[i] = -acc; return; }
  } else if (v % 3 == 1) {
    int k = v;
    while (k > 1) { k = (k & 1) ? 3 * k + 1 : k >> 1; acc++; }
  } else {
    acc = v * v - 7;
  }
  out[i] = acc;
}

// After divergent work, a full-warp shuffle reduction must see every lane.
extern "C" __global__ void reconverge_shfl(const float* __restrict__ in, float* __restrict__ out) {
  int t = threadIdx.x, lane = t & 31;
  float x = in[blockIdx.x * blockDim.x + t];
  if (lane % 3 == 0) x = x * 2.f;
  else if (lane % 3 == 1) { for (int k = 0; k < lane; ++k) x += 0.5f; }
  else x = -x;
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  float up = __shfl_up_sync(0xffffffffu, x + lane, 3);
  float dn = __shfl_down_sync(0xffffffffu, x + lane, 5, 16);   // width 16 segments
  float ix = __shfl_sync(0xffffffffu, (float)lane, (lane * 7) & 31, 8);
  int o = (blockIdx.x * blockDim.x + t) * 4;
  out[o] = x; out[o + 1] = up; out[o + 2] = dn; out[o + 3] = ix;
}

extern "C" __global__ void vote_ballot(const int* __restrict__ in, unsigned* __restrict__ out) {
  int t = threadIdx.x, lane = t & 31;
  int v = in[t];
  unsigned b = __ballot_sync(0xffffffffu, v > 0);
  int any = __any_sync(0xffffffffu, v > 100);
  int all = __all_sync(0xffffffffu, v > -1000);
  unsigned am = 0;
  if (lane & 1) am = __activemask();
  out[t * 4] = b; out[t * 4 + 1] = any; out[t * 4 + 2] = all; out[t * 4 + 3] = am;
}

struct Pair { float a; int b; };
__device__ __noinline__ Pair helper(float x, int y, const float* p) {
  Pair r;
  if (y & 1) { r.a = x * p[y & 7]; r.b = y * 3; return r; }
  r.a = x + 1.f; r.b = -y;
  return r;
}
extern "C" __global__ void func_call(const float* __restrict__ p, float* __restrict__ out) {
  int t = threadIdx.x;
  Pair r = helper((float)t, t, p);
  out[t] = r.a + (float)r.b;
}

extern "C" __global__ void local_array(const int* __restrict__ idx, float* __restrict__ out) {
  float arr[16];
  int t = threadIdx.x;
  for (int k = 0; k < 16; ++k) arr[k] = (float)(k * t);
  int j = idx[t] & 15;
  arr[j] += 100.f;
  out[t] = arr[idx[t] & 15] + arr[(j + 5) & 15];
}

extern "C" __global__ void dyn_smem(const float* __restrict__ in, float* __restrict__ out, int n) {
  extern __shared__ float buf[];
  int t = threadIdx.x;
  buf[t] = in[blockIdx.x * n + t];
  __syncthreads();
  out[blockIdx.x * n + t] = buf[n - 1 - t];
}

extern "C" __global__ void atomics(const int* __restrict__ in, float* __restrict__ fsum, int* __restrict__ imax,
                                   unsigned* __restrict__ hist, int* __restrict__ casctr) {
  __shared__ unsigned sh[8];
  int t = threadIdx.x;
  if (t < 8) sh[t] = 0;
  __syncthreads();
  int v = in[blockIdx.x * blockDim.x + t];
  atomicAdd(fsum, (float)(v & 255) * 0.5f);
  atomicMax(imax, v);
  atomicAdd(&sh[v & 7], 1u);
  int old = *((volatile int*)casctr), assumed;
  do { assumed = old; old = atomicCAS(casctr, assumed, assumed + 2); } while (old != assumed);
  __syncthreads();
  if (t < 8) atomicAdd(&hist[t], sh[t]);
}

extern "C" __global__ void math_fns(const float* __restrict__ in, float* __restrict__ out) {
  int t = threadIdx.x;
  float x = in[t];
  float* o = out + t * 12;
  o[0] = __expf(x);
  o[1] = __logf(fabsf(x) + 0.5f);
  o[2] = __sinf(x);
  o[3] = __cosf(x);
  o[4] = rsqrtf(fabsf(x) + 0.1f);
  o[5] = sqrtf(fabsf(x));
  o[6] = x / (x * x + 1.f);
  o[7] = expf(x);
  o[8] = tanhf(x);
  o[9] = __fdividef(1.f, x + 3.f);
  float th; asm("tanh.approx.f32 %0, %1;" : "=f"(th) : "f"(x)); o[10] = th;
  o[11] = erff(x);
}

extern "C" __global__ void conversions(const float* __restrict__ in, unsigned* __restrict__ out) {
  int t = threadIdx.x;
  float x = in[t];
  unsigned* o = out + t * 10;
  o[0] = (unsigned)__float2int_rn(x);
  o[1] = (unsigned)__float2int_rz(x);
  o[2] = (unsigned)__float2int_rd(x);
  o[3] = (unsigned)__float2int_ru(x);
  o[4] = __bfloat16_as_ushort(__float2bfloat16_rn(x));
  o[5] = __half_as_ushort(__float2half_rn(x));
  o[6] = __half_as_ushort(__float2half_rz(x));
  o[7] = __float2uint_rn(x);
  __nv_bfloat162 p = __floats2bfloat162_rn(x, -x);
  o[8] = *(unsigned*)&p;
  o[9] = (unsigned)(int)(signed char)(int)(x * 10.f);
}

// Shared-memory tree reduction; the racy variant drops the __syncthreads() between levels.
extern "C" __global__ void block_sum(const float* __restrict__ in, float* __restrict__ out) {
  __shared__ float s[256];
  int t = threadIdx.x;
  s[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (t < h) s[t] += s[t + h];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}
extern "C" __global__ void block_sum_racy(const float* __restrict__ in, float* __restrict__ out) {
  __shared__ float s[256];
  int t = threadIdx.x;
  s[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (t < h) s[t] += s[t + h];
  }
  if (t == 0) out[blockIdx.x] = s[0];
}
