//! Max pooling: x (N, C, H, W) → (N, C, Ho, Wo), square `kernel`, `stride`, `padding`,
//! Ho = (H + 2·padding − kernel) / stride + 1 (PyTorch `max_pool2d`, floor mode,
//! dilation 1; padded positions are −∞, so they never win).
//!
//! One rayon task per (image, channel) plane.

use anyhow::Result;
use rayon::prelude::*;

use super::CpuTensor;
use crate::backends::shape::max_pool2d_shape;
use crate::backends::TensorLike;

pub(crate) fn max_pool2d(
    x: &CpuTensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<CpuTensor> {
    let out_shape = max_pool2d_shape(x.shape(), kernel, stride, padding)?;
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (ho, wo) = (out_shape[2], out_shape[3]);
    let mut out = vec![0f32; n * c * ho * wo];
    if out.is_empty() {
        return Ok(CpuTensor::new_unchecked(vec![n, c, ho, wo], out));
    }
    let src = x.data();
    out.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(plane, dst)| {
            let p = &src[plane * h * w..(plane + 1) * h * w];
            for oy in 0..ho {
                // window rows oy·s − pad .. +kernel, clipped to the image (padding is −∞)
                let y0 = (oy * stride).saturating_sub(padding);
                let y1 = (oy * stride + kernel).saturating_sub(padding).min(h);
                for ox in 0..wo {
                    let x0 = (ox * stride).saturating_sub(padding);
                    let x1 = (ox * stride + kernel).saturating_sub(padding).min(w);
                    let mut m = f32::NEG_INFINITY;
                    for y in y0..y1 {
                        for &v in &p[y * w + x0..y * w + x1] {
                            // NaN propagates, as in PyTorch
                            if v > m || v.is_nan() {
                                m = v;
                            }
                        }
                    }
                    dst[oy * wo + ox] = m;
                }
            }
        });
    Ok(CpuTensor::new_unchecked(vec![n, c, ho, wo], out))
}
