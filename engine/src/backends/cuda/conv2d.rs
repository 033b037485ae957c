//! Launcher for `kernels/cuda/conv2d.cu` (`conv2d_v2_bf16`, `conv2d_v1_bf16` for the shapes v2
//! does not take: kernels of more than 31 taps, huge inputs): NCHW implicit-GEMM convolution
//! (rectangular kernels, per-axis stride / padding / dilation, groups) with a fused
//! `scale * (conv + bias + temb + residual)` epilogue (the residual per image or one image broadcast
//! over the batch), and `CudaBackend::conv2d` on top of it; f32 activations take the split entries
//! ([`conv2d_split`]: `conv2d_xsplit_v1_f32` / `conv2d_xsplit_wbf16_v1_f32`, x split into bf16
//! hi + lo in registers, f32 epilogue operands and output).

use anyhow::{Context, Result};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr};
use cyberhost_kernels::conv2d::{
    bf16_entry, launch_config, split_entry, Conv2dParams, Conv2dPtrs, Conv2dShape,
};
use cyberhost_kernels::{DType, KernelModule};

use super::context::CudaBackend;
use super::conv2d_sm90;
use super::tensor::CudaTensor;
use super::util::check_len;
use super::CudaDevice;
use crate::backends::shape::{check_vec, conv2d_dims, Conv2dDims};
use crate::backends::{self, TensorLike};

/// Optional epilogue operands of [`conv2d`]: `y = scale * (conv + bias + temb + residual)`.
#[derive(Debug)]
pub struct Conv2dExtras<'a, T: DeviceRepr> {
    /// `(C_out)`.
    pub bias: Option<&'a CudaSlice<T>>,
    /// `(N, C_out)`: ResNet time embedding, added per (image, channel).
    pub temb: Option<&'a CudaSlice<T>>,
    /// `(N, C_out, Ho, Wo)`: ResNet shortcut; `(1, C_out, Ho, Wo)` with `broadcast_residual`.
    pub residual: Option<&'a CudaSlice<T>>,
    /// The residual is one image added to every image of the batch (batch stride 0), e.g. the
    /// movement map after the denoiser's `conv_in`.
    pub broadcast_residual: bool,
    /// 1.0 = none (diffusers' `1 / output_scale_factor`).
    pub scale: f32,
    /// Channels of one `y` image: 0 or `C_out` = y is the output; more = y is `(N, out_channels,
    /// Ho, Wo)` and the output its first `C_out` channels (e.g. the first part of a channel
    /// concat, written in place; no residual may alias y then).
    pub out_channels: usize,
    /// Split-K workspace of the Hopper kernel: at least [`sm90_workspace_len`] f32 (any `T`,
    /// checked in bytes). `None`: `conv2d_sm90` runs unsplit (under-filled grids keep their idle
    /// SMs).
    pub workspace: Option<&'a CudaSlice<T>>,
}

copy_with_defaults!(Conv2dExtras<T: DeviceRepr> {
    bias: None,
    temb: None,
    residual: None,
    broadcast_residual: false,
    scale: 1.0,
    out_channels: 0,
    workspace: None,
});

/// f32 elements of the split-K workspace [`conv2d`] uses for `s` with a W at device address
/// `w_ptr` on `dev`: the Hopper kernel's split plan ([`conv2d_sm90::workspace_len`]), 0 where the
/// conv does not split (or does not run on `conv2d_sm90`): pass no workspace then.
pub fn sm90_workspace_len(dev: &CudaDevice, s: Conv2dShape, w_ptr: u64) -> usize {
    conv2d_sm90::workspace_len(dev, s, w_ptr)
}

/// `y (N, C_out, Ho, Wo) = conv(x (N, C_in, H, W), w (C_out, C_in / groups, kh, kw)) + ...`.
/// Buffers may be typed `u8`, `u16` or `half::bf16` (sizes checked in bytes, 2 per element).
pub fn conv2d<T: DeviceRepr>(
    dev: &CudaDevice,
    x: &CudaSlice<T>,
    w: &CudaSlice<T>,
    y: &mut CudaSlice<T>,
    shape: Conv2dShape,
    extras: Conv2dExtras<'_, T>,
) -> Result<()> {
    conv2d_entry(dev, Route::Auto, false, x, w, y, shape, extras)
}

/// [`conv2d`] on the Hopper kernel (`conv2d_sm90.cu`) only: an error where it does not run (not an
/// sm_90a device, or a shape / alignment it does not take). For tests and benches; [`conv2d`]
/// picks it by itself where it runs.
pub fn conv2d_sm90<T: DeviceRepr>(
    dev: &CudaDevice,
    x: &CudaSlice<T>,
    w: &CudaSlice<T>,
    y: &mut CudaSlice<T>,
    shape: Conv2dShape,
    extras: Conv2dExtras<'_, T>,
) -> Result<()> {
    conv2d_entry(dev, Route::Sm90, false, x, w, y, shape, extras)
}

