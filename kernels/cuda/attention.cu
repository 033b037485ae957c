// ------------------------------------------------------------------------------------------------
// attention.cu: fused multi-head attention forward, flash style (online softmax; the score matrix
// never leaves registers), bf16 storage, f32 accumulation on tensor cores.
//
//   O[b, h, i, :] = sum_j softmax_j(scale * Q[b, h, i, :] . K[b, h, j, :]) V[b, h, j, :]
//
//   Q : (B, H, Lq, D) bf16, K / V : (B, H, Lk, D) bf16, O : (B, H, Lq, D) bf16, any batch / head /
//   row strides in elements (so (B, L, H, D) projections work without a transpose). D <= DP of the
//   entry, D % 8 == 0 (40, 64, 80, 128, 160); columns D..DP are zero-padded in shared memory.
//   Any Lq >= 0, Lk >= 1 (Lk > Lq for reference attention, Lk = 4..32 audio tokens, Lq = Lk =
//   frames for temporal attention); tails are masked (-inf scores, zero-filled loads, guarded stores).
//
// Versions:
//   v1: one block per 64 query rows of one (b, h), 4 warps x 16 rows; per key tile of BN keys:
//       S = Q K^T by mma.m16n8k16 (Q fragments held in registers for the whole kernel, K fragments
//       by ldmatrix), online softmax in exp2 with quad shuffles, P re-packed from the S accumulators
//       into A fragments, O += P V with V fragments by ldmatrix.trans. K and V tiles single-buffered
//       in shared memory, loaded by cp.async so that V_j lands while S_j is computed and K_{j+1}
//       while P_j V_j is.  Traits: DP 48/64/80 with BN 64, DP 128/160 with BN 32.     <- ships
// Entries: attention_d{48,64,80,128,160}_v1_bf16 (padded head dim); one AttentionParams.
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "mma.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/attention.rs): grid = (ceil(Lq / ATTN_BM), H, B), block = ATTN_THREADS,
// static smem only (attn_smem_bytes<DP, BN>).
enum : uint32_t { ATTN_BM = 64, ATTN_WARPS = 4, ATTN_THREADS = ATTN_WARPS * WARP_SIZE };
enum : uint32_t { ATTN_WARP_ROWS = ATTN_BM / ATTN_WARPS }; // 16 = one mma M

template <uint32_t DP_, uint32_t BN_> struct AttnTraits {
  static constexpr uint32_t DP = DP_;        // padded head dim
  static constexpr uint32_t BN = BN_;        // keys per tile
  static constexpr uint32_t LDS = DP + 8;    // padded smem row (16 bytes): conflict-free ldmatrix
  static constexpr uint32_t KSTEPS = DP / MMA_K;  // QK^T k-steps
  static constexpr uint32_t SN = BN / MMA_N;      // S n-tiles per warp
  static constexpr uint32_t ON = DP / MMA_N;      // O n-tiles per warp
  static constexpr uint32_t SMEM = (ATTN_BM + 2 * BN) * LDS * 2;
  static_assert(DP % MMA_K == 0 && BN % MMA_K == 0, "tiles vs mma");
  static_assert(ATTN_WARP_ROWS == MMA_M, "one mma row block per warp");
  static_assert((LDS * 2) % 16 == 0, "16-byte aligned smem rows");
  static_assert(SMEM <= 48 * 1024, "static shared memory limit");
};

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/attention.rs `AttentionParams`, 136 bytes)
// ------------------------------------------------------------------------------------------------

struct AttentionParams {
  const void* q; // (B, H, Lq, D) bf16 (strided)
  const void* k; // (B, H, Lk, D) bf16
  const void* v; // (B, H, Lk, D) bf16
  void* o;       // (B, H, Lq, D) bf16
  uint64_t q_batch, q_head; // strides in elements
  uint64_t k_batch, k_head;
  uint64_t v_batch, v_head;
  uint64_t o_batch, o_head;
  uint32_t q_row, k_row, v_row, o_row;
  uint32_t heads, lq, lk, d;
  float scale_log2; // softmax scale * log2(e)
  // 1 when q, k, v are 16-byte aligned and every q/k/v stride is a multiple of 8: cp.async path.
  uint32_t aligned;
};

// ------------------------------------------------------------------------------------------------
// device helpers
// ------------------------------------------------------------------------------------------------

