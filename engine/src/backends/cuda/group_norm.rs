//! Launcher of `kernels/cuda/group_norm.cu`: `group_norm`, and `group_norm_act` with SiLU in
//! the same launch (other activations run composed; on sm_90a devices the v2 shapes whose groups
//! fit a cluster's shared memory run `group_norm_sm90.cu`'s single pass instead); `group_norm_tokens` and `tokens_planes_add`
//! (the token-layout entries; `group_norm_tokens` on sm_90a as `group_norm_sm90.cu`'s single pass
//! where it fits), and the Transformer2DModel entry / exit around them
//! (`group_norm_conv1x1_tokens`, `tokens_conv1x1_planes_add`: the 1x1 convs as `linear`s).

use anyhow::{bail, Result};
use cyberhost_kernels::group_norm::{
    self as gn, GnTokensParams, GroupNorm2Params, GroupNormParams, GroupNormShape,
};
use cyberhost_kernels::{DType, KernelModule};

use super::context::CudaBackend;
use super::fused;
use super::group_norm_sm90;
use super::layout;
use super::linalg;
use super::pointwise::channel_vec;
use super::tensor::CudaTensor;
use super::util::u32_of;
use crate::backends::shape::group_norm_channels;
use crate::backends::{composed, TensorLike, Unary};

/// gamma and beta `(C)` in x's dtype; identity vectors stand in for missing ones (the kernels
/// always apply an affine).
fn affine_vecs(
    be: &CudaBackend,
    x: &CudaTensor,
    c: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
) -> Result<(CudaTensor, CudaTensor)> {
    let gamma = match channel_vec(be, "group_norm", "gamma", gamma, c, x)? {
        Some(g) => g,
        None => be.from_f32_as(&[c], &vec![1.0; c], x.dtype())?,
    };
    let beta = match channel_vec(be, "group_norm", "beta", beta, c, x)? {
        Some(b) => b,
        None => be.zeros_as(&[c], x.dtype())?,
    };
    Ok((gamma, beta))
}

/// The fused op of `act`: `"group_norm"` without one, `"group_norm_silu"` with SiLU, `None` for
/// any other (run composed).
fn fused_op(act: Option<Unary>) -> Option<&'static str> {
    match act {
        None => Some("group_norm"),
        Some(Unary::Silu) => Some("group_norm_silu"),
        Some(_) => None,
    }
}

/// x's GroupNorm shape `(N, C, S)` and the v1 params of a launch writing `out`, with gamma and
/// beta (identity ones when absent) kept alive by the caller.
fn gn_params(
    be: &CudaBackend,
    x: &CudaTensor,
    groups: usize,
    affine: &(CudaTensor, CudaTensor),
    eps: f32,
    out: &CudaTensor,
) -> Result<(GroupNormShape, GroupNormParams)> {
    let (n, c) = (x.shape()[0], x.shape()[1]);
    let shape = GroupNormShape {
        n: n as u64,
        c: c as u64,
        s: (x.elem_count() / (n * c)) as u64,
        groups: groups as u64,
    };
    let p = GroupNormParams::new(
        be.ptr(x),
        be.ptr(&affine.0),
        be.ptr(&affine.1),
        be.ptr(out),
        shape,
        eps,
    )?;
    Ok((shape, p))
}

/// The stats launch `stats_op` then the apply launch `op` (both version `version`, params `p2`,
/// grid `cfg`).
///
/// # Safety
/// `p2` must be valid for both entries: its x, y, gamma, beta and workspace sized for the shape,
/// dtype and layout of those entries.
unsafe fn stats_then_apply(
    be: &CudaBackend,
    (stats_op, op): (&str, &str),
    version: u32,
    dtype: DType,
    cfg: cyberhost_kernels::LaunchConfig,
    p2: &GroupNorm2Params,
) -> Result<()> {
    // SAFETY: the caller's contract; the stats launch writes every partial before the apply
    // launch (the next one on the stream) reads them.
    unsafe {
        be.launch_version(KernelModule::GroupNorm, stats_op, version, dtype, cfg, p2)?;
        be.launch_version(KernelModule::GroupNorm, op, version, dtype, cfg, p2)
    }
}

