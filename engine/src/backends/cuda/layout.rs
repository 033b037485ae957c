//! Launchers of `kernels/cuda/layout.cu`: reshape (no copy), permute, concat, narrow (strided
//! `copy`; a leading prefix of the buffer is a view, no copy), index_select, pad2d.

use anyhow::{bail, Result};
use cyberhost_kernels::layout::{launch_config, launch_config_copy, LayoutParams, LAYOUT_MAX_RANK};
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::tensor::{promote, CudaTensor};
use super::util::u32_of;
use crate::backends::shape::{
    concat_shape, index_select_shape, narrow_shape, pad2d_shape, permute_shape, planes_hw,
    reshape_shape,
};
use crate::backends::strides::{collapse_dims, contiguous_strides};
use crate::backends::TensorLike;

/// Pads a per-dim list in front to the kernel's rank.
fn pad_front<T: Copy>(v: &[T], fill: T) -> [T; LAYOUT_MAX_RANK] {
    let mut out = [fill; LAYOUT_MAX_RANK];
    out[LAYOUT_MAX_RANK - v.len()..].copy_from_slice(v);
    out
}

/// The `copy` entry: `dst[dst_off + Σ c·dst_strides] = src[src_off + Σ c·src_strides]` over
/// `shape` (collapsed first; errors when it still has more than 6 dims).
#[allow(clippy::too_many_arguments)]
fn strided_copy(
    be: &CudaBackend,
    op: &str,
    src: &CudaTensor,
    src_offset: usize,
    src_strides: &[usize],
    dst: &CudaTensor,
    dst_offset: usize,
    dst_strides: &[usize],
    shape: &[usize],
) -> Result<()> {
    let n: usize = shape.iter().product();
    if n == 0 {
        return Ok(());
    }
    let (sizes, st) = collapse_dims(shape, &[src_strides.to_vec(), dst_strides.to_vec()]);
    if sizes.len() > LAYOUT_MAX_RANK {
        bail!(
            "{op}: the copy of shape {shape:?} has {} non-mergeable dims, the CUDA kernel takes at \
             most {LAYOUT_MAX_RANK}",
            sizes.len()
        );
    }
    let sizes32: Vec<u32> = sizes
        .iter()
        .map(|&d| u32_of(d, op))
        .collect::<Result<_>>()?;
    let mut p = LayoutParams::new(be.ptr(src), be.ptr(dst), &sizes32)?;
    p.src_offset = src_offset as u64;
    p.dst_offset = dst_offset as u64;
    p.src_strides = pad_front(&st[0].iter().map(|&s| s as u64).collect::<Vec<_>>(), 0);
    p.dst_strides = pad_front(&st[1].iter().map(|&s| s as u64).collect::<Vec<_>>(), 0);
    let dtype = src.dtype();
    // SAFETY: copy_v2_<dtype>(LayoutParams): src holds every element `src_offset + Σ c·src_strides`
    // for c inside `shape` (callers derive the strides from src's own shape), dst likewise; both
    // are live tensors of this backend with the entry's dtype.
    unsafe {
        be.launch_version(
            KernelModule::Layout,
            "copy",
            2,
            dtype,
            launch_config_copy(&p, dtype),
            &p,
        )
    }
}

pub(crate) fn reshape(t: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
    reshape_shape(t.shape(), shape)?;
    Ok(t.with_shape(shape.to_vec()))
}

pub(crate) fn permute(be: &CudaBackend, t: &CudaTensor, dims: &[usize]) -> Result<CudaTensor> {
    let shape = permute_shape(t.shape(), dims)?;
    if dims.iter().enumerate().all(|(i, &d)| i == d) {
        return Ok(t.clone());
    }
    let in_strides = contiguous_strides(t.shape());
    let src_strides: Vec<usize> = dims.iter().map(|&d| in_strides[d]).collect();
    let out = be.alloc(&shape, t.dtype())?;
    strided_copy(
        be,
        "permute",
        t,
        0,
        &src_strides,
        &out,
        0,
        &contiguous_strides(&shape),
        &shape,
    )?;
    Ok(out)
}

pub(crate) fn concat(be: &CudaBackend, ts: &[&CudaTensor], dim: usize) -> Result<CudaTensor> {
    let shapes: Vec<&[usize]> = ts.iter().map(|t| t.shape()).collect();
    let shape = concat_shape(&shapes, dim)?;
    let first = ts[0];
    let dtype = promote(ts);
    let out = be.alloc(&shape, dtype)?;
    let same = |t: &&CudaTensor| be.ptr(t) == be.ptr(first) && t.shape() == first.shape();
    if ts.len() > 1 && first.dtype() == dtype && ts.iter().all(same) {
        // The same tensor k times (e.g. both CFG halves of the latents): one copy reading it k
        // times (source stride 0 over the repeats).
        let outer: usize = first.shape()[..dim].iter().product();
        let len: usize = first.shape()[dim..].iter().product();
        let k = ts.len();
        strided_copy(
            be,
            "concat",
            first,
            0,
            &[len, 0, 1],
            &out,
            0,
            &[k * len, len, 1],
            &[outer, k, len],
        )?;
        return Ok(out);
    }
    let mut start = 0;
    for t in ts {
        copy_into(be, &be.as_dtype(t, dtype)?, &out, dim, start)?;
        start += t.shape()[dim];
    }
    Ok(out)
}

