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

struct GemmV2Params {
  GemmParams g;
  void* workspace;           // split-K partials (f32), null when splits == 1
  uint32_t splits;           // >= 1
  uint32_t ktiles_per_split; // 32-deep k tiles per split (splits == 1: >= ceil(K / 32))
  uint32_t ws_ld;            // workspace row stride (f32): tiles_n * BN of the tile config
  uint32_t batch;            // batch entries
  uint32_t tiles_m, tiles_n; // CTA tiles per batch entry: ceil(M / BM), ceil(N / BN_out)
  uint32_t raster;           // persistent (splits == 1): tile rows per raster group, >= 1
  uint32_t pad;
}; // 152 bytes (kernels/src/gemm.rs GemmV2Params)

// CH bf16 (bits) of p as f32: `valid` leading elements, the rest 0; `vec`: one 2 CH-byte load.
template <uint32_t CH> __device__ __forceinline__ void load_bf16_chunk(const uint16_t* p, uint32_t valid, float (&v)[CH]) {
  const bool vec = valid == CH && (reinterpret_cast<uint64_t>(p) % (2 * CH)) == 0;
  if (vec) {
    uint32_t w[CH / 2];
    if constexpr (CH == 8) {
      const uint4 x = *reinterpret_cast<const uint4*>(p);
      w[0] = x.x, w[1] = x.y, w[2] = x.z, w[3] = x.w;
    } else {
      const uint2 x = *reinterpret_cast<const uint2*>(p);
      w[0] = x.x, w[1] = x.y;
    }
#pragma unroll
    for (uint32_t e = 0; e < CH / 2; ++e) {
      v[2 * e] = __uint_as_float(w[e] << 16);
      v[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
    }
  } else {
#pragma unroll
    for (uint32_t e = 0; e < CH; ++e) v[e] = e < valid ? bf16_bits_to_f32(p[e]) : 0.0f;
  }
}

// One chunk of CH outputs of row `row` from column col0: v (+ bias unless `biased`) + residual,
// times scale, stored as OutT; 16-byte store when all CH columns are in range and aligned.
template <typename OutT, uint32_t CH>
__device__ __forceinline__ void epilogue_chunk(const GemmParams& g, OutT* c, const uint16_t* res, uint32_t row,
                                               uint32_t col0, float (&v)[CH], bool biased) {
  if (row >= g.ops.m || col0 >= g.ops.n) return;
  const uint32_t valid = min(g.ops.n - col0, CH);
  float t[CH];
  if (!biased && g.bias != nullptr) {
    load_bf16_chunk<CH>(static_cast<const uint16_t*>(g.bias) + col0, valid, t);
#pragma unroll
    for (uint32_t e = 0; e < CH; ++e) v[e] += t[e];
  }
  if (res != nullptr) {
    load_bf16_chunk<CH>(res + (uint64_t)row * g.ldr + col0, valid, t);
#pragma unroll
    for (uint32_t e = 0; e < CH; ++e) v[e] += t[e];
  }
  OutT* out = c + (uint64_t)row * g.ldc + col0;
  const bool vec = valid == CH && (reinterpret_cast<uint64_t>(out) % 16) == 0;
  if constexpr (sizeof(OutT) == 2) {
    static_assert(CH == 8, "bf16 chunks of 16 bytes");
    if (vec) {
      uint4 x;
      x.x = pack_bf16x2(v[0] * g.scale, v[1] * g.scale);
      x.y = pack_bf16x2(v[2] * g.scale, v[3] * g.scale);
      x.z = pack_bf16x2(v[4] * g.scale, v[5] * g.scale);
      x.w = pack_bf16x2(v[6] * g.scale, v[7] * g.scale);
      *reinterpret_cast<uint4*>(out) = x;
      return;
    }
  } else {
    static_assert(CH == 4, "f32 chunks of 16 bytes");
    if (vec) {
      *reinterpret_cast<float4*>(out) = make_float4(v[0] * g.scale, v[1] * g.scale, v[2] * g.scale, v[3] * g.scale);
      return;
    }
  }
#pragma unroll
  for (uint32_t e = 0; e < CH; ++e)
    if (e < valid) out[e] = from_f32<OutT>(v[e] * g.scale);
}

// One output tile (tile row tm, tile column tn of batch entry `batch`; k split `split`): the
// mainloop, then the fused epilogue or (split-K) the raw partial tile. smem: the dynamic shared
// memory; on return the block may still read it (the caller synchronises before reusing it).
template <class Cfg, bool B_KN, typename OutT>
__device__ __forceinline__ void gemm_v2_tile(const GemmV2Params& p, uint8_t* smem, uint32_t batch, uint32_t split,
                                             uint32_t tm, uint32_t tn) {
  constexpr uint32_t CH = 16 / sizeof(OutT);
  const GemmParams& g = p.g;
  const bool geglu = !B_KN && g.geglu != 0;
  const uint32_t bm = tm * Cfg::BM;
  const uint32_t bn = tn * (geglu ? (uint32_t)Cfg::BN / 2 : (uint32_t)Cfg::BN);
  uint32_t lane, wm, wn;
  warp_coords<Cfg::WARPS_N>(threadIdx.x, lane, wm, wn);
  const uint32_t ktiles = ceil_div(g.ops.k, Cfg::BK);
  const uint32_t kt0 = min(split * p.ktiles_per_split, ktiles);
  const uint32_t kt1 = min(kt0 + p.ktiles_per_split, ktiles);
  const uint16_t* a = static_cast<const uint16_t*>(g.ops.a) + batch * g.ops.stride_a;
  const uint16_t* b = static_cast<const uint16_t*>(g.ops.b) + batch * g.ops.stride_b;
  const RowTileLoader<Cfg::BM, Cfg::THREADS> la{a, g.ops.lda, bm, g.ops.m, g.ops.k, false};
  float acc[Cfg::TM][Cfg::TN][4];
  if constexpr (B_KN) {
    const KnTileLoader<Cfg::BN, Cfg::THREADS> lb{b, g.ops.ldb, bn, g.ops.n, g.ops.k};
    gemm_mainloop_v2<Cfg>(smem, la, lb, kt0, kt1, wm, wn, lane, acc);
  } else {
    const RowTileLoader<Cfg::BN, Cfg::THREADS> lb{b, g.ops.ldb, bn, g.ops.n, g.ops.k, geglu};
    gemm_mainloop_v2<Cfg>(smem, la, lb, kt0, kt1, wm, wn, lane, acc);
  }

  float* wbuf = reinterpret_cast<float*>(smem) + (threadIdx.x / WARP_SIZE) * Cfg::EPI_WARP_FLOATS;
  const uint32_t row0 = bm + wm * Cfg::WM;
  auto raw = [&](uint32_t i, uint32_t jj, uint32_t h, uint32_t e) { return acc[i][jj][2 * h + e]; };
  if (p.splits > 1) {
    // raw partial tile -> workspace[split][batch] (16-byte stores of 4 f32)
    float* ws = static_cast<float*>(p.workspace) + ((uint64_t)split * p.batch + batch) * g.ops.m * p.ws_ld;
    const uint32_t col0 = tn * Cfg::BN + wn * Cfg::WN;
    warp_staged_epilogue<Cfg, Cfg::WN, 4>(wbuf, lane, raw, [&](uint32_t i, uint32_t r, uint32_t c, float (&v)[4]) {
      const uint32_t row = row0 + i * MMA_M + r;
      if (row < g.ops.m)
        *reinterpret_cast<float4*>(ws + (uint64_t)row * p.ws_ld + col0 + c) = make_float4(v[0], v[1], v[2], v[3]);
    });
    return;
  }
  OutT* c = static_cast<OutT*>(g.c) + batch * g.stride_c;
  const uint16_t* res = g.residual ? static_cast<const uint16_t*>(g.residual) + batch * g.stride_r : nullptr;
  if (geglu) {
    // value tile 2 jj and gate tile 2 jj + 1 hold output columns colw + 8 jj + 2 (lane % 4) + e
    constexpr uint32_t W = Cfg::WN / 2;
    const uint32_t colw = bn + wn * W;
    const uint16_t* bias = static_cast<const uint16_t*>(g.bias);
    float bv[W / 8][2], bg[W / 8][2];
#pragma unroll
    for (uint32_t jj = 0; jj < W / 8; ++jj)
#pragma unroll
      for (uint32_t e = 0; e < 2; ++e) {
        const uint32_t col = colw + jj * 8 + 2 * (lane % 4) + e;
        const bool ok = bias != nullptr && col < g.ops.n;
        bv[jj][e] = ok ? bf16_bits_to_f32(bias[col]) : 0.0f;
        bg[jj][e] = ok ? bf16_bits_to_f32(bias[g.ops.n + col]) : 0.0f;
      }
    warp_staged_epilogue<Cfg, W, CH>(
        wbuf, lane,
        [&](uint32_t i, uint32_t jj, uint32_t h, uint32_t e) {
          return (acc[i][2 * jj][2 * h + e] + bv[jj][e]) * gelu_erf(acc[i][2 * jj + 1][2 * h + e] + bg[jj][e]);
        },
        [&](uint32_t i, uint32_t r, uint32_t cc, float (&v)[CH]) {
          epilogue_chunk<OutT, CH>(g, c, res, row0 + i * MMA_M + r, colw + cc, v, true);
        });
  } else {
    const uint32_t colw = bn + wn * Cfg::WN;
    warp_staged_epilogue<Cfg, Cfg::WN, CH>(wbuf, lane, raw, [&](uint32_t i, uint32_t r, uint32_t cc, float (&v)[CH]) {
      epilogue_chunk<OutT, CH>(g, c, res, row0 + i * MMA_M + r, colw + cc, v, false);
    });
  }
}

// The tile scheduler: split-K launches map blockIdx to one tile and split; the others are
// persistent over the rastered tiles (see above).
template <class Cfg, bool B_KN, typename OutT>
__device__ __forceinline__ void gemm_v2(const GemmV2Params& p) {
  extern __shared__ __align__(128) uint8_t smem[];
  if (p.splits > 1) {
    gemm_v2_tile<Cfg, B_KN, OutT>(p, smem, blockIdx.z / p.splits, blockIdx.z % p.splits, blockIdx.y, blockIdx.x);
    return;
  }
  const uint32_t tiles = p.tiles_m * p.tiles_n * p.batch;
  for (uint32_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const RasterTile rt = raster_tile(t, p.tiles_m, p.tiles_n, p.raster);
    gemm_v2_tile<Cfg, B_KN, OutT>(p, smem, rt.batch, 0, rt.row, rt.col);
    __syncthreads(); // every warp's epilogue reads of its staging slab done before the next prologue
  }
}

// Split-K pass: grid = (ceil(M * ceil(N / 8) / 256), batch), block = 256; thread -> (row, 8
// output columns): sums the p.splits partials in order, GEGLU / bias, residual, scale, bf16 C.
__device__ __forceinline__ void gemm_splitk_v2(const GemmV2Params& p) {
  constexpr uint32_t CH = 8;
  const GemmParams& g = p.g;
  const uint32_t cpr = ceil_div(g.ops.n, CH);
  const uint64_t idx = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= (uint64_t)g.ops.m * cpr) return;
  const uint32_t batch = blockIdx.y;
  const uint32_t row = (uint32_t)(idx / cpr), col0 = (uint32_t)(idx % cpr) * CH;
  const bool geglu = g.geglu != 0;
  const uint32_t rc = geglu ? col0 * 2 : col0; // raw column of col0 (a multiple of 8)
  float v[CH], gate[CH];
#pragma unroll
  for (uint32_t e = 0; e < CH; ++e) v[e] = gate[e] = 0.0f;
  const uint64_t split_stride = (uint64_t)p.batch * g.ops.m * p.ws_ld;
  const float* ws = static_cast<const float*>(p.workspace) + ((uint64_t)batch * g.ops.m + row) * p.ws_ld + rc;
  for (uint32_t s = 0; s < p.splits; ++s, ws += split_stride) {
#pragma unroll
    for (uint32_t q = 0; q < 2; ++q) {
      const float4 x = reinterpret_cast<const float4*>(ws)[q];
      v[4 * q] += x.x, v[4 * q + 1] += x.y, v[4 * q + 2] += x.z, v[4 * q + 3] += x.w;
      if (geglu) {
        const float4 y = reinterpret_cast<const float4*>(ws + 8)[q];
        gate[4 * q] += y.x, gate[4 * q + 1] += y.y, gate[4 * q + 2] += y.z, gate[4 * q + 3] += y.w;
      }
    }
  }
  __nv_bfloat16* c = static_cast<__nv_bfloat16*>(g.c) + batch * g.stride_c;
  const uint16_t* res = g.residual ? static_cast<const uint16_t*>(g.residual) + batch * g.stride_r : nullptr;
  if (geglu) {
    const uint32_t valid = min(g.ops.n - col0, CH);
    float bv[CH], bg[CH];
    if (g.bias != nullptr) {
      const uint16_t* bias = static_cast<const uint16_t*>(g.bias);
      load_bf16_chunk<CH>(bias + col0, valid, bv);
      load_bf16_chunk<CH>(bias + g.ops.n + col0, valid, bg);
    } else {
#pragma unroll
      for (uint32_t e = 0; e < CH; ++e) bv[e] = bg[e] = 0.0f;
    }
#pragma unroll
    for (uint32_t e = 0; e < CH; ++e) v[e] = (v[e] + bv[e]) * gelu_erf(gate[e] + bg[e]);
  }
  epilogue_chunk<__nv_bfloat16, CH>(g, c, res, row, col0, v, geglu);
}

using GemmCfgXL = GemmTileConfig<128, 256, 2, 4, 3>;
using GemmCfgXLT = GemmTileConfig<256, 128, 4, 2, 3>;
using GemmCfgL = GemmTileConfig<128, 128, 2, 4, 4>;
using GemmCfgS = GemmTileConfig<64, 64, 2, 2, 4>;

#define GEMM_V2_ENTRY(OP, TILE, CFG, B_KN, MIN_BLOCKS)                                                \
  extern "C" __global__ void __launch_bounds__(CFG::THREADS, MIN_BLOCKS) OP##_##TILE##_v2_bf16(        \
      const GemmV2Params p) {                                                                        \
    gemm_v2<CFG, B_KN, __nv_bfloat16>(p);                                                            \
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
