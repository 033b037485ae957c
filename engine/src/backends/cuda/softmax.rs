//! Launcher of `kernels/cuda/softmax.cu`: `softmax_last` (row softmax of `scale * x`).

use anyhow::Result;
use cyberhost_kernels::softmax::{self as sm, SoftmaxParams, SoftmaxShape};
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::tensor::CudaTensor;
use crate::backends::shape::last_dim;
use crate::backends::TensorLike;

/// Softmax of `scale * t` over the last dim.
pub(crate) fn softmax_last(be: &CudaBackend, t: &CudaTensor, scale: f32) -> Result<CudaTensor> {
    let cols = last_dim("softmax_last", t.shape())?;
    let out = be.alloc(t.shape(), t.dtype())?;
    if t.elem_count() == 0 {
        return Ok(out);
    }
    let shape = SoftmaxShape::of(t.elem_count(), cols);
    let p = SoftmaxParams::new(be.ptr(t), be.ptr(&out), shape, scale)?;
    // SAFETY: softmax_v1_<dtype>(SoftmaxParams): x and y are (rows, cols) contiguous in t's dtype.
    unsafe {
        be.launch_to(
            KernelModule::Softmax,
            "softmax",
            sm::launch_config(shape),
            &p,
            out,
        )
    }
}
