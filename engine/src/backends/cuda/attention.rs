//! Launchers for `kernels/cuda/attention.cu` (`attention_d{48,64,80,128,160}_v1_{bf16,f32}`): fused
//! flash-style attention forward, `o = softmax(scale * q k^T) v` per (batch, head), on a
//! persistent grid (the device's SMs times the entry's resident blocks, walking the query tiles
//! head-major): the slice launcher [`attention`] and the backend's [`attention_heads`] on token layouts (q, k, v read from
//! the projection outputs and o written where `to_out` reads it, through strides: no head
//! split / merge copies; reference attention's extra keys read from their own (broadcast) tensor
//! and its row ranges addressed by pointer offsets: no narrow / concat / index_select copies);
//! [`attention_heads_packed`] reads self-attention's q, k, v from one packed projection `(N, L,
//! 3C)` through row stride 3C.

use std::ops::Range;

use anyhow::{Context, Result};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr};
use cyberhost_kernels::attention::{
    launch_config, launch_config_short, short_traits, traits_for, AttentionParams, AttentionShape,
    AttnStrides,
};
use cyberhost_kernels::{DType, KernelModule};

use super::attention_sm90;
use super::context::CudaBackend;
use super::tensor::{promote, CudaTensor};
use super::util::check_bytes;
use super::CudaDevice;
use crate::backends::composed_attention::{
    self, check_attention_heads, check_attention_heads_packed,
};
use crate::backends::TensorLike;

/// Operand layout of [`attention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnLayout {
    /// `(B, H, L, D)`.
    Bhld,
    /// `(B, L, H, D)` = `(B, L, H * D)`: projection outputs, no head transpose needed.
    Blhd,
}

/// `o = softmax(scale * q k^T) v` with q `(B, H, Lq, D)`, k / v `(B, H, Lk, D)`, o like q (or all
/// four `(B, L, H, D)` with [`AttnLayout::Blhd`]). Any D in `1..=160` (the model's 40, 64, 80, 128,
/// 160 at full speed; other D take the padded entry above). All four buffers hold `dtype` elements
/// (bf16, or f32 run as bf16 hi + lo tensor-core operands); they may be typed `u8`, `u16`,
/// `half::bf16` or `f32` (sizes checked in bytes).
#[allow(clippy::too_many_arguments)]
pub fn attention<T: DeviceRepr>(
    dev: &CudaDevice,
    q: &CudaSlice<T>,
    k: &CudaSlice<T>,
    v: &CudaSlice<T>,
    o: &mut CudaSlice<T>,
    shape: AttentionShape,
    layout: AttnLayout,
    scale: f32,
    dtype: DType,
) -> Result<()> {
    let s = shape;
    let traits = traits_for(s.d, dtype)?;
    let st = |len: u64| match layout {
        AttnLayout::Bhld => AttnStrides::bhld(s.heads, len, s.d),
        AttnLayout::Blhd => AttnStrides::blhd(s.heads, len, s.d),
    };
    check_bytes("attention q", q, s.batch * s.heads * s.lq * s.d, dtype)?;
    check_bytes("attention k", k, s.batch * s.heads * s.lk * s.d, dtype)?;
    check_bytes("attention v", v, s.batch * s.heads * s.lk * s.d, dtype)?;
    check_bytes("attention o", o, s.batch * s.heads * s.lq * s.d, dtype)?;
    let stream = dev.stream();
    let (pq, _gq) = q.device_ptr(stream);
    let (pk, _gk) = k.device_ptr(stream);
    let (pv, _gv) = v.device_ptr(stream);
    let (po, _go) = o.device_ptr_mut(stream);
    let params = AttentionParams::new(
        [pq, pk, pv, po],
        [st(s.lq), st(s.lk), st(s.lk), st(s.lq)],
        s,
        scale,
    )?;
    // SAFETY: `AttentionParams` mirrors `struct AttentionParams` of attention.cu (size asserted in
    // cyberhost-kernels); q/k/v/o are live `CudaSlice`s of this device whose byte lengths were
    // checked above against B * H * L * D `dtype` elements for the dense layout the strides describe;
    // the entry is the `dtype` one.
    unsafe {
        if try_launch_short(dev, &params, s, dtype)? {
            return Ok(());
        }
        dev.launch(
            KernelModule::Attention,
            traits.entry,
            launch_config(traits, s, dev.sm_count()),
            &params,
        )
    }
    .with_context(|| format!("{} {s:?}", traits.entry))
}

