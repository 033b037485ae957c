//! Normalisations on CUDA: `softmax_last` (`kernels/cuda/softmax.cu`), `group_norm`
//! (`kernels/cuda/group_norm.cu`), `layer_norm` (`kernels/cuda/layer_norm.cu`).

use anyhow::{bail, Result};
use cyberhost_kernels::group_norm::{self as gn, GroupNormParams, GroupNormShape};
use cyberhost_kernels::layer_norm::{self as ln, LayerNormParams, LayerNormShape};
use cyberhost_kernels::softmax::{self as sm, SoftmaxParams, SoftmaxShape};
use cyberhost_kernels::KernelModule;

use super::backend::{CudaBackend, CudaTensor};
use crate::backends::{Backend, TensorLike};

/// Checks an optional per-channel vector has exactly `n` elements and brings it to `x`'s dtype.
fn channel_vec(
    be: &CudaBackend,
    op: &str,
    what: &str,
    t: Option<&CudaTensor>,
    n: usize,
    x: &CudaTensor,
) -> Result<Option<CudaTensor>> {
    let Some(t) = t else { return Ok(None) };
    if t.elem_count() != n {
        bail!(
            "{op}: {what} has shape {:?}, expected {n} elements",
            t.shape()
        );
    }
    Ok(Some(be.as_dtype(t, x.dtype())?))
}

/// Softmax of `scale * t` over the last dim.
pub(crate) fn softmax_last(be: &CudaBackend, t: &CudaTensor, scale: f32) -> Result<CudaTensor> {
    if t.rank() == 0 {
        bail!("softmax_last: needs at least one dim, got a scalar");
    }
    let cols = *t.shape().last().unwrap();
    let out = be.alloc(t.shape(), t.dtype())?;
    if t.elem_count() == 0 {
        return Ok(out);
    }
    let shape = SoftmaxShape {
        rows: (t.elem_count() / cols) as u64,
        cols: cols as u64,
    };
    let p = SoftmaxParams::new(be.ptr(t), be.ptr(&out), shape, scale)?;
    // SAFETY: softmax_v1_<dtype>(SoftmaxParams): x and y are (rows, cols) contiguous in t's dtype.
    unsafe {
        be.launch(
            KernelModule::Softmax,
            "softmax",
            t.dtype(),
            sm::launch_config(shape),
            &p,
        )
    }?;
    Ok(out)
}

pub(crate) fn group_norm(
    be: &CudaBackend,
    x: &CudaTensor,
    groups: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
) -> Result<CudaTensor> {
    group_norm_op(be, "group_norm", x, groups, gamma, beta, eps)
}

/// `group_norm` (op `"group_norm"`) or GroupNorm + SiLU in one launch (op `"group_norm_silu"`).
pub(crate) fn group_norm_op(
    be: &CudaBackend,
    op: &str,
    x: &CudaTensor,
    groups: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
) -> Result<CudaTensor> {
    if x.rank() < 2 {
        bail!(
            "group_norm: x must be (N, C, *spatial), got shape {:?}",
            x.shape()
        );
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    if groups == 0 || c % groups != 0 {
        bail!(
            "group_norm: {c} channels of {:?} are not divisible into {groups} groups",
            x.shape()
        );
    }
    let gamma = channel_vec(be, "group_norm", "gamma", gamma, c, x)?;
    let beta = channel_vec(be, "group_norm", "beta", beta, c, x)?;
    let out = be.alloc(x.shape(), x.dtype())?;
    if x.elem_count() == 0 {
        return Ok(out);
    }
    // The kernel always applies an affine: identity vectors stand in for missing ones.
    let xs = be.with_storage(x.dtype());
    let gamma = match gamma {
        Some(g) => g,
        None => xs.from_f32(&[c], &vec![1.0; c])?,
    };
    let beta = match beta {
        Some(b) => b,
        None => xs.zeros(&[c])?,
    };
    let s = x.elem_count() / (n * c);
    let shape = GroupNormShape {
        n: n as u64,
        c: c as u64,
        s: s as u64,
        groups: groups as u64,
    };
    let p = GroupNormParams::new(
        be.ptr(x),
        be.ptr(&gamma),
        be.ptr(&beta),
        be.ptr(&out),
        shape,
        eps,
    )?;
    // SAFETY: group_norm[_silu]_v1_<dtype>(GroupNormParams): x and y are (N, C, S) contiguous,
    // gamma and beta (C), all in x's dtype; groups divides C (checked by GroupNormParams::new too).
    unsafe {
        be.launch(
            KernelModule::GroupNorm,
            op,
            x.dtype(),
            gn::launch_config(shape),
            &p,
        )
    }?;
    Ok(out)
}

pub(crate) fn layer_norm(
    be: &CudaBackend,
    x: &CudaTensor,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
) -> Result<CudaTensor> {
    if x.rank() == 0 {
        bail!("layer_norm: needs at least one dim, got a scalar");
    }
    let c = *x.shape().last().unwrap();
    let gamma = channel_vec(be, "layer_norm", "gamma", gamma, c, x)?;
    let beta = channel_vec(be, "layer_norm", "beta", beta, c, x)?;
    let out = be.alloc(x.shape(), x.dtype())?;
    if x.elem_count() == 0 {
        return Ok(out);
    }
    let shape = LayerNormShape {
        rows: (x.elem_count() / c) as u64,
        cols: c as u64,
    };
    let p = LayerNormParams::new(
        be.ptr(x),
        gamma.as_ref().map_or(0, |g| be.ptr(g)),
        beta.as_ref().map_or(0, |b| be.ptr(b)),
        be.ptr(&out),
        shape,
        eps,
    )?;
    // SAFETY: layer_norm_v1_<dtype>(LayerNormParams): x and y are (rows, cols) contiguous, gamma
    // and beta (cols) or null, all in x's dtype.
    unsafe {
        be.launch(
            KernelModule::LayerNorm,
            "layer_norm",
            x.dtype(),
            ln::launch_config(shape),
            &p,
        )
    }?;
    Ok(out)
}
