//! Matrix products on CUDA.
//!
//! bf16 tensors go to the fused launchers: `linear` / `matmul` to `gemm.rs` (`kernels/cuda/gemm.cu`,
//! bias in the epilogue, B `(K, N)` read directly), `conv2d` to `conv2d.rs` (implicit-GEMM NCHW,
//! bias in the epilogue; the backend op lives in `conv2d.rs`), `attention` to
//! `attention.rs` (flash attention, any head dim up to 160, `Dv = D`; f32 and mixed-dtype q / k / v
//! run the f32 flash entries, whose tiles are split into bf16 hi + lo in shared memory, so no
//! score matrix is ever written). f32 tensors keep f32 outputs: `linear` / `matmul` run the f32
//! entries of `kernels/cuda/gemm.cu` (`linear_v1_f32`, `linear_wbf16_v1_f32` for a bf16 weight,
//! `matmul_v1_f32`), which split each f32 operand into bf16 hi + lo parts in registers so the
//! product stays f32-accurate; `conv2d` runs the split entries of `conv2d.cu` the same way
//! (`conv2d.rs` `conv2d_split`). Attention shapes no flash entry takes (`Dv != D`, `D > 160`,
//! `Lk = 0`, batch or heads > 65535; none of the model's) are composed: GEMM (f32 scores) ->
//! softmax (`softmax.cu`, scale fused) -> GEMM, on the f32 entries for f32 inputs.

use anyhow::Result;
use cyberhost_kernels::DType;

use super::attention::{self as flash, AttnLayout};
use super::context::CudaBackend;
use super::gemm::{self, GemmExtras, GemmF32Operands};
use super::gemm_bf16::{gemm_nt, MAX_BATCH};
use super::tensor::{promote, CudaTensor};
use super::{layout, softmax};
use crate::backends::shape::{
    attention_dims, check_vec, linear_shape, matmul_shape, AttentionDims,
};
use crate::backends::TensorLike;
use cyberhost_kernels::attention::{traits_for, AttentionShape};
use cyberhost_kernels::gemm::{GemmEpilogue, GemmLayout, GemmOp, GemmShape};

pub(crate) fn linear(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let shape = linear_shape("linear", x.shape(), w.shape())?;
    let (n, k) = (w.shape()[0], w.shape()[1]);
    check_vec("linear", "bias", bias, n)?;
    let m: usize = x.shape()[..x.rank() - 1].iter().product();
    if x.dtype() == DType::Bf16 {
        if let Some(f) = be.fp8_weight(w) {
            // --weights-dtype fp8: the e4m3 GEMM (x quantised per row)
            let done = super::gemm_fp8_sm90::linear(be, x, &f, bias, None, 1.0, false, &shape)?;
            if let Some(out) = done {
                return Ok(out);
            }
        }
        let bb = bias.map(|b| be.as_dtype(b, DType::Bf16)).transpose()?;
        let wb = be.as_dtype(w, DType::Bf16)?;
        let mut out = be.alloc(&shape, DType::Bf16)?;
        if out.elem_count() > 0 {
            let extras = GemmExtras {
                bias: bb.as_ref().map(|b| b.buf()),
                ..Default::default()
            };
            gemm::linear(
                be.device(),
                x.buf(),
                wb.buf(),
                out.buf_mut()?,
                m,
                n,
                k,
                extras,
            )?;
        }
        return Ok(out);
    }
    // f32 activations: the f32 entries split x (and an f32 w) into bf16 hi + lo in registers, so
    // the product stays f32-accurate (docs/kernels.md Numerics); a bf16 weight is exact.
    let bf = bias.map(|b| be.as_dtype(b, DType::F32)).transpose()?;
    let gs = GemmShape::new(1, m, n, k);
    let ops = GemmF32Operands {
        a: x,
        b: w,
        bias: bf.as_ref(),
        residual: None,
    };
    let layout = GemmLayout::contiguous(GemmOp::Linear, gs, false, true);
    gemm::gemm_f32(
        be,
        GemmOp::Linear,
        ops,
        gs,
        layout,
        GemmEpilogue::default(),
        &shape,
    )
}

