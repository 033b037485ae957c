//! Nearest-neighbour resize of (N, C, H, W), PyTorch `mode="nearest"`:
//! src = min(floor(dst · (in / out)), in − 1) with the scale computed in f32.

use anyhow::Result;
use rayon::prelude::*;

use super::CpuTensor;
use crate::backends::shape::upsample_nearest2d_shape;
use crate::backends::TensorLike;

/// Source index per destination index, as ATen's `nearest_idx`.
pub(crate) fn nearest_indices(input: usize, output: usize) -> Vec<usize> {
    if output == input {
        (0..output).collect()
    } else if output == 2 * input {
        (0..output).map(|i| i >> 1).collect()
    } else {
        let scale = input as f32 / output as f32;
        (0..output)
            .map(|i| ((i as f32 * scale).floor() as usize).min(input - 1))
            .collect()
    }
}

pub(crate) fn upsample_nearest2d(x: &CpuTensor, out_h: usize, out_w: usize) -> Result<CpuTensor> {
    upsample_nearest2d_shape(x.shape(), out_h, out_w)?;
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let iy = nearest_indices(h, out_h);
    let ix = nearest_indices(w, out_w);
    let mut out = vec![0.0f32; n * c * out_h * out_w];
    if out_h * out_w > 0 {
        let src = x.data();
        out.par_chunks_mut(out_h * out_w)
            .enumerate()
            .for_each(|(p, dst)| {
                let plane = &src[p * h * w..(p + 1) * h * w];
                for (y, row) in dst.chunks_mut(out_w).enumerate() {
                    let srow = &plane[iy[y] * w..(iy[y] + 1) * w];
                    for (o, &sx) in row.iter_mut().zip(&ix) {
                        *o = srow[sx];
                    }
                }
            });
    }
    Ok(CpuTensor::new_unchecked(vec![n, c, out_h, out_w], out))
}
