// ------------------------------------------------------------------------------------------------
// gemm.cu: batched bf16 tensor-core GEMM for `linear` and `matmul` with fused epilogues.
//
//   linear : C[b, m, n] = scale * (A[b, m, :] . B[b, n, :]  + bias[n] + R[b, m, n])   B (N, K)
//   matmul : C[b, m, n] = scale * (A[b, m, :] . B[b, :, n]  + bias[n] + R[b, m, n])   B (K, N)
//   linear GEGLU (FeedForward proj, B (2N, K): rows [0, N) value, [N, 2N) gate):
//            C[b, m, n] = scale * ((A.B[n] + bias[n]) * gelu(A.B[N + n] + bias[N + n]) + R[b, m, n])
//
//   A    : (batch, M, lda) bf16, K contiguous          (activations)
//   B    : linear (batch, N | 2N, ldb) bf16, K contiguous (nn.Linear weight (out, in));
//          matmul (batch, K, ldb) bf16, N contiguous
//   bias : (N | 2N) bf16 or null;  R: (batch, M, ldr) bf16 or null (may alias C)
//   C    : (batch, M, ldc) bf16
//   batch strides in elements; 0 broadcasts an operand (one weight for every batch). f32
//   accumulation (mma.sync m16n8k16 .f32.bf16.bf16.f32), epilogue in f32, one bf16 rounding.
//   Any M, N, K >= 0: loads are predicated with zero fill, stores guarded.
//
// Versions:
//   v1: block tile 64x64x32, 4 warps (2x2), warp tile 32x32 = 2x4 mma tiles; A and B tiles
//       double-buffered in shared memory through cp.async when operands are 16-byte aligned
//       (`aligned`), else predicated scalar loads; A and (N, K) B fragments via ldmatrix.x4,
//       (K, N) B fragments via ldmatrix.x4.trans. GEGLU interleaves value and gate rows of B per
//       8-column mma tile (smem rows 16i..16i+7 value, 16i+8..16i+15 gate), so one thread holds
//       both accumulators of an output and the block covers 32 output columns.       <- ships
//   v1 f32 (f32 activations): the same tiles and epilogue with f32 A, bias, residual and C; A (and
//       an f32 B) read once per tile as float4s into registers, split there into bf16 hi + lo
//       smem tiles (gemm_mainloop.cuh `gemm_split_mainloop`, which documents the choice of
//       registers over cp.async and the conflict-free store order), lo.hi + hi.lo + hi.hi MMAs
//       (f32 B) or lo.B + hi.B (bf16 B): f32-accurate products (docs/kernels.md Numerics).
// Entries: linear_v1_bf16 (B (N, K), GEGLU allowed), matmul_v1_bf16 (B (K, N)); linear_v1_f32 (f32
// B (N, K), GEGLU allowed), linear_wbf16_v1_f32 (bf16 B (N, K), GEGLU allowed), matmul_v1_f32 (f32
// B (K, N)); one GemmParams (f32 entries: `ops.aligned` bit 0 A float4, bit 1 B float4 / cp.async).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "gemm_mainloop.cuh"

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/gemm.rs `GemmParams`, 112 bytes)
// ------------------------------------------------------------------------------------------------

struct GemmParams {
  GemmOperandParams ops; // A; B linear (batch, N | 2N, ldb), matmul (batch, K, ldb)
  const void* bias;      // (N | 2N) bf16, or null
  const void* residual;  // (batch, M, ldr) bf16, or null
  void* c;               // (batch, M, ldc) bf16
  uint64_t stride_r;     // elements between batches (0 = broadcast)
  uint64_t stride_c;
  uint32_t ldr, ldc;
  float scale;           // output scale (1 = none)
  uint32_t geglu;        // 1: GEGLU epilogue (linear only)
};

// ------------------------------------------------------------------------------------------------
// kernel: the shared mainloop (gemm_mainloop.cuh), then the fused epilogue
// ------------------------------------------------------------------------------------------------

