//! [`Backend::attention_heads`] composed from the unfused ops (the trait's default body: the CPU
//! reference keeps it, bit for bit the op sequence `models::attention` ran before the op existed:
//! row `narrow`s, key/value `concat`s, heads split by `permute`, `attention`, heads merged by
//! `permute`, row `concat`; `attention_heads_packed`: the three `narrow`s of the packed
//! projection, then that), plus the shape rules every backend checks. CUDA runs it as one flash
//! launch per row range reading the token layouts through strides
//! (`backends::cuda::attention::attention_heads`).

use std::ops::Range;

use anyhow::{bail, Context, Result};

use super::{Backend, TensorLike};

/// Extra keys / values and the batch rows that attend to them (`attention_heads`' `extra`).
pub type ExtraRows<'a, T> = Option<(&'a T, &'a T, Range<usize>)>;

/// The operands of `attention_heads`: q `(N, Lq, C)`, k / v `(N, Lk, C)`, `heads | C`, extra keys
/// / values `(1 or rows.len(), Le, C)` for rows inside `0..N`. Returns (N, Lq, Lk, C).
pub fn check_attention_heads<T: TensorLike>(
    q: &T,
    k: &T,
    v: &T,
    extra: Option<(&T, &T, Range<usize>)>,
    heads: usize,
) -> Result<(usize, usize, usize, usize)> {
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    let ok = qs.len() == 3
        && ks.len() == 3
        && ks == vs
        && ks[0] == qs[0]
        && ks[2] == qs[2]
        && heads >= 1
        && qs[2] % heads == 0;
    if !ok {
        bail!(
            "attention_heads: q {qs:?}, k {ks:?}, v {vs:?} must be (N, Lq, C), (N, Lk, C), (N, Lk, C) \
             with C divisible by {heads} heads"
        );
    }
    check_extra(qs[0], qs[2], extra)?;
    Ok((qs[0], qs[1], ks[1], qs[2]))
}

/// Extra keys / values `(1 or rows.len(), Le, c)` for rows inside `0..n`.
fn check_extra<T: TensorLike>(
    n: usize,
    c: usize,
    extra: Option<(&T, &T, Range<usize>)>,
) -> Result<()> {
    if let Some((ke, ve, rows)) = extra {
        let (es, fs) = (ke.shape(), ve.shape());
        if rows.start > rows.end || rows.end > n {
            bail!("Attention: extra key/value rows {rows:?} are outside the batch of {n}");
        }
        let b = es.first().copied().unwrap_or(0);
        if es.len() != 3 || es != fs || es[2] != c || (b != 1 && b != rows.len()) {
            bail!(
                "attention_heads: extra keys {es:?} / values {fs:?} must be (1 or {}, Le, {c})",
                rows.len(),
            );
        }
    }
    Ok(())
}

/// The operands of `attention_heads_packed`: qkv `(N, L, 3C)`, `heads | C`, extra keys / values
/// as in [`check_attention_heads`]. Returns (N, L, C).
pub fn check_attention_heads_packed<T: TensorLike>(
    qkv: &T,
    extra: Option<(&T, &T, Range<usize>)>,
    heads: usize,
) -> Result<(usize, usize, usize)> {
    let s = qkv.shape();
    if s.len() != 3 || !s[2].is_multiple_of(3) || heads == 0 || !(s[2] / 3).is_multiple_of(heads) {
        bail!(
            "attention_heads_packed: qkv {s:?} must be (N, L, 3C) (q, k, v side by side) with C \
             divisible by {heads} heads"
        );
    }
    check_extra(s[0], s[2] / 3, extra)?;
    Ok((s[0], s[1], s[2] / 3))
}

/// [`Backend::attention_heads_packed`]: q, k, v `narrow`ed out of the packed rows, then
/// [`Backend::attention_heads`].
pub fn attention_heads_packed<B: Backend>(
    be: &B,
    qkv: &B::Tensor,
    extra: Option<(&B::Tensor, &B::Tensor, Range<usize>)>,
    heads: usize,
    scale: f32,
) -> Result<B::Tensor> {
    let (.., c) = check_attention_heads_packed(qkv, extra.clone(), heads)?;
    let part = |i: usize| be.narrow(qkv, 2, i * c, c);
    let (q, k, v) = (part(0)?, part(1)?, part(2)?);
    be.attention_heads(&q, &k, &v, extra, heads, scale)
}

