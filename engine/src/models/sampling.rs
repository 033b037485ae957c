//! diffusers `Downsample2D` (`models/downsampling.py`) and `Upsample2D`
//! (`models/upsampling.py`), without the optional norm / transposed conv / FIR variants.
//!
//! ```text
//! Downsample2D: [padding == 0: pad (0,1,0,1)] conv 3x3 stride 2 (use_conv) | avg_pool 2x2 (no conv)
//! Upsample2D:   nearest ×2 (or to output_size) → [conv 3x3 pad 1 (use_conv)]
//! ```

use anyhow::{bail, Result};

use crate::backends::{Backend, Conv2dParams, TensorLike};
use crate::models::nn::Conv2d;
use crate::var_builder::VarBuilder;

/// Construction arguments of `Downsample2D` and `Upsample2D` (diffusers names). Weights
/// live under `conv`.
#[derive(Clone, Debug)]
pub struct ResampleConfig {
    /// e.g. 320
    pub channels: usize,
    /// e.g. true
    pub use_conv: bool,
    /// e.g. None (= channels)
    pub out_channels: Option<usize>,
    /// e.g. 1 (UNet `downsample_padding`, and always for `Upsample2D`); 0 in the VAE's
    /// `Downsample2D` (then the input is padded (0,1,0,1))
    pub padding: usize,
    /// e.g. 3
    pub kernel_size: usize,
    /// e.g. true
    pub bias: bool,
}

pub type Downsample2DConfig = ResampleConfig;
pub type Upsample2DConfig = ResampleConfig;

impl ResampleConfig {
    /// A `Downsample2D` with a 3x3 conv (`padding` 1 in the UNet, 0 in the VAE).
    pub fn down(channels: usize, padding: usize) -> Self {
        ResampleConfig {
            channels,
            use_conv: true,
            out_channels: None,
            padding,
            kernel_size: 3,
            bias: true,
        }
    }

    /// An `Upsample2D` with a 3x3 conv, padding 1.
    pub fn up(channels: usize) -> Self {
        Self::down(channels, 1)
    }

    /// Output channels.
    fn out(&self) -> usize {
        self.out_channels.unwrap_or(self.channels)
    }

    /// The `conv` with this stride, where `use_conv`.
    fn conv<B: Backend>(&self, vb: &VarBuilder<B>, stride: usize) -> Result<Option<Conv2d<B>>> {
        if !self.use_conv {
            return Ok(None);
        }
        Ok(Some(Conv2d::load(
            &vb.pp("conv"),
            self.channels,
            self.out(),
            self.kernel_size,
            stride,
            self.padding,
            self.bias,
        )?))
    }
}

#[derive(Clone, Debug)]
pub struct Downsample2D<B: Backend> {
    /// (C_out, C, k, k), stride 2
    pub conv: Option<Conv2d<B>>,
    pub channels: usize,
    pub padding: usize,
}

impl<B: Backend> Downsample2D<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &Downsample2DConfig) -> Result<Self> {
        let conv = cfg.conv(vb, 2)?;
        if conv.is_none() && cfg.out() != cfg.channels {
            bail!(
                "Downsample2D `{}`: avg-pool downsampling cannot change channels",
                vb.prefix()
            );
        }
        Ok(Downsample2D {
            conv,
            channels: cfg.channels,
            padding: cfg.padding,
        })
    }

    /// x (N, C, H, W) → (N, C_out, H', W').
    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        if x.shape()[1] != self.channels {
            bail!(
                "Downsample2D: input has {} channels, expected {}",
                x.shape()[1],
                self.channels
            );
        }
        match &self.conv {
            Some(conv) => {
                if self.padding == 0 {
                    let x = be.pad2d(x, 0, 1, 0, 1)?;
                    conv.forward(be, &x)
                } else {
                    conv.forward(be, x)
                }
            }
            None => {
                // AvgPool2d(2, 2) as a depthwise conv with weights 1/4.
                let c = self.channels;
                let w = be.from_f32(&[c, 1, 2, 2], &vec![0.25; c * 4])?;
                let p = Conv2dParams {
                    stride: (2, 2),
                    groups: c,
                    ..Default::default()
                };
                be.conv2d(x, &w, None, p)
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Upsample2D<B: Backend> {
    /// (C_out, C, k, k)
    pub conv: Option<Conv2d<B>>,
    pub channels: usize,
}

impl<B: Backend> Upsample2D<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &Upsample2DConfig) -> Result<Self> {
        let conv = cfg.conv(vb, 1)?;
        Ok(Upsample2D {
            conv,
            channels: cfg.channels,
        })
    }

    /// x (N, C, H, W) → nearest to `output_size` (default (2H, 2W)) → [conv].
    pub fn forward(
        &self,
        be: &B,
        x: &B::Tensor,
        output_size: Option<(usize, usize)>,
    ) -> Result<B::Tensor> {
        self.forward_concat(be, x, output_size, None)
    }

    /// `forward`, then (with a `tail`) `concat([out, tail], 1)`, the conv writing its channels of
    /// the concat in place: the next up block's first skip concat.
    pub fn forward_concat(
        &self,
        be: &B,
        x: &B::Tensor,
        output_size: Option<(usize, usize)>,
        tail: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let s = x.shape();
        if s[1] != self.channels {
            bail!(
                "Upsample2D: input has {} channels, expected {}",
                s[1],
                self.channels
            );
        }
        let (oh, ow) = output_size.unwrap_or((s[2] * 2, s[3] * 2));
        let h = be.upsample_nearest2d(x, oh, ow)?;
        match (&self.conv, tail) {
            (Some(conv), None) => conv.forward(be, &h),
            (Some(conv), Some(_)) => conv.forward_ext_concat(be, &h, Default::default(), tail),
            (None, Some(t)) => be.concat(&[&h, t], 1),
            (None, None) => Ok(h),
        }
    }
}