/// `act(group_norm(x))`: op `"group_norm"` without an activation, `"group_norm_silu"` with SiLU,
/// the composition of the unfused ops with any other.
pub(crate) fn group_norm_act(
    be: &CudaBackend,
    x: &CudaTensor,
    groups: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
    act: Option<Unary>,
) -> Result<CudaTensor> {
    let Some(op) = fused_op(act) else {
        return composed::group_norm_act(be, x, groups, gamma, beta, eps, act);
    };
    let c = group_norm_channels(x.shape(), groups)?;
    let out = be.alloc(x.shape(), x.dtype())?;
    if x.elem_count() == 0 {
        return Ok(out);
    }
    let affine = affine_vecs(be, x, c, gamma, beta)?;
    let (shape, p) = gn_params(be, x, groups, &affine, eps, &out)?;
    if gn::version(shape) == 1 {
        // SAFETY: group_norm[_silu]_v1_<dtype>(GroupNormParams): x and y are (N, C, S) contiguous,
        // gamma and beta (C), all in x's dtype; groups divides C (checked by GroupNormParams::new too).
        return unsafe {
            be.launch_to(
                KernelModule::GroupNorm,
                op,
                gn::launch_config(shape),
                &p,
                out,
            )
        };
    }
    // sm_90a: one pass over x on thread-block clusters where a group fits a cluster's shared memory.
    let dtype = x.dtype();
    if let Some(plan) = group_norm_sm90::takes(be.device(), shape, dtype, p.x, p.y) {
        // SAFETY: x and out are (N, C, S) bf16 of `shape`, gamma and beta (C) bf16 (affine_vecs
        // makes them in x's dtype); `plan` is takes' for this shape and these pointers.
        unsafe {
            group_norm_sm90::launch(
                be.device(),
                shape,
                [p.x, p.gamma, p.beta, p.y],
                eps,
                plan,
                act.is_some(),
            )?;
        }
        return Ok(out);
    }
    // v2: the per-chunk partials go to a workspace from the backend's normal allocation (a
    // planned arena slot under graph capture), dropped after both launches are enqueued.
    let ws = be.alloc(&[gn::workspace_f32s(shape, dtype) as usize], DType::F32)?;
    let p2 = GroupNorm2Params::new(p, be.ptr(&ws), dtype)?;
    // SAFETY: group_norm_stats_v2 / group_norm[_silu]_v2_<dtype>(GroupNorm2Params): x and y as for
    // v1, ws holds workspace_f32s f32s for this shape and dtype.
    unsafe {
        stats_then_apply(
            be,
            ("group_norm_stats", op),
            2,
            dtype,
            gn::launch_config_v2(shape, dtype),
            &p2,
        )?;
    }
    drop(ws);
    Ok(out)
}

/// `act(group_norm(x))` of a channels-last x `(N, C, H, W)` (stored `(N, H, W, C)`), returned
/// channels-last: `group_norm_stats_nhwc_v1` then `group_norm[_silu]_nhwc_v1` over the
/// `(N, H·W, C)` rows. Activations other than SiLU run on the contiguous ops (`None`: the caller
/// takes that path).
pub(crate) fn group_norm_act_nhwc(
    be: &CudaBackend,
    x: &CudaTensor,
    groups: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
    act: Option<Unary>,
) -> Result<Option<CudaTensor>> {
    let Some(op) = fused_op(act) else {
        return Ok(None);
    };
    if !x.is_channels_last() {
        bail!("group_norm (channels-last): {x:?} is not a channels-last (N, C, H, W) tensor");
    }
    let c = group_norm_channels(x.shape(), groups)?;
    let out = be.alloc(&x.storage_shape(), x.dtype())?;
    if x.elem_count() == 0 {
        return Ok(Some(out.nhwc_as_channels_last()?));
    }
    let affine = affine_vecs(be, x, c, gamma, beta)?;
    let (shape, p) = gn_params(be, x, groups, &affine, eps, &out)?;
    let dtype = x.dtype();
    let ws = be.alloc(
        &[gn::workspace_f32s_nhwc(shape, dtype) as usize],
        DType::F32,
    )?;
    let p2 = GroupNorm2Params::nhwc(p, be.ptr(&ws), dtype)?;
    // SAFETY: group_norm_stats_nhwc_v1 / group_norm[_silu]_nhwc_v1_<dtype>(GroupNorm2Params): x
    // and out are (N, S, C) rows (x channels-last, out its storage shape), gamma and beta (C), all
    // in x's dtype; ws holds workspace_f32s_nhwc f32s for this shape and dtype.
    unsafe {
        stats_then_apply(
            be,
            ("group_norm_stats_nhwc", &format!("{op}_nhwc")),
            1,
            dtype,
            gn::launch_config_nhwc(shape, dtype),
            &p2,
        )?;
    }
    drop(ws);
    Ok(Some(out.nhwc_as_channels_last()?))
}

