// ------------------------------------------------------------------------------------------------
// group_norm.cu: GroupNorm (affine) with optional fused SiLU.
//
//   x, y        : (N, C, S) contiguous, S = all trailing dims (H*W, or F*H*W for video); y may alias x
//   gamma, beta : (C)
//   groups G    : C % G == 0; group g of sample n is the contiguous span of (C/G)*S elements
//   y = act((x - mean_ng) * rsqrt(var_ng + eps) * gamma[c] + beta[c]), biased variance
//   storage dtype T in {f32, bf16} for x, gamma, beta, y; accumulation in f32.
//
// Versions:
//   v1: one block per (group, sample), GN_THREADS threads; three passes over the group (sum ->
//       mean, sum of squared deviations -> var, normalise+write); each sum is a two-level reduction
//       (warp shfl, then the per-warp partials through shared memory and a final warp shfl).
//       <- ships for groups of <= 1024 elements
//   v2: split reduction over (chunks, G, N) blocks, stats launch + apply launch (below).
//       <- ships for larger groups (rule: kernels/src/group_norm.rs `version`)
// Entries: group_norm_v1_{f32,bf16}, group_norm_silu_v1_{f32,bf16} (one GroupNormParams argument);
// group_norm_stats_v2_*, group_norm_v2_*, group_norm_silu_v2_* (one GroupNorm2Params argument);
// group_norm_tokens_v2_*, tokens_planes_add_v2_* (one GnTokensParams argument; token layout, below);
// channels-last: group_norm_stats_nhwc_v1_*, group_norm{,_silu}_nhwc_v1_* (GroupNorm2Params),
// group_norm_tokens_nhwc_v1_*, tokens_planes_add_nhwc_v1_* (GnTokensParams; below).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "group_norm_affine.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/group_norm.rs): grid = (G, N), block = GN_THREADS, no dynamic smem.
enum : uint32_t { GN_THREADS = 256 };
enum : uint32_t { GN_WARPS = GN_THREADS / WARP_SIZE };
static_assert(GN_WARPS <= WARP_SIZE, "the final reduction is one warp wide");

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/group_norm.rs `GroupNormParams`, 56 bytes)
// ------------------------------------------------------------------------------------------------

struct GroupNormParams {
  const void* x;     // (N, C, S) T
  const void* gamma; // (C) T
  const void* beta;  // (C) T
  void* y;           // (N, C, S) T
  uint32_t n;        // batch
  uint32_t c;        // channels
  uint32_t s;        // elements per channel (product of the trailing dims)
  uint32_t groups;   // G, divides c
  float eps;
  uint32_t _pad;
};

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

// Sum over the block. `partial` has GN_WARPS slots, `total` one; both reused across calls (see below).
__device__ __forceinline__ float block_sum(float v, float* partial, float* total) {
  const uint32_t warp = threadIdx.x / WARP_SIZE;
  const uint32_t lane = threadIdx.x % WARP_SIZE;
  v = warp_sum(v);                  // level 1: within the warp
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {                  // level 2: the per-warp partials, in one warp
    float w = lane < GN_WARPS ? partial[lane] : 0.0f;
    w = warp_sum(w);
    if (lane == 0) *total = w;
  }
  __syncthreads();
  // Safe to call again: the next call writes `partial` only after every thread passed the barrier
  // above (warp 0 finished reading it), and `total` only after its own first barrier, which every
  // thread reaches after reading `total` here.
  return *total;
}

