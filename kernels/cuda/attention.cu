// ------------------------------------------------------------------------------------------------
// attention.cu: fused multi-head attention forward, flash style (online softmax; the score matrix
// never leaves registers), bf16 or f32 storage, f32 accumulation on bf16 tensor cores.
//
//   O[b, h, i, :] = sum_j softmax_j(scale * Q[b, h, i, :] . K[b, h, j, :]) V[b, h, j, :]
//
//   Q : (B, H, Lq, D), K / V : (B, H, Lk, D), O : (B, H, Lq, D), all bf16 or all f32, any batch /
//   head / row strides in elements (so (B, L, H, D) projections work without a transpose). Any
//   1 <= D <= DP of the entry (40, 64, 80, 128, 160 in the model; D % 8 != 0 takes the plain-load
//   path); columns D..DP are zero-filled in shared memory and never stored.
//   Any Lq >= 0, Lk >= 1 (Lk > Lq for reference attention, Lk = 4..32 audio tokens, Lq = Lk =
//   frames for temporal attention); tails are masked (-inf scores, zero-filled loads, guarded stores).
//
// Versions:
//   v1: one block per 64 query rows of one (b, h), 4 warps x 16 rows; per key tile of BN keys:
//       S = Q K^T by mma.m16n8k16 (Q fragments held in registers for the whole kernel, K fragments
//       by ldmatrix from rows padded by 16 bytes: conflict-free), online softmax in exp2 with quad
//       shuffles, P re-packed from the S accumulators into A fragments, O += P V with V fragments
//       by ldmatrix.trans. K and V tiles single-buffered in shared memory.
//       bf16: tiles loaded by cp.async so that V_j lands while S_j is computed and K_{j+1} while
//       P_j V_j is. Traits: DP 48/64/80 with BN 64, DP 128/160 with BN 32 (static smem
//       (64 + 2 BN) (DP + 8) 2 bytes).                                                    <- ships
//       f32 (split): every f32 element is read from HBM once (16-byte loads, 4 per thread-chunk)
//       and stored to shared memory as bf16 hi = bf16(x) and lo = bf16(x - hi) tiles (two planes
//       per operand); S = Qhi Khi + Qlo Khi + Qhi Klo, P (f32 registers) split the same way,
//       O += Phi Vhi + Plo Vhi + Phi Vlo (lo lo, <= 2^-16 relative, dropped); f32 output.
//       Q hi/lo are staged in the K/V region and kept as fragments in registers, so static smem is
//       max(64, 2 BN) (DP + 8) 4 bytes: DP 48/64/80 with BN 64, DP 128/160 with BN 32 (28672 ..
//       45056 bytes, under the 48 KB static limit). Plain (synchronous) tile loads: K_{j+1} / V_j
//       are not overlapped with the mma. Fills store 8 bytes per plane per thread (conflict-free
//       within a row; a half-warp that crosses a padded row break may take one extra wavefront,
//       as the bf16 cp.async fills do). 0 spills (d160: 244-246 registers).               <- ships
// Entries: attention_d{48,64,80,128,160}_v1_{bf16,f32} (padded head dim); one AttentionParams.
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "mma.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/attention.rs): grid = (ceil(Lq / ATTN_BM), H, B), block = ATTN_THREADS,
// static smem only (AttnTraits::SMEM).
enum : uint32_t { ATTN_BM = 64, ATTN_WARPS = 4, ATTN_THREADS = ATTN_WARPS * WARP_SIZE };
enum : uint32_t { ATTN_WARP_ROWS = ATTN_BM / ATTN_WARPS }; // 16 = one mma M
enum : uint32_t { F32_CHUNK = 4 };                         // f32 per 16-byte load

// S: storage type (__nv_bfloat16, or float = split hi/lo operands).
template <uint32_t DP_, uint32_t BN_, typename S_> struct AttnTraits {
  using S = S_;
  static constexpr bool SPLIT = sizeof(S) == 4; // f32 storage: bf16 hi + lo planes
  static constexpr uint32_t PARTS = SPLIT ? 2 : 1;
  static constexpr uint32_t DP = DP_;        // padded head dim
  static constexpr uint32_t BN = BN_;        // keys per tile
  static constexpr uint32_t LDS = DP + 8;    // padded smem row (16 bytes): conflict-free ldmatrix
  static constexpr uint32_t KSTEPS = DP / MMA_K;  // QK^T k-steps
  static constexpr uint32_t SN = BN / MMA_N;      // S n-tiles per warp
  static constexpr uint32_t ON = DP / MMA_N;      // O n-tiles per warp
  // smem rows (of LDS bf16): K planes, V planes, then Q planes (bf16: its own rows; split: Q is
  // staged over the K/V rows before the first K tile lands).
  static constexpr uint32_t KV_ROWS = 2 * PARTS * BN;
  static constexpr uint32_t Q_ROWS = PARTS * ATTN_BM;
  static constexpr uint32_t Q_ROW0 = SPLIT ? 0 : KV_ROWS;
  static constexpr uint32_t ROWS = SPLIT ? (KV_ROWS > Q_ROWS ? KV_ROWS : Q_ROWS) : KV_ROWS + Q_ROWS;
  static constexpr uint32_t SMEM = ROWS * LDS * 2;
  static_assert(DP % MMA_K == 0 && BN % MMA_K == 0, "tiles vs mma");
  static_assert(ATTN_WARP_ROWS == MMA_M, "one mma row block per warp");
  static_assert((LDS * 2) % 16 == 0, "16-byte aligned smem rows");
  static_assert(SMEM <= 48 * 1024, "static shared memory limit");
};

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/attention.rs `AttentionParams`, 136 bytes)
// ------------------------------------------------------------------------------------------------

