//! LayerNorm over the last dimension, biased variance (two-pass, f64), optional
//! affine. Matches `torch.nn.LayerNorm(C)`.

use anyhow::Result;
use rayon::prelude::*;

use super::group_norm::mean_var;
use super::{check_vec, CpuTensor};
use crate::backends::shape::last_dim;
use crate::backends::TensorLike;

pub(crate) fn layer_norm(
    x: &CpuTensor,
    gamma: Option<&CpuTensor>,
    beta: Option<&CpuTensor>,
    eps: f32,
) -> Result<CpuTensor> {
    let c = last_dim("layer_norm", x.shape())?;
    check_vec("layer_norm", "gamma", gamma, c)?;
    check_vec("layer_norm", "beta", beta, c)?;
    let mut out = vec![0.0f32; x.elem_count()];
    if c == 0 {
        return Ok(CpuTensor::new_unchecked(x.shape().to_vec(), out));
    }
    let (gamma, beta) = (gamma.map(|t| t.data()), beta.map(|t| t.data()));
    out.par_chunks_mut(c)
        .zip(x.data().par_chunks(c))
        .with_min_len(1.max(4096 / c))
        .for_each(|(o, xs)| {
            let (mean, var) = mean_var(xs);
            let rstd = (1.0 / (var + eps as f64).sqrt()) as f32;
            let mean = mean as f32;
            for (j, (o, &v)) in o.iter_mut().zip(xs).enumerate() {
                let mut y = (v - mean) * rstd;
                if let Some(g) = gamma {
                    y *= g[j];
                }
                if let Some(b) = beta {
                    y += b[j];
                }
                *o = y;
            }
        });
    Ok(CpuTensor::new_unchecked(x.shape().to_vec(), out))
}
