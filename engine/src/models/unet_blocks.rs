//! The U-Net's down, mid and up blocks (`models/unets/unet_2d_blocks.py` and
//! `unet_motion_model.py`). One struct per role covers the 2-D and the motion
//! variant; what a block holds is decided by its config:
//!
//! | diffusers class            | attention | motion |
//! |----------------------------|-----------|--------|
//! | `DownBlock2D`              | -         | -      |
//! | `CrossAttnDownBlock2D`     | yes       | -      |
//! | `DownBlockMotion`          | -         | yes    |
//! | `CrossAttnDownBlockMotion` | yes       | yes    |
//!
//! (likewise `UpBlock2D`/`CrossAttnUpBlock2D`/`UpBlockMotion`/`CrossAttnUpBlockMotion`
//! and `UNetMidBlock2DCrossAttn`/`UNetMidBlockCrossAttnMotion`).
//!
//! ```text
//! down layer j: resnet → [attention] → [motion module]          → output state
//! mid:          resnet₀, then per layer: attention → [motion] → resnet
//! up layer j:   concat(h, skip) → resnet → [attention] → [motion]; hook; upsampler
//!               (on CUDA the producer of h writes it into the concat: the previous layer's last
//!               op, the previous block's upsampler conv or the mid block's last resnet)
//! ```

use anyhow::{bail, Result};

use crate::backends::{Backend, TensorLike};
use crate::models::hooks::UNetHooks;
use crate::models::motion_module::{AnimateDiffTransformer3D, AnimateDiffTransformer3DConfig};
use crate::models::nn::Activation;
use crate::models::resnet::{ResnetBlock2D, ResnetBlock2DConfig};
use crate::models::sampling::{Downsample2D, Downsample2DConfig, Upsample2D, Upsample2DConfig};
use crate::models::transformer::{
    BasicTransformerBlockConfig, Transformer2DModel, Transformer2DModelConfig,
};
use crate::var_builder::VarBuilder;

/// The spatial transformers of a cross-attention block.
#[derive(Clone, Debug)]
pub struct CrossAttnConfig {
    /// e.g. 8 (head_dim = channels / heads)
    pub num_attention_heads: usize,
    /// `transformer_layers_per_block`, one entry per layer, e.g. [1, 1]
    pub transformer_layers: Vec<usize>,
    /// e.g. 768
    pub cross_attention_dim: usize,
    /// e.g. false
    pub use_linear_projection: bool,
    /// e.g. false
    pub only_cross_attention: bool,
}

/// The motion modules of a motion block.
#[derive(Clone, Debug)]
pub struct MotionConfig {
    /// `motion_num_attention_heads`, e.g. 8
    pub num_attention_heads: usize,
    /// `temporal_transformer_layers_per_block`, one entry per layer, e.g. [1, 1]
    pub transformer_layers: Vec<usize>,
    /// `motion_max_seq_length`, e.g. 32
    pub max_seq_length: usize,
}

/// Resnet settings shared by a block's resnets.
#[derive(Clone, Copy, Debug)]
pub struct ResnetSettings {
    /// e.g. 1280
    pub temb_channels: usize,
    /// `norm_eps`, e.g. 1e-5
    pub eps: f32,
    /// `act_fn`, e.g. silu
    pub act: Activation,
    /// `norm_num_groups`, e.g. 32
    pub groups: usize,
    /// e.g. 1.0 (`mid_block_scale_factor` in the mid block)
    pub output_scale_factor: f32,
}

impl ResnetSettings {
    fn resnet(&self, cin: usize, cout: usize) -> ResnetBlock2DConfig {
        let mut c =
            ResnetBlock2DConfig::new(cin, cout, Some(self.temb_channels), self.groups, self.eps);
        c.non_linearity = self.act;
        c.output_scale_factor = self.output_scale_factor;
        c
    }
}