/// Which kernel [`conv2d_entry`] may run: the Hopper one where it runs, else `conv2d.cu`
/// (`Auto`), or the Hopper one only (`Sm90`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Auto,
    Sm90,
}

/// [`conv2d`] on the bf16-operand entry of the shape's version ([`bf16_entry`]: v2 for kernels of
/// at most 31 taps, else v1) with a bf16 `y`, or an f32 `y` when `out_f32` (no residual aliasing
/// `y`: f32 activations keep the convolution unrounded); on an sm_90a device the Hopper kernel
/// (`conv2d_sm90.cu`) for the shapes it takes (only it with [`Route::Sm90`]).
#[allow(clippy::too_many_arguments)]
fn conv2d_entry<T: DeviceRepr, Y: DeviceRepr>(
    dev: &CudaDevice,
    route: Route,
    out_f32: bool,
    x: &CudaSlice<T>,
    w: &CudaSlice<T>,
    y: &mut CudaSlice<Y>,
    shape: Conv2dShape,
    extras: Conv2dExtras<'_, T>,
) -> Result<()> {
    let s = shape;
    let (entry, cfg) = bf16_entry(s, out_f32);
    let y_c = (extras.out_channels as u64).max(s.c_out);
    let out_len = s.n * y_c * s.h_out() * s.w_out();
    // y elements are 2 bytes (bf16) or 4 (f32: twice the bf16 count of bytes).
    let y_elems = if out_f32 { 2 * out_len } else { out_len };
    check_len("conv2d x", x, s.n * s.c_in * s.h * s.w)?;
    check_len("conv2d w", w, s.c_out * s.k())?;
    check_len("conv2d y", y, y_elems)?;
    if let Some(b) = extras.bias {
        check_len("conv2d bias", b, s.c_out)?;
    }
    if let Some(t) = extras.temb {
        check_len("conv2d temb", t, s.n * s.c_out)?;
    }
    if let Some(r) = extras.residual {
        let imgs = if extras.broadcast_residual { 1 } else { s.n };
        check_len("conv2d residual", r, imgs * s.c_out * s.h_out() * s.w_out())?;
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
    let mut params = Conv2dParams::new(ptrs, s, extras.scale)?;
    if extras.broadcast_residual {
        params = params.with_broadcast_residual();
    }
    if y_c > s.c_out {
        params = params.into_channels(y_c)?;
    }
    let sm90 = conv2d_sm90::takes(dev, s, &params);
    anyhow::ensure!(
        sm90 || route != Route::Sm90,
        "conv2d_sm90: {s:?} is not supported on {} (arch {}, aligned {})",
        dev.name(),
        dev.arch(),
        params.aligned
    );
    if sm90 {
        // SAFETY: as below; `takes` holds.
        let ws = extras
            .workspace
            .map(|w| (w.device_ptr(stream), w.num_bytes() as u64));
        return unsafe {
            conv2d_sm90::launch(
                dev,
                s,
                &params,
                out_f32,
                ws.as_ref().map(|((p, _g), n)| (*p, *n)),
            )
        };
    }
    // SAFETY: `Conv2dParams` mirrors `struct Conv2dParams` of conv2d.cu (size asserted in
    // cyberhost-kernels); every pointer is a live `CudaSlice` of this device whose byte length was
    // checked above against the NCHW extents the shape implies (one image for a broadcast residual).
    unsafe { dev.launch(KernelModule::Conv2d, entry, cfg, &params) }
        .with_context(|| format!("{entry} {s:?}"))
}

/// The kernel's geometry of a conv of `dims` with `p`.
pub(crate) fn kernel_shape(dims: &Conv2dDims, p: backends::Conv2dParams) -> Conv2dShape {
    Conv2dShape {
        n: dims.n as u64,
        c_in: dims.c as u64,
        h: dims.h as u64,
        w: dims.w as u64,
        c_out: dims.o as u64,
        kh: dims.kh as u64,
        kw: dims.kw as u64,
        stride: (p.stride.0 as u64, p.stride.1 as u64),
        pad: (p.padding.0 as u64, p.padding.1 as u64),
        dilation: (p.dilation.0 as u64, p.dilation.1 as u64),
        groups: p.groups as u64,
    }
}

/// `CudaBackend::conv2d`: x `(N, C, H, W)`, w `(O, C / groups, kh, kw)`, bias `(O)`, any stride,
/// padding, dilation and groups. bf16 and f32 tensors (f32 operands are rounded to bf16 for the
/// kernel, which writes an f32 result).
pub(crate) fn conv2d_op(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    p: backends::Conv2dParams,
) -> Result<CudaTensor> {
    let dims = conv2d_dims("conv2d", x.shape(), w.shape(), p)?;
    check_vec("conv2d", "bias", bias, dims.o)?;
    let out_shape = dims.out_shape();
    let shape = kernel_shape(&dims, p);
    if x.dtype() == DType::F32 {
        // f32 activations: x (and an f32 w) split into bf16 hi + lo in the kernel's registers,
        // f32-accurate products and an f32 output (docs/kernels.md Numerics).
        let bf = bias.map(|b| be.as_dtype(b, DType::F32)).transpose()?;
        let ops = ConvSplitOperands {
            x,
            w,
            bias: bf.as_ref(),
            temb: None,
            residual: None,
            broadcast_residual: false,
        };
        return conv2d_split(be, ops, shape, 1.0, &out_shape);
    }
    let (xb, wb) = (be.as_dtype(x, DType::Bf16)?, be.as_dtype(w, DType::Bf16)?);
    let bb = bias.map(|b| be.as_dtype(b, DType::Bf16)).transpose()?;
    let mut y = be.alloc(&out_shape, x.dtype())?;
    if y.elem_count() > 0 {
        let ws_len = sm90_workspace_len(be.device(), shape, be.ptr(&wb));
        let ws = (ws_len > 0)
            .then(|| be.alloc(&[ws_len], DType::F32))
            .transpose()?;
        let extras = Conv2dExtras {
            bias: bb.as_ref().map(|b| b.buf()),
            workspace: ws.as_ref().map(|w| w.buf()),
            ..Default::default()
        };
        conv2d(be.device(), xb.buf(), wb.buf(), y.buf_mut()?, shape, extras)?;
    }
    Ok(y)
}

/// Operands of [`conv2d_split`]: f32 `x`, `w` f32 or bf16, optional f32 epilogue tensors (bias
/// `(C_out)`, temb `(N, C_out)`, residual `(N | 1, C_out, Ho, Wo)`, not aliasing the output).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvSplitOperands<'a> {
    pub x: &'a CudaTensor,
    pub w: &'a CudaTensor,
    pub bias: Option<&'a CudaTensor>,
    pub temb: Option<&'a CudaTensor>,
    pub residual: Option<&'a CudaTensor>,
    pub broadcast_residual: bool,
}

