//! The fused primitives of [`Backend`](crate::backends::Backend) on CUDA, one launch each
//! (`group_norm_act` with SiLU is in `group_norm.rs`): `linear_ext` on the GEMM epilogue of
//! `linear_v1_bf16` (`gemm.rs`: bias, GEGLU, residual, scale), `conv2d_ext` on the epilogue of
//! `conv2d_v1_bf16` (`conv2d.rs`: bias, temb, residual per image or broadcast over the batch,
//! scale). f32 activations take the same epilogues on the f32 entries: `linear_ext` on those of
//! `gemm.cu` (`gemm::gemm_f32`), `conv2d_ext` on the split entries of `conv2d.cu`
//! (`conv::conv2d_split`). What a fused kernel does not take (a conv geometry the kernel rejects, a
//! one-row residual over more than MAX_ROW_BATCH rows) runs as the composition of the unfused ops
//! ([`composed`](crate::backends::composed)).

use anyhow::{bail, Result};
use cyberhost_kernels::conv2d::{Conv2dParams as ConvKernelParams, Conv2dPtrs, Conv2dShape};
use cyberhost_kernels::gemm::{GemmEpilogue, GemmLayout, GemmOp, GemmPtrs, GemmShape};
use cyberhost_kernels::gemm_sm90::{self, PlanesExit};
use cyberhost_kernels::{Arch, DType};

use super::context::CudaBackend;
use super::conv2d::{self as conv, Conv2dExtras, ConvSplitOperands};
use super::gemm::{self, GemmExtras, GemmF32Operands};
use super::layout;
use super::pointwise;
use super::tensor::CudaTensor;
use crate::backends::shape::{check_vec, conv2d_dims, linear_shape, Conv2dDims};
use crate::backends::{composed, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike};

/// Largest row count a one-row (broadcast) residual runs fused with (one GEMM batch per row,
/// gridDim.z); e.g. the time embedding's batch. Larger ones run composed.
const MAX_ROW_BATCH: usize = 1024;

pub(crate) fn linear_ext(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    epi: LinearEpilogue<'_, CudaTensor>,
) -> Result<CudaTensor> {
    let mut shape = linear_shape("linear_ext", x.shape(), w.shape())?;
    let (rows, k) = (w.shape()[0], w.shape()[1]);
    if epi.geglu && rows % 2 != 0 {
        bail!(
            "linear_ext GEGLU: w {:?} needs an even number of rows (value and gate halves)",
            w.shape()
        );
    }
    check_vec("linear_ext", "bias", bias, rows)?;
    let n = if epi.geglu { rows / 2 } else { rows };
    let m: usize = x.shape()[..x.rank() - 1].iter().product();
    *shape.last_mut().unwrap() = n;
    if let Some(r) = epi.residual {
        composed::check_linear_residual(r.shape(), &shape)?;
    }
    let row_residual = epi.residual.is_some_and(|r| r.elem_count() == n && m > 1);
    let (gs, layout) = if row_residual && m <= MAX_ROW_BATCH {
        // One residual row for every output row: M batches of one row, the weight and the
        // residual shared across them (batch stride 0).
        let gs = GemmShape::new(m, 1, n, k);
        let mut layout = GemmLayout::contiguous(GemmOp::Linear, gs, epi.geglu, true);
        layout.stride_r = 0;
        (gs, layout)
    } else if row_residual {
        return composed::linear_ext(be, x, w, bias, epi);
    } else {
        let gs = GemmShape::new(1, m, n, k);
        (
            gs,
            GemmLayout::contiguous(GemmOp::Linear, gs, epi.geglu, true),
        )
    };
    if x.dtype() != DType::Bf16 {
        // f32 activations: the f32 entries (x split into bf16 hi + lo in registers, f32 epilogue
        // operands and output) keep the fusion.
        let f = |t: &CudaTensor| be.as_dtype(t, DType::F32);
        let bf = bias.map(f).transpose()?;
        let rf = epi.residual.map(f).transpose()?;
        let ops = GemmF32Operands {
            a: x,
            b: w,
            bias: bf.as_ref(),
            residual: rf.as_ref(),
        };
        let ge = GemmEpilogue {
            scale: epi.scale,
            geglu: epi.geglu,
        };
        return gemm::gemm_f32(be, GemmOp::Linear, ops, gs, layout, ge, &shape);
    }
    if let Some(f) = be.fp8_weight(w).filter(|_| !row_residual) {
        // --weights-dtype fp8: the e4m3 GEMM (x quantised per row), same fused epilogue
        let done = super::gemm_fp8_sm90::linear(
            be,
            x,
            &f,
            bias,
            epi.residual,
            epi.scale,
            epi.geglu,
            &shape,
        )?;
        if let Some(out) = done {
            return Ok(out);
        }
    }
    let wb = be.as_dtype(w, DType::Bf16)?;
    let bb = bias.map(|b| be.as_dtype(b, DType::Bf16)).transpose()?;
    let rb = epi
        .residual
        .map(|r| be.as_dtype(r, DType::Bf16))
        .transpose()?;
    let mut out = be.alloc(&shape, DType::Bf16)?;
    if out.elem_count() > 0 {
        // split-K plans (small grids, long K) need an f32 workspace; gemm_sm90 takes none
        let ptrs = GemmPtrs {
            a: be.ptr(x),
            b: be.ptr(&wb),
            bias: 0,
            residual: 0,
            c: be.ptr(&out),
        };
        let ws_len =
            gemm::launch_workspace_len(be.device(), GemmOp::Linear, ptrs, gs, layout, epi.geglu);
        let ws = (ws_len > 0)
            .then(|| be.alloc(&[ws_len], DType::F32))
            .transpose()?;
        let extras = GemmExtras {
            bias: bb.as_ref().map(|b| b.buf()),
            residual: rb.as_ref().map(|r| r.buf()),
            scale: epi.scale,
            geglu: epi.geglu,
            workspace: ws.as_ref().map(|w| w.buf()),
        };
        gemm::launch(
            be.device(),
            GemmOp::Linear,
            x.buf(),
            wb.buf(),
            out.buf_mut()?,
            gs,
            layout,
            extras,
        )?;
    }
    Ok(out)
}

