//! Launcher of `kernels/cuda/layer_norm.cu`: `layer_norm` over the last dim (optional affine).

use anyhow::Result;
use cyberhost_kernels::layer_norm::{self as ln, LayerNormParams};
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
    let params = |shape, y| {
        let g = gamma.as_ref().map_or(0, |g| be.ptr(g));
        let b = beta.as_ref().map_or(0, |b| be.ptr(b));
        LayerNormParams::new(be.ptr(x), g, b, y, shape, eps)
    };
    // SAFETY: layer_norm_v1_<dtype>(LayerNormParams): x and y are (rows, cols) contiguous, gamma
    // and beta (cols) or null, all in x's dtype.
    unsafe {
        be.launch_rows(
            KernelModule::LayerNorm,
            "layer_norm",
            x,
            c,
            ln::launch_config,
            params,
        )
    }
}
