//! Launcher of `kernels/cuda/layer_norm.cu`: `layer_norm` over the last dim (optional affine), and
//! `layer_norm_add` (the same launch with a row table added before the output's rounding).

use anyhow::Result;
use cyberhost_kernels::layer_norm::{self as ln, LayerNormParams};
use cyberhost_kernels::{KernelModule, RowsShape};

use super::context::CudaBackend;
use super::pointwise::channel_vec;
use super::tensor::CudaTensor;
use crate::backends::composed::layer_norm_add_rows;
use crate::backends::shape::last_dim;
use crate::backends::TensorLike;

pub(crate) fn layer_norm(
    be: &CudaBackend,
    x: &CudaTensor,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
) -> Result<CudaTensor> {
    launch(be, x, gamma, beta, eps, None)
}

/// [`Backend::layer_norm_add`](crate::backends::Backend::layer_norm_add): the table `(L, C)` in
/// x's dtype, added to row r from table row `r % L`.
pub(crate) fn layer_norm_add(
    be: &CudaBackend,
    x: &CudaTensor,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
    table: &CudaTensor,
) -> Result<CudaTensor> {
    let rows = layer_norm_add_rows(x.shape(), table.shape())?;
    let table = be.as_dtype(table, x.dtype())?;
    launch(be, x, gamma, beta, eps, Some((&table, rows)))
}

fn launch(
    be: &CudaBackend,
    x: &CudaTensor,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
    add: Option<(&CudaTensor, usize)>,
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
    let mut p = LayerNormParams::new(be.ptr(x), g, b, be.ptr(&out), shape, eps)?;
    if let Some((t, rows)) = add {
        p = p.with_add(be.ptr(t), u32::try_from(rows)?)?;
    }
    // SAFETY: layer_norm_v2_<dtype>(LayerNormParams): x and out are (rows, cols) contiguous in x's
    // dtype, gamma and beta (cols) in x's dtype or null, the table (add_rows, cols) contiguous in
    // x's dtype or null; the kernel picks its 16-byte vector path from cols and the pointers'
    // alignment itself.
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