/// [`Backend::linear_tokens_planes_add`](crate::backends::Backend::linear_tokens_planes_add):
/// on sm_90a with bf16 operands (the weight not held as fp8) and a GEMM `gemm_sm90` takes, one
/// `linear_sm90_v1_bf16` launch whose planes epilogue ([`PlanesExit`]) writes channels `[0, C)` of
/// the output planes with the residual added (a `tail` is then copied after them); everything
/// else (CPU-shaped fallbacks, sm_80, f32, fp8 weights, shape errors) runs composed. Contiguous
/// operands only: `memory_format::linear_tokens_planes_add` sends channels-last ones to the
/// composed ops.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_tokens_planes_add(
    be: &CudaBackend,
    tokens: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    residual: &CudaTensor,
    frames: usize,
    tail: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let ops = ExitOperands {
        tokens,
        w,
        bias,
        residual,
        frames,
        tail,
    };
    match planes_exit(be, &ops) {
        Some((exit, ptrs)) => linear_planes_sm90(be, residual, tail, exit, ptrs),
        None => composed::linear_tokens_planes_add(be, tokens, w, bias, residual, frames, tail),
    }
}

/// The operands of a `linear_tokens_planes_add`.
struct ExitOperands<'a> {
    tokens: &'a CudaTensor,
    w: &'a CudaTensor,
    bias: Option<&'a CudaTensor>,
    residual: &'a CudaTensor,
    frames: usize,
    tail: Option<&'a CudaTensor>,
}

