// ------------------------------------------------------------------------------------------------
// gemm_tiles.cuh: the templated bf16 tensor-core GEMM mainloop (v2) and its staged epilogue,
// parameterised by a tile config (`GemmTileConfig<BM, BN, WARPS_M, WARPS_N, STAGES>`) and by an
// A-tile and a B-tile loader policy; used by gemm.cu's *_v2 entries, written so that other
// implicit GEMMs (conv2d's im2col A loader) can plug in their own loader.
//
//   * CTA tile BM x BN x 32, WARPS_M x WARPS_N warps, warp tile (BM / WARPS_M) x (BN / WARPS_N)
//     of m16n8k16 mma tiles, f32 accumulators;
//   * STAGES-deep cp.async pipeline (16-byte copies, zero-fill through src-size for the M / N / K
//     tails) in DYNAMIC shared memory (`extern __shared__`; the launcher raises
//     CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES above 48 KiB), one __syncthreads per k tile;
//   * XOR-swizzled shared layouts, no padding:
//       [row][k] tiles (A; B (N, K)): rows of 32 bf16 = 64 bytes, 16-byte chunk c of row r at
//         r * 64 + 16 * (c ^ ((r / 2) % 4)): the 8 rows an ldmatrix phase reads (8 consecutive
//         rows, one chunk) land in 8 distinct 16-byte bank groups, and so do 8 consecutive
//         cp.async chunks (2 rows x 4 chunks);
//       [k][n] tiles (B (K, N), BN >= 64): chunk c of k row r at r * 2 BN + 16 * (c ^ (r % 8)):
//         ldmatrix.trans reads 8 consecutive k rows of one chunk -> 8 distinct bank groups;
//   * the epilogue stages each warp's 16-row slabs of f32 results in shared memory (row stride
//     W + 8 floats: conflict-free float2 writes of the mma C fragments) and reads them back as
//     whole 4- or 8-column chunks per thread (two float4 reads, their order swapped on alternate
//     lane groups: conflict-free; checked by the profiler's bank-conflict counter), so the
//     global stores are 16 bytes per thread and whole 32-byte sectors.
// ------------------------------------------------------------------------------------------------
#pragma once

#include "common.cuh"
#include "mma.cuh"

template <uint32_t BM_, uint32_t BN_, uint32_t WARPS_M_, uint32_t WARPS_N_, uint32_t STAGES_>
struct GemmTileConfig {
  enum : uint32_t { BM = BM_, BN = BN_, BK = 32, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, STAGES = STAGES_ };
  enum : uint32_t { WARPS = WARPS_M * WARPS_N, THREADS = WARPS * WARP_SIZE };
  enum : uint32_t { WM = BM / WARPS_M, WN = BN / WARPS_N, TM = WM / MMA_M, TN = WN / MMA_N };
  enum : uint32_t { A_BYTES = BM * BK * 2, B_BYTES = BN * BK * 2, STAGE_BYTES = A_BYTES + B_BYTES };
  enum : uint32_t { PIPE_BYTES = STAGES * STAGE_BYTES };
  // Epilogue staging: one 16-row slab of W <= WN f32 columns per warp, row stride WN + 8.
  enum : uint32_t { EPI_LD = WN + 8, EPI_WARP_FLOATS = MMA_M * EPI_LD, EPI_BYTES = WARPS * EPI_WARP_FLOATS * 4 };
  enum : uint32_t { SMEM_BYTES = PIPE_BYTES > EPI_BYTES ? PIPE_BYTES : EPI_BYTES };
  static_assert(BM % WARPS_M == 0 && BN % WARPS_N == 0, "warp grid");
  static_assert(WM % MMA_M == 0 && WN % (2 * MMA_N) == 0, "warp tile vs mma");
  static_assert(STAGES >= 2, "pipeline");
  static_assert(BM * (BK / CHUNK) % THREADS == 0 && BN * (BK / CHUNK) % THREADS == 0, "whole chunks");
};

