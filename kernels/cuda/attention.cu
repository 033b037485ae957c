// ------------------------------------------------------------------------------------------------
// attention.cu: fused multi-head attention forward, flash style (online softmax; the score matrix
// never leaves registers), bf16 or f32 storage, f32 accumulation on bf16 tensor cores.
//
//   O[b, h, i, :] = sum_j softmax_j(scale * Q[b, h, i, :] . K[b, h, j, :]) V[b, h, j, :]
//
//   Q : (B, H, Lq, D), K / V : (B, H, Lk, D), O : (B, H, Lq, D), all bf16 or all f32, any batch /
//   head / row strides in elements: token layouts (B, L, H, D) = the projection outputs, read and
//   written in place (no head split / merge copies; temporal attention over (B H W, F, C) tokens
//   likewise). Keys lk_own..lk may come from a second tensor (k2 / v2, own strides, batch stride 0
//   = shared by the batch): reference attention's extra keys without a concat. Any 1 <= D <= DP of
//   the entry (40, 64, 80, 128, 160 in the model); columns D..DP are zero in shared memory only
//   and never stored.
//   Any Lq >= 0, Lk >= 1 (Lk > Lq for reference attention, Lk = 4..32 audio tokens, Lq = Lk =
//   frames for temporal attention); tails are masked (-inf scores on the last key tile only,
//   zero-filled loads, guarded stores).
//
// Versions:
//   v1: a tile = BM query rows of one (b, h): BM = 128 (8 warps) for DP <= 64, else 64 (4 warps),
//       16 rows per warp; tiles in head-major order; DP >= 80: persistent blocks (grid = the
//       resident blocks) walk the tiles, so the blocks resident together share a few heads' K / V
//       in L2 (DP <= 64: one tile per block); per key tile of BN keys: S = Q K^T by mma.m16n8k16 (Q fragments
//       held in registers for the whole tile, K fragments by ldmatrix from rows padded by 16
//       bytes: conflict-free), online softmax in exp2 with the scale folded into one FMA per score
//       (p = ex2.approx.ftz(s * scale log2e - m * scale log2e), max over raw scores), quad
//       shuffles, P re-packed from the S accumulators into A fragments, O += P V with V fragments
//       by ldmatrix.trans. Warps whose rows are all >= Lq (temporal attention, Lq = 16) only help
//       with the tile loads. K and V tiles single-buffered in shared memory.
//       bf16: tiles loaded by cp.async so that V_j lands while S_j is computed and K_{j+1} while
//       P_j V_j is. FAST path (compile-time, chosen per launch when D % 8 == 0 and q/k/v 16-byte
//       aligned): the pad columns D..DP are zeroed once, every tile chunk is one predicate-free
//       16-byte cp.async at compile-time positions; the output is staged through the warp's own Q
//       rows and written as 16-byte stores (a lane pair per 32-byte sector). Other D: predicated
//       chunks (partial cp.async source sizes, or scalar loads when unaligned), scalar stores.
//       Traits: DP 48/64 with BM 128, BN 64; DP 80 with BM 64, BN 64; DP 128/160 with BM 64, BN
//       32 (static smem (BM + 2 BN) (DP + 8) 2 bytes).                                     <- ships
//       f32 (split): every f32 element is read from HBM once (16-byte loads, 4 per thread-chunk)
//       and stored to shared memory as bf16 hi = bf16(x) and lo = bf16(x - hi) tiles (two planes
//       per operand); S = Qhi Khi + Qlo Khi + Qhi Klo, P (f32 registers) split the same way,
//       O += Phi Vhi + Plo Vhi + Phi Vlo (lo lo, <= 2^-16 relative, dropped); f32 output.
//       Q hi/lo are staged in the K/V region and kept as fragments in registers, so static smem is
//       max(BM, 2 BN) (DP + 8) 4 bytes (28672 .. 45056 bytes, under the 48 KB static limit).
//       Plain (synchronous) tile loads: K_{j+1} / V_j are not overlapped with the mma; always the
//       general (predicated) path. Fills store 8 bytes per plane per thread (conflict-free
//       within a row; a half-warp that crosses a padded row break may take one extra wavefront,
//       as the bf16 cp.async fills do). 0 spills.                                          <- ships
//   short (Lk <= 32, Lq <= 64: temporal attention): one warp per (batch, head), every key in
//       registers, one-pass softmax, exact head dim; see "short" below.                    <- ships
// Entries: attention_d{48,64,80,128,160}_v1_{bf16,f32} (padded head dim),
// attention_short_d{16,32,40,64,80,128,160}_v1_bf16 (exact head dim); one AttentionParams.
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "mma.cuh"
#include "attention_common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/attention.rs): PERSIST entries (DP >= 80): grid = min(ceil(Lq / BM) H B,
// resident blocks per SM x SMs) blocks walking the tiles head-major (attention_v1); the others
// grid = (ceil(Lq / BM), H, B), one tile per block; block = T::THREADS (BM / 16 warps), static
// smem only (AttnTraits::SMEM).
enum : uint32_t { ATTN_WARP_ROWS = 16 }; // query rows per warp = one mma M
enum : uint32_t { F32_CHUNK = 4 };       // f32 per 16-byte load