fn transformer_cfg(
    a: &CrossAttnConfig,
    channels: usize,
    groups: usize,
    layers: usize,
    name: &str,
) -> Result<Transformer2DModelConfig> {
    let heads = a.num_attention_heads;
    if heads == 0 || channels % heads != 0 {
        bail!("`{name}`: {channels} channels are not divisible by {heads} attention heads (check `attention_head_dim` / `num_attention_heads`)");
    }
    Ok(Transformer2DModelConfig {
        in_channels: channels,
        out_channels: None,
        num_layers: layers,
        norm_num_groups: groups,
        use_linear_projection: a.use_linear_projection,
        block: BasicTransformerBlockConfig {
            dim: channels,
            num_attention_heads: heads,
            attention_head_dim: channels / heads,
            cross_attention_dim: Some(a.cross_attention_dim),
            only_cross_attention: a.only_cross_attention,
            ..Default::default()
        },
    })
}

fn layer_count(v: &[usize], num_layers: usize, what: &str, name: &str) -> Result<()> {
    if v.len() != num_layers {
        bail!(
            "`{name}`: {what} has {} entries but the block has {num_layers} layers",
            v.len()
        );
    }
    Ok(())
}

/// Checks that the attention and motion configs (where present) give one transformer
/// count per layer; `motion_key` names the motion count in the config.
fn check_layer_counts(
    attention: Option<&CrossAttnConfig>,
    motion: Option<&MotionConfig>,
    num_layers: usize,
    motion_key: &str,
    name: &str,
) -> Result<()> {
    if let Some(a) = attention {
        layer_count(
            &a.transformer_layers,
            num_layers,
            "transformer_layers_per_block",
            name,
        )?;
    }
    if let Some(m) = motion {
        layer_count(&m.transformer_layers, num_layers, motion_key, name)?;
    }
    Ok(())
}

/// Where a block's per-layer transformers load from: the block's weights, channels,
/// norm groups and checkpoint prefix.
struct BlockSite<'a, B: Backend> {
    vb: &'a VarBuilder<B>,
    channels: usize,
    groups: usize,
    name: &'a str,
}

impl<B: Backend> BlockSite<'_, B> {
    /// Layer `i`'s spatial transformer.
    fn attention(&self, a: &CrossAttnConfig, i: usize) -> Result<Transformer2DModel<B>> {
        let n = format!("{}.attentions.{i}", self.name);
        let t = transformer_cfg(a, self.channels, self.groups, a.transformer_layers[i], &n)?;
        Transformer2DModel::load(&self.vb.pp("attentions").pp(i.to_string()), &t, &n)
    }

    /// Layer `i`'s motion module.
    fn motion(&self, m: &MotionConfig, i: usize) -> Result<AnimateDiffTransformer3D<B>> {
        let n = format!("{}.motion_modules.{i}", self.name);
        let mc = AnimateDiffTransformer3DConfig::new(
            self.channels,
            m.num_attention_heads,
            m.transformer_layers[i],
            self.groups,
            m.max_seq_length,
        );
        AnimateDiffTransformer3D::load(&self.vb.pp("motion_modules").pp(i.to_string()), &mc, &n)
    }
}

/// What every layer of a block reads besides the hidden state.
pub struct BlockInputs<'a, B: Backend> {
    /// The time embedding (N, D), one row per batch item and frame.
    pub temb: &'a B::Tensor,
    /// (N, S, D), for the spatial transformers' cross-attention.
    pub encoder_hidden_states: Option<&'a B::Tensor>,
    /// F: the motion modules attend over the frames of each batch item.
    pub num_frames: usize,
}

impl<B: Backend> BlockInputs<'_, B> {
    /// Runs a layer's spatial transformer and motion module, where the block has them; with a
    /// `tail`, the last of them concatenates it after its output (`concat([out, tail], 1)`).
    fn extras(
        &self,
        be: &B,
        h: B::Tensor,
        attention: Option<&Transformer2DModel<B>>,
        motion: Option<&AnimateDiffTransformer3D<B>>,
        hooks: &mut dyn UNetHooks<B>,
        tail: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let mut h = h;
        if let Some(attn) = attention {
            let t = if motion.is_none() { tail } else { None };
            h = attn.forward_concat(be, &h, self.encoder_hidden_states, hooks, t)?;
        }
        match motion {
            Some(mm) => mm.forward_concat(be, &h, self.num_frames, hooks, tail),
            None => Ok(h),
        }
    }
}

