//! Channels-last activations ([`MemoryFormat::ChannelsLast`]) in the CUDA backend.
//!
//! The model keeps logical NCHW shapes; a [`CudaTensor`] may store an `(N, C, H, W)` image
//! channels-last, `(N, H, W, C)` (PyTorch's `channels_last`). With
//! [`CudaBackend::set_channels_last`] (the sm_80 kernel set only; default: the
//! environment variable `CYBERHOST_CHANNELS_LAST=1`), convolutions whose weight was packed at load run on
//! `conv2d_nhwc` and return channels-last tensors; a contiguous input is converted by one copy at
//! the conv's entry. The trunk's entry, `conv_in` (its residual broadcast over the batch keeps it
//! on the NCHW conv), has its output converted once; the step's output is converted back once.
//!
//! The ops that read channels-last operands are the ones in this file (`conv2d`, `conv2d_ext`,
//! `conv2d_concat`, the last writing its channel slice of the concatenation in place;
//! `group_norm_act`, which keeps a channels-last x channels-last through the `(N, H·W, C)` rows
//! kernels of `group_norm.cu`; the Transformer2D and motion-module entries and exits,
//! `group_norm_tokens`, `group_norm_conv1x1_tokens`, `tokens_planes_add(_concat)`,
//! `linear_tokens_planes_add`, `tokens_conv1x1_planes_add`: for F = 1 a channels-last image's
//! storage is the tokens, for F > 1 the `group_norm.cu` rows kernels permute `(N, F, H·W, C)` rows
//! to and from `(N, H·W, F, C)` tokens in their addressing; `upsample_nearest2d`, on the rows) and
//! the dtype cast (`pointwise::cast`, elementwise on the storage). Every other op of the backend
//! gets contiguous operands: `backend.rs` passes each tensor argument through [`Contig::hold`]
//! (one copy for a channels-last tensor, a clone otherwise) before the op's launcher sees it, so
//! no launcher reads channels-last bytes as NCHW.

use std::ops::Range;

use anyhow::{bail, Result};
use cyberhost_kernels::DType;

use super::context::CudaBackend;
use super::conv2d::conv2d_op;
use super::conv2d_nhwc::PackedConvWeight;
use super::fused;
use super::group_norm;
use super::layout;
use super::rca;
use super::tensor::{CudaTensor, MemoryFormat};
use super::upsample;
use crate::backends::shape::conv2d_dims;
use crate::backends::{
    composed, Binary, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike, Unary,
};

/// `t` as a contiguous tensor: one copy (`(N, H, W, C)` → `(N, C, H, W)`) when it is
/// channels-last, else `t` itself.
pub(crate) fn contiguous(be: &CudaBackend, t: &CudaTensor) -> Result<CudaTensor> {
    match t.memory_format() {
        MemoryFormat::Contiguous => Ok(t.clone()),
        MemoryFormat::ChannelsLast => layout::permute(be, &t.storage_view(), &[0, 3, 1, 2]),
    }
}

/// `t` `(N, C, H, W)` stored channels-last: one copy when it is contiguous, else `t` itself.
pub(crate) fn channels_last(be: &CudaBackend, t: &CudaTensor) -> Result<CudaTensor> {
    match t.memory_format() {
        MemoryFormat::ChannelsLast => Ok(t.clone()),
        MemoryFormat::Contiguous if t.rank() == 4 => {
            layout::permute(be, t, &[0, 2, 3, 1])?.nhwc_as_channels_last()
        }
        MemoryFormat::Contiguous => bail!(
            "channels-last: {t:?} is not an (N, C, H, W) image (only rank-4 tensors have a \
             channels-last layout)"
        ),
    }
}

/// An op argument with its tensors made contiguous ([`contiguous`]): `hold` makes the owned
/// form (clones of contiguous tensors, copies of channels-last ones), [`Held::view`] lends it
/// back as the argument type.
pub(crate) trait Contig {
    type Held: Held;
    fn hold(self, be: &CudaBackend) -> Result<Self::Held>;
}

/// The owned form of a [`Contig`] argument.
pub(crate) trait Held {
    type View<'b>
    where
        Self: 'b;
    fn view(&self) -> Self::View<'_>;
}

