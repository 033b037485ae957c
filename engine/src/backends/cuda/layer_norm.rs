//! Launcher of `kernels/cuda/layer_norm.cu`: `layer_norm` over the last dim (optional affine).

use anyhow::Result;
use cyberhost_kernels::layer_norm::{self as ln, LayerNormParams};
use cyberhost_kernels::{KernelModule, RowsShape};

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
    let shape = RowsShape::of(x.elem_count(), c);
    let g = gamma.as_ref().map_or(0, |g| be.ptr(g));
    let b = beta.as_ref().map_or(0, |b| be.ptr(b));
    let p = LayerNormParams::new(be.ptr(x), g, b, be.ptr(&out), shape, eps)?;
    // SAFETY: layer_norm_v2_<dtype>(LayerNormParams): x and out are (rows, cols) contiguous in x's
    // dtype, gamma and beta (cols) in x's dtype or null; the kernel picks its 16-byte vector path
    // from cols and the pointers' alignment itself.
    unsafe {
        be.launch_version(
            KernelModule::LayerNorm,
            "layer_norm",
            ln::VERSION,
            x.dtype(),
            ln::launch_config(shape),
            &p,
        )
    }?;
    Ok(out)
}
