// arch: sm_90a only
// ------------------------------------------------------------------------------------------------
// conv2d_sm90.cu: conv2d.cu's v2 implicit GEMM (NCHW, bf16 storage, f32 accumulation, batch
// folded into the pixel columns, table-driven X_col gather, fused bias / temb / residual / scale
// epilogue) on Hopper warpgroup MMAs (wgmma.mma_async), sm_90a only.
//
//   y[n, o, p] = scale * (sum_k W[o, k] * X_col[n, g, k, p] + bias[o] + temb[n, o] + R[n, o, p])
//   (conv2d.cu's header has the full definition; same params struct, same semantics.)
//
// GEMM per group: M = C_out / groups (W rows), N = batch * Ho * Wo ((image, pixel) columns),
// K = C_in / groups * kh * kw. Block tile 256 x 128 x 128, two warpgroups (256 threads), one block
// per SM (128-deep k tiles: half the per-tile barrier / wait / table overhead of 64):
//   * A = the W tile, 256 rows x 128 k as two K-atoms of 256 rows x 64 k (128-byte rows), K-major,
//     128B swizzle (16-byte chunk c of row r at chunk c ^ (r % 8)); loaded by 16-byte cp.async
//     (16 per thread; whole tiles: one pointer step per chunk; rows past C_out / groups inside a
//     computed m64 half and k past K zero-filled, rows of halves not computed not loaded). Needs K % 8 == 0 and a 16-byte aligned W (the launcher sends
//     other shapes to conv2d.cu's v2). Warpgroup g multiplies rows 128 g .. 128 g + 127.
//   * B = the X_col tile, 128 k x 128 columns, MN-major (columns contiguous, as in NCHW),
//     128B swizzle: two 64-column atoms 16 KiB apart (LBO), 8-k groups 1 KiB apart (SBO), k row
//     k % 8 of a group the 128-byte row with chunks XOR-ed by k % 8. Gathered by all 8 warps
//     (shared by both warpgroups: the gather cost per FLOP halves against a 128-row tile, which
//     the issue rate needs): warp w owns k rows 16 w .. 16 w + 15, lane l the column pairs
//     64 j + 2 l + {0, 1} (j = 0, 1); lane i reads k-table row i of the warp's 16 (8 bytes: the
//     tap's byte offset and bit) once per tile and the gather shuffles row r's from lane r (a
//     16-byte broadcast per row cost 4 shared wavefronts, the whole table now 2), each column's
//     (0, 0)-tap address and in-image tap mask are computed once (v2's scheme); a predicated
//     2-byte load per column (a warp reads 64 consecutive pixels: coalesced where the pixels
//     are), one 4-byte st.shared per pair (a warp writes one whole 128-byte row, permuted by the
//     swizzle: conflict-free).
//   * Two stages of (A, B) (96 KiB each) and a two-slot k table. Per k tile kt: wgmma.fence,
//     wgmma m64n128k16 (two 64-row halves x eight k16 steps per warpgroup, one asm block per half:
//     descriptors advanced by immediates, 32 bytes along A's K inside a K-atom, 2 KiB along B's; halves wholly past C_out / groups skipped,
//     warpgroup-uniformly: a 320-channel conv runs 5 halves, not 6 or 8), commit; while they run
//     the block issues tile kt + 1's W cp.asyncs and gathers its X_col into the other stage, and
//     builds the k table of tile kt + 2; then cp.async.wait_all, wgmma.wait_group 0,
//     fence.proxy.async (generic-proxy smem writes before the async-proxy wgmma reads of the
//     next tile), __syncthreads. No warp specialisation: the gather is most of the non-MMA work
//     and needs every warp's issue slots; the wgmmas run asynchronously under it.
//   * Persistent over column tiles: block x of row tile y walks column tiles x, x + gridDim.x, ...
//     (the launcher gives every SM at most one block: floor(SMs / row tiles) walkers), so its W
//     slice is fetched from DRAM once per block, not once per tile.
//   * Accumulators: 2 x 64 f32 per thread (the warpgroup's two m64n128 halves).
//   * Epilogue through shared memory: the f32 tile (row stride 136 floats: the float2 writes of
//     the wgmma fragment are 2 wavefronts, the optimum) reused over the mainloop's stages, then
//     each warp walks rows (output channels) with lanes on 4 consecutive columns (Ho * Wo % 4 == 0;
//     else single columns): coalesced 8-byte stores, bias / temb broadcast per row, residual read
//     coalesced; on the 4-column path every bias / temb / residual load of the warp's 32 rows is
//     issued before the first use (one memory round trip per tile instead of one or two per row).
// Dynamic shared memory: max(2 x 96 KiB + 2 KiB k table, 256 x 136 x 4) + 1 KiB to align the
// swizzled tiles to 1024 bytes = 199680 bytes.
// Entries: conv2d_sm90_v1_bf16 (bf16 y), conv2d_sm90_v1_f32 (f32 y, bf16 operands).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "mma.cuh" // cp.async, smem_u32, operand_f32
#include "sm90.cuh" // wgmma descriptors, fences, operand lists
#include "conv2d_common.cuh"

