// ------------------------------------------------------------------------------------------------
// layout.cuh: what layout.cu (copy, index_select, pad2d) and upsample.cu (upsample_nearest2d)
// share: the launch geometry, the params struct (one for every data-movement entry) and the
// entry macro.
// ------------------------------------------------------------------------------------------------
#pragma once

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/layout.rs, kernels/src/upsample.rs): block = LAYOUT_THREADS,
// grid = clamp(ceil(n / (LAYOUT_THREADS * 4)), 1, 65535); the grid-stride loop covers the rest.
enum : uint32_t { LAYOUT_THREADS = 256 };
enum : uint32_t { LAYOUT_MAX_RANK = 6 };

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/layout.rs `LayoutParams`, 192 bytes)
// ------------------------------------------------------------------------------------------------

struct LayoutParams {
  const void* src;                          // T
  void* dst;                                // T
  const uint32_t* index;                    // index_select: (len) indices into src dim; else null
  uint64_t n;                               // elements written = product of shape
  uint64_t src_offset;                      // copy: elements
  uint64_t dst_offset;                      // copy: elements
  uint64_t src_strides[LAYOUT_MAX_RANK];    // copy: elements per step of each shape dim
  uint64_t dst_strides[LAYOUT_MAX_RANK];    // copy: same for dst
  uint32_t shape[LAYOUT_MAX_RANK];          // iteration shape, leading dims padded with 1
  uint32_t src_h;                           // pad2d / upsample: source rows; index_select: dim size
  uint32_t src_w;                           // pad2d / upsample: source columns
  uint32_t pad_top;                         // pad2d
  uint32_t pad_left;                        // pad2d
  float scale_h;                            // upsample: src_h / out_h (f32, as PyTorch)
  float scale_w;                            // upsample: src_w / out_w
};

// entries take one LayoutParams
#define LAYOUT_ENTRY(NAME, BODY, T)                                                                \
  extern "C" __global__ void __launch_bounds__(LAYOUT_THREADS) NAME(const LayoutParams p) {        \
    BODY<T>(p);                                                                                    \
  }

// Grid-stride loop over a contiguous dst of n elements seen as (outer, mid, inner):
// body(i, o, m, k) for every element i = (o * mid + m) * inner + k.
template <typename F>
__device__ __forceinline__ void for_each_3d(uint64_t n, uint64_t mid, uint64_t inner, F&& body) {
  grid_stride_loop(n, [&](uint64_t i) {
    const uint64_t k = i % inner;
    const uint64_t m = (i / inner) % mid;
    const uint64_t o = i / (inner * mid);
    body(i, o, m, k);
  });
}

// for_each_3d over the dst of index_select, pad2d and upsample: the last three dims of p.shape,
// (outer, shape[4], shape[5]) = (outer, len, inner) or (planes, out_h, out_w).
template <typename F> __device__ __forceinline__ void for_each_dst_3d(const LayoutParams& p, F&& body) {
  for_each_3d(p.n, p.shape[4], p.shape[5], body);
}
