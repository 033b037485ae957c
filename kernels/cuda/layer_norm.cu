// ------------------------------------------------------------------------------------------------
// layer_norm.cu: LayerNorm over the last dimension with optional affine.
//
//   x, y        : (rows, cols) row-major contiguous; y may alias x
//   gamma, beta : (cols) or null (no scale / no shift)
//   y = (x - mean_r) * rsqrt(var_r + eps) * gamma[j] + beta[j], biased variance
//   storage dtype T in {f32, bf16} for x, gamma, beta, y; accumulation in f32.
//
// Versions:
//   v1: one warp per row, LN_WARPS rows per block; three passes over the row (sum -> mean, sum of
//       squared deviations -> var, normalise + write), butterfly shfl reductions, no smem. <- ships
// Entries: layer_norm_v1_{f32,bf16} (one LayerNormParams argument).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/layer_norm.rs): block = LN_WARPS * 32, grid = ceil(rows / LN_WARPS).
enum : uint32_t { LN_WARPS = 4 };
enum : uint32_t { LN_THREADS = LN_WARPS * WARP_SIZE };

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/layer_norm.rs `LayerNormParams`, 48 bytes)
// ------------------------------------------------------------------------------------------------

struct LayerNormParams {
  const void* x;     // (rows, cols) T
  const void* gamma; // (cols) T, or null
  const void* beta;  // (cols) T, or null
  void* y;           // (rows, cols) T, may alias x
  uint32_t rows;
  uint32_t cols;
  float eps;
  uint32_t _pad;
};

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void layer_norm_v1(const LayerNormParams& p) {
  uint32_t row, lane;
  if (!warp_row<LN_WARPS>(p.rows, row, lane)) return;
  const T* x = static_cast<const T*>(p.x) + (uint64_t)row * p.cols;
  T* y = static_cast<T*>(p.y) + (uint64_t)row * p.cols;
  const T* gamma = static_cast<const T*>(p.gamma);
  const T* beta = static_cast<const T*>(p.beta);

  float acc = 0.0f;
  for (uint32_t j = lane; j < p.cols; j += WARP_SIZE) acc += to_f32(x[j]);
  const float mean = warp_sum(acc) / (float)p.cols;

  acc = 0.0f;
  for (uint32_t j = lane; j < p.cols; j += WARP_SIZE) {
    const float d = to_f32(x[j]) - mean;
    acc += d * d;
  }
  const float rstd = rsqrtf(warp_sum(acc) / (float)p.cols + p.eps);

  for (uint32_t j = lane; j < p.cols; j += WARP_SIZE) {
    float v = (to_f32(x[j]) - mean) * rstd;
    if (gamma != nullptr) v *= to_f32(gamma[j]);
    if (beta != nullptr) v += to_f32(beta[j]);
    y[j] = from_f32<T>(v);
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define LAYER_NORM_ENTRY(NAME, T)                                                                  \
  extern "C" __global__ void __launch_bounds__(LN_THREADS) NAME(const LayerNormParams p) {         \
    layer_norm_v1<T>(p);                                                                           \
  }

LAYER_NORM_ENTRY(layer_norm_v1_f32, float)
LAYER_NORM_ENTRY(layer_norm_v1_bf16, __nv_bfloat16)
