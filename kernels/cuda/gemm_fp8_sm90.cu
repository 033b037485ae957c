// arch: sm_90a only
// ------------------------------------------------------------------------------------------------
// gemm_fp8_sm90.cu: Hopper (sm_90a) FP8 (e4m3) `linear` with per-output-channel weight scales and
// per-row (per-token) activation scales, and gemm_sm90.cu's fused epilogue:
//   C[m, n] = scale * (sa[m] sb[n] (QA[m, :] . QB[n, :]) + bias[n] + R[m, n])
//   GEGLU (QB (2N, K), sb (2N)): C = scale * ((sa sb[n] QA.QB[n] + bias[n])
//                                             * gelu(sa sb[N + n] QA.QB[N + n] + bias[N + n]) + R)
// QA, QB e4m3 bytes, sa, sb f32, bias, R, C bf16; f32 accumulation (wgmma), epilogue in f32, one
// bf16 rounding. The weights are quantised once at load (host: amax / 448 per output channel,
// round to nearest even, saturating); the activations by this module's quantize_rows entry.
//
// Entries:
//   * quantize_rows_e4m3_v1_bf16 (8, 16 or 32 lanes per row by K, 256-thread CTAs): amax of the
//     bf16 row (16-byte loads kept in registers for K <= 1280, K % 8 == 0: the row is read once;
//     shuffle max; other K: a warp per row, two passes),
//     sa = amax / 448 (1 for an all-zero row), q = e4m3_rn_satfinite(x / sa) (IEEE division: the
//     CPU reference reproduces every byte), 8-byte stores of 8 codes (a row group: 64 contiguous bytes or more);
//   * linear_fp8_sm90_v1_bf16 (384 threads = 3 warpgroups, 1 CTA per SM): gemm_sm90.cu's design
//     with e4m3 operands: persistent CTAs over the output tiles with swizzled rasterisation, CTA
//     tile 128 x 256 x 128 (GEGLU: 128 value + 128 gate rows of QB -> 128 outputs); a 4-stage
//     TMA ring of A (128 x 128 B) + B (256 x 128 B) = 48 KiB a stage, 128B swizzle (each 128-byte
//     row = 128 k is its own swizzle row: bank-conflict free), zero fill past every edge (e4m3 0
//     = +0); warpgroup 0 = producer (setmaxnreg.dec 40, one elected thread), warpgroups 1, 2 =
//     consumers (setmaxnreg.inc 232): four wgmma m64n256k32 .e4m3 per stage (descriptor + 32
//     bytes per k32), one stage of wgmmas in flight; epilogue per consumer warp: sa sb applied to
//     the accumulators while they are staged (16 x 40 f32 buffer, float2 writes, two float4
//     reads per 8-column chunk in lane-dependent order: conflict-free), then bias, residual,
//     scale and 16-byte bf16 stores (scalar at unaligned edges); a slab's channel scales (GEGLU:
//     gate scales, biases) and its chunks' bias / residual are loaded before their first use
//     (one memory round trip each per slab).
// Shared memory: 4 x 48 KiB ring + 8 x 2560 B epilogue + 8 mbarriers + 1 KiB slack = 218176 B.
// The launcher (engine/src/backends/cuda/gemm_fp8_sm90.rs) takes this path for linears whose
// weights were loaded as fp8 (`--weights-dtype fp8`) on sm_90a; K and the quantised rows' strides
// are multiples of 16 bytes (TMA).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "mma.cuh"
#include "sm90.cuh"

using namespace hopper;

namespace {

constexpr uint32_t BM = 128, BN = 256, BK = 128, STAGES = 4; // BK in e4m3 elements = bytes
constexpr uint32_t A_BYTES = BM * BK, B_BYTES = BN * BK, STAGE_BYTES = A_BYTES + B_BYTES;
constexpr uint32_t CONSUMER_WARPS = 8, THREADS = 384;
constexpr uint32_t EPI_W = 32, EPI_LD = EPI_W + 8, EPI_WARP_BYTES = 16 * EPI_LD * 4;
constexpr uint32_t EPI_OFF = STAGES * STAGE_BYTES, BAR_OFF = EPI_OFF + CONSUMER_WARPS * EPI_WARP_BYTES;
constexpr uint32_t SMEM_BYTES = BAR_OFF + 2 * STAGES * 8 + 1024;
constexpr uint32_t RASTER_GROUP = 8;
constexpr uint32_t Q_THREADS = 256;
constexpr uint32_t Q_CHUNKS = 5, Q_REG_K = Q_CHUNKS * 32 * 8;  // rows read once: K <= 1280
static_assert(A_BYTES % 1024 == 0 && STAGE_BYTES % 1024 == 0, "128B swizzle atoms stay 1024-byte aligned");
static_assert(SMEM_BYTES == 218176, "kernels/src/gemm_fp8_sm90.rs SMEM_BYTES");

} // namespace

