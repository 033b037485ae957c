//! The fused primitives of [`Backend`] composed from the unfused ones: the trait's default
//! bodies (the CPU reference keeps them, so fused and unfused models agree bit for bit there),
//! and the fallback of fused backends for shapes their kernels do not take.

use anyhow::{bail, Result};

use super::{Backend, Binary, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike, Unary};

/// `act(group_norm(x))`: `group_norm`, then `unary`.
pub fn group_norm_act<B: Backend>(
    be: &B,
    x: &B::Tensor,
    groups: usize,
    gamma: Option<&B::Tensor>,
    beta: Option<&B::Tensor>,
    eps: f32,
    act: Option<Unary>,
) -> Result<B::Tensor> {
    let y = be.group_norm(x, groups, gamma, beta, eps)?;
    match act {
        Some(op) => be.unary(&y, op),
        None => Ok(y),
    }
}

/// `linear`, [GEGLU: `narrow` ×2, `unary(Gelu)`, `mul`], [`add` residual], [`affine` scale].
pub fn linear_ext<B: Backend>(
    be: &B,
    x: &B::Tensor,
    w: &B::Tensor,
    bias: Option<&B::Tensor>,
    epi: LinearEpilogue<'_, B::Tensor>,
) -> Result<B::Tensor> {
    let mut y = be.linear(x, w, bias)?;
    if epi.geglu {
        let last = y.rank() - 1;
        let rows = y.shape()[last];
        if rows % 2 != 0 {
            bail!("linear_ext GEGLU: w has {rows} rows, expected an even number (value and gate halves)");
        }
        let n = rows / 2;
        let a = be.narrow(&y, last, 0, n)?;
        let gate = be.narrow(&y, last, n, n)?;
        let gate = be.unary(&gate, Unary::Gelu)?;
        y = be.binary(&a, &gate, Binary::Mul)?;
    }
    if let Some(r) = epi.residual {
        check_linear_residual(r.shape(), y.shape())?;
        y = be.binary(&y, r, Binary::Add)?;
    }
    if epi.scale != 1.0 {
        y = be.affine(&y, epi.scale, 0.0)?;
    }
    Ok(y)
}

/// A `linear_ext` residual is the output's shape, or one row (all leading dims 1, at most the
/// output's rank) broadcast over every row.
pub fn check_linear_residual(r: &[usize], out: &[usize]) -> Result<()> {
    let row = r.len() <= out.len()
        && r.last() == out.last()
        && r[..r.len().saturating_sub(1)].iter().all(|&d| d == 1);
    if r != out && !row {
        bail!("linear_ext: residual {r:?} is neither the output's shape {out:?} nor one row of it");
    }
    Ok(())
}

/// `conv2d`, [`add` temb as (N, C, 1, 1)], [`add` residual], [`affine` scale].
pub fn conv2d_ext<B: Backend>(
    be: &B,
    x: &B::Tensor,
    w: &B::Tensor,
    bias: Option<&B::Tensor>,
    p: Conv2dParams,
    epi: ConvEpilogue<'_, B::Tensor>,
) -> Result<B::Tensor> {
    let mut y = be.conv2d(x, w, bias, p)?;
    if let Some(t) = epi.temb {
        let (n, c) = (y.shape()[0], y.shape()[1]);
        if t.shape() != [n, c] {
            bail!(
                "conv2d_ext: temb {:?} must be (N, C_out) = ({n}, {c})",
                t.shape()
            );
        }
        let t = be.reshape(t, &[n, c, 1, 1])?;
        y = be.binary(&y, &t, Binary::Add)?;
    }
    if let Some(r) = epi.residual {
        if r.shape() != y.shape() {
            bail!(
                "conv2d_ext: residual {:?} differs from the output {:?}",
                r.shape(),
                y.shape()
            );
        }
        y = be.binary(r, &y, Binary::Add)?;
    }
    if epi.scale != 1.0 {
        y = be.affine(&y, epi.scale, 0.0)?;
    }
    Ok(y)
}
