// arch: sm_90a only
// ------------------------------------------------------------------------------------------------
// attention_sm90.cu: fused multi-head attention forward for Hopper (sm_90a), both GEMMs on wgmma:
//
//   O[b, h, i, :] = sum_j softmax_j(scale * Q[b, h, i, :] . K[b, h, j, :]) V[b, h, j, :]
//
//   Same operands and params as attention.cu (`AttentionParams`, mirrored once in Rust): q, k, v, o
//   strided (token layouts (B, L, H, D) read and written in place), keys lk_own..lk from a second
//   tensor k2 / v2 (batch stride 0 = shared by the batch), any Lq >= 0, Lk >= 1. bf16 only, head
//   dim D % 8 == 0 (entries D = 16, 32, 40, 64, 80, 128, 160: every head dim of the tiny and paper
//   presets), q, k, v 16-byte aligned with strides multiples of 8 elements; everything else runs
//   the sm_80 kernel (the launcher decides).
//
// Design (ships; entries keep the _v1 suffix, the block shape below is their launch rule):
//   Block = WGS consumer warpgroups (128 threads each; WGS = 4 for D = 40, else 2), 64 query rows
//   per warpgroup (BM = 64 WGS) of one (b, h) per tile, all reading the same K / V tiles;
//   persistent: grid = min(ceil(Lq / BM) H B, resident blocks x SMs) blocks walking the tiles in
//   head-major order (the blocks resident together share a few heads' K / V in L2). Every K / V
//   pass over a head serves BM query rows, so the head's K / V is read Lq / BM times (from L2) (d40, the reference / spatial self-attention with Lk 4096..8192, is
//   DRAM-bound on exactly these passes: 4 warpgroups halve them). A warpgroup whose rows are all
//   >= Lq only loads and waits. BN = 128 keys
//   per tile up to D = 80 (S = 64 accumulators per thread), 64 for D = 128 / 160 (O holds up to
//   80). Per key tile:
//     S = Q K^T: DP / 16 wgmma m64nBNk16, A = Q and B = K both from shared memory, K-major;
//       DP = D rounded up to 16 (D = 40 runs K = 48): the pad columns D..DP are zero in shared
//       memory only (written once), never read from or written to HBM.
//     online softmax in f32 on the S accumulators (rows 16 r + l / 4 (+ 8) of warp r: the same
//       quad layout as mma.sync, quad shuffles), exp2 with the scale folded into one FMA per score
//       (p = 2^(s sl2 - m sl2), max over raw scores), masks on the last tile only;
//     P packed to bf16 in registers = the A operand (four registers per 16 keys) of
//     O += P V: BN / 16 wgmma m64nDk16 with A from registers and B = V from shared memory
//       MN-major (imm-trans-b: V is stored as loaded, key rows with D contiguous), N = D when
//       D % 16 == 0; d40 runs N = 48 with V's smem pad column 40 = 1.0 (41..47 = 0), so O column
//       40 is the softmax row sum (of the bf16 P actually multiplied, rescaled with O): one FADD
//       per score less in the issue-bound softmax, 20 % more PV tensor work (LSUM).
//     Descriptors and P are computed before each wgmma.fence, so no non-wgmma instruction defines
//     a wgmma input inside an issue sequence (ptxas does not serialise them: no C7513 advisory).
//   Shared memory (dynamic, 1024-byte aligned): every operand tile in 128B-swizzle atoms (8 rows
//   x 64 bf16, the 16-byte chunk index XOR row % 8): tile = ceil(DP / 64) atom columns x rows x
//   128 bytes; Q (BM rows), then NST = 2 stages of K and of V (BN rows each): 82944 bytes for
//   D = 16 / 32 / 64, 99328 for 40 (BM 256), 164864 for 80, 99328 for 128, 148480 for 160 (with
//   1 KB alignment slack). wgmma
//   reads them conflict-free (the swizzle); the loads write 8 chunks of one row per 8 threads
//   (distinct bank groups after the XOR).
//   Loads: every thread issues 16-byte cp.async (zero-filled past Lk / Lq), coalesced along rows,
//   for a double-buffered ring: tile t + 1 (K and V) is in flight while tile t is computed; then
//   cp.async.wait_group, fence.proxy.async (generic-proxy writes -> wgmma's async proxy), barrier.
//   (TMA would need one tensor map per operand per launch and cannot follow the second key
//   segment's row switch inside a tile; the producer-warp / mbarrier ring and the ping-pong of
//   the two warpgroups are the next steps, not done.)
//   Output: O / l staged through shared memory (rows LDO = D + 8 or D + 16 bf16 apart, LDO % 16 =
//   8: 4-byte accumulator-pair stores conflict-free, 16-byte reads of 8 rows x one chunk
//   conflict-free), then 16-byte global stores (8 rows x 64 contiguous bytes per warp store).
// Entries: attention_sm90_d{16,32,40,64,80,128,160}_v1_bf16; one AttentionParams (200 bytes).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "mma.cuh"
#include "attention_sm90.cuh"
#include "attention_common.cuh"