template <typename T, bool SILU>
__device__ __forceinline__ void group_norm_v1(const GroupNormParams& p) {
  __shared__ float partial[GN_WARPS];
  __shared__ float total;
  const uint32_t g = blockIdx.x;
  const uint32_t sample = blockIdx.y;
  const uint32_t cpg = p.c / p.groups;
  const uint32_t len = cpg * p.s;
  const uint64_t base = ((uint64_t)sample * p.c + (uint64_t)g * cpg) * p.s;
  const T* x = static_cast<const T*>(p.x) + base;
  T* y = static_cast<T*>(p.y) + base;
  const T* gamma = static_cast<const T*>(p.gamma) + g * cpg;
  const T* beta = static_cast<const T*>(p.beta) + g * cpg;

  float acc = 0.0f;
  for (uint32_t i = threadIdx.x; i < len; i += GN_THREADS) acc += to_f32(x[i]);
  const float mean = block_sum(acc, partial, &total) / (float)len;

  acc = 0.0f;
  for (uint32_t i = threadIdx.x; i < len; i += GN_THREADS) {
    const float d = to_f32(x[i]) - mean;
    acc += d * d;
  }
  const float var = block_sum(acc, partial, &total) / (float)len;
  const float rstd = rsqrtf(var + p.eps);

  for (uint32_t i = threadIdx.x; i < len; i += GN_THREADS) {
    const uint32_t ch = i / p.s;
    float v = (to_f32(x[i]) - mean) * rstd * to_f32(gamma[ch]) + to_f32(beta[ch]);
    if (SILU) v = silu(v);
    y[i] = from_f32<T>(v);
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define GROUP_NORM_ENTRY(NAME, T, SILU)                                                            \
  extern "C" __global__ void __launch_bounds__(GN_THREADS) NAME(const GroupNormParams p) {         \
    group_norm_v1<T, SILU>(p);                                                                     \
  }

GROUP_NORM_ENTRY(group_norm_v1_f32, float, false)
GROUP_NORM_ENTRY(group_norm_v1_bf16, __nv_bfloat16, false)
GROUP_NORM_ENTRY(group_norm_silu_v1_f32, float, true)
GROUP_NORM_ENTRY(group_norm_silu_v1_bf16, __nv_bfloat16, true)

// ------------------------------------------------------------------------------------------------
// v2: split reduction (issue 16). Two launches per GroupNorm:
//   stats  grid = (chunks, G, N): block (k, g, n) reduces chunk k of group (n, g) to (mean, M2)
//          and writes one float4 partial {count, mean, M2, 0} to ws[(n * G + g) * chunks + k];
//   apply  grid = (chunks, G, N): block (k, g, n) merges its group's `chunks` partials in index
//          order (Chan et al.'s pairwise formula), then normalises chunk k (+ gamma/beta/SiLU).
// Chunk k of group (n, g) covers flat elements [max(gbase, A + k*CHUNK), min(gend, A + (k+1)*CHUNK))
// with A = gbase rounded down to a multiple of VEC (16 bytes of T), so every whole vector of a
// chunk is 16-byte aligned (when x and y are) and the group's edge vectors take a masked scalar
// path. chunks = ceil((len + VEC - 1) / CHUNK) covers every group; an empty chunk writes count 0.
// Each thread owns vectors tid, tid + GN2_THREADS, ... of its chunk: one warp reads 512 contiguous
// bytes per instruction. The stats kernel keeps its GN2_ELEMS values per thread in registers and
// takes the chunk's exact two-pass (mean, M2) from them (two block sums): no extra traffic.
// Deterministic: fixed reduction and merge orders, no atomics. y may alias x: the stats launch
// finishes before the apply launch writes.
// ------------------------------------------------------------------------------------------------

enum : uint32_t { GN2_THREADS = 256 };
enum : uint32_t { GN2_WARPS = GN2_THREADS / WARP_SIZE };
enum : uint32_t { GN2_ELEMS = 32 };                        // per thread per chunk
enum : uint32_t { GN2_CHUNK = GN2_THREADS * GN2_ELEMS };   // 8192 elements
static_assert(GN2_WARPS <= WARP_SIZE, "the final merge is one warp wide");
static_assert(GN2_WARPS == GN_WARPS, "the stats kernel reuses v1's block_sum");

// params (mirrored by kernels/src/group_norm.rs `GroupNorm2Params`, 64 bytes)
struct GroupNorm2Params {
  const void* x;     // (N, C, S) T
  const void* gamma; // (C) T
  const void* beta;  // (C) T
  void* y;           // (N, C, S) T
  float4* ws;        // (N, G, chunks) partials {count, mean, M2, 0}
  uint32_t n;
  uint32_t c;
  uint32_t s;
  uint32_t groups;
  float eps;
  uint32_t chunks;   // per group
};

// Welford/Chan partial: count, mean, sum of squared deviations.
struct GnStat {
  float n, mean, m2;
};

// Chan, Golub & LeVeque's pairwise merge; an empty side returns the other unchanged.
__device__ __forceinline__ GnStat gn_merge(GnStat a, GnStat b) {
  if (b.n == 0.0f) return a;
  if (a.n == 0.0f) return b;
  const float n = a.n + b.n;
  const float d = b.mean - a.mean;
  const float f = b.n / n;
  GnStat r;
  r.n = n;
  r.mean = fmaf(d, f, a.mean);
  r.m2 = a.m2 + b.m2 + d * d * a.n * f;
  return r;
}

// Butterfly merge over the warp; every lane returns the warp's total, bitwise the same.
__device__ __forceinline__ GnStat gn_warp_merge(GnStat v, uint32_t lane) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    GnStat o;
    o.n = __shfl_xor_sync(FULL_MASK, v.n, off);
    o.mean = __shfl_xor_sync(FULL_MASK, v.mean, off);
    o.m2 = __shfl_xor_sync(FULL_MASK, v.m2, off);
    // Lower lane first on both sides, so the pair's two lanes compute the same bits.
    v = (lane & off) ? gn_merge(o, v) : gn_merge(v, o);
  }
  return v;
}

// Merge over the block in a fixed order (butterfly in the warp, then the warps' results in warp
// 0); every thread returns the total.
__device__ __forceinline__ GnStat gn_block_merge(GnStat v) {
  __shared__ float sn[GN2_WARPS], smean[GN2_WARPS], sm2[GN2_WARPS];
  __shared__ GnStat total;
  const uint32_t warp = threadIdx.x / WARP_SIZE;
  const uint32_t lane = threadIdx.x % WARP_SIZE;
  v = gn_warp_merge(v, lane);
  if (lane == 0) {
    sn[warp] = v.n;
    smean[warp] = v.mean;
    sm2[warp] = v.m2;
  }
  __syncthreads();
  if (warp == 0) {
    GnStat w = {0.0f, 0.0f, 0.0f};
    if (lane < GN2_WARPS) w = {sn[lane], smean[lane], sm2[lane]};
    w = gn_warp_merge(w, lane);
    if (lane == 0) total = w;
  }
  __syncthreads();
  return total;
}

// This block's group and chunk: flat [lo, hi) of x/y, the aligned origin `a` of the chunk's
// vectors (vector i of the chunk starts at a + i * VEC), the group's first element gbase.
struct GnChunk {
  uint64_t gbase, lo, hi, a;
};

template <typename T> __device__ __forceinline__ GnChunk gn_chunk(const GroupNorm2Params& p) {
  constexpr uint32_t VEC = Vec16<T>::N;
  const uint32_t cpg = p.c / p.groups;
  const uint64_t len = (uint64_t)cpg * p.s;
  GnChunk r;
  r.gbase = ((uint64_t)blockIdx.z * p.c + (uint64_t)blockIdx.y * cpg) * p.s;
  const uint64_t gend = r.gbase + len;
  r.a = (r.gbase / VEC) * VEC + (uint64_t)blockIdx.x * GN2_CHUNK;
  r.lo = r.a > r.gbase ? r.a : r.gbase;
  r.hi = r.a + GN2_CHUNK < gend ? r.a + GN2_CHUNK : gend;
  if (r.hi < r.lo) r.hi = r.lo;
  return r;
}


// Thread 0 writes the block's partial to its workspace slot.
__device__ __forceinline__ void gn_stats_write(const GroupNorm2Params& p, GnStat t) {
  if (threadIdx.x == 0) {
    const uint64_t slot = ((uint64_t)blockIdx.z * p.groups + blockIdx.y) * p.chunks + blockIdx.x;
    p.ws[slot] = make_float4(t.n, t.mean, t.m2, 0.0f);
  }
}

// Every element slot of this thread in chunk ch (vector i of the thread's VPT, element j of its
// VEC): f(i, j, e, in) with e the flat index and in = e inside the chunk's [lo, hi).
template <uint32_t VPT, uint32_t VEC, typename F>
__device__ __forceinline__ void gn_for_each_masked(const GnChunk& ch, F&& f) {
#pragma unroll
  for (uint32_t i = 0; i < VPT; ++i) {
    const uint64_t v0 = ch.a + (uint64_t)(threadIdx.x + i * GN2_THREADS) * VEC;
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) f(i, j, v0 + j, v0 + j >= ch.lo && v0 + j < ch.hi);
  }
}