// rows x DP tile of a (rows_total, ld) operand from row r0 into smem (zero past rows_total / d).
template <uint32_t ROWS, uint32_t DP, uint32_t LDS>
__device__ __forceinline__ void load_tile(__nv_bfloat16 (*dst)[LDS], const uint16_t* base, uint32_t r0,
                                          uint32_t rows_total, uint32_t d, uint64_t ld, bool aligned) {
  constexpr uint32_t CPR = DP / CHUNK;
  for (uint32_t c = threadIdx.x; c < ROWS * CPR; c += ATTN_THREADS) {
    const uint32_t r = c / CPR;
    const uint32_t col = (c % CPR) * CHUNK;
    load_chunk(&dst[r][col], base, r0 + r, r0 + r < rows_total, col, d, ld, aligned);
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

// ------------------------------------------------------------------------------------------------
// mainloop
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void attention_v1(const AttentionParams& p) {
  constexpr uint32_t DP = T::DP, BN = T::BN, LDS = T::LDS;
  __shared__ __align__(16) __nv_bfloat16 sq[ATTN_BM][LDS];
  __shared__ __align__(16) __nv_bfloat16 sk[BN][LDS];
  __shared__ __align__(16) __nv_bfloat16 sv[BN][LDS];

  const uint32_t lane = threadIdx.x % WARP_SIZE;
  const uint32_t warp = threadIdx.x / WARP_SIZE;
  const uint32_t q0 = blockIdx.x * ATTN_BM;
  const uint32_t head = blockIdx.y, batch = blockIdx.z;
  const bool aligned = p.aligned != 0;
  const uint16_t* q = static_cast<const uint16_t*>(p.q) + batch * p.q_batch + head * p.q_head;
  const uint16_t* k = static_cast<const uint16_t*>(p.k) + batch * p.k_batch + head * p.k_head;
  const uint16_t* v = static_cast<const uint16_t*>(p.v) + batch * p.v_batch + head * p.v_head;

  load_tile<ATTN_BM, DP, LDS>(sq, q, q0, p.lq, p.d, p.q_row, aligned);
  load_tile<BN, DP, LDS>(sk, k, 0, p.lk, p.d, p.k_row, aligned);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  // Q fragments of this warp's 16 rows, kept for every key tile.
  uint32_t qf[T::KSTEPS][4];
#pragma unroll
  for (uint32_t kk = 0; kk < T::KSTEPS; ++kk) {
    const uint32_t row = warp * ATTN_WARP_ROWS + (lane % 16);
    ldmatrix_x4(qf[kk], smem_u32(&sq[row][kk * MMA_K + (lane / 16) * 8]));
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
    cp_async_wait<0>();
    __syncthreads(); // K_t visible; every warp done with V_{t-1}
    load_tile<BN, DP, LDS>(sv, v, k0, p.lk, p.d, p.v_row, aligned);
    cp_async_commit();

    // S = Q K_t^T (16 x BN per warp)
    float s[T::SN][4];
#pragma unroll
    for (uint32_t j = 0; j < T::SN; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) s[j][e] = 0.0f;
#pragma unroll
    for (uint32_t kk = 0; kk < T::KSTEPS; ++kk) {
#pragma unroll
      for (uint32_t j = 0; j < T::SN; j += 2) {
        // matrices (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15)
        const uint32_t row = j * MMA_N + (lane % 8) + (lane / 16) * 8;
        const uint32_t col = kk * MMA_K + ((lane / 8) % 2) * 8;
        uint32_t r[4];
        ldmatrix_x4(r, smem_u32(&sk[row][col]));
        const uint32_t b0[2] = {r[0], r[1]};
        const uint32_t b1[2] = {r[2], r[3]};
        mma_bf16_16816(s[j], qf[kk], b0);
        mma_bf16_16816(s[j + 1], qf[kk], b1);
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

    cp_async_wait<0>();
    __syncthreads(); // V_t visible; every warp done with K_t
    if (t + 1 < ntiles) load_tile<BN, DP, LDS>(sk, k, k0 + BN, p.lk, p.d, p.k_row, aligned);
    cp_async_commit();

    // O += P V_t: the S accumulators of n-tiles 2kk, 2kk + 1 are the A fragment of k-step kk.
#pragma unroll
    for (uint32_t kk = 0; kk < BN / MMA_K; ++kk) {
      const uint32_t a[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]), pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (uint32_t j = 0; j < T::ON; j += 2) {
        // matrices (keys 0-7, d-tile j), (keys 8-15, j), (keys 0-7, j+1), (keys 8-15, j+1), transposed
        const uint32_t row = kk * MMA_K + (lane % 8) + ((lane / 8) % 2) * 8;
        const uint32_t col = j * MMA_N + (lane / 16) * 8;
        uint32_t r[4];
        ldmatrix_x4_trans(r, smem_u32(&sv[row][col]));
        const uint32_t b0[2] = {r[0], r[1]};
        const uint32_t b1[2] = {r[2], r[3]};
        mma_bf16_16816(o[j], a, b0);
        mma_bf16_16816(o[j + 1], a, b1);
      }
    }
  }

  // O / l, guarded store of rows < Lq and columns < D.
  uint16_t* out = static_cast<uint16_t*>(p.o) + batch * p.o_batch + head * p.o_head;
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
        if (col < p.d)
          reinterpret_cast<__nv_bfloat16*>(out)[(uint64_t)row * p.o_row + col] =
              __float2bfloat16_rn(o[j][2 * h + e] * inv[h]);
      }
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define ATTN_ENTRY(NAME, DP, BN)                                                                   \
  extern "C" __global__ void __launch_bounds__(ATTN_THREADS) NAME(const AttentionParams p) {        \
    attention_v1<AttnTraits<DP, BN>>(p);                                                           \
  }

ATTN_ENTRY(attention_d48_v1_bf16, 48, 64)
ATTN_ENTRY(attention_d64_v1_bf16, 64, 64)
ATTN_ENTRY(attention_d80_v1_bf16, 80, 64)
ATTN_ENTRY(attention_d128_v1_bf16, 128, 32)
ATTN_ENTRY(attention_d160_v1_bf16, 160, 32)
