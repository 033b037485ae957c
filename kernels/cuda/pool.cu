// ------------------------------------------------------------------------------------------------
// pool.cu: 2-D max pooling.
//
//   max_pool2d  x (planes, h, w) -> y (planes, ho, wo), square `kernel`, `stride`, `padding`,
//               ho = (h + 2 padding - kernel) / stride + 1 (floor mode, dilation 1); padded
//               positions are -inf; NaN propagates (PyTorch `max_pool2d`).
//
//   storage dtype T in {f32, bf16} for x and y; math in f32 (max is exact in any dtype).
//
// Versions:
//   v1: one output element per thread per step, grid-stride loop, POOL_THREADS threads. <- ships
// Entries (one PoolParams argument, pool.cuh): max_pool2d_v1_{f32,bf16}. Mean over a dim:
//   mean_dim.cu.
// ------------------------------------------------------------------------------------------------

#include "pool.cuh"

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void max_pool2d_v1(const PoolParams& p) {
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  grid_stride_loop(p.n_out, [&](uint64_t i) {
    const uint32_t ox = (uint32_t)(i % p.wo);
    const uint32_t oy = (uint32_t)((i / p.wo) % p.ho);
    const uint64_t plane = i / ((uint64_t)p.wo * p.ho);
    // window clipped to the image: padded positions are -inf and never win
    const int32_t y0 = max((int32_t)(oy * p.stride) - (int32_t)p.padding, 0);
    const int32_t y1 = min((int32_t)(oy * p.stride + p.kernel) - (int32_t)p.padding, (int32_t)p.h);
    const int32_t x0 = max((int32_t)(ox * p.stride) - (int32_t)p.padding, 0);
    const int32_t x1 = min((int32_t)(ox * p.stride + p.kernel) - (int32_t)p.padding, (int32_t)p.w);
    const T* src = x + plane * p.h * p.w;
    float m = neg_inf();
    for (int32_t yy = y0; yy < y1; ++yy)
      for (int32_t xx = x0; xx < x1; ++xx) {
        const float v = to_f32(src[(uint64_t)yy * p.w + xx]);
        if (v > m || v != v) m = v; // NaN propagates
      }
    y[i] = from_f32<T>(m);
  });
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

ENTRIES_F32_BF16(POOL_ENTRY, max_pool2d_v1)
