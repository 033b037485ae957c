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
// mainloop
// ------------------------------------------------------------------------------------------------

template <typename OutT>
__device__ __forceinline__ void conv2d_v1(const Conv2dParams& p) {
  __shared__ __align__(16) __nv_bfloat16 sa[CONV_STAGES][CONV_BM][CONV_LDA];
  __shared__ __align__(16) __nv_bfloat16 sb[CONV_STAGES][CONV_BK][CONV_LDB];

  const uint32_t tid = threadIdx.x;
  uint32_t lane, wm, wn;
  warp_coords<CONV_WARPS_N>(tid, lane, wm, wn);
  const uint32_t bm = blockIdx.y * CONV_BM; // output channels
  const uint32_t bn = blockIdx.x * CONV_BN; // output pixels
  const uint32_t img = blockIdx.z / p.groups;
  const uint32_t grp = blockIdx.z % p.groups;
  const bool aligned = p.aligned != 0;
  const uint32_t npix = p.h_out * p.w_out;
  const uint32_t khw = p.kh * p.kw;

  // This (image, group)'s GEMM operands: W rows grp * Cog.., x channels grp * Cig...
  const uint16_t* w = static_cast<const uint16_t*>(p.w) + (uint64_t)grp * p.c_out_g * p.k;
  const uint16_t* x =
      static_cast<const uint16_t*>(p.x) + ((uint64_t)img * p.c_in + (uint64_t)grp * p.c_in_g) * p.h * p.w_in;

  // This thread's pixel column of the X_col tile.
  const uint32_t pcol = tid % CONV_BN;
  const uint32_t krow0 = tid / CONV_BN;
  const uint32_t pix = bn + pcol;
  const bool pix_ok = pix < npix;
  const int32_t iy0 = pix_ok ? (int32_t)((pix / p.w_out) * p.stride_h) - (int32_t)p.pad_h : 0;
  const int32_t ix0 = pix_ok ? (int32_t)((pix % p.w_out) * p.stride_w) - (int32_t)p.pad_w : 0;

  auto load_a = [&](uint32_t stage, uint32_t k0) {
    load_tile_rows<CONV_BM, CONV_BK, CONV_THREADS>(sa[stage], w, tid, bm, p.c_out_g, k0, p.k, p.k, aligned);
  };
  uint16_t breg[CONV_B_PER_THREAD];
  auto gather_b = [&](uint32_t k0) {
    uint32_t kidx = k0 + krow0;
    uint32_t c = kidx / khw;
    uint32_t rem = kidx % khw;
    uint32_t ky = rem / p.kw, kx = rem % p.kw;
#pragma unroll
    for (uint32_t i = 0; i < CONV_B_PER_THREAD; ++i) {
      const int32_t iy = iy0 + (int32_t)(ky * p.dil_h), ix = ix0 + (int32_t)(kx * p.dil_w);
      const bool ok = pix_ok && kidx < p.k && iy >= 0 && iy < (int32_t)p.h && ix >= 0 && ix < (int32_t)p.w_in;
      breg[i] = ok ? x[((uint64_t)c * p.h + iy) * p.w_in + ix] : (uint16_t)0;
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
  };
  auto store_b = [&](uint32_t stage) {
#pragma unroll
    for (uint32_t i = 0; i < CONV_B_PER_THREAD; ++i)
      reinterpret_cast<uint16_t*>(&sb[stage][krow0 + i * CONV_B_KSTEP][0])[pcol] = breg[i];
  };

  float acc[CONV_TM][CONV_TN][4];
  zero_acc(acc);
  const uint32_t ktiles = ceil_div(p.k, CONV_BK);
  if (ktiles > 0) {
    load_a(0, 0);
    gather_b(0);
    store_b(0);
  }
  cp_async_commit();
  for (uint32_t kt = 0; kt < ktiles; ++kt) {
    const uint32_t stage = kt % CONV_STAGES;
    const bool more = kt + 1 < ktiles;
    cp_async_wait<0>();
    __syncthreads(); // tile kt visible; every warp done with the other stage
    if (more) {
      load_a(stage ^ 1, (kt + 1) * CONV_BK);
      gather_b((kt + 1) * CONV_BK); // global loads in flight during the mma below
    }
    cp_async_commit();

    warp_mma_ktile<true, CONV_BK>(sa[stage], sb[stage], wm * CONV_WM, wn * CONV_WN, lane, acc);
    if (more) store_b(stage ^ 1);
  }

  // Epilogue: rows = this group's output channels, columns = pixels.
  const uint32_t o0 = grp * p.c_out_g; // first output channel of the group
  const uint64_t plane = (uint64_t)p.c_out * npix;
  const uint64_t yoff = img * plane + (uint64_t)o0 * npix;
  OutT* y = static_cast<OutT*>(p.y) + yoff;
  const uint64_t roff = (p.res_bcast ? 0 : img * plane) + (uint64_t)o0 * npix;
  const uint16_t* res = p.residual ? static_cast<const uint16_t*>(p.residual) + roff : nullptr;
  const uint16_t* bias = p.bias ? static_cast<const uint16_t*>(p.bias) + o0 : nullptr;
  const uint16_t* temb = p.temb ? static_cast<const uint16_t*>(p.temb) + (uint64_t)img * p.c_out + o0 : nullptr;
  for_each_acc_row<CONV_TM>(bm + wm * CONV_WM, lane, [&](uint32_t i, uint32_t h, uint32_t o) {
    if (o >= p.c_out_g) return;
    float add = 0.0f;
    if (bias != nullptr) add += bf16_bits_to_f32(bias[o]);
    if (temb != nullptr) add += bf16_bits_to_f32(temb[o]);
#pragma unroll
    for (uint32_t j = 0; j < CONV_TN; ++j) {
#pragma unroll
      for (uint32_t e = 0; e < 2; ++e) {
        const uint32_t px = bn + wn * CONV_WN + j * MMA_N + (lane % 4) * 2 + e;
        if (px >= npix) continue;
        const uint64_t idx = (uint64_t)o * npix + px;
        float v = acc[i][j][2 * h + e] + add;
        if (res != nullptr) v += bf16_bits_to_f32(res[idx]);
        y[idx] = from_f32<OutT>(v * p.scale);
      }
    }
  });
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

  const uint32_t tid = threadIdx.x;
  uint32_t lane, wm, wn;
  warp_coords<CONV_WARPS_N>(tid, lane, wm, wn);
  const uint32_t bm = blockIdx.y * CONV_BM; // output channels
  const uint32_t bn = blockIdx.x * CONV_BN; // output pixels
  const uint32_t img = blockIdx.z / p.groups;
  const uint32_t grp = blockIdx.z % p.groups;
  const bool w_vec = p.aligned != 0;
  const uint32_t npix = p.h_out * p.w_out;
  const uint32_t khw = p.kh * p.kw;

  const uint64_t w_off = (uint64_t)grp * p.c_out_g * p.k;
  const float* x =
      static_cast<const float*>(p.x) + ((uint64_t)img * p.c_in + (uint64_t)grp * p.c_in_g) * p.h * p.w_in;

  const uint32_t pcol = tid % CONV_BN;
  const uint32_t krow0 = tid / CONV_BN;
  const uint32_t pix = bn + pcol;
  const bool pix_ok = pix < npix;
  const int32_t iy0 = pix_ok ? (int32_t)((pix / p.w_out) * p.stride_h) - (int32_t)p.pad_h : 0;
  const int32_t ix0 = pix_ok ? (int32_t)((pix % p.w_out) * p.stride_w) - (int32_t)p.pad_w : 0;

  float4 wreg[W_F32 ? GEMM_F32_ROW_LOADS : 1];
  auto load_a = [&](uint32_t stage, uint32_t k0) {
    if (W_F32) {
      const float* w = static_cast<const float*>(p.w) + w_off;
#pragma unroll
      for (uint32_t i = 0; i < GEMM_F32_ROW_LOADS; ++i) {
        uint32_t r, c;
        f32_row_slot(tid, i, r, c);
        wreg[i] = load_f32x4(w, bm + r, bm + r < p.c_out_g, k0 + c, p.k, p.k, w_vec);
      }
    } else {
      const uint16_t* w = static_cast<const uint16_t*>(p.w) + w_off;
      load_tile_rows<CONV_BM, CONV_BK, CONV_THREADS>(sa[0][stage], w, tid, bm, p.c_out_g, k0, p.k, p.k, w_vec);
    }
  };
  float breg[CONV_B_PER_THREAD];
  auto gather_b = [&](uint32_t k0) {
    uint32_t kidx = k0 + krow0;
    uint32_t c = kidx / khw;
    uint32_t rem = kidx % khw;
    uint32_t ky = rem / p.kw, kx = rem % p.kw;
#pragma unroll
    for (uint32_t i = 0; i < CONV_B_PER_THREAD; ++i) {
      const int32_t iy = iy0 + (int32_t)(ky * p.dil_h), ix = ix0 + (int32_t)(kx * p.dil_w);
      const bool ok = pix_ok && kidx < p.k && iy >= 0 && iy < (int32_t)p.h && ix >= 0 && ix < (int32_t)p.w_in;
      breg[i] = ok ? x[((uint64_t)c * p.h + iy) * p.w_in + ix] : 0.0f;
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
  };
  // Split stores: X_col as 2-byte hi / lo per thread (a warp covers 64 consecutive bytes of one
  // row: conflict-free), an f32 W as in the GEMM A tile.
  auto store = [&](uint32_t stage) {
#pragma unroll
    for (uint32_t i = 0; i < CONV_B_PER_THREAD; ++i) {
      uint16_t hi, lo;
      split1(breg[i], hi, lo);
      reinterpret_cast<uint16_t*>(&sb[0][stage][krow0 + i * CONV_B_KSTEP][0])[pcol] = hi;
      reinterpret_cast<uint16_t*>(&sb[1][stage][krow0 + i * CONV_B_KSTEP][0])[pcol] = lo;
    }
    if (W_F32) {
#pragma unroll
      for (uint32_t i = 0; i < GEMM_F32_ROW_LOADS; ++i) {
        uint32_t r, c;
        f32_row_slot(tid, i, r, c);
        store_split4(&sa[0][stage][r][c], &sa[W_PARTS - 1][stage][r][c], wreg[i]);
      }
    }
  };

  float acc[CONV_TM][CONV_TN][4];
  zero_acc(acc);
  const uint32_t ktiles = ceil_div(p.k, CONV_BK);
  if (ktiles > 0) {
    load_a(0, 0);
    gather_b(0);
    store(0);
  }
  cp_async_commit();
  for (uint32_t kt = 0; kt < ktiles; ++kt) {
    const uint32_t stage = kt % CONV_STAGES;
    const bool more = kt + 1 < ktiles;
    cp_async_wait<0>();
    __syncthreads(); // tile kt visible; every warp done with the other stage
    if (more) {
      load_a(stage ^ 1, (kt + 1) * CONV_BK);
      gather_b((kt + 1) * CONV_BK); // global loads in flight during the mma below
    }
    cp_async_commit();

    // (W_lo.x_hi for an f32 W) + W.x_lo + W_hi.x_hi, each fragment loaded once
    warp_mma_ktile_split<true, W_F32, true, CONV_BK>(sa[0][stage], sa[W_PARTS - 1][stage], sb[0][stage],
                                                     sb[1][stage], wm * CONV_WM, wn * CONV_WN, lane, acc);
    if (more) store(stage ^ 1);
  }

  // Epilogue: conv2d_v1's with f32 bias / temb / residual and y.
  const uint32_t o0 = grp * p.c_out_g;
  const uint64_t plane = (uint64_t)p.c_out * npix;
  float* y = static_cast<float*>(p.y) + img * plane + (uint64_t)o0 * npix;
  const uint64_t roff = (p.res_bcast ? 0 : img * plane) + (uint64_t)o0 * npix;
  const float* res = p.residual ? static_cast<const float*>(p.residual) + roff : nullptr;
  const float* bias = p.bias ? static_cast<const float*>(p.bias) + o0 : nullptr;
  const float* temb = p.temb ? static_cast<const float*>(p.temb) + (uint64_t)img * p.c_out + o0 : nullptr;
  for_each_acc_row<CONV_TM>(bm + wm * CONV_WM, lane, [&](uint32_t i, uint32_t h, uint32_t o) {
    if (o >= p.c_out_g) return;
    float add = 0.0f;
    if (bias != nullptr) add += bias[o];
    if (temb != nullptr) add += temb[o];
#pragma unroll
    for (uint32_t j = 0; j < CONV_TN; ++j) {
#pragma unroll
      for (uint32_t e = 0; e < 2; ++e) {
        const uint32_t px = bn + wn * CONV_WN + j * MMA_N + (lane % 4) * 2 + e;
        if (px >= npix) continue;
        const uint64_t idx = (uint64_t)o * npix + px;
        float v = acc[i][j][2 * h + e] + add;
        if (res != nullptr) v += res[idx];
        y[idx] = v * p.scale;
      }
    }
  });
}

// f32 x and W, f32 bias / temb / residual / y (the residual must not alias y).
extern "C" __global__ void __launch_bounds__(CONV_THREADS) conv2d_xsplit_v1_f32(const Conv2dParams p) {
  conv2d_split_v1<true>(p);
}
// f32 x, bf16 W (the model's weights), f32 bias / temb / residual / y.
extern "C" __global__ void __launch_bounds__(CONV_THREADS) conv2d_xsplit_wbf16_v1_f32(const Conv2dParams p) {
  conv2d_split_v1<false>(p);
}