// Launch rule (kernels/src/conv2d_sm90.rs): grid = (column-tile walkers, ceil(C_out / groups / 256),
// groups), block = 256, dynamic smem = C90_SMEM_BYTES.
enum : uint32_t { C90_BM = 256, C90_BN = 128, C90_BK = 128, C90_THREADS = 256, C90_WARPS = C90_THREADS / WARP_SIZE };
enum : uint32_t { C90_A_BYTES = C90_BM * C90_BK * 2, C90_B_BYTES = C90_BK * C90_BN * 2 }; // 64 + 32 KiB
// A = C90_BK / 64 K-atoms of [C90_BM rows][64 k] (128-byte swizzled rows); B = 2 column atoms of
// [C90_BK k][64 columns]
enum : uint32_t { C90_A_ATOM = C90_BM * 128, C90_B_ATOM = C90_BK * 128 };
enum : uint32_t { C90_STAGE_BYTES = C90_A_BYTES + C90_B_BYTES, C90_STAGES = 2 };
enum : uint32_t { C90_KTAB_OFF = C90_STAGES * C90_STAGE_BYTES };
enum : uint32_t { C90_MAIN_BYTES = C90_KTAB_OFF + 2 * C90_BK * 8 };
enum : uint32_t { C90_EPI_LD = C90_BN + 8, C90_EPI_BYTES = C90_BM * C90_EPI_LD * 4 };
enum : uint32_t { C90_SMEM_BYTES = (C90_MAIN_BYTES > C90_EPI_BYTES ? C90_MAIN_BYTES : C90_EPI_BYTES) + 1024 };
enum : uint32_t { C90_KROWS = C90_BK / C90_WARPS };   // k rows gathered per warp (16)
enum : uint32_t { C90_COLS = 4 };                     // columns gathered per thread (2 pairs)
enum : uint32_t { C90_A_CHUNKS = C90_BM * 8 / C90_THREADS }; // per 64-k atom: 8
static_assert(C90_KROWS % 8 == 0 && C90_KROWS % 4 == 0, "a warp's k rows are whole 8-row swizzle groups");

// One k-table row: the byte offset of its (c, ky, kx) tap from a column's (0, 0)-tap address
// within the group's channels (< 2^28: v2's offset bound, which conv2d_sm90::supports inherits) and its tap bit 1 << (ky * kw + kx)
// (0 past K: no mask has it). Lane i of a warp reads row i of the warp's 16 (8 bytes per lane:
// 2 wavefronts for the warp's 16 rows, where a 16-byte broadcast per row cost 4 each) and the
// gather shuffles row r's entry from lane r.
struct __align__(8) C90Tap {
  uint32_t off;
  uint32_t bit;
};

// ------------------------------------------------------------------------------------------------
// wgmma wrappers
// ------------------------------------------------------------------------------------------------

// d += A (K-major, desc a) * B (MN-major, desc b) over one 128-deep k tile: eight m64n128k16
// bf16 -> f32 steps, the descriptors advanced inside the asm by immediates (descriptor units of
// 16 bytes: A 32 bytes per k16 inside a 64-k atom, C90_A_ATOM between the two atoms; B 2 KiB per
// k16), one scale-d predicate for the eight.
#define C90_WG(a_off, b_off)                                                                     \
  "add.s64 da, %64, " #a_off ";\nadd.s64 db, %65, " #b_off ";\n"                                  \
  "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" WG_R64 "}, da, db, p, 1, 1, 0, 1;\n"
__device__ __forceinline__ void wgmma_k128(float (&d)[64], uint64_t a, uint64_t b) {
  static_assert(C90_A_ATOM / 16 == 2048 && C90_BK == 128, "immediates below");
  asm volatile("{\n.reg .pred p;\n.reg .b64 da, db;\nsetp.ne.b32 p, %66, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" WG_R64 "}, %64, %65, p, 1, 1, 0, 1;\n"
               C90_WG(2, 128) C90_WG(4, 256) C90_WG(6, 384) C90_WG(2048, 512) C90_WG(2050, 640)
               C90_WG(2052, 768) C90_WG(2054, 896) "}\n"
               : WG_D64
               : "l"(a), "l"(b), "r"(1));
}
#undef C90_WG