struct AttentionParams {
  const void* q; // (B, H, Lq, D) bf16 / f32 (strided)
  const void* k; // (B, H, Lk, D)
  const void* v; // (B, H, Lk, D)
  void* o;       // (B, H, Lq, D)
  uint64_t q_batch, q_head; // strides in elements
  uint64_t k_batch, k_head;
  uint64_t v_batch, v_head;
  uint64_t o_batch, o_head;
  uint32_t q_row, k_row, v_row, o_row;
  uint32_t heads, lq, lk, d;
  float scale_log2; // softmax scale * log2(e)
  // 1 when q, k, v are 16-byte aligned and every q/k/v stride is a multiple of 8: cp.async (bf16) /
  // 16-byte load (f32) path.
  uint32_t aligned;
};

// ------------------------------------------------------------------------------------------------
// device helpers
// ------------------------------------------------------------------------------------------------

// Row r of the smem row array (LDS bf16 per row).
template <uint32_t LDS> __device__ __forceinline__ __nv_bfloat16* row_ptr(__nv_bfloat16* base, uint32_t r) {
  return base + r * LDS;
}

// rows x DP tile of a bf16 (rows_total, ld) operand from row r0 into smem (zero past rows_total / d).
template <uint32_t ROWS, uint32_t DP, uint32_t LDS>
__device__ __forceinline__ void load_tile(__nv_bfloat16* dst, const __nv_bfloat16* base, uint32_t r0,
                                          uint32_t rows_total, uint32_t d, uint64_t ld, bool aligned) {
  constexpr uint32_t CPR = DP / CHUNK;
  const uint16_t* src = reinterpret_cast<const uint16_t*>(base);
  for (uint32_t c = threadIdx.x; c < ROWS * CPR; c += ATTN_THREADS) {
    const uint32_t r = c / CPR;
    const uint32_t col = (c % CPR) * CHUNK;
    load_chunk(row_ptr<LDS>(dst, r) + col, src, r0 + r, r0 + r < rows_total, col, d, ld, aligned);
  }
}

