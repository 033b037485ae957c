// ------------------------------------------------------------------------------------------------
// group_norm_affine.cuh: the GroupNorm apply step shared by group_norm.cu (v2 apply) and
// group_norm_sm90.cu: act((x - mean) * rstd * gamma[c] + beta[c]) with gamma / beta folded into
// one scale and shift per channel, over one 16-byte vector of a group's flat (C / G, S) span (the
// vector may cross channel boundaries) or one element of it.
// ------------------------------------------------------------------------------------------------
#pragma once

#include "common.cuh"

// The VEC values v of the vector at offset `off` of the group (elements off .. off + VEC - 1, all
// inside the group), normalised in place: one division for the first element's channel, then a
// step to the next channel at each multiple of s. c0 is the group's first channel (gamma and beta
// are indexed c0 + c: 32-bit index math, as the kernels had it inline).
template <bool SILU, uint32_t VEC, typename T>
__device__ __forceinline__ void gn_affine_vec(float (&v)[VEC], uint32_t off, uint32_t s, const T* gamma, const T* beta,
                                              uint32_t c0, float mean, float rstd) {
  uint32_t c = off / s;
  uint32_t rem = off - c * s;
  float sc = to_f32(gamma[c0 + c]) * rstd;
  float sh = fmaf(-mean, sc, to_f32(beta[c0 + c]));
#pragma unroll
  for (uint32_t j = 0; j < VEC; ++j) {
    if (rem == s) {
      rem = 0;
      ++c;
      sc = to_f32(gamma[c0 + c]) * rstd;
      sh = fmaf(-mean, sc, to_f32(beta[c0 + c]));
    }
    float o = fmaf(v[j], sc, sh);
    if (SILU) o = silu(o);
    v[j] = o;
    ++rem;
  }
}

// One element x of channel c (gamma and beta indexed by c as given): the group-edge path.
template <bool SILU, typename T>
__device__ __forceinline__ float gn_affine_elem(float x, uint32_t c, const T* gamma, const T* beta, float mean,
                                                float rstd) {
  const float sc = to_f32(gamma[c]) * rstd;
  float o = fmaf(x, sc, fmaf(-mean, sc, to_f32(beta[c])));
  if (SILU) o = silu(o);
  return o;
}