// *ptr if `pred` != 0, else 0 (x is read-only during the kernel).
__device__ __forceinline__ uint16_t c90_ld_u16_if(const void* ptr, uint32_t pred) {
  uint16_t v;
  asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %2, 0;\n\tmov.b16 %0, 0;\n\t@p ld.global.nc.u16 %0, [%1];\n\t}\n"
               : "=h"(v)
               : "l"(ptr), "r"(pred));
  return v;
}

// The 4 bf16 at *ptr (8-byte aligned) if `pred`, else 0s (a plain load: the residual may be y).
__device__ __forceinline__ uint2 c90_ld_u16x4_if(const void* ptr, bool pred) {
  uint2 v;
  asm volatile("{\n\t.reg .pred p;\n\tsetp.ne.b32 p, %3, 0;\n\tmov.b32 %0, 0;\n\tmov.b32 %1, 0;\n\t"
               "@p ld.global.v2.u32 {%0, %1}, [%2];\n\t}\n"
               : "=r"(v.x), "=r"(v.y)
               : "l"(ptr), "r"((uint32_t)pred));
  return v;
}

// The k table of the tile at k0 (64 rows, one thread per row).
__device__ __forceinline__ void c90_ktab(const Conv2dParams& p, uint32_t khw, uint32_t k0, C90Tap* tab,
                                         uint32_t row) {
  const uint32_t k = k0 + row;
  C90Tap e{0, 0};
  if (k < p.k) {
    const uint32_t c = k / khw, r = k % khw;
    const uint32_t ky = r / p.kw, kx = r % p.kw;
    e.off = 2 * ((c * p.h + ky * p.dil_h) * p.w_in + kx * p.dil_w);
    e.bit = 1u << r;
  }
  tab[row] = e;
}

// Four consecutive outputs: one 8-byte (bf16) or 16-byte (f32) store.
__device__ __forceinline__ void c90_store4(__nv_bfloat16* y, float a, float b, float c, float d) {
  *reinterpret_cast<uint2*>(y) = make_uint2(pack_bf16x2(a, b), pack_bf16x2(c, d));
}
__device__ __forceinline__ void c90_store4(float* y, float a, float b, float c, float d) {
  *reinterpret_cast<float4*>(y) = make_float4(a, b, c, d);
}