impl Contig for &CudaTensor {
    type Held = CudaTensor;
    fn hold(self, be: &CudaBackend) -> Result<CudaTensor> {
        contiguous(be, self)
    }
}

impl Held for CudaTensor {
    type View<'b> = &'b CudaTensor;
    fn view(&self) -> &CudaTensor {
        self
    }
}

impl Contig for Option<&CudaTensor> {
    type Held = Option<CudaTensor>;
    fn hold(self, be: &CudaBackend) -> Result<Option<CudaTensor>> {
        self.map(|t| contiguous(be, t)).transpose()
    }
}

impl Held for Option<CudaTensor> {
    type View<'b> = Option<&'b CudaTensor>;
    fn view(&self) -> Option<&CudaTensor> {
        self.as_ref()
    }
}

/// Arguments without tensors pass through.
macro_rules! plain_args {
    ($($t:ty),*) => {
        $(
            impl Contig for $t {
                type Held = $t;
                fn hold(self, _be: &CudaBackend) -> Result<$t> {
                    Ok(self)
                }
            }

            impl Held for $t {
                type View<'b> = $t;
                fn view(&self) -> $t {
                    *self
                }
            }
        )*
    };
}

plain_args!(usize, f32, bool, Unary, Option<Unary>, Binary, Conv2dParams);

impl<'a> Contig for &'a [usize] {
    type Held = &'a [usize];
    fn hold(self, _be: &CudaBackend) -> Result<&'a [usize]> {
        Ok(self)
    }
}

impl<'a> Held for &'a [usize] {
    type View<'b>
        = &'a [usize]
    where
        Self: 'b;
    fn view(&self) -> &'a [usize] {
        self
    }
}

/// `attention_heads`' extra keys / values.
impl Contig for Option<(&CudaTensor, &CudaTensor, Range<usize>)> {
    type Held = Option<(CudaTensor, CudaTensor, Range<usize>)>;
    fn hold(self, be: &CudaBackend) -> Result<Self::Held> {
        self.map(|(k, v, r)| Ok((contiguous(be, k)?, contiguous(be, v)?, r)))
            .transpose()
    }
}

impl Held for Option<(CudaTensor, CudaTensor, Range<usize>)> {
    type View<'b> = Option<(&'b CudaTensor, &'b CudaTensor, Range<usize>)>;
    fn view(&self) -> Self::View<'_> {
        self.as_ref().map(|(k, v, r)| (k, v, r.clone()))
    }
}

/// `rca_motion_sum`'s identity rows.
impl Contig for Option<(&CudaTensor, usize)> {
    type Held = Option<(CudaTensor, usize)>;
    fn hold(self, be: &CudaBackend) -> Result<Self::Held> {
        self.map(|(t, start)| Ok((contiguous(be, t)?, start)))
            .transpose()
    }
}

impl Held for Option<(CudaTensor, usize)> {
    type View<'b> = Option<(&'b CudaTensor, usize)>;
    fn view(&self) -> Self::View<'_> {
        self.as_ref().map(|(t, start)| (t, *start))
    }
}

/// A [`LinearEpilogue`] with its residual held.
pub(crate) struct HeldLinearEpilogue {
    residual: Option<CudaTensor>,
    scale: f32,
    geglu: bool,
}

impl Contig for LinearEpilogue<'_, CudaTensor> {
    type Held = HeldLinearEpilogue;
    fn hold(self, be: &CudaBackend) -> Result<HeldLinearEpilogue> {
        Ok(HeldLinearEpilogue {
            residual: self.residual.hold(be)?,
            scale: self.scale,
            geglu: self.geglu,
        })
    }
}

impl Held for HeldLinearEpilogue {
    type View<'b> = LinearEpilogue<'b, CudaTensor>;
    fn view(&self) -> LinearEpilogue<'_, CudaTensor> {
        LinearEpilogue {
            residual: self.residual.as_ref(),
            scale: self.scale,
            geglu: self.geglu,
        }
    }
}

/// A [`ConvEpilogue`] with its tensors held (contiguous, or channels-last by [`channels_last`]).
pub(crate) struct HeldConvEpilogue {
    temb: Option<CudaTensor>,
    residual: Option<CudaTensor>,
    scale: f32,
}

