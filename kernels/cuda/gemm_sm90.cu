// arch: sm_90a only
// ------------------------------------------------------------------------------------------------
// gemm_sm90.cu: Hopper (sm_90a) bf16 GEMM for `linear` (B (N, K), nn.Linear weight layout) with the
// fused epilogue of gemm.cu's v2 entries:
//   C[b, m, n] = scale * (A[b, m, :] . B[b, n, :] + bias[n] + R[b, m, n])
//   GEGLU (B (2N, K)): C = scale * ((A.B[n] + bias[n]) * gelu(A.B[N + n] + bias[N + n]) + R)
// bf16 A, B, bias, R, C; f32 accumulation (wgmma), epilogue in f32, one bf16 rounding.
//
// Design (one entry, linear_sm90_v1_bf16, 384 threads = 3 warpgroups, 1 CTA per SM):
//   * persistent CTAs (grid and raster group sized on the host by gemm.rs `gemm_sm90::schedule`:
//     as the v2 GEMM's) walk the output tiles t = blockIdx.x, + gridDim.x, .. of gemm_tiles.cuh's
//     rastered order (groups of `p.raster` tile rows sweep the tile columns); `raster` divides the
//     grid, so a CTA stays on one tile row of each group and its consecutive tiles reuse one A
//     panel, and the group's A panels fit in a quarter of the L2;
//   * CTA tile 128 x 256 x 64 (GEGLU: 128 x 128 outputs, value and gate B rows in the two halves of
//     the B tile), or 128 x 160 / 128 x 128 (p.tile_n, non-GEGLU: the host's cost rule
//     gemm_sm90::tile_n narrows the tile of a launch whose 256-wide grid leaves SMs idle, e.g.
//     2048 x 1280 on 132 SMs: 80 tiles of 256 -> 128 of 160); a 4-stage ring of A (128 x 64) + B
//     (up to 256 x 64) bf16 tiles = 48 KiB a stage,
//     loaded by TMA (3D tensor maps (K, rows, batch) encoded on the host, passed as
//     __grid_constant__ params) in the 128B-swizzle pattern the wgmma descriptors read (each 128-
//     byte row of 64 k is its own swizzle row: bank-conflict free), zero fill for every tail;
//   * warpgroup 0 = producer: setmaxnreg.dec to 40, one elected thread waits for a stage's
//     `empty` mbarrier, announces the stage's bytes on its `full` mbarrier (arrive.expect_tx) and
//     issues the two (GEGLU: three) TMA loads;
//   * warpgroups 1, 2 = consumers (rows 0-63, 64-127 of the tile): setmaxnreg.inc to 232, wait for
//     `full`, four wgmma m64n{256,160,128}k16 per stage (descriptor advanced 32 bytes per k16 inside the
//     128B atom), commit, wgmma.wait_group 1 (one stage of wgmmas in flight), then release the
//     previous stage (one arrive per consumer warp on `empty`, count 8);
//   * epilogue per consumer warp (16 rows x tile_n columns of tile_n / 2 f32 accumulators per thread): slabs
//     of 32 columns staged in the warp's own shared buffer (16 x 40 f32, float2 writes of the
//     fragment, two float4 reads per 8-column chunk in lane-dependent order: conflict-free, as
//     gemm_tiles.cuh's warp_staged_epilogue with W = 32, CH = 8), then bias (16-byte loads),
//     residual (16-byte loads), scale and 16-byte bf16 stores; the producer meanwhile fills the
//     ring for the CTA's next tile (the epilogue buffers are outside the ring). On interior tiles
//     (decided once per tile) all bias / residual loads of a slab are issued before their first
//     use, with no per-chunk branches (store_slab_interior; GEGLU: the slab's biases likewise),
//     so a warp waits on memory once per slab rather than once per chunk and operand.
// Shared memory: 4 x 48 KiB ring + 8 x 2560 B epilogue + 8 mbarriers + 1 KiB alignment slack =
// 218176 B (of 227 KiB). Registers: 2 x 128 x 232 + 128 x 40 = 64512 of 64 K.
// The launcher (engine/src/backends/cuda/gemm_sm90.rs) takes this entry for linear on sm_90a when
// A, B are 16-byte aligned with row / batch strides multiples of 8 elements and K > 0 (TMA's
// rules); everything else (matmul, f32) stays on gemm.cu.
// ------------------------------------------------------------------------------------------------

