// ------------------------------------------------------------------------------------------------
// upsample.cu: nearest-neighbour 2-D upsampling of contiguous row-major tensors.
//
//   upsample_nearest2d  shape = (1, 1, 1, planes, oh, ow): dst[p, y, x] = src[p, sy, sx] with
//                       sy = min(floor(y * scale_h), src_h - 1) in f32 (PyTorch `nearest`), same for x.
//   upsample_nearest2d_nhwc  channels-last rows: shape = (1, 1, N, oh, ow, C), src (N, src_h, src_w, C),
//                       dst (N, oh, ow, C): dst[n, y, x, :] = src[n, sy, sx, :], sy and sx as above.
//
//   storage dtype T in {f32, bf16}; src and dst share it; dst never aliases src.
//
// Versions:
//   v1: one output element per thread per step, grid-stride loop, LAYOUT_THREADS threads (the
//       geometry and params of layout.cuh).                                            <- ships
//   nhwc v1: one 16-byte vector of a dst row per thread per step (grid-stride loop, 32-bit indices:
//       N*oh*ow*ceil(C/VEC) < 2^32, checked on the host); consecutive lanes read and write
//       consecutive vectors of a row of C contiguous elements (whole 32-byte sectors). C off whole
//       vectors or a pointer off 16 bytes: the same mapping element by element.      <- ships
// Entries (one LayoutParams argument): upsample_nearest2d_v1_{f32,bf16},
// upsample_nearest2d_nhwc_v1_{f32,bf16}.
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

template <typename T>
__device__ __forceinline__ void upsample_nearest2d_nhwc_v1(const LayoutParams& p) {
  constexpr uint32_t VEC = Vec16<T>::N;
  const uint32_t oh = p.shape[3], ow = p.shape[4], c = p.shape[5];
  const bool vec = c % VEC == 0 && aligned16(p.src) && aligned16(p.dst);
  const uint32_t units = (c + VEC - 1) / VEC; // vectors per row
  const uint32_t total = p.shape[2] * oh * ow * units;
  const T* src = static_cast<const T*>(p.src);
  T* dst = static_cast<T*>(p.dst);
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
    const uint32_t r = i / units, ch = (i - r * units) * VEC;
    const uint32_t x = r % ow, yn = r / ow, y = yn % oh, n = yn / oh;
    const uint32_t sy = min((uint32_t)floorf((float)y * p.scale_h), p.src_h - 1);
    const uint32_t sx = min((uint32_t)floorf((float)x * p.scale_w), p.src_w - 1);
    const uint32_t valid = c - ch < VEC ? c - ch : VEC;
    float v[VEC];
    const T* s = src + ((uint64_t)(n * p.src_h + sy) * p.src_w + sx) * c + ch;
    if (vec) {
      load_vec16(s, v);
      store_vec16(dst + (uint64_t)r * c + ch, v);
    } else {
      load_vec_scalar(s, valid, v);
      store_vec_scalar(dst + (uint64_t)r * c + ch, valid, v);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

ENTRIES_F32_BF16(LAYOUT_ENTRY, upsample_nearest2d_v1)
ENTRIES_F32_BF16(LAYOUT_ENTRY, upsample_nearest2d_nhwc_v1)
