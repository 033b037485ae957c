// ------------------------------------------------------------------------------------------------
// conv2d_nhwc.cu: channels-last (NHWC, the token layout (N, H * W, C)) 2-D convolution as an
// implicit GEMM on the v2 GEMM mainloop (gemm_tiles.cuh / gemm_v2.cuh), bf16 storage, f32
// accumulation, fused staged epilogue with 16-byte stores.
//
//   y[n, oy, ox, o] = scale * (sum_k X_col[(n, oy, ox), k] * Wp[o, k] + temb[n, o] + bias[o]
//                              + R[(n, oy, ox), o])
//   k = (ky * kw + kx) * C + c  (tap-major, channels fastest),
//   X_col[(n, oy, ox), k] = x[n, oy * sh - ph + ky * dh, ox * sw - pw + kx * dw, c] (0 outside)
//
//   x  : (N, H, W, ldx) bf16, channels [0, C) of each pixel used (ldx >= C: a channel slice of a
//        wider tensor is fine);
//   Wp : (C_out, K_pad) bf16, the (C_out, C, kh, kw) weight permuted once to (C_out, kh, kw, C)
//        and its rows padded with zeros to K_pad = ceil(K / 8) * 8 (16-byte aligned rows;
//        kernels/src/conv2d_nhwc.rs `pack_weights`);
//   bias : (C_out) | null;  temb : (N, C_out) | null (ResNet time embedding);
//   R : (N * Ho * Wo, ldr) | null (may alias y when ldr == ldc);
//   y  : (N * Ho * Wo, ldc) bf16, columns [0, C_out) written: ldc > C_out with `y` pointing at
//        channel c0 writes the channel slice [c0, c0 + C_out) of a wider tensor (a skip concat).
//   groups = 1; any kh, kw, per-axis stride / padding / dilation.
//
// The GEMM: M = N * Ho * Wo output pixels (rows), N = C_out (columns), K = kh * kw * C; A = X_col
// gathered by the im2col loader below, B = Wp as a (N, K) row-major operand (RowTileLoader), the
// tile configs, persistent rastered schedule, split-K and epilogue of gemm.cu's v2 entries
// (GemmPlan::choose picks them the same way; the params start with a GemmV2Params).
//
// Versions:
//   v1: the im2col A loader in two forms:
//     * vector (C % 8 == 0, ldx % 8 == 0, x 16-byte aligned): one 16-byte cp.async per
//       (pixel row, 8 channels of one tap) chunk, zero-filled through src-size 0 for padding
//       taps, rows past M and k past K. A thread keeps its chunk column (tid % 4) and its rows'
//       pixel origins (iy0, ix0, image) for the tile, and per k tile decodes its chunk's k into
//       (tap, c) once (two divisions) for all its rows. A warp's 32 chunks are 8 pixel rows x 4
//       chunks: 64 contiguous bytes per pixel when C % 32 == 0 -> 16 sectors per request;
//     * scalar (any C, any ldx): the same tile filled element by element (8 predicated 2-byte
//       loads per chunk, one 16-byte st.shared at the chunk's swizzled slot): synchronous loads,
//       slower, for the conv_in of a 4- or 9-channel latent.
// Entries (one ConvNhwcParams): conv2d_nhwc_<BM>x<BN>_v1_bf16 for the four GemmTile configs of
// gemm.cu (vector loader), conv2d_nhwc_scalar_64x64_v1_bf16 (scalar loader) and
// conv2d_nhwc_splitk_v1_bf16 (gemm.cu's split-K reduction pass on these params).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "gemm_v2.cuh"

// params (mirrored by kernels/src/conv2d_nhwc.rs `ConvNhwcParams`, 224 bytes)
struct ConvNhwcParams {
  GemmV2Params gemm; // ops.a = x, ops.b = Wp (ldb = K_pad), m = N * Ho * Wo, n = C_out, k = K; c = y
  const void* temb;    // (N, C_out) bf16 (ResNet time embedding, added per image), or null
  uint32_t n, h, w, c; // x images, height, width, channels used
  uint32_t ldx;        // elements between consecutive pixels of x (>= c)
  uint32_t h_out, w_out;
  uint32_t kh, kw;
  uint32_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  uint32_t _pad;
};