#include "common.cuh"
#include "gemm_tiles.cuh"
#include "mma.cuh"
#include "sm90.cuh"

namespace {

// BN_MAX: the widest CTA tile (the ring's B slot; narrower tiles use its first tile_n rows)
constexpr uint32_t BM = 128, BN_MAX = 256, BK = 64, STAGES = 4;
constexpr uint32_t A_BYTES = BM * BK * 2, B_BYTES = BN_MAX * BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;
constexpr uint32_t CONSUMER_WARPS = 8, THREADS = 384;
constexpr uint32_t EPI_W = 32, EPI_LD = EPI_W + 8, EPI_WARP_BYTES = 16 * EPI_LD * 4;
constexpr uint32_t EPI_OFF = STAGES * STAGE_BYTES, BAR_OFF = EPI_OFF + CONSUMER_WARPS * EPI_WARP_BYTES;
constexpr uint32_t SMEM_BYTES = BAR_OFF + 2 * STAGES * 8 + 1024;
static_assert(A_BYTES % 1024 == 0 && STAGE_BYTES % 1024 == 0, "128B swizzle atoms stay 1024-byte aligned");
static_assert(SMEM_BYTES == 218176, "kernels/src/gemm_sm90.rs SMEM_BYTES");

} // namespace

using hopper::TmaDesc;

// Mirrored by kernels/src/gemm_sm90.rs `GemmSm90Params` (384 bytes).
struct __align__(64) GemmSm90Params {
  TmaDesc tma_a;        // A: dims (K, M, frames, batch / frames | 1), box (64, 128, 1, 1), bf16, 128B swizzle
  TmaDesc tma_b;        // B: dims (K, N | 2N, batch | 1), box (64, tile_n | GEGLU 128, 1)
  const void* bias;     // (N | 2N) bf16, or null
  const void* residual; // (batch, M, ldr) bf16, or null (may alias c)
  void* c;              // (batch, M, ldc) bf16
  uint64_t stride_r, stride_c;
  uint32_t m, n, k, ldr, ldc;
  float scale;
  uint32_t geglu;
  uint32_t batch;
  uint32_t a_batched, b_batched; // 1: the map's dim 2 is the batch, 0: one A / B for all
  uint32_t tiles_m, tiles_n;     // ceil(M / 128), ceil(N / (tile_n | GEGLU 128))
  uint32_t raster;               // tile rows per raster group (a divisor of gridDim.x where it can)
  uint32_t tile_n;               // CTA tile columns without GEGLU: 256, 160 or 128 (GEGLU: 256)
  uint32_t frames;               // A map's frames per batch item: batch g reads (frame g % frames, item g / frames)
  uint32_t planes;               // 1: C, R are planes (images, channels, plane_hw) (epilogue_planes)
  uint32_t plane_hw;             // planes: H·W of one plane
  uint32_t pad[5];
};
static_assert(sizeof(GemmSm90Params) == 384, "kernels/src/gemm_sm90.rs");

// ------------------------------------------------------------------------------------------------
// sm_90a PTX wrappers
// ------------------------------------------------------------------------------------------------

using hopper::mbar_arrive;
using hopper::mbar_arrive_expect_tx;
using hopper::mbar_init;
using hopper::mbar_wait;
using hopper::tma_load_3d;
using hopper::tma_load_4d;
using hopper::wgmma_wait_acc;

// K-major, 128B-swizzled operand descriptor: rows of 128 bytes (64 bf16 of k), 8-row groups 1024
// bytes apart (SBO), leading offset unused for this mode (1), swizzle mode 1 (128B).
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr) {
  return wgmma_desc(addr, 16, 1024);
}

// d (64 x N f32: this warpgroup's fragment, element i of a lane at row 16 (warp % 4) + lane / 4 + 8 ((i / 2) % 2),
// column 8 (i / 4) + 2 (lane % 4) + i % 2) = (accumulate ? d : 0) + A . B^T: A 64 x 16 and B N x 16 bf16 from
// shared-memory descriptors (K-major, 128B swizzle); N = 256, 160, 128 (d of N / 2 f32).
#define G90_WGMMA(N, R, D, DA, DB, ACC)                                                                         \
  __device__ __forceinline__ void wgmma_m64k16(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b,            \
                                               uint32_t accumulate) {                                         \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " ACC ", 0;\n"                                              \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.bf16.bf16 {" R "}, " DA ", " DB ", p, 1, 1, 0, 0;\n}\n" \
                 : D                                                                                          \
                 : "l"(desc_a), "l"(desc_b), "r"(accumulate));                                                \
  }
