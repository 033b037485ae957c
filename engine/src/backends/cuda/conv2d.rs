//! Launcher for `kernels/cuda/conv2d.cu` (`conv2d_v1_bf16`): NCHW implicit-GEMM convolution with a
//! fused `scale * (conv + bias + temb + residual)` epilogue.

use anyhow::{Context, Result};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr};
use cyberhost_kernels::conv2d::{launch_config, Conv2dParams, Conv2dPtrs, Conv2dShape};
use cyberhost_kernels::KernelModule;

use super::gemm::check_len;
use super::CudaDevice;

/// Optional epilogue operands of [`conv2d`]: `y = scale * (conv + bias + temb + residual)`.
#[derive(Debug)]
pub struct Conv2dExtras<'a, T: DeviceRepr> {
    /// `(C_out)`.
    pub bias: Option<&'a CudaSlice<T>>,
    /// `(N, C_out)`: ResNet time embedding, added per (image, channel).
    pub temb: Option<&'a CudaSlice<T>>,
    /// `(N, C_out, Ho, Wo)`: ResNet shortcut.
    pub residual: Option<&'a CudaSlice<T>>,
    /// 1.0 = none (diffusers' `1 / output_scale_factor`).
    pub scale: f32,
}

impl<T: DeviceRepr> Clone for Conv2dExtras<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: DeviceRepr> Copy for Conv2dExtras<'_, T> {}

impl<T: DeviceRepr> Default for Conv2dExtras<'_, T> {
    fn default() -> Self {
        Conv2dExtras {
            bias: None,
            temb: None,
            residual: None,
            scale: 1.0,
        }
    }
}

/// `y (N, C_out, Ho, Wo) = conv(x (N, C_in, H, W), w (C_out, C_in, kh, kw)) + ...`, groups 1.
/// Buffers may be typed `u8`, `u16` or `half::bf16` (sizes checked in bytes, 2 per element).
pub fn conv2d<T: DeviceRepr>(
    dev: &CudaDevice,
    x: &CudaSlice<T>,
    w: &CudaSlice<T>,
    y: &mut CudaSlice<T>,
    shape: Conv2dShape,
    extras: Conv2dExtras<'_, T>,
) -> Result<()> {
    let s = shape;
    let out_len = s.n * s.c_out * s.h_out() * s.w_out();
    check_len("conv2d x", x, s.n * s.c_in * s.h * s.w)?;
    check_len("conv2d w", w, s.c_out * s.k())?;
    check_len("conv2d y", y, out_len)?;
    if let Some(b) = extras.bias {
        check_len("conv2d bias", b, s.c_out)?;
    }
    if let Some(t) = extras.temb {
        check_len("conv2d temb", t, s.n * s.c_out)?;
    }
    if let Some(r) = extras.residual {
        check_len("conv2d residual", r, out_len)?;
    }
    let stream = dev.stream();
    let (px, _gx) = x.device_ptr(stream);
    let (pw, _gw) = w.device_ptr(stream);
    let pb = extras.bias.map(|b| b.device_ptr(stream));
    let pt = extras.temb.map(|b| b.device_ptr(stream));
    let pr = extras.residual.map(|b| b.device_ptr(stream));
    let (py, _gy) = y.device_ptr_mut(stream);
    let ptrs = Conv2dPtrs {
        x: px,
        w: pw,
        bias: pb.as_ref().map_or(0, |p| p.0),
        temb: pt.as_ref().map_or(0, |p| p.0),
        residual: pr.as_ref().map_or(0, |p| p.0),
        y: py,
    };
    let params = Conv2dParams::new(ptrs, s, extras.scale)?;
    // SAFETY: `Conv2dParams` mirrors `struct Conv2dParams` of conv2d.cu (size asserted in
    // cyberhost-kernels); every pointer is a live `CudaSlice` of this device whose byte length was
    // checked above against the NCHW extents the shape implies.
    unsafe {
        dev.launch(
            KernelModule::Conv2d,
            "conv2d_v1_bf16",
            launch_config(s),
            &params,
        )
    }
    .with_context(|| format!("conv2d_v1_bf16 {s:?}"))
}