// The chunk's (count, mean, M2) by an exact two-pass over the values the block holds in registers:
// mean = block sum / count, then M2 = block sum of squared deviations from it (the v1 block_sum).
template <typename T> __device__ __forceinline__ void group_norm_stats_v2(const GroupNorm2Params& p) {
  __shared__ float partial[GN2_WARPS];
  __shared__ float total;
  constexpr uint32_t VEC = Vec16<T>::N;
  constexpr uint32_t VPT = GN2_ELEMS / VEC; // vectors per thread
  const GnChunk ch = gn_chunk<T>(p);
  const T* x = static_cast<const T*>(p.x);
  float v[VPT][VEC];
  float sum = 0.0f;
  // Interior chunk (all CHUNK elements in the group, 16-byte aligned): unmasked vectors only.
  if (aligned16(x) && ch.lo == ch.a && ch.hi == ch.a + GN2_CHUNK) {
#pragma unroll
    for (uint32_t i = 0; i < VPT; ++i) {
      load_vec16(x + ch.a + (uint64_t)(threadIdx.x + i * GN2_THREADS) * VEC, v[i]);
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) sum += v[i][j];
    }
    const float mean = block_sum(sum, partial, &total) * (1.0f / (float)GN2_CHUNK);
    float m2 = 0.0f;
#pragma unroll
    for (uint32_t i = 0; i < VPT; ++i) {
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) {
        const float d = v[i][j] - mean;
        m2 = fmaf(d, d, m2);
      }
    }
    m2 = block_sum(m2, partial, &total);
    gn_stats_write(p, {(float)GN2_CHUNK, mean, m2});
    return;
  }
  // Edge chunk (or unaligned x): per-lane masks, element by element.
  float cnt = 0.0f;
  gn_for_each_masked<VPT, VEC>(ch, [&](uint32_t i, uint32_t j, uint64_t e, bool in) {
    v[i][j] = in ? to_f32(x[e]) : 0.0f;
    cnt += in ? 1.0f : 0.0f;
    sum += v[i][j];
  });
  cnt = block_sum(cnt, partial, &total); // exact: at most 8192
  const float mean = block_sum(sum, partial, &total) / fmaxf(cnt, 1.0f); // empty chunk: 0
  float m2 = 0.0f;
  gn_for_each_masked<VPT, VEC>(ch, [&](uint32_t i, uint32_t j, uint64_t, bool in) {
    const float d = in ? v[i][j] - mean : 0.0f;
    m2 = fmaf(d, d, m2);
  });
  m2 = block_sum(m2, partial, &total);
  gn_stats_write(p, {cnt, mean, m2});
}

template <typename T, bool SILU> __device__ __forceinline__ void group_norm_apply_v2(const GroupNorm2Params& p) {
  constexpr uint32_t VEC = Vec16<T>::N;
  constexpr uint32_t VPT = GN2_ELEMS / VEC;
  // 1. the group's statistics: thread t merges partials t, t + 256, ... in order, then the block.
  const float4* ws = p.ws + ((uint64_t)blockIdx.z * p.groups + blockIdx.y) * p.chunks;
  GnStat acc = {0.0f, 0.0f, 0.0f};
  for (uint32_t k = threadIdx.x; k < p.chunks; k += GN2_THREADS) {
    const float4 w = ws[k];
    acc = gn_merge(acc, {w.x, w.y, w.z});
  }
  const GnStat st = gn_block_merge(acc);
  const float rstd = rsqrtf(st.m2 / st.n + p.eps);
  const float mean = st.mean;

  // 2. normalise this chunk.
  const GnChunk ch = gn_chunk<T>(p);
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const T* gamma = static_cast<const T*>(p.gamma);
  const T* beta = static_cast<const T*>(p.beta);
  const uint32_t cpg = p.c / p.groups;
  const uint32_t c0 = blockIdx.y * cpg; // the group's first channel
  const bool aligned = aligned16(x) && aligned16(y);
  // One whole 16-byte vector at flat v0: channel of its first element (one division per vector),
  // then step through the vector.
  auto vec = [&](uint64_t v0) {
    float v[VEC];
    load_vec16(x + v0, v);
    gn_affine_vec<SILU>(v, (uint32_t)(v0 - ch.gbase), p.s, gamma, beta, c0, mean, rstd);
    store_vec16(y + v0, v);
  };
  if (aligned && ch.lo == ch.a && ch.hi == ch.a + GN2_CHUNK) { // interior chunk: unmasked
#pragma unroll
    for (uint32_t i = 0; i < VPT; ++i) vec(ch.a + (uint64_t)(threadIdx.x + i * GN2_THREADS) * VEC);
    return;
  }
#pragma unroll
  for (uint32_t i = 0; i < VPT; ++i) {
    const uint64_t v0 = ch.a + (uint64_t)(threadIdx.x + i * GN2_THREADS) * VEC;
    if (v0 + VEC <= ch.lo || v0 >= ch.hi) continue;
    if (aligned && v0 >= ch.lo && v0 + VEC <= ch.hi) {
      vec(v0);
    } else { // a group-edge (or unaligned) vector: masked scalar path, rare, kept rolled
#pragma unroll 1
      for (uint32_t j = 0; j < VEC; ++j) {
        const uint64_t e = v0 + j;
        if (e < ch.lo || e >= ch.hi) continue;
        const uint32_t c = c0 + (uint32_t)(e - ch.gbase) / p.s;
        y[e] = from_f32<T>(gn_affine_elem<SILU>(to_f32(x[e]), c, gamma, beta, mean, rstd));
      }
    }
  }
}

#define GROUP_NORM_V2_ENTRIES(T, SUFFIX)                                                           \
  extern "C" __global__ void __launch_bounds__(GN2_THREADS)                                        \
      group_norm_stats_v2_##SUFFIX(const GroupNorm2Params p) {                                     \
    group_norm_stats_v2<T>(p);                                                                     \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(GN2_THREADS)                                        \
      group_norm_v2_##SUFFIX(const GroupNorm2Params p) {                                           \
    group_norm_apply_v2<T, false>(p);                                                              \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(GN2_THREADS)                                        \
      group_norm_silu_v2_##SUFFIX(const GroupNorm2Params p) {                                      \
    group_norm_apply_v2<T, true>(p);                                                               \
  }

