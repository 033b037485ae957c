//! Scaled dot-product attention: q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv)
//! → (B, H, Lq, Dv) = softmax(q·kᵀ·scale)·v, no mask.
//!
//! Work is split into (batch·head, block of queries) tasks over the rayon pool.
//! Each task holds one score block `(block, Lk)` of at most `SCORE_BUDGET` floats:
//! S = scale·q_blk·kᵀ (GEMM), row softmax (max-subtracted), O = S·v (GEMM).

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::gemm::{sgemm, sgemm_rows, Mat, Threads};
use super::softmax::softmax_row;
use super::CpuTensor;
use crate::backends::shape::{attention_dims, AttentionDims};
use crate::backends::TensorLike;

/// Max floats in one task's score block (1 MiB).
const SCORE_BUDGET: usize = 1 << 18;
/// Upper bound on queries per task (keeps enough tasks for the pool).
const MAX_BLOCK_Q: usize = 128;

pub(crate) fn attention(
    q: &CpuTensor,
    k: &CpuTensor,
    v: &CpuTensor,
    scale: f32,
) -> Result<CpuTensor> {
    let AttentionDims {
        b,
        h,
        lq,
        lk,
        d,
        dv,
    } = attention_dims(q.shape(), k.shape(), v.shape())?;
    let mut out = vec![0.0f32; b * h * lq * dv];
    if out.is_empty() {
        return Ok(CpuTensor::new_unchecked(vec![b, h, lq, dv], out));
    }
    if lk == 0 {
        bail!(
            "attention: no keys (k {:?}); softmax over an empty row is undefined",
            k.shape()
        );
    }
    let block = (SCORE_BUDGET / lk).clamp(1, MAX_BLOCK_Q);
    let (qd, kd, vd) = (q.data(), k.data(), v.data());
    out.par_chunks_mut(lq * dv)
        .enumerate()
        .try_for_each(|(bh, o_head)| {
            let qh = &qd[bh * lq * d..(bh + 1) * lq * d];
            let kh = &kd[bh * lk * d..(bh + 1) * lk * d];
            let vh = &vd[bh * lk * dv..(bh + 1) * lk * dv];
            o_head
                .par_chunks_mut(block * dv)
                .enumerate()
                .try_for_each_init(
                    || vec![0.0f32; block * lk],
                    |scores, (blk, o)| -> Result<()> {
                        let q0 = blk * block;
                        let nq = o.len() / dv;
                        let s = &mut scores[..nq * lk];
                        sgemm(
                            nq,
                            lk,
                            d,
                            Mat::rows(&qh[q0 * d..(q0 + nq) * d], d),
                            Mat::transposed(kh, d),
                            s,
                            lk,
                            false,
                            scale,
                            Threads::Single,
                        )?;
                        s.chunks_mut(lk).for_each(softmax_row);
                        sgemm_rows((nq, dv, lk), s, vh, o, false, Threads::Single)
                    },
                )
        })?;
    Ok(CpuTensor::new_unchecked(vec![b, h, lq, dv], out))
}
