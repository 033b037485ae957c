// ------------------------------------------------------------------------------------------------
// cfg_ddim.cu: classifier-free guidance fused with one DDIM step (eta = 0), step scalars read from
// a device vector (a captured step graph replays for every step).
//
//   out : (2, C, S, inner) Tm model output, row 0 cond, row 1 uncond, contiguous; frames
//         frame_offset .. frame_offset + F of dim 2 are read in place (no narrow copy)
//   z   : (1, C, F, inner) Tz, the sample being denoised
//   y   : (1, C, F, inner) Tz, the new sample; may alias z
//   c   : (8) f32 [guidance, sqrt(a_t), sqrt(1 - a_t), sqrt(a_prev), direction, prediction
//         (0 epsilon, 1 v, 2 sample), clip_lo, clip_hi]  (`DdimStepCoeffs::device_coeffs`)
//
//   m  = uncond + g * (cond - uncond)
//   epsilon: x0 = (z - sb * m) / sa,  eps = m
//   v:       x0 = sa * z - sb * m,    eps = sa * m + sb * z
//   sample:  x0 = m,                  eps = (z - sa * m) / sb
//   x0 = min(max(x0, lo), hi)          (torch.clamp; +-inf bounds when clip_sample is off, NaN kept)
//   y  = sa_prev * x0 + direction * eps
//
//   Element zi = (ch * F + f) * inner + i of z reads out at oi = zi + ch * (S - F) * inner
//   + frame_offset * inner (cond) and oi + C * S * inner (uncond). All f32 operations are single
//   rounded (__fmul_rn, ...: no fma contraction), in the order of `composed::cfg_ddim_one`, so the
//   result is bit-identical to the host default.
//
// Versions:
//   v1: grid-stride loop, CFG_DDIM_VEC (4) elements per thread per step through 16-byte (f32) /
//       8-byte (bf16) loads and stores when the host sets `vec` (all offsets multiples of 4,
//       pointers aligned), else one element per step; CFG_DDIM_THREADS threads.          <- ships
// Entries (one CfgDdimParams argument): cfg_ddim_<Tz>_v1_<Tm>, i.e. cfg_ddim_{f32,bf16}_v1_{f32,bf16}
//   (op names the sample dtype, suffix the model-output dtype).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/cfg_ddim.rs): block = CFG_DDIM_THREADS, items = vec ? n / 4 : n,
// grid = clamp(ceil(items / CFG_DDIM_THREADS), 1, 65535); the grid-stride loop covers the rest.
enum : uint32_t { CFG_DDIM_THREADS = 256 };
enum : uint32_t { CFG_DDIM_VEC = 4 };
enum : uint32_t { CFG_DDIM_COEFFS = 8 };

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/cfg_ddim.rs `CfgDdimParams`, 80 bytes)
// ------------------------------------------------------------------------------------------------

struct CfgDdimParams {
  const void* out;       // (2, C, S, inner) Tm
  const void* z;         // (1, C, F, inner) Tz
  void* y;               // (1, C, F, inner) Tz, may alias z
  const float* coeffs;   // (8) f32
  uint64_t n;            // C * F * inner (elements of z)
  uint64_t plane;        // F * inner (elements of z per channel)
  uint64_t gap;          // (S - F) * inner (extra out elements per channel)
  uint64_t base;         // frame_offset * inner
  uint64_t uncond;       // C * S * inner (cond row -> uncond row)
  uint32_t vec;          // 1: n, plane, gap, base, uncond multiples of 4 and out, z, y aligned to
                         // 4 elements (host-checked) -> vector path; 0: scalar path
  uint32_t _pad;
};

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

struct CfgDdimCoeffs {
  float g, sa, sb, sa_prev, dir, lo, hi;
  int pred;
};

__device__ __forceinline__ CfgDdimCoeffs load_coeffs(const float* c) {
  CfgDdimCoeffs k;
  k.g = c[0];
  k.sa = c[1];
  k.sb = c[2];
  k.sa_prev = c[3];
  k.dir = c[4];
  k.pred = (int)c[5];
  k.lo = c[6];
  k.hi = c[7];
  return k;
}

