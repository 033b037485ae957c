//! GroupNorm over x (N, C, *spatial): statistics per (n, group) over C/groups
//! channels and all spatial positions, biased variance (two-pass, f64), then
//! an optional per-channel affine. Matches `torch.nn.GroupNorm`.

use anyhow::Result;
use rayon::prelude::*;

use super::{check_vec, CpuTensor};
use crate::backends::shape::group_norm_channels;
use crate::backends::TensorLike;

/// Mean and biased variance of `xs`, two-pass in f64.
#[inline]
pub(crate) fn mean_var(xs: &[f32]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = xs
        .iter()
        .map(|&v| {
            let d = v as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, var)
}

/// A tensor of `x`'s shape computed by independent chunks of `chunk` elements in parallel (at
/// least `min_len` chunks per task): `f(i, out, xs)` fills chunk `i` of the output from chunk `i`
/// of `x` (the norms: one chunk per normalised group or row).
pub(crate) fn map_chunks(
    x: &CpuTensor,
    chunk: usize,
    min_len: usize,
    f: impl Fn(usize, &mut [f32], &[f32]) + Sync + Send,
) -> CpuTensor {
    let mut out = vec![0.0f32; x.elem_count()];
    if chunk > 0 {
        out.par_chunks_mut(chunk)
            .zip(x.data().par_chunks(chunk))
            .with_min_len(min_len)
            .enumerate()
            .for_each(|(i, (o, xs))| f(i, o, xs));
    }
    CpuTensor::new_unchecked(x.shape().to_vec(), out)
}

pub(crate) fn group_norm(
    x: &CpuTensor,
    groups: usize,
    gamma: Option<&CpuTensor>,
    beta: Option<&CpuTensor>,
    eps: f32,
) -> Result<CpuTensor> {
    let c = group_norm_channels(x.shape(), groups)?;
    check_vec("group_norm", "gamma", gamma, c)?;
    check_vec("group_norm", "beta", beta, c)?;
    let spatial: usize = x.shape()[2..].iter().product();
    let cpg = c / groups;
    let (gamma, beta) = (gamma.map(|t| t.data()), beta.map(|t| t.data()));
    Ok(map_chunks(x, cpg * spatial, 1, |i, o, xs| {
        let g = i % groups;
        let (mean, var) = mean_var(xs);
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for cc in 0..cpg {
            let ch = g * cpg + cc;
            // y = (x − mean)·(rstd·γ) + β, in f64: no cancellation when |mean| ≫ std.
            let a = rstd * gamma.map_or(1.0, |g| g[ch] as f64);
            let b = beta.map_or(0.0, |b| b[ch] as f64);
            let range = cc * spatial..(cc + 1) * spatial;
            for (o, &v) in o[range.clone()].iter_mut().zip(&xs[range]) {
                *o = ((v as f64 - mean) * a + b) as f32;
            }
        }
    }))
}
