//! Launcher of `kernels/cuda/softmax.cu`: `softmax_last` (row softmax of `scale * x`).

use anyhow::Result;
use cyberhost_kernels::softmax::{self as sm, SoftmaxParams};
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::tensor::CudaTensor;
use crate::backends::shape::last_dim;
use crate::backends::TensorLike;

/// Softmax of `scale * t` over the last dim.
pub(crate) fn softmax_last(be: &CudaBackend, t: &CudaTensor, scale: f32) -> Result<CudaTensor> {
    let cols = last_dim("softmax_last", t.shape())?;
    let params = |shape, y| SoftmaxParams::new(be.ptr(t), y, shape, scale);
    // SAFETY: softmax_v1_<dtype>(SoftmaxParams): x and y are (rows, cols) contiguous in t's dtype.
    unsafe {
        be.launch_rows(
            KernelModule::Softmax,
            "softmax",
            t,
            cols,
            sm::launch_config,
            params,
        )
    }
}