/// [`Backend::attention_heads`]: per row range `narrow` q, k, v (and `concat` the extra keys /
/// values after the own ones), split heads, `attention`, merge heads; the ranges `concat`ed.
pub fn attention_heads<B: Backend>(
    be: &B,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
    extra: Option<(&B::Tensor, &B::Tensor, Range<usize>)>,
    heads: usize,
    scale: f32,
) -> Result<B::Tensor> {
    let (n, ..) = check_attention_heads(q, k, v, extra.clone(), heads)?;
    let Some((ke, ve, rows)) = extra else {
        return sdpa(be, q, k, v, heads, scale);
    };
    let nr = rows.len();
    let k_ref = broadcast_rows(be, ke, nr).context("reference keys")?;
    let v_ref = broadcast_rows(be, ve, nr).context("reference values")?;
    let mut parts = Vec::new();
    if rows.start > 0 {
        parts.push(sdpa_rows(be, (q, k, v), 0..rows.start, None, heads, scale)?);
    }
    if nr > 0 {
        let e = Some((&k_ref, &v_ref));
        parts.push(sdpa_rows(be, (q, k, v), rows.clone(), e, heads, scale)?);
    }
    if rows.end < n {
        parts.push(sdpa_rows(be, (q, k, v), rows.end..n, None, heads, scale)?);
    }
    let refs: Vec<&B::Tensor> = parts.iter().collect();
    if refs.len() == 1 {
        Ok(parts.pop().unwrap())
    } else {
        be.concat(&refs, 0)
    }
}

/// Attention for batch rows `rows`, keys/values optionally extended by `extra` (rows.len(), Le, C).
fn sdpa_rows<B: Backend>(
    be: &B,
    (q, k, v): (&B::Tensor, &B::Tensor, &B::Tensor),
    rows: Range<usize>,
    extra: Option<(&B::Tensor, &B::Tensor)>,
    heads: usize,
    scale: f32,
) -> Result<B::Tensor> {
    let n = q.shape()[0];
    let take = |t: &B::Tensor| -> Result<B::Tensor> {
        if rows.start == 0 && rows.end == n {
            Ok(t.clone())
        } else {
            be.narrow(t, 0, rows.start, rows.len())
        }
    };
    let (q, mut k, mut v) = (take(q)?, take(k)?, take(v)?);
    if let Some((ke, ve)) = extra {
        k = be.concat(&[&k, ke], 1)?;
        v = be.concat(&[&v, ve], 1)?;
    }
    sdpa(be, &q, &k, &v, heads, scale)
}

/// q (N, Lq, C), k/v (N, Lk, C) → (N, Lq, C), heads split and merged.
fn sdpa<B: Backend>(
    be: &B,
    q: &B::Tensor,
    k: &B::Tensor,
    v: &B::Tensor,
    heads: usize,
    scale: f32,
) -> Result<B::Tensor> {
    let h = heads;
    let (n, lq, inner) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let lk = k.shape()[1];
    let d = inner / h;
    let split = |t: &B::Tensor, l: usize| -> Result<B::Tensor> {
        let t = be.reshape(t, &[n, l, h, d])?;
        be.permute(&t, &[0, 2, 1, 3])
    };
    let (qh, kh, vh) = (split(q, lq)?, split(k, lk)?, split(v, lk)?);
    let o = be.attention(&qh, &kh, &vh, scale)?;
    let o = be.permute(&o, &[0, 2, 1, 3])?;
    be.reshape(&o, &[n, lq, inner])
}

/// (1, L, C) → (n, L, C) by repeating; (n, L, C) passes through.
fn broadcast_rows<B: Backend>(be: &B, t: &B::Tensor, n: usize) -> Result<B::Tensor> {
    let b = t.shape()[0];
    if b == n {
        Ok(t.clone())
    } else if b == 1 {
        be.index_select(t, 0, &vec![0; n])
    } else {
        bail!("extra key/value tokens have batch {b}; expected 1 or the number of rows ({n})")
    }
}
