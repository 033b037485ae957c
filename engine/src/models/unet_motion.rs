//! diffusers `UNetMotionModel` (AnimateDiff; `models/unets/unet_motion_model.py`,
//! 0.42.1), built from its `config.json`.
//!
//! Frames are folded into the batch for every spatial layer exactly as diffusers
//! does: sample (B, C, F, H, W) → (B·F, C, H, W), frame-major per batch item; the
//! time embedding is computed per batch item and repeated per frame; motion
//! modules attend over the F frames of each pixel.
//!
//! `encoder_hidden_states`: diffusers 0.31 passes it to the spatial transformers
//! unchanged, so it must have B·F rows (the AnimateDiff pipeline repeats the prompt
//! per frame before calling the U-Net). For convenience a (B, S, D) tensor is
//! repeated per frame here (what the pipeline does), giving the same numbers.
//!
//! Supported blocks: `CrossAttnDownBlockMotion`, `DownBlockMotion`,
//! `CrossAttnUpBlockMotion`, `UpBlockMotion`, and as mid block
//! `UNetMidBlockCrossAttnMotion` (`use_motion_mid_block`) or `UNetMidBlock2DCrossAttn`.
//! The time projection is always `Timesteps(C0, flip_sin_to_cos=True, 0)`, as in diffusers.

use anyhow::{bail, Context, Result};

use crate::backends::{Backend, TensorLike};
use crate::models::config_json::{config_constructors, ConfigJson};
use crate::models::hooks::UNetHooks;
use crate::models::nn::Activation;
use crate::models::unet_blocks::{CrossAttnConfig, MidBlockConfig, MotionConfig};
use crate::models::unet_trunk::{
    down_up_block_configs, parse_block_layout, BlockTypeNames, TrunkBase, UNetModel,
    UNetTrunkConfig,
};

/// Parsed `UNetMotionModel` config: the resolved trunk.
#[derive(Clone, Debug)]
pub struct UNetMotionModelConfig {
    pub trunk: UNetTrunkConfig,
    /// `motion_max_seq_length`, e.g. 32: the most frames a forward may have.
    pub motion_max_seq_length: usize,
}

impl UNetMotionModelConfig {
    config_constructors!("UNetMotionModel config");

    pub fn parse(c: &ConfigJson) -> Result<Self> {
        for key in [
            "encoder_hid_dim",
            "encoder_hid_dim_type",
            "addition_embed_type",
        ] {
            c.require_null(key)?;
        }
        let (block_out, down_attn, up_attn) = parse_block_layout(
            c,
            &BlockTypeNames {
                cross_down: "CrossAttnDownBlockMotion",
                down: "DownBlockMotion",
                cross_up: "CrossAttnUpBlockMotion",
                up: "UpBlockMotion",
                normalize: |s| s,
            },
        )?;
        let n = block_out.len();

        let base = TrunkBase::parse(c, block_out)?;
        let (layers, cross, tlayers) = (&base.layers, &base.cross, &base.tlayers);
        let rev_tlayers = c.opt_int_or_list("reverse_transformer_layers_per_block", n)?;
        let temporal = c.int_or_list("temporal_transformer_layers_per_block", n, 1)?;
        let rev_temporal = c.opt_int_or_list("reverse_temporal_transformer_layers_per_block", n)?;
        let heads = c.int_or_list("num_attention_heads", n, 8)?;
        let motion_heads = c.int_or_list("motion_num_attention_heads", n, 8)?;
        let max_seq = c.usize("motion_max_seq_length", 32)?;
        let use_motion_mid = c.bool("use_motion_mid_block", true)?;
        let mid_layers = c.usize("mid_block_layers", 1)?;
        let linear = c.bool("use_linear_projection", false)?;
        let mid_tlayers = c
            .opt_int_or_list("transformer_layers_per_mid_block", mid_layers)?
            .unwrap_or_else(|| vec![tlayers[n - 1]; mid_layers]);
        let mid_temporal =
            c.int_or_list("temporal_transformer_layers_per_mid_block", mid_layers, 1)?;
        let time_embed_dim = base.block_out[0] * 4;
        let resnet = base.resnet(time_embed_dim, false);
        let attn = |i: usize, transformer_layers: Vec<usize>| CrossAttnConfig {
            num_attention_heads: heads[i],
            transformer_layers,
            cross_attention_dim: cross[i],
            use_linear_projection: linear,
            only_cross_attention: false,
        };
        let motion = |i: usize, transformer_layers: Vec<usize>| MotionConfig {
            num_attention_heads: motion_heads[i],
            transformer_layers,
            max_seq_length: max_seq,
        };
        let rev = |v: &[usize]| v.iter().rev().copied().collect::<Vec<_>>();
        let rt = rev_tlayers.unwrap_or_else(|| rev(tlayers));
        let rtt = rev_temporal.unwrap_or_else(|| rev(&temporal));
        let (down_blocks, up_blocks) = down_up_block_configs(
            &base.block_out,
            layers,
            resnet,
            base.downsample_padding,
            |i, l| {
                let a = down_attn[i].then(|| attn(i, vec![tlayers[i]; l]));
                (a, Some(motion(i, vec![temporal[i]; l])))
            },
            // up block i mirrors down block n - 1 - i
            |i, l| {
                let a = up_attn[i].then(|| attn(n - 1 - i, vec![rt[i]; l]));
                (a, Some(motion(n - 1 - i, vec![rtt[i]; l])))
            },
        );
        let mid_block = Some(MidBlockConfig {
            channels: base.block_out[n - 1],
            num_layers: mid_layers,
            resnet: base.resnet(time_embed_dim, true),
            attention: attn(n - 1, mid_tlayers),
            motion: use_motion_mid.then(|| motion(n - 1, mid_temporal)),
        });
        let mut trunk = base.trunk(time_embed_dim, down_blocks, mid_block, up_blocks);
        // always SiLU after `conv_norm_out` in diffusers' UNetMotionModel
        trunk.conv_act = Activation::Silu;
        Ok(UNetMotionModelConfig {
            trunk,
            motion_max_seq_length: max_seq,
        })
    }
}

