//! f32-accurate products on bf16 tensor cores: an f32 operand as bf16 `hi + lo` parts
//! concatenated along the contracted dim, in memory. Used only by `conv2d.rs` (f32 `conv2d`,
//! `conv2d_v1_f32`); f32 `linear` / `matmul` / composed attention take the f32 entries of
//! `gemm.cu`, which split in registers and read each f32 element once (`gemm.rs` `gemm_f32`).

use anyhow::Result;
use cyberhost_kernels::DType;

use super::context::CudaBackend;
use super::tensor::CudaTensor;
use super::{layout, pointwise};
use crate::backends::Binary;

/// An f32 tensor as bf16 `hi + lo` (`hi = bf16(t)`, `lo = bf16(t - hi)`): together ~16
/// significant bits, so tensor-core products of the parts are f32-accurate to ~1e-5 instead of
/// the ~2e-3 of one bf16 rounding. A bf16 tensor is its own `hi` (no `lo`).
pub(crate) fn split_bf16(
    be: &CudaBackend,
    t: &CudaTensor,
) -> Result<(CudaTensor, Option<CudaTensor>)> {
    if t.dtype() == DType::Bf16 {
        return Ok((t.clone(), None));
    }
    let hi = pointwise::cast(be, t, DType::Bf16)?;
    let rest = pointwise::binary(be, t, &hi, Binary::Sub)?; // f32 (mixed dtypes promote)
    let lo = pointwise::cast(be, &rest, DType::Bf16)?;
    Ok((hi, Some(lo)))
}

/// bf16 operands `(a', b')` of a product contracted over `a`'s dim `da` and `b`'s dim `db` with
/// `a'·b' = a·b` to f32 accuracy: f32 operands are split ([`split_bf16`]) and the parts
/// concatenated along the contracted dims, `[a_hi, a_lo]·[b, b]` (one f32 side) or
/// `[a_hi, a_hi, a_lo]·[b_hi, b_lo, b_hi]` (both; the lo·lo term is below f32 rounding). bf16
/// inputs come back unchanged. The K of the product grows 2x or 3x.
pub(crate) fn split_operands(
    be: &CudaBackend,
    a: &CudaTensor,
    b: &CudaTensor,
    da: usize,
    db: usize,
) -> Result<(CudaTensor, CudaTensor)> {
    let (ah, al) = split_bf16(be, a)?;
    let (bh, bl) = split_bf16(be, b)?;
    Ok(match (al, bl) {
        (None, None) => (ah, bh),
        (Some(al), None) => (
            layout::concat(be, &[&ah, &al], da)?,
            layout::concat(be, &[&bh, &bh], db)?,
        ),
        (None, Some(bl)) => (
            layout::concat(be, &[&ah, &ah], da)?,
            layout::concat(be, &[&bh, &bl], db)?,
        ),
        (Some(al), Some(bl)) => (
            layout::concat(be, &[&ah, &ah, &al], da)?,
            layout::concat(be, &[&bh, &bl, &bh], db)?,
        ),
    })
}