// S: storage type (__nv_bfloat16, or float = split hi/lo operands).
template <uint32_t DP_, uint32_t BN_, uint32_t BM_, typename S_> struct AttnTraits {
  using S = S_;
  static constexpr bool SPLIT = sizeof(S) == 4; // f32 storage: bf16 hi + lo planes
  static constexpr uint32_t PARTS = SPLIT ? 2 : 1;
  static constexpr uint32_t DP = DP_;        // padded head dim
  // Persistent blocks over head-major tiles for the 64-row entries (DP >= 80: the K / V passes
  // are what the DRAM-bound launches wait for); the 128-row entries (DP <= 64, issue-bound at
  // the paper's shapes) keep one tile per block, whose key loop compiles tighter.
  static constexpr bool PERSIST = DP_ >= 80; // (persistent, their PTX key loop grew 11-17 %)
  static constexpr uint32_t BN = BN_;        // keys per tile
  static constexpr uint32_t BM = BM_;        // query rows per block
  static constexpr uint32_t WARPS = BM / ATTN_WARP_ROWS;
  static constexpr uint32_t THREADS = WARPS * WARP_SIZE;
  static constexpr uint32_t LDS = DP + 8;    // padded smem row (16 bytes): conflict-free ldmatrix
  static constexpr uint32_t KSTEPS = DP / MMA_K;  // QK^T k-steps
  static constexpr uint32_t SN = BN / MMA_N;      // S n-tiles per warp
  static constexpr uint32_t ON = DP / MMA_N;      // O n-tiles per warp
  static constexpr uint32_t CPR = DP / CHUNK;     // 16-byte bf16 chunks per padded row
  // smem rows (of LDS bf16): K planes, V planes, then Q planes (bf16: its own rows; split: Q is
  // staged over the K/V rows before the first K tile lands).
  static constexpr uint32_t KV_ROWS = 2 * PARTS * BN;
  static constexpr uint32_t Q_ROWS = PARTS * BM;
  static constexpr uint32_t Q_ROW0 = SPLIT ? 0 : KV_ROWS;
  static constexpr uint32_t ROWS = SPLIT ? (KV_ROWS > Q_ROWS ? KV_ROWS : Q_ROWS) : KV_ROWS + Q_ROWS;
  static constexpr uint32_t SMEM = ROWS * LDS * 2;
  static_assert(DP % MMA_K == 0 && BN % MMA_K == 0, "tiles vs mma");
  static_assert(BM % ATTN_WARP_ROWS == 0 && ATTN_WARP_ROWS == MMA_M, "one mma row block per warp");
  static_assert((LDS * 2) % 32 == 16, "rows an odd number of 16-byte units apart: conflict-free");
  static_assert(SMEM <= 48 * 1024, "static shared memory limit");
};

// ------------------------------------------------------------------------------------------------
// device helpers
// ------------------------------------------------------------------------------------------------

// Zero columns d..DP of smem rows r0..r0 + ROWS (FAST path: the tile loads never write them):
// every row once per block, the Q rows again per tile (the output is staged through them).
template <typename T, uint32_t ROWS>
__device__ __forceinline__ void zero_pad(__nv_bfloat16* smem, uint32_t r0, uint32_t d, uint32_t tid) {
  constexpr uint32_t U = T::DP / 4; // 8-byte units per row
  for (uint32_t c = tid; c < ROWS * U; c += T::THREADS) {
    const uint32_t col = (c % U) * 4;
    if (col >= d) *reinterpret_cast<uint2*>(smem + (r0 + c / U) * T::LDS + col) = make_uint2(0u, 0u);
  }
}

