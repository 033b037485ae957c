// ------------------------------------------------------------------------------------------------
// layer_norm.cu: LayerNorm over the last dimension with optional affine.
//
//   x, y        : (rows, cols) row-major contiguous; y may alias x
//   gamma, beta : (cols) or null (no scale / no shift)
//   add         : (add_rows, cols) or null: a row table added after the affine, row r taking table
//                 row r % add_rows (the motion module's sinusoidal position embedding, broadcast over
//                 the (b h w) token groups of F frames: y = norm1(x) + pe[:F])
//   y = (x - mean_r) * rsqrt(var_r + eps) * gamma[j] + beta[j] (+ add[r % add_rows][j]), biased
//   variance; one rounding to T at the end (the add happens in f32)
//   storage dtype T in {f32, bf16} for x, gamma, beta, y; accumulation in f32.
//
// Versions:
//   v1: one warp per row, LN_WARPS rows per block; three passes over the row (sum -> mean, sum of
//       squared deviations -> var, normalise + write), butterfly shfl reductions, no smem, scalar
//       accesses (2 sectors/request on bf16). Retired: v2's scalar path is its algorithm.
//   v2: same grid and numerics (two-pass mean then biased variance in f32, butterfly reductions),
//       16-byte vector accesses (8 bf16 / 4 f32 a lane) when cols is a multiple of the vector and
//       x, y, gamma, beta are 16-byte aligned; rows of at most 32 * LN_CACHE_VECS vectors are kept
//       in registers (x read once), longer rows re-read x per pass (vectorised); any other row takes
//       v1's scalar three-pass path. The optional row table `add` (eleventh session) is read with
//       the same vector / scalar choice (its base must be 16-byte aligned for the vector path). <- ships
// Entries: layer_norm_v2_{f32,bf16} (one LayerNormParams argument).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/layer_norm.rs): block = LN_WARPS * 32, grid = ceil(rows / LN_WARPS).
enum : uint32_t { LN_WARPS = 4 };
enum : uint32_t { LN_THREADS = LN_WARPS * WARP_SIZE };

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/layer_norm.rs `LayerNormParams`, 56 bytes)
// ------------------------------------------------------------------------------------------------

struct LayerNormParams {
  const void* x;     // (rows, cols) T
  const void* gamma; // (cols) T, or null
  const void* beta;  // (cols) T, or null
  void* y;           // (rows, cols) T, may alias x
  const void* add;   // (add_rows, cols) T added to row r from row r % add_rows, or null
  uint32_t rows;
  uint32_t cols;
  float eps;
  uint32_t add_rows; // >= 1 when add is set
};

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

// Vector width: 16 bytes of T.
template <typename T> struct LnVec {
  static constexpr uint32_t N = 16 / sizeof(T);
};
// 16-byte vectors a lane keeps in registers (rows up to 32 * 8 vectors: 2048 bf16, 1024 f32).
enum : uint32_t { LN_CACHE_VECS = 8 };

template <typename T> __device__ __forceinline__ void ln_unpack(const uint4& raw, float (&v)[LnVec<T>::N]) {
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (uint32_t j = 0; j < LnVec<T>::N; ++j) v[j] = to_f32(e[j]);
}

template <typename T> __device__ __forceinline__ uint4 ln_pack(const float (&v)[LnVec<T>::N]) {
  uint4 raw;
  T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (uint32_t j = 0; j < LnVec<T>::N; ++j) e[j] = from_f32<T>(v[j]);
  return raw;
}

// Normalise vector k of a row (raw x bits) with the row statistics and the optional affine, and
// store it to y.
template <typename T>
__device__ __forceinline__ void ln_apply_vec(const uint4& raw, uint32_t k, float mean, float rstd, const uint4* gamma,
                                             const uint4* beta, const uint4* add, uint4* y) {
  constexpr uint32_t VEC = LnVec<T>::N;
  float v[VEC];
  ln_unpack<T>(raw, v);
#pragma unroll
  for (uint32_t j = 0; j < VEC; ++j) v[j] = (v[j] - mean) * rstd;
  if (gamma != nullptr) {
    float g[VEC];
    ln_unpack<T>(gamma[k], g);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) v[j] *= g[j];
  }
  if (beta != nullptr) {
    float b[VEC];
    ln_unpack<T>(beta[k], b);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) v[j] += b[j];
  }
  if (add != nullptr) {
    float a[VEC];
    ln_unpack<T>(add[k], a);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) v[j] += a[j];
  }
  y[k] = ln_pack<T>(v);
}

__device__ __forceinline__ bool ln_aligned16(const void* p) { return (reinterpret_cast<uint64_t>(p) & 15u) == 0; }

// v1's scalar three-pass row (any cols, any alignment).
template <typename T>
__device__ __forceinline__ void ln_row_scalar(const T* x, T* y, const T* gamma, const T* beta, const T* add,
                                              uint32_t cols, float eps, uint32_t lane) {
  float acc = 0.0f;
  for (uint32_t j = lane; j < cols; j += WARP_SIZE) acc += to_f32(x[j]);
  const float mean = warp_sum(acc) / (float)cols;

  acc = 0.0f;
  for (uint32_t j = lane; j < cols; j += WARP_SIZE) {
    const float d = to_f32(x[j]) - mean;
    acc += d * d;
  }
  const float rstd = rsqrtf(warp_sum(acc) / (float)cols + eps);

  for (uint32_t j = lane; j < cols; j += WARP_SIZE) {
    float v = (to_f32(x[j]) - mean) * rstd;
    if (gamma != nullptr) v *= to_f32(gamma[j]);
    if (beta != nullptr) v += to_f32(beta[j]);
    if (add != nullptr) v += to_f32(add[j]);
    y[j] = from_f32<T>(v);
  }
}