// Mirrored by kernels/src/gemm_fp8_sm90.rs `GemmFp8Params` (384 bytes).
struct __align__(64) GemmFp8Params {
  TmaDesc tma_a;        // QA: dims (K, M, 1), box (128, 128, 1), uint8, 128B swizzle
  TmaDesc tma_b;        // QB: dims (K, N | 2N, 1), box (128, 256 | 128, 1)
  const float* sa;      // (M) f32 row scales
  const float* sb;      // (N | 2N) f32 output-channel scales
  const void* bias;     // (N | 2N) bf16, or null
  const void* residual; // (M, ldr) bf16, or null (may alias c)
  void* c;              // (M, ldc) bf16
  uint32_t m, n, k, ldr, ldc;
  float scale;
  uint32_t geglu;
  uint32_t tiles_m, tiles_n; // ceil(M / 128), ceil(N / (256 | 128))
  uint32_t pad[13];
};
static_assert(sizeof(GemmFp8Params) == 384, "kernels/src/gemm_fp8_sm90.rs");

// Mirrored by kernels/src/gemm_fp8_sm90.rs `QuantizeRowsParams` (40 bytes).
struct QuantizeRowsParams {
  const uint16_t* x; // (rows, ldx) bf16
  uint8_t* q;        // (rows, ldq) e4m3
  float* sa;         // (rows) f32
  uint32_t rows, k, ldx, ldq;
};

// ------------------------------------------------------------------------------------------------
// activation quantiser
// ------------------------------------------------------------------------------------------------

// 8 bf16 of row x from column c (valid leading ones, the rest +0) as raw bits: one 16-byte load when
// whole (the launcher guarantees 16-byte aligned rows).
__device__ __forceinline__ uint4 load8_bits(const uint16_t* x, uint32_t c, uint32_t k) {
  if (c + 8 <= k) return *reinterpret_cast<const uint4*>(x + c);
  uint32_t u[4] = {0, 0, 0, 0};
#pragma unroll
  for (uint32_t e = 0; e < 8; ++e)
    if (c + e < k) u[e / 2] |= (uint32_t)x[c + e] << (16 * (e % 2));
  return make_uint4(u[0], u[1], u[2], u[3]);
}

// The 8 bf16 of w as f32.
__device__ __forceinline__ void unpack8(const uint4 w, float (&v)[8]) {
  const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (uint32_t e = 0; e < 4; ++e) {
    v[2 * e] = __uint_as_float(u[e] << 16);
    v[2 * e + 1] = __uint_as_float(u[e] & 0xffff0000u);
  }
}

__device__ __forceinline__ float amax8(const uint4 w, float amax) {
  float v[8];
  unpack8(w, v);
#pragma unroll
  for (uint32_t e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(v[e]));
  return amax;
}

// Codes of the 8 bf16 of w at columns c.. of row q (scale s): one 8-byte store when whole.
__device__ __forceinline__ void store8_e4m3(uint8_t* q, uint32_t c, uint32_t k, const uint4 w, float s) {
  float v[8];
  unpack8(w, v);
  uint32_t b[4];
#pragma unroll
  for (uint32_t e = 0; e < 4; ++e) b[e] = f32x2_to_e4m3x2(__fdiv_rn(v[2 * e], s), __fdiv_rn(v[2 * e + 1], s));
  if (c + 8 <= k) {
    *reinterpret_cast<uint2*>(q + c) = make_uint2(b[0] | (b[1] << 16), b[2] | (b[3] << 16));
  } else {
#pragma unroll
    for (uint32_t e = 0; e < 8; ++e)
      if (c + e < k) q[c + e] = (uint8_t)(b[e / 2] >> (8 * (e % 2)));
  }
}

// Whether rows of K are read once from registers: whole 16-byte chunks, K <= Q_REG_K.
__device__ __forceinline__ bool quantize_in_registers(uint32_t k) { return k % 8 == 0 && k <= Q_REG_K; }