/// Launches `p` (built for `shape`, operands of `dtype`) on the short-sequence entry
/// (`attention_short_d*_v1_bf16`: one warp per (batch, head), every key in registers) when it
/// takes the params (bf16, aligned loads, a head dim with an entry, Lk <= 32 with the extra
/// keys, Lq <= 64: temporal attention over the frames): `Ok(true)`; else launches nothing.
///
/// # Safety
/// `p` must describe live device buffers of this device holding `dtype` elements, with every row,
/// head and batch offset that `shape` and the strides of `p` reach inside them.
pub(crate) unsafe fn try_launch_short(
    dev: &CudaDevice,
    p: &AttentionParams,
    shape: AttentionShape,
    dtype: DType,
) -> Result<bool> {
    let Some(t) = short_traits(p, dtype) else {
        return Ok(false);
    };
    // SAFETY: the caller's contract; the short entries read the same `AttentionParams`.
    unsafe {
        dev.launch(
            KernelModule::Attention,
            t.entry,
            launch_config_short(t, p),
            p,
        )
    }
    .with_context(|| format!("{} {shape:?}", t.entry))?;
    Ok(true)
}

/// [`Backend::attention_heads`](crate::backends::Backend::attention_heads) on CUDA: one flash launch
/// per row range (rows before `extra`'s, its rows with the extra keys as the kernel's second key
/// segment, the rows after), each writing its rows of one `(N, Lq, C)` output; short sequences
/// (Lk <= 32, Lq <= 64: temporal attention) run the short-sequence entry on both kernel sets, and
/// on a Hopper-set device the sm_90a wgmma kernel (`attention_sm90`) runs the other launches it
/// takes. Shapes no flash
/// entry takes (D > 160, Lk = 0, more than 65535 rows or heads, a scale <= 0) run the composed
/// default.
pub(crate) fn attention_heads(
    be: &CudaBackend,
    q: &CudaTensor,
    k: &CudaTensor,
    v: &CudaTensor,
    extra: Option<(&CudaTensor, &CudaTensor, Range<usize>)>,
    heads: usize,
    scale: f32,
) -> Result<CudaTensor> {
    let (n, lq, lk, c) = check_attention_heads(q, k, v, extra.clone(), heads)?;
    let dt = promote_with_extra(&[q, k, v], &extra);
    if !flash_takes(n, lk, c / heads, heads, scale, dt) {
        return composed_attention::attention_heads(be, q, k, v, extra, heads, scale);
    }
    // Mixed dtypes run in the promoted one (a bf16 operand widened to f32 is exact).
    let (q, k, v) = (
        be.as_dtype(q, dt)?,
        be.as_dtype(k, dt)?,
        be.as_dtype(v, dt)?,
    );
    let ops = [&q, &k, &v].map(|t| TokenOperand { t, col: 0, row: c });
    flash_heads(be, ops, (n, lq, lk, c), extra, heads, scale, dt)
}

/// [`Backend::attention_heads_packed`](crate::backends::Backend::attention_heads_packed) on CUDA:
/// [`attention_heads`]'s launches with q, k, v read in place from the packed projection `(N, L,
/// 3C)` (columns 0, C, 2C; row stride 3C): no split copies. Shapes no flash entry takes run the
/// composed default.
pub(crate) fn attention_heads_packed(
    be: &CudaBackend,
    qkv: &CudaTensor,
    extra: Option<(&CudaTensor, &CudaTensor, Range<usize>)>,
    heads: usize,
    scale: f32,
) -> Result<CudaTensor> {
    let (n, l, c) = check_attention_heads_packed(qkv, extra.clone(), heads)?;
    let dt = promote_with_extra(&[qkv], &extra);
    if !flash_takes(n, l, c / heads, heads, scale, dt) {
        return composed_attention::attention_heads_packed(be, qkv, extra, heads, scale);
    }
    let qkv = be.as_dtype(qkv, dt)?;
    let at = |i: usize| TokenOperand {
        t: &qkv,
        col: i * c,
        row: 3 * c,
    };
    let ops = [at(0), at(1), at(2)];
    flash_heads(be, ops, (n, l, l, c), extra, heads, scale, dt)
}

/// [`Backend::packs_qkv`](crate::backends::Backend::packs_qkv) on CUDA: whether
/// [`attention_heads_packed`] runs `heads` heads of `head_dim` on a flash entry (in the storage
/// dtype, for any batch and sequence the entries take).
pub(crate) fn packs_qkv(be: &CudaBackend, heads: usize, head_dim: usize) -> bool {
    flash_takes(1, 1, head_dim, heads, 1.0, be.storage())
}

/// The dtype attention runs in: the operands' and the extra keys' / values' ([`promote`]).
fn promote_with_extra(
    ops: &[&CudaTensor],
    extra: &Option<(&CudaTensor, &CudaTensor, Range<usize>)>,
) -> DType {
    let mut all = ops.to_vec();
    if let Some((ke, ve, _)) = extra {
        all.extend([*ke, *ve]);
    }
    promote(&all)
}

/// Whether a flash entry takes `n` rows of `heads` heads of dim `d`, `lk` own keys, `scale`.
fn flash_takes(n: usize, lk: usize, d: usize, heads: usize, scale: f32, dt: DType) -> bool {
    traits_for(d as u64, dt).is_ok()
        && lk >= 1
        && heads <= 65_535
        && n <= 65_535
        && scale.is_finite()
        && scale > 0.0
}

