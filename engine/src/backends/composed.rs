//! The fused primitives of [`Backend`] composed from the unfused ones: the trait's default
//! bodies (the CPU reference keeps them, so fused and unfused models agree bit for bit there),
//! and the fallback of fused backends for shapes their kernels do not take.

use anyhow::{bail, Result};

use super::{Backend, Binary, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike, Unary};

/// (N·F, C, H, W) planes with `frames` = F → (N, F, C, H·W); errors when F does not divide N·F.
fn planes_dims(op: &str, shape: &[usize], frames: usize) -> Result<[usize; 4]> {
    match *shape {
        [nf, c, h, w] if frames > 0 && nf % frames == 0 => Ok([nf / frames, frames, c, h * w]),
        _ => bail!("{op}: planes {shape:?} must be (N·F, C, H, W) with F = {frames} dividing N·F"),
    }
}

/// [`Backend::group_norm_tokens`]: (N, F, C, H, W) `permute` to (N, C, F, H, W), `group_norm`,
/// `permute` to (N, H, W, F, C).
pub fn group_norm_tokens<B: Backend>(
    be: &B,
    x: &B::Tensor,
    frames: usize,
    groups: usize,
    gamma: Option<&B::Tensor>,
    beta: Option<&B::Tensor>,
    eps: f32,
) -> Result<B::Tensor> {
    let [n, f, c, s] = planes_dims("group_norm_tokens", x.shape(), frames)?;
    let (hh, ww) = (x.shape()[2], x.shape()[3]);
    let h = be.reshape(x, &[n, f, c, hh, ww])?;
    let h = be.permute(&h, &[0, 2, 1, 3, 4])?; // (N, C, F, H, W)
    let h = be.group_norm(&h, groups, gamma, beta, eps)?;
    let h = be.permute(&h, &[0, 3, 4, 2, 1])?; // (N, H, W, F, C)
    be.reshape(&h, &[n, s, f, c])
}

/// The row table of [`Backend::layer_norm_add`]: `table` `(L, C)` or `(1, .., 1, L, C)` for x
/// `(.., L, C)` (rank ≥ 2); returns L. Errors name the shapes.
pub fn layer_norm_add_rows(x: &[usize], table: &[usize]) -> Result<usize> {
    let (r, t) = (x.len(), table.len());
    let ok = r >= 2
        && (2..=r).contains(&t)
        && table[t - 2..] == x[r - 2..]
        && table[..t - 2].iter().all(|&d| d == 1);
    if !ok {
        bail!(
            "layer_norm_add: the row table {table:?} must be (L, C) (with leading 1s) for x \
             {x:?} (.., L, C)"
        );
    }
    Ok(table[t - 2])
}

/// [`Backend::layer_norm_add`]: `layer_norm`, then `add` the row table (broadcast over the leading
/// dims).
pub fn layer_norm_add<B: Backend>(
    be: &B,
    x: &B::Tensor,
    gamma: Option<&B::Tensor>,
    beta: Option<&B::Tensor>,
    eps: f32,
    table: &B::Tensor,
) -> Result<B::Tensor> {
    layer_norm_add_rows(x.shape(), table.shape())?;
    let n = be.layer_norm(x, gamma, beta, eps)?;
    be.binary(&n, table, Binary::Add)
}

/// [`Backend::tokens_planes_add`]: (N, H, W, F, C) `permute` to (N, F, C, H, W), `add` the residual.
pub fn tokens_planes_add<B: Backend>(
    be: &B,
    tokens: &B::Tensor,
    residual: &B::Tensor,
    frames: usize,
) -> Result<B::Tensor> {
    let [n, f, c, s] = planes_dims("tokens_planes_add", residual.shape(), frames)?;
    if tokens.elem_count() != n * s * f * c {
        bail!(
            "tokens_planes_add: tokens {:?} do not hold the (N, H·W, F, C) = ({n}, {s}, {f}, {c}) \
             of residual {:?}",
            tokens.shape(),
            residual.shape()
        );
    }
    let (hh, ww) = (residual.shape()[2], residual.shape()[3]);
    let t = be.reshape(tokens, &[n, hh, ww, f, c])?;
    let t = be.permute(&t, &[0, 3, 4, 1, 2])?; // (N, F, C, H, W)
    let t = be.reshape(&t, residual.shape())?;
    be.binary(&t, residual, Binary::Add)
}

/// [`Backend::tokens_planes_add_concat`]: `tokens_planes_add`, then `concat` with `tail` along
/// the channels.
pub fn tokens_planes_add_concat<B: Backend>(
    be: &B,
    tokens: &B::Tensor,
    residual: &B::Tensor,
    frames: usize,
    tail: &B::Tensor,
) -> Result<B::Tensor> {
    let y = be.tokens_planes_add(tokens, residual, frames)?;
    be.concat(&[&y, tail], 1)
}

