// ------------------------------------------------------------------------------------------------
// timestep_embedding.cu: diffusers `get_timestep_embedding(t, dim, flip_sin_to_cos,
// downscale_freq_shift, scale = 1, max_period = 10000)` from timesteps on the device.
//
//   t : (n) Tt (f32 or bf16), read as f32
//   y : (n, dim) Ty (f32 or bf16), row-major
//
//   half    = dim / 2
//   freq[i] = exp(-ln(10000) * i / (half - shift))          i < half, f32 operands in torch's order
//   arg     = t[r] * freq[i]                                  f32
//   y[r, i] = sin(arg), y[r, half + i] = cos(arg)             (flip: cos first, then sin)
//   y[r, dim - 1] = 0 when dim is odd                         (torch pads (0, 1))
//
//   Accuracy: freq goes through double exp rounded to f32, i.e. the correctly rounded f32 exp that
//   the host reference (`composed::timestep_embedding_host`) computes: a 1-ulp freq error would be
//   a ~1e-4 error of sin(t * freq) at t ~ 1000. sin / cos are the accurate sincosf (arguments
//   reach ~1000 rad, far outside __sinf's range). Single-rounded f32 products / quotients
//   (__fmul_rn, __fdiv_rn) so no fma contraction changes the rounding.
//
// Versions:
//   v1: grid-stride loop, one output element per thread per step, TEMB_THREADS threads; every
//       element recomputes its freq (n * dim is ~640 for the UNet: latency, not throughput). <- ships
// Entries (one TimestepEmbeddingParams argument): timestep_embedding_<Ty>_v1_<Tt>, i.e.
//   timestep_embedding_{f32,bf16}_v1_{f32,bf16} (op names the output dtype, suffix the input's).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/timestep_embedding.rs): block = TEMB_THREADS,
// grid = clamp(ceil(n * dim / TEMB_THREADS), 1, 65535); the grid-stride loop covers the rest.
enum : uint32_t { TEMB_THREADS = 256 };

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/timestep_embedding.rs `TimestepEmbeddingParams`, 32 bytes)
// ------------------------------------------------------------------------------------------------

struct TimestepEmbeddingParams {
  const void* t;   // (n) Tt
  void* y;         // (n, dim) Ty
  uint32_t n;      // timesteps
  uint32_t dim;    // embedding width (odd: last column 0)
  float shift;     // downscale_freq_shift (diffusers: 1 for the SD UNet's flip_sin_to_cos=True, 0 else)
  uint32_t flip;   // flip_sin_to_cos: 1 = [cos, sin], 0 = [sin, cos]
};

// -ln(10000) as the f32 torch multiplies by (Python float -> f32 scalar).
#define TEMB_NEG_LN_MAX_PERIOD (-9.210340371976184f)

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename Tt, typename Ty>
__device__ __forceinline__ void timestep_embedding_v1(const TimestepEmbeddingParams& p) {
  const Tt* t = static_cast<const Tt*>(p.t);
  Ty* y = static_cast<Ty*>(p.y);
  const uint32_t half = p.dim / 2;
  const float denom = __fsub_rn((float)half, p.shift);
  const uint64_t total = (uint64_t)p.n * p.dim;
  grid_stride_loop(total, [&](uint64_t e) {
    const uint32_t r = (uint32_t)(e / p.dim);
    const uint32_t j = (uint32_t)(e - (uint64_t)r * p.dim);
    float v = 0.0f;
    if (j < 2 * half) {
      const bool second = j >= half;
      const uint32_t i = second ? j - half : j;
      const float ex = __fdiv_rn(__fmul_rn(TEMB_NEG_LN_MAX_PERIOD, (float)i), denom);
      const float freq = (float)exp((double)ex);
      const float arg = __fmul_rn(to_f32(t[r]), freq);
      float s, c;
      sincosf(arg, &s, &c);
      // first half: sin (cos when flipped); second half: the other one
      v = (second != (p.flip != 0)) ? c : s;
    }
    y[e] = from_f32<Ty>(v);
  });
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define TEMB_ENTRY(NAME, TT, TY)                                                                   \
  extern "C" __global__ void __launch_bounds__(TEMB_THREADS)                                       \
      NAME(const TimestepEmbeddingParams p) {                                                      \
    timestep_embedding_v1<TT, TY>(p);                                                              \
  }

TEMB_ENTRY(timestep_embedding_f32_v1_f32, float, float)
TEMB_ENTRY(timestep_embedding_f32_v1_bf16, __nv_bfloat16, float)
TEMB_ENTRY(timestep_embedding_bf16_v1_f32, float, __nv_bfloat16)
TEMB_ENTRY(timestep_embedding_bf16_v1_bf16, __nv_bfloat16, __nv_bfloat16)
