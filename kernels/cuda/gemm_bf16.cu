// ------------------------------------------------------------------------------------------------
// gemm_bf16.cu: batched bf16 tensor-core GEMM with fused bias, nn.Linear layout.
//
//   C[b, m, n] = sum_k A[b, m, k] * B[b, n, k] + bias[n]          (C = A * B^T + bias)
//
//   A    : (batch, M, lda) bf16 row-major, K contiguous          (activations)
//   B    : (batch, N, ldb) bf16 row-major, K contiguous          (nn.Linear weight (out, in))
//   bias : (N) bf16, or null
//   C    : (batch, M, ldc) row-major, f32 (gemm_bf16_v1_f32) or bf16 (gemm_bf16_v1_bf16)
//   batch strides in elements; 0 broadcasts an operand (e.g. one weight for every batch).
//   Accumulation in f32 (mma.sync m16n8k16 .f32.bf16.bf16.f32). Any M, N, K >= 0 (ragged edges:
//   loads are predicated with zero fill, stores are guarded).
//
// Versions:
//   v1: block tile 64x64x32, 4 warps (2x2), warp tile 32x32 = 2x4 mma tiles; A and B tiles
//       double-buffered in shared memory through cp.async (commit/wait_group 1) when the operands
//       are 16-byte aligned (`aligned`), else through plain predicated loads; fragments via
//       ldmatrix.x4; guarded epilogue with the bias add.                          <- ships
// Entries: gemm_bf16_v1_f32, gemm_bf16_v1_bf16 (one GemmParams argument; suffix = C dtype).
// ------------------------------------------------------------------------------------------------

#include "common.cuh"

// ------------------------------------------------------------------------------------------------
// geometry
// ------------------------------------------------------------------------------------------------

// Launch rule (kernels/src/gemm_bf16.rs): grid = (ceil(N / GEMM_BN), ceil(M / GEMM_BM), batch),
// block = GEMM_THREADS, static smem only.
enum : uint32_t { GEMM_BM = 64, GEMM_BN = 64, GEMM_BK = 32 };
enum : uint32_t { GEMM_WARPS_M = 2, GEMM_WARPS_N = 2 };
enum : uint32_t { GEMM_THREADS = GEMM_WARPS_M * GEMM_WARPS_N * WARP_SIZE };
enum : uint32_t { GEMM_WM = GEMM_BM / GEMM_WARPS_M, GEMM_WN = GEMM_BN / GEMM_WARPS_N }; // 32 x 32
enum : uint32_t { GEMM_MMA_M = 16, GEMM_MMA_N = 8, GEMM_MMA_K = 16 };
enum : uint32_t { GEMM_TM = GEMM_WM / GEMM_MMA_M, GEMM_TN = GEMM_WN / GEMM_MMA_N };      // 2 x 4
// Shared rows are padded by 8 bf16 (16 bytes): the row stride of 80 bytes makes the 8 row
// addresses of one ldmatrix hit 8 distinct 4-bank groups.
enum : uint32_t { GEMM_LDS = GEMM_BK + 8 };
enum : uint32_t { GEMM_STAGES = 2 };
enum : uint32_t { GEMM_CHUNK = 8 }; // bf16 per 16-byte cp.async
enum : uint32_t { GEMM_CHUNKS_PER_ROW = GEMM_BK / GEMM_CHUNK };
enum : uint32_t { GEMM_A_CHUNKS = GEMM_BM * GEMM_CHUNKS_PER_ROW / GEMM_THREADS }; // per thread: 2
enum : uint32_t { GEMM_B_CHUNKS = GEMM_BN * GEMM_CHUNKS_PER_ROW / GEMM_THREADS }; // per thread: 2

static_assert(GEMM_WM % GEMM_MMA_M == 0 && GEMM_WN % (2 * GEMM_MMA_N) == 0, "warp tile vs mma");
static_assert(GEMM_BK % GEMM_MMA_K == 0, "k tile vs mma");
static_assert(GEMM_BM * GEMM_CHUNKS_PER_ROW % GEMM_THREADS == 0, "A tile loader");
static_assert(GEMM_BN * GEMM_CHUNKS_PER_ROW % GEMM_THREADS == 0, "B tile loader");
static_assert((GEMM_LDS * 2) % 16 == 0, "ldmatrix / cp.async rows must stay 16-byte aligned");

// ------------------------------------------------------------------------------------------------
// params (mirrored by kernels/src/gemm_bf16.rs `GemmParams`, 88 bytes)
// ------------------------------------------------------------------------------------------------

