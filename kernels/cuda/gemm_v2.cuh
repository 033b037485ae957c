// ------------------------------------------------------------------------------------------------
// gemm_v2.cuh: the v2 GEMM tile (gemm_tiles.cuh mainloop + fused staged epilogue), its tile
// scheduler (persistent rastered tiles or split-K) and the split-K reduction pass, with the
// A-tile loader supplied by the caller: gemm.cu's linear / matmul v2 entries (a RowTileLoader
// over A) and conv2d_nhwc.cu (an im2col gather over a channels-last x) share all of it.
// gemm.cu documents the schedule, the split-K workspace and the epilogue.
// ------------------------------------------------------------------------------------------------
#pragma once

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

// The default extra epilogue term: none. A caller's row_add(row, col0, v) adds its own term to the
// CH values v of (row, col0 ..) before epilogue_chunk's bias / residual / scale (conv2d_nhwc.cu:
// the per-image time embedding).
struct NoRowAdd {
  template <uint32_t CH> __device__ __forceinline__ void operator()(uint32_t, uint32_t, float (&)[CH]) const {}
};

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
// make_a(batch, bm): the A-tile loader (gemm_tiles.cuh policy) of rows bm.. of batch entry
// `batch` (gemm.cu: a RowTileLoader over A; conv2d_nhwc.cu: an im2col gather); row_add: see
// NoRowAdd.
template <class Cfg, bool B_KN, typename OutT, class MakeA, class RowAdd = NoRowAdd>
__device__ __forceinline__ void gemm_v2_tile(const GemmV2Params& p, uint8_t* smem, uint32_t batch, uint32_t split,
                                             uint32_t tm, uint32_t tn, const MakeA& make_a,
                                             const RowAdd& row_add = RowAdd()) {
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
  const uint16_t* b = static_cast<const uint16_t*>(g.ops.b) + batch * g.ops.stride_b;
  const auto la = make_a(batch, bm);
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
          row_add(row0 + i * MMA_M + r, colw + cc, v);
          epilogue_chunk<OutT, CH>(g, c, res, row0 + i * MMA_M + r, colw + cc, v, true);
        });
  } else {
    const uint32_t colw = bn + wn * Cfg::WN;
    warp_staged_epilogue<Cfg, Cfg::WN, CH>(wbuf, lane, raw, [&](uint32_t i, uint32_t r, uint32_t cc, float (&v)[CH]) {
      row_add(row0 + i * MMA_M + r, colw + cc, v);
      epilogue_chunk<OutT, CH>(g, c, res, row0 + i * MMA_M + r, colw + cc, v, false);
    });
  }
}

// The tile scheduler: split-K launches map blockIdx to one tile and split; the others are
// persistent over the rastered tiles (see above).
template <class Cfg, bool B_KN, typename OutT, class MakeA, class RowAdd = NoRowAdd>
__device__ __forceinline__ void gemm_v2(const GemmV2Params& p, const MakeA& make_a, const RowAdd& row_add = RowAdd()) {
  extern __shared__ __align__(128) uint8_t smem[];
  if (p.splits > 1) {
    gemm_v2_tile<Cfg, B_KN, OutT>(p, smem, blockIdx.z / p.splits, blockIdx.z % p.splits, blockIdx.y, blockIdx.x,
                                  make_a, row_add);
    return;
  }
  const uint32_t tiles = p.tiles_m * p.tiles_n * p.batch;
  for (uint32_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const RasterTile rt = raster_tile(t, p.tiles_m, p.tiles_n, p.raster);
    gemm_v2_tile<Cfg, B_KN, OutT>(p, smem, rt.batch, 0, rt.row, rt.col, make_a, row_add);
    __syncthreads(); // every warp's epilogue reads of its staging slab done before the next prologue
  }
}

// Split-K pass: grid = (ceil(M * ceil(N / 8) / 256), batch), block = 256; thread -> (row, 8
// output columns): sums the p.splits partials in order, GEGLU / row_add / bias, residual, scale,
// bf16 C.
template <class RowAdd = NoRowAdd>
__device__ __forceinline__ void gemm_splitk_v2(const GemmV2Params& p, const RowAdd& row_add = RowAdd()) {
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
  row_add(row, col0, v);
  epilogue_chunk<__nv_bfloat16, CH>(g, c, res, row, col0, v, geglu);
}