G90_WGMMA(256, WG_R128, WG_D128, "%128", "%129", "%130")
G90_WGMMA(160, WG_R80, WG_D80, "%80", "%81", "%82")
G90_WGMMA(128, WG_R64, WG_D64, "%64", "%65", "%66")
#undef G90_WGMMA

// ------------------------------------------------------------------------------------------------
// tile scheduler
// ------------------------------------------------------------------------------------------------

struct Tile {
  uint32_t batch, m0, n0; // n0: first output column
};

// Tile t of gemm_tiles.cuh's rastered order: batch-major; inside a batch, groups of p.raster tile
// rows walk the tile columns column by column.
__device__ __forceinline__ Tile tile_of(const GemmSm90Params& p, uint32_t t, uint32_t bn_out) {
  const RasterTile r = raster_tile(t, p.tiles_m, p.tiles_n, p.raster);
  return Tile{r.batch, r.row * BM, r.col * bn_out};
}

// ------------------------------------------------------------------------------------------------
// epilogue
// ------------------------------------------------------------------------------------------------

// 8 bf16 (bits) at p as f32: `valid` leading elements, the rest 0; one 16-byte load when whole and
// aligned.
__device__ __forceinline__ void load_bf16x8(const uint16_t* p, uint32_t valid, float (&v)[8]) {
  if (valid == 8 && (reinterpret_cast<uint64_t>(p) % 16) == 0) {
    const uint4 x = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (uint32_t e = 0; e < 4; ++e) {
      v[2 * e] = __uint_as_float(w[e] << 16);
      v[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
    }
  } else {
#pragma unroll
    for (uint32_t e = 0; e < 8; ++e) v[e] = e < valid ? bf16_bits_to_f32(p[e]) : 0.0f;
  }
}

// Output chunk (row, col0..col0 + 7): v (+ bias unless GEGLU added it) + residual, times scale,
// bf16; one 16-byte store when the chunk is whole and aligned.
__device__ __forceinline__ void store_chunk(const GemmSm90Params& p, __nv_bfloat16* c, const uint16_t* res,
                                            uint32_t row, uint32_t col0, float (&v)[8], bool biased) {
  if (row >= p.m || col0 >= p.n) return;
  const uint32_t valid = min(p.n - col0, 8u);
  float t[8];
  if (!biased && p.bias != nullptr) {
    load_bf16x8(static_cast<const uint16_t*>(p.bias) + col0, valid, t);
#pragma unroll
    for (uint32_t e = 0; e < 8; ++e) v[e] += t[e];
  }
  if (res != nullptr) {
    load_bf16x8(res + (uint64_t)row * p.ldr + col0, valid, t);
#pragma unroll
    for (uint32_t e = 0; e < 8; ++e) v[e] += t[e];
  }
  __nv_bfloat16* out = c + (uint64_t)row * p.ldc + col0;
  if (valid == 8 && (reinterpret_cast<uint64_t>(out) % 16) == 0) {
    uint4 x;
    x.x = pack_bf16x2(v[0] * p.scale, v[1] * p.scale);
    x.y = pack_bf16x2(v[2] * p.scale, v[3] * p.scale);
    x.z = pack_bf16x2(v[4] * p.scale, v[5] * p.scale);
    x.w = pack_bf16x2(v[6] * p.scale, v[7] * p.scale);
    *reinterpret_cast<uint4*>(out) = x;
    return;
  }
#pragma unroll
  for (uint32_t e = 0; e < 8; ++e)
    if (e < valid) out[e] = from_f32<__nv_bfloat16>(v[e] * p.scale);
}

// One slab's output chunks of this lane on an interior tile (every row and column in bounds, every
// row / pointer 16-byte aligned): all bias and residual loads of the slab are issued before the
// first use (one memory round trip per slab, not one per chunk and operand), then the staged
// accumulators are read, summed, scaled and stored with 16-byte accesses, no per-chunk branches.
// Row r, columns cc..cc+7 of the staged slab, in column order: the two float4 halves were staged
// swapped on odd `order` (lanes alternate halves so the staging stores do not conflict).
__device__ __forceinline__ void read_staged8(const float* buf, uint32_t r, uint32_t cc, uint32_t order,
                                             float (&v)[8]) {
  const float* src = &buf[r * EPI_LD + cc];
  const float4 x0 = *reinterpret_cast<const float4*>(src + 4 * order);
  const float4 x1 = *reinterpret_cast<const float4*>(src + 4 * (order ^ 1u));
  const float4 lo = order ? x1 : x0, hi = order ? x0 : x1;
  v[0] = lo.x; v[1] = lo.y; v[2] = lo.z; v[3] = lo.w;
  v[4] = hi.x; v[5] = hi.y; v[6] = hi.z; v[7] = hi.w;
}

template <bool HAS_BIAS, bool HAS_RES>
__device__ __forceinline__ void store_slab_interior(const GemmSm90Params& p, __nv_bfloat16* c, const uint16_t* res,
                                                   uint32_t row0, uint32_t col_base, const float* buf,
                                                   uint32_t lane, uint32_t order) {
  constexpr uint32_t IT = 16 * EPI_W / 8 / WARP_SIZE;
  uint4 bx[IT] = {}, rx[IT] = {};
#pragma unroll
  for (uint32_t it = 0; it < IT; ++it) {
    const uint32_t idx = lane + it * WARP_SIZE;
    const uint32_t r = idx / (EPI_W / 8), col0 = col_base + (idx % (EPI_W / 8)) * 8;
    if constexpr (HAS_BIAS) bx[it] = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p.bias) + col0);
    if constexpr (HAS_RES) rx[it] = *reinterpret_cast<const uint4*>(res + (uint64_t)(row0 + r) * p.ldr + col0);
  }
