// ------------------------------------------------------------------------------------------------
// conv2d.cu: NCHW 2-D convolution as an implicit GEMM on tensor cores, bf16 storage, f32
// accumulation, fused epilogue.
//
//   y[n, o, p] = scale * (sum_k W[o, k] * X_col[n, g, k, p] + bias[o] + temb[n, o] + R[n, o, p])
//   g = o / Cog (group of output channel o), k = (c, ky, kx) over Cig x kh x kw, p = (oy, ox),
//   X_col[n, g, k, p] = x[n, g * Cig + c, oy * sh - ph + ky * dh, ox * sw - pw + kx * dw]
//   (0 outside the image);  Cig = C_in / groups, Cog = C_out / groups.
//
//   x : (N, C_in, H, W) bf16;  W : (C_out, Cig, kh, kw) bf16 = per group a row-major (Cog, K)
//   matrix;  bias : (C_out) | null;  temb : (N, C_out) | null (ResNet time embedding, projected)
//   R : (N, C_out, Ho, Wo) | (1, C_out, Ho, Wo) broadcast over the batch (res_bcast = 1, batch
//   stride 0; e.g. the movement map added after the denoiser's conv_in) | null (may alias y when
//   not broadcast);  y : (N, C_out, Ho, Wo) bf16 (f32 for conv2d_v1_f32).
//   Any rectangular kernel, per-axis stride / padding / dilation, any groups (3x3 / 1x1 stride 1 / 2
//   in the UNet and VAE; 1xk stride (1, s) with H = 1 in the wav2vec2 feature extractor; grouped
//   1xK padding (0, K/2) in its positional conv embedding); ragged C_out / groups, Ho * Wo and K
//   are handled by zero-filled loads and guarded stores.
//
// Versions:
//   v1: per (image, group) GEMM M = Cog, N = Ho * Wo, K = Cig * kh * kw (gridDim.z = N * groups,
//       pointer offsets per image and group); block tile
//       64x64x32, 4 warps (2x2) of 32x32; W tiles by cp.async (plain loads when K % 8 != 0), X_col
//       tiles gathered by scalar loads into registers one k-tile ahead (each thread owns one output
//       pixel column and 16 k rows, (c, ky, kx) stepped incrementally), stored to a double-buffered
//       [k][p] smem tile; fragments by ldmatrix (W) and ldmatrix.trans (X_col).          <- ships
//   v1 split (f32 activations): the same tiles and pipeline with an f32 x gathered into registers
//       and split there into bf16 hi + lo X_col tiles (lo = bf16(x - hi)); a bf16 W as above, an
//       f32 W read as float4s and split into hi + lo W tiles (gemm_mainloop.cuh's helpers and its
//       conflict-free slot order: W is a (Cog, K) row-major 64x32 tile like GEMM's A). MMAs per k
//       step: W.x_lo + W.x_hi (bf16 W) or W_lo.x_hi + W_hi.x_lo + W_hi.x_hi (f32 W); each f32
//       element is read from global memory once per tile; f32 bias / temb / residual / y.
// Entries: conv2d_v1_bf16 (one Conv2dParams); conv2d_v1_f32: the same with an f32 y (operands
// still bf16); conv2d_xsplit_v1_f32 (f32 x and W), conv2d_xsplit_wbf16_v1_f32 (f32 x, bf16 W):
// the split path, f32-accurate products (docs/kernels.md Numerics).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "gemm_mainloop.cuh" // the f32 split helpers (load_f32x4, store_split4, f32_row_slot)
#include "mma.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/conv2d.rs):
// grid = (ceil(Ho * Wo / CONV_BN), ceil(C_out / groups / CONV_BM), N * groups),
// block = CONV_THREADS, static smem only.
enum : uint32_t { CONV_BM = 64, CONV_BN = 64, CONV_BK = 32 };
enum : uint32_t { CONV_WARPS_M = 2, CONV_WARPS_N = 2 };
enum : uint32_t { CONV_THREADS = CONV_WARPS_M * CONV_WARPS_N * WARP_SIZE };
enum : uint32_t { CONV_WM = CONV_BM / CONV_WARPS_M, CONV_WN = CONV_BN / CONV_WARPS_N }; // 32 x 32
enum : uint32_t { CONV_TM = CONV_WM / MMA_M, CONV_TN = CONV_WN / MMA_N };               // 2 x 4
enum : uint32_t { CONV_LDA = CONV_BK + 8, CONV_LDB = CONV_BN + 8 }; // padded smem rows
enum : uint32_t { CONV_STAGES = 2 };
enum : uint32_t { CONV_A_CPR = CONV_BK / CHUNK, CONV_A_CHUNKS = CONV_BM * CONV_A_CPR / CONV_THREADS };
// X_col gather: thread t owns pixel column t % CONV_BN and k rows t / CONV_BN + CONV_B_KSTEP * i.
enum : uint32_t { CONV_B_KSTEP = CONV_THREADS / CONV_BN, CONV_B_PER_THREAD = CONV_BK / CONV_B_KSTEP };

