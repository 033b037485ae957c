//! Mean over one dimension, kept with size 1 (f64 accumulation).

use anyhow::Result;
use rayon::prelude::*;

use super::CpuTensor;
use crate::backends::shape::mean_dim_shape;
use crate::backends::TensorLike;

pub(crate) fn mean_dim(t: &CpuTensor, dim: usize) -> Result<CpuTensor> {
    let shape = mean_dim_shape(t.shape(), dim)?;
    let d = t.shape()[dim];
    let outer: usize = t.shape()[..dim].iter().product();
    let inner: usize = t.shape()[dim + 1..].iter().product();
    let mut out = vec![0.0f32; outer * inner];
    if inner > 0 {
        let src = t.data();
        out.par_chunks_mut(inner).enumerate().for_each(|(o, dst)| {
            let mut acc = vec![0.0f64; inner];
            for j in 0..d {
                let row = &src[(o * d + j) * inner..(o * d + j + 1) * inner];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v as f64;
                }
            }
            for (o, a) in dst.iter_mut().zip(acc) {
                // mean of an empty dim is NaN, as in PyTorch.
                *o = (a / d as f64) as f32;
            }
        });
    }
    Ok(CpuTensor::new_unchecked(shape, out))
}
