// Shared by attention.cu (sm_80, mma.sync) and attention_sm90.cu (sm_90a, wgmma): the launch
// params both modules read, and the row-source / softmax helpers of their online-softmax loops.
#pragma once

#include "common.cuh"

// params (mirrored by kernels/src/attention.rs `AttentionParams`, 200 bytes)
struct AttentionParams {
  const void* q;  // (B, H, Lq, D) bf16 / f32 (strided)
  const void* k;  // (B, H, Lk_own, D): keys 0..lk_own
  const void* v;  // (B, H, Lk_own, D)
  void* o;        // (B, H, Lq, D)
  const void* k2; // (B, H, Lk - Lk_own, D): keys lk_own..lk (extra keys; any pointer when none)
  const void* v2; // (B, H, Lk - Lk_own, D)
  uint64_t q_batch, q_head; // strides in elements (a batch stride may be 0: broadcast)
  uint64_t k_batch, k_head;
  uint64_t v_batch, v_head;
  uint64_t o_batch, o_head;
  uint64_t k2_batch, k2_head;
  uint64_t v2_batch, v2_head;
  uint32_t q_row, k_row, v_row, o_row, k2_row, v2_row;
  uint32_t heads, lq, lk, lk_own, d;
  float scale_log2; // softmax scale * log2(e), > 0
  // bit 0: q, k, v, k2, v2 16-byte aligned and every one of their strides a multiple of 8
  // (cp.async / 16-byte loads); bit 1: o likewise (16-byte stores).
  uint32_t aligned;
  uint32_t batch; // B (the short-sequence entries' problem count is B H)
};

// Rows of one operand: rows 0..split from `a` (row stride lda), rows split..rows from `b`.
template <typename S> struct RowSrc {
  const S* a;
  const S* b;
  uint32_t lda, ldb, split, rows;
  __device__ __forceinline__ const S* row(uint32_t j) const {
    return j < split ? a + (uint64_t)j * lda : b + (uint64_t)(j - split) * ldb;
  }
};

// The q, k, v row sources of head (batch, head): k / v rows 0..lk_own from k / v, the rest from
// k2 / v2 (S: the element type of every operand).
template <typename S> struct AttnRows {
  RowSrc<S> q, k, v;
};
template <typename S>
__device__ __forceinline__ AttnRows<S> attn_rows(const AttentionParams& p, uint32_t batch, uint32_t head) {
  const S* qb = static_cast<const S*>(p.q) + batch * p.q_batch + head * p.q_head;
  const S* kb = static_cast<const S*>(p.k) + batch * p.k_batch + head * p.k_head;
  const S* vb = static_cast<const S*>(p.v) + batch * p.v_batch + head * p.v_head;
  const S* k2b = static_cast<const S*>(p.k2) + batch * p.k2_batch + head * p.k2_head;
  const S* v2b = static_cast<const S*>(p.v2) + batch * p.v2_batch + head * p.v2_head;
  return {{qb, qb, p.q_row, p.q_row, p.lq, p.lq},
          {kb, k2b, p.k_row, p.k2_row, p.lk_own, p.lk},
          {vb, v2b, p.v_row, p.v2_row, p.lk_own, p.lk}};
}

// An opaque 0, evaluated where it stands: added to a value that the compiler would otherwise hoist
// out of the persistent tile loop (and hold in a register across every key loop), or to a
// dynamic shared-memory base so that no address derived from it is.
__device__ __forceinline__ uint32_t opaque_zero() {
  uint32_t z = 0;
  asm volatile("" : "+r"(z));
  return z;
}

// Persistent launches (the v1 entries of both modules): the grid is the resident blocks (at most) is the resident blocks (at most)
// and block x runs tiles x, x + gridDim.x, ... of the head-major order
//   tile = (batch H + head) ceil(Lq / BM) + query block,
// so the blocks resident together work on neighbouring query blocks of the same few heads and
// share those heads' K / V in L2 (one block per query block re-read each head's K / V from DRAM
// once per wave of resident blocks). f(t) per tile, then a block barrier (the next tile reuses
// every shared row). Tiles < 2^31 (AttentionParams::new). HOIST false: the tile count is
// re-derived from the params per tile (opaque_zero: not hoisted into a register held across every
// key loop), so t is the loop's only state; which of the two spills less is per kernel (ptxas).
template <uint32_t BM, bool HOIST, typename F>
__device__ __forceinline__ void for_each_tile(const AttentionParams& p, F&& f) {
  if constexpr (HOIST) {
    const uint32_t tiles = ceil_div(p.lq, BM) * p.heads * p.batch;
#pragma unroll 1
    for (uint32_t t = blockIdx.x; t < tiles; t += gridDim.x) {
      f(t);
      __syncthreads();
    }
  } else {
#pragma unroll 1
    for (uint32_t t = blockIdx.x; t < ceil_div(p.lq + opaque_zero(), BM) * p.heads * p.batch; t += gridDim.x) {
      f(t);
      __syncthreads();
    }
  }
}

// Tile t of that order: first query row, head, batch.
struct AttnTile {
  uint32_t q0, head, batch;
};
template <uint32_t BM> __device__ __forceinline__ AttnTile attn_tile(const AttentionParams& p, uint32_t t) {
  const uint32_t qtiles = ceil_div(p.lq, BM);
  const uint32_t bh = t / qtiles;
  return {(t - bh * qtiles) * BM, bh % p.heads, bh / p.heads};
}

// The tile of a one-tile-per-block launch, grid (ceil(Lq / BM), H, B).
template <uint32_t BM> __device__ __forceinline__ AttnTile grid_tile() {
  return {blockIdx.x * BM, blockIdx.y, blockIdx.z};
}

__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Reductions over the 4 lanes (lane % 4) that hold one accumulator row.
__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, 1));
  return fmaxf(v, __shfl_xor_sync(FULL_MASK, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(FULL_MASK, v, 1);
  return v + __shfl_xor_sync(FULL_MASK, v, 2);
}

// Online-softmax step for a thread's two accumulator rows (log2 domain): m_new holds the
// thread's tile maxima (running maxima folded in); reduce them over the quad, set corr (factor
// for O and l) and msl (new max * sl2), and advance m_run / l_run.
__device__ __forceinline__ void softmax_rescale(float (&m_new)[2], float (&m_run)[2], float (&l_run)[2],
                                                float (&corr)[2], float (&msl)[2], float sl2) {
#pragma unroll
  for (uint32_t h = 0; h < 2; ++h) {
    m_new[h] = quad_max(m_new[h]); // finite: every tile holds at least one key < Lk
    corr[h] = ex2_ftz((m_run[h] - m_new[h]) * sl2);
    msl[h] = m_new[h] * sl2;
    m_run[h] = m_new[h];
    l_run[h] *= corr[h];
  }
}
