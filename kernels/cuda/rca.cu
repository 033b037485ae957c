// ------------------------------------------------------------------------------------------------
// rca.cu: the memory passes of Region Codebook Attention (spec section 4) around its GEMMs and
// flash attentions, one launch each.
//
//   rca_temporal_query: q[n, l, c] = x[n, l, c] + a_s[n, l, c] + T[n mod F, c]
//       x, a_s, q : (N, L, C) tokens;  T : (F, C) temporal bank (row f = frame slot f; N = B·F).
//       Replaces index_select + 2 adds.
//   rca_motion_sum: s[n, l, c] = a_s[n, l, c] + a_t[n, l, c] + (r0 <= n < r1 ? f_id[n - r0, l, c] : 0)
//       a_s, a_t, s : (N, L, C);  f_id : (r1 - r0, L, C) identity rows (cond half) | null.
//       Replaces add + narrow + add + narrow(s) + concat.
//   rca_merge: out[n, c, p] = f_in[n, c, p]
//                + sigmoid(b2 + sum_j w2[j] · silu(hid[n, j, p])) · tok[n, p, c]
//       f_in, out : (N, C, P) NCHW (P = h·w);  tok : (N, P, C) to_out's output tokens;
//       hid : (N, C4, P) mask conv1's output (before SiLU);  w2 : (C4) mask conv2 (1x1, one
//       channel);  b2 : (1) | null. Replaces SiLU + conv2 + sigmoid + permute + mul + add.
//   rca_merge_nhwc: the same on the channels-last trunk: f_in, out (N, P, C) rows (an (N, C, h, w)
//       image stored channels-last), hid (N, P, C4) rows, tok (N, P, C); no transpose.
//   storage dtype T (every tensor operand) in {f32, bf16}; math in f32, one rounding per output.
//
// Versions:
//   v1: temporal_query / motion_sum: grid-stride, one element per thread per step, 256 threads.
//       merge: one 256-thread block per (32 pixels, image): 8 warps compute the 32 pixels' mask
//       (warp w sums conv2 taps j = w, w+8, ..; lane = pixel, coalesced along P), then loop over C
//       in 32-channel tiles: tokens -> smem [32 px][33] (coalesced along C), out written
//       coalesced along P (the token -> NCHW transpose).                          <- ships
//   merge_nhwc v1: one warp per pixel row (grid-stride over the N*P rows, 8 rows per 256-thread
//       block): the lanes sum the conv2 taps along the row's C4 hidden channels (coalesced), a
//       butterfly sum gives every lane the mask, then the lanes walk the row's C channels in
//       16-byte vectors (f_in, tok, out rows contiguous: whole sectors). C off whole vectors or
//       a pointer off 16 bytes: the same mapping element by element.             <- ships
// Entries: rca_temporal_query_v1_{f32,bf16}, rca_motion_sum_v1_{f32,bf16}, rca_merge_v1_{f32,bf16},
// rca_merge_nhwc_v1_{f32,bf16} (one RcaParams argument each).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rules (kernels/src/rca.rs):
//   temporal_query, motion_sum: block = RCA_THREADS, grid = clamp(ceil(n / (RCA_THREADS * 4)), 1, 65535)
//   merge: block = RCA_THREADS, grid = (ceil(P / RCA_TILE), N)
//   merge_nhwc: block = RCA_THREADS, grid = clamp(ceil(N * P / RCA_WARPS), 1, 65535), grid-stride
enum : uint32_t { RCA_THREADS = 256, RCA_TILE = 32, RCA_WARPS = RCA_THREADS / WARP_SIZE };
static_assert(RCA_TILE == WARP_SIZE, "merge: one lane per pixel / channel of a tile");
static_assert(RCA_TILE % RCA_WARPS == 0, "merge: warps stride the tile rows");

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/rca.rs `RcaParams`, 88 bytes)
// ------------------------------------------------------------------------------------------------