static_assert(CONV_THREADS % CONV_BN == 0 && CONV_BK % CONV_B_KSTEP == 0, "X_col gather");
static_assert(CONV_BM * CONV_A_CPR % CONV_THREADS == 0, "W tile loader");
static_assert((CONV_LDA * 2) % 16 == 0 && (CONV_LDB * 2) % 16 == 0, "16-byte aligned smem rows");

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/conv2d.rs `Conv2dParams`, 136 bytes)
// ------------------------------------------------------------------------------------------------

struct Conv2dParams {
  const void* x;        // (N, C_in, H, W) bf16
  const void* w;        // (C_out, C_in / groups, kh, kw) bf16
  const void* bias;     // (C_out) bf16, or null
  const void* temb;     // (N, C_out) bf16, or null
  const void* residual; // (N | 1, C_out, Ho, Wo) bf16, or null
  void* y;              // (N, C_out, Ho, Wo) bf16
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
};

// ------------------------------------------------------------------------------------------------
// shared pieces: block coordinates, X_col gather, k-tile pipeline, epilogue
// ------------------------------------------------------------------------------------------------

// Block and thread coordinates of one conv2d block (every entry).
struct ConvTile {
  uint32_t tid, lane, wm, wn;
  uint32_t bm, bn;     // first output channel (within the group) and first output pixel
  uint32_t img, grp;   // image and group (blockIdx.z)
  uint32_t npix, khw;  // Ho * Wo, kh * kw
  uint32_t pcol;       // this thread's pixel column of the X_col tile
  uint32_t krow0;      // its first k row
  bool pix_ok;         // its pixel is inside the output
  int32_t iy0, ix0;    // the input position of its pixel's (ky, kx) = (0, 0) tap
};

__device__ __forceinline__ ConvTile conv_tile(const Conv2dParams& p) {
  ConvTile t;
  t.tid = threadIdx.x;
  warp_coords<CONV_WARPS_N>(t.tid, t.lane, t.wm, t.wn);
  t.bm = blockIdx.y * CONV_BM; // output channels
  t.bn = blockIdx.x * CONV_BN; // output pixels
  t.img = blockIdx.z / p.groups;
  t.grp = blockIdx.z % p.groups;
  t.npix = p.h_out * p.w_out;
  t.khw = p.kh * p.kw;
  t.pcol = t.tid % CONV_BN;
  t.krow0 = t.tid / CONV_BN;
  const uint32_t pix = t.bn + t.pcol;
  t.pix_ok = pix < t.npix;
  t.iy0 = t.pix_ok ? (int32_t)((pix / p.w_out) * p.stride_h) - (int32_t)p.pad_h : 0;
  t.ix0 = t.pix_ok ? (int32_t)((pix % p.w_out) * p.stride_w) - (int32_t)p.pad_w : 0;
  return t;
}

// This (image, group)'s first x channel: x + (img * C_in + grp * Cig) * H * W, T = x's storage
// (uint16_t bf16 bits or float).
template <typename T> __device__ __forceinline__ const T* conv_group_x(const Conv2dParams& p, const ConvTile& t) {
  return static_cast<const T*>(p.x) + ((uint64_t)t.img * p.c_in + (uint64_t)t.grp * p.c_in_g) * p.h * p.w_in;
}

