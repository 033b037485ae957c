// ------------------------------------------------------------------------------------------------
// mean_dim.cu: mean over one dim, kept with size 1.
//
//   mean_dim    x (outer, d, inner) -> y (outer, 1, inner), y = sum_j x[o, j, k] / d (d = 0 gives NaN,
//               as PyTorch); f32 accumulation.
//
//   storage dtype T in {f32, bf16} for x and y; math in f32.
//
// Versions:
//   v1: one output element per thread per step, grid-stride loop, POOL_THREADS threads; reads its
//       column with stride `inner` (coalesced across threads when inner > 1).          <- ships
// Entries (one PoolParams argument, pool.cuh): mean_dim_v1_{f32,bf16}.
// ------------------------------------------------------------------------------------------------

#include "pool.cuh"

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void mean_dim_v1(const PoolParams& p) {
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const uint64_t inner = p.inner;
  const float inv = 1.0f / (float)p.d;
  grid_stride_loop(p.n_out, [&](uint64_t i) {
    const uint64_t k = i % inner;
    const uint64_t o = i / inner;
    const T* col = x + o * p.d * inner + k;
    float acc = 0.0f;
    for (uint32_t j = 0; j < p.d; ++j) acc += to_f32(col[(uint64_t)j * inner]);
    y[i] = from_f32<T>(p.d == 0 ? __int_as_float(0x7fc00000) : acc * inv);
  });
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

ENTRIES_F32_BF16(POOL_ENTRY, mean_dim_v1)