// Byte offset of 16-byte chunk c (0..3) of row r in a swizzled [row][32 k] bf16 tile.
__device__ __forceinline__ uint32_t swz_rk(uint32_t r, uint32_t c) { return r * 64u + ((c ^ ((r >> 1) & 3u)) << 4); }
// Byte offset of 16-byte chunk c of k row r in a swizzled [k][BN] bf16 tile.
template <uint32_t BN> __device__ __forceinline__ uint32_t swz_kn(uint32_t r, uint32_t c) {
  static_assert(BN >= 64, "8 chunks per swizzled row");
  return r * (BN * 2u) + ((c ^ (r & 7u)) << 4);
}

// 16-byte cp.async of row `row` (row_ok) of a row-major bf16 operand from column `col` (< cols
// valid; the rest zero-filled) to shared address dst. base, ld, col multiples of 8 elements.
__device__ __forceinline__ void cp_chunk(uint32_t dst, const uint16_t* base, uint64_t row, bool row_ok, uint32_t col,
                                         uint32_t cols, uint64_t ld) {
  const uint32_t valid = (row_ok && col < cols) ? min(cols - col, (uint32_t)CHUNK) : 0u;
  const uint16_t* src = valid > 0 ? base + row * ld + col : base; // src-size 0 reads nothing
  cp_async_16(dst, src, valid * 2);
}

// ------------------------------------------------------------------------------------------------
// loader policies: load(stage tile shared address, k0, tid) issues the cp.asyncs of one k tile.
// KN: the tile is [k][n] (fragments via ldmatrix.trans), else [row][k].
// ------------------------------------------------------------------------------------------------

// ROWS x 32 tile of a row-major (rows, K) bf16 operand from row r0 (A; B (N, K)). GEGLU (B only):
// tile rows 16i..16i+7 are value rows r0 + 8i.., 16i+8.. their gate rows n + r0 + 8i.. .
template <uint32_t ROWS, uint32_t THREADS> struct RowTileLoader {
  enum : bool { KN = false };
  const uint16_t* base;
  uint64_t ld;
  uint32_t r0, rows, k;
  bool geglu;
  __device__ __forceinline__ void load(uint32_t dst, uint32_t k0, uint32_t tid) const {
#pragma unroll
    for (uint32_t i = 0; i < ROWS * 4 / THREADS; ++i) {
      const uint32_t chunk = tid + i * THREADS;
      const uint32_t r = chunk / 4, c = chunk % 4;
      uint32_t row = r0 + r;
      bool ok = row < rows;
      if (geglu) {
        const uint32_t col = r0 + (r / 16) * 8 + r % 8;
        ok = col < rows;
        row = (r % 16) >= 8 ? rows + col : col;
      }
      cp_chunk(dst + swz_rk(r, c), base, row, ok, k0 + c * CHUNK, k, ld);
    }
  }
};

// 32 x BN tile of a row-major (K, N) bf16 operand from column n0 (B of matmul).
template <uint32_t BN, uint32_t THREADS> struct KnTileLoader {
  enum : bool { KN = true };
  const uint16_t* base;
  uint64_t ld;
  uint32_t n0, n, k;
  __device__ __forceinline__ void load(uint32_t dst, uint32_t k0, uint32_t tid) const {
    constexpr uint32_t CPR = BN / CHUNK;
#pragma unroll
    for (uint32_t i = 0; i < 32 * CPR / THREADS; ++i) {
      const uint32_t chunk = tid + i * THREADS;
      const uint32_t r = chunk / CPR, c = chunk % CPR;
      cp_chunk(dst + swz_kn<BN>(r, c), base, k0 + r, k0 + r < k, n0 + c * CHUNK, n, ld);
    }
  }
};

// ------------------------------------------------------------------------------------------------
// persistent tile scheduler
// ------------------------------------------------------------------------------------------------

