// ------------------------------------------------------------------------------------------------
// softmax.cu: row softmax over the last dimension, with a pre-scale (attention logits).
//
//   y[r, j] = exp(s*x[r, j] - max_j s*x[r, :]) / sum_j exp(s*x[r, j] - max)
//
//   x, y : (rows, cols) row-major contiguous, storage dtype T in {f32, bf16}; math in f32.
//   A row that is entirely -inf (fully masked) gives zeros, not NaN.
//
// Versions:
//   v1: one warp per row, SOFTMAX_WARPS rows per block; three passes over the row (max, sum, write),
//       butterfly shfl reductions, no shared memory.                                 <- ships
// Entries: softmax_v1_f32, softmax_v1_bf16 (one SoftmaxParams argument).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/softmax.rs): block = SOFTMAX_WARPS * 32, grid = ceil(rows / SOFTMAX_WARPS).
enum : uint32_t { SOFTMAX_WARPS = 4 };
enum : uint32_t { SOFTMAX_THREADS = SOFTMAX_WARPS * WARP_SIZE };

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/softmax.rs `SoftmaxParams`, 32 bytes)
// ------------------------------------------------------------------------------------------------

struct SoftmaxParams {
  const void* x; // (rows, cols) T
  void* y;       // (rows, cols) T, may alias x
  uint32_t rows;
  uint32_t cols;
  float scale;   // multiplies x before the softmax (1.0 for a plain softmax)
  uint32_t _pad;
};

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void softmax_v1(const SoftmaxParams& p) {
  uint32_t row, lane;
  if (!warp_row<SOFTMAX_WARPS>(p.rows, row, lane)) return;
  const T* x = static_cast<const T*>(p.x) + (uint64_t)row * p.cols;
  T* y = static_cast<T*>(p.y) + (uint64_t)row * p.cols;

  float m = neg_inf();
  for (uint32_t j = lane; j < p.cols; j += WARP_SIZE) m = fmaxf(m, p.scale * to_f32(x[j]));
  m = warp_max(m);
  const float shift = (m == neg_inf()) ? 0.0f : m;

  float s = 0.0f;
  for (uint32_t j = lane; j < p.cols; j += WARP_SIZE) s += __expf(p.scale * to_f32(x[j]) - shift);
  s = warp_sum(s);
  const float inv = (s > 0.0f) ? 1.0f / s : 0.0f;

  for (uint32_t j = lane; j < p.cols; j += WARP_SIZE)
    y[j] = from_f32<T>(__expf(p.scale * to_f32(x[j]) - shift) * inv);
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define SOFTMAX_ENTRY(NAME, T)                                                                     \
  extern "C" __global__ void __launch_bounds__(SOFTMAX_THREADS) NAME(const SoftmaxParams p) {      \
    softmax_v1<T>(p);                                                                              \
  }

SOFTMAX_ENTRY(softmax_v1_f32, float)
SOFTMAX_ENTRY(softmax_v1_bf16, __nv_bfloat16)
