//! AnimateDiff's temporal transformer, diffusers `AnimateDiffTransformer3D`
//! (`models/unets/unet_motion_model.py`): attention over frames, per pixel.
//!
//! ```text
//! x (B·F, C, H, W) → (B, C, F, H, W) → GroupNorm (eps 1e-6, stats over F, H, W)
//!   → (B·H·W, F, C) → proj_in → BasicTransformerBlocks (self-attn ×2, sinusoidal
//!   positions over frames, geglu) → proj_out → (B·F, C, H, W) → + x
//! ```
//!
//! The permutations ride in two ops ([`Backend::group_norm_tokens`],
//! [`Backend::linear_tokens_planes_add`]: `proj_out` with the permutation back and `+ x`): no
//! layout copies on CUDA.

use anyhow::{bail, Result};

use crate::backends::{Backend, TensorLike};
use crate::models::hooks::UNetHooks;
use crate::models::nn::{GroupNorm, Linear};
use crate::models::transformer::{BasicTransformerBlock, BasicTransformerBlockConfig};
use crate::var_builder::VarBuilder;

/// Construction arguments of `AnimateDiffTransformer3D` as the motion blocks build it.
#[derive(Clone, Debug)]
pub struct AnimateDiffTransformer3DConfig {
    /// e.g. 320
    pub in_channels: usize,
    /// e.g. 1 (`temporal_transformer_layers_per_block`)
    pub num_layers: usize,
    /// e.g. 32 (`norm_num_groups`)
    pub norm_num_groups: usize,
    /// The settings of every `transformer_blocks.{i}`: e.g. 8 heads
    /// (`motion_num_attention_heads`) of in_channels / heads, no cross-attention
    /// (`temporal_cross_attention_dim`), double self-attention, sinusoidal positions over
    /// `motion_max_seq_length` frames; its `dim` is replaced by heads · head_dim on load.
    pub block: BasicTransformerBlockConfig,
}

impl AnimateDiffTransformer3DConfig {
    /// The motion module of a block with `channels` channels.
    pub fn new(
        channels: usize,
        heads: usize,
        num_layers: usize,
        norm_num_groups: usize,
        max_seq_length: usize,
    ) -> Self {
        AnimateDiffTransformer3DConfig {
            in_channels: channels,
            num_layers,
            norm_num_groups,
            block: BasicTransformerBlockConfig {
                dim: channels,
                num_attention_heads: heads,
                attention_head_dim: if heads == 0 { 0 } else { channels / heads },
                cross_attention_dim: None,
                double_self_attention: true,
                sinusoidal_pos_embed: Some(max_seq_length),
                ..Default::default()
            },
        }
    }
}

impl Default for AnimateDiffTransformer3DConfig {
    fn default() -> Self {
        AnimateDiffTransformer3DConfig::new(320, 8, 1, 32, 32)
    }
}

#[derive(Clone, Debug)]
pub struct AnimateDiffTransformer3D<B: Backend> {
    pub norm: GroupNorm<B>,
    /// (inner, C)
    pub proj_in: Linear<B>,
    pub transformer_blocks: Vec<BasicTransformerBlock<B>>,
    /// (C, inner)
    pub proj_out: Linear<B>,
    pub inner_dim: usize,
}

impl<B: Backend> AnimateDiffTransformer3D<B> {
    /// `name` is the module's full checkpoint prefix, e.g. `down_blocks.0.motion_modules.0`.
    pub fn load(
        vb: &VarBuilder<B>,
        cfg: &AnimateDiffTransformer3DConfig,
        name: &str,
    ) -> Result<Self> {
        let c = cfg.in_channels;
        let heads = cfg.block.num_attention_heads;
        if heads == 0 || c % heads != 0 {
            bail!(
                "motion module `{name}`: {c} channels are not divisible by motion_num_attention_heads = {heads}"
            );
        }
        let inner = heads * cfg.block.attention_head_dim;
        let bcfg = BasicTransformerBlockConfig {
            dim: inner,
            ..cfg.block.clone()
        };
        let transformer_blocks =
            BasicTransformerBlock::load_stack(vb, &bcfg, cfg.num_layers, name)?;
        Ok(AnimateDiffTransformer3D {
            norm: GroupNorm::load(&vb.pp("norm"), cfg.norm_num_groups, c, 1e-6)?,
            proj_in: Linear::load(&vb.pp("proj_in"), c, inner, true)?,
            transformer_blocks,
            proj_out: Linear::load(&vb.pp("proj_out"), inner, c, true)?,
            inner_dim: inner,
        })
    }

    /// x (B·F, C, H, W), frame-major within each batch item → (B·F, C, H, W).
    pub fn forward(
        &self,
        be: &B,
        x: &B::Tensor,
        num_frames: usize,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<B::Tensor> {
        self.forward_concat(be, x, num_frames, hooks, None)
    }

    /// `forward`, then (with a `tail`, the next up layer's skip state) `concat([out, tail], 1)`,
    /// the output op writing its channels of the concat in place
    /// ([`Backend::linear_tokens_planes_add`](crate::backends::Backend::linear_tokens_planes_add)).
    pub fn forward_concat(
        &self,
        be: &B,
        x: &B::Tensor,
        num_frames: usize,
        hooks: &mut dyn UNetHooks<B>,
        tail: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let s = x.shape();
        let (bf, c, hh, ww) = (s[0], s[1], s[2], s[3]);
        if num_frames == 0 || bf % num_frames != 0 {
            bail!("motion module: batch·frames {bf} is not a multiple of num_frames {num_frames}");
        }
        let b = bf / num_frames;
        let f = num_frames;
        // GroupNorm over (B, C, F, H, W), written as tokens (B, H·W, F, C): one op, no permutes
        let h = be.group_norm_tokens(
            x,
            f,
            self.norm.groups,
            Some(&self.norm.weight),
            Some(&self.norm.bias),
            self.norm.eps,
        )?;
        let h = be.reshape(&h, &[b * hh * ww, f, c])?;
        let mut h = self.proj_in.forward(be, &h)?;
        for block in &self.transformer_blocks {
            h = block.forward(be, &h, None, hooks)?;
        }
        // proj_out written back as (B·F, C, H, W) with the skip connection + x: one op
        let out = &self.proj_out;
        be.linear_tokens_planes_add(&h, &out.weight, out.bias.as_ref(), x, f, tail)
    }
}