struct RcaParams {
  const void* a;   // temporal_query: x;   motion_sum: a_s;   merge: f_in (N, C, P)
  const void* b;   // temporal_query: a_s; motion_sum: a_t;   merge: tok (N, P, C)
  const void* c;   // temporal_query: T (F, C); motion_sum: f_id | null; merge: hid (N, C4, P)
  const void* d;   // merge: w2 (C4)
  const void* e;   // merge: b2 (1) | null
  void* out;       // temporal_query, motion_sum: (N, L, C); merge: (N, C, P)
  uint64_t n_elem; // temporal_query, motion_sum: N * L * C
  uint32_t n;      // rows / images N
  uint32_t l;      // tokens per row L (merge: pixels P)
  uint32_t ch;     // channels C
  uint32_t frames; // temporal_query: F (bank rows)
  uint32_t r0;     // motion_sum: first identity row
  uint32_t r1;     // motion_sum: one past the last identity row
  uint32_t c4;     // merge: mask hidden channels C4
  uint32_t pad0;   // keeps the struct a multiple of 8 bytes
};

// ------------------------------------------------------------------------------------------------
// device
// ------------------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ void rca_temporal_query_v1(const RcaParams& p) {
  const T* x = static_cast<const T*>(p.a);
  const T* as = static_cast<const T*>(p.b);
  const T* bank = static_cast<const T*>(p.c);
  T* q = static_cast<T*>(p.out);
  const uint64_t row = (uint64_t)p.l * p.ch; // elements per (N) row
  grid_stride_loop(p.n_elem, [&](uint64_t i) {
    const uint32_t n = (uint32_t)(i / row);
    const uint32_t c = (uint32_t)(i % p.ch);
    const float t = to_f32(bank[(uint64_t)(n % p.frames) * p.ch + c]);
    q[i] = from_f32<T>(to_f32(x[i]) + to_f32(as[i]) + t);
  });
}

template <typename T>
__device__ __forceinline__ void rca_motion_sum_v1(const RcaParams& p) {
  const T* as = static_cast<const T*>(p.a);
  const T* at = static_cast<const T*>(p.b);
  const T* fid = static_cast<const T*>(p.c);
  T* s = static_cast<T*>(p.out);
  const uint64_t row = (uint64_t)p.l * p.ch;
  const uint64_t lo = (uint64_t)p.r0 * row, hi = (uint64_t)p.r1 * row;
  grid_stride_loop(p.n_elem, [&](uint64_t i) {
    float v = to_f32(as[i]) + to_f32(at[i]);
    if (fid != nullptr && i >= lo && i < hi) v += to_f32(fid[i - lo]);
    s[i] = from_f32<T>(v);
  });
}

template <typename T>
__device__ __forceinline__ void rca_merge_v1(const RcaParams& p) {
  __shared__ float part[RCA_WARPS][RCA_TILE];
  __shared__ float mask[RCA_TILE];
  __shared__ float tile[RCA_TILE][RCA_TILE + 1]; // [pixel][channel], padded: conflict-free columns

  const T* f_in = static_cast<const T*>(p.a);
  const T* tok = static_cast<const T*>(p.b);
  const T* hid = static_cast<const T*>(p.c);
  const T* w2 = static_cast<const T*>(p.d);
  const T* b2 = static_cast<const T*>(p.e);
  T* out = static_cast<T*>(p.out);

  const uint32_t lane = threadIdx.x % WARP_SIZE;
  const uint32_t warp = threadIdx.x / WARP_SIZE;
  const uint32_t p0 = blockIdx.x * RCA_TILE;
  const uint32_t img = blockIdx.y;
  const uint32_t P = p.l, C = p.ch;
  const uint32_t px = p0 + lane;
  const bool px_ok = px < P;

  // mask of this block's 32 pixels: sigmoid(b2 + sum_j w2[j] * silu(hid[img, j, px]))
  float acc = 0.0f;
  if (px_ok) {
    const T* h = hid + (uint64_t)img * p.c4 * P + px;
    for (uint32_t j = warp; j < p.c4; j += RCA_WARPS) acc += to_f32(w2[j]) * silu(to_f32(h[(uint64_t)j * P]));
  }
  part[warp][lane] = acc;
  __syncthreads();
  if (warp == 0) {
    float m = b2 != nullptr ? to_f32(b2[0]) : 0.0f;
#pragma unroll
    for (uint32_t w = 0; w < RCA_WARPS; ++w) m += part[w][lane];
    mask[lane] = 1.0f / (1.0f + __expf(-m));
  }
  __syncthreads();
  const float m = mask[lane];

  const T* tok_img = tok + (uint64_t)img * P * C;
  const uint64_t plane = (uint64_t)img * C * P;
  for (uint32_t c0 = 0; c0 < C; c0 += RCA_TILE) {
    // tokens (pixel rows p0.., channels c0..) -> tile, coalesced along C
#pragma unroll
    for (uint32_t i = warp; i < RCA_TILE; i += RCA_WARPS) {
      const uint32_t pp = p0 + i, cc = c0 + lane;
      tile[i][lane] = (pp < P && cc < C) ? to_f32(tok_img[(uint64_t)pp * C + cc]) : 0.0f;
    }
    __syncthreads();
    // out (channel rows c0.., pixels p0..), coalesced along P
#pragma unroll
    for (uint32_t i = warp; i < RCA_TILE; i += RCA_WARPS) {
      const uint32_t cc = c0 + i;
      if (cc < C && px_ok) {
        const uint64_t idx = plane + (uint64_t)cc * P + px;
        out[idx] = from_f32<T>(to_f32(f_in[idx]) + m * tile[lane][i]);
      }
    }
    __syncthreads(); // every warp done reading the tile before the next one overwrites it
  }
}

