//! Region Codebook Attention on CUDA: `rca_temporal_query`, `rca_motion_sum` and `rca_merge` on
//! `kernels/cuda/rca.cu` (one launch each), `rca_attention` on the flash attention kernel with
//! token (`(B, L, H, D)`) strides, so neither the N·L queries nor the output are transposed.
//! Outputs come from `CudaBackend::alloc` only (no host uploads: the sampler step is captured as a
//! CUDA graph). bf16 and f32 (or mixed, promoted) operands take the flash entry of their dtype; head
//! dims over 160 run the composed default.

use anyhow::{Context, Result};
use cyberhost_kernels::attention::{traits_for, AttentionShape};
use cyberhost_kernels::rca::{launch_config, RcaOp, RcaParams};
use cyberhost_kernels::{DType, KernelModule};

use super::attention::{self as flash, AttnLayout};
use super::context::CudaBackend;
use super::tensor::{promote, CudaTensor};
use crate::backends::{composed_rca, TensorLike};

/// Launch `op` with `p` in `dtype`.
fn launch(be: &CudaBackend, op: RcaOp, dtype: DType, p: &RcaParams) -> Result<()> {
    // SAFETY: `RcaParams` mirrors `struct RcaParams` of rca.cu (size asserted in
    // cyberhost-kernels); every address in `p` is a live tensor of this backend in `dtype`
    // whose shape the caller checked against the extents in `p` (composed_rca::check_*).
    unsafe { be.launch(KernelModule::Rca, op.name(), dtype, launch_config(op, p), p) }
        .with_context(|| format!("{} {p:?}", op.name()))
}

pub(crate) fn rca_attention(
    be: &CudaBackend,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    heads: usize,
    scale: f32,
) -> Result<CudaTensor> {
    let (n, l, c, lk) = composed_rca::check_attention(q, k, v, heads)?;
    let d = c / heads;
    let dt = promote(&[q, k, v]);
    let flash_ok = traits_for(d as u64, dt).is_ok() && heads <= 65_535;
    if !flash_ok {
        return composed_rca::rca_attention(be, q, k, v, heads, scale);
    }
    // Mixed dtypes run in the promoted one (a bf16 operand widened to f32 is exact).
    let (q, k, v) = (
        be.as_dtype(q, dt)?,
        be.as_dtype(k, dt)?,
        be.as_dtype(v, dt)?,
    );
    let mut o = be.alloc(&[n, l, c], dt)?;
    if o.elem_count() > 0 {
        let shape = AttentionShape {
            batch: 1,
            heads: heads as u64,
            lq: (n * l) as u64,
            lk: lk as u64,
            d: d as u64,
        };
        flash::attention(
            be.device(),
            q.buf(),
            k.buf(),
            v.buf(),
            o.buf_mut()?,
            shape,
            AttnLayout::Blhd,
            scale,
            dt,
        )?;
    }
    Ok(o)
}

pub(crate) fn rca_temporal_query(
    be: &CudaBackend,
    x: &CudaTensor,
    a_s: &CudaTensor,
    bank: &CudaTensor,
) -> Result<CudaTensor> {
    composed_rca::check_temporal_query(x, a_s, bank)?;
    let dt = promote(&[x, a_s, bank]);
    let (xd, ad, bd) = (
        be.as_dtype(x, dt)?,
        be.as_dtype(a_s, dt)?,
        be.as_dtype(bank, dt)?,
    );
    let q = be.alloc(x.shape(), dt)?;
    if q.elem_count() > 0 {
        let s = x.shape();
        let dims = (s[0] as u64, s[1] as u64, s[2] as u64);
        let frames = bank.shape()[0] as u64;
        let (px, pa, pb) = (be.ptr(&xd), be.ptr(&ad), be.ptr(&bd));
        let pq = be.ptr(&q);
        let p = RcaParams::temporal_query(px, pa, pb, pq, dims, frames)?;
        launch(be, RcaOp::TemporalQuery, dt, &p)?;
    }
    Ok(q)
}