/// The layers of a down or up block: `num_layers` × (resnet → [attention] → [motion]).
#[derive(Clone, Debug)]
pub struct LayerStackConfig {
    /// e.g. 640
    pub out_channels: usize,
    /// `layers_per_block` (down) or `layers_per_block + 1` (up), e.g. 2
    pub num_layers: usize,
    pub resnet: ResnetSettings,
    pub attention: Option<CrossAttnConfig>,
    pub motion: Option<MotionConfig>,
}

impl LayerStackConfig {
    /// Loads the block `name`: its layers (layer i's resnet takes `resnet_in(i)` channels),
    /// then its resampler, if `sampler()` gives one.
    fn load_block<B: Backend, S>(
        &self,
        vb: &VarBuilder<B>,
        name: &str,
        resnet_in: impl Fn(usize) -> usize,
        sampler: impl FnOnce() -> Result<Option<S>>,
    ) -> Result<SampledBlock<B, S>> {
        check_layer_counts(
            self.attention.as_ref(),
            self.motion.as_ref(),
            self.num_layers,
            "temporal_transformer_layers_per_block",
            name,
        )?;
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        let mut motion_modules = Vec::new();
        let site = BlockSite {
            vb,
            channels: self.out_channels,
            groups: self.resnet.groups,
            name,
        };
        for i in 0..self.num_layers {
            let r = self.resnet.resnet(resnet_in(i), self.out_channels);
            resnets.push(ResnetBlock2D::load(
                &vb.pp("resnets").pp(i.to_string()),
                &r,
            )?);
            if let Some(a) = &self.attention {
                attentions.push(site.attention(a, i)?);
            }
            if let Some(m) = &self.motion {
                motion_modules.push(site.motion(m, i)?);
            }
        }
        Ok(SampledBlock {
            resnets,
            attentions,
            motion_modules,
            sampler: sampler()?,
        })
    }
}

/// A down block (`S` = [`Downsample2D`]) or an up block (`S` = [`Upsample2D`]): its layers,
/// then the resampler (none in the last block).
#[derive(Clone, Debug)]
pub struct SampledBlock<B: Backend, S> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub attentions: Vec<Transformer2DModel<B>>,
    pub motion_modules: Vec<AnimateDiffTransformer3D<B>>,
    pub sampler: Option<S>,
}

impl<B: Backend, S> SampledBlock<B, S> {
    /// Layer i on `h`: resnet → [attention] → [motion]; with a `tail` (an up block's next skip
    /// state), the layer's last op writes `concat([out, tail], 1)`.
    fn forward_layer(
        &self,
        be: &B,
        i: usize,
        h: &B::Tensor,
        inputs: &BlockInputs<'_, B>,
        hooks: &mut dyn UNetHooks<B>,
        tail: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let (attention, motion) = (self.attentions.get(i), self.motion_modules.get(i));
        let (resnet_tail, extras_tail) = match (attention, motion) {
            (None, None) => (tail, None),
            _ => (None, tail),
        };
        let h = self.resnets[i].forward_concat(be, h, Some(inputs.temb), resnet_tail)?;
        inputs.extras(be, h, attention, motion, hooks, extras_tail)
    }
}

// ---------------------------------------------------------------------------
// Down block
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct DownBlockConfig {
    /// e.g. 320
    pub in_channels: usize,
    pub layers: LayerStackConfig,
    /// e.g. true (false for the last block)
    pub add_downsample: bool,
    /// e.g. 1
    pub downsample_padding: usize,
}

pub type DownBlock<B> = SampledBlock<B, Downsample2D<B>>;

