// ------------------------------------------------------------------------------------------------
// pointwise.cu: unary activations, NumPy-broadcast binary ops, affine, dtype casts.
//
//   unary   y[i] = f(a[i]),            f = op (silu, gelu, gelu_tanh, relu, sigmoid, tanh, exp, neg,
//                                      sqrt), y may alias a
//   affine  y[i] = a[i] * mul + add
//   binary  y[i] = a[idx_a(i)] (+ - * /) b[idx_b(i)], i over the broadcast output shape (row-major,
//           rank <= POINTWISE_MAX_RANK after the host merges contiguous dims), idx_x(i) = sum over
//           dims of coord_d * x_strides[d] (stride 0 on broadcast dims)
//   cast    y[i] = a[i] converted f32 -> bf16 (round to nearest even) or bf16 -> f32
//
//   storage dtype T in {f32, bf16} (all operands of one entry share it); math in f32.
//
// Versions:
//   v1: grid-stride loop, one element per thread per step, POINTWISE_THREADS threads; the binary
//       body decomposes the flat index per element (u64 div/mod per dim).   <- ships (not binary)
//   v2 (binary only): one 16-byte vector per thread per step along the last dim, one index
//       decomposition per vector, where the operands allow (below); else v1's body.    <- ships
// Entries (one PointwiseParams argument): unary_v1_{f32,bf16}, affine_v1_{f32,bf16},
//   binary_v2_{f32,bf16}, cast_bf16_v1_f32 (f32 in, bf16 out), cast_f32_v1_bf16 (bf16 in, f32 out).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/pointwise.rs): block = POINTWISE_THREADS,
// grid = clamp(ceil(n / (POINTWISE_THREADS * 4)), 1, 65535); the grid-stride loop covers the rest.
enum : uint32_t { POINTWISE_THREADS = 256 };
enum : uint32_t { POINTWISE_MAX_RANK = 6 };

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/pointwise.rs `PointwiseParams`, 168 bytes)
// ------------------------------------------------------------------------------------------------

struct PointwiseParams {
  const void* a;                          // (n) T, or the binary lhs read through a_strides
  const void* b;                          // binary rhs read through b_strides; null otherwise
  void* y;                                // (n) output, contiguous
  uint64_t n;                             // output elements
  uint64_t a_strides[POINTWISE_MAX_RANK]; // binary: element strides of a per output dim (0 = bcast)
  uint64_t b_strides[POINTWISE_MAX_RANK]; // binary: same for b
  uint32_t shape[POINTWISE_MAX_RANK];     // binary: output shape, leading dims padded with 1
  uint32_t op;                            // unary: UnaryOp, binary: BinaryOp
  float mul;                              // affine
  float add;                              // affine
  uint32_t _pad;
};

enum UnaryOp : uint32_t {
  UNARY_SILU = 0,
  UNARY_GELU = 1,
  UNARY_GELU_TANH = 2,
  UNARY_RELU = 3,
  UNARY_SIGMOID = 4,
  UNARY_TANH = 5,
  UNARY_EXP = 6,
  UNARY_NEG = 7,
  UNARY_SQRT = 8,
};

enum BinaryOp : uint32_t { BINARY_ADD = 0, BINARY_SUB = 1, BINARY_MUL = 2, BINARY_DIV = 3 };

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

__device__ __forceinline__ float apply_unary(uint32_t op, float v) {
  switch (op) {
  case UNARY_SILU: return v / (1.0f + expf(-v));
  case UNARY_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  case UNARY_GELU_TANH: return 0.5f * v * (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)));
  case UNARY_RELU: return v > 0.0f ? v : 0.0f;
  case UNARY_SIGMOID: return 1.0f / (1.0f + expf(-v));
  case UNARY_TANH: return tanhf(v);
  case UNARY_EXP: return expf(v);
  case UNARY_NEG: return -v;
  default: return sqrtf(v);
  }
}

__device__ __forceinline__ float apply_binary(uint32_t op, float a, float b) {
  switch (op) {
  case BINARY_ADD: return a + b;
  case BINARY_SUB: return a - b;
  case BINARY_MUL: return a * b;
  default: return a / b;
  }
}

template <typename T>
__device__ __forceinline__ void unary_v1(const PointwiseParams& p) {
  const T* a = static_cast<const T*>(p.a);
  T* y = static_cast<T*>(p.y);
  grid_stride_loop(p.n, [&](uint64_t i) {
    y[i] = from_f32<T>(apply_unary(p.op, to_f32(a[i])));
  });
}

