// arch: sm_90a only
// ------------------------------------------------------------------------------------------------
// group_norm_sm90.cu: single-pass GroupNorm (+ SiLU) over (N, C, S) planes on Hopper thread-block
// clusters (issue 18). group_norm.cu's v2 reads x twice (stats launch, apply launch); here x is
// read from DRAM once:
//
//   one cluster of CL blocks (CL in {1, 2, 4, 8}, compile-time `__cluster_dims__`) per (sample n,
//   group g), grid = (CL, G, N). Group (n, g) is the contiguous span [gbase, gbase + len) of x,
//   len = C / G * S. Its vectors (16 bytes, VEC = 8 bf16) start at A = gbase rounded down to VEC;
//   block rank r of the cluster holds vectors [r * vpc, (r + 1) * vpc) of the group (vpc from the
//   launcher: ceil(ceil((len + VEC - 1) / VEC) / CL)), the elements [lo, hi) of the group in them.
//   1. load   whole vectors by 16-byte cp.async into the block's dynamic shared memory (a warp
//             copies 512 contiguous bytes per instruction); the group's edge vectors (a group
//             starting or ending off 16 bytes) element by element, zeros outside [lo, hi);
//   2. stats  the block's exact (count, mean, M2) from shared memory (block sum -> mean, block
//             sum of squared deviations -> M2: no sum-of-squares cancellation), thread 0 puts it
//             in the block's `part` slot; barrier.cluster; thread 0 of every block reads the CL
//             slots through DSMEM (mapa + ld.shared::cluster) and merges them in rank order
//             (Chan et al.'s pairwise formula: every block gets the same bits); barrier.cluster
//             again (no block exits or reuses `part` while another may still read it);
//   3. apply  normalise from shared memory (one channel division per vector, gamma / beta folded
//             into scale / shift), SiLU, 16-byte stores to y (the edge vectors element by element).
// Needs x and y 16-byte aligned (the launcher runs group_norm.cu's v2 otherwise) and a slice
// that fits one block's shared memory (kernels/src/group_norm_sm90.rs `plan`). Deterministic: fixed
// reduction and merge orders, no atomics. y may alias x: a block writes only the vectors it read
// itself, after reading all of them.
// Entries: group_norm_sm90_c{1,2,4,8}_v1_bf16, group_norm_silu_sm90_c{1,2,4,8}_v1_bf16 (one
// GnSm90Params argument; c<CL> the cluster size).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "mma.cuh"
#include "group_norm_affine.cuh"

enum : uint32_t { GN90_THREADS = 256, GN90_WARPS = GN90_THREADS / WARP_SIZE, GN90_VEC = 8 };
static_assert(GN90_WARPS <= WARP_SIZE, "the final reduction is one warp wide");

// params (mirrored by kernels/src/group_norm_sm90.rs `GnSm90Params`, 56 bytes)
struct GnSm90Params {
  const void* x;     // (N, C, S) bf16
  const void* gamma; // (C) bf16
  const void* beta;  // (C) bf16
  void* y;           // (N, C, S) bf16
  uint32_t n;
  uint32_t c;
  uint32_t s;
  uint32_t groups;
  float eps;
  uint32_t vpc;      // 16-byte vectors per block of a cluster
};

// ------------------------------------------------------------------------------------------------
// cluster primitives (inline PTX)
// ------------------------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}

// Every thread of the cluster: arrive (release) and wait (acquire).
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n"
               "barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// The float4 at shared address `addr` of cluster block `rank` (DSMEM).
__device__ __forceinline__ float4 ld_dsmem_f4(uint32_t addr, uint32_t rank) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(addr), "r"(rank));
  float4 v;
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "r"(remote)
               : "memory");
  return v;
}

// ------------------------------------------------------------------------------------------------
// block reductions
// ------------------------------------------------------------------------------------------------

// Sum over the block; `red` has GN90_WARPS + 1 slots, reusable across calls (group_norm.cu's
// block_sum argument: the next call writes only after every thread passed this call's barriers).
__device__ __forceinline__ float gn90_block_sum(float v, float* red) {
  const uint32_t warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < GN90_WARPS ? red[lane] : 0.0f;
    w = warp_sum(w);
    if (lane == 0) red[GN90_WARPS] = w;
  }
  __syncthreads();
  return red[GN90_WARPS];
}