GROUP_NORM_V2_ENTRIES(float, f32)
GROUP_NORM_V2_ENTRIES(__nv_bfloat16, bf16)

// ------------------------------------------------------------------------------------------------
// Token layout (issue 16: no layout copies around the motion module's temporal transformer).
//   group_norm_tokens  x planes (N*F, C, S) (F frames per batch item, frame-major) -> y tokens
//                      (N, S, F, C): GroupNorm of batch item n over its F frames (AnimateDiff's
//                      (B, C, F, H, W) GroupNorm; F = 1: the plain one), from the per-(frame,
//                      group) chunk partials of group_norm_stats_v2 run on x as (N*F, C, S)
//                      (gn.n = N*F): the apply merges F * chunks partials per group.
//   tokens_planes_add  y planes (N*F, C, S) = x tokens (N, S, F, C) transposed + residual planes;
//                      y may be the first C channels of wider planes (N*F, y_c, S) (planes
//                      y_c * S apart: the h part of an up block's concat(h, skip)).
// Both: one (channels x 32 positions) tile per block through shared memory; planes are read /
// written along S, tokens along C (v1, 2-byte scalar accesses and one thread merging a channel's
// F * chunks partials, was replaced by v2 below).
// ------------------------------------------------------------------------------------------------

// params (mirrored by kernels/src/group_norm.rs `GnTokensParams`, 80 bytes)
struct GnTokensParams {
  GroupNorm2Params gn;  // x, y as above; ws, chunks: the stats launch's (n = N * F); gamma, beta
  const void* residual; // tokens_planes_add: (N*F, C, S) T; unused by group_norm_tokens
  uint32_t frames;      // F >= 1
  uint32_t y_c;         // tokens_planes_add: channels of one y plane (>= C; 0 reads as C); unused by group_norm_tokens
};

// ------------------------------------------------------------------------------------------------
// v2 (issue 16 item 5): the two token-layout ops with 16-byte accesses on both sides and the
// group statistics merged once per (block, group) by a whole warp.
//   Tile: GNT2_TC(T) channels x GNT2_TS = 32 positions, 256 threads, one 16-byte vector (VEC
//   elements) per thread per side:
//     planes side  warp w, lane l: channel row w * RPW + l / LPR, positions (l % LPR) * VEC + [0, VEC)
//                  (LPR = 32 / VEC vectors per row, RPW = VEC rows per warp);
//     tokens side  warp w: channel group cg = w % (TC / 32), position group pg = w / (TC / 32);
//                  lane l: position pg * RPW + l / LPR, channels cg * 32 + (l % LPR) * VEC + [0, VEC).
//   Shared tile float [TC][33]: element j of either side's vector is at bank (c + s) % 32 with the
//   warp's lanes covering 32 distinct (c, s) sums: conflict-free (bf16: c + 8 * v + s over 8 rows x
//   4 vectors; f32: 4 rows x 8 vectors).
//   A warp reads / writes 8 (bf16) or 4 (f32) rows of 64 / 128 contiguous bytes per instruction:
//   16 sectors per request. C or S not a multiple of VEC, or a pointer off 16 bytes: the same
//   mapping element by element (scalar path).
//   group_norm_tokens_v2: warp w merges the F * chunks partials of the tile's groups w, w + 8, ...
//   (lane k takes partials k, k + 32, ... in order, then the butterfly merge), then one thread per
//   channel forms scale and shift. Grid = (ceil(S / 32), ceil(C / TC), N * F).
// ------------------------------------------------------------------------------------------------

enum : uint32_t { GNT2_TS = 32, GNT2_THREADS = 256, GNT2_WARPS = GNT2_THREADS / WARP_SIZE };

template <typename T> struct GnTokens2 {
  enum : uint32_t {
    VEC = Vec16<T>::N,
    LPR = GNT2_TS / VEC,                // lanes per planes row
    RPW = WARP_SIZE / LPR,              // planes rows (tokens positions) per warp
    TC = GNT2_WARPS * RPW,              // channels per tile: 64 bf16, 32 f32
    CG = TC / WARP_SIZE,                // tokens-side channel groups of 32
  };
  static_assert(RPW == VEC, "bank-conflict-free mapping needs RPW == VEC");
};

// Planes-side slot of this thread: tile row r (channel c0 + r), first tile column sc (position s0 + sc).
template <typename T> __device__ __forceinline__ void gnt2_planes_slot(uint32_t& r, uint32_t& sc) {
  using G = GnTokens2<T>;
  const uint32_t w = threadIdx.x / WARP_SIZE, l = threadIdx.x % WARP_SIZE;
  r = w * G::RPW + l / G::LPR;
  sc = (l % G::LPR) * G::VEC;
}

// Tokens-side slot: tile column s (position s0 + s), first tile row cr (channel c0 + cr).
template <typename T> __device__ __forceinline__ void gnt2_tokens_slot(uint32_t& s, uint32_t& cr) {
  using G = GnTokens2<T>;
  const uint32_t w = threadIdx.x / WARP_SIZE, l = threadIdx.x % WARP_SIZE;
  s = (w / G::CG) * G::RPW + l / G::LPR;
  cr = (w % G::CG) * WARP_SIZE + (l % G::LPR) * G::VEC;
}

// Load / store the vector of `valid` (<= VEC) elements at p: 16 bytes when vec, else element-wise.
template <typename T>
__device__ __forceinline__ void gnt2_load(const T* p, bool vec, uint32_t valid, float (&v)[Vec16<T>::N]) {
  if (vec) {
    load_vec16(p, v);
  } else {
    load_vec_scalar(p, valid, v);
  }
}
template <typename T>
__device__ __forceinline__ void gnt2_store(T* p, bool vec, uint32_t valid, const float (&v)[Vec16<T>::N]) {
  if (vec) {
    store_vec16(p, v);
  } else {
    store_vec_scalar(p, valid, v);
  }
}

// Elements of a VEC vector starting at i still below n (0 past the end).
__device__ __forceinline__ uint32_t gnt2_valid(uint32_t i, uint32_t n, uint32_t vec) {
  return i < n ? (n - i < vec ? n - i : vec) : 0u;
}