// ROWS x DP tile of a bf16 operand from row r0 into smem (rows >= rows zero-filled). FAST: d % 8 ==
// 0 and 16-byte aligned rows: one cp.async per 16-byte chunk of columns < d (the pad columns were
// zeroed by zero_pad), chunk positions unrolled at compile time. Else: predicated chunks
// (cp.async with a partial source size when aligned, scalar loads otherwise).
template <typename T, uint32_t ROWS, bool FAST>
__device__ __forceinline__ void load_tile(__nv_bfloat16* dst, const RowSrc<__nv_bfloat16>& s, uint32_t r0,
                                          uint32_t d, bool aligned, uint32_t tid) {
  constexpr uint32_t N = ROWS * T::CPR;
  constexpr uint32_t ITERS = ceil_div(N, T::THREADS);
#pragma unroll
  for (uint32_t i = 0; i < ITERS; ++i) {
    const uint32_t c = tid + i * T::THREADS;
    if (N % T::THREADS != 0 && c >= N) break;
    const uint32_t r = c / T::CPR, col = (c % T::CPR) * CHUNK;
    const uint32_t j = r0 + r;
    const bool ok = j < s.rows;
    __nv_bfloat16* sd = dst + r * T::LDS + col;
    if constexpr (FAST) {
      if (col < d) cp_async_16(smem_u32(sd), ok ? s.row(j) + col : s.a, ok ? 16u : 0u);
    } else {
      const uint32_t valid = (ok && col < d) ? min(d - col, (uint32_t)CHUNK) : 0u;
      const uint16_t* src = reinterpret_cast<const uint16_t*>(valid > 0 ? s.row(j) + col : s.a);
      if (aligned) {
        cp_async_16(smem_u32(sd), src, valid * 2);
      } else {
        uint32_t w[4];
#pragma unroll
        for (uint32_t e = 0; e < 4; ++e) {
          const uint32_t lo = (2 * e < valid) ? src[2 * e] : 0u;
          const uint32_t hi = (2 * e + 1 < valid) ? src[2 * e + 1] : 0u;
          w[e] = lo | (hi << 16);
        }
        *reinterpret_cast<uint4*>(sd) = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
  }
}

// The same from an f32 operand into a hi plane (rows 0..ROWS) and a lo plane (rows ROWS..2 ROWS):
// hi = bf16(x), lo = bf16(x - hi). Thread chunks of 4 f32 (16-byte loads, consecutive threads on
// consecutive chunks of a row), 8-byte shared stores per plane (split entries: FAST is false).
template <typename T, uint32_t ROWS, bool FAST>
__device__ __forceinline__ void load_tile(__nv_bfloat16* dst, const RowSrc<float>& s, uint32_t r0, uint32_t d,
                                          bool aligned, uint32_t tid) {
  constexpr uint32_t CPR = T::DP / F32_CHUNK;
  for (uint32_t c = tid; c < ROWS * CPR; c += T::THREADS) {
    const uint32_t r = c / CPR;
    const uint32_t col = (c % CPR) * F32_CHUNK;
    float x[F32_CHUNK] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint32_t j = r0 + r;
    const uint32_t valid = (j < s.rows && col < d) ? min(d - col, (uint32_t)F32_CHUNK) : 0u;
    if (valid > 0) {
      const float* src = s.row(j) + col;
      if (aligned && valid == F32_CHUNK) {
        const float4 t = *reinterpret_cast<const float4*>(src);
        x[0] = t.x;
        x[1] = t.y;
        x[2] = t.z;
        x[3] = t.w;
      } else {
#pragma unroll
        for (uint32_t e = 0; e < F32_CHUNK; ++e)
          if (e < valid) x[e] = src[e];
      }
    }
    uint32_t hi[2], lo[2];
#pragma unroll
    for (uint32_t e = 0; e < 2; ++e) {
      hi[e] = pack_bf16x2(x[2 * e], x[2 * e + 1]);
      lo[e] = pack_bf16x2(x[2 * e] - bf16_bits_to_f32(hi[e] & 0xffffu), x[2 * e + 1] - bf16_bits_to_f32(hi[e] >> 16));
    }
    *reinterpret_cast<uint2*>(dst + r * T::LDS + col) = make_uint2(hi[0], hi[1]);
    *reinterpret_cast<uint2*>(dst + (ROWS + r) * T::LDS + col) = make_uint2(lo[0], lo[1]);
  }
}

// Async tile loads (bf16) are waited for and committed; split tiles are plain stores (no-ops).
template <bool SPLIT> __device__ __forceinline__ void tiles_commit() {
  if constexpr (!SPLIT) cp_async_commit();
}
template <bool SPLIT> __device__ __forceinline__ void tiles_wait() {
  if constexpr (!SPLIT) cp_async_wait<0>();
}

// O / l of a warp's 16 rows (accumulators o, 1 / l in inv) into smem rows LDS apart: 4-byte stores
// of the accumulator pairs (rows g, g + 8 an odd number of 16-byte units apart: conflict-free);
// returns the row this lane then copies out as 16-byte chunks, each lane pair one 32-byte sector
// of a row: a quarter warp reads rows {0, 2, 4, 6} (or {1, 3, 5, 7}) x 32 bytes, disjoint banks.
template <uint32_t ON, uint32_t LDS>
__device__ __forceinline__ uint32_t stage_o(__nv_bfloat16* so, const float (&o)[ON][4], const float (&inv)[2],
                                            uint32_t lane) {
#pragma unroll
  for (uint32_t h = 0; h < 2; ++h)
#pragma unroll
    for (uint32_t j = 0; j < ON; ++j) {
      const uint32_t r = lane / 4 + h * 8, col = j * MMA_N + (lane % 4) * 2;
      *reinterpret_cast<uint32_t*>(so + r * LDS + col) = pack_bf16x2(o[j][2 * h] * inv[h], o[j][2 * h + 1] * inv[h]);
    }
  __syncwarp();
  return 2 * ((lane / 2) % 4) + (lane / 8) % 2 + 8 * (lane / 16);
}

// ------------------------------------------------------------------------------------------------
// mainloop
// ------------------------------------------------------------------------------------------------

// Tile t (attn_tile): BM query rows of one head. The caller's barrier separates tiles.
template <typename T, bool FAST>
__device__ __forceinline__ void attention_tile(const AttentionParams& p, __nv_bfloat16* smem, uint32_t tile) {
  using S = typename T::S;
  constexpr bool SPLIT = T::SPLIT;
  constexpr uint32_t DP = T::DP, BN = T::BN, BM = T::BM, LDS = T::LDS, PARTS = T::PARTS;
  __nv_bfloat16* sk = smem;                          // PARTS planes of BN rows
  __nv_bfloat16* sv = smem + PARTS * BN * LDS;       // PARTS planes of BN rows
  __nv_bfloat16* sq = smem + T::Q_ROW0 * LDS;        // PARTS planes of BM rows

  // The thread index, opaque per tile (persistent bf16 d128 / d160): what derives from it (every
  // load's and ldmatrix's shared address) is computed once per tile before the key loop rather
  // than hoisted out of the tile loop and then recomputed inside the key loop (which NVVM does);
  // d80 and the split entries keep threadIdx.x (the opaque one costs them spills at their
  // register caps). PTX instructions per key tile vs the one-tile-per-block kernel: d128 -8 %,
  // d160 -5 %, d80 +3 %.
  const uint32_t tid = threadIdx.x + (T::PERSIST && !SPLIT && T::DP > 80 ? opaque_zero() : 0u);
  const uint32_t lane = tid % WARP_SIZE;
  const uint32_t warp = tid / WARP_SIZE;
  const auto [q0, head, batch] = T::PERSIST ? attn_tile<BM>(p, tile) : grid_tile<BM>();
  const bool aligned = (p.aligned & 1u) != 0;
  // Warps whose 16 rows are all >= Lq (short Lq, e.g. temporal attention over 16 frames) share
  // the tile loads and barriers but skip the math.
  const bool active = q0 + warp * ATTN_WARP_ROWS < p.lq;
  const auto [q, k, v] = attn_rows<S>(p, batch, head);

  if (FAST && p.d < DP) zero_pad<T, BM>(smem, T::Q_ROW0, p.d, tid); // staging wrote the previous tile's O
  load_tile<T, BM, FAST>(sq, q, q0, p.d, aligned, tid);
  if constexpr (!SPLIT) load_tile<T, BN, FAST>(sk, k, 0, p.d, aligned, tid);
  tiles_commit<SPLIT>();
  tiles_wait<SPLIT>();
  __syncthreads();

  // Q fragments (hi, and lo when split) of this warp's 16 rows, kept for every key tile.
  uint32_t qf[PARTS][T::KSTEPS][4];
#pragma unroll
  for (uint32_t part = 0; part < PARTS; ++part)
#pragma unroll
    for (uint32_t kk = 0; kk < T::KSTEPS; ++kk) {
      const uint32_t row = part * BM + warp * ATTN_WARP_ROWS + (lane % 16);
      ldmatrix_x4(qf[part][kk], smem_u32(sq + row * LDS + kk * MMA_K + (lane / 16) * 8));
    }
  if constexpr (SPLIT) {
    __syncthreads(); // every warp holds its Q fragments: the K/V rows are free
    load_tile<T, BN, FAST>(sk, k, 0, p.d, aligned, tid);
  }

  float o[T::ON][4];
#pragma unroll
  for (uint32_t j = 0; j < T::ON; ++j)
#pragma unroll
    for (uint32_t e = 0; e < 4; ++e) o[j][e] = 0.0f;
  float m_run[2] = {neg_inf(), neg_inf()}; // rows g, g + 8: running max of the raw scores
  float l_run[2] = {0.0f, 0.0f};           // this thread's partial row sums
  const float sl2 = p.scale_log2;

  const uint32_t ntiles = ceil_div(p.lk, BN);
  for (uint32_t t = 0; t < ntiles; ++t) {
    const uint32_t k0 = t * BN;
    tiles_wait<SPLIT>();
    __syncthreads(); // K_t visible; every warp done with V_{t-1}
    load_tile<T, BN, FAST>(sv, v, k0, p.d, aligned, tid);
    tiles_commit<SPLIT>();

    // S = Q K_t^T (16 x BN per warp); split: Qhi Khi + Qlo Khi + Qhi Klo.
    float s[T::SN][4];
    if (active) {
#pragma unroll
      for (uint32_t j = 0; j < T::SN; ++j)
#pragma unroll
        for (uint32_t e = 0; e < 4; ++e) s[j][e] = 0.0f;
#pragma unroll
      for (uint32_t kk = 0; kk < T::KSTEPS; ++kk) {
#pragma unroll
        for (uint32_t j = 0; j < T::SN; j += 2) {
#pragma unroll
          for (uint32_t part = 0; part < PARTS; ++part) { // K plane
            // matrices (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15)
            const uint32_t row = part * BN + j * MMA_N + (lane % 8) + (lane / 16) * 8;
            const uint32_t col = kk * MMA_K + ((lane / 8) % 2) * 8;
            uint32_t r[4];
            ldmatrix_x4(r, smem_u32(sk + row * LDS + col));
            const uint32_t b0[2] = {r[0], r[1]};
            const uint32_t b1[2] = {r[2], r[3]};
            mma_bf16_16816(s[j], qf[0][kk], b0);
            mma_bf16_16816(s[j + 1], qf[0][kk], b1);
            if (SPLIT && part == 0) { // Qlo Khi
              mma_bf16_16816(s[j], qf[PARTS - 1][kk], b0);
              mma_bf16_16816(s[j + 1], qf[PARTS - 1][kk], b1);
            }
          }
        }
      }

      // Online softmax in the log2 domain: p = 2^(s sl2 - m sl2), one FMA + ex2 per score; only
      // the last (partial) tile masks keys >= Lk.
      if (k0 + BN > p.lk) {
#pragma unroll
        for (uint32_t j = 0; j < T::SN; ++j)
#pragma unroll
          for (uint32_t e = 0; e < 4; ++e) {
            const uint32_t key = k0 + j * MMA_N + (lane % 4) * 2 + (e % 2);
            if (key >= p.lk) s[j][e] = neg_inf();
          }
      }
      float m_new[2] = {m_run[0], m_run[1]};
#pragma unroll
      for (uint32_t j = 0; j < T::SN; ++j)
#pragma unroll
        for (uint32_t e = 0; e < 4; ++e) m_new[e / 2] = fmaxf(m_new[e / 2], s[j][e]);
      float corr[2], msl[2];
      softmax_rescale(m_new, m_run, l_run, corr, msl, sl2);
#pragma unroll
      for (uint32_t j = 0; j < T::SN; ++j)
#pragma unroll
        for (uint32_t e = 0; e < 4; ++e) {
          s[j][e] = ex2_ftz(fmaf(s[j][e], sl2, -msl[e / 2]));
          l_run[e / 2] += s[j][e];
        }
#pragma unroll
      for (uint32_t j = 0; j < T::ON; ++j)
#pragma unroll
        for (uint32_t e = 0; e < 4; ++e) o[j][e] *= corr[e / 2];
    }

    tiles_wait<SPLIT>();
    __syncthreads(); // V_t visible; every warp done with K_t
    if (t + 1 < ntiles) load_tile<T, BN, FAST>(sk, k, k0 + BN, p.d, aligned, tid);
    tiles_commit<SPLIT>();

    // O += P V_t: the S accumulators of n-tiles 2kk, 2kk + 1 are the A fragment of k-step kk;
    // split: Phi Vhi + Plo Vhi + Phi Vlo.
    if (active) {
#pragma unroll
      for (uint32_t kk = 0; kk < BN / MMA_K; ++kk) {
        uint32_t a[PARTS][4];
#pragma unroll
        for (uint32_t e = 0; e < 4; ++e) {
          const float x0 = s[2 * kk + e / 2][(e % 2) * 2], x1 = s[2 * kk + e / 2][(e % 2) * 2 + 1];
          a[0][e] = pack_bf16x2(x0, x1);
          if constexpr (SPLIT)
            a[PARTS - 1][e] =
                pack_bf16x2(x0 - bf16_bits_to_f32(a[0][e] & 0xffffu), x1 - bf16_bits_to_f32(a[0][e] >> 16));
        }
#pragma unroll
        for (uint32_t j = 0; j < T::ON; j += 2) {
#pragma unroll
          for (uint32_t part = 0; part < PARTS; ++part) { // V plane
            // matrices (keys 0-7, d-tile j), (keys 8-15, j), (keys 0-7, j+1), (keys 8-15, j+1), transposed
            const uint32_t row = part * BN + kk * MMA_K + (lane % 8) + ((lane / 8) % 2) * 8;
            const uint32_t col = j * MMA_N + (lane / 16) * 8;
            uint32_t r[4];
            ldmatrix_x4_trans(r, smem_u32(sv + row * LDS + col));
            const uint32_t b0[2] = {r[0], r[1]};
            const uint32_t b1[2] = {r[2], r[3]};
            mma_bf16_16816(o[j], a[0], b0);
            mma_bf16_16816(o[j + 1], a[0], b1);
            if (SPLIT && part == 0) { // Plo Vhi
              mma_bf16_16816(o[j], a[PARTS - 1], b0);
              mma_bf16_16816(o[j + 1], a[PARTS - 1], b1);
            }
          }
        }
      }
    }
  }
  if (!active) return;

  // O / l; rows < Lq and columns < D stored.
  const AttnTile ot = T::PERSIST ? attn_tile<BM>(p, tile) : grid_tile<BM>(); // (decoded again: fewer registers across the key loop)
  S* out = static_cast<S*>(p.o) + ot.batch * p.o_batch + ot.head * p.o_head;
  float inv[2];
#pragma unroll
  for (uint32_t h = 0; h < 2; ++h) inv[h] = 1.0f / quad_sum(l_run[h]);
  const uint32_t wrow0 = ot.q0 + warp * ATTN_WARP_ROWS;
  if constexpr (!SPLIT && FAST) {
    if ((p.aligned & 2u) != 0) {
      // Staged through this warp's own 16 Q rows (free since its Q fragments were taken), then
      // 16-byte loads and global stores.
      __nv_bfloat16* so = sq + warp * ATTN_WARP_ROWS * LDS;
      const uint32_t r = stage_o<T::ON, LDS>(so, o, inv, lane);
      if (wrow0 + r < p.lq) {
        S* dst = out + (uint64_t)(wrow0 + r) * p.o_row;
#pragma unroll
        for (uint32_t kp = 0; kp < T::CPR / 2; ++kp) {
          const uint32_t col = (2 * kp + lane % 2) * CHUNK;
          if (col < p.d) *reinterpret_cast<uint4*>(dst + col) = *reinterpret_cast<const uint4*>(so + r * LDS + col);
        }
      }
      return;
    }
  }
#pragma unroll
  for (uint32_t h = 0; h < 2; ++h) {
    const uint32_t row = wrow0 + lane / 4 + h * 8;
    if (row >= p.lq) continue;
    S* dst = out + (uint64_t)row * p.o_row;
#pragma unroll
    for (uint32_t j = 0; j < T::ON; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 2; ++e) {
        const uint32_t col = j * MMA_N + (lane % 4) * 2 + e;
        if (col < p.d) dst[col] = from_f32<S>(o[j][2 * h + e] * inv[h]);
      }
  }
}

// FAST (compile-time, bf16 only): every 16-byte chunk of a row is either all columns < D or all
// padding, so the loads carry no per-column predicates (D % 8 == 0 and 16-byte aligned operands);
// decided once per launch (uniform). The f32 (split) entries always take the general path (a
// second instantiation pushes d128 / d160 past 255 registers).
// Persistent over the tiles in head-major order (for_each_tile, attention_common.cuh).
template <typename T, bool FAST> __device__ __forceinline__ void attention_v1(const AttentionParams& p, __nv_bfloat16* smem) {
  if constexpr (!T::PERSIST) { // one tile per block, grid (ceil(Lq / BM), H, B)
    if (FAST && p.d < T::DP) zero_pad<T, T::KV_ROWS>(smem, 0, p.d, threadIdx.x);
    attention_tile<T, FAST>(p, smem, 0);
    return;
  }
  if (FAST && p.d < T::DP) zero_pad<T, T::KV_ROWS>(smem, 0, p.d, threadIdx.x); // K / V rows: once
  // (the split entries keep the tile count in a register, the bf16 ones re-derive it: 0 spills
  // at the __launch_bounds__ caps either way round, not the other)
  for_each_tile<T::BM, T::SPLIT>(p, [&](uint32_t t) { attention_tile<T, FAST>(p, smem, t); });
}

template <typename T> __device__ __forceinline__ void attention_entry(const AttentionParams& p) {
  __shared__ __align__(16) __nv_bfloat16 smem[T::ROWS * T::LDS];
  if (!T::SPLIT && (p.aligned & 1u) != 0 && p.d % CHUNK == 0)
    attention_v1<T, true>(p, smem);
  else
    attention_v1<T, false>(p, smem);
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

// MINB: resident blocks per SM the registers must allow (__launch_bounds__' second argument;
// kernels/src/attention.rs `AttnTraits::ctas_per_sm` = what the ptxas report gives).
#define ATTN_ENTRY(NAME, DP, BN, BM, S, MINB)                                                      \
  extern "C" __global__ void __launch_bounds__(BM * 2, MINB) NAME(const AttentionParams p) {       \
    attention_entry<AttnTraits<DP, BN, BM, S>>(p);                                                 \
  }

ATTN_ENTRY(attention_d48_v1_bf16, 48, 64, 128, __nv_bfloat16, 2)
ATTN_ENTRY(attention_d64_v1_bf16, 64, 64, 128, __nv_bfloat16, 1)
ATTN_ENTRY(attention_d80_v1_bf16, 80, 64, 64, __nv_bfloat16, 3)
ATTN_ENTRY(attention_d128_v1_bf16, 128, 32, 64, __nv_bfloat16, 3)
ATTN_ENTRY(attention_d160_v1_bf16, 160, 32, 64, __nv_bfloat16, 2)
ATTN_ENTRY(attention_d48_v1_f32, 48, 64, 128, float, 2)
ATTN_ENTRY(attention_d64_v1_f32, 64, 64, 128, float, 1)
ATTN_ENTRY(attention_d80_v1_f32, 80, 64, 64, float, 3)
ATTN_ENTRY(attention_d128_v1_f32, 128, 32, 64, float, 2)
ATTN_ENTRY(attention_d160_v1_f32, 160, 32, 64, float, 2)

// ------------------------------------------------------------------------------------------------
// short: Lk <= 32, Lq <= 64 (temporal attention: Lq = Lk = frames), many (batch, head) problems
// ------------------------------------------------------------------------------------------------
//
// One warp per (batch, head) problem, W warps per block on W consecutive problems (head fastest:
// the warps of a block read neighbouring columns of the same token rows), no block barriers. Each
// warp stages its problem's K and V (all Lk <= 16 NT keys, rows >= Lk zero-filled) and a 16-row Q
// chunk in its own slice of dynamic shared memory by 16-byte cp.async, at the exact head dim
// (rows D + 8 bf16 apart when D % 16 == 0, else D: an odd number of 16-byte units, so ldmatrix
// and the staging stores are conflict-free); no padding of D to a multiple of 16 (D % 16 == 8
// ends QK^T with one m16n8k8) and no padding of the keys past 16 NT. Per 16-row Q chunk: S = Q K^T
// over all keys at once (NT key tiles, 2 NT accumulator n-tiles), the softmax in one pass (no
// running max: every key is in registers), P re-packed into A fragments, O = P V (ldmatrix.trans),
// O / l staged through the Q rows and stored as 16-byte chunks (lane pairs on one 32-byte sector,
// the v1 pattern). NT = ceil(Lk / 16) (1 or 2 key tiles) is chosen per launch by a uniform
// branch; 4 tiles (Lk 64) were tried and cost every D more registers (d40 72 -> 109: 2 blocks of
// 8 warps per SM instead of 3), so Lk > 32 runs v1. Per problem the HBM traffic is Q, K, V and O
// once, read and written as whole 16-byte chunks of the token rows.
// Launch rule (kernels/src/attention.rs `ShortTraits`): grid = ceil(B H / W), block = 32 W,
// dynamic smem W (16 + 32 NT) LDS 2 bytes; bf16, D % 8 == 0, aligned loads (bit 0).

// m16n8k8: A (16x8, row) a0 (g, 2t..2t+1), a1 (g+8, 2t..); B (8x8, col) b0 (k 2t..2t+1, n g).
__device__ __forceinline__ void mma_bf16_1688(float (&d)[4], const uint32_t (&a)[2], uint32_t b) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(b));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(addr));
}

