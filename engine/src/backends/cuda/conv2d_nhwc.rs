//! Launcher for `kernels/cuda/conv2d_nhwc.cu`: channels-last convolution (x `(N, H, W, ldx)`,
//! groups 1, any kernel / stride / padding / dilation) on the v2 GEMM mainloop, with a fused
//! `scale * (conv + temb + bias + residual)` epilogue and an optional channel-slice output; the weight
//! is the kernel's packed `(C_out, K_pad)` operand ([`pack_weights`], done once per weight).
//! The tile config and schedule are the sm_80 GEMM's ([`plan`]: `GemmPlan::choose` on the conv's
//! GEMM `M = N * Ho * Wo, N = C_out, K = kh * kw * C`); `C % 8 != 0` (or an unaligned x) takes
//! the element-wise im2col entry.

use anyhow::{ensure, Context, Result};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr};
use cyberhost_kernels::conv2d::Conv2dShape;
use cyberhost_kernels::conv2d_nhwc::{
    entry_name, gemm_shape, k_pad, launch_config, plan, splitk_launch_config, vectorized,
    ConvNhwcParams, ConvNhwcPtrs, SPLITK_ENTRY,
};
pub use cyberhost_kernels::conv2d_nhwc::{pack_weights, ConvNhwcLayout};
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::tensor::CudaTensor;
use super::util::check_len;
use super::CudaDevice;
use crate::backends::{Backend, Conv2dParams, ConvEpilogue, TensorLike};
use cyberhost_kernels::DType;

/// Optional operands of [`conv2d_nhwc`]: `y = scale * (conv + temb + bias + residual)`.
#[derive(Debug)]
pub struct ConvNhwcExtras<'a, T: DeviceRepr> {
    /// `(C_out)`.
    pub bias: Option<&'a CudaSlice<T>>,
    /// `(N, C_out)`: ResNet time embedding, added per (image, channel).
    pub temb: Option<&'a CudaSlice<T>>,
    /// `(N * Ho * Wo, layout.ldr)`; may be `y` itself when `ldr == ldy`.
    pub residual: Option<&'a CudaSlice<T>>,
    /// 1.0 = none.
    pub scale: f32,
    /// Row strides; `None` = dense ([`ConvNhwcLayout::contiguous`]).
    pub layout: Option<ConvNhwcLayout>,
    /// Split-K workspace of at least [`workspace_len`] f32 (any `T`, checked in bytes); `None`:
    /// no split-K.
    pub workspace: Option<&'a CudaSlice<T>>,
}

copy_with_defaults!(ConvNhwcExtras<T: DeviceRepr> {
    bias: None,
    temb: None,
    residual: None,
    scale: 1.0,
    layout: None,
    workspace: None,
});

/// f32 elements of the split-K workspace [`conv2d_nhwc`] uses for `s` on `dev` with an x at
/// `x` of row stride `ldx` (0: the plan does not split K).
pub fn workspace_len(dev: &CudaDevice, s: Conv2dShape, x: u64, ldx: u64) -> usize {
    plan(
        s,
        vectorized(s, x, ldx),
        dev.sm_count(),
        dev.l2_bytes(),
        true,
    )
    .workspace_len(gemm_shape(s), false) as usize
}