// Whether a launch takes the 16-byte path: C and S whole vectors, every pointer 16-byte aligned.
template <typename T> __device__ __forceinline__ bool gnt2_vec(const GnTokensParams& q) {
  constexpr uint32_t VEC = Vec16<T>::N;
  const GroupNorm2Params& p = q.gn;
  return p.c % VEC == 0 && p.s % VEC == 0 && aligned16(p.x) && aligned16(p.y) && aligned16(q.residual);
}

template <typename T> __device__ __forceinline__ void group_norm_tokens_v2(const GnTokensParams& q) {
  using G = GnTokens2<T>;
  constexpr uint32_t VEC = G::VEC;
  const GroupNorm2Params& p = q.gn;
  __shared__ float tile[G::TC][GNT2_TS + 1];
  __shared__ float scale[G::TC], shift[G::TC];
  __shared__ float gmean[G::TC], grstd[G::TC];
  const uint32_t nf = blockIdx.z, n = nf / q.frames, f = nf % q.frames;
  const uint32_t c0 = blockIdx.y * G::TC, s0 = blockIdx.x * GNT2_TS;
  const uint32_t cpg = p.c / p.groups;
  const uint32_t c_end = c0 + G::TC < p.c ? c0 + G::TC : p.c;
  const uint32_t g0 = c0 / cpg, ng = (c_end - 1) / cpg - g0 + 1; // the tile's groups
  const uint32_t w = threadIdx.x / WARP_SIZE, l = threadIdx.x % WARP_SIZE;
  // 1. statistics: warp w merges groups g0 + w, g0 + w + 8, ... over all frames and chunks.
  const uint32_t parts = q.frames * p.chunks;
  for (uint32_t gi = w; gi < ng; gi += GNT2_WARPS) {
    GnStat acc = {0.0f, 0.0f, 0.0f};
    for (uint32_t k = l; k < parts; k += WARP_SIZE) {
      const uint32_t fr = k / p.chunks, kk = k - fr * p.chunks;
      const float4 v = p.ws[((uint64_t)(n * q.frames + fr) * p.groups + g0 + gi) * p.chunks + kk];
      acc = gn_merge(acc, {v.x, v.y, v.z});
    }
    acc = gn_warp_merge(acc, l);
    if (l == 0) {
      gmean[gi] = acc.mean;
      grstd[gi] = rsqrtf(acc.m2 / acc.n + p.eps);
    }
  }
  __syncthreads();
  if (threadIdx.x < c_end - c0) {
    const uint32_t c = c0 + threadIdx.x, gi = c / cpg - g0;
    const float sc = to_f32(static_cast<const T*>(p.gamma)[c]) * grstd[gi];
    scale[threadIdx.x] = sc;
    shift[threadIdx.x] = fmaf(-gmean[gi], sc, to_f32(static_cast<const T*>(p.beta)[c]));
  }
  __syncthreads();
  const bool vec = gnt2_vec<T>(q);
  // 2. planes along S, normalised into the tile.
  {
    uint32_t r, sc;
    gnt2_planes_slot<T>(r, sc);
    const uint32_t c = c0 + r, s = s0 + sc;
    float v[VEC];
    if (c < p.c && s < p.s) {
      gnt2_load(static_cast<const T*>(p.x) + ((uint64_t)nf * p.c + c) * p.s + s, vec, gnt2_valid(s, p.s, VEC), v);
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) tile[r][sc + j] = fmaf(v[j], scale[r], shift[r]);
    }
  }
  __syncthreads();
  // 3. tokens along C.
  uint32_t s, cr;
  gnt2_tokens_slot<T>(s, cr);
  const uint32_t c = c0 + cr;
  if (s0 + s < p.s && c < p.c) {
    const uint32_t valid = gnt2_valid(c, p.c, VEC);
    float v[VEC];
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) v[j] = j < valid ? tile[cr + j][s] : 0.0f; // rows past C: unwritten
    T* y = static_cast<T*>(p.y) + (((uint64_t)n * p.s + s0 + s) * q.frames + f) * p.c + c;
    gnt2_store(y, vec, valid, v);
  }
}

template <typename T> __device__ __forceinline__ void tokens_planes_add_v2(const GnTokensParams& q) {
  using G = GnTokens2<T>;
  constexpr uint32_t VEC = G::VEC;
  const GroupNorm2Params& p = q.gn;
  __shared__ float tile[G::TC][GNT2_TS + 1];
  const uint32_t nf = blockIdx.z, n = nf / q.frames, f = nf % q.frames;
  const uint32_t c0 = blockIdx.y * G::TC, s0 = blockIdx.x * GNT2_TS;
  const bool vec = gnt2_vec<T>(q);
  { // 1. tokens along C into the tile
    uint32_t s, cr;
    gnt2_tokens_slot<T>(s, cr);
    const uint32_t c = c0 + cr;
    if (s0 + s < p.s && c < p.c) {
      float v[VEC];
      const T* x = static_cast<const T*>(p.x) + (((uint64_t)n * p.s + s0 + s) * q.frames + f) * p.c + c;
      gnt2_load(x, vec, gnt2_valid(c, p.c, VEC), v);
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) tile[cr + j][s] = v[j];
    }
  }
  __syncthreads();
  // 2. planes along S, plus the residual
  uint32_t r, sc;
  gnt2_planes_slot<T>(r, sc);
  const uint32_t c = c0 + r, s = s0 + sc;
  if (c < p.c && s < p.s) {
    const uint32_t y_c = q.y_c != 0 ? q.y_c : p.c;
    const uint64_t e = ((uint64_t)nf * p.c + c) * p.s + s;
    const uint32_t valid = gnt2_valid(s, p.s, VEC);
    float v[VEC];
    gnt2_load(static_cast<const T*>(q.residual) + e, vec, valid, v);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) v[j] += j < valid ? tile[r][sc + j] : 0.0f; // columns past S: unwritten
    gnt2_store(static_cast<T*>(p.y) + ((uint64_t)nf * y_c + c) * p.s + s, vec, valid, v);
  }
}

