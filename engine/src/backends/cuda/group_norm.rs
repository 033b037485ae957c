//! Launcher of `kernels/cuda/group_norm.cu`: `group_norm`, and `group_norm_act` with SiLU in
//! the same launch (other activations run composed).

use anyhow::Result;
use cyberhost_kernels::group_norm::{
    self as gn, GroupNorm2Params, GroupNormParams, GroupNormShape,
};
use cyberhost_kernels::{DType, KernelModule};

use super::context::CudaBackend;
use super::pointwise::channel_vec;
use super::tensor::CudaTensor;
use crate::backends::shape::group_norm_channels;
use crate::backends::{composed, TensorLike, Unary};

/// `act(group_norm(x))`: op `"group_norm"` without an activation, `"group_norm_silu"` with SiLU,
/// the composition of the unfused ops with any other.
pub(crate) fn group_norm_act(
    be: &CudaBackend,
    x: &CudaTensor,
    groups: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
    act: Option<Unary>,
) -> Result<CudaTensor> {
    let op = match act {
        None => "group_norm",
        Some(Unary::Silu) => "group_norm_silu",
        Some(_) => return composed::group_norm_act(be, x, groups, gamma, beta, eps, act),
    };
    let c = group_norm_channels(x.shape(), groups)?;
    let n = x.shape()[0];
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
    if gn::version(shape) == 1 {
        // SAFETY: group_norm[_silu]_v1_<dtype>(GroupNormParams): x and y are (N, C, S) contiguous,
        // gamma and beta (C), all in x's dtype; groups divides C (checked by GroupNormParams::new too).
        return unsafe {
            be.launch_to(
                KernelModule::GroupNorm,
                op,
                gn::launch_config(shape),
                &p,
                out,
            )
        };
    }
    // v2: the per-chunk partials go to a workspace from the backend's normal allocation (a
    // planned arena slot under graph capture), dropped after both launches are enqueued.
    let dtype = x.dtype();
    let ws = be.alloc(&[gn::workspace_f32s(shape, dtype) as usize], DType::F32)?;
    let p2 = GroupNorm2Params::new(p, be.ptr(&ws), dtype)?;
    let cfg = gn::launch_config_v2(shape, dtype);
    // SAFETY: group_norm_stats_v2 / group_norm[_silu]_v2_<dtype>(GroupNorm2Params): x and y as for
    // v1, ws holds workspace_f32s f32s for this shape and dtype; stats writes every partial before
    // apply (the next launch on the stream) reads them.
    unsafe {
        be.launch_version(
            KernelModule::GroupNorm,
            "group_norm_stats",
            2,
            dtype,
            cfg,
            &p2,
        )?;
        be.launch_version(KernelModule::GroupNorm, op, 2, dtype, cfg, &p2)?;
    }
    drop(ws);
    Ok(out)
}
