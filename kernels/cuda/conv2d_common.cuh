// ------------------------------------------------------------------------------------------------
// conv2d_common.cuh: what conv2d.cu (sm_80) and conv2d_sm90.cu (sm_90a, wgmma) share: the params
// struct and the per-column tap set of the implicit GEMM's X_col gather.
// ------------------------------------------------------------------------------------------------
#pragma once

#include "common.cuh"

// params (mirrored by kernels/src/conv2d.rs `Conv2dParams`, 136 bytes)
struct Conv2dParams {
  const void* x;        // (N, C_in, H, W) bf16
  const void* w;        // (C_out, C_in / groups, kh, kw) bf16
  const void* bias;     // (C_out) bf16, or null
  const void* temb;     // (N, C_out) bf16, or null
  const void* residual; // (N | 1, C_out, Ho, Wo) bf16, or null
  void* y;              // (N, C_out, Ho, Wo) bf16 (f32 for the *_f32 entries)
  uint32_t n, c_in, h, w_in;
  uint32_t c_out, h_out, w_out;
  uint32_t kh, kw;
  uint32_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  uint32_t groups;      // C_in and C_out divisible by groups
  uint32_t c_in_g;      // C_in / groups
  uint32_t c_out_g;     // C_out / groups
  uint32_t k;           // C_in / groups * kh * kw
  float scale;          // output scale (1 = none)
  uint32_t aligned;     // 1: w 16-byte aligned and K % 8 == 0 (cp.async for W tiles)
  uint32_t res_bcast;   // 1: residual is (1, C_out, Ho, Wo), batch stride 0
  uint32_t y_c;         // channels of one y image (>= C_out): y is the channel slice [c0, c0 + C_out)
                        // of a (N, y_c, Ho, Wo) tensor, `y` pointing at channel c0 of image 0
  uint32_t _pad;
};

// Output column col = (image, pixel) of the implicit GEMM (x: the group's first channel): the
// address of its (0, 0) tap (may lie outside the image: only in-image taps are read) and its
// in-image tap mask, bit ky * kw + kx (M: a mask word of at least kh * kw bits).
template <typename M> struct ColTaps {
  const uint16_t* base;
  M mask;
};
template <typename M>
__device__ __forceinline__ ColTaps<M> col_taps(const Conv2dParams& p, const uint16_t* x, uint32_t col, uint32_t npix) {
  const uint32_t img = col / npix, pix = col % npix;
  const int32_t iy0 = (int32_t)((pix / p.w_out) * p.stride_h) - (int32_t)p.pad_h;
  const int32_t ix0 = (int32_t)((pix % p.w_out) * p.stride_w) - (int32_t)p.pad_w;
  const uint16_t* base = x + (uint64_t)img * p.c_in * p.h * p.w_in + ((int64_t)iy0 * p.w_in + ix0);
  M m = 0;
  for (uint32_t ky = 0; ky < p.kh; ++ky) {
    const int32_t iy = iy0 + (int32_t)(ky * p.dil_h);
    if (iy < 0 || iy >= (int32_t)p.h) continue;
    for (uint32_t kx = 0; kx < p.kw; ++kx) {
      const int32_t ix = ix0 + (int32_t)(kx * p.dil_w);
      if (ix >= 0 && ix < (int32_t)p.w_in) m |= (M)1 << (ky * p.kw + kx);
    }
  }
  return {base, m};
}