// The im2col A-tile loader (gemm_tiles.cuh loader policy): a ROWS x 32 [row][k] tile of X_col,
// rows bm.. (output pixels), swizzled as swz_rk. VEC: 16-byte cp.async chunks (C % 8 == 0,
// ldx % 8 == 0, x 16-byte aligned), else element-wise loads.
template <uint32_t ROWS, uint32_t THREADS, bool VEC> struct Im2colTileLoader {
  enum : bool { KN = false };
  enum : uint32_t { PER = ROWS * 4 / THREADS, RSTEP = THREADS / 4 };
  static_assert(ROWS * 4 % THREADS == 0 && THREADS % 4 == 0, "whole chunks, fixed chunk column per thread");
  const ConvNhwcParams* p;
  const uint16_t* x;
  // rows tid / 4 + RSTEP i: first pixel of the image (img * H * W), origin of the (0, 0) tap;
  // rows past M get an origin no tap reaches (iy0 = -0x40000000).
  uint32_t pix0[PER];
  int32_t iy0[PER], ix0[PER];

  __device__ __forceinline__ Im2colTileLoader(const ConvNhwcParams& prm, uint32_t bm) : p(&prm) {
    x = static_cast<const uint16_t*>(prm.gemm.g.ops.a);
    const uint32_t npix = prm.h_out * prm.w_out;
#pragma unroll
    for (uint32_t i = 0; i < PER; ++i) {
      const uint32_t m = bm + threadIdx.x / 4 + i * RSTEP;
      pix0[i] = 0;
      iy0[i] = -0x40000000;
      ix0[i] = 0;
      if (m < prm.gemm.g.ops.m) {
        const uint32_t img = m / npix, pix = m - img * npix;
        const uint32_t oy = pix / prm.w_out, ox = pix - oy * prm.w_out;
        pix0[i] = img * prm.h * prm.w;
        iy0[i] = (int32_t)(oy * prm.stride_h) - (int32_t)prm.pad_h;
        ix0[i] = (int32_t)(ox * prm.stride_w) - (int32_t)prm.pad_w;
      }
    }
  }

  // Element offset in x of row i's tap (ky, kx) channel ch, and whether it is inside the image.
  __device__ __forceinline__ bool at(uint32_t i, uint32_t ky, uint32_t kx, uint32_t ch, uint64_t& off) const {
    const int32_t iy = iy0[i] + (int32_t)(ky * p->dil_h), ix = ix0[i] + (int32_t)(kx * p->dil_w);
    const bool ok = (uint32_t)iy < p->h && (uint32_t)ix < p->w;
    off = ok ? ((uint64_t)(pix0[i] + (uint32_t)iy * p->w + (uint32_t)ix)) * p->ldx + ch : 0;
    return ok;
  }

  __device__ __forceinline__ void load(uint32_t dst, uint32_t k0, uint32_t tid) const {
    const uint32_t cc = tid % 4, r0 = tid / 4;
    const uint32_t k = p->gemm.g.ops.k, C = p->c;
    uint32_t kidx = k0 + cc * CHUNK;
    if constexpr (VEC) {
      // C % 8 == 0: the chunk's 8 k are 8 consecutive channels of one tap
      const uint32_t tap = kidx / C, ch = kidx - tap * C;
      const uint32_t ky = tap / p->kw, kx = tap - ky * p->kw;
#pragma unroll
      for (uint32_t i = 0; i < PER; ++i) {
        uint64_t off;
        const bool ok = at(i, ky, kx, ch, off) && kidx < k;
        cp_async_16(dst + swz_rk(r0 + i * RSTEP, cc), x + (ok ? off : 0), ok ? 16u : 0u);
      }
    } else {
      uint32_t tap = kidx / C, ch0 = kidx - tap * C;
#pragma unroll
      for (uint32_t i = 0; i < PER; ++i) {
        uint32_t t = tap, ch = ch0, v[CHUNK / 2];
#pragma unroll
        for (uint32_t e = 0; e < CHUNK; ++e) {
          const uint32_t ky = t / p->kw, kx = t - ky * p->kw;
          uint64_t off;
          const bool ok = at(i, ky, kx, ch, off) && kidx + e < k;
          const uint32_t bits = ok ? x[off] : 0u;
          v[e / 2] = e % 2 ? v[e / 2] | (bits << 16) : bits;
          if (++ch == C) ch = 0, ++t;
        }
        asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(dst + swz_rk(r0 + i * RSTEP, cc)), "r"(v[0]),
                     "r"(v[1]), "r"(v[2]), "r"(v[3])
                     : "memory");
      }
    }
  }
};

