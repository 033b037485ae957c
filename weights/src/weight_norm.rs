//! Weight normalisation, `w = g · v / ‖v‖`, with PyTorch's `torch._weight_norm` semantics.

use anyhow::{bail, Result};

use crate::dtype::fmt_shape;

/// The shape of `g` for a weight of shape `v_shape` normalised along `dim`: all ones except
/// `v_shape[dim]` (wav2vec2's positional conv: v (768, 48, 128), dim 2 → g (1, 1, 128)).
pub fn weight_norm_g_shape(v_shape: &[usize], dim: usize) -> Vec<usize> {
    v_shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if i == dim { d } else { 1 })
        .collect()
}

/// `g * v / ||v||`, the L2 norm taken over every dim of `v` except `dim` (PyTorch's
/// `norm_except_dim(v, 2, dim)`), so `g` holds one value per index of `v`'s `dim`
/// (`g.len() == v_shape[dim]`, any shape of ones around it). No epsilon: a zero slice of `v`
/// gives NaN as in PyTorch. Norms are accumulated in f64.
pub fn weight_norm(g: &[f32], v: &[f32], v_shape: &[usize], dim: usize) -> Result<Vec<f32>> {
    if dim >= v_shape.len() {
        bail!(
            "weight_norm: dim {dim} is out of range for v of shape {}",
            fmt_shape(v_shape)
        );
    }
    let numel: usize = v_shape.iter().product();
    if v.len() != numel {
        bail!(
            "weight_norm: v has {} values but shape {} needs {numel}",
            v.len(),
            fmt_shape(v_shape)
        );
    }
    let n = v_shape[dim];
    if g.len() != n {
        bail!(
            "weight_norm: g has {} values but v of shape {} has {n} slices along dim {dim} \
             (expected g of shape {})",
            g.len(),
            fmt_shape(v_shape),
            fmt_shape(&weight_norm_g_shape(v_shape, dim))
        );
    }
    let inner: usize = v_shape[dim + 1..].iter().product();
    let outer: usize = v_shape[..dim].iter().product();
    let mut sumsq = vec![0f64; n];
    for o in 0..outer {
        for (j, acc) in sumsq.iter_mut().enumerate() {
            let base = (o * n + j) * inner;
            *acc += v[base..base + inner]
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>();
        }
    }
    let scale: Vec<f32> = sumsq
        .iter()
        .zip(g)
        .map(|(&s, &g)| (g as f64 / s.sqrt()) as f32)
        .collect();
    let mut w = vec![0f32; numel];
    for o in 0..outer {
        for (j, &sc) in scale.iter().enumerate() {
            let base = (o * n + j) * inner;
            for (dst, &src) in w[base..base + inner].iter_mut().zip(&v[base..base + inner]) {
                *dst = src * sc;
            }
        }
    }
    Ok(w)
}
