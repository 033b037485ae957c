//! Launcher of `kernels/cuda/upsample.cu`: `upsample_nearest2d` (PyTorch `nearest`).

use anyhow::Result;
use cyberhost_kernels::upsample::{launch_config, LayoutParams};
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::tensor::CudaTensor;
use super::util::u32_of;
use crate::backends::shape::upsample_nearest2d_shape;
use crate::backends::TensorLike;

pub(crate) fn upsample_nearest2d(
    be: &CudaBackend,
    x: &CudaTensor,
    out_h: usize,
    out_w: usize,
) -> Result<CudaTensor> {
    let shape = upsample_nearest2d_shape(x.shape(), out_h, out_w)?;
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let out = be.alloc(&shape, x.dtype())?;
    if out.elem_count() == 0 {
        return Ok(out);
    }
    let iter = [
        u32_of(n * c, "upsample planes")?,
        u32_of(out_h, "upsample out_h")?,
        u32_of(out_w, "upsample out_w")?,
    ];
    let mut p = LayoutParams::new(be.ptr(x), be.ptr(&out), &iter)?;
    p.src_h = u32_of(h, "upsample h")?;
    p.src_w = u32_of(w, "upsample w")?;
    // PyTorch's scale, in f32 (ATen `compute_scales_value` for an explicit size).
    p.scale_h = h as f32 / out_h as f32;
    p.scale_w = w as f32 / out_w as f32;
    // SAFETY: upsample_nearest2d_v1_<dtype>(LayoutParams): src (n*c, h, w) with h, w >= 1, dst
    // (n*c, out_h, out_w); source indices are clamped to h-1 / w-1 in the kernel.
    unsafe {
        be.launch_to(
            KernelModule::Upsample,
            "upsample_nearest2d",
            launch_config(p.n),
            &p,
            out,
        )
    }
}