impl<B: Backend> DownBlock<B> {
    /// `name` is the block's checkpoint prefix, e.g. `down_blocks.0`.
    pub fn load(vb: &VarBuilder<B>, cfg: &DownBlockConfig, name: &str) -> Result<Self> {
        let out = cfg.layers.out_channels;
        let resnet_in = |i| if i == 0 { cfg.in_channels } else { out };
        cfg.layers.load_block(vb, name, resnet_in, || {
            let d = Downsample2DConfig::down(out, cfg.downsample_padding);
            cfg.add_downsample
                .then(|| Downsample2D::load(&vb.pp("downsamplers").pp("0"), &d))
                .transpose()
        })
    }

    /// Returns the block output and the states it pushes for the skip connections.
    pub fn forward(
        &self,
        be: &B,
        x: &B::Tensor,
        inputs: &BlockInputs<'_, B>,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<(B::Tensor, Vec<B::Tensor>)> {
        let mut h = x.clone();
        let mut states = Vec::with_capacity(self.resnets.len() + 1);
        for i in 0..self.resnets.len() {
            h = self.forward_layer(be, i, &h, inputs, hooks, None)?;
            states.push(h.clone());
        }
        if let Some(d) = &self.sampler {
            h = d.forward(be, &h)?;
            states.push(h.clone());
        }
        Ok((h, states))
    }
}

// ---------------------------------------------------------------------------
// Mid block
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct MidBlockConfig {
    /// e.g. 1280
    pub channels: usize,
    /// e.g. 1 (`mid_block_layers` in the motion model)
    pub num_layers: usize,
    pub resnet: ResnetSettings,
    pub attention: CrossAttnConfig,
    pub motion: Option<MotionConfig>,
}

#[derive(Clone, Debug)]
pub struct MidBlock<B: Backend> {
    /// num_layers + 1
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub attentions: Vec<Transformer2DModel<B>>,
    pub motion_modules: Vec<AnimateDiffTransformer3D<B>>,
}

impl<B: Backend> MidBlock<B> {
    /// `name` is the block's checkpoint prefix, `mid_block`.
    pub fn load(vb: &VarBuilder<B>, cfg: &MidBlockConfig, name: &str) -> Result<Self> {
        let c = cfg.channels;
        check_layer_counts(
            Some(&cfg.attention),
            cfg.motion.as_ref(),
            cfg.num_layers,
            "temporal_transformer_layers_per_mid_block",
            name,
        )?;
        let mut resnets = vec![ResnetBlock2D::load(
            &vb.pp("resnets").pp("0"),
            &cfg.resnet.resnet(c, c),
        )?];
        let mut attentions = Vec::new();
        let mut motion_modules = Vec::new();
        let site = BlockSite {
            vb,
            channels: c,
            groups: cfg.resnet.groups,
            name,
        };
        for i in 0..cfg.num_layers {
            // Checkpoint order: attention, resnet, then motion module.
            attentions.push(site.attention(&cfg.attention, i)?);
            resnets.push(ResnetBlock2D::load(
                &vb.pp("resnets").pp((i + 1).to_string()),
                &cfg.resnet.resnet(c, c),
            )?);
            if let Some(m) = &cfg.motion {
                motion_modules.push(site.motion(m, i)?);
            }
        }
        Ok(MidBlock {
            resnets,
            attentions,
            motion_modules,
        })
    }

    pub fn forward(
        &self,
        be: &B,
        x: &B::Tensor,
        inputs: &BlockInputs<'_, B>,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<B::Tensor> {
        self.forward_concat(be, x, inputs, hooks, None)
    }

    /// `forward`, then (with a `tail`, the first up block's first skip state) `concat([out,
    /// tail], 1)`, the last resnet's output conv writing its channels of the concat in place.
    pub fn forward_concat(
        &self,
        be: &B,
        x: &B::Tensor,
        inputs: &BlockInputs<'_, B>,
        hooks: &mut dyn UNetHooks<B>,
        tail: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let temb = Some(inputs.temb);
        let last = self.attentions.len();
        let tail_of = |i: usize| if i == last { tail } else { None };
        let mut h = self.resnets[0].forward_concat(be, x, temb, tail_of(0))?;
        for (i, attn) in self.attentions.iter().enumerate() {
            h = inputs.extras(be, h, Some(attn), self.motion_modules.get(i), hooks, None)?;
            h = self.resnets[i + 1].forward_concat(be, &h, temb, tail_of(i + 1))?;
        }
        Ok(h)
    }
}

