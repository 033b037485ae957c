// ------------------------------------------------------------------------------------------------
// gemm_mainloop.cuh: the bf16 tensor-core GEMM mainloop shared by gemm.cu (`linear` / `matmul`,
// fused epilogues) and gemm_bf16.cu (f32 or bf16 C + bias), whose params both start with the
// `GemmOperandParams` it reads: one 64x64 output tile of
// A (M, K) . B^T, K in 32-wide tiles double-buffered in shared memory (cp.async when the operands
// are 16-byte aligned, else predicated loads), 2x2 warps of 32x32, ldmatrix fragments,
// mma.sync m16n8k16 with f32 accumulators. Each kernel keeps its own params and epilogue.
//
//   B_KN = false: B is (N, K) (nn.Linear weight), optionally GEGLU-interleaved (value and gate
//                 rows per 8-column mma tile, see gemm.cu);
//   B_KN = true : B is (K, N) (matmul), fragments via ldmatrix.trans.
// ------------------------------------------------------------------------------------------------
#pragma once

#include "common.cuh"
#include "mma.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/gemm.rs, kernels/src/gemm_bf16.rs):
// grid = (ceil(N / GEMM_BN) | GEGLU ceil(N / GEMM_BN_GEGLU), ceil(M / GEMM_BM), batch),
// block = GEMM_THREADS, static smem only.
enum : uint32_t { GEMM_BM = 64, GEMM_BN = 64, GEMM_BK = 32, GEMM_BN_GEGLU = GEMM_BN / 2 };
enum : uint32_t { GEMM_WARPS_M = 2, GEMM_WARPS_N = 2 };
enum : uint32_t { GEMM_THREADS = GEMM_WARPS_M * GEMM_WARPS_N * WARP_SIZE };
enum : uint32_t { GEMM_WM = GEMM_BM / GEMM_WARPS_M, GEMM_WN = GEMM_BN / GEMM_WARPS_N }; // 32 x 32
enum : uint32_t { GEMM_TM = GEMM_WM / MMA_M, GEMM_TN = GEMM_WN / MMA_N };                // 2 x 4
// Shared rows padded by 8 bf16 (16 bytes): 8 ldmatrix row addresses hit 8 distinct bank groups.
enum : uint32_t { GEMM_LDS = GEMM_BK + 8 };    // A and (N, K) B tiles: [row][k]
enum : uint32_t { GEMM_LDS_KN = GEMM_BN + 8 }; // (K, N) B tiles: [k][n]
enum : uint32_t { GEMM_STAGES = 2 };
enum : uint32_t { GEMM_CHUNKS_PER_ROW = GEMM_BK / CHUNK };                          // 4
enum : uint32_t { GEMM_A_CHUNKS = GEMM_BM * GEMM_CHUNKS_PER_ROW / GEMM_THREADS };   // 2 per thread
enum : uint32_t { GEMM_B_CHUNKS = GEMM_BN * GEMM_CHUNKS_PER_ROW / GEMM_THREADS };   // 2 per thread
enum : uint32_t { GEMM_KN_CHUNKS_PER_ROW = GEMM_BN / CHUNK };                       // 8

static_assert(GEMM_WM % MMA_M == 0 && GEMM_WN % (2 * MMA_N) == 0, "warp tile vs mma");
static_assert(GEMM_BK % MMA_K == 0, "k tile vs mma");
static_assert(GEMM_BM * GEMM_CHUNKS_PER_ROW % GEMM_THREADS == 0, "A tile loader");
static_assert(GEMM_BK * GEMM_KN_CHUNKS_PER_ROW == GEMM_B_CHUNKS * GEMM_THREADS, "(K, N) B loader");
static_assert((GEMM_LDS * 2) % 16 == 0 && (GEMM_LDS_KN * 2) % 16 == 0, "16-byte aligned smem rows");
static_assert(GEMM_TN % 2 == 0, "GEGLU pairs value/gate mma tiles");

// ------------------------------------------------------------------------------------------------
// mainloop
// ------------------------------------------------------------------------------------------------