using BfRows = RowSrc<__nv_bfloat16>; // every operand is bf16 here

enum : uint32_t { WG_THREADS = 128, WG_ROWS = 64, ATOM_BYTES = 128, ATOM_ROWS = 8, ATOM_COLS = 64 };

template <uint32_t D_, uint32_t BN_, uint32_t WGS_> struct Sm90Traits {
  static constexpr uint32_t D = D_;
  static constexpr uint32_t DP = (D + 15) / 16 * 16; // QK^T K (zero-padded in smem only)
  static constexpr uint32_t WGS = WGS_;
  static constexpr uint32_t THREADS = WGS * WG_THREADS;
  static constexpr uint32_t BM = WGS * WG_ROWS;
  static constexpr uint32_t BN = BN_;
  static constexpr uint32_t NST = 2;
  static constexpr uint32_t AC = (DP + ATOM_COLS - 1) / ATOM_COLS; // atom columns per row
  static constexpr uint32_t CPR = D / CHUNK;                        // 16-byte chunks per row
  static constexpr uint32_t Q_BYTES = AC * BM * ATOM_BYTES;
  static constexpr uint32_t KV_BYTES = AC * BN * ATOM_BYTES; // one stage of K (or V)
  static constexpr uint32_t SMEM = Q_BYTES + 2 * NST * KV_BYTES;
  static constexpr uint32_t SMEM_LAUNCH = SMEM + 1024; // + alignment slack
  static constexpr uint32_t LDO = D % 16 == 0 ? D + 8 : D + 16; // output staging row (bf16)
  // D % 16 == 8 (d40): PV runs N = D + 8 with V column D = 1 and D + 1..D + 8 = 0 in shared
  // memory, so O column D accumulates the row sum of P (the same bf16 P as the numerator, scaled by
  // the same corrections): no per-score FADD for l.
  static constexpr bool LSUM = D % 16 != 0;
  static constexpr uint32_t DN = LSUM ? D + 8 : D; // PV N
  static_assert(D % CHUNK == 0 && D <= 256, "D % 8 == 0");
  static_assert(LDO % 16 == 8, "staging rows an odd number of 16-byte units apart");
  static_assert(BM * LDO * 2 <= SMEM, "output staging fits");
  static_assert(SMEM_LAUNCH <= 227 * 1024, "dynamic shared memory limit");
};

// Row r, 16-byte chunk c (< CPR) of a swizzled tile of `rows` rows: byte offset.
__device__ __forceinline__ uint32_t swz(uint32_t rows, uint32_t r, uint32_t c) {
  return (c / 8) * rows * ATOM_BYTES + r * ATOM_BYTES + (((c % 8) ^ (r % ATOM_ROWS)) * 16);
}

