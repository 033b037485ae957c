//! diffusers `ResnetBlock2D` (`models/resnet.py`), `time_embedding_norm = "default"`.
//!
//! ```text
//! h = conv1(act(norm1(x)))
//! h = h + time_emb_proj(act(temb))[:, :, None, None]      (when temb_channels is set)
//! h = conv2(act(norm2(h)))
//! out = (shortcut(x) + h) / output_scale_factor           (shortcut: 1x1 conv when C_in != C_out)
//! ```

use anyhow::{Context, Result};

use crate::backends::{Backend, ConvEpilogue, TensorLike};
use crate::models::nn::{Activation, Conv2d, GroupNorm, Linear};
use crate::var_builder::VarBuilder;

/// Construction arguments of `ResnetBlock2D` (diffusers names).
#[derive(Clone, Debug)]
pub struct ResnetBlock2DConfig {
    /// e.g. 320
    pub in_channels: usize,
    /// e.g. 640; `None` means `in_channels`
    pub out_channels: Option<usize>,
    /// e.g. Some(1280); `None` for the VAE (no time embedding, no `time_emb_proj`)
    pub temb_channels: Option<usize>,
    /// e.g. 32
    pub groups: usize,
    /// e.g. None (= `groups`)
    pub groups_out: Option<usize>,
    /// e.g. 1e-5 in the UNet, 1e-6 in the VAE
    pub eps: f32,
    /// e.g. "silu"
    pub non_linearity: Activation,
    /// e.g. 1.0
    pub output_scale_factor: f32,
    /// e.g. None: a 1x1 `conv_shortcut` exists iff in_channels != out_channels
    pub use_in_shortcut: Option<bool>,
    /// e.g. true
    pub conv_shortcut_bias: bool,
    /// e.g. None (= out_channels)
    pub conv_2d_out_channels: Option<usize>,
}

impl ResnetBlock2DConfig {
    /// A UNet/VAE resnet with diffusers' defaults for everything else.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        temb_channels: Option<usize>,
        groups: usize,
        eps: f32,
    ) -> Self {
        ResnetBlock2DConfig {
            in_channels,
            out_channels: Some(out_channels),
            temb_channels,
            groups,
            groups_out: None,
            eps,
            non_linearity: Activation::Silu,
            output_scale_factor: 1.0,
            use_in_shortcut: None,
            conv_shortcut_bias: true,
            conv_2d_out_channels: None,
        }
    }
}

impl Default for ResnetBlock2DConfig {
    fn default() -> Self {
        ResnetBlock2DConfig::new(320, 320, Some(1280), 32, 1e-5)
    }
}

#[derive(Clone, Debug)]
pub struct ResnetBlock2D<B: Backend> {
    pub norm1: GroupNorm<B>,
    /// (C_out, C_in, 3, 3)
    pub conv1: Conv2d<B>,
    /// (C_out, temb_channels)
    pub time_emb_proj: Option<Linear<B>>,
    pub norm2: GroupNorm<B>,
    /// (C_out2, C_out, 3, 3)
    pub conv2: Conv2d<B>,
    /// (C_out2, C_in, 1, 1)
    pub conv_shortcut: Option<Conv2d<B>>,
    pub act: Activation,
    pub output_scale_factor: f32,
    pub out_channels: usize,
}

impl<B: Backend> ResnetBlock2D<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &ResnetBlock2DConfig) -> Result<Self> {
        let cin = cfg.in_channels;
        let cout = cfg.out_channels.unwrap_or(cin);
        let cout2 = cfg.conv_2d_out_channels.unwrap_or(cout);
        let groups_out = cfg.groups_out.unwrap_or(cfg.groups);
        let norm1 = GroupNorm::load(&vb.pp("norm1"), cfg.groups, cin, cfg.eps)?;
        let conv1 = Conv2d::load_same(&vb.pp("conv1"), cin, cout, 3, true)?;
        let time_emb_proj = match cfg.temb_channels {
            Some(t) => Some(Linear::load(&vb.pp("time_emb_proj"), t, cout, true)?),
            None => None,
        };
        let norm2 = GroupNorm::load(&vb.pp("norm2"), groups_out, cout, cfg.eps)?;
        let conv2 = Conv2d::load_same(&vb.pp("conv2"), cout, cout2, 3, true)?;
        let use_in_shortcut = cfg.use_in_shortcut.unwrap_or(cin != cout2);
        let conv_shortcut = if use_in_shortcut {
            Some(Conv2d::load_same(
                &vb.pp("conv_shortcut"),
                cin,
                cout2,
                1,
                cfg.conv_shortcut_bias,
            )?)
        } else {
            None
        };
        Ok(ResnetBlock2D {
            norm1,
            conv1,
            time_emb_proj,
            norm2,
            conv2,
            conv_shortcut,
            act: cfg.non_linearity,
            output_scale_factor: cfg.output_scale_factor,
            out_channels: cout2,
        })
    }

    /// x (N, C_in, H, W), temb (N, temb_channels) or None → (N, C_out, H, W).
    ///
    /// Fused: `act(norm)` is one `group_norm_act`; the time embedding rides in `conv1`'s
    /// epilogue; the shortcut and `1 / output_scale_factor` in `conv2`'s.
    pub fn forward(&self, be: &B, x: &B::Tensor, temb: Option<&B::Tensor>) -> Result<B::Tensor> {
        self.forward_concat(be, x, temb, None)
    }

    /// `forward`, then (with a `tail`) `concat([out, tail], 1)`, the output conv writing its
    /// channels of the concat in place ([`Conv2d::forward_ext_concat`]): the mid block's last
    /// resnet feeding the first up block's skip concat.
    pub fn forward_concat(
        &self,
        be: &B,
        x: &B::Tensor,
        temb: Option<&B::Tensor>,
        tail: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let h = self.norm1.forward_act(be, x, self.act)?;
        let t = match (&self.time_emb_proj, temb) {
            (Some(proj), Some(temb)) => {
                let t = self.act.forward(be, temb)?;
                Some(proj.forward(be, &t)?)
            }
            _ => None,
        };
        let h = self
            .conv1
            .forward_ext(
                be,
                &h,
                ConvEpilogue {
                    temb: t.as_ref(),
                    ..Default::default()
                },
            )
            .context("ResnetBlock2D: temb must be (N, temb_channels) with N the sample batch")?;
        let h = self.norm2.forward_act(be, &h, self.act)?;
        let shortcut = match &self.conv_shortcut {
            Some(c) => c.forward(be, x)?,
            None => x.clone(),
        };
        let epi = ConvEpilogue {
            temb: None,
            residual: Some(&shortcut),
            scale: 1.0 / self.output_scale_factor,
        };
        self.conv2
            .forward_ext_concat(be, &h, epi, tail)
            .with_context(|| {
                format!(
                    "ResnetBlock2D: shortcut {:?} must match conv2's output",
                    shortcut.shape()
                )
            })
    }
}