struct GemmParams {
  const void* a;     // (batch, M, lda) bf16
  const void* b;     // (batch, N, ldb) bf16
  const void* bias;  // (N) bf16, or null
  void* c;           // (batch, M, ldc) f32 | bf16
  uint64_t stride_a; // elements between batches of A (0 = broadcast)
  uint64_t stride_b;
  uint64_t stride_c;
  uint32_t m, n, k;
  uint32_t lda, ldb, ldc;
  // 1 when a, b are 16-byte aligned and lda, ldb, stride_a, stride_b are multiples of 8: the
  // cp.async path (a partial chunk at the K edge zero-fills through src-size). 0: plain loads.
  uint32_t aligned;
  uint32_t _pad;
};

// ------------------------------------------------------------------------------------------------
// device helpers (inline PTX)
// ------------------------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; bytes [src_bytes, 16) of the destination are zero-filled.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, uint32_t src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// D = A(16x16, row) * B(16x8, col) + D, bf16 in, f32 accumulate.
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// One 16-byte chunk (8 bf16) of row `row` starting at column `col` of a (rows, ld) operand into
// shared memory at `dst`; rows >= `rows` and columns >= `cols` read as zero.
__device__ __forceinline__ void load_chunk(__nv_bfloat16* dst, const uint16_t* base, uint32_t row,
                                           uint32_t col, uint32_t rows, uint32_t cols, uint32_t ld,
                                           bool aligned) {
  const bool row_ok = row < rows;
  const uint32_t valid = (row_ok && col < cols) ? min(cols - col, (uint32_t)GEMM_CHUNK) : 0u;
  if (aligned) {
    // Out-of-range chunks still name a valid address (the operand base); src-size 0 reads nothing.
    const uint16_t* src = valid > 0 ? base + (uint64_t)row * ld + col : base;
    cp_async_16(smem_u32(dst), src, valid * 2);
  } else {
    uint32_t w[4];
#pragma unroll
    for (uint32_t i = 0; i < 4; ++i) {
      const uint32_t lo = (2 * i < valid) ? base[(uint64_t)row * ld + col + 2 * i] : 0u;
      const uint32_t hi = (2 * i + 1 < valid) ? base[(uint64_t)row * ld + col + 2 * i + 1] : 0u;
      w[i] = lo | (hi << 16);
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

template <typename TC> __device__ __forceinline__ void store_c(TC* c, float v);
template <> __device__ __forceinline__ void store_c<float>(float* c, float v) { *c = v; }
template <> __device__ __forceinline__ void store_c<__nv_bfloat16>(__nv_bfloat16* c, float v) {
  *c = __float2bfloat16_rn(v);
}

// ------------------------------------------------------------------------------------------------
// mainloop
// ------------------------------------------------------------------------------------------------

template <typename TC>
__device__ __forceinline__ void gemm_bf16_v1(const GemmParams& p) {
  __shared__ __align__(16) __nv_bfloat16 sa[GEMM_STAGES][GEMM_BM][GEMM_LDS];
  __shared__ __align__(16) __nv_bfloat16 sb[GEMM_STAGES][GEMM_BN][GEMM_LDS];

  const uint32_t tid = threadIdx.x;
  const uint32_t warp = tid / WARP_SIZE;
  const uint32_t lane = tid % WARP_SIZE;
  const uint32_t wm = warp / GEMM_WARPS_N;
  const uint32_t wn = warp % GEMM_WARPS_N;
  const uint32_t bm = blockIdx.y * GEMM_BM;
  const uint32_t bn = blockIdx.x * GEMM_BN;
  const uint32_t batch = blockIdx.z;
  const bool aligned = p.aligned != 0;

  const uint16_t* a = static_cast<const uint16_t*>(p.a) + batch * p.stride_a;
  const uint16_t* b = static_cast<const uint16_t*>(p.b) + batch * p.stride_b;

  auto load_tile = [&](uint32_t stage, uint32_t k0) {
#pragma unroll
    for (uint32_t i = 0; i < GEMM_A_CHUNKS; ++i) {
      const uint32_t chunk = tid + i * GEMM_THREADS;
      const uint32_t r = chunk / GEMM_CHUNKS_PER_ROW;
      const uint32_t kc = (chunk % GEMM_CHUNKS_PER_ROW) * GEMM_CHUNK;
      load_chunk(&sa[stage][r][kc], a, bm + r, k0 + kc, p.m, p.k, p.lda, aligned);
    }
#pragma unroll
    for (uint32_t i = 0; i < GEMM_B_CHUNKS; ++i) {
      const uint32_t chunk = tid + i * GEMM_THREADS;
      const uint32_t r = chunk / GEMM_CHUNKS_PER_ROW;
      const uint32_t kc = (chunk % GEMM_CHUNKS_PER_ROW) * GEMM_CHUNK;
      load_chunk(&sb[stage][r][kc], b, bn + r, k0 + kc, p.n, p.k, p.ldb, aligned);
    }
  };

  float acc[GEMM_TM][GEMM_TN][4];
#pragma unroll
  for (uint32_t i = 0; i < GEMM_TM; ++i)
#pragma unroll
    for (uint32_t j = 0; j < GEMM_TN; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  const uint32_t ktiles = ceil_div(p.k, GEMM_BK);
  if (ktiles > 0) load_tile(0, 0);
  cp_async_commit();
  for (uint32_t kt = 0; kt < ktiles; ++kt) {
    const uint32_t stage = kt % GEMM_STAGES;
    if (kt + 1 < ktiles) load_tile((kt + 1) % GEMM_STAGES, (kt + 1) * GEMM_BK);
    cp_async_commit();   // possibly empty: keeps "all but the newest group" = tile kt
    cp_async_wait<1>();
    __syncthreads();     // tile kt visible to every warp

#pragma unroll
    for (uint32_t kk = 0; kk < GEMM_BK; kk += GEMM_MMA_K) {
      uint32_t af[GEMM_TM][4];
      uint32_t bf[GEMM_TN][2];
#pragma unroll
      for (uint32_t i = 0; i < GEMM_TM; ++i) {
        // lanes 0-15: rows 0-15 at k 0-7; lanes 16-31: rows 0-15 at k 8-15 -> a0..a3 of mma
        const uint32_t row = wm * GEMM_WM + i * GEMM_MMA_M + (lane % 16);
        const uint32_t col = kk + (lane / 16) * 8;
        ldmatrix_x4(af[i], smem_u32(&sa[stage][row][col]));
      }
#pragma unroll
      for (uint32_t j = 0; j < GEMM_TN; j += 2) {
        // matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
        // -> b0, b1 of n-tile j and b0, b1 of n-tile j+1
        const uint32_t row = wn * GEMM_WN + j * GEMM_MMA_N + (lane % 8) + (lane / 16) * 8;
        const uint32_t col = kk + ((lane / 8) % 2) * 8;
        uint32_t r[4];
        ldmatrix_x4(r, smem_u32(&sb[stage][row][col]));
        bf[j][0] = r[0];
        bf[j][1] = r[1];
        bf[j + 1][0] = r[2];
        bf[j + 1][1] = r[3];
      }
#pragma unroll
      for (uint32_t i = 0; i < GEMM_TM; ++i)
#pragma unroll
        for (uint32_t j = 0; j < GEMM_TN; ++j) mma_bf16_16816(acc[i][j], af[i], bf[j]);
    }
    __syncthreads();     // every warp done with `stage` before it is refilled
  }

  // Epilogue: c0,c1 at (lane/4, 2*(lane%4) + {0,1}), c2,c3 eight rows below.
  TC* c = static_cast<TC*>(p.c) + batch * p.stride_c;
  const uint16_t* bias = static_cast<const uint16_t*>(p.bias);
#pragma unroll
  for (uint32_t j = 0; j < GEMM_TN; ++j) {
    const uint32_t col = bn + wn * GEMM_WN + j * GEMM_MMA_N + (lane % 4) * 2;
    float bias0 = 0.0f, bias1 = 0.0f;
    if (bias != nullptr) {
      if (col < p.n) bias0 = __uint_as_float((uint32_t)bias[col] << 16);
      if (col + 1 < p.n) bias1 = __uint_as_float((uint32_t)bias[col + 1] << 16);
    }
#pragma unroll
    for (uint32_t i = 0; i < GEMM_TM; ++i) {
#pragma unroll
      for (uint32_t h = 0; h < 2; ++h) {
        const uint32_t row = bm + wm * GEMM_WM + i * GEMM_MMA_M + lane / 4 + h * 8;
        if (row >= p.m) continue;
        TC* out = c + (uint64_t)row * p.ldc;
        if (col < p.n) store_c<TC>(out + col, acc[i][j][2 * h] + bias0);
        if (col + 1 < p.n) store_c<TC>(out + col + 1, acc[i][j][2 * h + 1] + bias1);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// entries
// ------------------------------------------------------------------------------------------------

#define GEMM_ENTRY(NAME, TC)                                                                       \
  extern "C" __global__ void __launch_bounds__(GEMM_THREADS) NAME(const GemmParams p) {            \
    gemm_bf16_v1<TC>(p);                                                                           \
  }

GEMM_ENTRY(gemm_bf16_v1_f32, float)
GEMM_ENTRY(gemm_bf16_v1_bf16, __nv_bfloat16)