// One 256 x 128 output tile at columns bn.. (the block's row tile blockIdx.y, group blockIdx.z)
// over k tiles kt0 .. kt1 (kt0 < kt1 <= ceil(K / 128), or kt0 == kt1: a zero partial). part null:
// the fused epilogue into y; else the raw f32 tile (this split's partial sums) to part, rows of
// part_ld floats (the tile's 128 columns, whole: columns past N * Ho * Wo hold zeros), rows past
// C_out / groups not written.
template <typename OutT>
__device__ __forceinline__ void conv2d_sm90_tile(const Conv2dParams& p, uint32_t bn, uint32_t kt0, uint32_t kt1,
                                                 float* part, uint32_t part_ld) {
  extern __shared__ __align__(1024) uint8_t c90_smem[];
  const uint32_t sbase = (smem_u32(c90_smem) + 1023u) & ~1023u; // swizzle atoms 1024-aligned
  uint8_t* smem = c90_smem + (sbase - smem_u32(c90_smem));
  C90Tap* ktab = reinterpret_cast<C90Tap*>(smem + C90_KTAB_OFF); // [2][C90_BK]

  const uint32_t tid = threadIdx.x, lane = tid % WARP_SIZE, warp = tid / WARP_SIZE;
  const uint32_t wg = warp / 4; // warpgroup: output rows 128 wg .. 128 wg + 127 of the tile
  const uint32_t bm = blockIdx.y * C90_BM; // first output channel within the group
  const uint32_t grp = blockIdx.z;
  const uint32_t npix = p.h_out * p.w_out, khw = p.kh * p.kw;
  const uint32_t ncols = p.n * npix;
  const uint16_t* w = static_cast<const uint16_t*>(p.w) + (uint64_t)grp * p.c_out_g * p.k;
  const uint16_t* x = static_cast<const uint16_t*>(p.x) + (uint64_t)grp * p.c_in_g * p.h * p.w_in;

  // This thread's columns 64 j + 2 lane + e (q = 2 j + e): (0, 0)-tap address, in-image tap mask.
  const uint8_t* base[C90_COLS];
  uint32_t mask[C90_COLS];
#pragma unroll
  for (uint32_t q = 0; q < C90_COLS; ++q) {
    const uint32_t col = bn + 64 * (q / 2) + 2 * lane + q % 2;
    base[q] = reinterpret_cast<const uint8_t*>(x);
    mask[q] = 0;
    if (col < ncols) {
      const ColTaps<uint32_t> c = col_taps<uint32_t>(p, x, col, npix);
      base[q] = reinterpret_cast<const uint8_t*>(c.base);
      mask[q] = c.mask;
    }
  }

  // W chunks: chunk column a_c = tid % 8 of rows tid / 8 + 32 i; rows i < a_rows are inside
  // C_out / groups, rows a_rows <= i < a_fill are zero-filled (the rest of an m64 half the
  // wgmmas read), rows past the computed halves are not loaded (a 64-channel tail tile loads 64
  // rows, not 256). a_src = row tid / 8's chunk, rows 32 K elements apart.
  const uint32_t a_c = tid % 8, a_r0 = tid / 8;
  const uint32_t a_live = min((uint32_t)C90_BM, p.c_out_g - bm);
  const uint32_t a_rows = a_r0 < a_live ? ceil_div(a_live - a_r0, C90_THREADS / 8) : 0;
  const uint32_t a_fill_rows = min((uint32_t)C90_BM, ceil_div(a_live, 64) * 64);
  const uint32_t a_fill = ceil_div(a_fill_rows - a_r0, C90_THREADS / 8); // a_r0 < 32 <= a_fill_rows
  const uint16_t* a_src = w + (a_rows > 0 ? (uint64_t)(bm + a_r0) * p.k + a_c * CHUNK : 0);
  const uint64_t a_rs = (uint64_t)(C90_THREADS / 8) * p.k;
  // shared byte offset of chunk (row a_r0, column a_c) in atom 0 (row + 32 i: + 4 KiB i, same swizzle)
  const uint32_t a_dst = a_r0 * 128 + ((a_c ^ (a_r0 % 8)) * 16);
  auto load_a = [&](uint32_t stage, uint32_t k0) {
    const uint32_t sa = sbase + stage * C90_STAGE_BYTES + a_dst;
    if (k0 + C90_BK <= p.k && a_rows == C90_A_CHUNKS) {
      // a whole k tile of this thread's 8 rows (all but the K tail and the C_out tail): one
      // pointer step and one cp.async per chunk
      const uint16_t* src = a_src + k0;
#pragma unroll
      for (uint32_t i = 0; i < C90_A_CHUNKS; ++i, src += a_rs)
#pragma unroll
        for (uint32_t ka = 0; ka < C90_BK / 64; ++ka)
          cp_async_16(sa + ka * C90_A_ATOM + i * (C90_THREADS / 8) * 128, src + ka * 64, 16u);
      return;
    }
#pragma unroll
    for (uint32_t ka = 0; ka < C90_BK / 64; ++ka) {
      const uint32_t kc = k0 + ka * 64;
      const bool kok = kc + a_c * CHUNK < p.k; // K % 8 == 0: whole chunks
      const uint16_t* src = a_src + kc;
#pragma unroll
      for (uint32_t i = 0; i < C90_A_CHUNKS; ++i) {
        if (i >= a_fill) break;
        const bool ok = kok && i < a_rows;
        cp_async_16(sa + ka * C90_A_ATOM + i * (C90_THREADS / 8) * 128, ok ? src + i * a_rs : w, ok ? 16u : 0u);
      }
    }
  };
  // X_col: warp w's k rows 16 w + i (i % 8 = k % 8), lane's column pair j at byte j * C90_B_ATOM of
  // chunk (lane / 4) ^ (k % 8): per thread the eight swizzled row offsets, once.
  const uint32_t b_thread = warp * (C90_KROWS / 8) * 1024 + (lane % 4) * 4, b_chunk = (lane / 4) * 16;
  auto gather = [&](uint32_t stage, const C90Tap* tab) {
    uint8_t* sb = smem + stage * C90_STAGE_BYTES + C90_A_BYTES + b_thread;
    const C90Tap mine = tab[warp * C90_KROWS + lane % C90_KROWS]; // this lane's k row (of 16)
#pragma unroll
    for (uint32_t i = 0; i < C90_KROWS; i += 4) {
      uint16_t v[4][C90_COLS];
#pragma unroll
      for (uint32_t r = 0; r < 4; ++r) {
        const uint32_t off = __shfl_sync(0xffffffffu, mine.off, i + r), bit = __shfl_sync(0xffffffffu, mine.bit, i + r);
#pragma unroll
        for (uint32_t q = 0; q < C90_COLS; ++q) v[r][q] = c90_ld_u16_if(base[q] + off, mask[q] & bit);
      }
#pragma unroll
      for (uint32_t r = 0; r < 4; ++r) {
        // k % 8 = (i + r) % 8: chunk (lane / 4) ^ (k % 8) at row k % 8 of 8-row group k / 8
        uint8_t* row = sb + (b_chunk ^ (((i + r) % 8) * 16)) + ((i + r) % 8) * 128 + ((i + r) / 8) * 1024;
#pragma unroll
        for (uint32_t j = 0; j < 2; ++j)
          *reinterpret_cast<uint32_t*>(row + j * C90_B_ATOM) = (uint32_t)v[r][2 * j] | ((uint32_t)v[r][2 * j + 1] << 16);
      }
    }
  };

  float acc[2][64];
#pragma unroll
  for (uint32_t h = 0; h < 2; ++h)
#pragma unroll
    for (uint32_t i = 0; i < 64; ++i) acc[h][i] = 0.0f;

  // this warpgroup's 64-row halves holding output channels (warpgroup-uniform): the tail tile of
  // C_out / groups = 320 runs one m64 half, not 256 rows
  const uint32_t rows0 = bm + 128 * wg;
  const uint32_t halves = rows0 >= p.c_out_g ? 0 : (p.c_out_g - rows0 >= 128 ? 2 : ceil_div(p.c_out_g - rows0, 64));
  if (tid < 2 * C90_BK) // tiles kt0, kt0 + 1 (slots 0, 1)
    c90_ktab(p, khw, (kt0 + tid / C90_BK) * C90_BK, ktab + (tid / C90_BK) * C90_BK, tid % C90_BK);
  __syncthreads();
  load_a(0, kt0 * C90_BK);
  cp_async_commit();
  gather(0, ktab);
  cp_async_wait<0>();
  fence_proxy_async();
  __syncthreads();

  for (uint32_t kt = kt0; kt < kt1; ++kt) {
    const uint32_t stage = (kt - kt0) % 2; // stage and k-table slot
    const uint32_t sa = sbase + stage * C90_STAGE_BYTES, sb = sa + C90_A_BYTES;
    wgmma_fence();
    {
      // descriptors of k16 step 0 (wgmma_k128 adds the other steps' offsets)
      const uint64_t bdesc = wgmma_desc(sb, C90_B_ATOM, 1024);
      const uint64_t adesc = wgmma_desc(sa + wg * 2 * 8192, 16, 1024);
      if (halves == 2) {
        wgmma_k128(acc[0], adesc, bdesc);
        wgmma_k128(acc[1], adesc + 8192 / 16, bdesc);
      } else if (halves == 1) {
        wgmma_k128(acc[0], adesc, bdesc);
      }
    }
    wgmma_commit();
    if (kt + 1 < kt1) {
      load_a(stage ^ 1, (kt + 1) * C90_BK);
      cp_async_commit();
      gather(stage ^ 1, ktab + (stage ^ 1) * C90_BK);
      if (tid < C90_BK) c90_ktab(p, khw, (kt + 2) * C90_BK, ktab + stage * C90_BK, tid);
    }
    cp_async_wait<0>();
    wgmma_wait<0>();
    fence_proxy_async();
    __syncthreads();
  }

  // Epilogue: fragments -> f32 tile [row][C90_EPI_LD] -> coalesced NCHW stores.
  float* tile = reinterpret_cast<float*>(smem);
#pragma unroll
  for (uint32_t h = 0; h < 2; ++h)
#pragma unroll
    for (uint32_t i = 0; i < 64; i += 2) {
      const uint32_t row = 128 * wg + 64 * h + 16 * (warp % 4) + lane / 4 + 8 * ((i / 2) % 2);
      const uint32_t col = 8 * (i / 4) + 2 * (lane % 4);
      *reinterpret_cast<float2*>(&tile[row * C90_EPI_LD + col]) = make_float2(acc[h][i], acc[h][i + 1]);
    }
  __syncthreads();
  if (part != nullptr) {
    // split-K partial: each warp copies rows warp, warp + 8, .. (128 floats: a float4 per lane,
    // 512 contiguous bytes per row store, 4 shared wavefronts per row read)
    const uint32_t nrows = min((uint32_t)C90_BM, p.c_out_g - bm);
    for (uint32_t r = warp; r < nrows; r += C90_WARPS)
      *reinterpret_cast<float4*>(part + (uint64_t)r * part_ld + 4 * lane) =
          *reinterpret_cast<const float4*>(&tile[r * C90_EPI_LD + 4 * lane]);
    return;
  }
  const uint32_t o0 = grp * p.c_out_g;
  OutT* y = static_cast<OutT*>(p.y);
  const uint16_t* res = static_cast<const uint16_t*>(p.residual);
  const uint16_t* bias = static_cast<const uint16_t*>(p.bias);
  const uint16_t* temb = static_cast<const uint16_t*>(p.temb);
  // Ho * Wo % 4 == 0 (every U-Net / VAE conv) and aligned y / residual: each lane 4 consecutive
  // columns of one image (a float4 of the tile, 8-byte residual loads, 8- / 16-byte stores); else
  // lanes on single columns.
  const bool vec4 = npix % 4 == 0 && (uint64_t)p.y % 16 == 0 && (uint64_t)p.residual % 8 == 0;
  if (vec4) {
    const uint32_t col = bn + 4 * lane;
    const uint32_t img = col < ncols ? col / npix : p.n, pix = col % npix; // all 4 or none
    const bool col_ok = img < p.n;
    const uint32_t nrows = min((uint32_t)C90_BM, p.c_out_g - bm);
    // Warp rows r = warp + 8 i (i < 32). Every bias / temb / residual load of the warp's rows is
    // issued before the first use (one memory round trip per tile, not one per row): lane i
    // loads row i's bias (shuffled to the warp per row), each lane its 32 rows' temb and
    // residual (the f32 accumulators are dead here: registers to spare).
    const uint32_t oc0 = o0 + bm + warp;
    const bool b_on = bias != nullptr && warp + 8 * lane < nrows;
    const uint16_t b_bits = c90_ld_u16_if(bias + (b_on ? oc0 + 8 * lane : 0), b_on);
    const uint64_t ch0 = (uint64_t)oc0 * npix + pix;
    const uint64_t r0 = p.res_bcast ? ch0 : (uint64_t)img * p.c_out * npix + ch0;
    const uint16_t* tb = temb + (temb != nullptr && col_ok ? (uint64_t)img * p.c_out + oc0 : 0);
    uint2 rv[C90_BM / C90_WARPS];
    uint16_t tv[C90_BM / C90_WARPS];
#pragma unroll
    for (uint32_t i = 0; i < C90_BM / C90_WARPS; ++i) {
      const bool ok = col_ok && warp + 8 * i < nrows;
      const bool r_on = ok && res != nullptr, t_on = ok && temb != nullptr;
      rv[i] = c90_ld_u16x4_if(res + (r_on ? r0 + (uint64_t)8 * i * npix : 0), r_on);
      tv[i] = c90_ld_u16_if(tb + (t_on ? 8 * i : 0), t_on);
    }
#pragma unroll
    for (uint32_t i = 0; i < C90_BM / C90_WARPS; ++i) {
      const uint32_t r = warp + 8 * i;
      const float add = operand_f32((uint16_t)__shfl_sync(0xffffffffu, (uint32_t)b_bits, i)) + operand_f32(tv[i]);
      if (r >= nrows) break; // warp-uniform
      const float4 t = *reinterpret_cast<const float4*>(&tile[r * C90_EPI_LD + 4 * lane]);
      const float v[4] = {t.x + add + bf16_bits_to_f32(rv[i].x & 0xffffu), t.y + add + bf16_bits_to_f32(rv[i].x >> 16),
                          t.z + add + bf16_bits_to_f32(rv[i].y & 0xffffu), t.w + add + bf16_bits_to_f32(rv[i].y >> 16)};
      const uint64_t ych = (uint64_t)(o0 + bm + r) * npix + pix;
      if (col_ok)
        c90_store4(y + (uint64_t)img * p.y_c * npix + ych, v[0] * p.scale, v[1] * p.scale, v[2] * p.scale, v[3] * p.scale);
    }
    return;
  }
  uint32_t cimg[C90_BN / WARP_SIZE], cpix[C90_BN / WARP_SIZE];
#pragma unroll
  for (uint32_t j = 0; j < C90_BN / WARP_SIZE; ++j) {
    const uint32_t col = bn + j * WARP_SIZE + lane;
    cimg[j] = col < ncols ? col / npix : p.n; // p.n: past the last column
    cpix[j] = col % npix;
  }
  for (uint32_t r = warp; r < C90_BM; r += C90_WARPS) {
    if (bm + r >= p.c_out_g) break;
    const uint32_t oc = o0 + bm + r;
    const float b = bias != nullptr ? operand_f32(bias[oc]) : 0.0f;
#pragma unroll
    for (uint32_t j = 0; j < C90_BN / WARP_SIZE; ++j) {
      const uint32_t img = cimg[j];
      if (img >= p.n) continue;
      const uint64_t ch = (uint64_t)oc * npix + cpix[j];
      const uint64_t idx = (uint64_t)img * p.c_out * npix + ch;
      float v = tile[r * C90_EPI_LD + j * WARP_SIZE + lane] + b;
      if (temb != nullptr) v += operand_f32(temb[(uint64_t)img * p.c_out + oc]);
      if (res != nullptr) v += operand_f32(res[p.res_bcast ? ch : idx]);
      y[(uint64_t)img * p.y_c * npix + ch] = from_f32<OutT>(v * p.scale);
    }
  }
}