#pragma unroll
  for (uint32_t it = 0; it < IT; ++it) {
    const uint32_t idx = lane + it * WARP_SIZE;
    const uint32_t r = idx / (EPI_W / 8), cc = (idx % (EPI_W / 8)) * 8;
    float v[8];
    read_staged8(buf, r, cc, order, v);
    const uint32_t bw[4] = {bx[it].x, bx[it].y, bx[it].z, bx[it].w};
    const uint32_t rw[4] = {rx[it].x, rx[it].y, rx[it].z, rx[it].w};
#pragma unroll
    for (uint32_t e = 0; e < 4; ++e) {
      if constexpr (HAS_BIAS) {
        v[2 * e] += __uint_as_float(bw[e] << 16);
        v[2 * e + 1] += __uint_as_float(bw[e] & 0xffff0000u);
      }
      if constexpr (HAS_RES) {
        v[2 * e] += __uint_as_float(rw[e] << 16);
        v[2 * e + 1] += __uint_as_float(rw[e] & 0xffff0000u);
      }
    }
    // one 16-byte store (nvcc splits a plain uint4 store here into four 4-byte ones)
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(c + (uint64_t)(row0 + r) * p.ldc + col_base + cc),
                 "r"(pack_bf16x2(v[0] * p.scale, v[1] * p.scale)), "r"(pack_bf16x2(v[2] * p.scale, v[3] * p.scale)),
                 "r"(pack_bf16x2(v[4] * p.scale, v[5] * p.scale)), "r"(pack_bf16x2(v[6] * p.scale, v[7] * p.scale))
                 : "memory");
  }
}

