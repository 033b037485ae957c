// ------------------------------------------------------------------------------------------------
// mma.cuh: tensor-core building blocks shared by gemm.cu, conv2d.cu and attention.cu.
//   cp.async 16-byte copies with zero fill, ldmatrix (plain and .trans), mma.sync m16n8k16 bf16 with
//   f32 accumulators, a predicated 8-element chunk loader, bf16 packing, GELU (erf).
// Fragment layouts (PTX ISA "mma.m16n8k16"): lane l, g = l / 4, t = l % 4
//   A (16x16, row): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
//   B (16x8, col):  b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g)
//   C (16x8):       c0, c1 (g, 2t..2t+1), c2, c3 (g+8, 2t..2t+1)
// ------------------------------------------------------------------------------------------------
#pragma once

#include "common.cuh"

enum : uint32_t { MMA_M = 16, MMA_N = 8, MMA_K = 16 };
enum : uint32_t { CHUNK = 8 }; // bf16 per 16-byte cp.async

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
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
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

// Two f32 -> one bf16x2 register (lo in bits 0-15), round to nearest even.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t v) { return __uint_as_float((uint32_t)v << 16); }

// An epilogue operand (bias, residual, ...) element as f32: bf16 bits or f32 storage.
__device__ __forceinline__ float operand_f32(uint16_t v) { return bf16_bits_to_f32(v); }
__device__ __forceinline__ float operand_f32(float v) { return v; }