/// The NCHW conv's epilogue: temb and residual contiguous.
impl Contig for ConvEpilogue<'_, CudaTensor> {
    type Held = HeldConvEpilogue;
    fn hold(self, be: &CudaBackend) -> Result<HeldConvEpilogue> {
        HeldConvEpilogue::new(self, |r| contiguous(be, r), be)
    }
}

impl Held for HeldConvEpilogue {
    type View<'b> = ConvEpilogue<'b, CudaTensor>;
    fn view(&self) -> ConvEpilogue<'_, CudaTensor> {
        ConvEpilogue {
            temb: self.temb.as_ref(),
            residual: self.residual.as_ref(),
            scale: self.scale,
        }
    }
}

impl HeldConvEpilogue {
    fn new(
        epi: ConvEpilogue<'_, CudaTensor>,
        residual: impl Fn(&CudaTensor) -> Result<CudaTensor>,
        be: &CudaBackend,
    ) -> Result<Self> {
        Ok(HeldConvEpilogue {
            temb: epi.temb.hold(be)?,
            residual: epi.residual.map(residual).transpose()?,
            scale: epi.scale,
        })
    }
}

/// The packed weight when the conv runs channels-last: the switch is on, `w` was packed at load,
/// x is bf16, groups 1, and a residual (if any) is per image (not one broadcast image).
fn nhwc_weight(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    p: Conv2dParams,
    epi: &ConvEpilogue<'_, CudaTensor>,
) -> Option<PackedConvWeight> {
    let per_image = epi
        .residual
        .is_none_or(|r| r.shape().first() == x.shape().first());
    if x.dtype() != DType::Bf16 || p.groups != 1 || !per_image || x.rank() != 4 {
        return None;
    }
    be.packed_conv_weight_of(w)
}

/// The conv on `conv2d_nhwc`: x converted to channels-last (if it is not), the residual too,
/// the result channels-last.
fn conv_channels_last(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    pw: &PackedConvWeight,
    bias: Option<&CudaTensor>,
    p: Conv2dParams,
    epi: ConvEpilogue<'_, CudaTensor>,
) -> Result<CudaTensor> {
    let dims = conv2d_dims("conv2d_ext", x.shape(), w.shape(), p)?;
    fused::check_conv_epilogue("conv2d_ext", &dims, bias, epi)?;
    let xc = channels_last(be, x)?;
    let held = HeldConvEpilogue::new(epi, |r| Ok(channels_last(be, r)?.storage_view()), be)?;
    let bias = bias.hold(be)?;
    let y = be.conv2d_nhwc_ext(&xc.storage_view(), pw, bias.as_ref(), p, held.view())?;
    y.nhwc_as_channels_last()
}

/// [`Backend::conv2d`](crate::backends::Backend::conv2d).
pub(crate) fn conv2d(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    p: Conv2dParams,
) -> Result<CudaTensor> {
    match nhwc_weight(be, x, w, p, &ConvEpilogue::default()) {
        Some(pw) => conv_channels_last(be, x, w, &pw, bias, p, ConvEpilogue::default()),
        None => conv2d_op(be, &x.hold(be)?, &w.hold(be)?, bias.hold(be)?.as_ref(), p),
    }
}

/// [`Backend::conv2d_ext`](crate::backends::Backend::conv2d_ext).
pub(crate) fn conv2d_ext(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    p: Conv2dParams,
    epi: ConvEpilogue<'_, CudaTensor>,
) -> Result<CudaTensor> {
    if let Some(pw) = nhwc_weight(be, x, w, p, &epi) {
        return conv_channels_last(be, x, w, &pw, bias, p, epi);
    }
    // a packed weight whose conv stays NCHW (the trunk's entry, `conv_in` with the movement map
    // broadcast over the batch): its output converted once here, so the trunk after it (the
    // first ResNet's norm, conv and residual, and the skip state) reads channels-last
    let to_channels_last = x.dtype() == DType::Bf16
        && x.rank() == 4
        && p.groups == 1
        && be.packed_conv_weight_of(w).is_some();
    let (x, w, bias, epi) = (x.hold(be)?, w.hold(be)?, bias.hold(be)?, epi.hold(be)?);
    let y = fused::conv2d_ext(be, &x, &w, bias.as_ref(), p, epi.view())?;
    if to_channels_last && y.dtype() == DType::Bf16 {
        return channels_last(be, &y);
    }
    Ok(y)
}

