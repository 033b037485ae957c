//! Layout ops: reshape, permute, concat, narrow, index_select, pad2d.
//! All but `reshape` materialise a new contiguous tensor.

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::CpuTensor;
pub(crate) use crate::backends::strides::{collapse_dims, contiguous_strides};
use crate::backends::TensorLike;

/// Offset of "row" `r` (an index over all dims but the last) for each operand.
#[inline]
pub(crate) fn row_offset(mut r: usize, sizes: &[usize], strides: &[usize]) -> usize {
    let mut off = 0;
    for d in (0..sizes.len() - 1).rev() {
        off += (r % sizes[d]) * strides[d];
        r /= sizes[d];
    }
    off
}

/// Copies `src` viewed with `src_strides` (one per output dim) into a new
/// contiguous buffer of `shape`.
pub(crate) fn strided_copy(src: &[f32], shape: &[usize], src_strides: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut out = vec![0.0f32; n];
    if n == 0 {
        return out;
    }
    let dst_strides = contiguous_strides(shape);
    let (sizes, st) = collapse_dims(shape, &[src_strides.to_vec(), dst_strides]);
    let s_src = &st[0];
    let inner = *sizes.last().unwrap();
    let inner_stride = *s_src.last().unwrap();
    out.par_chunks_mut(inner)
        .with_min_len(16.max(4096 / inner))
        .enumerate()
        .for_each(|(r, row)| {
            let base = row_offset(r, &sizes, s_src);
            if inner_stride == 1 {
                row.copy_from_slice(&src[base..base + inner]);
            } else {
                for (j, o) in row.iter_mut().enumerate() {
                    *o = src[base + j * inner_stride];
                }
            }
        });
    out
}

pub(crate) fn reshape(t: &CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
    let n: usize = shape.iter().product();
    if n != t.elem_count() {
        bail!(
            "reshape: cannot view {:?} ({} elements) as {:?} ({} elements)",
            t.shape(),
            t.elem_count(),
            shape,
            n
        );
    }
    Ok(t.with_shape(shape.to_vec()))
}

pub(crate) fn permute(t: &CpuTensor, dims: &[usize]) -> Result<CpuTensor> {
    let r = t.rank();
    let mut seen = vec![false; r];
    if dims.len() != r
        || dims
            .iter()
            .any(|&d| d >= r || std::mem::replace(&mut seen[d], true))
    {
        bail!(
            "permute: {:?} is not a permutation of the {} dims of {:?}",
            dims,
            r,
            t.shape()
        );
    }
    if dims.iter().enumerate().all(|(i, &d)| i == d) {
        return Ok(t.clone());
    }
    let in_strides = contiguous_strides(t.shape());
    let shape: Vec<usize> = dims.iter().map(|&d| t.shape()[d]).collect();
    let strides: Vec<usize> = dims.iter().map(|&d| in_strides[d]).collect();
    let data = strided_copy(t.data(), &shape, &strides);
    Ok(CpuTensor::new_unchecked(shape, data))
}

pub(crate) fn concat(ts: &[&CpuTensor], dim: usize) -> Result<CpuTensor> {
    let Some(first) = ts.first() else {
        bail!("concat: no tensors given");
    };
    let r = first.rank();
    if dim >= r {
        bail!(
            "concat: dim {dim} out of range for shape {:?}",
            first.shape()
        );
    }
    for t in ts {
        let ok = t.rank() == r && (0..r).all(|d| d == dim || t.shape()[d] == first.shape()[d]);
        if !ok {
            let shapes: Vec<_> = ts.iter().map(|t| t.shape().to_vec()).collect();
            bail!("concat: shapes {:?} differ outside dim {dim}", shapes);
        }
    }
    let outer: usize = first.shape()[..dim].iter().product();
    let inner: usize = first.shape()[dim + 1..].iter().product();
    let total_d: usize = ts.iter().map(|t| t.shape()[dim]).sum();
    let mut shape = first.shape().to_vec();
    shape[dim] = total_d;
    let row = total_d * inner;
    let mut out = vec![0.0f32; outer * row];
    if row > 0 {
        out.par_chunks_mut(row).enumerate().for_each(|(o, dst)| {
            let mut off = 0;
            for t in ts {
                let len = t.shape()[dim] * inner;
                dst[off..off + len].copy_from_slice(&t.data()[o * len..(o + 1) * len]);
                off += len;
            }
        });
    }
    Ok(CpuTensor::new_unchecked(shape, out))
}

pub(crate) fn narrow(t: &CpuTensor, dim: usize, start: usize, len: usize) -> Result<CpuTensor> {
    if dim >= t.rank() || start + len > t.shape()[dim] {
        bail!(
            "narrow: range {start}..{} of dim {dim} is outside shape {:?}",
            start + len,
            t.shape()
        );
    }
    let idx: Vec<usize> = (start..start + len).collect();
    index_select(t, dim, &idx)
}

pub(crate) fn index_select(t: &CpuTensor, dim: usize, idx: &[usize]) -> Result<CpuTensor> {
    if dim >= t.rank() {
        bail!(
            "index_select: dim {dim} out of range for shape {:?}",
            t.shape()
        );
    }
    let d = t.shape()[dim];
    if let Some(&bad) = idx.iter().find(|&&i| i >= d) {
        bail!(
            "index_select: index {bad} out of range for dim {dim} of shape {:?}",
            t.shape()
        );
    }
    let outer: usize = t.shape()[..dim].iter().product();
    let inner: usize = t.shape()[dim + 1..].iter().product();
    let mut shape = t.shape().to_vec();
    shape[dim] = idx.len();
    let mut out = vec![0.0f32; outer * idx.len() * inner];
    if inner > 0 && !idx.is_empty() {
        let src = t.data();
        out.par_chunks_mut(inner)
            .with_min_len(16.max(4096 / inner))
            .enumerate()
            .for_each(|(r, dst)| {
                let (o, j) = (r / idx.len(), r % idx.len());
                let s = (o * d + idx[j]) * inner;
                dst.copy_from_slice(&src[s..s + inner]);
            });
    }
    Ok(CpuTensor::new_unchecked(shape, out))
}

pub(crate) fn pad2d(
    x: &CpuTensor,
    left: usize,
    right: usize,
    top: usize,
    bottom: usize,
) -> Result<CpuTensor> {
    let r = x.rank();
    if r < 2 {
        bail!("pad2d: needs at least 2 dims, got shape {:?}", x.shape());
    }
    let (h, w) = (x.shape()[r - 2], x.shape()[r - 1]);
    let (oh, ow) = (h + top + bottom, w + left + right);
    let planes: usize = x.shape()[..r - 2].iter().product();
    let mut shape = x.shape().to_vec();
    shape[r - 2] = oh;
    shape[r - 1] = ow;
    let mut out = vec![0.0f32; planes * oh * ow];
    if oh * ow > 0 && w > 0 {
        let src = x.data();
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(p, dst)| {
                for y in 0..h {
                    let d = (y + top) * ow + left;
                    dst[d..d + w].copy_from_slice(&src[(p * h + y) * w..(p * h + y + 1) * w]);
                }
            });
    }
    Ok(CpuTensor::new_unchecked(shape, out))
}