pub(crate) fn rca_motion_sum(
    be: &CudaBackend,
    a_s: &CudaTensor,
    a_t: &CudaTensor,
    f_id: Option<(&CudaTensor, usize)>,
) -> Result<CudaTensor> {
    composed_rca::check_motion_sum(a_s, a_t, f_id)?;
    let mut ops = vec![a_s, a_t];
    ops.extend(f_id.map(|(f, _)| f));
    let dt = promote(&ops);
    let (ad, td) = (be.as_dtype(a_s, dt)?, be.as_dtype(a_t, dt)?);
    let fd = f_id
        .map(|(f, s)| be.as_dtype(f, dt).map(|f| (f, s)))
        .transpose()?;
    let out = be.alloc(a_s.shape(), dt)?;
    if out.elem_count() > 0 {
        let s = a_s.shape();
        let dims = (s[0] as u64, s[1] as u64, s[2] as u64);
        let (pf, rows) = match &fd {
            Some((f, start)) if f.elem_count() > 0 => {
                (be.ptr(f), (*start as u64, (*start + f.shape()[0]) as u64))
            }
            _ => (0, (0, 0)),
        };
        let p = RcaParams::motion_sum(be.ptr(&ad), be.ptr(&td), pf, be.ptr(&out), dims, rows)?;
        launch(be, RcaOp::MotionSum, dt, &p)?;
    }
    Ok(out)
}

/// `rca_merge` on the channels-last trunk: f_in and the mask hidden state channels-last (their
/// `(N, P, C)` / `(N, P, C4)` rows), tokens `(N, P, C)`; returns the channels-last result
/// (`rca_merge_nhwc_v1`, no transpose). One dtype for the activations.
pub(crate) fn rca_merge_nhwc(
    be: &CudaBackend,
    f_in: &CudaTensor,
    tokens: &CudaTensor,
    mask_hidden: &CudaTensor,
    mask_w: &CudaTensor,
    mask_b: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let (n, c, pix, c4) = composed_rca::check_merge(f_in, tokens, mask_hidden, mask_w, mask_b)?;
    let dt = f_in.dtype();
    if !(f_in.is_channels_last() && mask_hidden.is_channels_last())
        || tokens.is_channels_last()
        || tokens.dtype() != dt
        || mask_hidden.dtype() != dt
    {
        anyhow::bail!(
            "rca_merge (channels-last): f_in {f_in:?} and the mask hidden state \
             {mask_hidden:?} must be channels-last and tokens {tokens:?} contiguous, one dtype"
        );
    }
    if (n * pix) as u64 * 32 > u32::MAX as u64 {
        anyhow::bail!(
            "rca_merge (channels-last): {n} x {pix} pixel rows exceed the kernel's 32-bit indices"
        );
    }
    let wd = be.as_dtype(mask_w, dt)?;
    let bd = mask_b.map(|b| be.as_dtype(b, dt)).transpose()?;
    let out = be.alloc(&f_in.storage_shape(), dt)?;
    if out.elem_count() > 0 {
        let p = RcaParams::merge(
            be.ptr(f_in),
            be.ptr(tokens),
            be.ptr(mask_hidden),
            be.ptr(&wd),
            bd.as_ref().map_or(0, |b| be.ptr(b)),
            be.ptr(&out),
            (n as u64, pix as u64, c as u64),
            c4 as u64,
        )?;
        launch(be, RcaOp::MergeNhwc, dt, &p)?;
    }
    out.nhwc_as_channels_last()
}

pub(crate) fn rca_merge(
    be: &CudaBackend,
    f_in: &CudaTensor,
    tokens: &CudaTensor,
    mask_hidden: &CudaTensor,
    mask_w: &CudaTensor,
    mask_b: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let (n, c, pix, c4) = composed_rca::check_merge(f_in, tokens, mask_hidden, mask_w, mask_b)?;
    // the 1x1 conv's weight and bias follow the activations' dtype
    let dt = promote(&[f_in, tokens, mask_hidden]);
    let fd = be.as_dtype(f_in, dt)?;
    let td = be.as_dtype(tokens, dt)?;
    let hd = be.as_dtype(mask_hidden, dt)?;
    let wd = be.as_dtype(mask_w, dt)?;
    let bd = mask_b.map(|b| be.as_dtype(b, dt)).transpose()?;
    let out = be.alloc(f_in.shape(), dt)?;
    if out.elem_count() > 0 {
        let p = RcaParams::merge(
            be.ptr(&fd),
            be.ptr(&td),
            be.ptr(&hd),
            be.ptr(&wd),
            bd.as_ref().map_or(0, |b| be.ptr(b)),
            be.ptr(&out),
            (n as u64, pix as u64, c as u64),
            c4 as u64,
        )?;
        launch(be, RcaOp::Merge, dt, &p)?;
    }
    Ok(out)
}