// The operands the mainloop reads: the first member of both kernels' params (mirrored by
// kernels/src/gemm.rs `GemmOperandParams`, 56 bytes).
struct GemmOperandParams {
  const void* a;     // (batch, M, lda) bf16, K contiguous
  const void* b;     // (batch, N | 2N, ldb) bf16 K contiguous, or (batch, K, ldb) N contiguous (B_KN)
  uint64_t stride_a; // elements between batches (0 = broadcast)
  uint64_t stride_b;
  uint32_t m, n, k;  // n = output columns (GEGLU: B has 2n rows)
  uint32_t lda, ldb;
  // 1 when a, b are 16-byte aligned and lda, ldb, stride_a, stride_b are multiples of 8: the
  // cp.async path (a partial chunk at the K edge zero-fills through src-size). 0: plain loads.
  uint32_t aligned;
};

// acc[i][j] = the (i, j) 16x8 mma tile of this warp's 32x32 part of the block tile at (bm, bn) of
// batch entry `batch`:
// rows bm + wm * 32 + i * 16 + {lane / 4, lane / 4 + 8}, columns (GEGLU: smem-interleaved)
// bn + wn * 32 + j * 8 + 2 * (lane % 4) + {0, 1}.
template <bool B_KN>
__device__ __forceinline__ void gemm_mainloop(const GemmOperandParams& p, uint32_t batch, uint32_t bm, uint32_t bn,
                                              bool geglu, float (&acc)[GEMM_TM][GEMM_TN][4]) {
  constexpr uint32_t B_ROWS = B_KN ? GEMM_BK : GEMM_BN;
  constexpr uint32_t B_LDS = B_KN ? GEMM_LDS_KN : GEMM_LDS;
  __shared__ __align__(16) __nv_bfloat16 sa[GEMM_STAGES][GEMM_BM][GEMM_LDS];
  __shared__ __align__(16) __nv_bfloat16 sb[GEMM_STAGES][B_ROWS][B_LDS];

  const uint32_t tid = threadIdx.x;
  uint32_t lane, wm, wn;
  warp_coords<GEMM_WARPS_N>(tid, lane, wm, wn);
  const bool aligned = p.aligned != 0;
  const uint16_t* a = static_cast<const uint16_t*>(p.a) + batch * p.stride_a;
  const uint16_t* b = static_cast<const uint16_t*>(p.b) + batch * p.stride_b;

  auto load_tile = [&](uint32_t stage, uint32_t k0) {
    load_tile_rows<GEMM_BM, GEMM_BK, GEMM_THREADS>(sa[stage], a, tid, bm, p.m, k0, p.k, p.lda, aligned);
#pragma unroll
    for (uint32_t i = 0; i < GEMM_B_CHUNKS; ++i) {
      const uint32_t chunk = tid + i * GEMM_THREADS;
      if (B_KN) {
        const uint32_t r = chunk / GEMM_KN_CHUNKS_PER_ROW;
        const uint32_t nc = (chunk % GEMM_KN_CHUNKS_PER_ROW) * CHUNK;
        load_chunk(&sb[stage][r][nc], b, k0 + r, k0 + r < p.k, bn + nc, p.n, p.ldb, aligned);
      } else {
        const uint32_t r = chunk / GEMM_CHUNKS_PER_ROW;
        const uint32_t kc = (chunk % GEMM_CHUNKS_PER_ROW) * CHUNK;
        // GEGLU: smem rows 16i..16i+7 are value columns bn + 8i.., rows 16i+8.. their gates.
        const uint32_t col = geglu ? bn + (r / 16) * 8 + r % 8 : bn + r;
        const uint32_t brow = (geglu && (r % 16) >= 8) ? p.n + col : col;
        load_chunk(&sb[stage][r][kc], b, brow, col < p.n, k0 + kc, p.k, p.ldb, aligned);
      }
    }
  };

  zero_acc(acc);
  const uint32_t ktiles = ceil_div(p.k, GEMM_BK);
  if (ktiles > 0) load_tile(0, 0);
  cp_async_commit();
  for (uint32_t kt = 0; kt < ktiles; ++kt) {
    const uint32_t stage = kt % GEMM_STAGES;
    if (kt + 1 < ktiles) load_tile((kt + 1) % GEMM_STAGES, (kt + 1) * GEMM_BK);
    cp_async_commit(); // possibly empty: keeps "all but the newest group" = tile kt
    cp_async_wait<1>();
    __syncthreads();   // tile kt visible to every warp

    warp_mma_ktile<B_KN, GEMM_BK>(sa[stage], sb[stage], wm * GEMM_WM, wn * GEMM_WN, lane, acc);
    __syncthreads(); // every warp done with `stage` before it is refilled
  }
}

