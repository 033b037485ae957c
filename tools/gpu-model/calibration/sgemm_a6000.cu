// Calibration series 1: the SGEMM steps of Simon Boehm, "How to Optimize a CUDA Matmul Kernel for
// cuBLAS-like Performance: a Worklog" (2022), written here from the post's descriptions.
// C = alpha*A*B + beta*C, row-major, M = N = K = 4096 in the post (published GFLOP/s on an RTX
// A6000). Bounds checks are omitted where the post omits them (dimensions are tile multiples).
// The profiler's calibration test (tools/gpu-model) derives each step's counters from the same
// index arithmetic; docs/profiling.md has the table.

// Step 1: naive. One thread per C element, threadIdx.x walks rows: a warp reads 32 rows of A
// (uncoalesced) and one element of B (broadcast).
extern "C" __global__ void sgemm1_naive(int M, int N, int K, float alpha, const float *A,
                                        const float *B, float beta, float *C) {
    const unsigned x = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x < M && y < N) {
        float acc = 0.f;
        for (int i = 0; i < K; ++i) acc += A[x * K + i] * B[i * N + y];
        C[x * N + y] = alpha * acc + beta * C[x * N + y];
    }
}

// Step 2: global-memory coalescing. 1024-thread blocks, consecutive threads take consecutive
// columns: B reads coalesce, A reads broadcast.
extern "C" __global__ void sgemm2_coalesce(int M, int N, int K, float alpha, const float *A,
                                           const float *B, float beta, float *C) {
    const int T = 32;
    const unsigned row = blockIdx.x * T + threadIdx.x / T;
    const unsigned col = blockIdx.y * T + threadIdx.x % T;
    if (row < M && col < N) {
        float acc = 0.f;
        for (int i = 0; i < K; ++i) acc += A[row * K + i] * B[i * N + col];
        C[row * N + col] = alpha * acc + beta * C[row * N + col];
    }
}

// Step 3: shared-memory cache blocking, 32x32 tiles of A and B staged through shared memory.
extern "C" __global__ void sgemm3_smem(int M, int N, int K, float alpha, const float *A,
                                       const float *B, float beta, float *C) {
    const int T = 32;
    __shared__ float As[T * T];
    __shared__ float Bs[T * T];
    const int tr = threadIdx.x / T, tc = threadIdx.x % T;
    A += blockIdx.x * T * K;
    B += blockIdx.y * T;
    C += blockIdx.x * T * N + blockIdx.y * T;
    float acc = 0.f;
    for (int k0 = 0; k0 < K; k0 += T) {
        As[tr * T + tc] = A[tr * K + tc];
        Bs[tr * T + tc] = B[tr * N + tc];
        __syncthreads();
        A += T;
        B += T * N;
        for (int d = 0; d < T; ++d) acc += As[tr * T + d] * Bs[d * T + tc];
        __syncthreads();
    }
    C[tr * N + tc] = alpha * acc + beta * C[tr * N + tc];
}

// Step 4: 1D block tiling. BM = BN = 64, BK = 8, each thread computes TM = 8 results of a column.
extern "C" __global__ void sgemm4_1d(int M, int N, int K, float alpha, const float *A,
                                     const float *B, float beta, float *C) {
    const int BM = 64, BN = 64, BK = 8, TM = 8;
    __shared__ float As[BM * BK];
    __shared__ float Bs[BK * BN];
    const int tc = threadIdx.x % BN, tr = threadIdx.x / BN;
    A += blockIdx.y * BM * K;
    B += blockIdx.x * BN;
    C += blockIdx.y * BM * N + blockIdx.x * BN;
    const int ar = threadIdx.x / BK, ac = threadIdx.x % BK;
    const int br = threadIdx.x / BN, bc = threadIdx.x % BN;
    float acc[TM] = {0.f};
    for (int k0 = 0; k0 < K; k0 += BK) {
        As[ar * BK + ac] = A[ar * K + ac];
        Bs[br * BN + bc] = B[br * N + bc];
        __syncthreads();
        A += BK;
        B += BK * N;
        for (int d = 0; d < BK; ++d) {
            const float b = Bs[d * BN + tc];
            for (int r = 0; r < TM; ++r) acc[r] += As[(tr * TM + r) * BK + d] * b;
        }
        __syncthreads();
    }
    for (int r = 0; r < TM; ++r)
        C[(tr * TM + r) * N + tc] = alpha * acc[r] + beta * C[(tr * TM + r) * N + tc];
}

