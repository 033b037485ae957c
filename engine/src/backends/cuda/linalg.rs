//! Matrix products on CUDA.
//!
//! bf16 tensors go to the fused launchers: `linear` / `matmul` to `gemm.rs` (`kernels/cuda/gemm.cu`,
//! bias in the epilogue, B `(K, N)` read directly), `conv2d` to `conv2d.rs` (implicit-GEMM NCHW,
//! bias in the epilogue; the backend op lives in `conv2d.rs`), `attention` to
//! `attention.rs` (flash attention, any head dim up to 160, `Dv = D`; f32 and mixed-dtype q / k / v
//! run the f32 flash entries, whose tiles are split into bf16 hi + lo in shared memory, so no
//! score matrix is ever written). f32 tensors keep
//! f32 outputs: `linear` / `matmul` run `kernels/cuda/gemm_bf16.cu` (f32 accumulate and store) on
//! split operands (each f32 operand as bf16 hi + lo parts concatenated along K,
//! [`split_operands`], so the product stays f32-accurate; bf16 weights are exact), `conv2d` runs
//! `conv2d_v1_f32` the same way. Attention shapes no flash entry takes (`Dv != D`, `D > 160`,
//! `Lk = 0`, batch or heads > 65535; none of the model's) are composed: GEMM (f32 scores) ->
//! softmax (`softmax.cu`, scale fused) -> GEMM.

use anyhow::Result;
use cyberhost_kernels::DType;

use super::attention::{self as flash, AttnLayout};
use super::context::CudaBackend;
use super::gemm::{self, GemmExtras};
use super::gemm_bf16::{gemm_nt, MAX_BATCH};
use super::split::split_operands;
use super::tensor::{promote, CudaTensor};
use super::{layout, softmax};
use crate::backends::shape::{
    attention_dims, check_vec, linear_shape, matmul_shape, AttentionDims,
};
use crate::backends::TensorLike;
use cyberhost_kernels::attention::{traits_for, AttentionShape};

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
    let bb = bias.map(|b| be.as_dtype(b, DType::Bf16)).transpose()?;
    if x.dtype() == DType::Bf16 {
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
    // f32 activations: split operands keep the product f32-accurate (docs/kernels.md Numerics).
    let x2 = layout::reshape(x, &[m, k])?;
    let (xs, ws) = split_operands(be, &x2, w, 1, 1)?;
    let k2 = xs.shape()[1];
    gemm_nt(
        be,
        &xs,
        &ws,
        bb.as_ref(),
        (1, m, n, k2),
        true,
        x.dtype(),
        &shape,
    )
}

pub(crate) fn matmul(be: &CudaBackend, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
    let shape = matmul_shape(a.shape(), b.shape())?;
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let batch: usize = a.shape()[..ra - 2].iter().product();
    let out = promote(&[a, b]);
    // Used when `out` is bf16, i.e. both are (f32 takes split operands below).
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
    let mut dims: Vec<usize> = (0..rb).collect();
    dims.swap(rb - 2, rb - 1);
    if out == DType::Bf16 {
        let bt = layout::permute(be, &bb, &dims)?; // (.., N, K)
        return gemm_nt(be, &ab, &bt, None, (batch, m, n, k), false, out, &shape);
    }
    // f32: split operands (docs/kernels.md Numerics), contracted over the last dims.
    let bt = layout::permute(be, b, &dims)?; // (.., N, K) in b's dtype
    let (a3, bt3) = (
        layout::reshape(a, &[batch, m, k])?,
        layout::reshape(&bt, &[batch, n, k])?,
    );
    let (asp, bsp) = split_operands(be, &a3, &bt3, 2, 2)?;
    let k2 = asp.shape()[2];
    gemm_nt(be, &asp, &bsp, None, (batch, m, n, k2), false, out, &shape)
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
    // Composed (only shapes no flash entry takes: Dv != D, D > 160, Lk = 0, B or H > 65535):
    // Used when `out` is bf16, i.e. all three are (f32 inputs take split operands below).
    let (qb, kb, vb) = (q.clone(), k.clone(), v.clone());
    // scores (BH, Lq, Lk) in f32, softmax(scale · scores) in f32, then P·V. bf16 inputs: P rounded
    // to bf16; f32 inputs: q, k, P and v as split operands (docs/kernels.md Numerics).
    let (qs, ks) = if out == DType::F32 {
        split_operands(be, q, k, 3, 3)?
    } else {
        (qb, kb)
    };
    let dq = qs.shape()[3];
    let s = gemm_nt(
        be,
        &qs,
        &ks,
        None,
        (bh, lq, lk, dq),
        false,
        DType::F32,
        &[bsz, h, lq, lk],
    )?;
    let p = softmax::softmax_last(be, &s, scale)?;
    let (ps, vts) = if out == DType::F32 {
        let vt = layout::permute(be, v, &[0, 1, 3, 2])?; // (B, H, Dv, Lk)
        split_operands(be, &p, &vt, 3, 3)?
    } else {
        (
            be.as_dtype(&p, DType::Bf16)?,
            layout::permute(be, &vb, &[0, 1, 3, 2])?,
        )
    };
    let lk2 = ps.shape()[3];
    gemm_nt(
        be,
        &ps,
        &vts,
        None,
        (bh, lq, dv, lk2),
        false,
        out,
        &[bsz, h, lq, dv],
    )
}