// Chan, Golub & LeVeque's pairwise merge of (count, mean, M2); an empty side returns the other.
__device__ __forceinline__ float4 gn90_merge(float4 a, float4 b) {
  if (b.x == 0.0f) return a;
  if (a.x == 0.0f) return b;
  const float n = a.x + b.x;
  const float d = b.y - a.y;
  const float f = b.x / n;
  return make_float4(n, fmaf(d, f, a.y), a.z + b.z + d * d * a.x * f, 0.0f);
}

// The 8 bf16 of the 16-byte shared vector `p` as f32, by one ld.shared.v4 (a warp: 4 wavefronts,
// conflict-free; reinterpreting a uint4 reference let NVRTC emit eight 2-byte loads, each a
// 4-way bank conflict). bf16 -> f32 is the 16 bits placed high.
__device__ __forceinline__ void unpack8(const uint4* p, float (&v)[GN90_VEC]) {
  uint32_t w[4];
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
               : "r"(smem_u32(p))
               : "memory");
#pragma unroll
  for (uint32_t j = 0; j < 4; ++j) {
    v[2 * j] = __uint_as_float(w[j] << 16);
    v[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
  }
}

// ------------------------------------------------------------------------------------------------
// kernel
// ------------------------------------------------------------------------------------------------

template <uint32_t CL, bool SILU> __device__ __forceinline__ void group_norm_sm90(const GnSm90Params& p) {
  using T = __nv_bfloat16;
  constexpr uint32_t VEC = GN90_VEC;
  extern __shared__ __align__(16) uint4 slice[];
  __shared__ float red[GN90_WARPS + 1];
  __shared__ __align__(16) float4 part;  // this block's (count, mean, M2), read by the cluster
  __shared__ __align__(16) float4 total; // the group's, from thread 0's merge
  const uint32_t rank = CL == 1 ? 0u : cluster_rank();
  const uint32_t g = blockIdx.y, n = blockIdx.z;
  const uint32_t cpg = p.c / p.groups;
  const uint64_t len = (uint64_t)cpg * p.s;
  const uint64_t gbase = ((uint64_t)n * p.c + (uint64_t)g * cpg) * p.s;
  const uint64_t gend = gbase + len;
  const uint64_t a = (gbase / VEC) * VEC + (uint64_t)rank * p.vpc * VEC; // this block's vector 0
  const uint64_t lo = a > gbase ? a : gbase;
  uint64_t hi = a + (uint64_t)p.vpc * VEC < gend ? a + (uint64_t)p.vpc * VEC : gend;
  if (hi < lo) hi = lo;
  const uint32_t nvec = hi > lo ? (uint32_t)((hi - a + VEC - 1) / VEC) : 0u;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  auto interior = [&](uint64_t e0) { return e0 >= lo && e0 + VEC <= hi; };

  // 1. load
  for (uint32_t v = threadIdx.x; v < nvec; v += GN90_THREADS) {
    const uint64_t e0 = a + (uint64_t)v * VEC;
    if (interior(e0)) {
      cp_async_16(smem_u32(slice + v), x + e0, 16);
    } else {
      uint4 raw;
      T* h = reinterpret_cast<T*>(&raw);
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) h[j] = (e0 + j >= lo && e0 + j < hi) ? x[e0 + j] : from_f32<T>(0.0f);
      slice[v] = raw;
    }
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  // 2. the block's exact (count, mean, M2), then the cluster's merge
  const float cnt = (float)(hi - lo); // exact: a slice is far below 2^24 elements
  float sum = 0.0f;
  for (uint32_t v = threadIdx.x; v < nvec; v += GN90_THREADS) {
    float e[VEC];
    unpack8(slice + v, e);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) sum += e[j]; // zeros outside [lo, hi)
  }
  const float bmean = gn90_block_sum(sum, red) / fmaxf(cnt, 1.0f);
  float m2 = 0.0f;
  for (uint32_t v = threadIdx.x; v < nvec; v += GN90_THREADS) {
    const uint64_t e0 = a + (uint64_t)v * VEC;
    const bool all = interior(e0);
    float e[VEC];
    unpack8(slice + v, e);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) {
      const float d = (all || (e0 + j >= lo && e0 + j < hi)) ? e[j] - bmean : 0.0f;
      m2 = fmaf(d, d, m2);
    }
  }
  m2 = gn90_block_sum(m2, red);
  float4 st = make_float4(cnt, bmean, m2, 0.0f);
  if (CL > 1) {
    if (threadIdx.x == 0) part = st;
    cluster_sync();
    if (threadIdx.x == 0) {
      float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      const uint32_t addr = smem_u32(&part);
#pragma unroll
      for (uint32_t r = 0; r < CL; ++r) acc = gn90_merge(acc, ld_dsmem_f4(addr, r));
      total = acc;
    }
    cluster_sync(); // every remote read of `part` done before any block goes on (or exits)
    // The cluster barrier orders thread 0's write of `total` for the block too; the bar.sync
    // states it for the emulator's shared-race detector, which tracks bar.sync only.
    __syncthreads();
    st = total;
  }
  const float mean = st.y;
  const float rstd = rsqrtf(st.z / st.x + p.eps);

  // 3. normalise from shared memory
  const T* gamma = static_cast<const T*>(p.gamma);
  const T* beta = static_cast<const T*>(p.beta);
  const uint32_t c0 = g * cpg;
  for (uint32_t v = threadIdx.x; v < nvec; v += GN90_THREADS) {
    const uint64_t e0 = a + (uint64_t)v * VEC;
    float e[VEC];
    unpack8(slice + v, e);
    if (interior(e0)) {
      gn_affine_vec<SILU>(e, (uint32_t)(e0 - gbase), p.s, gamma, beta, c0, mean, rstd);
      store_vec16(y + e0, e);
    } else { // a group-edge vector: element by element (unrolled: e stays in registers)
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) {
        const uint64_t el = e0 + j;
        if (el < lo || el >= hi) continue;
        const uint32_t c = c0 + (uint32_t)(el - gbase) / p.s;
        y[el] = from_f32<T>(gn_affine_elem<SILU>(e[j], c, gamma, beta, mean, rstd));
      }
    }
  }
}