// This block's output tile and this thread's warp in it.
struct GemmTile {
  uint32_t bm, bn;       // first row and first output column of the block tile
  uint32_t batch;        // batch entry (blockIdx.z)
  uint32_t lane, wm, wn; // lane, warp row and column (warp_coords)
};

// The tile of block (blockIdx.x, blockIdx.y) of batch entry blockIdx.z; blocks span GEMM_BN
// output columns (GEGLU: GEMM_BN_GEGLU).
__device__ __forceinline__ GemmTile gemm_block_tile(bool geglu) {
  GemmTile t;
  warp_coords<GEMM_WARPS_N>(threadIdx.x, t.lane, t.wm, t.wn);
  t.bm = blockIdx.y * GEMM_BM;
  t.bn = blockIdx.x * (geglu ? (uint32_t)GEMM_BN_GEGLU : (uint32_t)GEMM_BN);
  t.batch = blockIdx.z;
  return t;
}

// The mainloop of that block. acc as gemm_mainloop; returns the tile.
template <bool B_KN>
__device__ __forceinline__ GemmTile gemm_block_mainloop(const GemmOperandParams& p, bool geglu,
                                                        float (&acc)[GEMM_TM][GEMM_TN][4]) {
  const GemmTile t = gemm_block_tile(geglu);
  gemm_mainloop<B_KN>(p, t.batch, t.bm, t.bn, geglu, acc);
  return t;
}

// ------------------------------------------------------------------------------------------------
// f32 operands: the split mainloop of gemm.cu's *_v1_f32 entries
// ------------------------------------------------------------------------------------------------
//
// A is f32; B is f32 or bf16 (`B_F32`). Each f32 element is read from global memory once, into
// registers (float4 loads when 16-byte aligned, else predicated scalar loads), split there into
// bf16 hi = bf16(x) and lo = bf16(x - hi) and stored to separate hi and lo shared tiles (same
// padded [row][k] / [k][n] layouts as the bf16 mainloop, so the same ldmatrix fragments and
// fragment loaders (mma.cuh) run on them, each fragment loaded once per k step by
// warp_mma_ktile_split). Products: lo.hi + hi.lo + hi.hi (f32 B), lo.B + hi.B (bf16 B);
// lo.lo is below f32 rounding (docs/kernels.md Numerics). A bf16 B goes through cp.async /
// load_chunk exactly as in the bf16 mainloop.
//
// Why registers, not cp.async f32 tiles: the split must happen once per element per block, not
// once per fragment load (every A element feeds 2 warps' fragments, every B element 2 as well),
// and a bf16 hi/lo smem tile is half the bytes of an f32 one, so the block stays at <= 40 KiB of
// static smem with the same 64x64x32 tile and 2 stages. Software pipeline: tile kt+1's global
// loads are issued into registers before tile kt's MMAs and split/stored into the other stage
// after them, so the loads are in flight during the MMAs.
//
// Split stores are 8 bytes (4 bf16 of one row) per thread. f32 [row][k] tiles (64 x 32): a warp
// slot covers 8 threads per row and rows {0, 4, 1, 5} or {2, 6, 3, 7} of an 8-row group, so each
// half-warp (one 64-bit store phase) writes 2 rows whose 64-byte spans fall on disjoint banks
// (row stride 80 bytes: rows r and r + 4 are 320 = 64 mod 128 bytes apart); each global row is
// still read as whole 128-byte segments. (K, N) tiles (32 x 64): a half-warp writes one whole
// 128-byte smem row.