// Persistent over column tiles: block x walks tiles x, x + gridDim.x, ... of its row tile, so its
// W slice (256 rows x K) is fetched from DRAM once per block rather than once per tile (the
// launcher sizes gridDim.x to fill the SMs once).
template <typename OutT> __device__ __forceinline__ void conv2d_sm90(const Conv2dParams& p) {
  const uint32_t ntiles = ceil_div(p.n * p.h_out * p.w_out, C90_BN);
  const uint32_t ktiles = ceil_div(p.k, C90_BK);
  for (uint32_t t = blockIdx.x; t < ntiles; t += gridDim.x) {
    conv2d_sm90_tile<OutT>(p, t * C90_BN, 0, ktiles, nullptr, 0);
    __syncthreads(); // the epilogue's shared reads before the next tile's prologue writes
  }
}

extern "C" __global__ void __launch_bounds__(C90_THREADS, 1) conv2d_sm90_v1_bf16(const Conv2dParams p) {
  conv2d_sm90<__nv_bfloat16>(p);
}
// bf16 operands, f32 y (as conv2d_v2_f32).
extern "C" __global__ void __launch_bounds__(C90_THREADS, 1) conv2d_sm90_v1_f32(const Conv2dParams p) {
  conv2d_sm90<float>(p);
}