template <typename T>
__device__ __forceinline__ void rca_merge_nhwc_v1(const RcaParams& p) {
  constexpr uint32_t VEC = Vec16<T>::N;
  const T* f_in = static_cast<const T*>(p.a);
  const T* tok = static_cast<const T*>(p.b);
  const T* hid = static_cast<const T*>(p.c);
  const T* w2 = static_cast<const T*>(p.d);
  const T* b2 = static_cast<const T*>(p.e);
  T* out = static_cast<T*>(p.out);
  const uint32_t lane = threadIdx.x % WARP_SIZE, C = p.ch;
  const uint32_t rows = p.n * p.l; // < 2^32 (checked on the host)
  const bool vec = C % VEC == 0 && aligned16(f_in) && aligned16(tok) && aligned16(out);
  const float bias = b2 != nullptr ? to_f32(b2[0]) : 0.0f;
  const uint32_t warps = gridDim.x * (blockDim.x / WARP_SIZE);
  for (uint32_t r = blockIdx.x * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE; r < rows; r += warps) {
    const T* h = hid + (uint64_t)r * p.c4;
    float acc = 0.0f;
    for (uint32_t j = lane; j < p.c4; j += WARP_SIZE) acc += to_f32(w2[j]) * silu(to_f32(h[j]));
    const float m = 1.0f / (1.0f + __expf(-(bias + warp_sum(acc))));
    const uint64_t row = (uint64_t)r * C;
    for (uint32_t c = lane * VEC; c < C; c += WARP_SIZE * VEC) {
      const uint32_t valid = C - c < VEC ? C - c : VEC;
      float a[VEC], b[VEC];
      if (vec) {
        load_vec16(f_in + row + c, a);
        load_vec16(tok + row + c, b);
      } else {
        load_vec_scalar(f_in + row + c, valid, a);
        load_vec_scalar(tok + row + c, valid, b);
      }
#pragma unroll
      for (uint32_t j = 0; j < VEC; ++j) a[j] = fmaf(m, b[j], a[j]);
      if (vec) {
        store_vec16(out + row + c, a);
      } else {
        store_vec_scalar(out + row + c, valid, a);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define RCA_ENTRY(NAME, FN, T)                                                              \
  extern "C" __global__ void __launch_bounds__(RCA_THREADS) NAME(const RcaParams p) { FN<T>(p); }

ENTRIES_F32_BF16(RCA_ENTRY, rca_temporal_query_v1)
ENTRIES_F32_BF16(RCA_ENTRY, rca_motion_sum_v1)
ENTRIES_F32_BF16(RCA_ENTRY, rca_merge_v1)
ENTRIES_F32_BF16(RCA_ENTRY, rca_merge_nhwc_v1)