// Step 5: 2D block tiling. BM = BN = 128, BK = 8, each of 256 threads computes an 8x8 sub-tile
// from register-cached slices of As and Bs.
extern "C" __global__ void sgemm5_2d(int M, int N, int K, float alpha, const float *A,
                                     const float *B, float beta, float *C) {
    const int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8, NT = (BM * BN) / (TM * TN);
    __shared__ float As[BM * BK];
    __shared__ float Bs[BK * BN];
    const int tc = threadIdx.x % (BN / TN), tr = threadIdx.x / (BN / TN);
    A += blockIdx.y * BM * K;
    B += blockIdx.x * BN;
    C += blockIdx.y * BM * N + blockIdx.x * BN;
    const int ar = threadIdx.x / BK, ac = threadIdx.x % BK, sa = NT / BK;
    const int br = threadIdx.x / BN, bc = threadIdx.x % BN, sb = NT / BN;
    float acc[TM * TN] = {0.f}, rm[TM], rn[TN];
    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int o = 0; o < BM; o += sa) As[(ar + o) * BK + ac] = A[(ar + o) * K + ac];
        for (int o = 0; o < BK; o += sb) Bs[(br + o) * BN + bc] = B[(br + o) * N + bc];
        __syncthreads();
        A += BK;
        B += BK * N;
        for (int d = 0; d < BK; ++d) {
            for (int i = 0; i < TM; ++i) rm[i] = As[(tr * TM + i) * BK + d];
            for (int i = 0; i < TN; ++i) rn[i] = Bs[d * BN + tc * TN + i];
            for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j) acc[i * TN + j] += rm[i] * rn[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) {
            float *c = &C[(tr * TM + i) * N + tc * TN + j];
            *c = alpha * acc[i * TN + j] + beta * *c;
        }
}

// Steps 6, 9, 10: one tile of A (float4 loads, stored transposed) and of B (float4 in, float4 out).
template <int BM, int BN, int BK, int NT>
__device__ __forceinline__ void load_tiles_vec(int N, int K, const float *A, const float *B, float *As,
                                               float *Bs) {
    for (int e = threadIdx.x; e < BM * BK / 4; e += NT) {
        const int r = e / (BK / 4), c = e % (BK / 4);
        const float4 t = reinterpret_cast<const float4 *>(&A[r * K + c * 4])[0];
        As[(c * 4 + 0) * BM + r] = t.x;
        As[(c * 4 + 1) * BM + r] = t.y;
        As[(c * 4 + 2) * BM + r] = t.z;
        As[(c * 4 + 3) * BM + r] = t.w;
    }
    for (int e = threadIdx.x; e < BK * BN / 4; e += NT) {
        const int r = e / (BN / 4), c = e % (BN / 4);
        reinterpret_cast<float4 *>(&Bs[r * BN + c * 4])[0] =
        reinterpret_cast<const float4 *>(&B[r * N + c * 4])[0];
    }
}

