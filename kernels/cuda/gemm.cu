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
// Entries: linear_v1_bf16 (B (N, K), GEGLU allowed), matmul_v1_bf16 (B (K, N)); one GemmParams.
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "mma.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (engine/src/backends/cuda/gemm.rs, kernels/src/gemm.rs):
// grid = (ceil(N / GEMM_BN) | ceil(N / GEMM_BN_GEGLU), ceil(M / GEMM_BM), batch),
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
// params (mirrored by kernels/src/gemm.rs `GemmParams`, 112 bytes)
// ------------------------------------------------------------------------------------------------

struct GemmParams {
  const void* a;        // (batch, M, lda) bf16
  const void* b;        // linear (batch, N | 2N, ldb), matmul (batch, K, ldb) bf16
  const void* bias;     // (N | 2N) bf16, or null
  const void* residual; // (batch, M, ldr) bf16, or null
  void* c;              // (batch, M, ldc) bf16
  uint64_t stride_a;    // elements between batches (0 = broadcast)
  uint64_t stride_b;
  uint64_t stride_r;
  uint64_t stride_c;
  uint32_t m, n, k;     // n = output columns (GEGLU: B has 2n rows)
  uint32_t lda, ldb, ldr, ldc;
  float scale;          // output scale (1 = none)
  uint32_t geglu;       // 1: GEGLU epilogue (linear only)
  // 1 when a, b are 16-byte aligned and lda, ldb, stride_a, stride_b are multiples of 8.
  uint32_t aligned;
};

// ------------------------------------------------------------------------------------------------
// mainloop
// ------------------------------------------------------------------------------------------------