template <uint32_t D_> struct ShortTraits {
  static constexpr uint32_t D = D_;
  static constexpr uint32_t LDS = D % 16 == 0 ? D + 8 : D; // smem row (bf16)
  static constexpr uint32_t CPR = D / CHUNK;                // 16-byte chunks per row
  static constexpr uint32_t K16 = D / MMA_K;                // k16 steps of QK^T
  static constexpr bool K8 = D % MMA_K != 0;                // + one k8 step
  static constexpr uint32_t ON = D / MMA_N;                 // O n-tiles
  static_assert(D % CHUNK == 0, "D % 8 == 0");
  static_assert((LDS * 2) % 32 == 16, "rows an odd number of 16-byte units apart: conflict-free");
};

// Rows r0..r0 + ROWS of `s` into `dst` (rows >= s.rows zero-filled), one warp.
template <typename T, uint32_t ROWS>
__device__ __forceinline__ void short_load(uint32_t dst, const RowSrc<__nv_bfloat16>& s, uint32_t r0, uint32_t lane) {
  constexpr uint32_t N = ROWS * T::CPR;
#pragma unroll
  for (uint32_t i = 0; i < ceil_div(N, WARP_SIZE); ++i) {
    const uint32_t c = lane + i * WARP_SIZE;
    if (N % WARP_SIZE != 0 && c >= N) break;
    const uint32_t r = c / T::CPR, ch = c % T::CPR;
    const uint32_t j = r0 + r;
    const bool ok = j < s.rows;
    cp_async_16(dst + (r * T::LDS + ch * CHUNK) * 2, ok ? s.row(j) + ch * CHUNK : s.a, ok ? 16u : 0u);
  }
}