// Lanes per row: in registers 8, 16 or 32, the fewest that hold the row in Q_CHUNKS 16-byte
// chunks a lane (K 320 / 640 / 1280: every lane busy); else a warp. Mirrored by
// kernels/src/gemm_fp8_sm90.rs `quantize_lanes`.
__device__ __forceinline__ uint32_t quantize_lanes(uint32_t k) {
  if (!quantize_in_registers(k)) return 32;
  return k <= 64 * Q_CHUNKS ? 8 : k <= 128 * Q_CHUNKS ? 16 : 32;
}

// A group of quantize_lanes(K) lanes per row, Q_THREADS / lanes rows per CTA. Rows in registers
// (quantize_in_registers) are read once: each lane keeps its Q_CHUNKS 16-byte chunks (columns (i * lanes + sub) * 8) in
// registers, all loads issued before the group max; longer rows take two passes (the second
// mostly from L2).
extern "C" __global__ void __launch_bounds__(Q_THREADS) quantize_rows_e4m3_v1_bf16(const QuantizeRowsParams p) {
  const uint32_t lanes = quantize_lanes(p.k), sub = threadIdx.x % lanes;
  const uint32_t row = blockIdx.x * (Q_THREADS / lanes) + threadIdx.x / lanes;
  const bool valid = row < p.rows; // uniform per group; the whole warp shuffles
  const uint16_t* x = p.x + (uint64_t)row * p.ldx;
  uint8_t* q = p.q + (uint64_t)row * p.ldq;
  float amax = 0.0f;
  if (quantize_in_registers(p.k)) {
    uint4 w[Q_CHUNKS];
#pragma unroll
    for (uint32_t i = 0; i < Q_CHUNKS; ++i) {
      const uint32_t c = (i * lanes + sub) * 8;
      w[i] = valid && c < p.k ? *reinterpret_cast<const uint4*>(x + c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (uint32_t i = 0; i < Q_CHUNKS; ++i) amax = amax8(w[i], amax);
    for (uint32_t o = lanes / 2; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(FULL_MASK, amax, o));
    if (!valid) return;
    const float s = amax > 0.0f ? __fdiv_rn(amax, 448.0f) : 1.0f;
    if (sub == 0) p.sa[row] = s;
#pragma unroll
    for (uint32_t i = 0; i < Q_CHUNKS; ++i) {
      const uint32_t c = (i * lanes + sub) * 8;
      if (c < p.k) store8_e4m3(q, c, c + 8, w[i], s); // whole chunks
    }
    return;
  }
  if (!valid) return; // lanes == 32: warp-uniform
  for (uint32_t c = sub * 8; c < p.k; c += WARP_SIZE * 8) amax = amax8(load8_bits(x, c, p.k), amax);
  amax = warp_max(amax);
  const float s = amax > 0.0f ? __fdiv_rn(amax, 448.0f) : 1.0f;
  if (sub == 0) p.sa[row] = s;
  for (uint32_t c = sub * 8; c < p.k; c += WARP_SIZE * 8) store8_e4m3(q, c, p.k, load8_bits(x, c, p.k), s);
}

// ------------------------------------------------------------------------------------------------
// GEMM
// ------------------------------------------------------------------------------------------------

// d (64 x 256 f32 fragment, gemm_sm90.cu's layout) = (accumulate ? d : 0) + A . B^T: A 64 x 32 and
// B 256 x 32 e4m3 from shared-memory descriptors (K-major, 128B swizzle).
__device__ __forceinline__ void wgmma_m64n256k32_e4m3(float (&d)[128], uint64_t desc_a, uint64_t desc_b,
                                                      uint32_t accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e4m3 {" WG_R128 "}, %128, %129, p, 1, 1;\n}\n"
      : WG_D128
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr) { return wgmma_desc(addr, 16, 1024); }

struct Tile {
  uint32_t m0, n0; // first output row, column
};

// Tile t: groups of RASTER_GROUP tile rows walk the tile columns column by column.
__device__ __forceinline__ Tile tile_of(const GemmFp8Params& p, uint32_t t, uint32_t bn_out) {
  const uint32_t per_group = RASTER_GROUP * p.tiles_n;
  const uint32_t first = (t / per_group) * RASTER_GROUP;
  const uint32_t rows = min(p.tiles_m - first, RASTER_GROUP);
  const uint32_t rr = t % per_group;
  return Tile{(first + rr % rows) * BM, (rr / rows) * bn_out};
}

// 8 bf16 (bits) at q as f32: `valid` leading elements, the rest 0; one 16-byte load when whole and
// aligned.
__device__ __forceinline__ void load_bf16x8(const uint16_t* q, uint32_t valid, float (&v)[8]) {
  if (valid == 8 && (reinterpret_cast<uint64_t>(q) % 16) == 0) {
    const uint4 x = *reinterpret_cast<const uint4*>(q);
    const uint32_t w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (uint32_t e = 0; e < 4; ++e) {
      v[2 * e] = __uint_as_float(w[e] << 16);
      v[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
    }
  } else {
#pragma unroll
    for (uint32_t e = 0; e < 8; ++e) v[e] = e < valid ? bf16_bits_to_f32(q[e]) : 0.0f;
  }
}

// scale * v as 8 bf16 at a 16-byte aligned out: one st.global.v4 (nvcc would split a uint4 store).
__device__ __forceinline__ void store_bf16x8(__nv_bfloat16* out, const float (&v)[8], float scale) {
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(out), "r"(pack_bf16x2(v[0] * scale, v[1] * scale)),
               "r"(pack_bf16x2(v[2] * scale, v[3] * scale)), "r"(pack_bf16x2(v[4] * scale, v[5] * scale)),
               "r"(pack_bf16x2(v[6] * scale, v[7] * scale))
               : "memory");
}

// Output chunk (row, col0..col0 + 7) = scale * (v (+ bias unless GEGLU added it) + residual), bf16.
__device__ __forceinline__ void store_chunk(const GemmFp8Params& p, uint32_t row, uint32_t col0, float (&v)[8]) {
  if (row >= p.m || col0 >= p.n) return;
  const uint32_t valid = min(p.n - col0, 8u);
  float t[8];
  if (!p.geglu && p.bias != nullptr) {
    load_bf16x8(static_cast<const uint16_t*>(p.bias) + col0, valid, t);
#pragma unroll
    for (uint32_t e = 0; e < 8; ++e) v[e] += t[e];
  }
  if (p.residual != nullptr) {
    load_bf16x8(static_cast<const uint16_t*>(p.residual) + (uint64_t)row * p.ldr + col0, valid, t);
#pragma unroll
    for (uint32_t e = 0; e < 8; ++e) v[e] += t[e];
  }
  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(p.c) + (uint64_t)row * p.ldc + col0;
  if (valid == 8 && (reinterpret_cast<uint64_t>(out) % 16) == 0) {
    store_bf16x8(out, v, p.scale);
    return;
  }
#pragma unroll
  for (uint32_t e = 0; e < 8; ++e)
    if (e < valid) out[e] = from_f32<__nv_bfloat16>(v[e] * p.scale);
}

// A whole, aligned output chunk (row, col0..col0 + 7) = scale * (v + bias + residual) from the
// bias / residual bits loaded ahead (0 when absent): store_chunk's sums in its order, one 16-byte
// store.
__device__ __forceinline__ void store_whole(const GemmFp8Params& p, uint32_t row, uint32_t col0, float (&v)[8],
                                            const uint4 b, const uint4 r) {
  const uint32_t bw[4] = {b.x, b.y, b.z, b.w}, rw[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (uint32_t e = 0; e < 4; ++e) {
    v[2 * e] = (v[2 * e] + __uint_as_float(bw[e] << 16)) + __uint_as_float(rw[e] << 16);
    v[2 * e + 1] = (v[2 * e + 1] + __uint_as_float(bw[e] & 0xffff0000u)) + __uint_as_float(rw[e] & 0xffff0000u);
  }
  __nv_bfloat16* out = static_cast<__nv_bfloat16*>(p.c) + (uint64_t)row * p.ldc + col0;
  store_bf16x8(out, v, p.scale);
}

// The f32 scale at i of `s` when i < n, else 0 (columns / rows past the edge stay 0).
__device__ __forceinline__ float scale_at(const float* s, uint32_t i, uint32_t n) { return i < n ? s[i] : 0.0f; }

// The bf16 at i of `b` as f32 when i < n, else 0.
__device__ __forceinline__ float bf16_at(const uint16_t* b, uint32_t i, uint32_t n) {
  return i < n ? bf16_bits_to_f32(b[i]) : 0.0f;
}

// This warp's 16 rows (row0..) of the tile: slabs of 32 output columns through `buf`, the row and
// channel scales (and GEGLU's bias and gelu) applied as the accumulators are staged.
template <bool GEGLU>
__device__ __forceinline__ void epilogue(const GemmFp8Params& p, const Tile& t, uint32_t row0, float* buf,
                                         uint32_t lane, const float (&acc)[128]) {
  const uint16_t* bias = static_cast<const uint16_t*>(p.bias);
  const float sa[2] = {scale_at(p.sa, row0 + lane / 4, p.m), scale_at(p.sa, row0 + lane / 4 + 8, p.m)};
  constexpr uint32_t SLABS = (GEGLU ? BN / 2 : BN) / EPI_W;
  const uint32_t order = (lane >> 2) & 1u; // which float4 half first (conflict-free reads)
#pragma unroll
  for (uint32_t s = 0; s < SLABS; ++s) {
    // the slab's channel scales (and GEGLU gate scales and biases), all loaded before the first
    // use: one memory round trip per slab, not one per 8-column group
    float sv[EPI_W / 8][2], sg[EPI_W / 8][2] = {}, bv[EPI_W / 8][2] = {}, bg[EPI_W / 8][2] = {};
#pragma unroll
    for (uint32_t jj = 0; jj < EPI_W / 8; ++jj) {
#pragma unroll
      for (uint32_t e = 0; e < 2; ++e) {
        const uint32_t col = t.n0 + 8 * (s * (EPI_W / 8) + jj) + 2 * (lane % 4) + e;
        sv[jj][e] = scale_at(p.sb, col, p.n);
        if constexpr (GEGLU) {
          sg[jj][e] = scale_at(p.sb + p.n, col, p.n);
          if (bias != nullptr) bv[jj][e] = bf16_at(bias, col, p.n), bg[jj][e] = bf16_at(bias + p.n, col, p.n);
        }
      }
    }
#pragma unroll
    for (uint32_t jj = 0; jj < EPI_W / 8; ++jj) {
      const uint32_t j = s * (EPI_W / 8) + jj; // 8-column accumulator group
#pragma unroll
      for (uint32_t h = 0; h < 2; ++h) {
        float v[2];
#pragma unroll
        for (uint32_t e = 0; e < 2; ++e) {
          v[e] = acc[4 * j + 2 * h + e] * (sa[h] * sv[jj][e]);
          if constexpr (GEGLU)
            v[e] = (v[e] + bv[jj][e]) * gelu_erf(acc[4 * (j + BN / 16) + 2 * h + e] * (sa[h] * sg[jj][e]) + bg[jj][e]);
        }
        const uint32_t row = lane / 4 + 8 * h, col = 8 * jj + 2 * (lane % 4);
        *reinterpret_cast<float2*>(&buf[row * EPI_LD + col]) = make_float2(v[0], v[1]);
      }
    }
    __syncwarp();
    // the bias / residual of the lane's chunks, loaded before the first use (one round trip for
    // the slab); chunks off the edge or unaligned take store_chunk's guarded loads
    constexpr uint32_t ITS = 16 * EPI_W / 8 / WARP_SIZE;
    uint4 rb[ITS], rr[ITS];
    bool whole[ITS];
#pragma unroll
    for (uint32_t it = 0; it < ITS; ++it) {
      const uint32_t idx = lane + it * WARP_SIZE;
      const uint32_t row = row0 + idx / (EPI_W / 8), col0 = t.n0 + s * EPI_W + (idx % (EPI_W / 8)) * 8;
      const uint16_t* b = p.geglu ? nullptr : bias;
      const uint16_t* r = static_cast<const uint16_t*>(p.residual);
      const uint64_t out = reinterpret_cast<uint64_t>(static_cast<const uint16_t*>(p.c) + (uint64_t)row * p.ldc + col0);
      whole[it] = row < p.m && col0 + 8 <= p.n && out % 16 == 0 &&
                  (b == nullptr || reinterpret_cast<uint64_t>(b + col0) % 16 == 0) &&
                  (r == nullptr || reinterpret_cast<uint64_t>(r + (uint64_t)row * p.ldr + col0) % 16 == 0);
      rb[it] = whole[it] && b != nullptr ? *reinterpret_cast<const uint4*>(b + col0) : make_uint4(0, 0, 0, 0);
      rr[it] = whole[it] && r != nullptr ? *reinterpret_cast<const uint4*>(r + (uint64_t)row * p.ldr + col0)
                                         : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (uint32_t it = 0; it < ITS; ++it) {
      const uint32_t idx = lane + it * WARP_SIZE;
      const uint32_t r = idx / (EPI_W / 8), cc = (idx % (EPI_W / 8)) * 8;
      const float* src = &buf[r * EPI_LD + cc];
      const float4 x0 = *reinterpret_cast<const float4*>(src + 4 * order);
      const float4 x1 = *reinterpret_cast<const float4*>(src + 4 * (order ^ 1u));
      const float4 lo = order ? x1 : x0, hi = order ? x0 : x1;
      float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
      if (whole[it]) {
        store_whole(p, row0 + r, t.n0 + s * EPI_W + cc, v, rb[it], rr[it]);
      } else {
        store_chunk(p, row0 + r, t.n0 + s * EPI_W + cc, v);
      }
    }
    __syncwarp(); // reads done before the next slab overwrites the buffer
  }
}

template <bool GEGLU> __device__ __forceinline__ void gemm_fp8(const GemmFp8Params& p) {
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u; // 128B swizzle atoms on 1024-byte boundaries
  const uint32_t full = base + BAR_OFF, empty = full + STAGES * 8;
  const uint32_t warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, wg = warp / 4;
  constexpr uint32_t BN_OUT = GEGLU ? BN / 2 : BN;
  const uint32_t tiles = p.tiles_m * p.tiles_n;
  const uint32_t ktiles = ceil_div(p.k, BK);
  if (threadIdx.x == 0) {
    for (uint32_t s = 0; s < STAGES; ++s) {
      mbar_init(full + 8 * s, 1);
      mbar_init(empty + 8 * s, CONSUMER_WARPS);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    // producer warpgroup: one thread issues every TMA load
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (threadIdx.x != 0) return;
    uint32_t stage = 0, phase = 0;
    for (uint32_t ti = blockIdx.x; ti < tiles; ti += gridDim.x) {
      const Tile t = tile_of(p, ti, BN_OUT);
      for (uint32_t kt = 0; kt < ktiles; ++kt) {
        mbar_wait(empty + 8 * stage, phase ^ 1u); // a fresh barrier passes parity 1
        const uint32_t bar = full + 8 * stage, sa = base + stage * STAGE_BYTES, sb = sa + A_BYTES;
        mbar_arrive_expect_tx(bar, STAGE_BYTES);
        const int32_t k0 = (int32_t)(kt * BK);
        tma_load_3d(sa, &p.tma_a, bar, k0, (int32_t)t.m0, 0);
        tma_load_3d(sb, &p.tma_b, bar, k0, (int32_t)t.n0, 0);
        if constexpr (GEGLU) tma_load_3d(sb + B_BYTES / 2, &p.tma_b, bar, k0, (int32_t)(p.n + t.n0), 0);
        if (++stage == STAGES) stage = 0, phase ^= 1u;
      }
    }
    return;
  }

  // consumer warpgroups 1, 2: rows 64 (wg - 1) .. of the tile
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const uint32_t cw = wg - 1;
  float* buf = reinterpret_cast<float*>(smem_raw + (base - raw) + EPI_OFF + (warp - 4) * EPI_WARP_BYTES);
  float acc[128];
#pragma unroll
  for (uint32_t i = 0; i < 128; ++i) acc[i] = 0.0f;
  uint32_t stage = 0, phase = 0;
  for (uint32_t ti = blockIdx.x; ti < tiles; ti += gridDim.x) {
    const Tile t = tile_of(p, ti, BN_OUT);
    uint32_t prev = 0;
    for (uint32_t kt = 0; kt < ktiles; ++kt) {
      mbar_wait(full + 8 * stage, phase);
      const uint32_t sa = base + stage * STAGE_BYTES + cw * (64 * BK), sb = base + stage * STAGE_BYTES + A_BYTES;
      wgmma_fence();
#pragma unroll
      for (uint32_t kk = 0; kk < BK / 32; ++kk)
        wgmma_m64n256k32_e4m3(acc, sw128_desc(sa + 32 * kk), sw128_desc(sb + 32 * kk), kt > 0 || kk > 0);
      wgmma_commit();
      wgmma_wait_acc<1>(acc); // the previous stage's wgmmas are done: release it
      if (kt > 0 && lane == 0) mbar_arrive(empty + 8 * prev);
      prev = stage;
      if (++stage == STAGES) stage = 0, phase ^= 1u;
    }
    wgmma_wait_acc<0>(acc);
    if (lane == 0) mbar_arrive(empty + 8 * prev);
    epilogue<GEGLU>(p, t, t.m0 + 64 * cw + 16 * (warp % 4), buf, lane, acc);
  }
}

extern "C" __global__ void __launch_bounds__(THREADS, 1) linear_fp8_sm90_v1_bf16(const __grid_constant__ GemmFp8Params p) {
  if (p.geglu)
    gemm_fp8<true>(p);
  else
    gemm_fp8<false>(p);
}
