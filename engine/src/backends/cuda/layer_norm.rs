//! Launcher of `kernels/cuda/layer_norm.cu`: `layer_norm` over the last dim (optional affine).

use anyhow::Result;
use cyberhost_kernels::layer_norm::{self as ln, LayerNormParams, LayerNormShape};
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::pointwise::channel_vec;
use super::tensor::CudaTensor;
use crate::backends::shape::last_dim;
use crate::backends::TensorLike;

pub(crate) fn layer_norm(
    be: &CudaBackend,
    x: &CudaTensor,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
) -> Result<CudaTensor> {
    let c = last_dim("layer_norm", x.shape())?;
    let gamma = channel_vec(be, "layer_norm", "gamma", gamma, c, x)?;
    let beta = channel_vec(be, "layer_norm", "beta", beta, c, x)?;
    let out = be.alloc(x.shape(), x.dtype())?;
    if x.elem_count() == 0 {
        return Ok(out);
    }
    let shape = LayerNormShape::of(x.elem_count(), c);
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
        be.launch_to(
            KernelModule::LayerNorm,
            "layer_norm",
            ln::launch_config(shape),
            &p,
            out,
        )
    }
}
