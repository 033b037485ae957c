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