// Step 6: vectorised memory access. Step 5 with float4 global loads, As stored transposed so the
// inner loop reads both As and Bs as float4, float4 C stores.
template <int BM, int BN, int BK, int TM, int TN>
__device__ void sgemm_vec_body(int M, int N, int K, float alpha, const float *A, const float *B,
                               float beta, float *C) {
    __shared__ float As[BM * BK];
    __shared__ float Bs[BK * BN];
    const int NT = (BM * BN) / (TM * TN);
    const int tc = threadIdx.x % (BN / TN), tr = threadIdx.x / (BN / TN);
    A += blockIdx.y * BM * K;
    B += blockIdx.x * BN;
    C += blockIdx.y * BM * N + blockIdx.x * BN;
    float acc[TM * TN] = {0.f}, rm[TM], rn[TN];
    for (int k0 = 0; k0 < K; k0 += BK) {
        load_tiles_vec<BM, BN, BK, NT>(N, K, A, B, As, Bs);
        __syncthreads();
        A += BK;
        B += BK * N;
        for (int d = 0; d < BK; ++d) {
            for (int i = 0; i < TM; i += 4)
                *reinterpret_cast<float4 *>(&rm[i]) =
                    *reinterpret_cast<const float4 *>(&As[d * BM + tr * TM + i]);
            for (int i = 0; i < TN; i += 4)
                *reinterpret_cast<float4 *>(&rn[i]) =
                    *reinterpret_cast<const float4 *>(&Bs[d * BN + tc * TN + i]);
            for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j) acc[i * TN + j] += rm[i] * rn[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; j += 4) {
            float4 *cp = reinterpret_cast<float4 *>(&C[(tr * TM + i) * N + tc * TN + j]);
            float4 c = *cp;
            c.x = alpha * acc[i * TN + j + 0] + beta * c.x;
            c.y = alpha * acc[i * TN + j + 1] + beta * c.y;
            c.z = alpha * acc[i * TN + j + 2] + beta * c.z;
            c.w = alpha * acc[i * TN + j + 3] + beta * c.w;
            *cp = c;
        }
}

extern "C" __global__ void __launch_bounds__(256) sgemm6_vectorize(int M, int N, int K, float alpha,
                                                                  const float *A, const float *B,
                                                                  float beta, float *C) {
    sgemm_vec_body<128, 128, 8, 8, 8>(M, N, K, alpha, A, B, beta, C);
}

// Step 9 ("autotuning"): the step-6 kernel with the tile sizes of the post's repository
// (BM = BN = 64, BK = 16, TM = TN = 4, 256 threads).
extern "C" __global__ void __launch_bounds__(256) sgemm9_autotuned(int M, int N, int K, float alpha,
                                                                  const float *A, const float *B,
                                                                  float beta, float *C) {
    sgemm_vec_body<64, 64, 16, 4, 4>(M, N, K, alpha, A, B, beta, C);
}

// Step 10: warp tiling. 128 threads, block tile 64x128, warp tile WM x WN = 32x64 split in
// WMITER x WNITER = 2 x 2 sub-tiles of 16x32; each thread computes TM x TN = 4x4 per sub-tile.
extern "C" __global__ void __launch_bounds__(128) sgemm10_warptile(int M, int N, int K, float alpha,
                                                                  const float *A, const float *B,
                                                                  float beta, float *C) {
    const int BM = 64, BN = 128, BK = 8, WM = 32, WN = 64, WNITER = 2, TM = 4, TN = 4, NT = 128;
    const int WMITER = (WM * WN) / (32 * TM * TN * WNITER);  // 2
    const int WSM = WM / WMITER, WSN = WN / WNITER;           // 16, 32
    __shared__ float As[BM * BK];
    __shared__ float Bs[BK * BN];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int wr = warp / (BN / WN), wc = warp % (BN / WN);
    const int tcw = lane % (WSN / TN), trw = lane / (WSN / TN);
    A += blockIdx.y * BM * K;
    B += blockIdx.x * BN;
    C += (blockIdx.y * BM + wr * WM) * N + blockIdx.x * BN + wc * WN;
    float acc[WMITER * TM * WNITER * TN] = {0.f}, rm[WMITER * TM], rn[WNITER * TN];
    for (int k0 = 0; k0 < K; k0 += BK) {
        load_tiles_vec<BM, BN, BK, NT>(N, K, A, B, As, Bs);
        __syncthreads();
        A += BK;
        B += BK * N;
        for (int d = 0; d < BK; ++d) {
            for (int m = 0; m < WMITER; ++m)
                *reinterpret_cast<float4 *>(&rm[m * TM]) = *reinterpret_cast<const float4 *>(
                    &As[d * BM + wr * WM + m * WSM + trw * TM]);
            for (int n = 0; n < WNITER; ++n)
                *reinterpret_cast<float4 *>(&rn[n * TN]) = *reinterpret_cast<const float4 *>(
                    &Bs[d * BN + wc * WN + n * WSN + tcw * TN]);
            for (int m = 0; m < WMITER; ++m)
                for (int n = 0; n < WNITER; ++n)
                    for (int i = 0; i < TM; ++i)
                        for (int j = 0; j < TN; ++j)
                            acc[(m * TM + i) * (WNITER * TN) + n * TN + j] +=
                                rm[m * TM + i] * rn[n * TN + j];
        }
        __syncthreads();
    }
    for (int m = 0; m < WMITER; ++m)
        for (int n = 0; n < WNITER; ++n)
            for (int i = 0; i < TM; ++i) {
                float4 *cp = reinterpret_cast<float4 *>(
                    &C[(m * WSM + trw * TM + i) * N + n * WSN + tcw * TN]);
                float4 c = *cp;
                const float *a = &acc[(m * TM + i) * (WNITER * TN) + n * TN];
                c.x = alpha * a[0] + beta * c.x;
                c.y = alpha * a[1] + beta * c.y;
                c.z = alpha * a[2] + beta * c.z;
                c.w = alpha * a[3] + beta * c.w;
                *cp = c;
            }
}