/// [`Backend::linear_tokens_planes_add`]: `linear`, then `tokens_planes_add` (with a tail:
/// `tokens_planes_add_concat`).
#[allow(clippy::too_many_arguments)]
pub fn linear_tokens_planes_add<B: Backend>(
    be: &B,
    tokens: &B::Tensor,
    w: &B::Tensor,
    bias: Option<&B::Tensor>,
    residual: &B::Tensor,
    frames: usize,
    tail: Option<&B::Tensor>,
) -> Result<B::Tensor> {
    let y = be.linear(tokens, w, bias)?;
    match tail {
        Some(t) => be.tokens_planes_add_concat(&y, residual, frames, t),
        None => be.tokens_planes_add(&y, residual, frames),
    }
}

/// [`Backend::group_norm_conv1x1_tokens`]: `group_norm`, the 1x1 `conv2d`, `permute` to
/// (N, H, W, O).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_conv1x1_tokens<B: Backend>(
    be: &B,
    x: &B::Tensor,
    groups: usize,
    gamma: Option<&B::Tensor>,
    beta: Option<&B::Tensor>,
    eps: f32,
    w: &B::Tensor,
    bias: Option<&B::Tensor>,
) -> Result<B::Tensor> {
    let h = be.group_norm(x, groups, gamma, beta, eps)?;
    let h = be.conv2d(&h, w, bias, Conv2dParams::default())?;
    let s = h.shape().to_vec();
    if s.len() != 4 {
        bail!(
            "group_norm_conv1x1_tokens: x {:?} must be (N, C, H, W)",
            x.shape()
        );
    }
    let h = be.permute(&h, &[0, 2, 3, 1])?;
    be.reshape(&h, &[s[0], s[2] * s[3], s[1]])
}

/// [`Backend::tokens_conv1x1_planes_add`]: tokens read as (N, H, W, C), `permute` to planes, the
/// 1x1 `conv2d_ext` with the residual in its epilogue.
pub fn tokens_conv1x1_planes_add<B: Backend>(
    be: &B,
    tokens: &B::Tensor,
    w: &B::Tensor,
    bias: Option<&B::Tensor>,
    residual: &B::Tensor,
) -> Result<B::Tensor> {
    let (rs, ws) = (residual.shape(), w.shape());
    if rs.len() != 4 || ws.len() != 4 {
        bail!(
            "tokens_conv1x1_planes_add: residual {rs:?} must be (N, O, H, W) and w {ws:?} (O, C, 1, 1)"
        );
    }
    let h = be.reshape(tokens, &[rs[0], rs[2], rs[3], ws[1]])?;
    let h = be.permute(&h, &[0, 3, 1, 2])?;
    let epi = ConvEpilogue {
        residual: Some(residual),
        ..Default::default()
    };
    be.conv2d_ext(&h, w, bias, Conv2dParams::default(), epi)
}

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

/// `conv2d`, [`add` temb as (N, C, 1, 1)], [`add` residual (broadcast over the batch when it is
/// one image)], [`affine` scale].
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
        check_conv_residual(r.shape(), y.shape())?;
        y = be.binary(r, &y, Binary::Add)?;
    }
    if epi.scale != 1.0 {
        y = be.affine(&y, epi.scale, 0.0)?;
    }
    Ok(y)
}

/// `conv2d_ext`, then `concat` with `tail` along the channels.
pub fn conv2d_concat<B: Backend>(
    be: &B,
    x: &B::Tensor,
    w: &B::Tensor,
    bias: Option<&B::Tensor>,
    p: Conv2dParams,
    epi: ConvEpilogue<'_, B::Tensor>,
    tail: &B::Tensor,
) -> Result<B::Tensor> {
    let y = be.conv2d_ext(x, w, bias, p, epi)?;
    be.concat(&[&y, tail], 1)
}

/// A `conv2d_ext` residual is the output's shape `(N, C_out, Ho, Wo)`, or one image
/// `(1, C_out, Ho, Wo)` broadcast over the batch; returns whether it broadcasts (N > 1).
pub fn check_conv_residual(r: &[usize], out: &[usize]) -> Result<bool> {
    if r == out {
        return Ok(false);
    }
    if r.len() == 4 && out.len() == 4 && r[0] == 1 && r[1..] == out[1..] {
        return Ok(true);
    }
    bail!(
        "conv2d_ext: residual {r:?} is neither the output's shape {out:?} nor one image (1, {}, {}, {}) of it",
        out.get(1).copied().unwrap_or(0),
        out.get(2).copied().unwrap_or(0),
        out.get(3).copied().unwrap_or(0)
    );
}