/// `extra`'s keys / values in `dt`.
fn extra_as(
    be: &CudaBackend,
    extra: Option<(&CudaTensor, &CudaTensor, Range<usize>)>,
    dt: DType,
) -> Result<Option<(CudaTensor, CudaTensor, Range<usize>)>> {
    Ok(match extra {
        Some((ke, ve, rows)) => Some((be.as_dtype(ke, dt)?, be.as_dtype(ve, dt)?, rows)),
        None => None,
    })
}

/// A token-layout operand of the flash launches: `(N, L, C)` at columns `col..col + C` of rows of
/// `row` elements of `t` (a projection output: `row = C`; the packed q / k / v: `row = 3C`).
#[derive(Clone, Copy)]
struct TokenOperand<'a> {
    t: &'a CudaTensor,
    col: usize,
    row: usize,
}

/// The flash launches of [`attention_heads`] on operands in `dt` that the caller checked: q
/// `(N, Lq, C)`, k / v `(N, Lk, C)` ([`TokenOperand`]s), extra keys / values `(1 or R, Le, C)`
/// (converted to `dt` here).
fn flash_heads(
    be: &CudaBackend,
    [q, k, v]: [TokenOperand<'_>; 3],
    (n, lq, lk, c): (usize, usize, usize, usize),
    extra: Option<(&CudaTensor, &CudaTensor, Range<usize>)>,
    heads: usize,
    scale: f32,
    dt: DType,
) -> Result<CudaTensor> {
    let extra = extra_as(be, extra, dt)?;
    let d = c / heads;
    let out = be.alloc(&[n, lq, c], dt)?;
    if out.elem_count() == 0 {
        return Ok(out);
    }
    let traits = traits_for(d as u64, dt)?;
    let esz = dt.size_in_bytes() as u64;
    let (lq, lk, c64, d64) = (lq as u64, lk as u64, c as u64, d as u64);
    // first element of batch row r0 of an operand, and its strides
    let base = |o: TokenOperand<'_>, len: u64, r0: u64| {
        be.ptr(o.t) + (r0 * len * o.row as u64 + o.col as u64) * esz
    };
    let st = |o: TokenOperand<'_>, len: u64| AttnStrides::tokens(len, d64, o.row as u64);
    let launch_rows = |rows: Range<usize>, e: Option<(&CudaTensor, &CudaTensor)>| -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let r0 = rows.start as u64;
        let shape = AttentionShape {
            batch: rows.len() as u64,
            heads: heads as u64,
            lq,
            lk,
            d: d64,
        };
        let ptrs = [
            base(q, lq, r0),
            base(k, lk, r0),
            base(v, lk, r0),
            be.ptr(&out) + r0 * lq * c64 * esz,
        ];
        let strides = [
            st(q, lq),
            st(k, lk),
            st(v, lk),
            AttnStrides::tokens(lq, d64, c64),
        ];
        let mut p = AttentionParams::new(ptrs, strides, shape, scale)?;
        if let Some((ke, ve)) = e {
            let le = ke.shape()[1] as u64;
            let es = AttnStrides {
                batch: if ke.shape()[0] == 1 { 0 } else { le * c64 },
                head: d64,
                row: c64,
            };
            if le > 0 {
                p = p.with_extra([be.ptr(ke), be.ptr(ve)], [es, es], le)?;
            }
        }
        // SAFETY: `AttentionParams` mirrors `struct AttentionParams` of attention.cu (and of
        // attention_sm90.cu); q, k, v, out (and the extra keys / values) are live tensors of this
        // backend in the entry's dtype whose shapes were checked (check_attention_heads /
        // check_attention_heads_packed): rows r0..r0 + B of q (N, Lq, C) / k, v (N, Lk, C), each
        // at its column offset inside rows of `row` >= offset + C elements (C or 3C), out
        // (N, Lq, C), every head's D columns inside C, the extra keys (1 or B, Le, C) read with
        // batch stride 0 or Le C.
        // Hopper: the wgmma kernel where it takes the params (bf16, D 16/32/40/64/80/128/160,
        // 16-byte aligned), else the sm_80 entry.
        // Short sequences (temporal attention, Lq = Lk = frames): the short-sequence entry on
        // either kernel set.
        if unsafe { try_launch_short(be.device(), &p, shape, dt) }? {
            return Ok(());
        }
        if unsafe { attention_sm90::try_launch(be.device(), &p, shape, dt) }? {
            return Ok(());
        }
        unsafe {
            be.device().launch(
                KernelModule::Attention,
                traits.entry,
                launch_config(traits, shape, be.device().sm_count()),
                &p,
            )
        }
        .with_context(|| format!("{} {shape:?}", traits.entry))
    };
    match &extra {
        None => launch_rows(0..n, None)?,
        Some((ke, ve, rows)) => {
            launch_rows(0..rows.start, None)?;
            launch_rows(rows.clone(), Some((ke, ve)))?;
            launch_rows(rows.end..n, None)?;
        }
    }
    Ok(out)
}