// Epilogue: c0, c1 at (lane/4, 2*(lane%4) + {0, 1}), c2, c3 eight rows below. InT: the storage of
// bias, residual and C (uint16_t bf16 bits or float), OutT: C's element type.
template <typename InT, typename OutT>
__device__ __forceinline__ void gemm_epilogue(const GemmParams& p, const GemmTile& t, bool geglu,
                                              const float (&acc)[GEMM_TM][GEMM_TN][4]) {
  InT* c = static_cast<InT*>(p.c) + t.batch * p.stride_c;
  const InT* bias = static_cast<const InT*>(p.bias);
  const InT* res = p.residual ? static_cast<const InT*>(p.residual) + t.batch * p.stride_r : nullptr;
#pragma unroll
  for (uint32_t j = 0; j < GEMM_TN; ++j) {
    if (geglu && (j % 2) == 1) continue; // gate tile: consumed with its value tile j - 1
    const uint32_t col0 = geglu ? t.bn + t.wn * (GEMM_WN / 2) + (j / 2) * MMA_N + (t.lane % 4) * 2
                                : t.bn + t.wn * GEMM_WN + j * MMA_N + (t.lane % 4) * 2;
#pragma unroll
    for (uint32_t e = 0; e < 2; ++e) {
      const uint32_t col = col0 + e;
      if (col >= p.ops.n) continue;
      float bv = 0.0f, bg = 0.0f;
      if (bias != nullptr) {
        bv = operand_f32(bias[col]);
        if (geglu) bg = operand_f32(bias[p.ops.n + col]);
      }
      for_each_acc_row<GEMM_TM>(t.bm + t.wm * GEMM_WM, t.lane, [&](uint32_t i, uint32_t h, uint32_t row) {
        if (row >= p.ops.m) return;
        float v = acc[i][j][2 * h + e] + bv;
        if (geglu) v *= gelu_erf(acc[i][j + 1][2 * h + e] + bg);
        if (res != nullptr) v += operand_f32(res[(uint64_t)row * p.ldr + col]);
        v *= p.scale;
        reinterpret_cast<OutT*>(c)[(uint64_t)row * p.ldc + col] = from_f32<OutT>(v);
      });
    }
  }
}

// bf16 A and B: the shared mainloop (gemm_mainloop.cuh), then the fused epilogue.
template <bool B_KN>
__device__ __forceinline__ void gemm_v1(const GemmParams& p) {
  const bool geglu = !B_KN && p.geglu != 0;
  float acc[GEMM_TM][GEMM_TN][4];
  const GemmTile t = gemm_block_mainloop<B_KN>(p.ops, geglu, acc);
  gemm_epilogue<uint16_t, __nv_bfloat16>(p, t, geglu, acc);
}

// f32 A (B f32, or bf16 when !B_F32): the split mainloop, f32 epilogue operands and C.
template <bool B_KN, bool B_F32>
__device__ __forceinline__ void gemm_split_v1(const GemmParams& p) {
  const bool geglu = !B_KN && p.geglu != 0;
  float acc[GEMM_TM][GEMM_TN][4];
  const GemmTile t = gemm_block_split_mainloop<B_KN, B_F32>(p.ops, geglu, acc);
  gemm_epilogue<float, float>(p, t, geglu, acc);
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) linear_v1_bf16(const GemmParams p) { gemm_v1<false>(p); }
extern "C" __global__ void __launch_bounds__(GEMM_THREADS) matmul_v1_bf16(const GemmParams p) { gemm_v1<true>(p); }
extern "C" __global__ void __launch_bounds__(GEMM_THREADS) linear_v1_f32(const GemmParams p) {
  gemm_split_v1<false, true>(p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS) linear_wbf16_v1_f32(const GemmParams p) {
  gemm_split_v1<false, false>(p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS) matmul_v1_f32(const GemmParams p) {
  gemm_split_v1<true, true>(p);
}
