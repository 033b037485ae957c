// ------------------------------------------------------------------------------------------------
// elementwise.cu: fused bias-add + activation + scale + residual add.
//
//   y[i] = alpha * act(x[i] + bias[(i / inner) % channels]) + beta * residual[i]
//
//   x, residual, y : (n) contiguous, any logical shape; y may alias x or residual
//   bias           : (channels) or null (no bias); inner = 1 for a last-dim bias on (rows, C),
//                    inner = H*W for a per-channel bias on NCHW
//   residual       : null means no residual term (beta ignored)
//   act            : identity (bias_act_*) or SiLU x * sigmoid(x) (bias_silu_*), a compile-time choice
//   storage dtype T (x, bias, residual, y) in {f32, bf16}; math in f32.
//
// Versions:
//   v1: grid-stride loop, one element per thread per step, 256 threads.   <- ships
// Entries: bias_act_v1_{f32,bf16}, bias_silu_v1_{f32,bf16} (one ElementwiseParams argument).
// Scale-add (y = alpha*x + beta*r) is bias_act with bias = null.
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/elementwise.rs): block = BIAS_ACT_THREADS,
// grid = min(ceil(n / (BIAS_ACT_THREADS * 4)), 65535); the grid-stride loop covers the rest.
enum : uint32_t { BIAS_ACT_THREADS = 256 };

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/elementwise.rs `ElementwiseParams`, 56 bytes)
// ------------------------------------------------------------------------------------------------

struct ElementwiseParams {
  const void* x;        // (n) T
  const void* bias;     // (channels) T, or null
  const void* residual; // (n) T, or null
  void* y;              // (n) T
  uint64_t n;           // number of elements
  uint32_t channels;    // bias period (>= 1)
  uint32_t inner;       // elements per bias value (>= 1)
  float alpha;
  float beta;
};

enum Act : uint32_t { ACT_NONE = 0, ACT_SILU = 1 };

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename T, uint32_t ACT>
__device__ __forceinline__ void bias_act_v1(const ElementwiseParams& p) {
  const T* x = static_cast<const T*>(p.x);
  const T* bias = static_cast<const T*>(p.bias);
  const T* res = static_cast<const T*>(p.residual);
  T* y = static_cast<T*>(p.y);
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += stride) {
    float v = to_f32(x[i]);
    if (bias != nullptr) v += to_f32(bias[(i / p.inner) % p.channels]);
    if (ACT == ACT_SILU) v = silu(v);
    v *= p.alpha;
    if (res != nullptr) v += p.beta * to_f32(res[i]);
    y[i] = from_f32<T>(v);
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define BIAS_ACT_ENTRY(NAME, T, ACT)                                                               \
  extern "C" __global__ void __launch_bounds__(BIAS_ACT_THREADS) NAME(const ElementwiseParams p) { \
    bias_act_v1<T, ACT>(p);                                                                        \
  }

BIAS_ACT_ENTRY(bias_act_v1_f32, float, ACT_NONE)
BIAS_ACT_ENTRY(bias_act_v1_bf16, __nv_bfloat16, ACT_NONE)
BIAS_ACT_ENTRY(bias_silu_v1_f32, float, ACT_SILU)
BIAS_ACT_ENTRY(bias_silu_v1_bf16, __nv_bfloat16, ACT_SILU)