/// The planes `(N·F, C, H, W)` of a token-layout op as the kernels' shape (`n` = N·F planes).
fn planes_shape(
    op: &str,
    planes: &[usize],
    frames: usize,
    groups: usize,
) -> Result<GroupNormShape> {
    match *planes {
        [nf, c, h, w] if frames > 0 && nf % frames == 0 && groups > 0 && c % groups == 0 => {
            Ok(GroupNormShape {
                n: nf as u64,
                c: c as u64,
                s: (h * w) as u64,
                groups: groups as u64,
            })
        }
        _ => bail!(
            "{op}: planes {planes:?} must be (N·F, C, H, W) with F = {frames} dividing N·F and \
             {groups} groups dividing C"
        ),
    }
}

/// [`Backend::group_norm_tokens`](crate::backends::Backend::group_norm_tokens): on sm_90a, one
/// `group_norm_tokens_sm90` launch where its plan holds ([`group_norm_sm90::takes_tokens`]);
/// elsewhere the v2 stats launch over the planes, then `group_norm_tokens_v2` (the group
/// statistics merged over the frames, the affine, the tile transpose to tokens). No layout copy.
pub(crate) fn group_norm_tokens(
    be: &CudaBackend,
    x: &CudaTensor,
    frames: usize,
    groups: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
) -> Result<CudaTensor> {
    let shape = planes_shape("group_norm_tokens", x.shape(), frames, groups)?;
    let (c, s) = (shape.c as usize, shape.s as usize);
    let out = be.alloc(&[x.shape()[0] / frames, s, frames, c], x.dtype())?;
    if x.elem_count() == 0 {
        return Ok(out);
    }
    let (gamma, beta) = affine_vecs(be, x, c, gamma, beta)?;
    let dtype = x.dtype();
    let p = GroupNormParams::new(
        be.ptr(x),
        be.ptr(&gamma),
        be.ptr(&beta),
        be.ptr(&out),
        shape,
        eps,
    )?;
    let frames32 = u32_of(frames, "group_norm_tokens frames")?;
    // sm_90a: one pass over x on thread-block clusters, writing the tokens, where a bundle of
    // groups fits a cluster's shared memory.
    if let Some(plan) = group_norm_sm90::takes_tokens(be.device(), shape, frames, dtype, p.x, p.y) {
        // SAFETY: x is (N·F, C, S) bf16 planes of `shape`, gamma and beta (C) bf16 (affine_vecs
        // makes them in x's dtype), out the fresh (N, S, F, C) tokens; `plan` is takes_tokens'
        // for this shape, these frames and pointers.
        unsafe {
            group_norm_sm90::launch_tokens(
                be.device(),
                shape,
                frames32,
                [p.x, p.gamma, p.beta, p.y],
                eps,
                plan,
            )?;
        }
        return Ok(out);
    }
    let ws = be.alloc(&[gn::workspace_f32s(shape, dtype) as usize], DType::F32)?;
    let p2 = GroupNorm2Params::new(p, be.ptr(&ws), dtype)?;
    let pt = GnTokensParams::new(p2, 0, frames32)?;
    // SAFETY: group_norm_stats_v2_<dtype>(GroupNorm2Params) over x as (N·F, C, S) planes writes
    // every (plane, group, chunk) partial of ws (workspace_f32s f32s) before
    // group_norm_tokens_v2_<dtype>(GnTokensParams) (the next launch on the stream) merges them;
    // it reads x (N·F, C, S), gamma and beta (C) in x's dtype and writes out (N, S, F, C) with no
    // aliasing.
    unsafe {
        be.launch_version(
            KernelModule::GroupNorm,
            "group_norm_stats",
            2,
            dtype,
            gn::launch_config_v2(shape, dtype),
            &p2,
        )?;
        be.launch_version(
            KernelModule::GroupNorm,
            "group_norm_tokens",
            2,
            dtype,
            gn::launch_config_tokens(shape, dtype),
            &pt,
        )?;
    }
    drop(ws);
    Ok(out)
}