/// `y (N, Ho, Wo, C_out) = conv(x (N, H, W, C), w) + ...` with `w` the packed `(C_out, K_pad)`
/// weight ([`pack_weights`] of the `(C_out, C, kh, kw)` one). Buffers typed `u8`, `u16` or
/// `half::bf16` (sizes checked in bytes, 2 per element).
pub fn conv2d_nhwc<T: DeviceRepr>(
    dev: &CudaDevice,
    x: &CudaSlice<T>,
    w: &CudaSlice<T>,
    y: &mut CudaSlice<T>,
    s: Conv2dShape,
    extras: ConvNhwcExtras<'_, T>,
) -> Result<()> {
    let l = extras
        .layout
        .unwrap_or_else(|| ConvNhwcLayout::contiguous(s));
    let g = gemm_shape(s);
    let rows = |count: u64, ld: u64, cols: u64| {
        if count == 0 {
            0
        } else {
            (count - 1) * ld + cols
        }
    };
    check_len("conv2d_nhwc x", x, rows(s.n * s.h * s.w, l.ldx, s.c_in))?;
    check_len("conv2d_nhwc w (packed)", w, s.c_out * k_pad(s))?;
    check_len("conv2d_nhwc y", y, rows(g.m, l.ldy, s.c_out))?;
    if let Some(b) = extras.bias {
        check_len("conv2d_nhwc bias", b, s.c_out)?;
    }
    if let Some(t) = extras.temb {
        check_len("conv2d_nhwc temb", t, s.n * s.c_out)?;
    }
    if let Some(r) = extras.residual {
        check_len("conv2d_nhwc residual", r, rows(g.m, l.ldr, s.c_out))?;
    }
    if g.m == 0 || g.n == 0 {
        return Ok(());
    }
    let stream = dev.stream();
    let (px, _gx) = x.device_ptr(stream);
    let (pw, _gw) = w.device_ptr(stream);
    let pb = extras.bias.map(|b| b.device_ptr(stream));
    let pt = extras.temb.map(|b| b.device_ptr(stream));
    let pr = extras.residual.map(|b| b.device_ptr(stream));
    let (py, _gy) = y.device_ptr_mut(stream);
    let ptrs = ConvNhwcPtrs {
        x: px,
        w: pw,
        bias: pb.as_ref().map_or(0, |p| p.0),
        temb: pt.as_ref().map_or(0, |p| p.0),
        residual: pr.as_ref().map_or(0, |p| p.0),
        y: py,
    };
    let vec = vectorized(s, px, l.ldx);
    let p = plan(
        s,
        vec,
        dev.sm_count(),
        dev.l2_bytes(),
        extras.workspace.is_some(),
    );
    let ws = match extras.workspace {
        Some(w) if p.splits > 1 => {
            let need = p.workspace_len(g, false) * 4;
            ensure!(
                w.num_bytes() as u64 >= need,
                "conv2d_nhwc split-K workspace: {} bytes, the plan needs {need}",
                w.num_bytes()
            );
            Some(w.device_ptr(stream))
        }
        _ => None,
    };
    let params = ConvNhwcParams::new(ptrs, s, l, extras.scale, p, ws.as_ref().map_or(0, |w| w.0))?;
    let entry = entry_name(p.tile, vec)?;
    let what = || format!("{entry} {s:?}");
    // SAFETY: `ConvNhwcParams` mirrors conv2d_nhwc.cu's struct (size asserted in
    // cyberhost-kernels); every pointer is a live `CudaSlice` of this device whose byte length was
    // checked above against the extents the shape and row strides address; the workspace holds
    // the plan's `workspace_len` f32.
    unsafe {
        dev.launch(
            KernelModule::Conv2dNhwc,
            entry,
            launch_config(&p, s),
            &params,
        )
    }
    .with_context(what)?;
    if p.splits > 1 {
        // SAFETY: as above; the split-K pass reads the workspace the first launch wrote.
        unsafe {
            dev.launch(
                KernelModule::Conv2dNhwc,
                SPLITK_ENTRY,
                splitk_launch_config(s),
                &params,
            )
        }
        .with_context(what)?;
    }
    Ok(())
}

/// A `(O, C, kh, kw)` conv weight packed for [`CudaBackend::conv2d_nhwc`]: the kernel's
/// `(O, K_pad)` bf16 operand (taps major, channels fastest, rows zero-padded to 8).
#[derive(Debug, Clone)]
pub struct PackedConvWeight {
    packed: CudaTensor,
    /// `(O, C, kh, kw)`.
    pub dims: [usize; 4],
}

impl PackedConvWeight {
    /// The packed `(O, K_pad)` bf16 tensor.
    pub(crate) fn into_tensor(self) -> CudaTensor {
        self.packed
    }
}

impl CudaBackend {
    /// Packs `w (O, C, kh, kw)` for [`CudaBackend::conv2d_nhwc`] (a host round trip: once per
    /// weight, at load).
    pub fn conv2d_nhwc_weight(&self, w: &CudaTensor) -> Result<PackedConvWeight> {
        let &[o, c, kh, kw] = w.shape() else {
            anyhow::bail!(
                "conv2d_nhwc weight: expected (O, C, kh, kw), got {:?}",
                w.shape()
            );
        };
        let s = Conv2dShape::square(1, c as u64, kh as u64, kw as u64, o as u64, 1, 1, 0);
        let s = Conv2dShape {
            kh: kh as u64,
            kw: kw as u64,
            ..s
        };
        let packed = pack_weights(&self.to_f32(w)?, s)?;
        let packed = self.from_f32_as(&[o, k_pad(s) as usize], &packed, DType::Bf16)?;
        Ok(PackedConvWeight {
            packed,
            dims: [o, c, kh, kw],
        })
    }

    /// The weight `w` packed at load for the channels-last trunk
    /// (`Backend::prepare_conv_weight`), if it was.
    pub(crate) fn packed_conv_weight_of(&self, w: &CudaTensor) -> Option<PackedConvWeight> {
        let &[o, c, kh, kw] = w.shape() else {
            return None;
        };
        self.packed_conv_weight(w).map(|packed| PackedConvWeight {
            packed,
            dims: [o, c, kh, kw],
        })
    }

    /// Channels-last convolution: x `(N, H, W, C)` bf16, `w` packed ([`Self::conv2d_nhwc_weight`]),
    /// bias `(O)`, groups 1, any stride / padding / dilation; the result `(N, Ho, Wo, O)` bf16.
    pub fn conv2d_nhwc(
        &self,
        x: &CudaTensor,
        w: &PackedConvWeight,
        bias: Option<&CudaTensor>,
        p: Conv2dParams,
    ) -> Result<CudaTensor> {
        self.conv2d_nhwc_ext(x, w, bias, p, ConvEpilogue::default())
    }