/// The [`PlanesExit`] of a `linear_tokens_planes_add` that `gemm_sm90` runs and its operands
/// (the output `c` still 0), or `None` (other arch, dtype, an fp8 weight, shapes that do not
/// fit: the composed ops report those).
fn planes_exit(be: &CudaBackend, ops: &ExitOperands<'_>) -> Option<(PlanesExit, GemmPtrs)> {
    let &ExitOperands {
        tokens,
        w,
        bias,
        residual,
        frames,
        tail,
    } = ops;
    let dev = be.device();
    let bf16 = |t: &CudaTensor| t.dtype() == DType::Bf16;
    let all_bf16 = [tokens, w, residual]
        .into_iter()
        .chain(bias)
        .chain(tail)
        .all(bf16);
    if dev.arch() != Arch::Sm90a || !all_bf16 || be.fp8_weight(w).is_some() {
        return None;
    }
    let (&[c, k], &[nf, rc, hh, ww]) = (w.shape(), residual.shape()) else {
        return None;
    };
    let ct = match tail.map(|t| t.shape()) {
        None => 0,
        Some(&[tn, ct, th, tw]) if (tn, th, tw) == (nf, hh, ww) => ct,
        Some(_) => return None,
    };
    let fits = frames > 0
        && nf % frames == 0
        && rc == c
        && tokens.shape().last() == Some(&k)
        && tokens.elem_count() == nf * hh * ww * k
        && bias.is_none_or(|b| b.elem_count() == c)
        && residual.elem_count() > 0;
    let exit = PlanesExit {
        items: nf / frames.max(1),
        hw: hh * ww,
        frames,
        k,
        c,
        out_channels: c + ct,
    };
    let ptrs = GemmPtrs {
        a: be.ptr(tokens),
        b: be.ptr(w),
        bias: bias.map_or(0, |b| be.ptr(b)),
        residual: be.ptr(residual),
        c: 0,
    };
    let (shape, layout) = (exit.shape(), exit.layout());
    (fits
        && gemm_sm90::supports(ptrs, shape, layout)
        && gemm_sm90::prefers(shape, false, dev.sm_count()))
    .then_some((exit, ptrs))
}

/// `exit` through `gemm_sm90`'s planes epilogue into a fresh `(N·F, C + C_t, H, W)` output, the
/// tail copied into channels `[C, C + C_t)`.
fn linear_planes_sm90(
    be: &CudaBackend,
    residual: &CudaTensor,
    tail: Option<&CudaTensor>,
    exit: PlanesExit,
    ptrs: GemmPtrs,
) -> Result<CudaTensor> {
    let rs = residual.shape();
    let out = be.alloc(&[rs[0], exit.out_channels, rs[2], rs[3]], DType::Bf16)?;
    let ptrs = GemmPtrs {
        c: be.ptr(&out),
        ..ptrs
    };
    // the element counts were checked by `planes_exit` (tokens, weight, bias, residual) and the
    // allocation (output): the extents the exit's tensor maps and epilogue address
    super::gemm_sm90::launch_planes(be.device(), ptrs, exit, GemmEpilogue::default())?;
    if let Some(t) = tail {
        layout::copy_into(be, t, &out, 1, exit.c)?;
    }
    Ok(out)
}

/// The kernel's geometry for a conv of `dims` with `p`, or `None` when `conv2d_v1` does not take
/// it.
fn conv_shape(dims: &Conv2dDims, p: Conv2dParams) -> Option<Conv2dShape> {
    let s = conv::kernel_shape(dims, p);
    // Validation only: the kernel's own checks, on placeholder addresses.
    let ptrs = Conv2dPtrs {
        x: 16,
        w: 16,
        bias: 0,
        temb: 0,
        residual: 0,
        y: 16,
    };
    ConvKernelParams::new(ptrs, s, 1.0).ok().map(|_| s)
}

pub(crate) fn conv2d_ext(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    p: Conv2dParams,
    epi: ConvEpilogue<'_, CudaTensor>,
) -> Result<CudaTensor> {
    let dims = conv2d_dims("conv2d_ext", x.shape(), w.shape(), p)?;
    let Some(s) = conv_shape(&dims, p) else {
        return composed::conv2d_ext(be, x, w, bias, p, epi);
    };
    let out_shape = dims.out_shape();
    let broadcast_residual = check_conv_epilogue("conv2d_ext", &dims, bias, epi)?;
    if x.dtype() != DType::Bf16 {
        // f32 activations (e.g. the sampler's latents): the split entries keep the f32 residual
        // sum and the output unrounded.
        let f = |t: &CudaTensor| be.as_dtype(t, DType::F32);
        let (bf, tf, rf) = (
            bias.map(f).transpose()?,
            epi.temb.map(f).transpose()?,
            epi.residual.map(f).transpose()?,
        );
        let ops = ConvSplitOperands {
            x,
            w,
            bias: bf.as_ref(),
            temb: tf.as_ref(),
            residual: rf.as_ref(),
            broadcast_residual,
        };
        return conv::conv2d_split(be, ops, s, epi.scale, &out_shape);
    }
    let mut y = be.alloc(&out_shape, DType::Bf16)?;
    conv_bf16_into(be, x, w, bias, s, epi, &mut y)?;
    pointwise::cast(be, &y, x.dtype())
}

