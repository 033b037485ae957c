//! LayerNorm over the last dimension, biased variance (two-pass, f64), optional
//! affine. Matches `torch.nn.LayerNorm(C)`.

use anyhow::Result;

use super::group_norm::{map_chunks, mean_var};
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
    let (gamma, beta) = (gamma.map(|t| t.data()), beta.map(|t| t.data()));
    let min_len = 1.max(4096 / c.max(1));
    Ok(map_chunks(x, c, min_len, |_, o, xs| {
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
    }))
}