/// [`Backend::conv2d_concat`](crate::backends::Backend::conv2d_concat): channels-last, the conv
/// writes channels `[0, C_out)` of the concatenation's `(N, Ho, Wo, C_out + C_t)` rows in place
/// (its `ldy`), and one strided copy places `tail` after them.
pub(crate) fn conv2d_concat(
    be: &CudaBackend,
    x: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    p: Conv2dParams,
    epi: ConvEpilogue<'_, CudaTensor>,
    tail: &CudaTensor,
) -> Result<CudaTensor> {
    let pw = nhwc_weight(be, x, w, p, &epi).filter(|_| tail.dtype() == DType::Bf16);
    let Some(pw) = pw else {
        let (x, w, bias, tail) = (x.hold(be)?, w.hold(be)?, bias.hold(be)?, tail.hold(be)?);
        let epi = epi.hold(be)?;
        return fused::conv2d_concat(be, &x, &w, bias.as_ref(), p, epi.view(), &tail);
    };
    let dims = conv2d_dims("conv2d_concat", x.shape(), w.shape(), p)?;
    fused::check_conv_epilogue("conv2d_concat", &dims, bias, epi)?;
    let ys = [dims.n, dims.o, dims.ho, dims.wo];
    let mut out = concat_rows(be, &ys, tail)?;
    let xc = channels_last(be, x)?;
    let held = HeldConvEpilogue::new(epi, |r| Ok(channels_last(be, r)?.storage_view()), be)?;
    let bias = bias.hold(be)?;
    be.conv2d_nhwc_into(
        &xc.storage_view(),
        &pw,
        bias.as_ref(),
        p,
        held.view(),
        &mut out,
    )?;
    out.nhwc_as_channels_last()
}

/// The `(N, H, W, C + C_t)` rows of `concat([y, tail], 1)` for a y of shape `ys` `(N, C, H, W)`,
/// with `tail` (channels-last, converted if it is not) copied into channels `[C, C + C_t)`; the
/// caller writes channels `[0, C)` in place.
fn concat_rows(be: &CudaBackend, ys: &[usize], tail: &CudaTensor) -> Result<CudaTensor> {
    let ts = tail.shape();
    fused::check_concat_tail(ys, ts)?;
    let tail = channels_last(be, tail)?;
    let out = be.alloc(&[ys[0], ys[2], ys[3], ys[1] + ts[1]], tail.dtype())?;
    layout::copy_into(be, &tail.storage_view(), &out, 3, ys[1])?;
    Ok(out)
}

/// [`Backend::group_norm_act`](crate::backends::Backend::group_norm_act) (and `group_norm`,
/// `act` = `None`): a channels-last x runs the channels-last GroupNorm and stays channels-last
/// (SiLU or no activation); anything else runs on contiguous operands.
pub(crate) fn group_norm_act(
    be: &CudaBackend,
    x: &CudaTensor,
    groups: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
    act: Option<Unary>,
) -> Result<CudaTensor> {
    let (gamma, beta) = (gamma.hold(be)?, beta.hold(be)?);
    if x.is_channels_last() {
        let y =
            group_norm::group_norm_act_nhwc(be, x, groups, gamma.view(), beta.view(), eps, act)?;
        if let Some(y) = y {
            return Ok(y);
        }
    }
    group_norm::group_norm_act(
        be,
        &x.hold(be)?,
        groups,
        gamma.view(),
        beta.view(),
        eps,
        act,
    )
}

/// A channels-last `(N, C, H, W)` tensor's storage as the tokens `(N, H·W, 1, C)` (same bytes).
fn tokens_of(y: &CudaTensor) -> CudaTensor {
    let s = y.shape();
    y.storage_view()
        .with_shape(vec![s[0], s[2] * s[3], 1, s[1]])
}

