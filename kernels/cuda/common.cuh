// ------------------------------------------------------------------------------------------------
// common.cuh: fixed-width integers, bf16/f32 load-store helpers, warp reductions, ceil_div.
// Included by every kernels/cuda/*.cu. Compiled by NVRTC (no libc headers) and by nvcc alike.
// ------------------------------------------------------------------------------------------------
#pragma once

// NVRTC ships no <stdint.h>: define the few fixed-width types we use ourselves.
#ifdef __CUDACC_RTC__
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef int int32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;
#else
#include <stdint.h>
#endif

#include <cuda_bf16.h>

// ------------------------------------------------------------------------------------------------
// helpers
// ------------------------------------------------------------------------------------------------

__host__ __device__ constexpr uint32_t ceil_div(uint32_t a, uint32_t b) { return (a + b - 1) / b; }

// Geometry constants are unnamed enums: NVRTC would emit a namespace-scope `constexpr` variable as a
// module `.global`, an enumerator costs nothing.
enum : uint32_t { WARP_SIZE = 32 };
enum : uint32_t { FULL_MASK = 0xffffffffu };

// NVRTC has no <math.h> INFINITY.
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

// Storage <-> f32 accumulate conversions. One overload per storage dtype.
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float silu(float v) { return v / (1.0f + __expf(-v)); }

// Grid-stride loop over [0, n): body(i) for every index, thread t of the grid taking t, t + the
// grid's thread count, ...
template <typename F> __device__ __forceinline__ void grid_stride_loop(uint64_t n, F&& body) {
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) body(i);
}

// Element offsets of flat index i of a row-major `shape` (RANK dims, the last fastest) in two
// tensors read through per-dim element strides sa and sb (0 = broadcast).
template <int RANK>
__device__ __forceinline__ void strided_offsets(uint64_t i, const uint32_t (&shape)[RANK], const uint64_t (&sa)[RANK],
                                                const uint64_t (&sb)[RANK], uint64_t& oa, uint64_t& ob) {
  uint64_t rest = i;
  oa = 0;
  ob = 0;
#pragma unroll
  for (int d = RANK - 1; d >= 0; --d) {
    const uint64_t c = rest % shape[d];
    rest /= shape[d];
    oa += c * sa[d];
    ob += c * sb[d];
  }
}

// The f32 and bf16 entries of a storage-dtype template BODY, named BODY_f32 and BODY_bf16, through
// a module's entry macro ENTRY(NAME, BODY, T).
#define ENTRIES_F32_BF16(ENTRY, BODY) ENTRY(BODY##_f32, BODY, float) ENTRY(BODY##_bf16, BODY, __nv_bfloat16)

// Warp-per-row kernels, WARPS rows per block: this thread's row and lane; false when the row is past
// `rows` (the whole warp leaves together, so the shfl masks stay full).
template <uint32_t WARPS> __device__ __forceinline__ bool warp_row(uint32_t rows, uint32_t& row, uint32_t& lane) {
  const uint32_t warp = threadIdx.x / WARP_SIZE;
  lane = threadIdx.x % WARP_SIZE;
  row = blockIdx.x * WARPS + warp;
  return row < rows;
}

// Butterfly reductions: every lane ends with the result.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(FULL_MASK, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, offset));
  return v;
}

// ------------------------------------------------------------------------------------------------
// 16-byte vectors of a storage dtype (4 f32 or 8 bf16), converted to / from f32
// ------------------------------------------------------------------------------------------------

template <typename T> struct Vec16;
template <> struct Vec16<float> {
  enum : uint32_t { N = 4 };
};
template <> struct Vec16<__nv_bfloat16> {
  enum : uint32_t { N = 8 };
};

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uint64_t>(p) & 15u) == 0; }

// p 16-byte aligned.
template <typename T> __device__ __forceinline__ void load_vec16(const T* p, float (&v)[Vec16<T>::N]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (uint32_t j = 0; j < Vec16<T>::N; ++j) v[j] = to_f32(e[j]);
}

template <typename T> __device__ __forceinline__ void store_vec16(T* p, const float (&v)[Vec16<T>::N]) {
  uint4 raw;
  T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (uint32_t j = 0; j < Vec16<T>::N; ++j) e[j] = from_f32<T>(v[j]);
  *reinterpret_cast<uint4*>(p) = raw;
}

// The first `valid` elements of a vector at p (any alignment), element by element; the rest 0.
template <typename T>
__device__ __forceinline__ void load_vec_scalar(const T* p, uint32_t valid, float (&v)[Vec16<T>::N]) {
#pragma unroll
  for (uint32_t j = 0; j < Vec16<T>::N; ++j) v[j] = j < valid ? to_f32(p[j]) : 0.0f;
}

template <typename T>
__device__ __forceinline__ void store_vec_scalar(T* p, uint32_t valid, const float (&v)[Vec16<T>::N]) {
#pragma unroll
  for (uint32_t j = 0; j < Vec16<T>::N; ++j)
    if (j < valid) p[j] = from_f32<T>(v[j]);
}

// ------------------------------------------------------------------------------------------------
// 16-byte vectors along the last dim of a strided op (pointwise binary, layout copy). Mirrored by
// kernels/src/lib.rs `vec16_operand` (the host sizes the grid by the same rule).
// ------------------------------------------------------------------------------------------------

// Whether an operand at base + offset elements, read through `st` over a shape whose last dim is a
// whole number of VEC vectors, starts every vector on 16 bytes with its elements contiguous (last
// stride 1, every other stride and the offset multiples of VEC, base 16-byte aligned), or repeats
// one element along the vector (last stride 0, when `bcast` allows it).
template <int RANK>
__device__ __forceinline__ bool vec16_operand(const void* base, uint64_t offset, const uint64_t (&st)[RANK], uint32_t vec,
                                              bool bcast) {
  if (st[RANK - 1] == 0) return bcast;
  bool ok = st[RANK - 1] == 1 && offset % vec == 0 && aligned16(base);
#pragma unroll
  for (int d = 0; d < RANK - 1; ++d) ok = ok && st[d] % vec == 0;
  return ok;
}

// Grid-stride loop over the n / VEC vectors of a row-major `shape` (last dim a multiple of VEC):
// body(e, oa, ob) with e the flat index of the vector's first element and oa, ob its offsets
// through sa and sb. One index decomposition per vector.
template <uint32_t VEC, int RANK, typename F>
__device__ __forceinline__ void vec_strided_loop(uint64_t n, const uint32_t (&shape)[RANK], const uint64_t (&sa)[RANK],
                                                 const uint64_t (&sb)[RANK], F&& body) {
  grid_stride_loop(n / VEC, [&](uint64_t i) {
    uint64_t oa, ob;
    strided_offsets(i * VEC, shape, sa, sb, oa, ob);
    body(i * VEC, oa, ob);
  });
}
