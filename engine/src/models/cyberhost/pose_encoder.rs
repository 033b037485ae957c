//! `pose_encoder`: a rendered map (skeleton or movement box, (N, 3, H, W) in [0, 1]) →
//! features at latent resolution (N, C0, H/2^k, W/2^k), added after the U-Nets' `conv_in`.
//!
//! ```text
//! conv_in 3→P0 ─SiLU─ for i: blocks.{2i} P_i→P_i ─SiLU─ blocks.{2i+1} P_i→P_{i+1} /2 ─SiLU─
//!   ... conv_out P_last→C0            (all 3×3, padding 1; k = len(channels) − 1)
//! ```

use anyhow::{bail, Result};

use super::config::PoseEncoderConfig;
use crate::backends::{Backend, BackendExt, TensorLike};
use crate::models::nn::Conv2d;
use crate::var_builder::VarBuilder;

/// The pose / movement-map encoder (`pose_encoder.*`).
#[derive(Clone, Debug)]
pub struct PoseEncoder<B: Backend> {
    /// (P0, 3, 3, 3)
    pub conv_in: Conv2d<B>,
    /// blocks.{2i}: (P_i, P_i, 3, 3); blocks.{2i+1}: (P_{i+1}, P_i, 3, 3) stride 2
    pub blocks: Vec<Conv2d<B>>,
    /// (C0, P_last, 3, 3), zero-init when fresh
    pub conv_out: Conv2d<B>,
    pub cfg: PoseEncoderConfig,
}

impl<B: Backend> PoseEncoder<B> {
    /// `vb` at `pose_encoder`.
    pub fn load(vb: &VarBuilder<B>, cfg: &PoseEncoderConfig) -> Result<Self> {
        let p = &cfg.channels;
        if p.is_empty() {
            bail!("pose_encoder: `pose_encoder.channels` is empty");
        }
        let conv_in = Conv2d::load_same(&vb.pp("conv_in"), 3, p[0], 3, true)?;
        let mut blocks = Vec::with_capacity(2 * (p.len() - 1));
        let bv = vb.pp("blocks");
        for i in 0..p.len() - 1 {
            blocks.push(Conv2d::load_same(&bv.pp(2 * i), p[i], p[i], 3, true)?);
            blocks.push(Conv2d::load(
                &bv.pp(2 * i + 1),
                p[i],
                p[i + 1],
                3,
                2,
                1,
                true,
            )?);
        }
        let conv_out = Conv2d::load_same(
            &vb.pp("conv_out"),
            p[p.len() - 1],
            cfg.out_channels,
            3,
            true,
        )?;
        Ok(PoseEncoder {
            conv_in,
            blocks,
            conv_out,
            cfg: cfg.clone(),
        })
    }

    /// The spatial downscale factor 2^(len(channels) − 1) (= the VAE's scale factor).
    pub fn downscale(&self) -> usize {
        1 << (self.cfg.channels.len() - 1)
    }

    /// maps (N, 3, H, W) in [0, 1] → (N, C0, H/2^k, W/2^k).
    pub fn forward(&self, be: &B, maps: &B::Tensor) -> Result<B::Tensor> {
        let s = maps.shape();
        let f = self.downscale();
        if s.len() != 4 || s[1] != 3 || s[2] % f != 0 || s[3] % f != 0 {
            bail!("pose_encoder: input has shape {s:?}, expected (N, 3, H, W) with H and W multiples of {f}");
        }
        let mut h = be.silu(&self.conv_in.forward(be, maps)?)?;
        for conv in &self.blocks {
            h = be.silu(&conv.forward(be, &h)?)?;
        }
        self.conv_out.forward(be, &h)
    }
}