template <typename T, uint32_t NT>
__device__ __forceinline__ void attention_short(const AttentionParams& p, __nv_bfloat16* wsm, uint32_t lane,
                                                uint32_t batch, uint32_t head) {
  constexpr uint32_t LDS = T::LDS, SN = 2 * NT;
  const uint32_t sq = smem_u32(wsm);
  const uint32_t sk = sq + MMA_M * LDS * 2;
  const uint32_t sv = sk + NT * MMA_K * LDS * 2;
  const auto [q, k, v] = attn_rows<__nv_bfloat16>(p, batch, head);
  short_load<T, NT * MMA_K>(sk, k, 0, lane);
  short_load<T, NT * MMA_K>(sv, v, 0, lane);
  const float sl2 = p.scale_log2;
  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(p.o) + batch * p.o_batch + head * p.o_head;

  for (uint32_t q0 = 0; q0 < p.lq; q0 += MMA_M) {
    short_load<T, MMA_M>(sq, q, q0, lane);
    cp_async_commit();
    cp_async_wait<0>();
    __syncwarp();

    // S = Q K^T over every key (rows >= Lk are zero: masked below)
    float s[SN][4];
#pragma unroll
    for (uint32_t j = 0; j < SN; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) s[j][e] = 0.0f;
#pragma unroll
    for (uint32_t kk = 0; kk < T::K16; ++kk) {
      uint32_t a[4];
      ldmatrix_x4(a, sq + ((lane % 16) * LDS + kk * MMA_K + (lane / 16) * 8) * 2);
#pragma unroll
      for (uint32_t kt = 0; kt < NT; ++kt) {
        // matrices (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15)
        const uint32_t row = kt * MMA_K + (lane % 8) + (lane / 16) * 8;
        uint32_t r[4];
        ldmatrix_x4(r, sk + (row * LDS + kk * MMA_K + ((lane / 8) % 2) * 8) * 2);
        const uint32_t b0[2] = {r[0], r[1]};
        const uint32_t b1[2] = {r[2], r[3]};
        mma_bf16_16816(s[2 * kt], a, b0);
        mma_bf16_16816(s[2 * kt + 1], a, b1);
      }
    }
    if constexpr (T::K8) { // columns D - 8 .. D
      constexpr uint32_t col = T::K16 * MMA_K;
      uint32_t a[2];
      ldmatrix_x2(a, sq + ((lane % 16) * LDS + col) * 2);
#pragma unroll
      for (uint32_t kt = 0; kt < NT; ++kt) {
        uint32_t r[2]; // matrices (keys 0-7), (keys 8-15)
        ldmatrix_x2(r, sk + ((kt * MMA_K + lane % 16) * LDS + col) * 2);
        mma_bf16_1688(s[2 * kt], a, r[0]);
        mma_bf16_1688(s[2 * kt + 1], a, r[1]);
      }
    }

    // softmax over all keys in one pass (log2 domain, the scale folded into one FMA per score)
    if (p.lk < NT * MMA_K) {
#pragma unroll
      for (uint32_t j = 0; j < SN; ++j)
#pragma unroll
        for (uint32_t e = 0; e < 4; ++e)
          if (j * MMA_N + (lane % 4) * 2 + (e % 2) >= p.lk) s[j][e] = neg_inf();
    }
    float m[2] = {neg_inf(), neg_inf()};
#pragma unroll
    for (uint32_t j = 0; j < SN; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) m[e / 2] = fmaxf(m[e / 2], s[j][e]);
    float l[2] = {0.0f, 0.0f};
#pragma unroll
    for (uint32_t h = 0; h < 2; ++h) m[h] = quad_max(m[h]) * sl2; // finite: Lk >= 1
#pragma unroll
    for (uint32_t j = 0; j < SN; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) {
        s[j][e] = ex2_ftz(fmaf(s[j][e], sl2, -m[e / 2]));
        l[e / 2] += s[j][e];
      }

    // O = P V: S accumulators of n-tiles 2kt, 2kt + 1 = the A fragment of key tile kt
    float o[T::ON][4];
#pragma unroll
    for (uint32_t j = 0; j < T::ON; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) o[j][e] = 0.0f;
#pragma unroll
    for (uint32_t kt = 0; kt < NT; ++kt) {
      uint32_t a[4];
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e)
        a[e] = pack_bf16x2(s[2 * kt + e / 2][(e % 2) * 2], s[2 * kt + e / 2][(e % 2) * 2 + 1]);
      // matrices (keys 0-7, d-tile j), (keys 8-15, j), (keys 0-7, j+1), (keys 8-15, j+1), transposed
      const uint32_t row = kt * MMA_K + (lane % 8) + ((lane / 8) % 2) * 8;
#pragma unroll
      for (uint32_t j = 0; j + 1 < T::ON; j += 2) {
        uint32_t r[4];
        ldmatrix_x4_trans(r, sv + (row * LDS + j * MMA_N + (lane / 16) * 8) * 2);
        const uint32_t b0[2] = {r[0], r[1]};
        const uint32_t b1[2] = {r[2], r[3]};
        mma_bf16_16816(o[j], a, b0);
        mma_bf16_16816(o[j + 1], a, b1);
      }
      if constexpr (T::ON % 2 != 0) {
        uint32_t b[2];
        ldmatrix_x2_trans(b, sv + (row * LDS + (T::ON - 1) * MMA_N) * 2);
        mma_bf16_16816(o[T::ON - 1], a, b);
      }
    }

    // O / l staged through the Q rows (free: every Q fragment was read), 16-byte stores
    __syncwarp();
    float inv[2];
#pragma unroll
    for (uint32_t h = 0; h < 2; ++h) inv[h] = 1.0f / quad_sum(l[h]);
    const uint32_t r = stage_o<T::ON, LDS>(wsm, o, inv, lane);
    if (q0 + r < p.lq) {
      __nv_bfloat16* dst = out + (uint64_t)(q0 + r) * p.o_row;
#pragma unroll
      for (uint32_t kp = 0; kp < ceil_div(T::CPR, 2); ++kp) {
        const uint32_t ch = 2 * kp + lane % 2;
        if (T::CPR % 2 == 0 || ch < T::CPR) {
          const uint4 x = *reinterpret_cast<const uint4*>(wsm + r * LDS + ch * CHUNK);
          if ((p.aligned & 2u) != 0) {
            *reinterpret_cast<uint4*>(dst + ch * CHUNK) = x;
          } else {
            const uint32_t w[4] = {x.x, x.y, x.z, x.w};
            auto* d16 = reinterpret_cast<uint16_t*>(dst + ch * CHUNK);
#pragma unroll
            for (uint32_t e = 0; e < 4; ++e) {
              d16[2 * e] = (uint16_t)(w[e] & 0xffffu);
              d16[2 * e + 1] = (uint16_t)(w[e] >> 16);
            }
          }
        }
      }
    }
    __syncwarp(); // the staging rows are the next chunk's Q rows
  }
}

