// ------------------------------------------------------------------------------------------------
// gemm_bf16.cu: batched bf16 tensor-core GEMM with fused bias, nn.Linear layout.
//
//   C[b, m, n] = sum_k A[b, m, k] * B[b, n, k] + bias[n]          (C = A * B^T + bias)
//
//   A    : (batch, M, lda) bf16 row-major, K contiguous          (activations)
//   B    : (batch, N, ldb) bf16 row-major, K contiguous          (nn.Linear weight (out, in))
//   bias : (N) bf16, or null
//   C    : (batch, M, ldc) row-major, f32 (gemm_bf16_v1_f32) or bf16 (gemm_bf16_v1_bf16)
//   batch strides in elements; 0 broadcasts an operand (e.g. one weight for every batch).
//   Accumulation in f32 (mma.sync m16n8k16 .f32.bf16.bf16.f32). Any M, N, K >= 0 (ragged edges:
//   loads are predicated with zero fill, stores are guarded).
//
// Versions:
//   v1: the mainloop of gemm.cu (gemm_mainloop.cuh: block tile 64x64x32, 4 warps (2x2), warp tile
//       32x32 = 2x4 mma tiles; A and B tiles double-buffered in shared memory through cp.async
//       when the operands are 16-byte aligned (`aligned`), else plain predicated loads; fragments
//       via ldmatrix.x4); guarded epilogue with the bias add, f32 or bf16 C.       <- ships
// Entries: gemm_bf16_v1_f32, gemm_bf16_v1_bf16 (one GemmParams argument; suffix = C dtype).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "gemm_mainloop.cuh"

// Launch rule (kernels/src/gemm_bf16.rs): grid = (ceil(N / GEMM_BN), ceil(M / GEMM_BM), batch),
// block = GEMM_THREADS, static smem only (the geometry of gemm_mainloop.cuh).

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/gemm_bf16.rs `GemmParams`, 88 bytes)
// ------------------------------------------------------------------------------------------------

struct GemmParams {
  GemmOperandParams ops; // A (batch, M, lda), B (batch, N, ldb) bf16
  const void* bias;      // (N) bf16, or null
  void* c;               // (batch, M, ldc) f32 | bf16
  uint64_t stride_c;     // elements between batches
  uint32_t ldc;
  uint32_t _pad;
};

template <typename TC> __device__ __forceinline__ void store_c(TC* c, float v);
template <> __device__ __forceinline__ void store_c<float>(float* c, float v) { *c = v; }
template <> __device__ __forceinline__ void store_c<__nv_bfloat16>(__nv_bfloat16* c, float v) {
  *c = __float2bfloat16_rn(v);
}

// ------------------------------------------------------------------------------------------------
// kernel: the shared mainloop (gemm_mainloop.cuh), then the bias epilogue
// ------------------------------------------------------------------------------------------------

template <typename TC>
__device__ __forceinline__ void gemm_bf16_v1(const GemmParams& p) {
  float acc[GEMM_TM][GEMM_TN][4];
  const GemmTile t = gemm_block_mainloop<false>(p.ops, false, acc);

  // Epilogue: c0,c1 at (lane/4, 2*(lane%4) + {0,1}), c2,c3 eight rows below.
  TC* c = static_cast<TC*>(p.c) + t.batch * p.stride_c;
  const uint16_t* bias = static_cast<const uint16_t*>(p.bias);
#pragma unroll
  for (uint32_t j = 0; j < GEMM_TN; ++j) {
    const uint32_t col = t.bn + t.wn * GEMM_WN + j * MMA_N + (t.lane % 4) * 2;
    float bias0 = 0.0f, bias1 = 0.0f;
    if (bias != nullptr) {
      if (col < p.ops.n) bias0 = bf16_bits_to_f32(bias[col]);
      if (col + 1 < p.ops.n) bias1 = bf16_bits_to_f32(bias[col + 1]);
    }
    for_each_acc_row<GEMM_TM>(t.bm + t.wm * GEMM_WM, t.lane, [&](uint32_t i, uint32_t h, uint32_t row) {
      if (row >= p.ops.m) return;
      TC* out = c + (uint64_t)row * p.ldc;
      if (col < p.ops.n) store_c<TC>(out + col, acc[i][j][2 * h] + bias0);
      if (col + 1 < p.ops.n) store_c<TC>(out + col + 1, acc[i][j][2 * h + 1] + bias1);
    });
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define GEMM_ENTRY(NAME, TC)                                                                       \
  extern "C" __global__ void __launch_bounds__(GEMM_THREADS) NAME(const GemmParams p) {            \
    gemm_bf16_v1<TC>(p);                                                                           \
  }

GEMM_ENTRY(gemm_bf16_v1_f32, float)
GEMM_ENTRY(gemm_bf16_v1_bf16, __nv_bfloat16)