// Vectorised row, nvec <= 32 * LN_CACHE_VECS: x read once into registers (lane holds vectors
// lane, lane + 32, ...), statistics two-pass on the registers.
template <typename T>
__device__ __forceinline__ void ln_row_cached(const uint4* x, uint4* y, const uint4* gamma, const uint4* beta,
                                              const uint4* add, uint32_t nvec, uint32_t cols, float eps, uint32_t lane) {
  constexpr uint32_t VEC = LnVec<T>::N;
  uint4 r[LN_CACHE_VECS];
#pragma unroll
  for (uint32_t i = 0; i < LN_CACHE_VECS; ++i) {
    const uint32_t k = lane + i * WARP_SIZE;
    r[i] = k < nvec ? x[k] : make_uint4(0, 0, 0, 0);
  }
  float acc = 0.0f;
#pragma unroll
  for (uint32_t i = 0; i < LN_CACHE_VECS; ++i) {
    if (lane + i * WARP_SIZE < nvec) {
      float v[VEC];
      ln_unpack<T>(r[i], v);
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) acc += v[j];
    }
  }
  const float mean = warp_sum(acc) / (float)cols;

  acc = 0.0f;
#pragma unroll
  for (uint32_t i = 0; i < LN_CACHE_VECS; ++i) {
    if (lane + i * WARP_SIZE < nvec) {
      float v[VEC];
      ln_unpack<T>(r[i], v);
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) {
        const float d = v[j] - mean;
        acc += d * d;
      }
    }
  }
  const float rstd = rsqrtf(warp_sum(acc) / (float)cols + eps);

#pragma unroll
  for (uint32_t i = 0; i < LN_CACHE_VECS; ++i) {
    const uint32_t k = lane + i * WARP_SIZE;
    if (k < nvec) ln_apply_vec<T>(r[i], k, mean, rstd, gamma, beta, add, y);
  }
}

// Vectorised row, any nvec: three passes over x (the re-reads hit L1 / L2).
template <typename T>
__device__ __forceinline__ void ln_row_streamed(const uint4* x, uint4* y, const uint4* gamma, const uint4* beta,
                                                const uint4* add, uint32_t nvec, uint32_t cols, float eps, uint32_t lane) {
  constexpr uint32_t VEC = LnVec<T>::N;
  float acc = 0.0f;
  for (uint32_t k = lane; k < nvec; k += WARP_SIZE) {
    float v[VEC];
    ln_unpack<T>(x[k], v);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) acc += v[j];
  }
  const float mean = warp_sum(acc) / (float)cols;

  acc = 0.0f;
  for (uint32_t k = lane; k < nvec; k += WARP_SIZE) {
    float v[VEC];
    ln_unpack<T>(x[k], v);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) {
      const float d = v[j] - mean;
      acc += d * d;
    }
  }
  const float rstd = rsqrtf(warp_sum(acc) / (float)cols + eps);

  for (uint32_t k = lane; k < nvec; k += WARP_SIZE) ln_apply_vec<T>(x[k], k, mean, rstd, gamma, beta, add, y);
}

template <typename T> __device__ __forceinline__ void layer_norm_v2(const LayerNormParams& p) {
  constexpr uint32_t VEC = LnVec<T>::N;
  uint32_t row, lane;
  if (!warp_row<LN_WARPS>(p.rows, row, lane)) return;
  const T* x = static_cast<const T*>(p.x) + (uint64_t)row * p.cols;
  T* y = static_cast<T*>(p.y) + (uint64_t)row * p.cols;
  const T* gamma = static_cast<const T*>(p.gamma);
  const T* beta = static_cast<const T*>(p.beta);
  const T* add = p.add != nullptr ? static_cast<const T*>(p.add) + (uint64_t)(row % p.add_rows) * p.cols : nullptr;

  // Uniform over the grid: every row starts 16-byte aligned iff the bases are and cols % VEC == 0.
  const bool vec = p.cols % VEC == 0 && ln_aligned16(p.x) && ln_aligned16(p.y) && ln_aligned16(gamma) &&
                   ln_aligned16(beta) && ln_aligned16(p.add);
  if (!vec) {
    ln_row_scalar<T>(x, y, gamma, beta, add, p.cols, p.eps, lane);
    return;
  }
  const uint32_t nvec = p.cols / VEC;
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  uint4* yv = reinterpret_cast<uint4*>(y);
  const uint4* gv = reinterpret_cast<const uint4*>(gamma);
  const uint4* bv = reinterpret_cast<const uint4*>(beta);
  const uint4* av = reinterpret_cast<const uint4*>(add);
  if (nvec <= LN_CACHE_VECS * WARP_SIZE)
    ln_row_cached<T>(xv, yv, gv, bv, av, nvec, p.cols, p.eps, lane);
  else
    ln_row_streamed<T>(xv, yv, gv, bv, av, nvec, p.cols, p.eps, lane);
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define LAYER_NORM_ENTRY(NAME, T)                                                                  \
  extern "C" __global__ void __launch_bounds__(LN_THREADS) NAME(const LayerNormParams p) {         \
    layer_norm_v2<T>(p);                                                                           \
  }

LAYER_NORM_ENTRY(layer_norm_v2_f32, float)
LAYER_NORM_ENTRY(layer_norm_v2_bf16, __nv_bfloat16)