// ------------------------------------------------------------------------------------------------
// Split-K for under-filled grids (conv2d_sm90_splitk_v1_*, then conv2d_sm90_reduce_v1_*)
// ------------------------------------------------------------------------------------------------
// The column tiles of a row tile are units of work: tiles 0 .. full_tiles - 1 whole (the fused
// epilogue, as conv2d_sm90_v1_*), each later tile t as `splits` units of kt_split k tiles (the last
// split the rest), unit v = (t - full_tiles) * splits + s; block x walks units x, x + gridDim.x, ..
// (full_tiles is a multiple of gridDim.x: every walker takes the same whole tiles first). A split
// unit writes its raw f32 partial tile to ws[s][o][c - full_tiles * 128] (rows of ws_ld = (tiles -
// full_tiles) * 128 floats, o the output channel over all groups); the reduce pass sums the splits
// in the order 0, 1, .. (deterministic: no atomics) and applies the epilogue of conv2d_sm90_tile
// (scale * (acc + (bias + temb) + residual), y channel slices, broadcast residual) to the columns
// from full_tiles * 128 on.
struct C90SplitParams {
  Conv2dParams p;
  float* ws;           // (splits, C_out, ws_ld) f32
  uint32_t splits;     // >= 1
  uint32_t full_tiles; // column tiles computed whole
  uint32_t kt_split;   // k tiles per split
  uint32_t ws_ld;      // (ceil(N * Ho * Wo / 128) - full_tiles) * 128
};