/// Checks bias `(C_out)`, temb `(N, C_out)` and the residual of a conv of `dims`; returns whether
/// the residual is one image broadcast over the batch.
pub(crate) fn check_conv_epilogue(
    op: &str,
    dims: &Conv2dDims,
    bias: Option<&CudaTensor>,
    epi: ConvEpilogue<'_, CudaTensor>,
) -> Result<bool> {
    let (n, o) = (dims.n, dims.o);
    check_vec(op, "bias", bias, o)?;
    if let Some(t) = epi.temb {
        if t.shape() != [n, o] {
            bail!("{op}: temb {:?} must be (N, C_out) = ({n}, {o})", t.shape());
        }
    }
    match epi.residual {
        Some(r) => composed::check_conv_residual(r.shape(), &dims.out_shape()),
        None => Ok(false),
    }
}

/// Checks `conv2d_concat`'s tail `ts` against the conv's output shape `out` (both logical NCHW).
pub(crate) fn check_concat_tail(out: &[usize], ts: &[usize]) -> Result<()> {
    if ts.len() != 4 || ts[0] != out[0] || ts[2..] != out[2..] {
        bail!(
            "conv2d_concat: tail {ts:?} must be (N, C_t, Ho, Wo) with (N, Ho, Wo) of the conv \
             output {out:?}"
        );
    }
    Ok(())
}

/// The bf16 conv `s` with its epilogue into the first `C_out` channels of `y` `(N, C_y, Ho, Wo)`
/// (`C_y` = C_out: all of it), operands cast to bf16 (the caller checked the epilogue shapes).
fn conv_bf16_into(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    s: Conv2dShape,
    epi: ConvEpilogue<'_, CudaTensor>,
    y: &mut CudaTensor,
) -> Result<()> {
    if y.elem_count() == 0 {
        return Ok(());
    }
    let broadcast_residual = match epi.residual {
        Some(r) => r.shape()[0] == 1 && s.n > 1,
        None => false,
    };
    let bf = |t: &CudaTensor| be.as_dtype(t, DType::Bf16);
    let (xb, wb) = (bf(x)?, bf(w)?);
    let bb = bias.map(bf).transpose()?;
    let tb = epi.temb.map(bf).transpose()?;
    let rb = epi.residual.map(bf).transpose()?;
    // the Hopper kernel's split-K plans (under-filled grids) need an f32 workspace
    let ws_len = conv::sm90_workspace_len(be.device(), s, be.ptr(&wb));
    let ws = (ws_len > 0)
        .then(|| be.alloc(&[ws_len], DType::F32))
        .transpose()?;
    let extras = Conv2dExtras {
        bias: bb.as_ref().map(|b| b.buf()),
        temb: tb.as_ref().map(|t| t.buf()),
        residual: rb.as_ref().map(|r| r.buf()),
        broadcast_residual,
        scale: epi.scale,
        out_channels: y.shape()[1],
        workspace: ws.as_ref().map(|w| w.buf()),
    };
    conv::conv2d(be.device(), xb.buf(), wb.buf(), y.buf_mut()?, s, extras)
}

/// [`Backend::conv2d_concat`](crate::backends::Backend::conv2d_concat): the conv's epilogue
/// writes channels `[0, C_out)` of the `(N, C_out + C_t, Ho, Wo)` output (images `C_out + C_t`
/// channels apart), one strided copy places `tail` after them. f32 activations, mixed dtypes and
/// geometries the kernel does not take run composed.
pub(crate) fn conv2d_concat(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    p: Conv2dParams,
    epi: ConvEpilogue<'_, CudaTensor>,
    tail: &CudaTensor,
) -> Result<CudaTensor> {
    let dims = conv2d_dims("conv2d_concat", x.shape(), w.shape(), p)?;
    let (out, s) = match conv_shape(&dims, p) {
        Some(s) if x.dtype() == DType::Bf16 && tail.dtype() == DType::Bf16 => (dims.out_shape(), s),
        _ => return composed::conv2d_concat(be, x, w, bias, p, epi, tail),
    };
    let ts = tail.shape();
    check_concat_tail(&out, ts)?;
    check_conv_epilogue("conv2d_concat", &dims, bias, epi)?;
    let mut y = be.alloc(&[out[0], out[1] + ts[1], out[2], out[3]], DType::Bf16)?;
    conv_bf16_into(be, x, w, bias, s, epi, &mut y)?;
    layout::copy_into(be, tail, &y, 1, out[1])?;
    Ok(y)
}
