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

// The mainloop of block (blockIdx.x, blockIdx.y) of batch entry blockIdx.z; blocks span GEMM_BN
// output columns (GEGLU: GEMM_BN_GEGLU). acc as gemm_mainloop; returns the tile.
template <bool B_KN>
__device__ __forceinline__ GemmTile gemm_block_mainloop(const GemmOperandParams& p, bool geglu,
                                                        float (&acc)[GEMM_TM][GEMM_TN][4]) {
  GemmTile t;
  warp_coords<GEMM_WARPS_N>(threadIdx.x, t.lane, t.wm, t.wn);
  t.bm = blockIdx.y * GEMM_BM;
  t.bn = blockIdx.x * (geglu ? (uint32_t)GEMM_BN_GEGLU : (uint32_t)GEMM_BN);
  t.batch = blockIdx.z;
  gemm_mainloop<B_KN>(p, t.batch, t.bm, t.bn, geglu, acc);
  return t;
}