// The epilogue's time-embedding term (gemm_v2.cuh row_add): temb[row / (Ho * Wo), col0 ..] for
// output pixel `row`.
struct ConvNhwcTemb {
  const ConvNhwcParams* p;
  template <uint32_t CH> __device__ __forceinline__ void operator()(uint32_t row, uint32_t col0, float (&v)[CH]) const {
    const GemmOperandParams& o = p->gemm.g.ops;
    if (p->temb == nullptr || row >= o.m || col0 >= o.n) return;
    const uint32_t img = row / (p->h_out * p->w_out);
    float t[CH];
    load_bf16_chunk<CH>(static_cast<const uint16_t*>(p->temb) + (uint64_t)img * o.n + col0, min(o.n - col0, CH), t);
#pragma unroll
    for (uint32_t e = 0; e < CH; ++e) v[e] += t[e];
  }
};

template <class Cfg, bool VEC> __device__ __forceinline__ void conv2d_nhwc_v1(const ConvNhwcParams& p) {
  gemm_v2<Cfg, false, __nv_bfloat16>(
      p.gemm, [&p](uint32_t, uint32_t bm) { return Im2colTileLoader<Cfg::BM, Cfg::THREADS, VEC>(p, bm); },
      ConvNhwcTemb{&p});
}

using ConvNhwcCfgXL = GemmTileConfig<128, 256, 2, 4, 3>;
using ConvNhwcCfgXLT = GemmTileConfig<256, 128, 4, 2, 3>;
using ConvNhwcCfgL = GemmTileConfig<128, 128, 2, 4, 4>;
using ConvNhwcCfgS = GemmTileConfig<64, 64, 2, 2, 4>;

#define CONV_NHWC_ENTRY(NAME, CFG, VEC, MIN_BLOCKS)                                                  \
  extern "C" __global__ void __launch_bounds__(CFG::THREADS, MIN_BLOCKS) NAME(const ConvNhwcParams p) { \
    conv2d_nhwc_v1<CFG, VEC>(p);                                                                     \
  }

CONV_NHWC_ENTRY(conv2d_nhwc_128x256_v1_bf16, ConvNhwcCfgXL, true, 1)
CONV_NHWC_ENTRY(conv2d_nhwc_256x128_v1_bf16, ConvNhwcCfgXLT, true, 1)
CONV_NHWC_ENTRY(conv2d_nhwc_128x128_v1_bf16, ConvNhwcCfgL, true, 2)
CONV_NHWC_ENTRY(conv2d_nhwc_64x64_v1_bf16, ConvNhwcCfgS, true, 4)
CONV_NHWC_ENTRY(conv2d_nhwc_scalar_64x64_v1_bf16, ConvNhwcCfgS, false, 4)

// The split-K pass of gemm.cu over the conv's GEMM: grid = (ceil(M * ceil(C_out / 8) / 256), 1).
extern "C" __global__ void __launch_bounds__(256) conv2d_nhwc_splitk_v1_bf16(const ConvNhwcParams p) {
  gemm_splitk_v2(p.gemm, ConvNhwcTemb{&p});
}