/// `group_norm_tokens` of a channels-last x `(N·F, C, H, W)` (stored `(N, F·H·W, C)` rows: each
/// batch item's frames are consecutive rows): `group_norm_stats_nhwc_v1` over the N items, then
/// `group_norm_tokens_nhwc_v1` writing the `(N, H·W, F, C)` tokens (the apply with its rows
/// permuted; no transpose, no copy).
pub(crate) fn group_norm_tokens_nhwc(
    be: &CudaBackend,
    x: &CudaTensor,
    frames: usize,
    groups: usize,
    gamma: Option<&CudaTensor>,
    beta: Option<&CudaTensor>,
    eps: f32,
) -> Result<CudaTensor> {
    if !x.is_channels_last() {
        bail!(
            "group_norm_tokens (channels-last): {x:?} is not a channels-last (N·F, C, H, W) tensor"
        );
    }
    let planes = planes_shape("group_norm_tokens", x.shape(), frames, groups)?;
    let (c, s) = (planes.c as usize, planes.s as usize);
    let items = x.shape()[0] / frames;
    let out = be.alloc(&[items, s, frames, c], x.dtype())?;
    if x.elem_count() == 0 {
        return Ok(out);
    }
    let (gamma, beta) = affine_vecs(be, x, c, gamma, beta)?;
    let dtype = x.dtype();
    // N items of F·H·W rows: a group's statistics span the item's frames
    let shape = GroupNormShape {
        n: items as u64,
        s: planes.s * frames as u64,
        ..planes
    };
    let p = GroupNormParams::new(
        be.ptr(x),
        be.ptr(&gamma),
        be.ptr(&beta),
        be.ptr(&out),
        shape,
        eps,
    )?;
    let ws = be.alloc(
        &[gn::workspace_f32s_nhwc(shape, dtype) as usize],
        DType::F32,
    )?;
    let p2 = GroupNorm2Params::nhwc(p, be.ptr(&ws), dtype)?;
    let pt = GnTokensParams {
        gn: p2,
        residual: 0,
        frames: u32_of(frames, "group_norm_tokens frames")?,
        y_c: p2.c,
    };
    let cfg = gn::launch_config_nhwc(shape, dtype);
    // SAFETY: group_norm_stats_nhwc_v1_<dtype>(GroupNorm2Params) over x's storage as (N, F·S, C)
    // rows writes every (item, group, chunk, tile) partial of ws (workspace_f32s_nhwc f32s for
    // this shape) before group_norm_tokens_nhwc_v1_<dtype>(GnTokensParams, same grid; the next
    // launch on the stream) merges them; it reads x, gamma and beta (C) in x's dtype and writes
    // out (N, S, F, C), as many elements as x, with no aliasing (out is fresh).
    unsafe {
        be.launch_version(
            KernelModule::GroupNorm,
            "group_norm_stats_nhwc",
            1,
            dtype,
            cfg,
            &p2,
        )?;
        be.launch_version(
            KernelModule::GroupNorm,
            "group_norm_tokens_nhwc",
            1,
            dtype,
            cfg,
            &pt,
        )?;
    }
    drop(ws);
    Ok(out)
}