// This thread's CONV_B_PER_THREAD X_col elements of the k tile at k0 (k rows t.krow0 +
// CONV_B_KSTEP * i of pixel column t.pcol) into breg, 0 outside the image and past K.
template <typename T>
__device__ __forceinline__ void conv_gather_b(const Conv2dParams& p, const ConvTile& t, const T* x, uint32_t k0,
                                              T (&breg)[CONV_B_PER_THREAD]) {
  uint32_t kidx = k0 + t.krow0;
  uint32_t c = kidx / t.khw;
  uint32_t rem = kidx % t.khw;
  uint32_t ky = rem / p.kw, kx = rem % p.kw;
#pragma unroll
  for (uint32_t i = 0; i < CONV_B_PER_THREAD; ++i) {
    const int32_t iy = t.iy0 + (int32_t)(ky * p.dil_h), ix = t.ix0 + (int32_t)(kx * p.dil_w);
    const bool ok = t.pix_ok && kidx < p.k && iy >= 0 && iy < (int32_t)p.h && ix >= 0 && ix < (int32_t)p.w_in;
    breg[i] = ok ? x[((uint64_t)c * p.h + iy) * p.w_in + ix] : (T)0;
    // advance k by CONV_B_KSTEP: (c, ky, kx) in row-major order
    kidx += CONV_B_KSTEP;
    kx += CONV_B_KSTEP;
    while (kx >= p.kw) {
      kx -= p.kw;
      if (++ky == p.kh) {
        ky = 0;
        ++c;
      }
    }
  }
}

// The double-buffered k loop over K into acc (zeroed first): load_w(stage, k0) issues a W tile's
// loads, the X_col tile is gathered from x (conv_gather_b) into registers, store(stage, breg)
// writes the registers (and any register-staged W) to smem, mma(stage) runs the warp's MMAs on a
// stage. Tile kt + 1's global loads are in flight during tile kt's MMAs.
template <typename T, typename LoadW, typename Store, typename Mma>
__device__ __forceinline__ void conv_kloop(const Conv2dParams& p, const ConvTile& t, const T* x,
                                           float (&acc)[CONV_TM][CONV_TN][4], LoadW&& load_w, Store&& store,
                                           Mma&& mma) {
  T breg[CONV_B_PER_THREAD];
  auto fetch = [&](uint32_t stage, uint32_t k0) {
    load_w(stage, k0);
    conv_gather_b(p, t, x, k0, breg);
  };
  auto store_regs = [&](uint32_t stage) { store(stage, breg); };
  zero_acc(acc);
  const uint32_t ktiles = register_kloop_prologue<CONV_BK>(p.k, fetch, store_regs);
  for (uint32_t kt = 0; kt < ktiles; ++kt) {
    const uint32_t stage = kt % CONV_STAGES;
    const bool more = kt + 1 < ktiles;
    cp_async_wait<0>();
    __syncthreads(); // tile kt visible; every warp done with the other stage
    if (more) fetch(stage ^ 1, (kt + 1) * CONV_BK); // global loads in flight during the mma below
    cp_async_commit();

    mma(stage);
    if (more) store_regs(stage ^ 1);
  }
}