pub(crate) fn matmul(be: &CudaBackend, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
    let shape = matmul_shape(a.shape(), b.shape())?;
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let batch: usize = a.shape()[..ra - 2].iter().product();
    let out = promote(&[a, b]);
    // Used when `out` is bf16, i.e. both are (f32 takes the f32 entry below).
    let (ab, bb) = (a.clone(), b.clone());
    if out == DType::Bf16 && batch <= MAX_BATCH {
        let mut c = be.alloc(&shape, DType::Bf16)?;
        if c.elem_count() > 0 {
            let extras = GemmExtras::default();
            gemm::matmul(
                be.device(),
                ab.buf(),
                bb.buf(),
                c.buf_mut()?,
                batch,
                m,
                n,
                k,
                false,
                extras,
            )?;
        }
        return Ok(c);
    }
    if out == DType::Bf16 {
        let mut dims: Vec<usize> = (0..rb).collect();
        dims.swap(rb - 2, rb - 1);
        let bt = layout::permute(be, &bb, &dims)?; // (.., N, K)
        return gemm_nt(be, &ab, &bt, None, (batch, m, n, k), false, out, &shape);
    }
    // f32: the split entry reads B (K, N) directly (docs/kernels.md Numerics).
    let (af, bf) = (be.as_dtype(a, DType::F32)?, be.as_dtype(b, DType::F32)?);
    let gs = GemmShape::new(batch, m, n, k);
    let ops = GemmF32Operands::plain(&af, &bf);
    let layout = GemmLayout::contiguous(GemmOp::Matmul, gs, false, false);
    gemm::gemm_f32(
        be,
        GemmOp::Matmul,
        ops,
        gs,
        layout,
        GemmEpilogue::default(),
        &shape,
    )
}

pub(crate) fn attention(
    be: &CudaBackend,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    scale: f32,
) -> Result<CudaTensor> {
    let AttentionDims {
        b: bsz,
        h,
        lq,
        lk,
        d,
        dv,
    } = attention_dims(q.shape(), k.shape(), v.shape())?;
    let bh = bsz * h;
    let out = promote(&[q, k, v]);
    let flash_ok = dv == d
        && lk >= 1
        && traits_for(d as u64, out).is_ok()
        && (1..=65_535).contains(&bsz)
        && (1..=65_535).contains(&h);
    if flash_ok {
        // Mixed dtypes run in the promoted one (a bf16 operand widened to f32 is exact).
        let (qc, kc, vc) = (
            be.as_dtype(q, out)?,
            be.as_dtype(k, out)?,
            be.as_dtype(v, out)?,
        );
        let mut o = be.alloc(&[bsz, h, lq, dv], out)?;
        if o.elem_count() > 0 {
            let shape = AttentionShape {
                batch: bsz as u64,
                heads: h as u64,
                lq: lq as u64,
                lk: lk as u64,
                d: d as u64,
            };
            flash::attention(
                be.device(),
                qc.buf(),
                kc.buf(),
                vc.buf(),
                o.buf_mut()?,
                shape,
                AttnLayout::Bhld,
                scale,
                out,
            )?;
        }
        return Ok(o);
    }
    // Composed (only shapes no flash entry takes: Dv != D, D > 160, Lk = 0, B or H > 65535).
    if out == DType::F32 {
        // scores (BH, Lq, Lk) = q.k^T on linear_v1_f32 (k is the (N, K) operand), softmax(scale ·
        // scores) in f32, then P.V on matmul_v1_f32 (v read as (K, N)): f32-accurate products
        // (docs/kernels.md Numerics), no split copies and no transpose of v.
        let f = |t: &CudaTensor| be.as_dtype(t, DType::F32);
        let (qf, kf, vf) = (f(q)?, f(k)?, f(v)?);
        let gs = GemmShape::new(bh, lq, lk, d);
        let ops = GemmF32Operands::plain(&qf, &kf);
        let layout = GemmLayout::contiguous(GemmOp::Linear, gs, false, false);
        let epi = GemmEpilogue::default();
        let s = gemm::gemm_f32(be, GemmOp::Linear, ops, gs, layout, epi, &[bsz, h, lq, lk])?;
        let p = softmax::softmax_last(be, &s, scale)?;
        let gs = GemmShape::new(bh, lq, dv, lk);
        let ops = GemmF32Operands::plain(&p, &vf);
        let layout = GemmLayout::contiguous(GemmOp::Matmul, gs, false, false);
        return gemm::gemm_f32(be, GemmOp::Matmul, ops, gs, layout, epi, &[bsz, h, lq, dv]);
    }
    let (qb, kb, vb) = (q.clone(), k.clone(), v.clone());
    // bf16: scores (BH, Lq, Lk) in f32, softmax(scale · scores) in f32, then P (rounded to bf16)
    // · V.
    let s = gemm_nt(
        be,
        &qb,
        &kb,
        None,
        (bh, lq, lk, d),
        false,
        DType::F32,
        &[bsz, h, lq, lk],
    )?;
    let p = softmax::softmax_last(be, &s, scale)?;
    let (ps, vts) = (
        be.as_dtype(&p, DType::Bf16)?,
        layout::permute(be, &vb, &[0, 1, 3, 2])?,
    );
    gemm_nt(
        be,
        &ps,
        &vts,
        None,
        (bh, lq, dv, lk),
        false,
        out,
        &[bsz, h, lq, dv],
    )
}