enum : uint32_t { GEMM_F32X4_PER_ROW = GEMM_BK / 4 };                                 // 8
enum : uint32_t { GEMM_F32_ROW_LOADS = GEMM_BM * GEMM_F32X4_PER_ROW / GEMM_THREADS }; // 4
enum : uint32_t { GEMM_F32X4_PER_KN_ROW = GEMM_BN / 4 };                              // 16
enum : uint32_t { GEMM_F32_KN_LOADS = GEMM_BK * GEMM_F32X4_PER_KN_ROW / GEMM_THREADS }; // 4
static_assert(GEMM_BM == GEMM_BN && GEMM_F32_ROW_LOADS * GEMM_THREADS / WARP_SIZE == 2 * GEMM_BM / 8,
              "two warp slots per 8-row group");

// f32 operand `aligned` bits of GemmOperandParams for the *_v1_f32 entries.
enum : uint32_t { GEMM_F32_A_VEC = 1, GEMM_F32_B_VEC = 2 };

// Four consecutive f32 of row `row` from column `col` (columns >= cols and rows with row_ok false
// read as zero); `vec`: 16-byte aligned rows (float4 load when the 4 are all in range).
__device__ __forceinline__ float4 load_f32x4(const float* base, uint64_t row, bool row_ok, uint32_t col,
                                             uint32_t cols, uint64_t ld, bool vec) {
  float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (row_ok && col < cols) {
    const float* src = base + row * ld + col;
    if (vec && col + 4 <= cols) {
      v = *reinterpret_cast<const float4*>(src);
    } else {
      v.x = src[0];
      if (col + 1 < cols) v.y = src[1];
      if (col + 2 < cols) v.z = src[2];
      if (col + 3 < cols) v.w = src[3];
    }
  }
  return v;
}

// lo part of x given its bf16 hi (as f32): x - hi is exact in f32; 0 when hi is not finite (an
// infinite or NaN x keeps its value through hi alone).
__device__ __forceinline__ float split_lo(float x, float hi) { return fabsf(hi) <= 3.402823466e38f ? x - hi : 0.0f; }

// Four f32 as bf16 hi and lo parts, 8 bytes each, into `hi` and `lo` (8-byte aligned smem).
__device__ __forceinline__ void store_split4(__nv_bfloat16* hi, __nv_bfloat16* lo, float4 v) {
  const uint32_t h0 = pack_bf16x2(v.x, v.y), h1 = pack_bf16x2(v.z, v.w);
  const uint32_t l0 = pack_bf16x2(split_lo(v.x, __uint_as_float(h0 << 16)),
                                  split_lo(v.y, __uint_as_float(h0 & 0xffff0000u)));
  const uint32_t l1 = pack_bf16x2(split_lo(v.z, __uint_as_float(h1 << 16)),
                                  split_lo(v.w, __uint_as_float(h1 & 0xffff0000u)));
  *reinterpret_cast<uint2*>(hi) = make_uint2(h0, h1);
  *reinterpret_cast<uint2*>(lo) = make_uint2(l0, l1);
}

// Tile row and column (f32 units) of load `i` of thread `tid` in a 64 x 32 [row][k] f32 tile
// (the bank-conflict-free slot order above).
__device__ __forceinline__ void f32_row_slot(uint32_t tid, uint32_t i, uint32_t& r, uint32_t& c) {
  const uint32_t lane = tid % WARP_SIZE;
  const uint32_t slot = tid / WARP_SIZE + i * (GEMM_THREADS / WARP_SIZE);
  const uint32_t q = lane / GEMM_F32X4_PER_ROW;
  r = (slot / 2) * 8 + (slot % 2) * 2 + q / 2 + (q % 2) * 4;
  c = (lane % GEMM_F32X4_PER_ROW) * 4;
}

// One BK-deep k tile of split operands into a warp's accumulators (warp_mma_ktile's tiles and
// layouts), each fragment loaded once per 16-wide k step: acc += a_lo.b_hi (A_SPLIT) +
// a_hi.b_lo (B_SPLIT) + a_hi.b_hi, small terms first. An operand that is not split passes its
// one tile as hi (its lo is not read).
template <bool B_KN, bool A_SPLIT, bool B_SPLIT, uint32_t BK, uint32_t TM, uint32_t TN, uint32_t LDA,
          uint32_t LDB>