#define GN90_ENTRIES(CL)                                                                           \
  extern "C" __global__ void __cluster_dims__(CL, 1, 1) __launch_bounds__(GN90_THREADS)            \
      group_norm_sm90_c##CL##_v1_bf16(const GnSm90Params p) {                                      \
    group_norm_sm90<CL, false>(p);                                                                 \
  }                                                                                                \
  extern "C" __global__ void __cluster_dims__(CL, 1, 1) __launch_bounds__(GN90_THREADS)            \
      group_norm_silu_sm90_c##CL##_v1_bf16(const GnSm90Params p) {                                 \
    group_norm_sm90<CL, true>(p);                                                                  \
  }

GN90_ENTRIES(1)
GN90_ENTRIES(2)
GN90_ENTRIES(4)
GN90_ENTRIES(8)

// ------------------------------------------------------------------------------------------------
// group_norm_tokens_sm90 (issue 18, branch gntok90): the token-layout GroupNorm in one pass.
//   x planes (N*F, C, S) (F frames per batch item, frame-major) -> y tokens (N, S, F, C):
//   GroupNorm of batch item n over its F frames + affine, as group_norm.cu's stats_v2 +
//   group_norm_tokens_v2 pair computes it (no activation), with x read from DRAM once.
//
//   bundle  B = 8 / gcd(C / G, 8) consecutive groups (launcher: `bundle`), BC = B * C / G channels,
//           a multiple of 8, so a token row of the bundle is NCV = BC / 8 whole 16-byte vectors
//           (C / G = 10, 20, 40 in the paper: BC = 40 channels, 80 bytes, NCV = 5).
//   cluster CL blocks per (batch item n, bundle b), grid = (CL, G / B, N). A unit is 8 positions
//           (one 16-byte plane vector) of one frame: units = F * S / 8, unit u = (f, s / 8);
//           block rank r holds units [r * upb, (r + 1) * upb) of all BC channels.
//   smem    row ul (a unit) of BCP = BC + NCV % 8 vectors; channel c = cv * 8 + k at column
//           k * NCV + cv. BCP is odd when NCV is (the cp.async writes of a warp, 32 consecutive
//           units of one channel, hit 8 distinct 16-byte bank groups per quarter warp) and
//           BCP == NCV (mod 8) (the apply's reads, lanes over (unit, cv) with cv fastest, vector
//           ul * BCP + k * NCV + cv == lane index + k * NCV (mod 8): distinct per quarter warp).
//   1. load  16-byte cp.async of each (channel, unit) plane vector, a warp 32 consecutive units
//            of one channel row (512 contiguous bytes within a frame);
//   2. stats per group of the bundle: the block's exact (count, mean, M2) from shared memory
//            (block sum -> mean, block sum of squared deviations; lanes along units, vectors
//            BCP apart: conflict-free for BCP odd), merged over the cluster
//            through DSMEM in rank order (Chan's formula; gn90's primitives); per channel one
//            scale and shift (gamma / beta folded) in static shared memory;
//   3. apply thread (unit ul, channel vector cv): 8 ld.shared.v4 (8 channels x 8 positions),
//            a register transpose, 8 16-byte stores of 8 consecutive channels, one per position:
//            the lanes of one unit write the bundle's whole token row (BC * 2 contiguous bytes).
// Needs S % 8 == 0, C % 8 == 0, G % B == 0, BC <= GNT90_MAX_BC, x and y 16-byte aligned and a
// block slice that fits shared memory (kernels/src/group_norm_sm90.rs `plan_tokens`); the
// launcher runs group_norm.cu's stats_v2 + group_norm_tokens_v2 otherwise. y must not alias x.
// Entries: group_norm_tokens_sm90_c{1,2,4,8}_v1_bf16 (one GnTok90Params argument).
// ------------------------------------------------------------------------------------------------