/// [`Backend::group_norm_tokens`](crate::backends::Backend::group_norm_tokens): for a
/// channels-last x and F = 1 the `(N, H·W, 1, C)` tokens are the storage of the channels-last
/// GroupNorm's output (no transpose); with F > 1 (the motion module) the channels-last apply
/// writes its rows in token order (`group_norm_tokens_nhwc`); otherwise the planes kernels on a
/// contiguous x.
pub(crate) fn group_norm_tokens(
    be: &CudaBackend,
    x: &CudaTensor,
    frames: usize,
    groups: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
) -> Result<CudaTensor> {
    let (gamma, beta) = (gamma.hold(be)?, beta.hold(be)?);
    if frames == 1 && x.is_channels_last() {
        let y =
            group_norm::group_norm_act_nhwc(be, x, groups, gamma.view(), beta.view(), eps, None)?;
        if let Some(y) = y {
            return Ok(tokens_of(&y));
        }
    }
    if frames > 1 && x.is_channels_last() {
        return group_norm::group_norm_tokens_nhwc(
            be,
            x,
            frames,
            groups,
            gamma.view(),
            beta.view(),
            eps,
        );
    }
    let x = x.hold(be)?;
    group_norm::group_norm_tokens(be, &x, frames, groups, gamma.view(), beta.view(), eps)
}

/// [`Backend::group_norm_conv1x1_tokens`](crate::backends::Backend::group_norm_conv1x1_tokens):
/// [`group_norm_tokens`] (channels-last: no transpose), then the 1x1 conv as a `linear`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_norm_conv1x1_tokens(
    be: &CudaBackend,
    x: &CudaTensor,
    groups: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let t = group_norm_tokens(be, x, 1, groups, gamma, beta, eps)?;
    let (w, bias) = (w.hold(be)?, bias.hold(be)?);
    group_norm::conv1x1_tokens(be, &t, &w, bias.view())
}

/// The residual of a token-layout exit when it can take the channels-last path: the residual
/// channels-last, tokens of its element count and dtype.
fn channels_last_residual<'r>(
    tokens: &CudaTensor,
    residual: &'r CudaTensor,
) -> Option<&'r CudaTensor> {
    (residual.is_channels_last()
        && residual.rank() == 4
        && !tokens.is_channels_last()
        && tokens.dtype() == residual.dtype()
        && tokens.elem_count() == residual.elem_count())
    .then_some(residual)
}

/// [`Backend::tokens_planes_add`](crate::backends::Backend::tokens_planes_add): with a
/// channels-last residual, `tokens_planes_add_nhwc` (the tokens' `(N, H·W, F, C)` rows added to
/// the residual's `(N·F, H·W, C)` rows, permuted in the kernel's addressing; any F), returned
/// channels-last; else the planes kernel.
pub(crate) fn tokens_planes_add(
    be: &CudaBackend,
    tokens: &CudaTensor,
    residual: &CudaTensor,
    frames: usize,
) -> Result<CudaTensor> {
    match channels_last_residual(tokens, residual) {
        Some(r) => {
            let out = be.alloc(&r.storage_shape(), r.dtype())?;
            group_norm::tokens_planes_add_nhwc_into(be, tokens, r, frames, &out)?;
            out.nhwc_as_channels_last()
        }
        None => group_norm::tokens_planes_add(be, &tokens.hold(be)?, &residual.hold(be)?, frames),
    }
}

/// [`Backend::tokens_planes_add_concat`](crate::backends::Backend::tokens_planes_add_concat):
/// with a channels-last residual, `tokens_planes_add_nhwc` writes channels `[0, C)` of the
/// concatenation's `(N·F, H, W, C + C_t)` rows in place and one strided copy places `tail` after
/// them (channels-last); else the planes kernel writing its channel slice.
pub(crate) fn tokens_planes_add_concat(
    be: &CudaBackend,
    tokens: &CudaTensor,
    residual: &CudaTensor,
    frames: usize,
    tail: &CudaTensor,
) -> Result<CudaTensor> {
    if let Some(r) = channels_last_residual(tokens, residual) {
        if tail.dtype() == r.dtype() {
            let out = concat_rows(be, r.shape(), tail)?;
            group_norm::tokens_planes_add_nhwc_into(be, tokens, r, frames, &out)?;
            return out.nhwc_as_channels_last();
        }
    }
    let (tokens, residual, tail) = (tokens.hold(be)?, residual.hold(be)?, tail.hold(be)?);
    group_norm::tokens_planes_add_concat(be, &tokens, &residual, frames, &tail)
}

