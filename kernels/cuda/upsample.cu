// ------------------------------------------------------------------------------------------------
// upsample.cu: nearest-neighbour 2-D upsampling of contiguous row-major tensors.
//
//   upsample_nearest2d  shape = (1, 1, 1, planes, oh, ow): dst[p, y, x] = src[p, sy, sx] with
//                       sy = min(floor(y * scale_h), src_h - 1) in f32 (PyTorch `nearest`), same for x.
//
//   storage dtype T in {f32, bf16}; src and dst share it; dst never aliases src.
//
// Versions:
//   v1: one output element per thread per step, grid-stride loop, LAYOUT_THREADS threads (the
//       geometry and params of layout.cuh).                                            <- ships
// Entries (one LayoutParams argument): upsample_nearest2d_v1_{f32,bf16}.
// ------------------------------------------------------------------------------------------------

#include "layout.cuh"

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void upsample_nearest2d_v1(const LayoutParams& p) {
  const T* src = static_cast<const T*>(p.src);
  T* dst = static_cast<T*>(p.dst);
  for_each_dst_3d(p, [&](uint64_t i, uint64_t plane, uint64_t y, uint64_t x) {
    const uint32_t sy = min((uint32_t)floorf((float)y * p.scale_h), p.src_h - 1);
    const uint32_t sx = min((uint32_t)floorf((float)x * p.scale_w), p.src_w - 1);
    dst[i] = src[(plane * p.src_h + sy) * p.src_w + sx];
  });
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

ENTRIES_F32_BF16(LAYOUT_ENTRY, upsample_nearest2d_v1)