// This warp's 16 rows (row0..) of a BN-column tile: slabs of 32 output columns from n0 through the warp's
// staging buffer `buf` (16 x EPI_LD f32), GEGLU from the value (columns < 128) and gate (>= 128)
// accumulators of the same thread.
template <bool GEGLU, uint32_t BN>
__device__ __forceinline__ void epilogue(const GemmSm90Params& p, const Tile& t, uint32_t row0, float* buf,
                                         uint32_t lane, bool interior, const float (&acc)[BN / 2]) {
  __nv_bfloat16* c = static_cast<__nv_bfloat16*>(p.c) + t.batch * p.stride_c;
  const uint16_t* res =
      p.residual ? static_cast<const uint16_t*>(p.residual) + t.batch * p.stride_r : nullptr;
  const uint16_t* bias = static_cast<const uint16_t*>(p.bias);
  constexpr uint32_t SLABS = (GEGLU ? BN / 2 : BN) / EPI_W;
  const uint32_t order = (lane >> 2) & 1u; // which float4 half first (conflict-free reads)
#pragma unroll
  for (uint32_t s = 0; s < SLABS; ++s) {
    // GEGLU: the slab's value / gate biases of this lane's columns, loaded before their first use
    // (unguarded on interior tiles: one round trip per slab)
    float gbias[EPI_W / 8][2][2] = {};
    if constexpr (GEGLU) {
      if (bias != nullptr) {
        if (interior) {
#pragma unroll
          for (uint32_t jj = 0; jj < EPI_W / 8; ++jj)
#pragma unroll
            for (uint32_t e = 0; e < 2; ++e) {
              const uint32_t col = t.n0 + 8 * (s * (EPI_W / 8) + jj) + 2 * (lane % 4) + e;
              gbias[jj][0][e] = bf16_bits_to_f32(bias[col]);
              gbias[jj][1][e] = bf16_bits_to_f32(bias[p.n + col]);
            }
        } else {
#pragma unroll
          for (uint32_t jj = 0; jj < EPI_W / 8; ++jj)
#pragma unroll
            for (uint32_t e = 0; e < 2; ++e) {
              const uint32_t col = t.n0 + 8 * (s * (EPI_W / 8) + jj) + 2 * (lane % 4) + e;
              if (col < p.n) {
                gbias[jj][0][e] = bf16_bits_to_f32(bias[col]);
                gbias[jj][1][e] = bf16_bits_to_f32(bias[p.n + col]);
              }
            }
        }
      }
    }
#pragma unroll
    for (uint32_t jj = 0; jj < EPI_W / 8; ++jj) {
      const uint32_t j = s * (EPI_W / 8) + jj; // 8-column accumulator group
      const float* bv = gbias[jj][0];
      const float* bg = gbias[jj][1];
#pragma unroll
      for (uint32_t h = 0; h < 2; ++h) {
        float v[2];
#pragma unroll
        for (uint32_t e = 0; e < 2; ++e) {
          v[e] = acc[4 * j + 2 * h + e];
          if constexpr (GEGLU) v[e] = (v[e] + bv[e]) * gelu_erf(acc[4 * (j + BN / 16) + 2 * h + e] + bg[e]);
        }
        const uint32_t row = lane / 4 + 8 * h, col = 8 * jj + 2 * (lane % 4);
        *reinterpret_cast<float2*>(&buf[row * EPI_LD + col]) = make_float2(v[0], v[1]);
      }
    }
    __syncwarp();
    const uint32_t col_base = t.n0 + s * EPI_W;
    if (interior) {
      const bool has_bias = !GEGLU && bias != nullptr;
      if (has_bias && res != nullptr)
        store_slab_interior<true, true>(p, c, res, row0, col_base, buf, lane, order);
      else if (has_bias)
        store_slab_interior<true, false>(p, c, res, row0, col_base, buf, lane, order);
      else if (res != nullptr)
        store_slab_interior<false, true>(p, c, res, row0, col_base, buf, lane, order);
      else
        store_slab_interior<false, false>(p, c, res, row0, col_base, buf, lane, order);
      __syncwarp(); // reads done before the next slab overwrites the buffer
      continue;
    }
#pragma unroll
    for (uint32_t it = 0; it < 16 * EPI_W / 8 / WARP_SIZE; ++it) {
      const uint32_t idx = lane + it * WARP_SIZE;
      const uint32_t r = idx / (EPI_W / 8), cc = (idx % (EPI_W / 8)) * 8;
      float v[8];
      read_staged8(buf, r, cc, order, v);
      store_chunk(p, c, res, row0 + r, t.n0 + s * EPI_W + cc, v, GEGLU);
    }
    __syncwarp(); // reads done before the next slab overwrites the buffer
  }
}

