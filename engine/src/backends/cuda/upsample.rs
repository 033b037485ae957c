//! Launcher of `kernels/cuda/upsample.cu`: `upsample_nearest2d` (PyTorch `nearest`), on planes
//! or on channels-last rows (`upsample_nearest2d_nhwc`).

use anyhow::{bail, Result};
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

/// `upsample_nearest2d` of a channels-last x `(N, C, H, W)` (stored `(N, H, W, C)`), returned
/// channels-last: `upsample_nearest2d_nhwc_v1`, one 16-byte vector of an output row per thread.
pub(crate) fn upsample_nearest2d_nhwc(
    be: &CudaBackend,
    x: &CudaTensor,
    out_h: usize,
    out_w: usize,
) -> Result<CudaTensor> {
    if !x.is_channels_last() {
        bail!(
            "upsample_nearest2d (channels-last): {x:?} is not a channels-last (N, C, H, W) tensor"
        );
    }
    upsample_nearest2d_shape(x.shape(), out_h, out_w)?;
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let out = be.alloc(&[n, out_h, out_w, c], x.dtype())?;
    if out.elem_count() == 0 {
        return out.nhwc_as_channels_last();
    }
    let vec = 16 / x.dtype().size_in_bytes();
    let vectors = (n * out_h * out_w) as u64 * c.div_ceil(vec) as u64;
    if vectors > u32::MAX as u64 {
        bail!(
            "upsample_nearest2d (channels-last): {n}x{out_h}x{out_w} rows of {c} channels exceed \
             the kernel's 32-bit indices (split the batch)"
        );
    }
    let iter = [
        u32_of(n, "upsample batch")?,
        u32_of(out_h, "upsample out_h")?,
        u32_of(out_w, "upsample out_w")?,
        u32_of(c, "upsample channels")?,
    ];
    let mut p = LayoutParams::new(be.ptr(x), be.ptr(&out), &iter)?;
    p.src_h = u32_of(h, "upsample h")?;
    p.src_w = u32_of(w, "upsample w")?;
    p.scale_h = h as f32 / out_h as f32;
    p.scale_w = w as f32 / out_w as f32;
    // SAFETY: upsample_nearest2d_nhwc_v1_<dtype>(LayoutParams): shape[2..6] = (N, out_h, out_w,
    // C); src is x's (N, h, w, C) storage with h, w >= 1, dst the fresh (N, out_h, out_w, C)
    // rows; source indices clamped to h-1 / w-1; fewer than 2^32 vectors (checked above).
    unsafe {
        be.launch_to(
            KernelModule::Upsample,
            "upsample_nearest2d_nhwc",
            launch_config(vectors),
            &p,
            out,
        )?
        .nhwc_as_channels_last()
    }
}
