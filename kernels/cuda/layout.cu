// ------------------------------------------------------------------------------------------------
// layout.cu: data movement of contiguous row-major tensors (no arithmetic).
//
//   copy                dst[dst_offset + sum_d c_d * dst_strides[d]] = src[src_offset + sum_d c_d *
//                       src_strides[d]] for every coordinate c of `shape` (rank <= LAYOUT_MAX_RANK,
//                       leading dims padded with 1). permute (dst contiguous, src strides permuted),
//                       narrow (src offset), concat (one launch per input, dst offset + dst strides).
//   index_select        shape = (1, 1, 1, outer, len, inner): dst[o, j, k] = src[o, index[j], k],
//                       src dim size src_h; dst contiguous.
//   pad2d               shape = (1, 1, 1, planes, oh, ow): dst[p, y, x] = src[p, y - pad_top,
//                       x - pad_left] inside the (src_h, src_w) source plane, else 0; dst contiguous.
//
//   storage dtype T in {f32, bf16}; src and dst share it; dst never aliases src.
//
// Versions:
//   v1: one output element per thread per step, grid-stride loop, flat index decomposed by u64
//       div/mod per dim, LAYOUT_THREADS threads.                  <- ships (index_select, pad2d)
//   v2 (copy only): one 16-byte vector per thread per step where src and dst allow (below); else
//       v1's loop.                                                                     <- ships
// Entries (one LayoutParams argument, layout.cuh): copy_v2_{f32,bf16},
//   index_select_v1_{f32,bf16}, pad2d_v1_{f32,bf16}. Nearest upsampling: upsample.cu.
// ------------------------------------------------------------------------------------------------

#include "layout.cuh"

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void copy_v1(const LayoutParams& p) {
  const T* src = static_cast<const T*>(p.src) + p.src_offset;
  T* dst = static_cast<T*>(p.dst) + p.dst_offset;
  // (a plain loop here: the grid_stride_loop lambda reorders this entry's param loads in the PTX)
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += stride) {
    uint64_t is, id;
    strided_offsets(i, p.shape, p.src_strides, p.dst_strides, is, id);
    dst[id] = src[is];
  }
}

// v2: 16-byte vectors (raw, no conversion) along the last dim when it is a whole number of vectors
// and src and dst are contiguous and 16-byte aligned along it (vec16_operand; e.g. the channel
// concats, narrows along outer dims); one index decomposition per vector. Else v1's loop.
template <typename T>
__device__ __forceinline__ void copy_v2(const LayoutParams& p) {
  constexpr uint32_t VEC = Vec16<T>::N;
  const bool vec = p.shape[LAYOUT_MAX_RANK - 1] % VEC == 0 &&
                   vec16_operand(p.src, p.src_offset, p.src_strides, VEC, false) &&
                   vec16_operand(p.dst, p.dst_offset, p.dst_strides, VEC, false);
  if (!vec) {
    copy_v1<T>(p);
    return;
  }
  const T* src = static_cast<const T*>(p.src) + p.src_offset;
  T* dst = static_cast<T*>(p.dst) + p.dst_offset;
  vec_strided_loop<VEC>(p.n, p.shape, p.src_strides, p.dst_strides, [&](uint64_t, uint64_t is, uint64_t id) {
    *reinterpret_cast<uint4*>(dst + id) = *reinterpret_cast<const uint4*>(src + is);
  });
}

template <typename T>
__device__ __forceinline__ void index_select_v1(const LayoutParams& p) {
  const T* src = static_cast<const T*>(p.src);
  T* dst = static_cast<T*>(p.dst);
  const uint64_t inner = p.shape[5];
  for_each_dst_3d(p, [&](uint64_t i, uint64_t o, uint64_t j, uint64_t k) {
    dst[i] = src[(o * p.src_h + p.index[j]) * inner + k];
  });
}

template <typename T>
__device__ __forceinline__ void pad2d_v1(const LayoutParams& p) {
  const T* src = static_cast<const T*>(p.src);
  T* dst = static_cast<T*>(p.dst);
  for_each_dst_3d(p, [&](uint64_t i, uint64_t plane, uint64_t y, uint64_t x) {
    // unsigned wrap makes positions left of / above the source fail the `<` tests
    const uint64_t sy = y - p.pad_top, sx = x - p.pad_left;
    T v = from_f32<T>(0.0f);
    if (sy < p.src_h && sx < p.src_w) v = src[(plane * p.src_h + sy) * p.src_w + sx];
    dst[i] = v;
  });
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

ENTRIES_F32_BF16(LAYOUT_ENTRY, copy_v2)
ENTRIES_F32_BF16(LAYOUT_ENTRY, index_select_v1)
ENTRIES_F32_BF16(LAYOUT_ENTRY, pad2d_v1)
