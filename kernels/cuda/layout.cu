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
//   upsample_nearest2d  shape = (1, 1, 1, planes, oh, ow): dst[p, y, x] = src[p, sy, sx] with
//                       sy = min(floor(y * scale_h), src_h - 1) in f32 (PyTorch `nearest`), same for x.
//
//   storage dtype T in {f32, bf16}; src and dst share it; dst never aliases src.
//
// Versions:
//   v1: one output element per thread per step, grid-stride loop, flat index decomposed by u64
//       div/mod per dim, LAYOUT_THREADS threads.                                       <- ships
// Entries (one LayoutParams argument): copy_v1_{f32,bf16}, index_select_v1_{f32,bf16},
//   pad2d_v1_{f32,bf16}, upsample_nearest2d_v1_{f32,bf16}.
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/layout.rs): block = LAYOUT_THREADS,
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

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void copy_v1(const LayoutParams& p) {
  const T* src = static_cast<const T*>(p.src) + p.src_offset;
  T* dst = static_cast<T*>(p.dst) + p.dst_offset;
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += stride) {
    uint64_t rest = i, is = 0, id = 0;
#pragma unroll
    for (int d = LAYOUT_MAX_RANK - 1; d >= 0; --d) {
      const uint64_t c = rest % p.shape[d];
      rest /= p.shape[d];
      is += c * p.src_strides[d];
      id += c * p.dst_strides[d];
    }
    dst[id] = src[is];
  }
}

template <typename T>
__device__ __forceinline__ void index_select_v1(const LayoutParams& p) {
  const T* src = static_cast<const T*>(p.src);
  T* dst = static_cast<T*>(p.dst);
  const uint64_t len = p.shape[4], inner = p.shape[5];
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += stride) {
    const uint64_t k = i % inner;
    const uint64_t j = (i / inner) % len;
    const uint64_t o = i / (inner * len);
    dst[i] = src[(o * p.src_h + p.index[j]) * inner + k];
  }
}

template <typename T>
__device__ __forceinline__ void pad2d_v1(const LayoutParams& p) {
  const T* src = static_cast<const T*>(p.src);
  T* dst = static_cast<T*>(p.dst);
  const uint64_t oh = p.shape[4], ow = p.shape[5];
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += stride) {
    const uint64_t x = i % ow;
    const uint64_t y = (i / ow) % oh;
    const uint64_t plane = i / (ow * oh);
    // unsigned wrap makes positions left of / above the source fail the `<` tests
    const uint64_t sy = y - p.pad_top, sx = x - p.pad_left;
    T v = from_f32<T>(0.0f);
    if (sy < p.src_h && sx < p.src_w) v = src[(plane * p.src_h + sy) * p.src_w + sx];
    dst[i] = v;
  }
}

template <typename T>
__device__ __forceinline__ void upsample_nearest2d_v1(const LayoutParams& p) {
  const T* src = static_cast<const T*>(p.src);
  T* dst = static_cast<T*>(p.dst);
  const uint64_t oh = p.shape[4], ow = p.shape[5];
  const uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += stride) {
    const uint64_t x = i % ow;
    const uint64_t y = (i / ow) % oh;
    const uint64_t plane = i / (ow * oh);
    const uint32_t sy = min((uint32_t)floorf((float)y * p.scale_h), p.src_h - 1);
    const uint32_t sx = min((uint32_t)floorf((float)x * p.scale_w), p.src_w - 1);
    dst[i] = src[(plane * p.src_h + sy) * p.src_w + sx];
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define LAYOUT_ENTRY(NAME, BODY, T)                                                                \
  extern "C" __global__ void __launch_bounds__(LAYOUT_THREADS) NAME(const LayoutParams p) {        \
    BODY<T>(p);                                                                                    \
  }

LAYOUT_ENTRY(copy_v1_f32, copy_v1, float)
LAYOUT_ENTRY(copy_v1_bf16, copy_v1, __nv_bfloat16)
LAYOUT_ENTRY(index_select_v1_f32, index_select_v1, float)
LAYOUT_ENTRY(index_select_v1_bf16, index_select_v1, __nv_bfloat16)
LAYOUT_ENTRY(pad2d_v1_f32, pad2d_v1, float)
LAYOUT_ENTRY(pad2d_v1_bf16, pad2d_v1, __nv_bfloat16)
LAYOUT_ENTRY(upsample_nearest2d_v1_f32, upsample_nearest2d_v1, float)
LAYOUT_ENTRY(upsample_nearest2d_v1_bf16, upsample_nearest2d_v1, __nv_bfloat16)