enum : uint32_t { GNT90_MAX_BUNDLE = 8, GNT90_MAX_BC = 256 };

// params (mirrored by kernels/src/group_norm_sm90.rs `GnTok90Params`, 64 bytes)
struct GnTok90Params {
  const void* x;     // (N * F, C, S) bf16 planes
  const void* gamma; // (C) bf16
  const void* beta;  // (C) bf16
  void* y;           // (N, S, F, C) bf16 tokens
  uint32_t n;        // batch items N (planes / F)
  uint32_t c;
  uint32_t s;
  uint32_t groups;
  float eps;
  uint32_t frames;   // F >= 1
  uint32_t upb;      // units (8 positions of one frame) per block of a cluster
  uint32_t bundle;   // groups per cluster B (B * C / G a multiple of 8, B <= GNT90_MAX_BUNDLE)
};

template <uint32_t CL> __device__ __forceinline__ void group_norm_tokens_sm90(const GnTok90Params& p) {
  using T = __nv_bfloat16;
  constexpr uint32_t VEC = GN90_VEC;
  extern __shared__ __align__(16) uint4 slice[];
  __shared__ float red[GN90_WARPS + 1];
  __shared__ __align__(16) float4 part[GNT90_MAX_BUNDLE];  // this block's per-group (count, mean, M2)
  __shared__ __align__(16) float4 total[GNT90_MAX_BUNDLE]; // the groups', merged over the cluster
  __shared__ __align__(16) float scale[GNT90_MAX_BC];
  __shared__ __align__(16) float shift[GNT90_MAX_BC];
  const uint32_t rank = CL == 1 ? 0u : cluster_rank();
  const uint32_t cpg = p.c / p.groups;
  const uint32_t bc = p.bundle * cpg;   // bundle channels, a multiple of VEC
  const uint32_t ncv = bc / VEC;        // 16-byte vectors of a bundle token row
  const uint32_t bcp = bc + ncv % VEC;  // shared row stride in vectors
  const uint32_t c0 = blockIdx.y * bc, n = blockIdx.z;
  const uint32_t spf = p.s / VEC;       // units per frame
  const uint32_t units = p.frames * spf;
  const uint32_t u0 = rank * p.upb;
  const uint32_t nu = u0 < units ? (units - u0 < p.upb ? units - u0 : p.upb) : 0u;
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  // shared vector of (unit ul, bundle channel c)
  auto at = [&](uint32_t ul, uint32_t c) { return slice + ul * bcp + (c % VEC) * ncv + c / VEC; };

  // 1. load
  for (uint32_t i = threadIdx.x; i < bc * nu; i += GN90_THREADS) {
    const uint32_t c = i / nu, ul = i - c * nu;
    const uint32_t u = u0 + ul, f = u / spf, sv = u - f * spf;
    const uint64_t src = ((uint64_t)(n * p.frames + f) * p.c + c0 + c) * p.s + (uint64_t)sv * VEC;
    cp_async_16(smem_u32(at(ul, c)), x + src, 16);
  }
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  // 2. per group of the bundle: the block's exact (count, mean, M2), then the cluster's merge
  const float cnt = (float)(cpg * nu * VEC); // exact: a slice is far below 2^24 elements
  for (uint32_t gi = 0; gi < p.bundle; ++gi) {
    float sum = 0.0f;
    for (uint32_t i = threadIdx.x; i < cpg * nu; i += GN90_THREADS) {
      const uint32_t cc = i / nu, ul = i - cc * nu, c = gi * cpg + cc; // lanes along units: stride BCP
      float e[VEC];
      unpack8(at(ul, c), e);
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) sum += e[j];
    }
    const float bmean = gn90_block_sum(sum, red) / fmaxf(cnt, 1.0f);
    float m2 = 0.0f;
    for (uint32_t i = threadIdx.x; i < cpg * nu; i += GN90_THREADS) {
      const uint32_t cc = i / nu, ul = i - cc * nu, c = gi * cpg + cc;
      float e[VEC];
      unpack8(at(ul, c), e);
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) {
        const float d = e[j] - bmean;
        m2 = fmaf(d, d, m2);
      }
    }
    m2 = gn90_block_sum(m2, red);
    if (threadIdx.x == 0) part[gi] = make_float4(cnt, bmean, m2, 0.0f);
  }
  if (CL > 1) {
    cluster_sync(); // every block's `part` written
    if (threadIdx.x < p.bundle) {
      float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      const uint32_t addr = smem_u32(&part[threadIdx.x]);
#pragma unroll
      for (uint32_t r = 0; r < CL; ++r) acc = gn90_merge(acc, ld_dsmem_f4(addr, r));
      total[threadIdx.x] = acc;
    }
    cluster_sync(); // every remote read of `part` done before any block goes on (or exits)
  } else {
    __syncthreads();
    if (threadIdx.x < p.bundle) total[threadIdx.x] = part[threadIdx.x];
  }
  __syncthreads(); // `total` (the cluster barrier orders it too; stated for the race detector)
  const T* gamma = static_cast<const T*>(p.gamma);
  const T* beta = static_cast<const T*>(p.beta);
  for (uint32_t c = threadIdx.x; c < bc; c += GN90_THREADS) {
    const float4 st = total[c / cpg];
    const float sc = to_f32(gamma[c0 + c]) * rsqrtf(st.z / st.x + p.eps);
    scale[c] = sc;
    shift[c] = fmaf(-st.y, sc, to_f32(beta[c0 + c]));
  }
  __syncthreads();

  // 3. apply: 8 channels x 8 positions per thread, transposed in registers, stored as token rows
  for (uint32_t i = threadIdx.x; i < nu * ncv; i += GN90_THREADS) {
    const uint32_t ul = i / ncv, cv = i - ul * ncv;
    const uint32_t u = u0 + ul, f = u / spf, sv = u - f * spf;
    float e[VEC][VEC]; // [channel k][position j]
#pragma unroll
    for (uint32_t k = 0; k < VEC; ++k) unpack8(slice + ul * bcp + k * ncv + cv, e[k]);
    float sc[VEC], sh[VEC];
    const float4* sc4 = reinterpret_cast<const float4*>(scale + cv * VEC);
    const float4* sh4 = reinterpret_cast<const float4*>(shift + cv * VEC);
#pragma unroll
    for (uint32_t h = 0; h < 2; ++h) {
      const float4 a = sc4[h], b = sh4[h];
      sc[4 * h] = a.x, sc[4 * h + 1] = a.y, sc[4 * h + 2] = a.z, sc[4 * h + 3] = a.w;
      sh[4 * h] = b.x, sh[4 * h + 1] = b.y, sh[4 * h + 2] = b.z, sh[4 * h + 3] = b.w;
    }
    T* row = y + (((uint64_t)n * p.s + (uint64_t)sv * VEC) * p.frames + f) * p.c + c0 + cv * VEC;
    const uint64_t step = (uint64_t)p.frames * p.c; // next position, same frame
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) {
      float o[VEC];
#pragma unroll
      for (uint32_t k = 0; k < VEC; ++k) o[k] = fmaf(e[k][j], sc[k], sh[k]);
      store_vec16(row + j * step, o);
    }
  }
}

#define GNT90_ENTRY(CL)                                                                            \
  extern "C" __global__ void __cluster_dims__(CL, 1, 1) __launch_bounds__(GN90_THREADS)            \
      group_norm_tokens_sm90_c##CL##_v1_bf16(const GnTok90Params p) {                              \
    group_norm_tokens_sm90<CL>(p);                                                                 \
  }

GNT90_ENTRY(1)
GNT90_ENTRY(2)
GNT90_ENTRY(4)
GNT90_ENTRY(8)
