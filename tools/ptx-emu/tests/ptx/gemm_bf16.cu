// bf16 GEMM tile: C[M,N] (f32) = A[M,K] (bf16, row-major) * B[K,N] (bf16, row-major).
// Block 128 threads (4 warps) computes a 32x32 tile; K step 32, double-buffered cp.async,
// ldmatrix.x4 (A) and ldmatrix.x4.trans (B), mma.sync m16n8k16 bf16 -> f32.
#include <cuda_bf16.h>
#define BM 32
#define BN 32
#define BK 32
__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" :: "r"(smem_u32(dst)), "l"(src));
}
extern "C" __global__ void gemm_bf16_tile(const __nv_bfloat16* __restrict__ A, const __nv_bfloat16* __restrict__ B,
                                          float* __restrict__ C, int M, int N, int K) {
  __shared__ __align__(16) __nv_bfloat16 As[2][BM][BK];
  __shared__ __align__(16) __nv_bfloat16 Bs[2][BK][BN];
  int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int bm = blockIdx.y * BM, bn = blockIdx.x * BN;
  int wm = (warp >> 1) * 16, wn = (warp & 1) * 16;
  // each thread copies one 16-byte chunk of A and one of B per stage
  int ar = tid >> 2, ac = (tid & 3) * 8;
  int br = tid >> 2, bc = (tid & 3) * 8;
  float acc[2][4] = {{0.f,0.f,0.f,0.f},{0.f,0.f,0.f,0.f}};
  int nk = K / BK;
  cp_async16(&As[0][ar][ac], A + (size_t)(bm + ar) * K + ac);
  cp_async16(&Bs[0][br][bc], B + (size_t)br * N + bn + bc);
  asm volatile("cp.async.commit_group;\n" ::);
  for (int kt = 0; kt < nk; ++kt) {
    int cur = kt & 1;
    if (kt + 1 < nk) {
      int k0 = (kt + 1) * BK;
      cp_async16(&As[cur ^ 1][ar][ac], A + (size_t)(bm + ar) * K + k0 + ac);
      cp_async16(&Bs[cur ^ 1][br][bc], B + (size_t)(k0 + br) * N + bn + bc);
    }
    asm volatile("cp.async.commit_group;\n" ::);
    asm volatile("cp.async.wait_group 1;\n" ::);
    __syncthreads();
    #pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      unsigned a0, a1, a2, a3, b0, b1, b2, b3;
      int mat = lane >> 3, r = lane & 7;
      const void* pa = &As[cur][wm + (mat & 1) * 8 + r][kk + (mat >> 1) * 8];
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3) : "r"(smem_u32(pa)));
      const void* pb = &Bs[cur][kk + (mat & 1) * 8 + r][wn + (mat >> 1) * 8];
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3) : "r"(smem_u32(pb)));
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                   : "+f"(acc[0][0]), "+f"(acc[0][1]), "+f"(acc[0][2]), "+f"(acc[0][3])
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                   : "+f"(acc[1][0]), "+f"(acc[1][1]), "+f"(acc[1][2]), "+f"(acc[1][3])
                   : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b2), "r"(b3));
    }
    __syncthreads();
  }
  int g = lane >> 2, t = lane & 3;
  #pragma unroll
  for (int j = 0; j < 2; ++j) {
    int col = bn + wn + j * 8 + t * 2;
    int row = bm + wm + g;
    C[(size_t)row * N + col] = acc[j][0];
    C[(size_t)row * N + col + 1] = acc[j][1];
    C[(size_t)(row + 8) * N + col] = acc[j][2];
    C[(size_t)(row + 8) * N + col + 1] = acc[j][3];
  }
}