__device__ __forceinline__ void warp_mma_ktile_split(const __nv_bfloat16 (*a_hi)[LDA], const __nv_bfloat16 (*a_lo)[LDA],
                                                     const __nv_bfloat16 (*b_hi)[LDB], const __nv_bfloat16 (*b_lo)[LDB],
                                                     uint32_t a_row0, uint32_t b_col0, uint32_t lane,
                                                     float (&acc)[TM][TN][4]) {
#pragma unroll
  for (uint32_t kk = 0; kk < BK; kk += MMA_K) {
    uint32_t ah[TM][4], bh[TN][2];
    load_a_frags(a_hi, a_row0, kk, lane, ah);
    load_b_frags<B_KN>(b_hi, b_col0, kk, lane, bh);
    if (A_SPLIT) {
      uint32_t al[TM][4];
      load_a_frags(a_lo, a_row0, kk, lane, al);
      mma_tiles(acc, al, bh);
    }
    if (B_SPLIT) {
      uint32_t bl[TN][2];
      load_b_frags<B_KN>(b_lo, b_col0, kk, lane, bl);
      mma_tiles(acc, ah, bl);
    }
    mma_tiles(acc, ah, bh);
  }
}

// Prologue of a double-buffered k loop with register-staged tiles: fetch(stage, k0) issues a k
// tile's global loads (into registers and / or cp.async), store(stage) writes the registers to
// smem. Tile 0 fetched, stored and committed; returns the number of BK-deep k tiles of K.
template <uint32_t BK, typename Fetch, typename Store>
__device__ __forceinline__ uint32_t register_kloop_prologue(uint32_t k, Fetch&& fetch, Store&& store) {
  const uint32_t ktiles = ceil_div(k, BK);
  if (ktiles > 0) {
    fetch(0, 0);
    store(0);
  }
  cp_async_commit();
  return ktiles;
}