template <bool B_KN>
__device__ __forceinline__ void gemm_v1(const GemmParams& p) {
  constexpr uint32_t B_ROWS = B_KN ? GEMM_BK : GEMM_BN;
  constexpr uint32_t B_LDS = B_KN ? GEMM_LDS_KN : GEMM_LDS;
  __shared__ __align__(16) __nv_bfloat16 sa[GEMM_STAGES][GEMM_BM][GEMM_LDS];
  __shared__ __align__(16) __nv_bfloat16 sb[GEMM_STAGES][B_ROWS][B_LDS];

  const uint32_t tid = threadIdx.x;
  const uint32_t warp = tid / WARP_SIZE;
  const uint32_t lane = tid % WARP_SIZE;
  const uint32_t wm = warp / GEMM_WARPS_N;
  const uint32_t wn = warp % GEMM_WARPS_N;
  const bool geglu = !B_KN && p.geglu != 0;
  const uint32_t bm = blockIdx.y * GEMM_BM;
  const uint32_t bn = blockIdx.x * (geglu ? (uint32_t)GEMM_BN_GEGLU : (uint32_t)GEMM_BN);
  const uint32_t batch = blockIdx.z;
  const bool aligned = p.aligned != 0;

  const uint16_t* a = static_cast<const uint16_t*>(p.a) + batch * p.stride_a;
  const uint16_t* b = static_cast<const uint16_t*>(p.b) + batch * p.stride_b;

  auto load_tile = [&](uint32_t stage, uint32_t k0) {
#pragma unroll
    for (uint32_t i = 0; i < GEMM_A_CHUNKS; ++i) {
      const uint32_t chunk = tid + i * GEMM_THREADS;
      const uint32_t r = chunk / GEMM_CHUNKS_PER_ROW;
      const uint32_t kc = (chunk % GEMM_CHUNKS_PER_ROW) * CHUNK;
      load_chunk(&sa[stage][r][kc], a, bm + r, bm + r < p.m, k0 + kc, p.k, p.lda, aligned);
    }
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

  float acc[GEMM_TM][GEMM_TN][4];
#pragma unroll
  for (uint32_t i = 0; i < GEMM_TM; ++i)
#pragma unroll
    for (uint32_t j = 0; j < GEMM_TN; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  const uint32_t ktiles = ceil_div(p.k, GEMM_BK);
  if (ktiles > 0) load_tile(0, 0);
  cp_async_commit();
  for (uint32_t kt = 0; kt < ktiles; ++kt) {
    const uint32_t stage = kt % GEMM_STAGES;
    if (kt + 1 < ktiles) load_tile((kt + 1) % GEMM_STAGES, (kt + 1) * GEMM_BK);
    cp_async_commit(); // possibly empty: keeps "all but the newest group" = tile kt
    cp_async_wait<1>();
    __syncthreads();   // tile kt visible to every warp

#pragma unroll
    for (uint32_t kk = 0; kk < GEMM_BK; kk += MMA_K) {
      uint32_t af[GEMM_TM][4];
      uint32_t bf[GEMM_TN][2];
#pragma unroll
      for (uint32_t i = 0; i < GEMM_TM; ++i) {
        // lanes 0-15: rows 0-15 at k 0-7; lanes 16-31: rows 0-15 at k 8-15 -> a0..a3
        const uint32_t row = wm * GEMM_WM + i * MMA_M + (lane % 16);
        const uint32_t col = kk + (lane / 16) * 8;
        ldmatrix_x4(af[i], smem_u32(&sa[stage][row][col]));
      }
#pragma unroll
      for (uint32_t j = 0; j < GEMM_TN; j += 2) {
        uint32_t r[4];
        if (B_KN) {
          // matrices (k 0-7, n-tile j), (k 8-15, j), (k 0-7, j+1), (k 8-15, j+1), transposed
          const uint32_t krow = kk + (lane % 8) + ((lane / 8) % 2) * 8;
          const uint32_t ncol = wn * GEMM_WN + j * MMA_N + (lane / 16) * 8;
          ldmatrix_x4_trans(r, smem_u32(&sb[stage][krow][ncol]));
        } else {
          // matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
          const uint32_t row = wn * GEMM_WN + j * MMA_N + (lane % 8) + (lane / 16) * 8;
          const uint32_t col = kk + ((lane / 8) % 2) * 8;
          ldmatrix_x4(r, smem_u32(&sb[stage][row][col]));
        }
        bf[j][0] = r[0];
        bf[j][1] = r[1];
        bf[j + 1][0] = r[2];
        bf[j + 1][1] = r[3];
      }
#pragma unroll
      for (uint32_t i = 0; i < GEMM_TM; ++i)
#pragma unroll
        for (uint32_t j = 0; j < GEMM_TN; ++j) mma_bf16_16816(acc[i][j], af[i], bf[j]);
    }
    __syncthreads(); // every warp done with `stage` before it is refilled
  }

  // Epilogue: c0, c1 at (lane/4, 2*(lane%4) + {0, 1}), c2, c3 eight rows below.
  uint16_t* c = static_cast<uint16_t*>(p.c) + batch * p.stride_c;
  const uint16_t* bias = static_cast<const uint16_t*>(p.bias);
  const uint16_t* res = p.residual ? static_cast<const uint16_t*>(p.residual) + batch * p.stride_r : nullptr;
#pragma unroll
  for (uint32_t j = 0; j < GEMM_TN; ++j) {
    if (geglu && (j % 2) == 1) continue; // gate tile: consumed with its value tile j - 1
    const uint32_t col0 = geglu ? bn + wn * (GEMM_WN / 2) + (j / 2) * MMA_N + (lane % 4) * 2
                                : bn + wn * GEMM_WN + j * MMA_N + (lane % 4) * 2;
#pragma unroll
    for (uint32_t e = 0; e < 2; ++e) {
      const uint32_t col = col0 + e;
      if (col >= p.n) continue;
      float bv = 0.0f, bg = 0.0f;
      if (bias != nullptr) {
        bv = bf16_bits_to_f32(bias[col]);
        if (geglu) bg = bf16_bits_to_f32(bias[p.n + col]);
      }
#pragma unroll
      for (uint32_t i = 0; i < GEMM_TM; ++i) {
#pragma unroll
        for (uint32_t h = 0; h < 2; ++h) {
          const uint32_t row = bm + wm * GEMM_WM + i * MMA_M + lane / 4 + h * 8;
          if (row >= p.m) continue;
          float v = acc[i][j][2 * h + e] + bv;
          if (geglu) v *= gelu_erf(acc[i][j + 1][2 * h + e] + bg);
          if (res != nullptr) v += bf16_bits_to_f32(res[(uint64_t)row * p.ldr + col]);
          v *= p.scale;
          reinterpret_cast<__nv_bfloat16*>(c)[(uint64_t)row * p.ldc + col] = __float2bfloat16_rn(v);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) linear_v1_bf16(const GemmParams p) { gemm_v1<false>(p); }
extern "C" __global__ void __launch_bounds__(GEMM_THREADS) matmul_v1_bf16(const GemmParams p) { gemm_v1<true>(p); }
