//! Launchers of `kernels/cuda/group_norm.cu`: `group_norm` and GroupNorm + SiLU in one launch.

use anyhow::{bail, Result};
use cyberhost_kernels::group_norm::{self as gn, GroupNormParams, GroupNormShape};
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::pointwise::channel_vec;
use super::tensor::CudaTensor;
use crate::backends::TensorLike;

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
    let gamma = match gamma {
        Some(g) => g,
        None => be.from_f32_as(&[c], &vec![1.0; c], x.dtype())?,
    };
    let beta = match beta {
        Some(b) => b,
        None => be.zeros_as(&[c], x.dtype())?,
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
        be.launch_to(
            KernelModule::GroupNorm,
            op,
            gn::launch_config(shape),
            &p,
            out,
        )
    }
}