// `composed::cfg_ddim_one`, operation for operation.
__device__ __forceinline__ float cfg_ddim_one(float cond, float uncond, float z,
                                              const CfgDdimCoeffs& k) {
  const float m = __fadd_rn(uncond, __fmul_rn(k.g, __fsub_rn(cond, uncond)));
  float x0, eps;
  if (k.pred == 0) {
    x0 = __fdiv_rn(__fsub_rn(z, __fmul_rn(k.sb, m)), k.sa);
    eps = m;
  } else if (k.pred == 1) {
    x0 = __fsub_rn(__fmul_rn(k.sa, z), __fmul_rn(k.sb, m));
    eps = __fadd_rn(__fmul_rn(k.sa, m), __fmul_rn(k.sb, z));
  } else {
    x0 = m;
    eps = __fdiv_rn(__fsub_rn(z, __fmul_rn(k.sa, m)), k.sb);
  }
  if (x0 < k.lo) x0 = k.lo;
  if (x0 > k.hi) x0 = k.hi;
  return __fadd_rn(__fmul_rn(k.sa_prev, x0), __fmul_rn(k.dir, eps));
}

// 4 consecutive elements as f32, from an address aligned to 4 elements.
__device__ __forceinline__ void load4(const float* p, float v[4]) {
  const float4 q = *reinterpret_cast<const float4*>(p);
  v[0] = q.x;
  v[1] = q.y;
  v[2] = q.z;
  v[3] = q.w;
}
__device__ __forceinline__ void load4(const __nv_bfloat16* p, float v[4]) {
  const uint2 q = *reinterpret_cast<const uint2*>(p);
  v[0] = __uint_as_float(q.x << 16);
  v[1] = __uint_as_float(q.x & 0xffff0000u);
  v[2] = __uint_as_float(q.y << 16);
  v[3] = __uint_as_float(q.y & 0xffff0000u);
}
__device__ __forceinline__ void store4(float* p, const float v[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const uint32_t a = __bfloat16_as_ushort(__float2bfloat16_rn(lo));
  const uint32_t b = __bfloat16_as_ushort(__float2bfloat16_rn(hi));
  return a | (b << 16);
}
__device__ __forceinline__ void store4(__nv_bfloat16* p, const float v[4]) {
  *reinterpret_cast<uint2*>(p) = make_uint2(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]));
}

template <typename Tm, typename Tz>
__device__ __forceinline__ void cfg_ddim_v1(const CfgDdimParams& p, bool vec) {
  const Tm* out = static_cast<const Tm*>(p.out);
  const Tz* z = static_cast<const Tz*>(p.z);
  Tz* y = static_cast<Tz*>(p.y);
  const CfgDdimCoeffs k = load_coeffs(p.coeffs);
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  const uint64_t first = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (vec) {
    // n, plane, gap, base and uncond are multiples of 4: a vector never straddles a channel.
    const uint64_t n_vec = p.n / CFG_DDIM_VEC;
    for (uint64_t q = first; q < n_vec; q += stride) {
      const uint64_t zi = q * CFG_DDIM_VEC;
      const uint64_t oi = zi + (zi / p.plane) * p.gap + p.base;
      float c[4], u[4], zz[4], r[4];
      load4(out + oi, c);
      load4(out + oi + p.uncond, u);
      load4(z + zi, zz);
#pragma unroll
      for (int e = 0; e < 4; ++e) r[e] = cfg_ddim_one(c[e], u[e], zz[e], k);
      store4(y + zi, r);
    }
  } else {
    for (uint64_t zi = first; zi < p.n; zi += stride) {
      const uint64_t oi = zi + (zi / p.plane) * p.gap + p.base;
      y[zi] = from_f32<Tz>(
          cfg_ddim_one(to_f32(out[oi]), to_f32(out[oi + p.uncond]), to_f32(z[zi]), k));
    }
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define CFG_DDIM_ENTRY(NAME, TM, TZ)                                                               \
  extern "C" __global__ void __launch_bounds__(CFG_DDIM_THREADS) NAME(const CfgDdimParams p) {     \
    cfg_ddim_v1<TM, TZ>(p, p.vec != 0);                                                            \
  }

CFG_DDIM_ENTRY(cfg_ddim_f32_v1_f32, float, float)
CFG_DDIM_ENTRY(cfg_ddim_f32_v1_bf16, __nv_bfloat16, float)
CFG_DDIM_ENTRY(cfg_ddim_bf16_v1_f32, float, __nv_bfloat16)
CFG_DDIM_ENTRY(cfg_ddim_bf16_v1_bf16, __nv_bfloat16, __nv_bfloat16)