// Output tile t of a (batch, tiles_m x tiles_n) tile grid in swizzled (rastered) order: batch-major;
// inside a batch, groups of `group` tile rows sweep the tile columns one column at a time (the
// tiles of one column of a group consecutive), the last group holding the remaining rows.
// A persistent CTA takes t = blockIdx.x, + gridDim.x, ..: the CTAs resident together work on
// neighbouring tiles of a group, which share A row panels and B column panels in the L2.
struct RasterTile {
  uint32_t batch, row, col; // tile coordinates (multiply by BM / BN)
};
__device__ __forceinline__ RasterTile raster_tile(uint32_t t, uint32_t tiles_m, uint32_t tiles_n, uint32_t group) {
  const uint32_t per_batch = tiles_m * tiles_n;
  const uint32_t b = t / per_batch, r = t % per_batch;
  const uint32_t per_group = group * tiles_n;
  const uint32_t first = (r / per_group) * group;
  const uint32_t rows = min(tiles_m - first, group);
  const uint32_t rr = r % per_group;
  return RasterTile{b, first + rr % rows, rr / rows};
}

// ------------------------------------------------------------------------------------------------
// mainloop
// ------------------------------------------------------------------------------------------------

// acc += the k tiles [kt0, kt1) of this warp's (WM x WN) part of the CTA tile: A rows from the A
// loader's tile row WM * wm, B columns WN * wn (mma tile j at 8 j, layout as mma.cuh: c0, c1 at
// (lane / 4, 2 (lane % 4)), c2, c3 eight rows below). smem: Cfg::PIPE_BYTES of dynamic shared
// memory. On return every cp.async has completed and the block is synchronised (smem reusable).
template <class Cfg, class AL, class BL>
__device__ __forceinline__ void gemm_mainloop_v2(uint8_t* smem, const AL& la, const BL& lb, uint32_t kt0, uint32_t kt1,
                                                 uint32_t wm, uint32_t wn, uint32_t lane,
                                                 float (&acc)[Cfg::TM][Cfg::TN][4]) {
  const uint32_t tid = threadIdx.x;
  const uint32_t s0 = smem_u32(smem);
  auto a_at = [&](uint32_t st) { return s0 + st * Cfg::STAGE_BYTES; };
  auto b_at = [&](uint32_t st) { return s0 + st * Cfg::STAGE_BYTES + Cfg::A_BYTES; };
  zero_acc(acc);
  const uint32_t n = kt1 > kt0 ? kt1 - kt0 : 0;
#pragma unroll
  for (uint32_t s = 0; s + 1 < Cfg::STAGES; ++s) {
    if (s < n) {
      la.load(a_at(s), (kt0 + s) * Cfg::BK, tid);
      lb.load(b_at(s), (kt0 + s) * Cfg::BK, tid);
    }
    cp_async_commit();
  }
  const uint32_t a_row0 = wm * Cfg::WM, b_col0 = wn * Cfg::WN;
  for (uint32_t t = 0; t < n; ++t) {
    cp_async_wait<Cfg::STAGES - 2>(); // tile t landed (this thread's copies)
    __syncthreads();                  // ... every thread's; and tile t - 1's stage is free
    const uint32_t pf = t + Cfg::STAGES - 1;
    if (pf < n) {
      la.load(a_at(pf % Cfg::STAGES), (kt0 + pf) * Cfg::BK, tid);
      lb.load(b_at(pf % Cfg::STAGES), (kt0 + pf) * Cfg::BK, tid);
    }
    cp_async_commit();
    const uint32_t sa = a_at(t % Cfg::STAGES), sb = b_at(t % Cfg::STAGES);
#pragma unroll
    for (uint32_t kk = 0; kk < Cfg::BK; kk += MMA_K) {
      uint32_t af[Cfg::TM][4], bf[Cfg::TN][2];
#pragma unroll
      for (uint32_t i = 0; i < Cfg::TM; ++i) {
        // lanes 0-15: rows 0-15 at k chunk kk/8; lanes 16-31: the next chunk -> a0..a3
        ldmatrix_x4(af[i], sa + swz_rk(a_row0 + i * MMA_M + lane % 16, kk / 8 + lane / 16));
      }
#pragma unroll
      for (uint32_t j = 0; j < Cfg::TN; j += 2) {
        uint32_t r[4];
        if constexpr (BL::KN) {
          // (k 0-7, n-tile j), (k 8-15, j), (k 0-7, j+1), (k 8-15, j+1), transposed
          const uint32_t krow = kk + lane % 8 + ((lane / 8) % 2) * 8;
          ldmatrix_x4_trans(r, sb + swz_kn<Cfg::BN>(krow, (b_col0 + j * MMA_N) / 8 + lane / 16));
        } else {
          // (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
          const uint32_t row = b_col0 + j * MMA_N + lane % 8 + (lane / 16) * 8;
          ldmatrix_x4(r, sb + swz_rk(row, kk / 8 + (lane / 8) % 2));
        }
        bf[j][0] = r[0];
        bf[j][1] = r[1];
        bf[j + 1][0] = r[2];
        bf[j + 1][1] = r[3];
      }
      mma_tiles(acc, af, bf);
    }
  }
  cp_async_wait<0>();
  __syncthreads();
}