template <typename OutT> __device__ __forceinline__ void conv2d_sm90_split(const C90SplitParams& q) {
  const Conv2dParams& p = q.p;
  const uint32_t ntiles = ceil_div(p.n * p.h_out * p.w_out, C90_BN), ktiles = ceil_div(p.k, C90_BK);
  const uint32_t full = min(q.full_tiles, ntiles);
  const uint32_t units = full + (ntiles - full) * q.splits;
  for (uint32_t u = blockIdx.x; u < units; u += gridDim.x) {
    if (u < full) {
      conv2d_sm90_tile<OutT>(p, u * C90_BN, 0, ktiles, nullptr, 0);
    } else {
      const uint32_t v = u - full, t = v / q.splits, s = v % q.splits;
      const uint32_t kt0 = min(ktiles, s * q.kt_split);
      const uint32_t kt1 = s + 1 == q.splits ? ktiles : min(ktiles, kt0 + q.kt_split);
      const uint64_t row = (uint64_t)s * p.c_out + blockIdx.z * p.c_out_g + blockIdx.y * C90_BM;
      conv2d_sm90_tile<OutT>(p, (full + t) * C90_BN, kt0, kt1, q.ws + row * q.ws_ld + (uint64_t)t * C90_BN, q.ws_ld);
    }
    __syncthreads(); // the epilogue's shared reads before the next unit's prologue writes
  }
}

