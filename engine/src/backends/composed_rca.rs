//! The Region Codebook Attention primitives of [`Backend`] composed from the unfused ops (the
//! trait's default bodies: the CPU reference keeps them, bit for bit the op sequence
//! `models::cyberhost::rca` ran before they existed), plus the shape rules every backend checks.
//! CUDA runs each as one launch (`kernels/cuda/rca.cu`, flash attention on token layouts).

use anyhow::{bail, Result};

use super::{Backend, Binary, Conv2dParams, TensorLike, Unary};

/// `rca_attention` operands: q `(N, L, C)`, k and v `(Lk, C)`, `heads | C`, `Lk ≥ 1`.
/// Returns (N, L, C, Lk).
pub fn check_attention<T: TensorLike>(
    q: &T,
    k: &T,
    v: &T,
    heads: usize,
) -> Result<(usize, usize, usize, usize)> {
    let (q, k, v) = (q.shape(), k.shape(), v.shape());
    let ok = q.len() == 3
        && k.len() == 2
        && k == v
        && k[1] == q[2]
        && k[0] >= 1
        && heads >= 1
        && q[2] % heads == 0;
    if !ok {
        bail!(
            "rca_attention: q {q:?}, k {k:?}, v {v:?} must be (N, L, C), (Lk, C), (Lk, C) with Lk ≥ 1 and C divisible by {heads} heads"
        );
    }
    Ok((q[0], q[1], q[2], k[0]))
}

/// `rca_temporal_query` operands: x and a_s `(N, L, C)`, bank `(F, C)`, F ≥ 1.
pub fn check_temporal_query<T: TensorLike>(x: &T, a_s: &T, bank: &T) -> Result<()> {
    let (x, a_s, bank) = (x.shape(), a_s.shape(), bank.shape());
    if x.len() != 3 || a_s != x || bank.len() != 2 || bank[1] != x[2] || bank[0] == 0 {
        bail!(
            "rca_temporal_query: x {x:?}, a_s {a_s:?} must be equal (N, L, C) and the bank {bank:?} (F, C) with F ≥ 1"
        );
    }
    Ok(())
}

/// `rca_motion_sum` operands: a_s and a_t `(N, L, C)`, f_id `(R, L, C)` added to rows
/// `start..start + R` (within N).
pub fn check_motion_sum<T: TensorLike>(a_s: &T, a_t: &T, f_id: Option<(&T, usize)>) -> Result<()> {
    let (a_s, a_t) = (a_s.shape(), a_t.shape());
    let f_id = f_id.map(|(f, start)| (f.shape(), start));
    if a_s.len() != 3 || a_t != a_s {
        bail!("rca_motion_sum: a_s {a_s:?} and a_t {a_t:?} must be equal (N, L, C)");
    }
    if let Some((f, start)) = f_id {
        if f.len() != 3 || f[1..] != a_s[1..] || start + f[0] > a_s[0] {
            bail!(
                "rca_motion_sum: f_id {f:?} at row {start} must be (R, {}, {}) within the {} rows",
                a_s[1],
                a_s[2],
                a_s[0]
            );
        }
    }
    Ok(())
}

/// `rca_merge` operands: f_in `(N, C, h, w)`, tokens `(N, h·w, C)`, mask_hidden `(N, C4, h, w)`,
/// mask_w `(1, C4, 1, 1)`, mask_b `(1)`. Returns (N, C, h·w, C4).
pub fn check_merge<T: TensorLike>(
    f_in: &T,
    tokens: &T,
    hidden: &T,
    w: &T,
    b: Option<&T>,
) -> Result<(usize, usize, usize, usize)> {
    let (f_in, tokens, hidden, w) = (f_in.shape(), tokens.shape(), hidden.shape(), w.shape());
    let b = b.map(|b| b.shape());
    let ok = f_in.len() == 4
        && tokens == [f_in[0], f_in[2] * f_in[3], f_in[1]]
        && hidden.len() == 4
        && hidden[0] == f_in[0]
        && hidden[2..] == f_in[2..]
        && w == [1, hidden[1], 1, 1]
        && !matches!(b, Some(b) if b.iter().product::<usize>() != 1);
    if !ok {
        bail!(
            "rca_merge: f_in {f_in:?}, tokens {tokens:?}, mask hidden {hidden:?}, mask conv2 w {w:?} b {b:?} must be (N, C, h, w), (N, h·w, C), (N, C4, h, w), (1, C4, 1, 1), (1)"
        );
    }
    Ok((f_in[0], f_in[1], f_in[2] * f_in[3], hidden[1]))
}

