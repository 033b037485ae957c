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
//   not broadcast);  y : (N, C_out, Ho, Wo) bf16 (f32 for conv2d_v1_f32), images y_c * Ho * Wo
//   apart (y_c > C_out: the output is a channel slice of a wider tensor, e.g. the first part of an
//   up block's skip concat; never with a residual aliasing y).
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
#include "conv2d_common.cuh"

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
template <typename InT, typename OutT, uint32_t WM = CONV_WM, uint32_t WN = CONV_WN, uint32_t TM = CONV_TM,
          uint32_t TN = CONV_TN>
__device__ __forceinline__ void conv_epilogue(const Conv2dParams& p, const ConvTile& t, const float (&acc)[TM][TN][4]) {
  const uint32_t npix = t.npix;
  const uint32_t o0 = t.grp * p.c_out_g; // first output channel of the group
  const uint64_t plane = (uint64_t)p.c_out * npix;
  const uint64_t yoff = t.img * ((uint64_t)p.y_c * npix) + (uint64_t)o0 * npix;
  OutT* y = static_cast<OutT*>(p.y) + yoff;
  const uint64_t roff = (p.res_bcast ? 0 : t.img * plane) + (uint64_t)o0 * npix;
  const InT* res = p.residual ? static_cast<const InT*>(p.residual) + roff : nullptr;
  const InT* bias = p.bias ? static_cast<const InT*>(p.bias) + o0 : nullptr;
  const InT* temb = p.temb ? static_cast<const InT*>(p.temb) + (uint64_t)t.img * p.c_out + o0 : nullptr;
  for_each_acc_row<TM>(t.bm + t.wm * WM, t.lane, [&](uint32_t i, uint32_t h, uint32_t o) {
    if (o >= p.c_out_g) return;
    float add = 0.0f;
    if (bias != nullptr) add += operand_f32(bias[o]);
    if (temb != nullptr) add += operand_f32(temb[o]);
#pragma unroll
    for (uint32_t j = 0; j < TN; ++j) {
#pragma unroll
      for (uint32_t e = 0; e < 2; ++e) {
        const uint32_t px = t.bn + t.wn * WN + j * MMA_N + (t.lane % 4) * 2 + e;
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
// v2: 128x128x32 block tiles, 4 warps (2x2) of 64x64, a table-driven X_col gather
// ------------------------------------------------------------------------------------------------
//
// The GEMM of v1 (M = this group's output channels, K = (c, ky, kx)) with the batch folded into N
// (columns img * Ho * Wo + pixel), for kernels of at most CONV2_MAX_TAPS taps (kh * kw <= 31: 1x1,
// 3x3, 5x5, 1xk k <= 31) whose largest x offset within a group's channels fits 27 bits (the
// launcher sends the rest to v1). The index math leaves the inner
// loop:
//   * per thread, once: its two columns' (ky, kx) = (0, 0) tap addresses (x + img * C_in * H * W +
//     iy0 * W + ix0, may point outside x) and a tap mask, bit ky * kw + kx set when that tap is
//     inside the image;
//   * per k tile, warp 0: a table of the tile's 32 k rows, one word each: element offset c * H * W +
//     ky * dh * W + kx * dw (27 bits) << 5 | tap ky * kw + kx (31 past K), written two tiles ahead
//     into a 2-slot ring, read four rows per 16-byte broadcast;
//   * per element: (mask & tap bit) ? base[offset] : 0 -- an and, a predicated load (ld_u16_if),
//     the 64-bit address add -- into registers one k tile ahead, stored as 2-byte smem writes (a
//     warp writes 64 consecutive bytes of one k row: conflict-free; global reads are 32 consecutive
//     pixels of one k row).
//   * 1x1, stride 1, no padding, Ho * Wo % 8 == 0 ("direct"): X_col rows are x's channel rows,
//     loaded by 16-byte cp.async like a GEMM B tile, no gather.
// Pipeline: W tiles in 3 smem stages, cp.async two k tiles ahead (wait_group 1 per k tile: the
// newest group, W of tile kt + 2, stays in flight); the gathered X_col one tile ahead in registers
// (its loads in flight during the tile's mma), 2 smem stages (direct: cp.async one tile ahead).
// W tiles by cp.async (plain loads when K % 8 != 0) into unpadded 64-byte rows with the 16-byte
// chunks XOR-swizzled by (row / 2) % 4: a quarter warp's ldmatrix rows and a quarter warp's 16-byte
// stores hit 8 distinct bank quads; global reads are 4 threads per 64-byte row (16 sectors per
// request). X_col tiles [k][n] padded to 136 columns: ldmatrix.trans rows 272 bytes apart, conflict-
// free. Warp tiles 64x64 (128 f32 accumulators per thread): per k16 step a warp's 4 + 4 ldmatrix.x4
// feed 32 mma, a third fewer shared wavefronts per mma than 64x32 tiles.

// Launch rule (kernels/src/conv2d.rs): grid = (ceil(N * Ho * Wo / 128), ceil(C_out / groups / 128),
// groups), block = CONV2_THREADS, static smem only. The batch is folded into the GEMM's N dimension
// (columns img * Ho * Wo + pixel; each column has its own image offset in the gather and the
// epilogue), so small images (8x8: 64 pixels) fill whole 128-column tiles.
enum : uint32_t { CONV2_BM = 128, CONV2_BN = 128, CONV2_BK = 32 };
enum : uint32_t { CONV2_WARPS_M = 2, CONV2_WARPS_N = 2 };
enum : uint32_t { CONV2_THREADS = CONV2_WARPS_M * CONV2_WARPS_N * WARP_SIZE };
enum : uint32_t { CONV2_WM = CONV2_BM / CONV2_WARPS_M, CONV2_WN = CONV2_BN / CONV2_WARPS_N }; // 64 x 64
enum : uint32_t { CONV2_TM = CONV2_WM / MMA_M, CONV2_TN = CONV2_WN / MMA_N };                   // 4 x 8
enum : uint32_t { CONV2_LDB = CONV2_BN + 8 };
// W tiles in flight: 3 stages, loaded two k tiles ahead (cp.async.wait_group 1).
enum : uint32_t { CONV2_WSTAGES = 3 };
// Tap masks are 32-bit; bit 31 marks "past K" in the k table; k-table offsets have 27 bits.
enum : uint32_t { CONV2_MAX_TAPS = 31, CONV2_TAP_BITS = 5, CONV2_NO_TAP = 31 };
// X_col gather: thread t owns pixel columns t % 64 and t % 64 + 64, k rows 16 (t / 64) + i (i < 16).
enum : uint32_t { CONV2_PIX = 2, CONV2_PCOLS = CONV2_BN / CONV2_PIX };
enum : uint32_t { CONV2_KSTEP = CONV2_THREADS / CONV2_PCOLS, CONV2_KROWS = CONV2_BK / CONV2_KSTEP };
enum : uint32_t { CONV2_A_CPR = CONV2_BK / CHUNK, CONV2_A_CHUNKS = CONV2_BM * CONV2_A_CPR / CONV2_THREADS };

static_assert(CONV2_THREADS % CONV2_PCOLS == 0 && CONV2_BK % CONV2_KSTEP == 0 && CONV2_KROWS % 4 == 0, "X_col gather");
static_assert(CONV2_BM * CONV2_A_CPR % CONV2_THREADS == 0 && CONV2_A_CPR == 4, "W tile: 4 swizzled chunks per row");
static_assert(CONV2_BK <= WARP_SIZE, "one warp fills the k table");

// Element offset of (row r, 16-byte chunk c) in a swizzled W tile (64-byte rows).
__device__ __forceinline__ uint32_t conv2_a_off(uint32_t r, uint32_t c) {
  return r * CONV2_BK + ((c ^ ((r >> 1) & 3u)) * CHUNK);
}

// The k table of the tile at k0 (warp 0 of the block; lane = k row): one word per row, offset << 5
// | tap (tap = ky * kw + kx < CONV2_MAX_TAPS; CONV2_NO_TAP past K, a bit no mask has). One 32-bit
// word per row: a broadcast read of 4 rows is 4 wavefronts (an {offset, bit} pair per row would
// be 2 per row).
__device__ __forceinline__ void conv2_ktab(const Conv2dParams& p, uint32_t khw, uint32_t k0, uint32_t* tab,
                                           uint32_t tid) {
  if (tid < CONV2_BK) {
    const uint32_t k = k0 + tid;
    uint32_t e = CONV2_NO_TAP;
    if (k < p.k) {
      const uint32_t c = k / khw, r = k % khw;
      const uint32_t ky = r / p.kw, kx = r % p.kw;
      e = (((c * p.h + ky * p.dil_h) * p.w_in + kx * p.dil_w) << CONV2_TAP_BITS) | r;
    }
    tab[tid] = e;
  }
}

// v2 epilogue: rows = this group's output channels, columns = (image, pixel) pairs img * Ho * Wo +
// pixel, `ncols` = N * Ho * Wo of them.
template <typename OutT>
__device__ __forceinline__ void conv2_epilogue(const Conv2dParams& p, const ConvTile& t, uint32_t ncols,
                                               const float (&acc)[CONV2_TM][CONV2_TN][4]) {
  const uint32_t npix = t.npix;
  const uint32_t o0 = t.grp * p.c_out_g; // first output channel of the group
  OutT* y = static_cast<OutT*>(p.y);
  const uint16_t* res = static_cast<const uint16_t*>(p.residual);
  const uint16_t* bias = static_cast<const uint16_t*>(p.bias);
  const uint16_t* temb = static_cast<const uint16_t*>(p.temb);
  // this lane's columns: image and pixel
  uint32_t cimg[CONV2_TN][2], cpix[CONV2_TN][2];
#pragma unroll
  for (uint32_t j = 0; j < CONV2_TN; ++j)
#pragma unroll
    for (uint32_t e = 0; e < 2; ++e) {
      const uint32_t col = t.bn + t.wn * CONV2_WN + j * MMA_N + (t.lane % 4) * 2 + e;
      cimg[j][e] = col < ncols ? col / npix : p.n; // p.n: past the last column
      cpix[j][e] = col % npix;
    }
  for_each_acc_row<CONV2_TM>(t.bm + t.wm * CONV2_WM, t.lane, [&](uint32_t i, uint32_t h, uint32_t o) {
    if (o >= p.c_out_g) return;
    const uint32_t oc = o0 + o;
    const float b = bias != nullptr ? operand_f32(bias[oc]) : 0.0f;
#pragma unroll
    for (uint32_t j = 0; j < CONV2_TN; ++j) {
#pragma unroll
      for (uint32_t e = 0; e < 2; ++e) {
        const uint32_t img = cimg[j][e];
        if (img >= p.n) continue;
        const uint64_t ch = (uint64_t)oc * npix + cpix[j][e]; // within one image
        const uint64_t idx = (uint64_t)img * p.c_out * npix + ch;
        float v = acc[i][j][2 * h + e] + b;
        if (temb != nullptr) v += operand_f32(temb[(uint64_t)img * p.c_out + oc]);
        if (res != nullptr) v += operand_f32(res[p.res_bcast ? ch : idx]);
        y[(uint64_t)img * p.y_c * npix + ch] = from_f32<OutT>(v * p.scale);
      }
    }
  });
}

// *ptr if `pred` != 0, else 0: a predicated load, no branch (x is read-only during the kernel).
__device__ __forceinline__ uint16_t ld_u16_if(const uint16_t* ptr, uint32_t pred) {
  uint16_t v;
  asm("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %2, 0;\n\tmov.b16 %0, 0;\n\t@p ld.global.u16 %0, [%1];\n\t}\n"
      : "=h"(v)
      : "l"(ptr), "r"(pred));
  return v;
}

template <typename OutT>
__device__ __forceinline__ void conv2d_v2(const Conv2dParams& p) {
  __shared__ __align__(128) __nv_bfloat16 sa[CONV2_WSTAGES][CONV2_BM * CONV2_BK]; // W, swizzled
  __shared__ __align__(16) __nv_bfloat16 sb[2][CONV2_BK][CONV2_LDB];   // X_col [k][n]
  __shared__ __align__(16) uint32_t ktab[2][CONV2_BK];

  ConvTile t;
  t.tid = threadIdx.x;
  warp_coords<CONV2_WARPS_N>(t.tid, t.lane, t.wm, t.wn);
  t.bm = blockIdx.y * CONV2_BM;
  t.bn = blockIdx.x * CONV2_BN; // first (image, pixel) column: img * Ho * Wo + pixel
  t.img = 0;                    // per column (the batch is folded into the pixel dimension)
  t.grp = blockIdx.z;
  t.npix = p.h_out * p.w_out;
  t.khw = p.kh * p.kw;
  t.pcol = t.tid % CONV2_PCOLS;
  t.krow0 = t.tid / CONV2_PCOLS;
  const bool aligned = p.aligned != 0;
  const uint32_t ncols = p.n * t.npix;

  const uint16_t* w = static_cast<const uint16_t*>(p.w) + (uint64_t)t.grp * p.c_out_g * p.k;
  const uint16_t* x = static_cast<const uint16_t*>(p.x) + (uint64_t)t.grp * p.c_in_g * p.h * p.w_in;

  // This thread's columns (image, pixel): (0, 0)-tap address and in-image tap mask.
  const uint16_t* base[CONV2_PIX];
  uint32_t mask[CONV2_PIX];
#pragma unroll
  for (uint32_t e = 0; e < CONV2_PIX; ++e) {
    const uint32_t col = t.bn + t.pcol + e * CONV2_PCOLS;
    base[e] = x;
    mask[e] = 0;
    if (col < ncols) {
      const ColTaps<uint32_t> c = col_taps<uint32_t>(p, x, col, t.npix);
      base[e] = c.base;
      mask[e] = c.mask;
    }
  }

  uint16_t breg[CONV2_KROWS][CONV2_PIX];
  // W chunks: rows t / 4 + 32 i, chunk column t % 4 (fixed per thread); on the cp.async path the
  // rows' element offsets (~0u past C_out / groups) are computed once.
  const uint32_t a_c = t.tid % CONV2_A_CPR;
  uint32_t a_off[CONV2_A_CHUNKS];
#pragma unroll
  for (uint32_t i = 0; i < CONV2_A_CHUNKS; ++i) {
    const uint32_t r = t.tid / CONV2_A_CPR + i * (CONV2_THREADS / CONV2_A_CPR);
    a_off[i] = t.bm + r < p.c_out_g ? (t.bm + r) * p.k + a_c * CHUNK : ~0u;
  }
  auto load_a = [&](uint32_t stage, uint32_t k0) {
#pragma unroll
    for (uint32_t i = 0; i < CONV2_A_CHUNKS; ++i) {
      const uint32_t r = t.tid / CONV2_A_CPR + i * (CONV2_THREADS / CONV2_A_CPR);
      __nv_bfloat16* dst = &sa[stage][conv2_a_off(r, a_c)];
      if (aligned) {
        const bool ok = a_off[i] != ~0u && k0 + a_c * CHUNK < p.k; // K % 8 == 0: whole chunks
        cp_async_16(smem_u32(dst), ok ? w + (a_off[i] + k0) : w, ok ? 16u : 0u);
      } else {
        load_chunk(dst, w, t.bm + r, t.bm + r < p.c_out_g, k0 + a_c * CHUNK, p.k, p.k, false);
      }
    }
  };
  auto gather = [&](const uint32_t* tab) {
    // four k rows' words per 16-byte (broadcast) smem read
    const uint4* tab4 = reinterpret_cast<const uint4*>(tab + t.krow0 * CONV2_KROWS);
#pragma unroll
    for (uint32_t i = 0; i < CONV2_KROWS; i += 4) {
      const uint4 e4 = tab4[i / 4];
      const uint32_t e[4] = {e4.x, e4.y, e4.z, e4.w};
#pragma unroll
      for (uint32_t q = 0; q < 4; ++q) {
        const uint32_t off = e[q] >> CONV2_TAP_BITS, bit = 1u << (e[q] & ((1u << CONV2_TAP_BITS) - 1));
#pragma unroll
        for (uint32_t j = 0; j < CONV2_PIX; ++j) breg[i + q][j] = ld_u16_if(base[j] + off, mask[j] & bit);
      }
    }
  };
  auto store_b = [&](uint32_t stage) {
#pragma unroll
    for (uint32_t i = 0; i < CONV2_KROWS; ++i)
#pragma unroll
      for (uint32_t j = 0; j < CONV2_PIX; ++j)
        reinterpret_cast<uint16_t*>(&sb[stage][t.krow0 * CONV2_KROWS + i][0])[t.pcol + j * CONV2_PCOLS] = breg[i][j];
  };
  float acc[CONV2_TM][CONV2_TN][4];
  auto mma = [&](uint32_t ws, uint32_t stage) {
#pragma unroll
    for (uint32_t kk = 0; kk < CONV2_BK; kk += MMA_K) {
      uint32_t af[CONV2_TM][4];
      uint32_t bf[CONV2_TN][2];
#pragma unroll
      for (uint32_t i = 0; i < CONV2_TM; ++i) {
        // lanes 0-15: rows 0-15 at k kk..kk+7; lanes 16-31: rows 0-15 at k kk+8.. -> a0..a3
        const uint32_t row = t.wm * CONV2_WM + i * MMA_M + (t.lane % 16);
        ldmatrix_x4(af[i], smem_u32(&sa[ws][conv2_a_off(row, kk / CHUNK + t.lane / 16)]));
      }
      load_b_frags<true, CONV2_TN, CONV2_LDB>(sb[stage], t.wn * CONV2_WN, kk, t.lane, bf);
      mma_tiles(acc, af, bf);
    }
  };

  // Direct X_col (1x1, stride 1, no padding, Ho * Wo % 8 == 0, x 16-byte aligned): X_col rows are
  // x's channel rows, 8-column chunks never straddle an image; 16-byte cp.async like a GEMM B
  // tile, zero-filled past K and past the last column, no gather. Thread t: chunk t % 16 of rows
  // t / 16 + 16 i (a quarter warp writes 128 contiguous bytes of one row: conflict-free).
  const bool direct = p.kh == 1 && p.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 &&
                      p.pad_w == 0 && t.npix % CHUNK == 0 && ((uint64_t)p.x % 16) == 0;
  const uint32_t dcc = t.tid % (CONV2_BN / CHUNK);
  const uint32_t dcol = t.bn + dcc * CHUNK;
  const bool dcol_ok = dcol < ncols;
  const uint16_t* dsrc = dcol_ok ? x + (uint64_t)(dcol / t.npix) * p.c_in * t.npix + dcol % t.npix : x;
  auto load_b_direct = [&](uint32_t stage, uint32_t k0) {
#pragma unroll
    for (uint32_t i = 0; i < CONV2_BK * CONV2_BN / CHUNK / CONV2_THREADS; ++i) {
      const uint32_t r = t.tid / (CONV2_BN / CHUNK) + i * (CONV2_THREADS * CHUNK / CONV2_BN);
      const bool ok = dcol_ok && k0 + r < p.k;
      cp_async_16(smem_u32(&sb[stage][r][dcc * CHUNK]), ok ? dsrc + (uint64_t)(k0 + r) * t.npix : x, ok ? 16u : 0u);
    }
  };

  zero_acc(acc);
  const uint32_t ktiles = ceil_div(p.k, CONV2_BK);
  conv2_ktab(p, t.khw, 0, ktab[0], t.tid);
  conv2_ktab(p, t.khw, CONV2_BK, ktab[1], t.tid);
  __syncthreads();
  // cp.async groups, in commit order: {W 0, direct X_col 0}, {W 1}, then per k tile kt:
  // {direct X_col kt + 1} (direct only), {W kt + 2} (committed even when empty, so the newest
  // group is always W's and wait_group 1 leaves exactly it in flight).
  load_a(0, 0);
  if (direct) load_b_direct(0, 0);
  cp_async_commit();
  if (ktiles > 1) load_a(1, CONV2_BK);
  cp_async_commit();
  if (!direct) {
    gather(ktab[0]);
    store_b(0);
  }
  uint32_t wst = 0; // W stage of tile kt (kt % CONV2_WSTAGES)
  for (uint32_t kt = 0; kt < ktiles; ++kt) {
    const uint32_t stage = kt % 2; // X_col stage and k-table slot
    const bool more = kt + 1 < ktiles;
    cp_async_wait<1>();
    __syncthreads(); // tile kt visible; every warp done with tile kt - 1's stages and k-table slot
    if (direct) {
      if (more) load_b_direct(stage ^ 1, (kt + 1) * CONV2_BK);
      cp_async_commit();
    } else if (more) {
      gather(ktab[stage ^ 1]); // global loads in flight during the mma below
      conv2_ktab(p, t.khw, (kt + 2) * CONV2_BK, ktab[stage], t.tid);
    }
    const uint32_t wnext = wst == 0 ? CONV2_WSTAGES - 1 : wst - 1; // (kt + 2) % 3
    if (kt + 2 < ktiles) load_a(wnext, (kt + 2) * CONV2_BK);
    cp_async_commit();
    mma(wst, stage);
    if (more && !direct) store_b(stage ^ 1);
    wst = wst + 1 == CONV2_WSTAGES ? 0 : wst + 1;
  }
  conv2_epilogue<OutT>(p, t, ncols, acc);
}

extern "C" __global__ void __launch_bounds__(CONV2_THREADS) conv2d_v2_bf16(const Conv2dParams p) {
  conv2d_v2<__nv_bfloat16>(p);
}
// bf16 operands, f32 y (as conv2d_v1_f32).
extern "C" __global__ void __launch_bounds__(CONV2_THREADS) conv2d_v2_f32(const Conv2dParams p) {
  conv2d_v2<float>(p);
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