// Epilogue: rows = this group's output channels, columns = pixels. InT: the storage of bias / temb
// / residual (uint16_t bf16 bits or float), OutT: y's.
template <typename InT, typename OutT>
__device__ __forceinline__ void conv_epilogue(const Conv2dParams& p, const ConvTile& t,
                                              const float (&acc)[CONV_TM][CONV_TN][4]) {
  const uint32_t npix = t.npix;
  const uint32_t o0 = t.grp * p.c_out_g; // first output channel of the group
  const uint64_t plane = (uint64_t)p.c_out * npix;
  const uint64_t yoff = t.img * plane + (uint64_t)o0 * npix;
  OutT* y = static_cast<OutT*>(p.y) + yoff;
  const uint64_t roff = (p.res_bcast ? 0 : t.img * plane) + (uint64_t)o0 * npix;
  const InT* res = p.residual ? static_cast<const InT*>(p.residual) + roff : nullptr;
  const InT* bias = p.bias ? static_cast<const InT*>(p.bias) + o0 : nullptr;
  const InT* temb = p.temb ? static_cast<const InT*>(p.temb) + (uint64_t)t.img * p.c_out + o0 : nullptr;
  for_each_acc_row<CONV_TM>(t.bm + t.wm * CONV_WM, t.lane, [&](uint32_t i, uint32_t h, uint32_t o) {
    if (o >= p.c_out_g) return;
    float add = 0.0f;
    if (bias != nullptr) add += operand_f32(bias[o]);
    if (temb != nullptr) add += operand_f32(temb[o]);
#pragma unroll
    for (uint32_t j = 0; j < CONV_TN; ++j) {
#pragma unroll
      for (uint32_t e = 0; e < 2; ++e) {
        const uint32_t px = t.bn + t.wn * CONV_WN + j * MMA_N + (t.lane % 4) * 2 + e;
        if (px >= npix) continue;
        const uint64_t idx = (uint64_t)o * npix + px;
        float v = acc[i][j][2 * h + e] + add;
        if (res != nullptr) v += operand_f32(res[idx]);
        y[idx] = from_f32<OutT>(v * p.scale);
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------
// mainloop
// ------------------------------------------------------------------------------------------------

template <typename OutT>
__device__ __forceinline__ void conv2d_v1(const Conv2dParams& p) {
  __shared__ __align__(16) __nv_bfloat16 sa[CONV_STAGES][CONV_BM][CONV_LDA];
  __shared__ __align__(16) __nv_bfloat16 sb[CONV_STAGES][CONV_BK][CONV_LDB];

  const ConvTile t = conv_tile(p);
  const bool aligned = p.aligned != 0;

  // This (image, group)'s GEMM operands: W rows grp * Cog.., x channels grp * Cig...
  const uint16_t* w = static_cast<const uint16_t*>(p.w) + (uint64_t)t.grp * p.c_out_g * p.k;
  const uint16_t* x = conv_group_x<uint16_t>(p, t);

  float acc[CONV_TM][CONV_TN][4];
  conv_kloop(
      p, t, x, acc,
      [&](uint32_t stage, uint32_t k0) {
        load_tile_rows<CONV_BM, CONV_BK, CONV_THREADS>(sa[stage], w, t.tid, t.bm, p.c_out_g, k0, p.k, p.k, aligned);
      },
      [&](uint32_t stage, const uint16_t (&breg)[CONV_B_PER_THREAD]) {
#pragma unroll
        for (uint32_t i = 0; i < CONV_B_PER_THREAD; ++i)
          reinterpret_cast<uint16_t*>(&sb[stage][t.krow0 + i * CONV_B_KSTEP][0])[t.pcol] = breg[i];
      },
      [&](uint32_t stage) {
        warp_mma_ktile<true, CONV_BK>(sa[stage], sb[stage], t.wm * CONV_WM, t.wn * CONV_WN, t.lane, acc);
      });
  conv_epilogue<uint16_t, OutT>(p, t, acc);
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

extern "C" __global__ void __launch_bounds__(CONV_THREADS) conv2d_v1_bf16(const Conv2dParams p) {
  conv2d_v1<__nv_bfloat16>(p);
}
// bf16 operands (x, w, bias, temb, residual), f32 y: the f32-activation path keeps the conv output
// unrounded (the residual must not alias y here).
extern "C" __global__ void __launch_bounds__(CONV_THREADS) conv2d_v1_f32(const Conv2dParams p) {
  conv2d_v1<float>(p);
}

// ------------------------------------------------------------------------------------------------
// f32 activations: x (and an f32 W) split into bf16 hi + lo in registers
// ------------------------------------------------------------------------------------------------

static_assert(CONV_BM == GEMM_BM && CONV_BK == GEMM_BK && CONV_THREADS == GEMM_THREADS &&
                  CONV_LDA == GEMM_LDS,
              "the W tile uses gemm_mainloop.cuh's f32 slot order");

// One f32 as bf16 hi and lo bits.
__device__ __forceinline__ void split1(float v, uint16_t& hi, uint16_t& lo) {
  const uint32_t h = pack_bf16x2(v, 0.0f) & 0xffffu;
  hi = (uint16_t)h;
  lo = (uint16_t)(pack_bf16x2(split_lo(v, __uint_as_float(h << 16)), 0.0f) & 0xffffu);
}

template <bool W_F32>
__device__ __forceinline__ void conv2d_split_v1(const Conv2dParams& p) {
  constexpr uint32_t W_PARTS = W_F32 ? 2 : 1;
  __shared__ __align__(16) __nv_bfloat16 sa[W_PARTS][CONV_STAGES][CONV_BM][CONV_LDA]; // W [hi, lo]
  __shared__ __align__(16) __nv_bfloat16 sb[2][CONV_STAGES][CONV_BK][CONV_LDB];       // X_col [hi, lo]

  const ConvTile t = conv_tile(p);
  const bool w_vec = p.aligned != 0;
  const uint64_t w_off = (uint64_t)t.grp * p.c_out_g * p.k;
  const float* x = conv_group_x<float>(p, t);

  float4 wreg[W_F32 ? GEMM_F32_ROW_LOADS : 1];
  float acc[CONV_TM][CONV_TN][4];
  conv_kloop(
      p, t, x, acc,
      [&](uint32_t stage, uint32_t k0) {
        if (W_F32) {
          const float* w = static_cast<const float*>(p.w) + w_off;
#pragma unroll
          for (uint32_t i = 0; i < GEMM_F32_ROW_LOADS; ++i) {
            uint32_t r, c;
            f32_row_slot(t.tid, i, r, c);
            wreg[i] = load_f32x4(w, t.bm + r, t.bm + r < p.c_out_g, k0 + c, p.k, p.k, w_vec);
          }
        } else {
          const uint16_t* w = static_cast<const uint16_t*>(p.w) + w_off;
          load_tile_rows<CONV_BM, CONV_BK, CONV_THREADS>(sa[0][stage], w, t.tid, t.bm, p.c_out_g, k0, p.k, p.k,
                                                         w_vec);
        }
      },
      // Split stores: X_col as 2-byte hi / lo per thread (a warp covers 64 consecutive bytes of one
      // row: conflict-free), an f32 W as in the GEMM A tile.
      [&](uint32_t stage, const float (&breg)[CONV_B_PER_THREAD]) {
#pragma unroll
        for (uint32_t i = 0; i < CONV_B_PER_THREAD; ++i) {
          uint16_t hi, lo;
          split1(breg[i], hi, lo);
          reinterpret_cast<uint16_t*>(&sb[0][stage][t.krow0 + i * CONV_B_KSTEP][0])[t.pcol] = hi;
          reinterpret_cast<uint16_t*>(&sb[1][stage][t.krow0 + i * CONV_B_KSTEP][0])[t.pcol] = lo;
        }
        if (W_F32) {
#pragma unroll
          for (uint32_t i = 0; i < GEMM_F32_ROW_LOADS; ++i) {
            uint32_t r, c;
            f32_row_slot(t.tid, i, r, c);
            store_split4(&sa[0][stage][r][c], &sa[W_PARTS - 1][stage][r][c], wreg[i]);
          }
        }
      },
      // (W_lo.x_hi for an f32 W) + W.x_lo + W_hi.x_hi, each fragment loaded once
      [&](uint32_t stage) {
        warp_mma_ktile_split<true, W_F32, true, CONV_BK>(sa[0][stage], sa[W_PARTS - 1][stage], sb[0][stage],
                                                         sb[1][stage], t.wm * CONV_WM, t.wn * CONV_WN, t.lane, acc);
      });
  conv_epilogue<float, float>(p, t, acc);
}

// f32 x and W, f32 bias / temb / residual / y (the residual must not alias y).
extern "C" __global__ void __launch_bounds__(CONV_THREADS) conv2d_xsplit_v1_f32(const Conv2dParams p) {
  conv2d_split_v1<true>(p);
}
// f32 x, bf16 W (the model's weights), f32 bias / temb / residual / y.
extern "C" __global__ void __launch_bounds__(CONV_THREADS) conv2d_xsplit_wbf16_v1_f32(const Conv2dParams p) {
  conv2d_split_v1<false>(p);
}