template <uint32_t D> __device__ __forceinline__ void attention_short_entry(const AttentionParams& p) {
  using T = ShortTraits<D>;
  extern __shared__ __align__(16) uint8_t short_smem[];
  const uint32_t lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
  const uint32_t warps = blockDim.x / WARP_SIZE;
  const uint32_t prob = blockIdx.x * warps + warp;
  const uint32_t batch = prob / p.heads, head = prob % p.heads;
  if (batch >= p.batch) return;
  const uint32_t nt = ceil_div(p.lk, MMA_K); // 1 or 2 (the launcher's rule: Lk <= 32)
  auto* wsm = reinterpret_cast<__nv_bfloat16*>(short_smem) + warp * (MMA_M + 2 * MMA_K * nt) * T::LDS;
  if (nt == 1)
    attention_short<T, 1>(p, wsm, lane, batch, head);
  else
    attention_short<T, 2>(p, wsm, lane, batch, head);
}

#define ATTN_SHORT_ENTRY(D)                                                                                            \
  extern "C" __global__ void __launch_bounds__(256) attention_short_d##D##_v1_bf16(const AttentionParams p) {          \
    attention_short_entry<D>(p);                                                                                       \
  }

ATTN_SHORT_ENTRY(16)
ATTN_SHORT_ENTRY(32)
ATTN_SHORT_ENTRY(40)
ATTN_SHORT_ENTRY(64)
ATTN_SHORT_ENTRY(80)
ATTN_SHORT_ENTRY(128)
ATTN_SHORT_ENTRY(160)
