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
//       (warp shfl, then the per-warp partials through shared memory and a final warp shfl). <- ships
// Entries: group_norm_v1_{f32,bf16}, group_norm_silu_v1_{f32,bf16} (one GroupNormParams argument).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

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
