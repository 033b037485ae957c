// ------------------------------------------------------------------------------------------------
// pool.cu: reductions over windows and dims: mean over one dim, 2-D max pooling.
//
//   mean_dim    x (outer, d, inner) -> y (outer, 1, inner), y = sum_j x[o, j, k] / d (d = 0 gives NaN,
//               as PyTorch); f32 accumulation.
//   max_pool2d  x (planes, h, w) -> y (planes, ho, wo), square `kernel`, `stride`, `padding`,
//               ho = (h + 2 padding - kernel) / stride + 1 (floor mode, dilation 1); padded
//               positions are -inf; NaN propagates (PyTorch `max_pool2d`).
//
//   storage dtype T in {f32, bf16} for x and y; math in f32 (max is exact in any dtype).
//
// Versions:
//   v1: one output element per thread per step, grid-stride loop, POOL_THREADS threads; mean_dim
//       reads its column with stride `inner` (coalesced across threads when inner > 1).  <- ships
// Entries (one PoolParams argument): mean_dim_v1_{f32,bf16}, max_pool2d_v1_{f32,bf16}.
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/pool.rs): block = POOL_THREADS,
// grid = clamp(ceil(n_out / (POOL_THREADS * 4)), 1, 65535); the grid-stride loop covers the rest.
enum : uint32_t { POOL_THREADS = 256 };

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/pool.rs `PoolParams`, 64 bytes)
// ------------------------------------------------------------------------------------------------

struct PoolParams {
  const void* x;    // T
  void* y;          // T, never aliases x
  uint64_t n_out;   // output elements: outer * inner (mean_dim) or planes * ho * wo (max_pool2d)
  uint32_t d;       // mean_dim: reduced dim size
  uint32_t inner;   // mean_dim: product of the dims after it
  uint32_t h, w;    // max_pool2d: input plane
  uint32_t ho, wo;  // max_pool2d: output plane
  uint32_t kernel;  // max_pool2d
  uint32_t stride;  // max_pool2d
  uint32_t padding; // max_pool2d
  uint32_t _pad;
};

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void mean_dim_v1(const PoolParams& p) {
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const uint64_t inner = p.inner;
  const float inv = 1.0f / (float)p.d;
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n_out; i += stride) {
    const uint64_t k = i % inner;
    const uint64_t o = i / inner;
    const T* col = x + o * p.d * inner + k;
    float acc = 0.0f;
    for (uint32_t j = 0; j < p.d; ++j) acc += to_f32(col[(uint64_t)j * inner]);
    y[i] = from_f32<T>(p.d == 0 ? __int_as_float(0x7fc00000) : acc * inv);
  }
}

template <typename T>
__device__ __forceinline__ void max_pool2d_v1(const PoolParams& p) {
  const T* x = static_cast<const T*>(p.x);
  T* y = static_cast<T*>(p.y);
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n_out; i += stride) {
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
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define POOL_ENTRY(NAME, BODY, T)                                                                  \
  extern "C" __global__ void __launch_bounds__(POOL_THREADS) NAME(const PoolParams p) {            \
    BODY<T>(p);                                                                                    \
  }

POOL_ENTRY(mean_dim_v1_f32, mean_dim_v1, float)
POOL_ENTRY(mean_dim_v1_bf16, mean_dim_v1, __nv_bfloat16)
POOL_ENTRY(max_pool2d_v1_f32, max_pool2d_v1, float)
POOL_ENTRY(max_pool2d_v1_bf16, max_pool2d_v1, __nv_bfloat16)
