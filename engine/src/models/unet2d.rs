//! diffusers `UNet2DConditionModel` (`models/unets/unet_2d_condition.py`, 0.42.1),
//! built from its `config.json`.
//!
//! Supported: `CrossAttnDownBlock2D`, `DownBlock2D`, `UNetMidBlock2DCrossAttn` (or
//! no mid block), `CrossAttnUpBlock2D`, `UpBlock2D`; any channel/group/head sizes;
//! `attention_head_dim` int or per-block list (it is the number of heads: diffusers'
//! naming quirk; `num_attention_heads` wins when set); `use_linear_projection`;
//! `only_cross_attention`; `transformer_layers_per_block` int or per-block list;
//! `flip_sin_to_cos`, `freq_shift`, `time_embedding_dim`, `time_embedding_act_fn`,
//! `timestep_post_act`, `conv_in_kernel`, `conv_out_kernel`, `center_input_sample`,
//! `mid_block_scale_factor`. Everything else that changes the computation
//! (`class_embed_type`, `addition_embed_type`, `encoder_hid_dim_type`,
//! `resnet_time_scale_shift != "default"`, ...) is an error naming the key.

use anyhow::{bail, Context, Result};

use crate::backends::{Backend, TensorLike};
use crate::models::config_json::{config_constructors, ConfigJson};
use crate::models::hooks::UNetHooks;
use crate::models::nn::Activation;
use crate::models::unet_blocks::{CrossAttnConfig, MidBlockConfig};
use crate::models::unet_trunk::{
    down_up_block_configs, parse_block_layout, BlockTypeNames, TrunkBase, UNetModel,
    UNetTrunkConfig,
};

/// Parsed `UNet2DConditionModel` config: the resolved trunk.
#[derive(Clone, Debug)]
pub struct UNet2DConditionModelConfig {
    pub trunk: UNetTrunkConfig,
}

/// Strip diffusers' `UNetRes` prefix (`get_down_block` / `get_up_block` do the same).
fn strip_unetres(s: &str) -> &str {
    s.strip_prefix("UNetRes").unwrap_or(s)
}

impl UNet2DConditionModelConfig {
    config_constructors!("UNet2DConditionModel config");

    pub fn parse(c: &ConfigJson) -> Result<Self> {
        // --- what changes the computation but is not supported -----------------------
        for key in [
            "class_embed_type",
            "addition_embed_type",
            "encoder_hid_dim",
            "encoder_hid_dim_type",
            "num_class_embeds",
            "reverse_transformer_layers_per_block",
            "projection_class_embeddings_input_dim",
        ] {
            c.require_null(key)?;
        }
        c.require_str("time_embedding_type", "positional", &["positional"])?;
        c.require_str("resnet_time_scale_shift", "default", &["default"])?;
        c.require_str("attention_type", "default", &["default"])?;
        c.require_bool("dual_cross_attention", false, false)?;

        let (block_out, down_attn, up_attn) = parse_block_layout(
            c,
            &BlockTypeNames {
                cross_down: "CrossAttnDownBlock2D",
                down: "DownBlock2D",
                cross_up: "CrossAttnUpBlock2D",
                up: "UpBlock2D",
                normalize: strip_unetres,
            },
        )?;
        let n = block_out.len();
        // missing: diffusers' default; explicit null: no mid block
        let mid_type = match c.obj.contains_key("mid_block_type") {
            false => Some("UNetMidBlock2DCrossAttn".to_string()),
            true => c.opt_str("mid_block_type")?,
        };
        if let Some(t) = &mid_type {
            if t != "UNetMidBlock2DCrossAttn" {
                bail!(
                    "{}: mid block type {t:?} in `mid_block_type` is not supported \
                     (supported: \"UNetMidBlock2DCrossAttn\" or null)",
                    c.what
                );
            }
        }

        let base = TrunkBase::parse(c, block_out)?;
        let (layers, cross, tlayers) = (&base.layers, &base.cross, &base.tlayers);
        let head_dim = c.int_or_list("attention_head_dim", n, 8)?;
        // diffusers: num_attention_heads = num_attention_heads or attention_head_dim
        let heads = c
            .opt_int_or_list("num_attention_heads", n)?
            .unwrap_or(head_dim);
        let linear = c.bool("use_linear_projection", false)?;
        let only_cross = c.bool_or_list("only_cross_attention", n, false)?;
        let flip = c.bool("flip_sin_to_cos", true)?;
        let shift = c.f32("freq_shift", 0.0)?;
        let c0 = base.block_out[0];
        let time_embed_dim = c.usize("time_embedding_dim", c0 * 4)?;
        let time_embed_act = match c.opt_str("time_embedding_act_fn")? {
            Some(s) => Some(Activation::parse(&s, "time_embedding_act_fn")?),
            None => None,
        };
        let post_act = match c.opt_str("timestep_post_act")? {
            Some(s) => Some(Activation::parse(&s, "timestep_post_act")?),
            None => None,
        };

        let resnet = base.resnet(time_embed_dim, false);
        let attn = |i: usize, layers: usize| CrossAttnConfig {
            num_attention_heads: heads[i],
            transformer_layers: vec![tlayers[i]; layers],
            cross_attention_dim: cross[i],
            use_linear_projection: linear,
            only_cross_attention: only_cross[i],
        };

        let (down_blocks, up_blocks) = down_up_block_configs(
            &base.block_out,
            layers,
            resnet,
            base.downsample_padding,
            |i, l| (down_attn[i].then(|| attn(i, l)), None),
            // up block i mirrors down block n - 1 - i
            |i, l| (up_attn[i].then(|| attn(n - 1 - i, l)), None),
        );
        let mid_block = mid_type.map(|_| MidBlockConfig {
            channels: base.block_out[n - 1],
            num_layers: 1,
            resnet: base.resnet(time_embed_dim, true),
            attention: CrossAttnConfig {
                only_cross_attention: false,
                ..attn(n - 1, 1)
            },
            motion: None,
        });
        let mut trunk = base.trunk(time_embed_dim, down_blocks, mid_block, up_blocks);
        trunk.conv_in_kernel = c.usize("conv_in_kernel", 3)?;
        trunk.conv_out_kernel = c.usize("conv_out_kernel", 3)?;
        trunk.center_input_sample = c.bool("center_input_sample", false)?;
        trunk.time_proj.flip_sin_to_cos = flip;
        trunk.time_proj.downscale_freq_shift = shift;
        trunk.time_embedding.post_act_fn = post_act;
        trunk.time_embed_act = time_embed_act;
        Ok(UNet2DConditionModelConfig { trunk })
    }
}

/// `UNet2DConditionModel`: sample (B, C, H, W), timesteps (B,), encoder_hidden_states (B, S, D).
pub type UNet2DConditionModel<B> = UNetModel<B, UNet2DConditionModelConfig>;

impl<B: Backend> UNet2DConditionModel<B> {
    /// sample (B, C_in, H, W); timesteps B values (or 1 for all); encoder_hidden_states
    /// (B, S, cross_attention_dim) → (B, C_out, H, W).
    pub fn forward(
        &self,
        be: &B,
        sample: &B::Tensor,
        timesteps: &[f32],
        encoder_hidden_states: &B::Tensor,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<B::Tensor> {
        if sample.rank() != 4 {
            bail!(
                "UNet2DConditionModel: sample must be (B, C, H, W), got {:?}",
                sample.shape()
            );
        }
        self.trunk
            .forward(be, sample, timesteps, Some(encoder_hidden_states), 1, hooks)
            .context("UNet2DConditionModel forward")
    }
}