/// [`Backend::linear_tokens_planes_add`](crate::backends::Backend::linear_tokens_planes_add):
/// a channels-last residual or tail takes the composed ops (the `linear`, then
/// [`tokens_planes_add`] / [`tokens_planes_add_concat`] above on channels-last rows); contiguous
/// operands go to [`fused::linear_tokens_planes_add`] (sm_90a: one `gemm_sm90` launch with the
/// planes epilogue).
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
    let channels_last = [tokens, residual]
        .into_iter()
        .chain(tail)
        .any(CudaTensor::is_channels_last);
    if channels_last {
        return composed::linear_tokens_planes_add(be, tokens, w, bias, residual, frames, tail);
    }
    fused::linear_tokens_planes_add(be, tokens, w, bias, residual, frames, tail)
}

/// [`Backend::rca_merge`](crate::backends::Backend::rca_merge): with f_in and the mask hidden
/// state channels-last (the channels-last trunk) and one dtype, `rca_merge_nhwc` on their rows,
/// returned channels-last; else the NCHW kernel on contiguous operands.
pub(crate) fn rca_merge(
    be: &CudaBackend,
    f_in: &CudaTensor,
    tokens: &CudaTensor,
    mask_hidden: &CudaTensor,
    mask_w: &CudaTensor,
    mask_b: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let rows = f_in.is_channels_last()
        && mask_hidden.is_channels_last()
        && !tokens.is_channels_last()
        && tokens.dtype() == f_in.dtype()
        && mask_hidden.dtype() == f_in.dtype();
    if rows {
        let (w, b) = (mask_w.hold(be)?, mask_b.hold(be)?);
        return rca::rca_merge_nhwc(be, f_in, tokens, mask_hidden, &w, b.as_ref());
    }
    let (f_in, tokens, mask_hidden) = (f_in.hold(be)?, tokens.hold(be)?, mask_hidden.hold(be)?);
    let (w, b) = (mask_w.hold(be)?, mask_b.hold(be)?);
    rca::rca_merge(be, &f_in, &tokens, &mask_hidden, &w, b.as_ref())
}

/// [`Backend::upsample_nearest2d`](crate::backends::Backend::upsample_nearest2d): a channels-last
/// x stays channels-last (`upsample_nearest2d_nhwc`); else the planes kernel.
pub(crate) fn upsample_nearest2d(
    be: &CudaBackend,
    x: &CudaTensor,
    out_h: usize,
    out_w: usize,
) -> Result<CudaTensor> {
    if x.is_channels_last() {
        return upsample::upsample_nearest2d_nhwc(be, x, out_h, out_w);
    }
    upsample::upsample_nearest2d(be, x, out_h, out_w)
}

/// [`Backend::tokens_conv1x1_planes_add`](crate::backends::Backend::tokens_conv1x1_planes_add):
/// with a channels-last residual the 1x1 conv is a `linear` whose epilogue adds the residual's
/// storage (its `(N, H·W, C)` rows), and the output rows are the channels-last result: one launch,
/// no transpose. Otherwise the planes kernel after the linear.
pub(crate) fn tokens_conv1x1_planes_add(
    be: &CudaBackend,
    tokens: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    residual: &CudaTensor,
) -> Result<CudaTensor> {
    let (tokens, w, bias) = (tokens.hold(be)?, w.hold(be)?, bias.hold(be)?);
    let rs = residual.shape();
    let w2 = group_norm::conv1x1_as_linear("tokens_conv1x1_planes_add", &w)?;
    let fits = rs.len() == 4
        && tokens.rank() == 3
        && tokens.shape()[..2] == [rs[0], rs[2] * rs[3]]
        && w2.shape()[0] == rs[1]
        && tokens.dtype() == residual.dtype();
    if !(residual.is_channels_last() && fits) {
        let residual = residual.hold(be)?;
        return group_norm::tokens_conv1x1_planes_add(be, &tokens, &w, bias.view(), &residual);
    }
    let r = residual.storage_view();
    let r = r.with_shape(vec![rs[0], rs[2] * rs[3], rs[1]]);
    let epi = LinearEpilogue {
        residual: Some(&r),
        scale: 1.0,
        geglu: false,
    };
    let y = fused::linear_ext(be, &tokens, &w2, bias.view(), epi)?;
    y.with_shape(vec![rs[0], rs[2], rs[3], rs[1]])
        .nhwc_as_channels_last()
}