// One 16-byte chunk (8 bf16) of row `row` starting at column `col` of a row-major operand with
// row stride `ld` into shared memory at `dst`. A row with `row_ok` false and columns >= `cols` read
// as zero. `aligned`: base, ld and col are multiples of 8 elements (cp.async path), else predicated
// scalar loads.
__device__ __forceinline__ void load_chunk(__nv_bfloat16* dst, const uint16_t* base, uint64_t row,
                                           bool row_ok, uint32_t col, uint32_t cols, uint64_t ld,
                                           bool aligned) {
  const uint32_t valid = (row_ok && col < cols) ? min(cols - col, (uint32_t)CHUNK) : 0u;
  if (aligned) {
    // Out-of-range chunks still name a valid address (the operand base); src-size 0 reads nothing.
    const uint16_t* src = valid > 0 ? base + row * ld + col : base;
    cp_async_16(smem_u32(dst), src, valid * 2);
  } else {
    uint32_t w[4];
    const uint16_t* src = base + row * ld + col;
#pragma unroll
    for (uint32_t i = 0; i < 4; ++i) {
      const uint32_t lo = (2 * i < valid) ? src[2 * i] : 0u;
      const uint32_t hi = (2 * i + 1 < valid) ? src[2 * i + 1] : 0u;
      w[i] = lo | (hi << 16);
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// This thread's lane and its warp's (row, column) (wm, wn) in a block of warps WARPS_N columns wide.
template <uint32_t WARPS_N>
__device__ __forceinline__ void warp_coords(uint32_t tid, uint32_t& lane, uint32_t& wm, uint32_t& wn) {
  const uint32_t warp = tid / WARP_SIZE;
  lane = tid % WARP_SIZE;
  wm = warp / WARPS_N;
  wn = warp % WARPS_N;
}

// f(i, h, row) for each accumulator row of this lane in a warp tile of TM mma tiles whose first row
// is row0: row = row0 + 16 i + lane / 4 + 8 h holds c0, c1 (h = 0) or c2, c3 (h = 1) of tile i.
template <uint32_t TM, typename F>
__device__ __forceinline__ void for_each_acc_row(uint32_t row0, uint32_t lane, F&& f) {
#pragma unroll
  for (uint32_t i = 0; i < TM; ++i)
#pragma unroll
    for (uint32_t h = 0; h < 2; ++h) f(i, h, row0 + i * MMA_M + lane / 4 + h * 8);
}

// Zero a warp's f32 accumulator tiles (TM x TN mma tiles of 4 values per lane).
template <uint32_t TM, uint32_t TN> __device__ __forceinline__ void zero_acc(float (&acc)[TM][TN][4]) {
#pragma unroll
  for (uint32_t i = 0; i < TM; ++i)
#pragma unroll
    for (uint32_t j = 0; j < TN; ++j)
#pragma unroll
      for (uint32_t e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
}

// A fragments of TM 16x16 tiles at rows a_row0 + 16i.., k kk.. of `sa` ([row][k], padded rows).
template <uint32_t TM, uint32_t LDA>
__device__ __forceinline__ void load_a_frags(const __nv_bfloat16 (*sa)[LDA], uint32_t a_row0, uint32_t kk,
                                             uint32_t lane, uint32_t (&af)[TM][4]) {
#pragma unroll
  for (uint32_t i = 0; i < TM; ++i) {
    // lanes 0-15: rows 0-15 at k 0-7; lanes 16-31: rows 0-15 at k 8-15 -> a0..a3
    const uint32_t row = a_row0 + i * MMA_M + (lane % 16);
    const uint32_t col = kk + (lane / 16) * 8;
    ldmatrix_x4(af[i], smem_u32(&sa[row][col]));
  }
}

// B fragments of TN 16x8 tiles at columns b_col0 + 8j.., k kk.. of `sb`: [n][k] (B_KN false) or
// [k][n] (B_KN true, via ldmatrix.trans), padded rows.
template <bool B_KN, uint32_t TN, uint32_t LDB>
__device__ __forceinline__ void load_b_frags(const __nv_bfloat16 (*sb)[LDB], uint32_t b_col0, uint32_t kk,
                                             uint32_t lane, uint32_t (&bf)[TN][2]) {
#pragma unroll
  for (uint32_t j = 0; j < TN; j += 2) {
    uint32_t r[4];
    if (B_KN) {
      // matrices (k 0-7, n-tile j), (k 8-15, j), (k 0-7, j+1), (k 8-15, j+1), transposed
      const uint32_t krow = kk + (lane % 8) + ((lane / 8) % 2) * 8;
      const uint32_t ncol = b_col0 + j * MMA_N + (lane / 16) * 8;
      ldmatrix_x4_trans(r, smem_u32(&sb[krow][ncol]));
    } else {
      // matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
      const uint32_t row = b_col0 + j * MMA_N + (lane % 8) + (lane / 16) * 8;
      const uint32_t col = kk + ((lane / 8) % 2) * 8;
      ldmatrix_x4(r, smem_u32(&sb[row][col]));
    }
    bf[j][0] = r[0];
    bf[j][1] = r[1];
    bf[j + 1][0] = r[2];
    bf[j + 1][1] = r[3];
  }
}

// acc[i][j] += af[i] . bf[j] for every tile pair.
template <uint32_t TM, uint32_t TN>
__device__ __forceinline__ void mma_tiles(float (&acc)[TM][TN][4], const uint32_t (&af)[TM][4],
                                          const uint32_t (&bf)[TN][2]) {
#pragma unroll
  for (uint32_t i = 0; i < TM; ++i)
#pragma unroll
    for (uint32_t j = 0; j < TN; ++j) mma_bf16_16816(acc[i][j], af[i], bf[j]);
}

// One BK-deep shared k tile into a warp's accumulators: acc[i][j] += A rows a_row0 + 16i.. .
// B n-tile b_col0 + 8j... `sa` is [row][k] (padded rows of LDA); `sb` is [n][k] (B_KN false) or
// [k][n] (B_KN true, fragments via ldmatrix.trans), padded rows of LDB.
template <bool B_KN, uint32_t BK, uint32_t TM, uint32_t TN, uint32_t LDA, uint32_t LDB>
__device__ __forceinline__ void warp_mma_ktile(const __nv_bfloat16 (*sa)[LDA], const __nv_bfloat16 (*sb)[LDB],
                                               uint32_t a_row0, uint32_t b_col0, uint32_t lane,
                                               float (&acc)[TM][TN][4]) {
#pragma unroll
  for (uint32_t kk = 0; kk < BK; kk += MMA_K) {
    uint32_t af[TM][4];
    uint32_t bf[TN][2];
    load_a_frags(sa, a_row0, kk, lane, af);
    load_b_frags<B_KN>(sb, b_col0, kk, lane, bf);
    mma_tiles(acc, af, bf);
  }
}

// A ROWS x COLS tile of a row-major bf16 operand (row stride ld) into shared `dst` (padded rows of
// LDS), THREADS threads each loading whole 16-byte chunks: operand rows r0.. (those < rows valid),
// columns c0.. (those < cols valid); the rest zero-filled (load_chunk).
template <uint32_t ROWS, uint32_t COLS, uint32_t THREADS, uint32_t LDS>
__device__ __forceinline__ void load_tile_rows(__nv_bfloat16 (*dst)[LDS], const uint16_t* src, uint32_t tid,
                                               uint32_t r0, uint32_t rows, uint32_t c0, uint32_t cols,
                                               uint64_t ld, bool aligned) {
  constexpr uint32_t CPR = COLS / CHUNK;
  static_assert(COLS % CHUNK == 0 && ROWS * CPR % THREADS == 0, "whole chunks per thread");
#pragma unroll
  for (uint32_t i = 0; i < ROWS * CPR / THREADS; ++i) {
    const uint32_t chunk = tid + i * THREADS;
    const uint32_t r = chunk / CPR;
    const uint32_t c = (chunk % CPR) * CHUNK;
    load_chunk(&dst[r][c], src, r0 + r, r0 + r < rows, c0 + c, cols, ld, aligned);
  }
}

// GELU, exact (erf) form, as torch.nn.functional.gelu(approximate="none").
__device__ __forceinline__ float gelu_erf(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