/// (L, C) → (1, heads, L, d): `reshape`, `permute`, `reshape`.
fn split_heads<B: Backend>(be: &B, t: &B::Tensor, heads: usize) -> Result<B::Tensor> {
    let (l, c) = (t.shape()[0], t.shape()[1]);
    let d = c / heads;
    let t = be.reshape(t, &[l, heads, d])?;
    let t = be.permute(&t, &[1, 0, 2])?;
    be.reshape(&t, &[1, heads, l, d])
}

/// [`Backend::rca_attention`]: the N·L queries as one sequence per head (`split_heads` ×3,
/// `attention`, merge heads with `permute`).
pub fn rca_attention<B: Backend>(
    be: &B,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
    heads: usize,
    scale: f32,
) -> Result<B::Tensor> {
    let (n, l, c, _) = check_attention(q, k, v, heads)?;
    let d = c / heads;
    let q = split_heads(be, &be.reshape(q, &[n * l, c])?, heads)?;
    let k = split_heads(be, k, heads)?;
    let v = split_heads(be, v, heads)?;
    let o = be.attention(&q, &k, &v, scale)?; // (1, heads, N·L, d)
    let o = be.reshape(&o, &[heads, n * l, d])?;
    let o = be.permute(&o, &[1, 0, 2])?;
    be.reshape(&o, &[n, l, c])
}

/// [`Backend::rca_temporal_query`]: `index_select` the bank rows, `add`, `add`.
pub fn rca_temporal_query<B: Backend>(
    be: &B,
    x: &B::Tensor,
    a_s: &B::Tensor,
    bank: &B::Tensor,
) -> Result<B::Tensor> {
    check_temporal_query(x, a_s, bank)?;
    let (n, c, frames) = (x.shape()[0], x.shape()[2], bank.shape()[0]);
    let slots: Vec<usize> = (0..n).map(|i| i % frames).collect();
    let t_f = be.reshape(&be.index_select(bank, 0, &slots)?, &[n, 1, c])?;
    be.binary(&be.binary(x, a_s, Binary::Add)?, &t_f, Binary::Add)
}

/// [`Backend::rca_motion_sum`]: `add`; with identity rows `narrow`, `add`, `narrow` the other
/// rows and `concat`.
pub fn rca_motion_sum<B: Backend>(
    be: &B,
    a_s: &B::Tensor,
    a_t: &B::Tensor,
    f_id: Option<(&B::Tensor, usize)>,
) -> Result<B::Tensor> {
    check_motion_sum(a_s, a_t, f_id)?;
    let sum = be.binary(a_s, a_t, Binary::Add)?;
    let Some((f, start)) = f_id.filter(|(f, _)| f.shape()[0] > 0) else {
        return Ok(sum);
    };
    let (n, len) = (a_s.shape()[0], f.shape()[0]);
    let end = start + len;
    let mid = be.binary(&be.narrow(&sum, 0, start, len)?, f, Binary::Add)?;
    let pre = (start > 0)
        .then(|| be.narrow(&sum, 0, 0, start))
        .transpose()?;
    let post = (end < n)
        .then(|| be.narrow(&sum, 0, end, n - end))
        .transpose()?;
    let mut parts = Vec::with_capacity(3);
    if let Some(p) = &pre {
        parts.push(p);
    }
    parts.push(&mid);
    if let Some(p) = &post {
        parts.push(p);
    }
    be.concat(&parts, 0)
}

/// [`Backend::rca_merge`]: `unary(Silu)`, mask conv2 (`conv2d` 1×1), `unary(Sigmoid)`, tokens to
/// NCHW (`permute`), `mul`, `add`.
pub fn rca_merge<B: Backend>(
    be: &B,
    f_in: &B::Tensor,
    tokens: &B::Tensor,
    mask_hidden: &B::Tensor,
    mask_w: &B::Tensor,
    mask_b: Option<&B::Tensor>,
) -> Result<B::Tensor> {
    check_merge(f_in, tokens, mask_hidden, mask_w, mask_b)?;
    let out = be.reshape(&be.permute(tokens, &[0, 2, 1])?, f_in.shape())?;
    let m = be.unary(mask_hidden, Unary::Silu)?;
    let m = be.conv2d(&m, mask_w, mask_b, Conv2dParams::new(1, 0))?;
    let m = be.unary(&m, Unary::Sigmoid)?;
    be.binary(f_in, &be.binary(&m, &out, Binary::Mul)?, Binary::Add)
}
