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
      const uint32_t off = (uint32_t)(e0 - gbase);
      uint32_t c = off / p.s;
      uint32_t rem = off - c * p.s;
      float sc = to_f32(gamma[c0 + c]) * rstd;
      float sh = fmaf(-mean, sc, to_f32(beta[c0 + c]));
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) {
        if (rem == p.s) {
          rem = 0;
          ++c;
          sc = to_f32(gamma[c0 + c]) * rstd;
          sh = fmaf(-mean, sc, to_f32(beta[c0 + c]));
        }
        float o = fmaf(e[j], sc, sh);
        if (SILU) o = silu(o);
        e[j] = o;
        ++rem;
      }
      store_vec16(y + e0, e);
    } else { // a group-edge vector: element by element (unrolled: e stays in registers)
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) {
        const uint64_t el = e0 + j;
        if (el < lo || el >= hi) continue;
        const uint32_t c = c0 + (uint32_t)(el - gbase) / p.s;
        const float sc = to_f32(gamma[c]) * rstd;
        float o = fmaf(e[j], sc, fmaf(-mean, sc, to_f32(beta[c])));
        if (SILU) o = silu(o);
        y[el] = from_f32<T>(o);
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