// The same from an f32 operand into a hi plane (rows 0..ROWS) and a lo plane (rows ROWS..2 ROWS):
// hi = bf16(x), lo = bf16(x - hi). Thread chunks of 4 f32 (16-byte loads, consecutive threads on
// consecutive chunks of a row), 8-byte shared stores per plane.
template <uint32_t ROWS, uint32_t DP, uint32_t LDS>
__device__ __forceinline__ void load_tile(__nv_bfloat16* dst, const float* base, uint32_t r0,
                                          uint32_t rows_total, uint32_t d, uint64_t ld, bool aligned) {
  constexpr uint32_t CPR = DP / F32_CHUNK;
  for (uint32_t c = threadIdx.x; c < ROWS * CPR; c += ATTN_THREADS) {
    const uint32_t r = c / CPR;
    const uint32_t col = (c % CPR) * F32_CHUNK;
    float x[F32_CHUNK] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint32_t valid = (r0 + r < rows_total && col < d) ? min(d - col, (uint32_t)F32_CHUNK) : 0u;
    const float* src = base + (uint64_t)(r0 + r) * ld + col;
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
    uint32_t hi[2], lo[2];
#pragma unroll
    for (uint32_t e = 0; e < 2; ++e) {
      hi[e] = pack_bf16x2(x[2 * e], x[2 * e + 1]);
      lo[e] = pack_bf16x2(x[2 * e] - bf16_bits_to_f32(hi[e] & 0xffffu), x[2 * e + 1] - bf16_bits_to_f32(hi[e] >> 16));
    }
    *reinterpret_cast<uint2*>(row_ptr<LDS>(dst, r) + col) = make_uint2(hi[0], hi[1]);
    *reinterpret_cast<uint2*>(row_ptr<LDS>(dst, ROWS + r) + col) = make_uint2(lo[0], lo[1]);
  }
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, 1));
  return fmaxf(v, __shfl_xor_sync(FULL_MASK, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(FULL_MASK, v, 1);
  return v + __shfl_xor_sync(FULL_MASK, v, 2);
}

// Async tile loads (bf16) are waited for and committed; split tiles are plain stores (no-ops).
template <bool SPLIT> __device__ __forceinline__ void tiles_commit() {
  if constexpr (!SPLIT) cp_async_commit();
}
template <bool SPLIT> __device__ __forceinline__ void tiles_wait() {
  if constexpr (!SPLIT) cp_async_wait<0>();
}

// ------------------------------------------------------------------------------------------------
// mainloop
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void attention_v1(const AttentionParams& p) {
  using S = typename T::S;
  constexpr bool SPLIT = T::SPLIT;
  constexpr uint32_t DP = T::DP, BN = T::BN, LDS = T::LDS, PARTS = T::PARTS;
  __shared__ __align__(16) __nv_bfloat16 smem[T::ROWS * LDS];
  __nv_bfloat16* sk = smem;                          // PARTS planes of BN rows
  __nv_bfloat16* sv = smem + PARTS * BN * LDS;       // PARTS planes of BN rows
  __nv_bfloat16* sq = smem + T::Q_ROW0 * LDS;        // PARTS planes of ATTN_BM rows

  const uint32_t lane = threadIdx.x % WARP_SIZE;
  const uint32_t warp = threadIdx.x / WARP_SIZE;
  const uint32_t q0 = blockIdx.x * ATTN_BM;
  const uint32_t head = blockIdx.y, batch = blockIdx.z;
  const bool aligned = p.aligned != 0;
  const S* q = static_cast<const S*>(p.q) + batch * p.q_batch + head * p.q_head;
  const S* k = static_cast<const S*>(p.k) + batch * p.k_batch + head * p.k_head;
  const S* v = static_cast<const S*>(p.v) + batch * p.v_batch + head * p.v_head;

  load_tile<ATTN_BM, DP, LDS>(sq, q, q0, p.lq, p.d, p.q_row, aligned);
  if constexpr (!SPLIT) load_tile<BN, DP, LDS>(sk, k, 0, p.lk, p.d, p.k_row, aligned);
  tiles_commit<SPLIT>();
  tiles_wait<SPLIT>();
  __syncthreads();

  // Q fragments (hi, and lo when split) of this warp's 16 rows, kept for every key tile.
  uint32_t qf[PARTS][T::KSTEPS][4];
#pragma unroll
  for (uint32_t part = 0; part < PARTS; ++part)
#pragma unroll
    for (uint32_t kk = 0; kk < T::KSTEPS; ++kk) {
      const uint32_t row = part * ATTN_BM + warp * ATTN_WARP_ROWS + (lane % 16);
      ldmatrix_x4(qf[part][kk], smem_u32(row_ptr<LDS>(sq, row) + kk * MMA_K + (lane / 16) * 8));
    }
  if constexpr (SPLIT) {
    __syncthreads(); // every warp holds its Q fragments: the K/V rows are free
    load_tile<BN, DP, LDS>(sk, k, 0, p.lk, p.d, p.k_row, aligned);
  }

  float o[T::ON][4];
#pragma unroll
  for (uint32_t j = 0; j < T::ON; ++j)
#pragma unroll
    for (uint32_t e = 0; e < 4; ++e) o[j][e] = 0.0f;
  float m_run[2] = {neg_inf(), neg_inf()}; // rows g, g + 8 (log2 domain)
  float l_run[2] = {0.0f, 0.0f};           // this thread's partial row sums

  const uint32_t ntiles = ceil_div(p.lk, BN);
  for (uint32_t t = 0; t < ntiles; ++t) {
    const uint32_t k0 = t * BN;
    tiles_wait<SPLIT>();
    __syncthreads(); // K_t visible; every warp done with V_{t-1}
    load_tile<BN, DP, LDS>(sv, v, k0, p.lk, p.d, p.v_row, aligned);
    tiles_commit<SPLIT>();

    // S = Q K_t^T (16 x BN per warp); split: Qhi Khi + Qlo Khi + Qhi Klo.
    float s[T::SN][4];
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
          ldmatrix_x4(r, smem_u32(row_ptr<LDS>(sk, row) + col));
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

    // Online softmax: mask keys >= Lk, scale into the log2 domain, rescale O and the row sums.
    float m_new[2] = {m_run[0], m_run[1]};
#pragma unroll
    for (uint32_t j = 0; j < T::SN; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) {
        const uint32_t key = k0 + j * MMA_N + (lane % 4) * 2 + (e % 2);
        s[j][e] = key < p.lk ? s[j][e] * p.scale_log2 : neg_inf();
        m_new[e / 2] = fmaxf(m_new[e / 2], s[j][e]);
      }
    float corr[2];
#pragma unroll
    for (uint32_t h = 0; h < 2; ++h) {
      m_new[h] = quad_max(m_new[h]); // finite: every tile holds at least one key < Lk
      corr[h] = exp2f(m_run[h] - m_new[h]);
      m_run[h] = m_new[h];
      l_run[h] *= corr[h];
    }
#pragma unroll
    for (uint32_t j = 0; j < T::SN; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) {
        s[j][e] = exp2f(s[j][e] - m_new[e / 2]);
        l_run[e / 2] += s[j][e];
      }
#pragma unroll
    for (uint32_t j = 0; j < T::ON; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) o[j][e] *= corr[e / 2];

    tiles_wait<SPLIT>();
    __syncthreads(); // V_t visible; every warp done with K_t
    if (t + 1 < ntiles) load_tile<BN, DP, LDS>(sk, k, k0 + BN, p.lk, p.d, p.k_row, aligned);
    tiles_commit<SPLIT>();

    // O += P V_t: the S accumulators of n-tiles 2kk, 2kk + 1 are the A fragment of k-step kk;
    // split: Phi Vhi + Plo Vhi + Phi Vlo.
#pragma unroll
    for (uint32_t kk = 0; kk < BN / MMA_K; ++kk) {
      uint32_t a[PARTS][4];
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) {
        const float x0 = s[2 * kk + e / 2][(e % 2) * 2], x1 = s[2 * kk + e / 2][(e % 2) * 2 + 1];
        a[0][e] = pack_bf16x2(x0, x1);
        if constexpr (SPLIT)
          a[PARTS - 1][e] = pack_bf16x2(x0 - bf16_bits_to_f32(a[0][e] & 0xffffu), x1 - bf16_bits_to_f32(a[0][e] >> 16));
      }
#pragma unroll
      for (uint32_t j = 0; j < T::ON; j += 2) {
#pragma unroll
        for (uint32_t part = 0; part < PARTS; ++part) { // V plane
          // matrices (keys 0-7, d-tile j), (keys 8-15, j), (keys 0-7, j+1), (keys 8-15, j+1), transposed
          const uint32_t row = part * BN + kk * MMA_K + (lane % 8) + ((lane / 8) % 2) * 8;
          const uint32_t col = j * MMA_N + (lane / 16) * 8;
          uint32_t r[4];
          ldmatrix_x4_trans(r, smem_u32(row_ptr<LDS>(sv, row) + col));
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

  // O / l, guarded store of rows < Lq and columns < D.
  S* out = static_cast<S*>(p.o) + batch * p.o_batch + head * p.o_head;
  float inv[2];
#pragma unroll
  for (uint32_t h = 0; h < 2; ++h) inv[h] = 1.0f / quad_sum(l_run[h]);
#pragma unroll
  for (uint32_t h = 0; h < 2; ++h) {
    const uint32_t row = q0 + warp * ATTN_WARP_ROWS + lane / 4 + h * 8;
    if (row >= p.lq) continue;
#pragma unroll
    for (uint32_t j = 0; j < T::ON; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 2; ++e) {
        const uint32_t col = j * MMA_N + (lane % 4) * 2 + e;
        if (col < p.d) out[(uint64_t)row * p.o_row + col] = from_f32<S>(o[j][2 * h + e] * inv[h]);
      }
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define ATTN_ENTRY(NAME, DP, BN, S)                                                                \
  extern "C" __global__ void __launch_bounds__(ATTN_THREADS) NAME(const AttentionParams p) {        \
    attention_v1<AttnTraits<DP, BN, S>>(p);                                                        \
  }

ATTN_ENTRY(attention_d48_v1_bf16, 48, 64, __nv_bfloat16)
ATTN_ENTRY(attention_d64_v1_bf16, 64, 64, __nv_bfloat16)
ATTN_ENTRY(attention_d80_v1_bf16, 80, 64, __nv_bfloat16)
ATTN_ENTRY(attention_d128_v1_bf16, 128, 32, __nv_bfloat16)
ATTN_ENTRY(attention_d160_v1_bf16, 160, 32, __nv_bfloat16)
ATTN_ENTRY(attention_d48_v1_f32, 48, 64, float)
ATTN_ENTRY(attention_d64_v1_f32, 64, 64, float)
ATTN_ENTRY(attention_d80_v1_f32, 80, 64, float)
ATTN_ENTRY(attention_d128_v1_f32, 128, 32, float)
ATTN_ENTRY(attention_d160_v1_f32, 160, 32, float)
