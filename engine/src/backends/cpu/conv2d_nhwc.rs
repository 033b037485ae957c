//! CPU reference of `kernels/cuda/conv2d_nhwc.cu`: the channels-last convolution
//! `y (N, Ho, Wo, O) = scale * (conv(x (N, H, W, C), w (O, C, kh, kw)) + temb + bias + residual)`
//! as the NCHW reference conv (`conv2d_ext` with the per-image temb `(N, O)`) between two
//! permutes (x to `(N, C, H, W)`, the result back to `(N, Ho, Wo, O)`), then the residual
//! `(N, Ho, Wo, O)` and the scale, in f32.

use anyhow::{ensure, Result};

use super::{layout, CpuBackend, CpuTensor};
use crate::backends::{Backend, Conv2dParams, ConvEpilogue, TensorLike};

/// `scale * (conv2d(x, w, bias) + temb + residual)` with x `(N, H, W, C)`, w
/// `(O, C / groups, kh, kw)`, bias `(O)`, temb `(N, O)`, residual `(N, Ho, Wo, O)`; the result
/// `(N, Ho, Wo, O)`.
pub fn conv2d_nhwc(
    x: &CpuTensor,
    w: &CpuTensor,
    bias: Option<&CpuTensor>,
    temb: Option<&CpuTensor>,
    residual: Option<&CpuTensor>,
    p: Conv2dParams,
    scale: f32,
) -> Result<CpuTensor> {
    ensure!(
        x.shape().len() == 4,
        "conv2d_nhwc: x must be (N, H, W, C), got {:?}",
        x.shape()
    );
    let nchw = layout::permute(x, &[0, 3, 1, 2])?;
    let epi = ConvEpilogue {
        temb,
        ..Default::default()
    };
    let y = CpuBackend.conv2d_ext(&nchw, w, bias, p, epi)?;
    let y = layout::permute(&y, &[0, 2, 3, 1])?;
    if let Some(r) = residual {
        ensure!(
            r.shape() == y.shape(),
            "conv2d_nhwc: residual {:?} must be the output's shape {:?}",
            r.shape(),
            y.shape()
        );
    }
    let data = match residual {
        Some(r) => y
            .data()
            .iter()
            .zip(r.data())
            .map(|(a, b)| (a + b) * scale)
            .collect(),
        None => y.data().iter().map(|a| a * scale).collect(),
    };
    CpuTensor::from_vec(y.shape(), data)
}