// Same output tile and acc layout as gemm_mainloop; A f32, B f32 (B_F32) or bf16.
template <bool B_KN, bool B_F32>
__device__ __forceinline__ void gemm_split_mainloop(const GemmOperandParams& p, uint32_t batch, uint32_t bm,
                                                    uint32_t bn, bool geglu, float (&acc)[GEMM_TM][GEMM_TN][4]) {
  static_assert(B_F32 || !B_KN, "bf16 B: (N, K) layout only");
  constexpr uint32_t B_ROWS = B_KN ? GEMM_BK : GEMM_BN;
  constexpr uint32_t B_LDS = B_KN ? GEMM_LDS_KN : GEMM_LDS;
  constexpr uint32_t B_PARTS = B_F32 ? 2 : 1;
  __shared__ __align__(16) __nv_bfloat16 sa[2][GEMM_STAGES][GEMM_BM][GEMM_LDS]; // [hi, lo]
  __shared__ __align__(16) __nv_bfloat16 sb[B_PARTS][GEMM_STAGES][B_ROWS][B_LDS];

  const uint32_t tid = threadIdx.x;
  uint32_t lane, wm, wn;
  warp_coords<GEMM_WARPS_N>(tid, lane, wm, wn);
  const bool a_vec = (p.aligned & GEMM_F32_A_VEC) != 0;
  const bool b_vec = (p.aligned & GEMM_F32_B_VEC) != 0;
  const float* a = static_cast<const float*>(p.a) + batch * p.stride_a;

  // B (N, K) row of smem row r (GEGLU: value rows 16i..16i+7, gate rows 16i+8..), and whether
  // its output column exists.
  auto b_row = [&](uint32_t r, bool& ok) -> uint32_t {
    const uint32_t col = geglu ? bn + (r / 16) * 8 + r % 8 : bn + r;
    ok = col < p.n;
    return (geglu && (r % 16) >= 8) ? p.n + col : col;
  };

  float4 ra[GEMM_F32_ROW_LOADS];
  float4 rb[B_F32 ? GEMM_F32_ROW_LOADS : 1];
  // Tile at k0: A (and f32 B) into registers; a bf16 B straight into shared `stage`.
  auto fetch = [&](uint32_t stage, uint32_t k0) {
#pragma unroll
    for (uint32_t i = 0; i < GEMM_F32_ROW_LOADS; ++i) {
      uint32_t r, c;
      f32_row_slot(tid, i, r, c);
      ra[i] = load_f32x4(a, bm + r, bm + r < p.m, k0 + c, p.k, p.lda, a_vec);
    }
    if (B_F32) {
      const float* b = static_cast<const float*>(p.b) + batch * p.stride_b;
#pragma unroll
      for (uint32_t i = 0; i < GEMM_F32_ROW_LOADS; ++i) {
        if (B_KN) {
          const uint32_t chunk = tid + i * GEMM_THREADS;
          const uint32_t r = chunk / GEMM_F32X4_PER_KN_ROW, c = (chunk % GEMM_F32X4_PER_KN_ROW) * 4;
          rb[i] = load_f32x4(b, k0 + r, k0 + r < p.k, bn + c, p.n, p.ldb, b_vec);
        } else {
          uint32_t r, c;
          f32_row_slot(tid, i, r, c);
          bool ok;
          const uint32_t brow = b_row(r, ok);
          rb[i] = load_f32x4(b, brow, ok, k0 + c, p.k, p.ldb, b_vec);
        }
      }
    } else {
      const uint16_t* b = static_cast<const uint16_t*>(p.b) + batch * p.stride_b;
#pragma unroll
      for (uint32_t i = 0; i < GEMM_B_CHUNKS; ++i) {
        const uint32_t chunk = tid + i * GEMM_THREADS;
        const uint32_t r = chunk / GEMM_CHUNKS_PER_ROW;
        const uint32_t kc = (chunk % GEMM_CHUNKS_PER_ROW) * CHUNK;
        bool ok;
        const uint32_t brow = b_row(r, ok);
        load_chunk(&sb[0][stage][r][kc], b, brow, ok, k0 + kc, p.k, p.ldb, b_vec);
      }
    }
  };
  // The registers of the last fetch, split into shared `stage`.
  auto store = [&](uint32_t stage) {
#pragma unroll
    for (uint32_t i = 0; i < GEMM_F32_ROW_LOADS; ++i) {
      uint32_t r, c;
      f32_row_slot(tid, i, r, c);
      store_split4(&sa[0][stage][r][c], &sa[1][stage][r][c], ra[i]);
    }
    if (B_F32) {
#pragma unroll
      for (uint32_t i = 0; i < GEMM_F32_ROW_LOADS; ++i) {
        uint32_t r, c;
        if (B_KN) {
          const uint32_t chunk = tid + i * GEMM_THREADS;
          r = chunk / GEMM_F32X4_PER_KN_ROW;
          c = (chunk % GEMM_F32X4_PER_KN_ROW) * 4;
        } else {
          f32_row_slot(tid, i, r, c);
        }
        store_split4(&sb[0][stage][r][c], &sb[B_PARTS - 1][stage][r][c], rb[i]);
      }
    }
  };

  zero_acc(acc);
  const uint32_t ktiles = register_kloop_prologue<GEMM_BK>(p.k, fetch, store);
  for (uint32_t kt = 0; kt < ktiles; ++kt) {
    const uint32_t stage = kt % GEMM_STAGES;
    const bool next = kt + 1 < ktiles;
    if (next) fetch(stage ^ 1, (kt + 1) * GEMM_BK); // in flight during this tile's MMAs
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads(); // tile kt (split stores and a bf16 B's copies) visible to every warp

    // lo.hi + hi.lo + hi.hi (f32 B); lo.B + hi.B (bf16 B)
    warp_mma_ktile_split<B_KN, true, B_F32, GEMM_BK>(sa[0][stage], sa[1][stage], sb[0][stage],
                                                     sb[B_PARTS - 1][stage], wm * GEMM_WM, wn * GEMM_WN, lane, acc);
    // The other stage was last read by tile kt - 1's MMAs, finished before the previous barrier.
    if (next) store(stage ^ 1);
    __syncthreads(); // every warp done with `stage` and tile kt + 1 stored before the next round
  }
}

// gemm_block_mainloop for the split mainloop.
template <bool B_KN, bool B_F32>
__device__ __forceinline__ GemmTile gemm_block_split_mainloop(const GemmOperandParams& p, bool geglu,
                                                              float (&acc)[GEMM_TM][GEMM_TN][4]) {
  const GemmTile t = gemm_block_tile(geglu);
  gemm_split_mainloop<B_KN, B_F32>(p, t.batch, t.bm, t.bn, geglu, acc);
  return t;
}