/// diffusers `get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift, scale=1,
/// max_period=10000)` on the host, f32 arithmetic in torch's order → (N, dim) row-major.
/// An odd `dim` leaves the last column zero (torch pads (0, 1)).
pub fn timestep_embedding_host(
    timesteps: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f32,
) -> Vec<f32> {
    let half = dim / 2;
    let ln_max = -(10000f64.ln() as f32);
    // exponent = -ln(10000) * arange(half) / (half - shift); freqs = exp(exponent)  (all f32)
    let freqs: Vec<f32> = (0..half)
        .map(|i| {
            let e = ln_max * i as f32;
            let e = e / (half as f32 - downscale_freq_shift);
            (e as f64).exp() as f32
        })
        .collect();
    let mut out = vec![0f32; timesteps.len() * dim];
    for (n, &t) in timesteps.iter().enumerate() {
        let row = &mut out[n * dim..(n + 1) * dim];
        for (i, &f) in freqs.iter().enumerate() {
            let arg = t * f;
            let (s, c) = ((arg as f64).sin() as f32, (arg as f64).cos() as f32);
            if flip_sin_to_cos {
                row[i] = c;
                row[half + i] = s;
            } else {
                row[i] = s;
                row[half + i] = c;
            }
        }
    }
    out
}

/// [`Backend::timestep_embedding`] through the host: `to_f32(t)`, [`timestep_embedding_host`],
/// `from_f32`.
pub fn timestep_embedding<B: Backend>(
    be: &B,
    t: &B::Tensor,
    dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f32,
) -> Result<B::Tensor> {
    if t.rank() != 1 {
        bail!("timestep_embedding: t {:?} must be (N,)", t.shape());
    }
    let ts = be.to_f32(t)?;
    let data = timestep_embedding_host(&ts, dim, flip_sin_to_cos, downscale_freq_shift);
    be.from_f32(&[ts.len(), dim], &data)
}

/// Length of the coefficient vector of [`Backend::cfg_ddim_step`].
pub const CFG_DDIM_COEFFS: usize = 8;

/// One element of [`Backend::cfg_ddim_step`]: `c` is the coefficient vector
/// `[guidance, √ᾱ_t, √(1−ᾱ_t), √ᾱ_prev, direction, prediction (0 ε, 1 v, 2 x₀), clip_lo, clip_hi]`.
#[inline]
pub fn cfg_ddim_one(cond: f32, uncond: f32, z: f32, c: &[f32; CFG_DDIM_COEFFS]) -> f32 {
    let m = uncond + c[0] * (cond - uncond);
    let (sa, sb) = (c[1], c[2]);
    let (mut x0, eps) = match c[5] as i32 {
        0 => ((z - sb * m) / sa, m),
        1 => (sa * z - sb * m, sa * m + sb * z),
        _ => (m, (z - sa * m) / sb),
    };
    // torch.clamp: min(max(x, lo), hi); ±inf when clip_sample is off.
    if x0 < c[6] {
        x0 = c[6];
    }
    if x0 > c[7] {
        x0 = c[7];
    }
    c[3] * x0 + c[4] * eps
}

/// Shapes of [`Backend::cfg_ddim_step`]: `out` (2, C, S, *rest), `z` (1, C, F, *rest) with
/// `frame_offset + F <= S`, `coeffs` (8,). Returns (C, S, F, inner = prod(rest)).
pub fn check_cfg_ddim(
    out: &[usize],
    z: &[usize],
    frame_offset: usize,
    coeffs: &[usize],
) -> Result<(usize, usize, usize, usize)> {
    if out.len() < 3 || out[0] != 2 || z.len() != out.len() || z[0] != 1 || z[1] != out[1] {
        bail!(
            "cfg_ddim_step: model output {out:?} must be (2, C, S, ..) (cond row, uncond row) and \
             z {z:?} (1, C, F, ..) with the same C and trailing dims"
        );
    }
    if out[3..] != z[3..] || frame_offset + z[2] > out[2] {
        bail!(
            "cfg_ddim_step: frames {frame_offset}..{} of the model output {out:?} do not match z {z:?}",
            frame_offset + z[2]
        );
    }
    if coeffs != [CFG_DDIM_COEFFS] {
        bail!("cfg_ddim_step: coeffs {coeffs:?} must be ({CFG_DDIM_COEFFS},)");
    }
    Ok((out[1], out[2], z[2], out[3..].iter().product()))
}

/// [`Backend::cfg_ddim_step`] through the host.
pub fn cfg_ddim_step<B: Backend>(
    be: &B,
    out: &B::Tensor,
    z: &B::Tensor,
    frame_offset: usize,
    coeffs: &B::Tensor,
) -> Result<B::Tensor> {
    let (c, s, f, inner) = check_cfg_ddim(out.shape(), z.shape(), frame_offset, coeffs.shape())?;
    let (o, zz, cv) = (be.to_f32(out)?, be.to_f32(z)?, be.to_f32(coeffs)?);
    let cv: [f32; CFG_DDIM_COEFFS] = cv.try_into().expect("checked length");
    let mut res = vec![0f32; zz.len()];
    for ch in 0..c {
        for fr in 0..f {
            for i in 0..inner {
                let zi = (ch * f + fr) * inner + i;
                let oi = (ch * s + frame_offset + fr) * inner + i;
                res[zi] = cfg_ddim_one(o[oi], o[c * s * inner + oi], zz[zi], &cv);
            }
        }
    }
    be.from_f32_full(z.shape(), &res)
}