// ---------------------------------------------------------------------------
// Up block
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct UpBlockConfig {
    /// channels of the skip states of the last layer, e.g. 640
    pub in_channels: usize,
    /// channels coming from the previous (deeper) block, e.g. 1280
    pub prev_output_channel: usize,
    /// `num_layers` is `layers_per_block + 1`, e.g. 3
    pub layers: LayerStackConfig,
    /// e.g. true (false for the last block)
    pub add_upsample: bool,
}

pub type UpBlock<B> = SampledBlock<B, Upsample2D<B>>;

impl<B: Backend> UpBlock<B> {
    /// `name` is the block's checkpoint prefix, e.g. `up_blocks.1`.
    pub fn load(vb: &VarBuilder<B>, cfg: &UpBlockConfig, name: &str) -> Result<Self> {
        let (out, last) = (cfg.layers.out_channels, cfg.layers.num_layers - 1);
        let resnet_in = |i| {
            let skip = if i == last { cfg.in_channels } else { out };
            let cin = if i == 0 { cfg.prev_output_channel } else { out };
            cin + skip
        };
        cfg.layers.load_block(vb, name, resnet_in, || {
            let u = Upsample2DConfig::up(out);
            cfg.add_upsample
                .then(|| Upsample2D::load(&vb.pp("upsamplers").pp("0"), &u))
                .transpose()
        })
    }

    /// Runs the layers (popping one skip state from the end of `skips` per resnet),
    /// then `hooks.after_up_block(index, ..)`, then the upsampler (to `upsample_size` if given).
    /// `skips.entry_concatenated`: x already is `concat(h, first skip)` (made by its producer);
    /// layer i's last op concatenates layer i + 1's skip state after its output;
    /// `skips.next`: the next block's first skip state, concatenated after the upsampler's
    /// output by the upsampler's conv. Returns the output and whether it is concatenated with
    /// `skips.next`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        be: &B,
        x: &B::Tensor,
        skips: UpSkips<'_, B>,
        inputs: &BlockInputs<'_, B>,
        upsample_size: Option<(usize, usize)>,
        index: usize,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<(B::Tensor, bool)> {
        let mut h = x.clone();
        let mut concatenated = skips.entry_concatenated;
        let layers = self.resnets.len();
        for i in 0..layers {
            let skip = match skips.own.pop() {
                Some(s) => s,
                None => bail!("up_blocks.{index}: ran out of skip connections"),
            };
            if skip.shape()[2..] != h.shape()[2..] {
                bail!(
                    "up_blocks.{index}: skip state {:?} does not match hidden state {:?}",
                    skip.shape(),
                    h.shape()
                );
            }
            if !concatenated {
                h = be.concat(&[&h, &skip], 1)?;
            }
            // The next layer's skip state: this layer's last op writes it after its output.
            let tail = if i + 1 < layers {
                skips.own.last()
            } else {
                None
            };
            h = self.forward_layer(be, i, &h, inputs, hooks, tail)?;
            concatenated = tail.is_some();
        }
        h = hooks.after_up_block(be, index, h, inputs.num_frames)?;
        match &self.sampler {
            Some(u) => Ok((
                u.forward_concat(be, &h, upsample_size, skips.next)?,
                skips.next.is_some(),
            )),
            None => Ok((h, false)),
        }
    }
}

/// The skip states an up block reads.
pub struct UpSkips<'a, B: Backend> {
    /// The block's own skip states, popped from the end (one per resnet).
    pub own: &'a mut Vec<B::Tensor>,
    /// The block's input already holds its first skip state after its own channels.
    pub entry_concatenated: bool,
    /// The next block's first skip state: the upsampler's conv concatenates it after its output.
    pub next: Option<&'a B::Tensor>,
}