/// `UNetMotionModel`: sample (B, C, F, H, W), timesteps (B,), encoder_hidden_states (B·F or B, S, D).
pub type UNetMotionModel<B> = UNetModel<B, UNetMotionModelConfig>;

impl<B: Backend> UNetMotionModel<B> {
    /// sample (B, C_in, F, H, W); timesteps B values (or 1 for all); encoder_hidden_states
    /// (B·F, S, D) frame-major per batch item, or (B, S, D) shared by the frames
    /// → (B, C_out, F, H, W).
    pub fn forward(
        &self,
        be: &B,
        sample: &B::Tensor,
        timesteps: &[f32],
        encoder_hidden_states: &B::Tensor,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<B::Tensor> {
        let t = be.from_f32_full(&[timesteps.len()], timesteps)?;
        self.forward_t(be, sample, &t, encoder_hidden_states, hooks)
    }

    /// [`Self::forward`] with the timesteps (B,) (or (1,)) on the device.
    pub fn forward_t(
        &self,
        be: &B,
        sample: &B::Tensor,
        timesteps: &B::Tensor,
        encoder_hidden_states: &B::Tensor,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<B::Tensor> {
        let s = sample.shape().to_vec();
        if s.len() != 5 {
            bail!("UNetMotionModel: sample must be (B, C, F, H, W), got {s:?}");
        }
        let (b, c, f, h, w) = (s[0], s[1], s[2], s[3], s[4]);
        if f > self.config.motion_max_seq_length {
            bail!(
                "UNetMotionModel: {f} frames exceed motion_max_seq_length {}",
                self.config.motion_max_seq_length
            );
        }
        let e = encoder_hidden_states;
        if e.rank() != 3 {
            bail!(
                "UNetMotionModel: encoder_hidden_states must be (B·F, S, D), got {:?}",
                e.shape()
            );
        }
        let enc = if e.shape()[0] == b * f {
            e.clone()
        } else if e.shape()[0] == b {
            let idx: Vec<usize> = (0..b * f).map(|i| i / f).collect();
            be.index_select(e, 0, &idx)?
        } else {
            bail!(
                "UNetMotionModel: encoder_hidden_states has {} rows; expected batch·frames = {} (or batch = {b})",
                e.shape()[0],
                b * f
            );
        };
        // (B, C, F, H, W) → (B, F, C, H, W) → (B·F, C, H, W)
        let x = be.permute(sample, &[0, 2, 1, 3, 4])?;
        let x = be.reshape(&x, &[b * f, c, h, w])?;
        let y = self
            .trunk
            .forward_t(be, &x, timesteps, Some(&enc), f, hooks)
            .context("UNetMotionModel forward")?;
        let co = y.shape()[1];
        let y = be.reshape(&y, &[b, f, co, h, w])?;
        be.permute(&y, &[0, 2, 1, 3, 4])
    }
}