// f(r, ch) for every 16-byte chunk ch (< CPR) of rows 0..ROWS of a tile, the block's threads on
// consecutive chunks of a row.
template <typename T, uint32_t ROWS, typename F> __device__ __forceinline__ void for_each_chunk(F&& f) {
  constexpr uint32_t N = ROWS * T::CPR;
#pragma unroll
  for (uint32_t i = 0; i < ceil_div(N, T::THREADS); ++i) {
    const uint32_t c = threadIdx.x + i * T::THREADS;
    if (N % T::THREADS != 0 && c >= N) break;
    f(c / T::CPR, c % T::CPR);
  }
}

// ROWS x D tile from row r0 into a swizzled smem tile (rows >= s.rows zero-filled), 16-byte
// cp.async, consecutive threads on consecutive chunks of a row.
template <typename T, uint32_t ROWS>
__device__ __forceinline__ void load_tile(uint32_t dst, const BfRows& s, uint32_t r0) {
  for_each_chunk<T, ROWS>([&](uint32_t r, uint32_t ch) {
    const uint32_t j = r0 + r;
    const bool ok = j < s.rows;
    cp_async_16(dst + swz(ROWS, r, ch), ok ? s.row(j) + ch * CHUNK : s.a, ok ? 16u : 0u);
  });
}

// The K and V tiles of keys r0..r0 + BN together: one row / segment / zero-fill decision and one
// swizzled smem offset per chunk for both (K and V share the key index; their strides differ).
template <typename T>
__device__ __forceinline__ void load_kv(uint32_t dk, uint32_t dv, const BfRows& k, const BfRows& v, uint32_t r0) {
  for_each_chunk<T, T::BN>([&](uint32_t r, uint32_t ch) {
    const uint32_t j = r0 + r;
    const uint32_t off = swz(T::BN, r, ch);
    if (j < k.rows) {
      const bool own = j < k.split;
      const uint32_t jj = own ? j : j - k.split;
      const __nv_bfloat16* ks = (own ? k.a : k.b) + (uint64_t)jj * (own ? k.lda : k.ldb) + ch * CHUNK;
      const __nv_bfloat16* vs = (own ? v.a : v.b) + (uint64_t)jj * (own ? v.lda : v.ldb) + ch * CHUNK;
      cp_async_16(dk + off, ks, 16u);
      cp_async_16(dv + off, vs, 16u);
    } else {
      cp_async_16(dk + off, k.a, 0u);
      cp_async_16(dv + off, v.a, 0u);
    }
  });
}

// The pad chunk D..DP of rows r0..ROWS of Q, then the K stages, then the V stages (loads never
// write it): zero in Q and K (QK^T's K tail); in V (LSUM) the row-sum column D = 1.0 (bf16
// 0x3f80), the rest zero. Every row once per block, Q's again per tile (the output staging
// overwrites Q's rows).
template <typename T, uint32_t ROWS> __device__ __forceinline__ void zero_pad(uint8_t* smem, uint32_t r0) {
  if constexpr (T::DP != T::D) {
    for (uint32_t r = r0 + threadIdx.x; r < ROWS; r += T::THREADS) {
      const uint32_t base = r < T::BM ? 0u : T::Q_BYTES;
      const uint32_t rows = r < T::BM ? T::BM : T::BN;
      const uint32_t rr = r < T::BM ? r : (r - T::BM) % T::BN;
      const uint32_t stage = r < T::BM ? 0u : (r - T::BM) / T::BN; // K stages, then V stages
      const bool one = T::LSUM && stage >= T::NST;
      *reinterpret_cast<uint4*>(smem + base + stage * T::KV_BYTES + swz(rows, rr, T::CPR)) =
          make_uint4(one ? 0x3f80u : 0u, 0, 0, 0);
    }
  }
}