/// `tokens_planes_add_nhwc_v1`: tokens `(N, H·W, F, C)` (any shape of that element count) + the
/// channels-last residual `(N·F, C, H, W)` into channels `[0, C)` of `out`, the contiguous
/// `(N·F, H, W, y_c)` rows of a channels-last result (y_c > C: the first part of a channel
/// concat). One dtype; the caller allocated `out`.
pub(crate) fn tokens_planes_add_nhwc_into(
    be: &CudaBackend,
    tokens: &CudaTensor,
    residual: &CudaTensor,
    frames: usize,
    out: &CudaTensor,
) -> Result<()> {
    let rs = residual.shape();
    let shape = planes_shape("tokens_planes_add", rs, frames, 1)?;
    let os = out.shape();
    let dtype = residual.dtype();
    if !residual.is_channels_last()
        || out.is_channels_last()
        || tokens.elem_count() != residual.elem_count()
        || tokens.dtype() != dtype
        || out.dtype() != dtype
        || os.len() != 4
        || os[..3] != [rs[0], rs[2], rs[3]]
        || os[3] < rs[1]
    {
        bail!(
            "tokens_planes_add (channels-last): tokens {tokens:?}, residual {residual:?} and \
             output rows {out:?} must be (N, H·W, F, C), channels-last (N·F, C, H, W) and \
             (N·F, H, W, >= C) of one dtype"
        );
    }
    let vectors = (shape.n * shape.s) * shape.c.div_ceil(16 / dtype.size_in_bytes() as u64);
    if vectors == 0 {
        return Ok(());
    }
    if vectors > u32::MAX as u64 {
        bail!(
            "tokens_planes_add (channels-last): {residual:?} has {vectors} 16-byte vectors, \
             more than the kernel's 32-bit indices hold (split the batch)"
        );
    }
    let pt = GnTokensParams::tokens_planes_add(
        be.ptr(tokens),
        be.ptr(residual),
        be.ptr(out),
        shape,
        u32_of(frames, "tokens_planes_add frames")?,
    )?
    .with_out_channels(u32_of(os[3], "tokens_planes_add output channels")?)?;
    // SAFETY: tokens_planes_add_nhwc_v1_<dtype>(GnTokensParams): x holds the (N, S, F, C) tokens
    // (as many elements as the residual), residual is (N·F, S, C) rows (its channels-last
    // storage) and out (N·F, S, y_c >= C) rows, all in one dtype (checked above); fewer than 2^32
    // vectors; out is the caller's fresh buffer (no aliasing).
    unsafe {
        be.launch_version(
            KernelModule::GroupNorm,
            "tokens_planes_add_nhwc",
            1,
            dtype,
            gn::launch_config_rows(vectors),
            &pt,
        )
    }
}

/// [`Backend::tokens_planes_add`](crate::backends::Backend::tokens_planes_add): one
/// `tokens_planes_add_v2` launch (tile transpose + residual add); mixed dtypes run composed.
pub(crate) fn tokens_planes_add(
    be: &CudaBackend,
    tokens: &CudaTensor,
    residual: &CudaTensor,
    frames: usize,
) -> Result<CudaTensor> {
    let shape = planes_shape("tokens_planes_add", residual.shape(), frames, 1)?;
    if tokens.dtype() != residual.dtype() || tokens.elem_count() != residual.elem_count() {
        return composed::tokens_planes_add(be, tokens, residual, frames);
    }
    let out = be.alloc(residual.shape(), residual.dtype())?;
    tokens_planes_add_into(be, tokens, residual, frames, shape, &out)?;
    Ok(out)
}

/// [`Backend::tokens_planes_add_concat`](crate::backends::Backend::tokens_planes_add_concat):
/// `tokens_planes_add_v2` writes channels `[0, C)` of the `(N·F, C + C_t, H, W)` output (planes
/// `C + C_t` channels apart), one strided copy places `tail` after them. Mixed dtypes run
/// composed.
pub(crate) fn tokens_planes_add_concat(
    be: &CudaBackend,
    tokens: &CudaTensor,
    residual: &CudaTensor,
    frames: usize,
    tail: &CudaTensor,
) -> Result<CudaTensor> {
    let shape = planes_shape("tokens_planes_add_concat", residual.shape(), frames, 1)?;
    let dtype = residual.dtype();
    if tokens.dtype() != dtype
        || tail.dtype() != dtype
        || tokens.elem_count() != residual.elem_count()
    {
        return composed::tokens_planes_add_concat(be, tokens, residual, frames, tail);
    }
    let (rs, ts) = (residual.shape(), tail.shape());
    if ts.len() != 4 || ts[0] != rs[0] || ts[2..] != rs[2..] {
        bail!(
            "tokens_planes_add_concat: tail {ts:?} must be (N·F, C_t, H, W) with (N·F, H, W) of \
             the residual {rs:?}"
        );
    }
    let out = be.alloc(&[rs[0], rs[1] + ts[1], rs[2], rs[3]], dtype)?;
    tokens_planes_add_into(be, tokens, residual, frames, shape, &out)?;
    layout::copy_into(be, tail, &out, 1, rs[1])?;
    Ok(out)
}

