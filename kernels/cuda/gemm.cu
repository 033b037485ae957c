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
#include "gemm_tiles.cuh"
#include "gemm_v2.cuh" // GemmParams, GemmV2Params, gemm_v2_tile, gemm_v2, gemm_splitk_v2

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

// ================================================================================================
// v2: the templated mainloop of gemm_tiles.cuh (swizzled smem, STAGES-deep cp.async pipeline in
// dynamic shared memory, staged epilogue with 16-byte stores), three tile configs, split-K.
// ================================================================================================
//
// Entries (one GemmV2Params): linear_<BM>x<BN>_v2_bf16 (B (N, K), GEGLU allowed) and
// matmul_<BM>x<BN>_v2_bf16 (B (K, N)) for the tile configs
//   128x256: 8 warps (2 x 4) of 64x64, 3 stages, 72 KiB dynamic smem, 1 CTA / SM;
//   256x128: 8 warps (4 x 2) of 64x64, 3 stages, 72 KiB (N = 320 class shapes: 83 % column fill);
//   128x128: 8 warps (2 x 4) of 64x32, 4 stages, 64 KiB, 2 CTAs / SM (<= 128 registers);
//   64x64  : 4 warps (2 x 2) of 32x32, 4 stages, 32 KiB, small M / N;
// and gemm_splitk_v2_bf16, the split-K reduction + epilogue pass.
// The v2 entries need the cp.async path (`ops.aligned`: A, B 16-byte aligned, K-contiguous row
// and batch strides multiples of 8); the launcher keeps the v1 entries for the others.
//
// Persistent (p.splits == 1): grid = (P, 1, 1) with P <= the resident CTAs of the GPU (the
// launcher's GemmPlan::choose: CTAs per SM x SMs, balanced so that every CTA gets
// ceil(tiles / P) or one tile fewer); CTA b runs the output tiles t = b, b + P, .. of the
// rastered order of gemm_tiles.cuh `raster_tile` (groups of p.raster tile rows sweeping the tile
// columns), each tile = the cp.async pipeline drained and re-primed (the mainloop returns with
// every copy landed and the block synchronised), then the staged epilogue, then a
// __syncthreads before the next tile's prologue overwrites the epilogue's staging slabs. The P
// tiles in flight at a time span ~p.raster tile rows x P / p.raster tile columns: the A row
// panels and B column panels they read are shared in the L2 (the launcher sizes the group so
// its A panels take at most a quarter of the L2; see GemmPlan::raster_rows).
//
// Split-K (p.splits > 1, grid.z = batch * splits, not persistent: split-K grids are under one
// wave by construction): split s runs k tiles
// [s * ktiles_per_split, (s + 1) * ktiles_per_split) and stores its raw f32 tile (GEGLU: value
// and gate columns interleaved per 8 as in the tile; raw column (n / 8) * 16 + n % 8 for output
// n, its gate 8 further) with 16-byte stores to workspace[s][batch][M][ws_ld] (ws_ld = gridDim.x
// * BN); gemm_splitk_v2_bf16 then sums the splits in the fixed order 0, 1, .. (deterministic,
// no atomics, no semaphores: the result does not depend on which split finished first) and
// applies the fused epilogue. Chosen over a serialized semaphore chain because it needs no
// inter-CTA spin wait (which the emulator's one-block-at-a-time schedules and a partial wave
// would deadlock on) and keeps the main kernel's epilogue free of the reduction.

// The A loader of the v2 entries: rows bm.. of A (batch entry `batch`), K contiguous.
template <class Cfg> __device__ __forceinline__ auto gemm_a_rows(const GemmV2Params& p) {
  return [&p](uint32_t batch, uint32_t bm) {
    const GemmOperandParams& o = p.g.ops;
    const uint16_t* a = static_cast<const uint16_t*>(o.a) + batch * o.stride_a;
    return RowTileLoader<Cfg::BM, Cfg::THREADS>{a, o.lda, bm, o.m, o.k, false};
  };
}

using GemmCfgXL = GemmTileConfig<128, 256, 2, 4, 3>;
using GemmCfgXLT = GemmTileConfig<256, 128, 4, 2, 3>;
using GemmCfgL = GemmTileConfig<128, 128, 2, 4, 4>;
using GemmCfgS = GemmTileConfig<64, 64, 2, 2, 4>;

#define GEMM_V2_ENTRY(OP, TILE, CFG, B_KN, MIN_BLOCKS)                                                \
  extern "C" __global__ void __launch_bounds__(CFG::THREADS, MIN_BLOCKS) OP##_##TILE##_v2_bf16(        \
      const GemmV2Params p) {                                                                        \
    gemm_v2<CFG, B_KN, __nv_bfloat16>(p, gemm_a_rows<CFG>(p));                                      \
  }

GEMM_V2_ENTRY(linear, 128x256, GemmCfgXL, false, 1)
GEMM_V2_ENTRY(linear, 128x128, GemmCfgL, false, 2)
GEMM_V2_ENTRY(linear, 64x64, GemmCfgS, false, 4)
GEMM_V2_ENTRY(matmul, 128x256, GemmCfgXL, true, 1)
GEMM_V2_ENTRY(matmul, 128x128, GemmCfgL, true, 2)
GEMM_V2_ENTRY(matmul, 64x64, GemmCfgS, true, 4)

GEMM_V2_ENTRY(linear, 256x128, GemmCfgXLT, false, 1)
GEMM_V2_ENTRY(matmul, 256x128, GemmCfgXLT, true, 1)

extern "C" __global__ void __launch_bounds__(256) gemm_splitk_v2_bf16(const GemmV2Params p) { gemm_splitk_v2(p); }