// Tile t (attn_tile): BM query rows of one head. The caller's barrier separates tiles.
template <typename T> __device__ __forceinline__ void attention_sm90_tile(const AttentionParams& p, uint8_t* smem, uint32_t t) {
  smem += opaque_zero();
  constexpr uint32_t D = T::D, DP = T::DP, BN = T::BN, BM = T::BM;
  constexpr uint32_t SR = BN / 2; // S accumulators per thread
  constexpr uint32_t OR = T::DN / 2; // O accumulators per thread (+ the row sums: LSUM)
  const uint32_t lane = threadIdx.x % WARP_SIZE;
  const uint32_t warp = threadIdx.x / WARP_SIZE; // warp of the block
  const uint32_t wg = warp / 4;
  const auto [q0, head, batch] = attn_tile<BM>(p, t);
  // A warpgroup whose 64 rows are all >= Lq (short Lq: temporal attention over 16 frames) shares
  // the loads and barriers but issues no wgmma (its accumulators are never stored).
  const bool active = q0 + wg * WG_ROWS < p.lq;

  const auto [q, k, v] = attn_rows<__nv_bfloat16>(p, batch, head);

  const uint32_t s_base = smem_u32(smem);
  const uint32_t sq = s_base;
  const uint32_t sk = s_base + T::Q_BYTES;                      // NST stages
  const uint32_t sv = s_base + T::Q_BYTES + T::NST * T::KV_BYTES; // NST stages

  zero_pad<T, BM>(smem, 0); // Q's pad chunks (the previous tile's output staging wrote them)
  load_tile<T, BM>(sq, q, q0);
  load_kv<T>(sk, sv, k, v, 0);
  cp_async_commit();

  float o[OR];
#pragma unroll
  for (uint32_t i = 0; i < OR; ++i) o[i] = 0.0f;
  float s[SR];
#pragma unroll
  for (uint32_t i = 0; i < SR; ++i) s[i] = 0.0f;
  float m_run[2] = {neg_inf(), neg_inf()}; // rows l/4, l/4 + 8 of this warp: raw-score max
  float l_run[2] = {0.0f, 0.0f};           // this thread's partial row sums
  const float sl2 = p.scale_log2;

  // Q descriptor of this warpgroup's 64 rows; K / V descriptors per stage.
  const uint32_t q_wg = sq + wg * WG_ROWS * ATOM_BYTES;
  const uint32_t ntiles = ceil_div(p.lk, BN);
  for (uint32_t t = 0; t < ntiles; ++t) {
    const uint32_t st = t % T::NST;
    cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads(); // tile t visible to every warpgroup; every warpgroup done with tile t - 1
    if (t + 1 < ntiles) {
      const uint32_t nst = (t + 1) % T::NST;
      load_kv<T>(sk + nst * T::KV_BYTES, sv + nst * T::KV_BYTES, k, v, (t + 1) * BN);
    }
    cp_async_commit();

    if (active) {
      // S = Q K_t^T
      // (descriptors computed before the fence: no non-wgmma instruction defines a wgmma input
      // inside the issue sequence, so ptxas keeps the wgmmas pipelined)
      const uint32_t kt = sk + st * T::KV_BYTES;
      uint64_t da[DP / 16], db[DP / 16];
#pragma unroll
      for (uint32_t kk = 0; kk < DP / 16; ++kk) {
        const uint32_t ac = kk / 4, off = (kk % 4) * 32;
        da[kk] = wgmma_desc(q_wg + ac * BM * ATOM_BYTES + off, 16, ATOM_ROWS * ATOM_BYTES);
        db[kk] = wgmma_desc(kt + ac * BN * ATOM_BYTES + off, 16, ATOM_ROWS * ATOM_BYTES);
      }
      wgmma_fence();
#pragma unroll
      for (uint32_t kk = 0; kk < DP / 16; ++kk) Wgmma<BN>::ss(s, da[kk], db[kk], kk > 0 ? 1u : 0u);
      wgmma_commit();
      wgmma_wait<0>();

      // online softmax (log2 domain); only the last tile masks keys >= Lk
      const uint32_t k0 = t * BN;
      if (k0 + BN > p.lk) {
#pragma unroll
        for (uint32_t i = 0; i < SR; ++i) {
          const uint32_t key = k0 + 8 * (i / 4) + 2 * (lane % 4) + i % 2;
          if (key >= p.lk) s[i] = neg_inf();
        }
      }
      float m_new[2] = {m_run[0], m_run[1]};
#pragma unroll
      for (uint32_t i = 0; i < SR; ++i) m_new[(i / 2) % 2] = fmaxf(m_new[(i / 2) % 2], s[i]);
      float corr[2], msl[2];
      softmax_rescale(m_new, m_run, l_run, corr, msl, sl2);
#pragma unroll
      for (uint32_t i = 0; i < SR; ++i) {
        s[i] = ex2_ftz(fmaf(s[i], sl2, -msl[(i / 2) % 2]));
        if constexpr (!T::LSUM) l_run[(i / 2) % 2] += s[i];
      }
#pragma unroll
      for (uint32_t i = 0; i < OR; ++i) o[i] *= corr[(i / 2) % 2];

      // O += P V_t: A register j of k-step kk holds S columns 16 kk + 8 (j / 2) + 2 (l % 4) (+1) of
      // row half j % 2 = accumulators 8 kk + 4 (j / 2) + 2 (j % 2) (+1).
      // V descriptors: MN-major, 128B swizzle: 64 head-dim columns per atom (atoms BN rows apart =
      // LBO), 8-key groups 1024 bytes apart (SBO); k-step kk starts at key row 16 kk.
      const uint32_t vt = sv + st * T::KV_BYTES;
      uint32_t a[BN / 16][4];
      uint64_t dv[BN / 16];
#pragma unroll
      for (uint32_t kk = 0; kk < BN / 16; ++kk) {
#pragma unroll
        for (uint32_t j = 0; j < 4; ++j) {
          const uint32_t i = 8 * kk + 4 * (j / 2) + 2 * (j % 2);
          a[kk][j] = pack_bf16x2(s[i], s[i + 1]);
        }
        dv[kk] = wgmma_desc(vt + kk * 16 * ATOM_BYTES, BN * ATOM_BYTES, ATOM_ROWS * ATOM_BYTES);
      }
      wgmma_fence();
#pragma unroll
      for (uint32_t kk = 0; kk < BN / 16; ++kk) Wgmma<T::DN>::rs(o, a[kk], dv[kk]);
      wgmma_commit();
      wgmma_wait<0>();
      // the accumulators as operands after the wait: no read of them (e.g. LSUM's row-sum bit
      // cast for the shuffle) is hoisted above it
#pragma unroll
      for (uint32_t i = 0; i < OR; ++i) asm volatile("" : "+f"(o[i])::"memory");
    }
  }
  cp_async_wait<0>();
  __syncthreads(); // every wgmma done: the whole smem is free for the output staging

  // O / l, staged per warp (its 16 rows at LDO), then 16-byte stores of rows < Lq.
  float inv[2];
#pragma unroll
  for (uint32_t h = 0; h < 2; ++h) {
    if constexpr (T::LSUM) // column D = accumulator D / 2 + 2 h of the quad's lane 0
      inv[h] = 1.0f / __shfl_sync(FULL_MASK, o[D / 2 + 2 * h], lane & ~3u);
    else
      inv[h] = 1.0f / quad_sum(l_run[h]);
  }
  __nv_bfloat16* so = reinterpret_cast<__nv_bfloat16*>(smem) + warp * 16 * T::LDO;
#pragma unroll
  for (uint32_t i = 0; i < OR; i += 2) {
    const uint32_t h = (i / 2) % 2;
    const uint32_t r = lane / 4 + 8 * h, col = 8 * (i / 4) + 2 * (lane % 4);
    *reinterpret_cast<uint32_t*>(so + r * T::LDO + col) = pack_bf16x2(o[i] * inv[h], o[i + 1] * inv[h]);
  }
  __syncwarp();
  const AttnTile ot = attn_tile<BM>(p, t); // (decoded again: fewer registers across the key loop)
  auto* out = static_cast<__nv_bfloat16*>(p.o) + ot.batch * p.o_batch + ot.head * p.o_head;
  const uint32_t row0 = ot.q0 + warp * 16;
  const bool ostore16 = (p.aligned & 2u) != 0;
#pragma unroll
  for (uint32_t it = 0; it < 2 * ceil_div(T::CPR, 4); ++it) {
    const uint32_t r = lane % 8 + 8 * (it % 2), ch = lane / 8 + 4 * (it / 2);
    if (ch < T::CPR && row0 + r < p.lq) {
      const uint4 x = *reinterpret_cast<const uint4*>(so + r * T::LDO + ch * CHUNK);
      __nv_bfloat16* dst = out + (uint64_t)(row0 + r) * p.o_row + ch * CHUNK;
      if (ostore16) {
        *reinterpret_cast<uint4*>(dst) = x;
      } else {
        const uint32_t w[4] = {x.x, x.y, x.z, x.w};
        auto* d16 = reinterpret_cast<uint16_t*>(dst);
#pragma unroll
        for (uint32_t e = 0; e < 4; ++e) {
          d16[2 * e] = (uint16_t)(w[e] & 0xffffu);
          d16[2 * e + 1] = (uint16_t)(w[e] >> 16);
        }
      }
    }
  }
}