/// Copies `t` into `out` at `start..start + t.shape()[dim]` along `dim` (every other dim equal,
/// the same dtype): one part of a concat.
pub(crate) fn copy_into(
    be: &CudaBackend,
    t: &CudaTensor,
    out: &CudaTensor,
    dim: usize,
    start: usize,
) -> Result<()> {
    let (ts, os) = (t.shape(), out.shape());
    let fits = ts.len() == os.len()
        && dim < ts.len()
        && start + ts[dim] <= os[dim]
        && (0..ts.len()).all(|d| d == dim || ts[d] == os[d]);
    if !fits || t.dtype() != out.dtype() {
        bail!(
            "concat: {t:?} does not fit into {out:?} at {start} along dim {dim} (same dtype and \
             other dims)"
        );
    }
    let outer: usize = ts[..dim].iter().product();
    let inner: usize = ts[dim + 1..].iter().product();
    let len = ts[dim] * inner;
    strided_copy(
        be,
        "concat",
        t,
        0,
        &[len, 1],
        out,
        start * inner,
        &[os[dim] * inner, 1],
        &[outer, len],
    )
}

pub(crate) fn narrow(
    be: &CudaBackend,
    t: &CudaTensor,
    dim: usize,
    start: usize,
    len: usize,
) -> Result<CudaTensor> {
    let shape = narrow_shape(t.shape(), dim, start, len)?;
    if len == t.shape()[dim] {
        return Ok(t.clone());
    }
    let d = t.shape()[dim];
    let outer: usize = t.shape()[..dim].iter().product();
    let inner: usize = t.shape()[dim + 1..].iter().product();
    if start == 0 && outer <= 1 {
        // A leading prefix of the buffer (e.g. the first L rows of a position table): a view of
        // the same buffer with the shorter shape, like `reshape`; no copy launch.
        return Ok(t.with_shape(shape));
    }
    let out = be.alloc(&shape, t.dtype())?;
    strided_copy(
        be,
        "narrow",
        t,
        start * inner,
        &[d * inner, 1],
        &out,
        0,
        &[len * inner, 1],
        &[outer, len * inner],
    )?;
    Ok(out)
}

pub(crate) fn index_select(
    be: &CudaBackend,
    t: &CudaTensor,
    dim: usize,
    idx: &[usize],
) -> Result<CudaTensor> {
    let shape = index_select_shape(t.shape(), dim, idx)?;
    let d = t.shape()[dim];
    let outer: usize = t.shape()[..dim].iter().product();
    let inner: usize = t.shape()[dim + 1..].iter().product();
    let out = be.alloc(&shape, t.dtype())?;
    if out.elem_count() == 0 {
        return Ok(out);
    }
    let idx32: Vec<u32> = idx
        .iter()
        .map(|&i| u32_of(i, "index_select index"))
        .collect::<Result<_>>()?;
    let iter = [
        u32_of(outer, "index_select outer")?,
        u32_of(idx.len(), "index_select len")?,
        u32_of(inner, "index_select inner")?,
    ];
    let mut p = LayoutParams::new(be.ptr(t), be.ptr(&out), &iter)?;
    p.src_h = u32_of(d, "index_select dim size")?;
    p.index = be.index_buffer(&idx32)?;
    // SAFETY: index_select_v1_<dtype>(LayoutParams): src is (outer, d, inner), `index` holds
    // idx.len() u32 values < d (checked above), dst is (outer, idx.len(), inner) contiguous. The
    // index buffer is cached by the backend for its lifetime.
    unsafe {
        be.launch_to(
            KernelModule::Layout,
            "index_select",
            launch_config(p.n),
            &p,
            out,
        )
    }
}

pub(crate) fn pad2d(
    be: &CudaBackend,
    x: &CudaTensor,
    left: usize,
    right: usize,
    top: usize,
    bottom: usize,
) -> Result<CudaTensor> {
    let shape = pad2d_shape(x.shape(), left, right, top, bottom)?;
    let (planes, h, w) = planes_hw(x.shape());
    let (_, oh, ow) = planes_hw(&shape);
    let out = be.alloc(&shape, x.dtype())?;
    if out.elem_count() == 0 {
        return Ok(out);
    }
    let iter = [
        u32_of(planes, "pad2d planes")?,
        u32_of(oh, "pad2d out_h")?,
        u32_of(ow, "pad2d out_w")?,
    ];
    let mut p = LayoutParams::new(be.ptr(x), be.ptr(&out), &iter)?;
    p.src_h = u32_of(h, "pad2d h")?;
    p.src_w = u32_of(w, "pad2d w")?;
    p.pad_top = u32_of(top, "pad2d top")?;
    p.pad_left = u32_of(left, "pad2d left")?;
    // SAFETY: pad2d_v1_<dtype>(LayoutParams): src is (planes, h, w), dst (planes, oh, ow), both
    // contiguous with x's dtype; only in-plane source positions are read.
    unsafe { be.launch_to(KernelModule::Layout, "pad2d", launch_config(p.n), &p, out) }
}