#define GN_TOKENS_V2_ENTRIES(T, SUFFIX)                                                            \
  extern "C" __global__ void __launch_bounds__(GNT2_THREADS)                                       \
      group_norm_tokens_v2_##SUFFIX(const GnTokensParams p) {                                      \
    group_norm_tokens_v2<T>(p);                                                                    \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(GNT2_THREADS)                                       \
      tokens_planes_add_v2_##SUFFIX(const GnTokensParams p) {                                      \
    tokens_planes_add_v2<T>(p);                                                                    \
  }

GN_TOKENS_V2_ENTRIES(float, f32)
GN_TOKENS_V2_ENTRIES(__nv_bfloat16, bf16)

// ------------------------------------------------------------------------------------------------
// Channels-last (issue 16 item 1): GroupNorm(+SiLU) of x stored (N, S, C) rows (an (N, C, H, W)
// image channels-last, S = H*W), y in the same layout; group g of image n is channels
// [g*cpg, (g+1)*cpg) of every row of image n. Two launches over grid (chunks, tiles, N):
//   tile  t: channels [t*TC, (t+1)*TC), TC = 8 vectors of 16 bytes (64 bf16, 32 f32);
//   chunk k: rows [k*GNR_ROWS, (k+1)*GNR_ROWS), GNR_ROWS = 512;
//   thread (warp w, lane l): channel vector v = l % 8 of the tile, rows w*4 + l/8 + 32*i, i < 16.
//   A warp reads / writes 4 rows of 128 contiguous bytes per instruction (16 sectors per request).
//   stats  block (k, t, n): per-channel (count, mean, M2) of the thread's 16 rows (sums of
//          x - K and (x - K)^2 with K the thread's first row: shifted data, no cancellation when
//          K is near the mean, as a sample of it is), merged over the block's 32 row slots (Chan's formula: the warp's 4 by
//          shuffles, then the 8 warps through shared memory in order), then over each group's
//          channels in the tile (one warp per group) into one float4 partial {count, mean, M2, 0}
//          at ws[((n * G + g) * chunks + k) * tiles + t] (only tiles that hold channels of g write).
//   apply  block (k, t, n): one warp per group of the tile merges the group's chunks x spanned
//          tiles partials in index order, then every thread normalises its rows (+ SiLU).
// C not a multiple of VEC or a pointer off 16 bytes: the same mapping element by element.
// Deterministic (fixed orders, no atomics); y may alias x (the apply reads before it writes).
// ------------------------------------------------------------------------------------------------

enum : uint32_t { GNR_THREADS = 256, GNR_WARPS = GNR_THREADS / WARP_SIZE };
enum : uint32_t { GNR_LPR = 8 };                          // lanes (16-byte vectors) per row
enum : uint32_t { GNR_RPW = WARP_SIZE / GNR_LPR };        // rows per warp instruction: 4
enum : uint32_t { GNR_RPT = 16 };                         // rows per thread
enum : uint32_t { GNR_ROWS = GNR_WARPS * GNR_RPW * GNR_RPT }; // 512 rows per block

template <typename T> struct GnRows {
  enum : uint32_t { VEC = Vec16<T>::N, TC = GNR_LPR * VEC }; // channels per tile: 64 bf16, 32 f32
};

// This thread's place: tile-local channel vector v, row slot within the warp rw.
struct GnrSlot {
  uint32_t w, v, rw;
};

__device__ __forceinline__ GnrSlot gnr_slot() {
  const uint32_t l = threadIdx.x % WARP_SIZE;
  return {threadIdx.x / WARP_SIZE, l % GNR_LPR, l / GNR_LPR};
}

// Row of row slot i of this thread in this block's chunk.
__device__ __forceinline__ uint32_t gnr_row(const GnrSlot& t, uint32_t i) {
  return blockIdx.x * GNR_ROWS + i * (GNR_WARPS * GNR_RPW) + t.w * GNR_RPW + t.rw;
}

// The groups holding channels of this block's tile: first g0, count ng; tile channels [c0, c_end).
struct GnrTile {
  uint32_t c0, c_end, cpg, g0, ng, tiles;
};

template <typename T> __device__ __forceinline__ GnrTile gnr_tile(const GroupNorm2Params& p) {
  constexpr uint32_t TC = GnRows<T>::TC;
  GnrTile r;
  r.c0 = blockIdx.y * TC;
  r.c_end = r.c0 + TC < p.c ? r.c0 + TC : p.c;
  r.cpg = p.c / p.groups;
  r.g0 = r.c0 / r.cpg;
  r.ng = (r.c_end - 1) / r.cpg - r.g0 + 1;
  r.tiles = (p.c + TC - 1) / TC;
  return r;
}

template <typename T> __device__ __forceinline__ bool gnr_vec(const GroupNorm2Params& p) {
  return p.c % Vec16<T>::N == 0 && aligned16(p.x) && aligned16(p.y);
}

template <typename T>
__device__ __forceinline__ void group_norm_stats_nhwc(const GroupNorm2Params& p) {
  constexpr uint32_t VEC = GnRows<T>::VEC, TC = GnRows<T>::TC;
  __shared__ float pn[GNR_WARPS][TC], pm[GNR_WARPS][TC], pq[GNR_WARPS][TC];
  __shared__ float cn[TC], cm[TC], cq[TC];
  const GnrSlot t = gnr_slot();
  const GnrTile tile = gnr_tile<T>(p);
  const uint32_t n = blockIdx.z, c = tile.c0 + t.v * VEC;
  const uint32_t valid = gnt2_valid(c, p.c, VEC);
  const bool vec = gnr_vec<T>(p);
  // 1. this thread's rows, per channel: shifted sums about its first row K (rows grow with i, so
  //    a thread's valid rows are a prefix of its 16).
  float cnt = 0.0f, k0[VEC], s1[VEC], s2[VEC];
#pragma unroll
  for (uint32_t j = 0; j < VEC; ++j) k0[j] = s1[j] = s2[j] = 0.0f;
  const T* x = static_cast<const T*>(p.x) + (uint64_t)n * p.s * p.c + c;
  if (valid != 0 && gnr_row(t, 0) < p.s) gnt2_load(x + (uint64_t)gnr_row(t, 0) * p.c, vec, valid, k0);
#pragma unroll 4
  for (uint32_t i = 0; i < GNR_RPT; ++i) {
    const uint32_t s = gnr_row(t, i);
    if (s >= p.s || valid == 0) break;
    float v[VEC];
    gnt2_load(x + (uint64_t)s * p.c, vec, valid, v);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) {
      const float d = v[j] - k0[j];
      s1[j] += d;
      s2[j] = fmaf(d, d, s2[j]);
    }
    cnt += 1.0f;
  }
  GnStat st[VEC];
  const float inv = cnt > 0.0f ? 1.0f / cnt : 0.0f;