// Persistent over the tiles in head-major order (for_each_tile, attention_common.cuh); the
// cp.async ring restarts at stage 0 per tile (every group was waited for).
template <typename T> __device__ __forceinline__ void attention_sm90_v1(const AttentionParams& p, uint8_t* smem) {
  static_assert(T::DP == T::D || T::BM * T::LDO * 2 <= T::Q_BYTES, "staging leaves the K / V pads alone");
  zero_pad<T, T::BM + 2 * T::NST * T::BN>(smem, T::BM); // K / V stages: once
  for_each_tile<T::BM, false>(p, [&](uint32_t t) { attention_sm90_tile<T>(p, smem, t); });
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

// WGS consumer warpgroups (BM = 64 WGS query rows sharing each K/V tile) per block: 4 for D = 40
// (the U-Net's reference / spatial self-attention, where the model's DRAM bytes are the K/V
// passes: one per 256 query rows instead of per 128; 128 registers x 512 threads, one block per
// SM), 2 elsewhere; BN = 128 keys per tile up to D = 80, else 64.
// MINB: resident blocks per SM the registers must allow (kernels/src/attention_sm90.rs
// `Sm90Traits::ctas_per_sm`; shared memory allows no more).
#define ATTN90_ENTRY(D, BN, WGS, MINB)                                                                                 \
  extern "C" __global__ void __launch_bounds__(WGS * WG_THREADS, MINB)                                                \
      attention_sm90_d##D##_v1_bf16(const AttentionParams p) {                                                         \
    extern __shared__ uint8_t attn90_smem_raw[];                                                                       \
    const uint32_t base = smem_u32(attn90_smem_raw);                                                                   \
    uint8_t* smem = attn90_smem_raw + ((1024u - (base % 1024u)) % 1024u);                                              \
    attention_sm90_v1<Sm90Traits<D, BN, WGS>>(p, smem);                                                                \
  }

ATTN90_ENTRY(16, 128, 2, 2)
ATTN90_ENTRY(32, 128, 2, 2)
ATTN90_ENTRY(40, 128, 4, 1)
ATTN90_ENTRY(64, 128, 2, 1)
ATTN90_ENTRY(80, 128, 2, 1)
ATTN90_ENTRY(128, 64, 2, 1)
ATTN90_ENTRY(160, 64, 2, 1)