/// `tokens_planes_add_v2` of `tokens` and `residual` (one dtype, as many elements, `shape` the
/// residual's planes) into the first `shape.c` channels of `out` `(N·F, y_c, H, W)`.
fn tokens_planes_add_into(
    be: &CudaBackend,
    tokens: &CudaTensor,
    residual: &CudaTensor,
    frames: usize,
    shape: GroupNormShape,
    out: &CudaTensor,
) -> Result<()> {
    if residual.elem_count() == 0 {
        return Ok(());
    }
    let pt = GnTokensParams::tokens_planes_add(
        be.ptr(tokens),
        be.ptr(residual),
        be.ptr(out),
        shape,
        u32_of(frames, "tokens_planes_add frames")?,
    )?
    .with_out_channels(u32_of(out.shape()[1], "tokens_planes_add output channels")?)?;
    // SAFETY: tokens_planes_add_v2_<dtype>(GnTokensParams): x holds the (N, S, F, C) tokens (the
    // element count of the residual, checked by the callers), residual is (N·F, C, S) planes and
    // out (N·F, y_c >= C, S) planes (N·F and S of the residual: the callers allocate it so), all
    // in one dtype; out is fresh (no aliasing).
    let dtype = out.dtype();
    unsafe {
        be.launch_version(
            KernelModule::GroupNorm,
            "tokens_planes_add",
            2,
            dtype,
            gn::launch_config_tokens(shape, dtype),
            &pt,
        )?;
    }
    Ok(())
}

/// The 1x1 conv `w` `(O, C, 1, 1)` as a `linear` over tokens `t` `(N, H·W, 1, C)` (F = 1): the
/// second half of `group_norm_conv1x1_tokens` (`memory_format.rs`, after `group_norm_tokens`).
pub(crate) fn conv1x1_tokens(
    be: &CudaBackend,
    t: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
) -> Result<CudaTensor> {
    let w2 = conv1x1_as_linear("group_norm_conv1x1_tokens", w)?;
    let s = t.shape().to_vec(); // (N, H·W, 1, C)
    let t = t.with_shape(vec![s[0], s[1], s[3]]);
    linalg::linear(be, &t, &w2, bias)
}

/// [`Backend::tokens_conv1x1_planes_add`](crate::backends::Backend::tokens_conv1x1_planes_add):
/// the 1x1 conv as a `linear` over the tokens with the planes residual
/// ([`fused::linear_tokens_planes_add`], F = 1).
pub(crate) fn tokens_conv1x1_planes_add(
    be: &CudaBackend,
    tokens: &CudaTensor,
    w: &CudaTensor,
    bias: Option<&CudaTensor>,
    residual: &CudaTensor,
) -> Result<CudaTensor> {
    let w2 = conv1x1_as_linear("tokens_conv1x1_planes_add", w)?;
    // sm_90a: one gemm_sm90 launch writing the planes + residual; elsewhere linear + the permute
    fused::linear_tokens_planes_add(be, tokens, &w2, bias, residual, 1, None)
}

/// A 1x1 conv weight `(O, C, 1, 1)` as the linear weight `(O, C)` (same buffer).
pub(crate) fn conv1x1_as_linear(op: &str, w: &CudaTensor) -> Result<CudaTensor> {
    match *w.shape() {
        [o, c, 1, 1] => Ok(w.with_shape(vec![o, c])),
        _ => bail!(
            "{op}: w {:?} must be a 1x1 conv weight (O, C, 1, 1)",
            w.shape()
        ),
    }
}