template <typename T>
__device__ __forceinline__ void affine_v1(const PointwiseParams& p) {
  const T* a = static_cast<const T*>(p.a);
  T* y = static_cast<T*>(p.y);
  grid_stride_loop(p.n, [&](uint64_t i) {
    y[i] = from_f32<T>(to_f32(a[i]) * p.mul + p.add);
  });
}

template <typename T>
__device__ __forceinline__ void binary_v1(const PointwiseParams& p) {
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b);
  T* y = static_cast<T*>(p.y);
  grid_stride_loop(p.n, [&](uint64_t i) {
    uint64_t ia, ib;
    strided_offsets(i, p.shape, p.a_strides, p.b_strides, ia, ib);
    y[i] = from_f32<T>(apply_binary(p.op, to_f32(a[ia]), to_f32(b[ib])));
  });
}

// v2: 16-byte vectors along the output's last dim when it is a whole number of vectors and a, b, y
// take them (vec16_operand: a and b contiguous along it or broadcast along it, e.g. a per-channel
// bias); one index decomposition per vector. Anything else: v1's per-element loop.
template <typename T>
__device__ __forceinline__ void binary_v2(const PointwiseParams& p) {
  constexpr uint32_t VEC = Vec16<T>::N;
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b);
  T* y = static_cast<T*>(p.y);
  const bool vec = p.shape[POINTWISE_MAX_RANK - 1] % VEC == 0 && aligned16(y) &&
                   vec16_operand(a, 0, p.a_strides, VEC, true) && vec16_operand(b, 0, p.b_strides, VEC, true);
  if (!vec) {
    binary_v1<T>(p);
    return;
  }
  // a broadcast operand (last stride 0) is one element repeated along the vector
  auto load = [&](const T* x, uint64_t off, bool bcast, float (&v)[VEC]) {
    if (bcast) {
      const float s = to_f32(x[off]);
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) v[j] = s;
    } else {
      load_vec16(x + off, v);
    }
  };
  const bool a_bcast = p.a_strides[POINTWISE_MAX_RANK - 1] == 0;
  const bool b_bcast = p.b_strides[POINTWISE_MAX_RANK - 1] == 0;
  vec_strided_loop<VEC>(p.n, p.shape, p.a_strides, p.b_strides, [&](uint64_t e, uint64_t ia, uint64_t ib) {
    float va[VEC], vb[VEC];
    load(a, ia, a_bcast, va);
    load(b, ib, b_bcast, vb);
#pragma unroll
    for (uint32_t j = 0; j < VEC; ++j) va[j] = apply_binary(p.op, va[j], vb[j]);
    store_vec16(y + e, va);
  });
}

template <typename S, typename D>
__device__ __forceinline__ void cast_v1(const PointwiseParams& p) {
  const S* a = static_cast<const S*>(p.a);
  D* y = static_cast<D*>(p.y);
  grid_stride_loop(p.n, [&](uint64_t i) {
    y[i] = from_f32<D>(to_f32(a[i]));
  });
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define POINTWISE_ENTRY(NAME, BODY)                                                                \
  extern "C" __global__ void __launch_bounds__(POINTWISE_THREADS) NAME(const PointwiseParams p) {  \
    BODY(p);                                                                                       \
  }

POINTWISE_ENTRY(unary_v1_f32, unary_v1<float>)
POINTWISE_ENTRY(unary_v1_bf16, unary_v1<__nv_bfloat16>)
POINTWISE_ENTRY(affine_v1_f32, affine_v1<float>)
POINTWISE_ENTRY(affine_v1_bf16, affine_v1<__nv_bfloat16>)
POINTWISE_ENTRY(binary_v2_f32, binary_v2<float>)
POINTWISE_ENTRY(binary_v2_bf16, binary_v2<__nv_bfloat16>)
#define CAST_F32_TO_BF16 cast_v1<float, __nv_bfloat16>
#define CAST_BF16_TO_F32 cast_v1<__nv_bfloat16, float>
POINTWISE_ENTRY(cast_bf16_v1_f32, CAST_F32_TO_BF16)
POINTWISE_ENTRY(cast_f32_v1_bf16, CAST_BF16_TO_F32)
