//! Layout ops: reshape, permute, concat, narrow, index_select, pad2d.
//! All but `reshape` materialise a new contiguous tensor.

use anyhow::Result;
use rayon::prelude::*;

use super::CpuTensor;
use crate::backends::shape::{
    concat_shape, index_select_shape, narrow_shape, pad2d_shape, permute_shape, planes_hw,
    reshape_shape,
};
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
    reshape_shape(t.shape(), shape)?;
    Ok(t.with_shape(shape.to_vec()))
}

pub(crate) fn permute(t: &CpuTensor, dims: &[usize]) -> Result<CpuTensor> {
    let shape = permute_shape(t.shape(), dims)?;
    if dims.iter().enumerate().all(|(i, &d)| i == d) {
        return Ok(t.clone());
    }
    let in_strides = contiguous_strides(t.shape());
    let strides: Vec<usize> = dims.iter().map(|&d| in_strides[d]).collect();
    let data = strided_copy(t.data(), &shape, &strides);
    Ok(CpuTensor::new_unchecked(shape, data))
}

pub(crate) fn concat(ts: &[&CpuTensor], dim: usize) -> Result<CpuTensor> {
    let shapes: Vec<&[usize]> = ts.iter().map(|t| t.shape()).collect();
    let shape = concat_shape(&shapes, dim)?;
    let first = ts[0];
    let outer: usize = first.shape()[..dim].iter().product();
    let inner: usize = first.shape()[dim + 1..].iter().product();
    let row = shape[dim] * inner;
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
    narrow_shape(t.shape(), dim, start, len)?;
    let idx: Vec<usize> = (start..start + len).collect();
    index_select(t, dim, &idx)
}

pub(crate) fn index_select(t: &CpuTensor, dim: usize, idx: &[usize]) -> Result<CpuTensor> {
    let shape = index_select_shape(t.shape(), dim, idx)?;
    let d = t.shape()[dim];
    let outer: usize = t.shape()[..dim].iter().product();
    let inner: usize = t.shape()[dim + 1..].iter().product();
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
    let shape = pad2d_shape(x.shape(), left, right, top, bottom)?;
    let (planes, h, w) = planes_hw(x.shape());
    let (_, oh, ow) = planes_hw(&shape);
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