// Planes epilogue (p.planes, no GEGLU): token row m of batch g is pixel m % plane_hw of image
// g + m / plane_hw (f = 1: one batch, the rows run over the images; f > 1: batch g = (item, frame), the A
// map hands the CTA rows of that frame), column n its channel: C[img][n][hw] = scale * (acc + bias[n] +
// R[img][n][hw]) with images stride_c / stride_r elements apart, channels plane_hw apart.
// Slabs of 16 columns are staged transposed (column-major, PL_LD = 24 f32 a column, the 4-row
// groups of column c swizzled by (c >> 1) & 2): the fragment's f32 writes and the two float4 reads
// of 8 rows a lane (lane pairs: one column's 16 rows, read in lane-dependent order) are
// conflict-free. Each lane then adds bias and residual and stores its 8 rows of one channel plane:
// 16 bytes, a lane pair one 32-byte sector, a warp 16 whole sectors a request.
constexpr uint32_t PL_W = 16, PL_LD = 24;
static_assert(PL_W * PL_LD <= 16 * EPI_LD, "the planes slab fits the warp's staging buffer");

__device__ __forceinline__ uint32_t planes_slot(uint32_t row, uint32_t col) {
  return col * PL_LD + (((row / 4) ^ ((col >> 1) & 2u)) * 4) + row % 4;
}

// One slab's 16 columns: the fragment's f32 written transposed, then this lane's 8 rows of its column (lane / 2)
// read back in row order.
template <uint32_t BN>
__device__ __forceinline__ void stage_planes_slab(float* buf, uint32_t lane, uint32_t s, const float (&acc)[BN / 2],
                                                  float (&v)[8]) {
#pragma unroll
  for (uint32_t jj = 0; jj < PL_W / 8; ++jj)
#pragma unroll
    for (uint32_t h = 0; h < 2; ++h)
#pragma unroll
      for (uint32_t e = 0; e < 2; ++e)
        buf[planes_slot(lane / 4 + 8 * h, 8 * jj + 2 * (lane % 4) + e)] = acc[4 * (s * (PL_W / 8) + jj) + 2 * h + e];
  __syncwarp();
  const uint32_t cl = lane / 2, half = lane % 2;
#pragma unroll
  for (uint32_t q = 0; q < 2; ++q) {
    const uint32_t qq = q ^ half; // lane pairs read their halves in opposite order: conflict-free
    const float4 x = *reinterpret_cast<const float4*>(&buf[planes_slot(8 * half + 4 * qq, cl)]);
    v[4 * qq] = x.x; v[4 * qq + 1] = x.y; v[4 * qq + 2] = x.z; v[4 * qq + 3] = x.w;
  }
  __syncwarp(); // reads done before the next slab overwrites the buffer
}

// Slabs whose bias and residual loads an interior tile issues together, before the first use (one
// memory round trip per group): 4 on the 256-wide tile (its 128 accumulators leave room for 4
// slabs' 16-byte residual chunks), every slab on the narrower ones.
template <uint32_t BN> __device__ constexpr uint32_t planes_group() { return BN == BN_MAX ? 4 : BN / PL_W; }