// Launch rule (kernels/src/conv2d_sm90.rs reduce_launch_config): grid-stride over C_out x the
// split columns / 4 (4 consecutive columns of one image per thread when Ho * Wo % 4 == 0 and y /
// residual aligned, else single columns), block 256.
template <typename OutT> __device__ __forceinline__ void conv2d_sm90_reduce(const C90SplitParams& q) {
  const Conv2dParams& p = q.p;
  const uint32_t npix = p.h_out * p.w_out, ncols = p.n * npix;
  const uint32_t c0 = q.full_tiles * C90_BN;
  if (c0 >= ncols) return;
  const uint32_t cols = ncols - c0;
  const bool vec4 = npix % 4 == 0 && (uint64_t)p.y % 16 == 0 && (uint64_t)p.residual % 8 == 0;
  const uint32_t per = vec4 ? 4 : 1, cper = cols / per; // vec4: c0 and ncols multiples of 4
  const uint64_t items = (uint64_t)p.c_out * cper, sstride = (uint64_t)p.c_out * q.ws_ld;
  OutT* y = static_cast<OutT*>(p.y);
  const uint16_t* res = static_cast<const uint16_t*>(p.residual);
  const uint16_t* bias = static_cast<const uint16_t*>(p.bias);
  const uint16_t* temb = static_cast<const uint16_t*>(p.temb);
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < items; i += (uint64_t)gridDim.x * blockDim.x) {
    const uint32_t o = (uint32_t)(i / cper), cc = (uint32_t)(i % cper) * per, col = c0 + cc;
    const uint32_t img = col / npix, pix = col % npix;
    const float* src = q.ws + (uint64_t)o * q.ws_ld + cc;
    const uint64_t ch = (uint64_t)o * npix + pix;
    const uint64_t ridx = p.res_bcast ? ch : (uint64_t)img * p.c_out * npix + ch;
    OutT* yo = y + (uint64_t)img * p.y_c * npix + ch;
    if (vec4) {
      float4 a = *reinterpret_cast<const float4*>(src);
      for (uint32_t s = 1; s < q.splits; ++s) {
        const float4 b = *reinterpret_cast<const float4*>(src + s * sstride);
        a.x += b.x;
        a.y += b.y;
        a.z += b.z;
        a.w += b.w;
      }
      // conv2d_sm90_tile's 4-column order: (acc + (bias + temb)) + residual
      const float add = (bias != nullptr ? operand_f32(bias[o]) : 0.0f) +
                        (temb != nullptr ? operand_f32(temb[(uint64_t)img * p.c_out + o]) : 0.0f);
      const uint2 rv = c90_ld_u16x4_if(res + (res != nullptr ? ridx : 0), res != nullptr);
      const float v[4] = {a.x + add + bf16_bits_to_f32(rv.x & 0xffffu), a.y + add + bf16_bits_to_f32(rv.x >> 16),
                          a.z + add + bf16_bits_to_f32(rv.y & 0xffffu), a.w + add + bf16_bits_to_f32(rv.y >> 16)};
      c90_store4(yo, v[0] * p.scale, v[1] * p.scale, v[2] * p.scale, v[3] * p.scale);
    } else {
      // conv2d_sm90_tile's single-column order: ((acc + bias) + temb) + residual
      float v = src[0];
      for (uint32_t s = 1; s < q.splits; ++s) v += src[s * sstride];
      if (bias != nullptr) v += operand_f32(bias[o]);
      if (temb != nullptr) v += operand_f32(temb[(uint64_t)img * p.c_out + o]);
      if (res != nullptr) v += operand_f32(res[ridx]);
      *yo = from_f32<OutT>(v * p.scale);
    }
  }
}

extern "C" __global__ void __launch_bounds__(C90_THREADS, 1) conv2d_sm90_splitk_v1_bf16(const C90SplitParams q) {
  conv2d_sm90_split<__nv_bfloat16>(q);
}
extern "C" __global__ void __launch_bounds__(C90_THREADS, 1) conv2d_sm90_splitk_v1_f32(const C90SplitParams q) {
  conv2d_sm90_split<float>(q);
}
extern "C" __global__ void __launch_bounds__(256) conv2d_sm90_reduce_v1_bf16(const C90SplitParams q) {
  conv2d_sm90_reduce<__nv_bfloat16>(q);
}
extern "C" __global__ void __launch_bounds__(256) conv2d_sm90_reduce_v1_f32(const C90SplitParams q) {
  conv2d_sm90_reduce<float>(q);
}
