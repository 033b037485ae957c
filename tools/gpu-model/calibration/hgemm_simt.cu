// Calibration series 2, step 1: the H100 BF16 GEMM worklog's kernel 1 (pranjalssh/fast.cu:
// "tiled matmul (GMEM -> SMEM -> RMEM) without tensor cores / double buffering, from Simon's
// blog"), written here from that description: the 2D-blocktiled, vectorised SIMT kernel on bf16
// inputs with fp32 accumulation. The series' layout: A row-major M x K, B column-major K x N
// (stored N x K, K contiguous), C column-major M x N, bf16. BM = BN = 128, BK = 8, TM = TN = 8,
// 256 threads. No Hopper instructions: compute_80, so the current emulator runs it.
#include <cuda_bf16.h>

extern "C" __global__ void __launch_bounds__(256) hgemm1_simt(int M, int N, int K,
                                                             const __nv_bfloat16 *A,
                                                             const __nv_bfloat16 *B,
                                                             __nv_bfloat16 *C) {
    const int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8;
    __shared__ float As[BK * BM];
    __shared__ float Bs[BK * BN];
    const int tid = threadIdx.x;
    const int tc = tid % (BN / TN), tr = tid / (BN / TN);
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    // Threads 0-127 stage a row of A, 128-255 a column of B: 8 bf16 (16 bytes) each.
    const bool a_side = tid < 128;
    const int r = tid % 128;
    const __nv_bfloat16 *src = a_side ? A + (size_t)(row0 + r) * K : B + (size_t)(col0 + r) * K;
    float *dst = a_side ? As : Bs;
    float acc[TM * TN] = {0.f}, rm[TM], rn[TN];
    for (int k0 = 0; k0 < K; k0 += BK) {
        const uint4 v = *reinterpret_cast<const uint4 *>(src + k0);
        const __nv_bfloat16 *h = reinterpret_cast<const __nv_bfloat16 *>(&v);
        for (int j = 0; j < BK; ++j) dst[j * 128 + r] = __bfloat162float(h[j]);
        __syncthreads();
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
        for (int j = 0; j < TN; ++j)
            C[(size_t)(col0 + tc * TN + j) * M + row0 + tr * TM + i] = __float2bfloat16(acc[i * TN + j]);
}