template <uint32_t BN>
__device__ __forceinline__ void epilogue_planes(const GemmSm90Params& p, const Tile& t, uint32_t row0, float* buf,
                                                uint32_t lane, bool interior, const float (&acc)[BN / 2]) {
  constexpr uint32_t SLABS = BN / PL_W, G = planes_group<BN>();
  static_assert(SLABS % G == 0, "whole groups of slabs");
  __nv_bfloat16* c = static_cast<__nv_bfloat16*>(p.c);
  const uint16_t* res = static_cast<const uint16_t*>(p.residual);
  const uint16_t* bias = static_cast<const uint16_t*>(p.bias);
  const uint32_t cl = lane / 2, m = row0 + 8 * (lane % 2);
  // interior: the lane's 8 rows lie in one image (plane_hw % 8 == 0)
  const uint32_t img = t.batch + m / p.plane_hw, hw = m % p.plane_hw;
  const uint64_t res0 = (uint64_t)img * p.stride_r + hw, out0 = (uint64_t)img * p.stride_c + hw;
#pragma unroll
  for (uint32_t g0 = 0; g0 < SLABS; g0 += G) {
    uint4 rx[G] = {};
    uint32_t bx[G] = {};
    if (interior) {
#pragma unroll
      for (uint32_t i = 0; i < G; ++i) {
        const uint32_t col = t.n0 + (g0 + i) * PL_W + cl;
        if (bias != nullptr) bx[i] = bias[col];
        if (res != nullptr) rx[i] = *reinterpret_cast<const uint4*>(res + res0 + (uint64_t)col * p.plane_hw);
      }
    }
#pragma unroll
    for (uint32_t i = 0; i < G; ++i) {
      float v[8];
      stage_planes_slab<BN>(buf, lane, g0 + i, acc, v);
      const uint32_t col = t.n0 + (g0 + i) * PL_W + cl;
      if (interior) {
        const float b = __uint_as_float(bx[i] << 16);
        const uint32_t rw[4] = {rx[i].x, rx[i].y, rx[i].z, rx[i].w};
#pragma unroll
        for (uint32_t e = 0; e < 4; ++e) {
          v[2 * e] = (v[2 * e] + b + __uint_as_float(rw[e] << 16)) * p.scale;
          v[2 * e + 1] = (v[2 * e + 1] + b + __uint_as_float(rw[e] & 0xffff0000u)) * p.scale;
        }
        asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(c + out0 + (uint64_t)col * p.plane_hw),
                     "r"(pack_bf16x2(v[0], v[1])), "r"(pack_bf16x2(v[2], v[3])), "r"(pack_bf16x2(v[4], v[5])),
                     "r"(pack_bf16x2(v[6], v[7]))
                     : "memory");
        continue;
      }
      if (col >= p.n) continue;
      const float b = bias != nullptr ? bf16_bits_to_f32(bias[col]) : 0.0f;
#pragma unroll
      for (uint32_t e = 0; e < 8; ++e) {
        if (m + e >= p.m) break;
        const uint32_t ie = t.batch + (m + e) / p.plane_hw, se = (m + e) % p.plane_hw;
        float x = v[e] + b;
        if (res != nullptr) x += bf16_bits_to_f32(res[(uint64_t)ie * p.stride_r + (uint64_t)col * p.plane_hw + se]);
        c[(uint64_t)ie * p.stride_c + (uint64_t)col * p.plane_hw + se] = from_f32<__nv_bfloat16>(x * p.scale);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// kernel
// ------------------------------------------------------------------------------------------------

// BN: the CTA tile's B rows (GEGLU: 256, value and gate halves; else p.tile_n).
template <bool GEGLU, uint32_t BN> __device__ __forceinline__ void gemm_sm90(const GemmSm90Params& p) {
  static_assert(BN <= BN_MAX && BN % EPI_W == 0 && (!GEGLU || BN == BN_MAX), "tile widths of gemm_sm90::TILE_NS");
  extern __shared__ __align__(1024) uint8_t smem_raw[];
  const uint32_t raw = smem_u32(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u; // 128B swizzle atoms on 1024-byte boundaries
  const uint32_t full = base + BAR_OFF, empty = full + STAGES * 8;
  const uint32_t warp = threadIdx.x / WARP_SIZE, lane = threadIdx.x % WARP_SIZE, wg = warp / 4;
  constexpr uint32_t BN_OUT = GEGLU ? BN / 2 : BN;
  const uint32_t tiles = p.tiles_m * p.tiles_n * p.batch;
  const uint32_t ktiles = ceil_div(p.k, BK);
  if (threadIdx.x == 0) {
    for (uint32_t s = 0; s < STAGES; ++s) {
      mbar_init(full + 8 * s, 1);
      mbar_init(empty + 8 * s, CONSUMER_WARPS);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    // producer warpgroup: one thread issues every TMA load
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
    if (threadIdx.x != 0) return;
    uint32_t stage = 0, phase = 0;
    for (uint32_t ti = blockIdx.x; ti < tiles; ti += gridDim.x) {
      const Tile t = tile_of(p, ti, BN_OUT);
      const uint32_t ga = p.a_batched ? t.batch : 0;
      const int32_t bb = p.b_batched ? (int32_t)t.batch : 0;
      for (uint32_t kt = 0; kt < ktiles; ++kt) {
        mbar_wait(empty + 8 * stage, phase ^ 1u); // a fresh barrier passes parity 1
        const uint32_t bar = full + 8 * stage, sa = base + stage * STAGE_BYTES, sb = sa + A_BYTES;
        mbar_arrive_expect_tx(bar, A_BYTES + BN * BK * 2);
        const int32_t k0 = (int32_t)(kt * BK);
        tma_load_4d(sa, &p.tma_a, bar, k0, (int32_t)t.m0, (int32_t)(ga % p.frames), (int32_t)(ga / p.frames));
        if constexpr (GEGLU) {
          tma_load_3d(sb, &p.tma_b, bar, k0, (int32_t)t.n0, bb);
          tma_load_3d(sb + B_BYTES / 2, &p.tma_b, bar, k0, (int32_t)(p.n + t.n0), bb);
        } else {
          tma_load_3d(sb, &p.tma_b, bar, k0, (int32_t)t.n0, bb);
        }
        if (++stage == STAGES) stage = 0, phase ^= 1u;
      }
    }
    return;
  }

  // consumer warpgroups 1, 2: rows 64 (wg - 1) .. of the tile
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
  const uint32_t cw = wg - 1;
  float* buf = reinterpret_cast<float*>(smem_raw + (base - raw) + EPI_OFF + (warp - 4) * EPI_WARP_BYTES);
  // every 16-byte chunk of C, R and bias 16-byte aligned: interior tiles take the branch-free
  // epilogue (store_slab_interior)
  const auto a16 = [](const void* q) { return (reinterpret_cast<uint64_t>(q) % 16) == 0; };
  const bool aligned = a16(p.c) && p.ldc % 8 == 0 && p.stride_c % 8 == 0 &&
                       (p.residual == nullptr || (a16(p.residual) && p.ldr % 8 == 0 && p.stride_r % 8 == 0)) &&
                       (GEGLU || p.bias == nullptr || a16(p.bias));
  // planes: whole 8-row runs of one plane, 16-byte aligned (every image and channel plane too)
  const bool planes_aligned = a16(p.c) && (p.residual == nullptr || a16(p.residual)) && p.plane_hw % 8 == 0 &&
                              p.stride_c % 8 == 0 && p.stride_r % 8 == 0;
  float acc[BN / 2];
#pragma unroll
  for (uint32_t i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
  uint32_t stage = 0, phase = 0;
  for (uint32_t ti = blockIdx.x; ti < tiles; ti += gridDim.x) {
    const Tile t = tile_of(p, ti, BN_OUT);
    uint32_t prev = 0;
    for (uint32_t kt = 0; kt < ktiles; ++kt) {
      mbar_wait(full + 8 * stage, phase);
      const uint32_t sa = base + stage * STAGE_BYTES + cw * (64 * 128), sb = base + stage * STAGE_BYTES + A_BYTES;
      wgmma_fence();
#pragma unroll
      for (uint32_t kk = 0; kk < BK / 16; ++kk)
        wgmma_m64k16(acc, sw128_desc(sa + 32 * kk), sw128_desc(sb + 32 * kk), kt > 0 || kk > 0);
      wgmma_commit();
      wgmma_wait_acc<1>(acc); // the previous stage's wgmmas are done: release it
      if (kt > 0 && lane == 0) mbar_arrive(empty + 8 * prev);
      prev = stage;
      if (++stage == STAGES) stage = 0, phase ^= 1u;
    }
    wgmma_wait_acc<0>(acc);
    if (lane == 0) mbar_arrive(empty + 8 * prev);
    const uint32_t row0 = t.m0 + 64 * cw + 16 * (warp % 4);
    if constexpr (!GEGLU) {
      if (p.planes) {
        epilogue_planes<BN>(p, t, row0, buf, lane, row0 + 16 <= p.m && t.n0 + BN <= p.n && planes_aligned, acc);
        continue;
      }
    }
    epilogue<GEGLU, BN>(p, t, row0, buf, lane, row0 + 16 <= p.m && t.n0 + BN_OUT <= p.n && aligned, acc);
  }
}

extern "C" __global__ void __launch_bounds__(THREADS, 1) linear_sm90_v1_bf16(const __grid_constant__ GemmSm90Params p) {
  if (p.geglu)
    gemm_sm90<true, BN_MAX>(p);
  else if (p.tile_n == 160)
    gemm_sm90<false, 160>(p);
  else if (p.tile_n == 128)
    gemm_sm90<false, 128>(p);
  else
    gemm_sm90<false, BN_MAX>(p);
}