#pragma unroll
  for (uint32_t j = 0; j < VEC; ++j) st[j] = {cnt, k0[j] + s1[j] * inv, fmaxf(fmaf(-s1[j], s1[j] * inv, s2[j]), 0.0f)};
  // 2. the warp's 4 row slots (lanes l, l ^ 8, l ^ 16, l ^ 24): lower lane first, so all four
  //    hold the same bits.
  const uint32_t lane = threadIdx.x % WARP_SIZE;
#pragma unroll
  for (uint32_t off = GNR_LPR; off < WARP_SIZE; off <<= 1) {
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) {
      GnStat o;
      o.n = __shfl_xor_sync(FULL_MASK, st[j].n, off);
      o.mean = __shfl_xor_sync(FULL_MASK, st[j].mean, off);
      o.m2 = __shfl_xor_sync(FULL_MASK, st[j].m2, off);
      st[j] = (lane & off) ? gn_merge(o, st[j]) : gn_merge(st[j], o);
    }
  }
  // 3. to shared memory, warp-major: store m of the VEC / 4 stores has lane (v, rw) write element
  //    j = rw + 4 * ((v * VEC / 32) ^ m) % (VEC / 4): 32 distinct banks per store (no conflicts).
#pragma unroll
  for (uint32_t m = 0; m < VEC / 4; ++m) {
    const uint32_t j = t.rw + 4 * (((t.v * VEC / WARP_SIZE) ^ m) % (VEC / 4));
    GnStat e = st[0];
#pragma unroll
    for (uint32_t jj = 1; jj < VEC; ++jj) e = jj == j ? st[jj] : e;
    pn[t.w][t.v * VEC + j] = e.n;
    pm[t.w][t.v * VEC + j] = e.mean;
    pq[t.w][t.v * VEC + j] = e.m2;
  }
  __syncthreads();
  // 4. per channel over the 8 warps, in order.
  if (threadIdx.x < TC) {
    GnStat a = {pn[0][threadIdx.x], pm[0][threadIdx.x], pq[0][threadIdx.x]};
#pragma unroll
    for (uint32_t w = 1; w < GNR_WARPS; ++w) a = gn_merge(a, {pn[w][threadIdx.x], pm[w][threadIdx.x], pq[w][threadIdx.x]});
    cn[threadIdx.x] = a.n;
    cm[threadIdx.x] = a.mean;
    cq[threadIdx.x] = a.m2;
  }
  __syncthreads();
  // 5. per group over its channels in the tile: warp w takes groups w, w + 8, ...
  for (uint32_t gi = t.w; gi < tile.ng; gi += GNR_WARPS) {
    const uint32_t g = tile.g0 + gi;
    const uint32_t lo = g * tile.cpg > tile.c0 ? g * tile.cpg - tile.c0 : 0;
    const uint32_t hi = (g + 1) * tile.cpg < tile.c_end ? (g + 1) * tile.cpg - tile.c0 : tile.c_end - tile.c0;
    GnStat a = {0.0f, 0.0f, 0.0f};
    for (uint32_t k = lo + lane; k < hi; k += WARP_SIZE) a = gn_merge(a, {cn[k], cm[k], cq[k]});
    a = gn_warp_merge(a, lane);
    if (lane == 0) {
      const uint64_t slot = (((uint64_t)n * p.groups + g) * p.chunks + blockIdx.x) * tile.tiles + blockIdx.y;
      p.ws[slot] = make_float4(a.n, a.mean, a.m2, 0.0f);
    }
  }
}

// TOKENS: x is the channels-last storage of (N*F, C, H, W) planes seen as N items of S = F*H*W
// rows (frame-major), and row s = f*HW + q of item n is written to tokens row q*F + f of
// (N, H*W, F, C) (the motion module's entry; F = `frames`). Rows stay whole 16-byte vector runs,
// so the stores keep 4 rows of 128 contiguous bytes per warp instruction.
template <typename T, bool SILU, bool TOKENS = false>
__device__ __forceinline__ void group_norm_apply_nhwc(const GroupNorm2Params& p, uint32_t frames = 1) {
  constexpr uint32_t VEC = GnRows<T>::VEC, TC = GnRows<T>::TC;
  // (mean, rstd) of the tile's groups at gi + gi / 32 (no bank conflicts when lanes of one
  // instruction read up to 64 distinct groups, cpg = 1)
  __shared__ float gmean[TC + 4], grstd[TC + 4];
  const GnrSlot t = gnr_slot();
  const GnrTile tile = gnr_tile<T>(p);
  const uint32_t n = blockIdx.z, lane = threadIdx.x % WARP_SIZE;
  // 1. warp w merges groups w, w + 8, ...: partials (chunk k, tile tt) for the tiles tt that hold
  //    channels of the group, in index order.
  for (uint32_t gi = t.w; gi < tile.ng; gi += GNR_WARPS) {
    const uint32_t g = tile.g0 + gi;
    const uint32_t t_lo = g * tile.cpg / TC, span = ((g + 1) * tile.cpg - 1) / TC - t_lo + 1;
    const float4* ws = p.ws + ((uint64_t)n * p.groups + g) * p.chunks * tile.tiles + t_lo;
    GnStat a = {0.0f, 0.0f, 0.0f};
    for (uint32_t q = lane; q < p.chunks * span; q += WARP_SIZE) {
      const uint32_t k = q / span;
      const float4 w = ws[(uint64_t)k * tile.tiles + (q - k * span)];
      a = gn_merge(a, {w.x, w.y, w.z});
    }
    a = gn_warp_merge(a, lane);
    if (lane == 0) {
      gmean[gi + gi / WARP_SIZE] = a.mean;
      grstd[gi + gi / WARP_SIZE] = rsqrtf(a.m2 / a.n + p.eps);
    }
  }
  __syncthreads();
  // 2. this thread's channels: scale and shift in registers.
  const uint32_t c = tile.c0 + t.v * VEC;
  const uint32_t valid = gnt2_valid(c, p.c, VEC);
  if (valid == 0) return;
  const bool vec = gnr_vec<T>(p);
  const bool vec_affine = vec && aligned16(p.gamma) && aligned16(p.beta);
  float sc[VEC], sh[VEC];
  gnt2_load(static_cast<const T*>(p.gamma) + c, vec_affine, valid, sc);
  gnt2_load(static_cast<const T*>(p.beta) + c, vec_affine, valid, sh);
#pragma unroll
  for (uint32_t j = 0; j < VEC; ++j) {
    const uint32_t cj = j < valid ? c + j : c;
    const uint32_t gi = cj / tile.cpg - tile.g0, at = gi + gi / WARP_SIZE;
    sc[j] *= grstd[at];
    sh[j] = fmaf(-gmean[at], sc[j], sh[j]);
  }
  // 3. normalise the rows.
#pragma unroll 4
  for (uint32_t i = 0; i < GNR_RPT; ++i) {
    const uint32_t s = gnr_row(t, i);
    if (s >= p.s) break;
    const uint64_t e = ((uint64_t)n * p.s + s) * p.c + c;
    uint64_t eo = e;
    if (TOKENS) {
      const uint32_t hw = p.s / frames, f = s / hw;
      eo = ((uint64_t)n * p.s + (uint64_t)(s - f * hw) * frames + f) * p.c + c;
    }
    float v[VEC];
    gnt2_load(static_cast<const T*>(p.x) + e, vec, valid, v);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) {
      float o = fmaf(v[j], sc[j], sh[j]);
      if (SILU) o = silu(o);
      v[j] = o;
    }
    gnt2_store(static_cast<T*>(p.y) + eo, vec, valid, v);
  }
}