    /// [`Self::conv2d_nhwc`] with the fused epilogue `scale * (conv + bias + temb + residual)`:
    /// temb `(N, O)`, residual `(N, Ho, Wo, O)` (both contiguous; cast to bf16 here).
    pub(crate) fn conv2d_nhwc_ext(
        &self,
        x: &CudaTensor,
        w: &PackedConvWeight,
        bias: Option<&CudaTensor>,
        p: Conv2dParams,
        epi: ConvEpilogue<'_, CudaTensor>,
    ) -> Result<CudaTensor> {
        let s = nhwc_shape(x, w, p)?;
        let mut y = self.alloc(
            &[
                x.shape()[0],
                s.h_out() as usize,
                s.w_out() as usize,
                w.dims[0],
            ],
            DType::Bf16,
        )?;
        self.conv2d_nhwc_into(x, w, bias, p, epi, &mut y)?;
        Ok(y)
    }

    /// [`Self::conv2d_nhwc_ext`] writing channels `[0, O)` of `y`, the contiguous bf16
    /// `(N, Ho, Wo, ldy)` rows with `ldy >= O` (the conv's part of a channel concat when larger;
    /// the other channels are left as they are).
    pub(crate) fn conv2d_nhwc_into(
        &self,
        x: &CudaTensor,
        w: &PackedConvWeight,
        bias: Option<&CudaTensor>,
        p: Conv2dParams,
        epi: ConvEpilogue<'_, CudaTensor>,
        y: &mut CudaTensor,
    ) -> Result<()> {
        let s = nhwc_shape(x, w, p)?;
        let [o, c, ..] = w.dims;
        let n = x.shape()[0];
        let u = |v: usize| v as u64;
        let out = [n, s.h_out() as usize, s.w_out() as usize, o];
        let ldy = match *y.shape() {
            [yn, yh, yw, ldy] if [yn, yh, yw] == out[..3] && ldy >= o => ldy,
            _ => anyhow::bail!(
                "conv2d_nhwc: output rows {y:?} must be (N, Ho, Wo, >= C_out) = {out:?} or wider"
            ),
        };
        ensure!(
            y.dtype() == DType::Bf16 && !y.is_channels_last(),
            "conv2d_nhwc: output rows {y:?} must be a contiguous bf16 tensor"
        );
        let bf = |t: &CudaTensor| {
            ensure!(
                !t.is_channels_last(),
                "conv2d_nhwc: {t:?} must be contiguous"
            );
            self.as_dtype(t, DType::Bf16)
        };
        let bb = bias.map(bf).transpose()?;
        let tb = epi.temb.map(bf).transpose()?;
        let rb = epi.residual.map(bf).transpose()?;
        if let Some(t) = &tb {
            ensure!(
                t.shape() == [n, o],
                "conv2d_nhwc: temb {t:?} must be (N, C_out)"
            );
        }
        if let Some(r) = &rb {
            ensure!(
                r.shape() == out,
                "conv2d_nhwc: residual {r:?} must be {out:?}"
            );
        }
        let ws_len = workspace_len(self.device(), s, self.ptr(x), u(c));
        let ws = (ws_len > 0)
            .then(|| self.alloc(&[ws_len], DType::F32))
            .transpose()?;
        let extras = ConvNhwcExtras {
            bias: bb.as_ref().map(|b| b.buf()),
            temb: tb.as_ref().map(|t| t.buf()),
            residual: rb.as_ref().map(|r| r.buf()),
            scale: epi.scale,
            layout: Some(ConvNhwcLayout {
                ldy: u(ldy),
                ..ConvNhwcLayout::contiguous(s)
            }),
            workspace: ws.as_ref().map(|w| w.buf()),
        };
        conv2d_nhwc(
            self.device(),
            x.buf(),
            w.packed.buf(),
            y.buf_mut()?,
            s,
            extras,
        )
    }
}

/// The conv shape of x `(N, H, W, C)` (contiguous bf16) and the packed weight `w`, checked.
fn nhwc_shape(x: &CudaTensor, w: &PackedConvWeight, p: Conv2dParams) -> Result<Conv2dShape> {
    let [o, c, kh, kw] = w.dims;
    let &[n, h, wd, xc] = x.shape() else {
        anyhow::bail!("conv2d_nhwc: x must be (N, H, W, C), got {:?}", x.shape());
    };
    ensure!(
        xc == c && p.groups == 1,
        "conv2d_nhwc: x has {xc} channels, the weight {c} (groups {} must be 1)",
        p.groups
    );
    ensure!(
        x.dtype() == DType::Bf16 && !x.is_channels_last(),
        "conv2d_nhwc: x must be a contiguous bf16 (N, H, W, C) tensor, got {x:?} (convert \
         with to_dtype; a channels-last (N, C, H, W) tensor stores exactly that)"
    );
    let u = |v: usize| v as u64;
    Ok(Conv2dShape {
        n: u(n),
        c_in: u(c),
        h: u(h),
        w: u(wd),
        c_out: u(o),
        kh: u(kh),
        kw: u(kw),
        stride: (u(p.stride.0), u(p.stride.1)),
        pad: (u(p.padding.0), u(p.padding.1)),
        dilation: (u(p.dilation.0), u(p.dilation.1)),
        groups: 1,
    })
}
