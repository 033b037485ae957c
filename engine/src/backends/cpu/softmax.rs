//! Softmax over the last dimension (max-subtracted, f64 sum).

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::CpuTensor;
use crate::backends::TensorLike;

/// In-place softmax of one row: exp(x - max) / Σ exp(x - max).
#[inline]
pub(crate) fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f64;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

pub(crate) fn softmax_last(t: &CpuTensor) -> Result<CpuTensor> {
    if t.rank() == 0 {
        bail!("softmax_last: needs at least one dim, got a scalar");
    }
    let last = *t.shape().last().unwrap();
    let mut out = t.data().to_vec();
    if last > 0 {
        out.par_chunks_mut(last)
            .with_min_len(1.max(4096 / last))
            .for_each(softmax_row);
    }
    Ok(CpuTensor::new_unchecked(t.shape().to_vec(), out))
}