#define GROUP_NORM_NHWC_ENTRIES(T, SUFFIX)                                                         \
  extern "C" __global__ void __launch_bounds__(GNR_THREADS)                                        \
      group_norm_stats_nhwc_v1_##SUFFIX(const GroupNorm2Params p) {                                \
    group_norm_stats_nhwc<T>(p);                                                                   \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(GNR_THREADS)                                        \
      group_norm_nhwc_v1_##SUFFIX(const GroupNorm2Params p) {                                      \
    group_norm_apply_nhwc<T, false>(p);                                                            \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(GNR_THREADS)                                        \
      group_norm_silu_nhwc_v1_##SUFFIX(const GroupNorm2Params p) {                                 \
    group_norm_apply_nhwc<T, true>(p);                                                             \
  }

GROUP_NORM_NHWC_ENTRIES(float, f32)
GROUP_NORM_NHWC_ENTRIES(__nv_bfloat16, bf16)

// ------------------------------------------------------------------------------------------------
// Channels-last token layouts (issue 16 item 1, step 3): the motion module's entry and exit on
// channels-last planes (N*F, C, H, W), stored (N, F, H*W, C) rows; tokens (N, H*W, F, C).
//   group_norm_tokens_nhwc_v1 (GnTokensParams; gn as the channels-last stats launch over N items
//     of S = F*H*W rows): the apply above with its output rows permuted to tokens (TOKENS).
//     Launch: group_norm_stats_nhwc_v1 then this, both grid (chunks, tiles, N).
//   tokens_planes_add_nhwc_v1 (GnTokensParams; gn.x tokens (N, S, F, C), residual (N*F, S, C) rows,
//     gn.y (N*F, S, y_c) rows with channels [0, C) written, gn.n = N*F planes, gn.s = S = H*W):
//     y[p, s, c] = residual[p, s, c] + tokens[(n*S + s)*F + f, c], p = n*F + f. One 16-byte vector
//     per thread per step of a grid-stride loop over (plane, s, vector) in 32-bit indices (N*F*S
//     vectors per row < 2^32, checked on the host): consecutive lanes read and
//     write consecutive vectors of one row (rows of C contiguous elements on every side), so a
//     warp touches whole 32-byte sectors. C or y_c off whole vectors, or a pointer off 16 bytes:
//     the same mapping with element-wise accesses.
// ------------------------------------------------------------------------------------------------

template <typename T> __device__ __forceinline__ void tokens_planes_add_nhwc(const GnTokensParams& q) {
  constexpr uint32_t VEC = Vec16<T>::N;
  const GroupNorm2Params& p = q.gn;
  const uint32_t yc = q.y_c ? q.y_c : p.c;
  const bool vec = p.c % VEC == 0 && yc % VEC == 0 && aligned16(p.x) && aligned16(p.y) && aligned16(q.residual);
  const uint32_t units = (p.c + VEC - 1) / VEC; // vectors per row
  const uint32_t total = p.n * p.s * units;      // < 2^32 (checked on the host)
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const uint32_t r = i / units, c = (i - r * units) * VEC;
    const uint32_t plane = r / p.s, s = r - plane * p.s;
    const uint32_t n = plane / q.frames, f = plane - n * q.frames;
    const uint32_t valid = gnt2_valid(c, p.c, VEC);
    float a[VEC], b[VEC];
    gnt2_load(static_cast<const T*>(q.residual) + (uint64_t)r * p.c + c, vec, valid, a);
    gnt2_load(static_cast<const T*>(p.x) + ((uint64_t)(n * p.s + s) * q.frames + f) * p.c + c, vec, valid, b);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) a[j] += b[j];
    gnt2_store(static_cast<T*>(p.y) + (uint64_t)r * yc + c, vec, valid, a);
  }
}

#define GN_TOKENS_NHWC_ENTRIES(T, SUFFIX)                                                          \
  extern "C" __global__ void __launch_bounds__(GNR_THREADS)                                        \
      group_norm_tokens_nhwc_v1_##SUFFIX(const GnTokensParams p) {                                 \
    group_norm_apply_nhwc<T, false, true>(p.gn, p.frames);                                         \
  }                                                                                                \
  extern "C" __global__ void __launch_bounds__(GNR_THREADS)                                        \
      tokens_planes_add_nhwc_v1_##SUFFIX(const GnTokensParams p) {                                 \
    tokens_planes_add_nhwc<T>(p);                                                                  \
  }

GN_TOKENS_NHWC_ENTRIES(float, f32)
GN_TOKENS_NHWC_ENTRIES(__nv_bfloat16, bf16)