// ------------------------------------------------------------------------------------------------
// staged epilogue
// ------------------------------------------------------------------------------------------------

// For each 16-row slab i of this warp's tile: val(i, jj, h, e) (the f32 result of staged column
// 8 jj + 2 (lane % 4) + e, row lane / 4 + 8 h of the slab; jj < W / 8) is written to the warp's
// staging buffer `wbuf` (Cfg::EPI_WARP_FLOATS floats), then f(i, r, c, v) is called for whole
// chunks of CH consecutive columns (c = first column, multiple of CH; r = row in the slab;
// v = the CH values), 16 W / CH / 32 chunks per lane per slab.
// Conflict-free (W, CH): (16, 8), (32, 4), (32, 8), (64, 4), (64, 8) with row stride WN + 8 and
// W = WN or WN / 2 (checked exhaustively, docs/kernels.md).
template <class Cfg, uint32_t W, uint32_t CH, typename Val, typename F>
__device__ __forceinline__ void warp_staged_epilogue(float* wbuf, uint32_t lane, Val&& val, F&& f) {
  constexpr uint32_t LD = W + 8;
  static_assert(W <= Cfg::WN && W % 8 == 0 && (CH == 4 || CH == 8) && (16 * W / CH) % WARP_SIZE == 0, "slab");
  static_assert(!(W == 16 && CH == 4), "no conflict-free read order");
  constexpr uint32_t CPR = W / CH;
  // CH = 8: the two float4 halves in lane-dependent order (see above).
  const uint32_t order = CH == 8 ? (W == 16 ? (lane >> 1) & 1u : (lane >> 2) & 1u) : 0u;
#pragma unroll
  for (uint32_t i = 0; i < Cfg::TM; ++i) {
#pragma unroll
    for (uint32_t jj = 0; jj < W / 8; ++jj)
#pragma unroll
      for (uint32_t h = 0; h < 2; ++h) {
        const uint32_t row = lane / 4 + 8 * h, col = jj * 8 + 2 * (lane % 4);
        *reinterpret_cast<float2*>(&wbuf[row * LD + col]) = make_float2(val(i, jj, h, 0u), val(i, jj, h, 1u));
      }
    __syncwarp();
#pragma unroll
    for (uint32_t it = 0; it < 16 * CPR / WARP_SIZE; ++it) {
      const uint32_t idx = lane + it * WARP_SIZE;
      const uint32_t r = idx / CPR, c = (idx % CPR) * CH;
      float v[CH];
      const float* src = &wbuf[r * LD + c];
      if constexpr (CH == 8) {
        // first read the half `order`, then the other (selects, no dynamic register indexing)
        const float4 x0 = *reinterpret_cast<const float4*>(src + 4 * order);
        const float4 x1 = *reinterpret_cast<const float4*>(src + 4 * (order ^ 1u));
        const float4 lo = order ? x1 : x0, hi = order ? x0 : x1;
        v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w;
        v[CH / 2] = hi.x, v[CH / 2 + 1] = hi.y, v[CH / 2 + 2] = hi.z, v[CH / 2 + 3] = hi.w;
      } else {
        const float4 x = *reinterpret_cast<const float4*>(src);
        v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
      }
      f(i, r, c, v);
    }
    __syncwarp(); // reads done before the next slab overwrites the buffer
  }
}