/// `y = scale * (conv + bias + temb + residual)` on the split entries (`conv2d_xsplit_v1_f32`,
/// `conv2d_xsplit_wbf16_v1_f32`) into a new f32 tensor of `out_shape`.
pub(crate) fn conv2d_split(
    be: &CudaBackend,
    t: ConvSplitOperands<'_>,
    s: Conv2dShape,
    scale: f32,
    out_shape: &[usize],
) -> Result<CudaTensor> {
    let entry = split_entry(t.w.dtype());
    let f32s = [Some(t.x), t.bias, t.temb, t.residual];
    anyhow::ensure!(
        f32s.iter().flatten().all(|x| x.dtype() == DType::F32),
        "{entry}: x, bias, temb and residual must be f32"
    );
    let out_len = s.n * s.c_out * s.h_out() * s.w_out();
    let imgs = if t.broadcast_residual { 1 } else { s.n };
    let need = [
        ("x", Some(t.x), s.n * s.c_in * s.h * s.w),
        ("w", Some(t.w), s.c_out * s.k()),
        ("bias", t.bias, s.c_out),
        ("temb", t.temb, s.n * s.c_out),
        (
            "residual",
            t.residual,
            imgs * s.c_out * s.h_out() * s.w_out(),
        ),
    ];
    for (what, x, n) in need {
        if let Some(x) = x {
            anyhow::ensure!(
                x.elem_count() as u64 >= n,
                "{entry} {what}: {} elements, the shape needs {n}",
                x.elem_count()
            );
        }
    }
    let y = be.alloc(out_shape, DType::F32)?;
    anyhow::ensure!(
        y.elem_count() as u64 == out_len,
        "{entry}: output {out_shape:?} is not {out_len} elements"
    );
    if out_len == 0 {
        return Ok(y);
    }
    let ptr = |x: Option<&CudaTensor>| x.map_or(0, |x| be.ptr(x));
    let ptrs = Conv2dPtrs {
        x: be.ptr(t.x),
        w: be.ptr(t.w),
        bias: ptr(t.bias),
        temb: ptr(t.temb),
        residual: ptr(t.residual),
        y: be.ptr(&y),
    };
    let mut params = Conv2dParams::new_split(ptrs, s, scale, t.w.dtype())?;
    if t.broadcast_residual {
        params = params.with_broadcast_residual();
    }
    // SAFETY: `Conv2dParams` mirrors conv2d.cu's struct; every address is a live tensor of this
    // backend whose element count was checked above against the NCHW extents of the shape.
    unsafe {
        be.device()
            .launch(KernelModule::Conv2d, entry, launch_config(s), &params)
    }
    .with_context(|| format!("{entry} {s:?}"))?;
    Ok(y)
}
