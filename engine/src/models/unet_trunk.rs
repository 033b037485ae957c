//! The U-Net trunk shared by `UNet2DConditionModel` and `UNetMotionModel`
//! (same checkpoint layout): time embedding, `conv_in`, down blocks, mid block,
//! up blocks, `conv_norm_out`, `conv_out`, with the [`UNetHooks`] call sites.
//!
//! ```text
//! emb = time_embedding(time_proj(t))  (B, D) ─hook─► [time_embed_act] ─repeat per frame─► (B·F, D)
//! h = conv_in(x) ─hook─► down blocks (push skips) → mid → up blocks (pop skips; hook before
//! each upsampler) → conv_out(act(conv_norm_out(h)))
//! ```

use anyhow::{bail, Context, Result};

use crate::backends::shape::{ShapeBackend, ShapeTensor};
use crate::backends::{Backend, BackendExt, ConvEpilogue, TensorLike};
use crate::models::config_json::ConfigJson;
use crate::models::embeddings::{TimestepEmbedding, TimestepEmbeddingConfig, Timesteps};
use crate::models::hooks::UNetHooks;
use crate::models::motion_module::AnimateDiffTransformer3D;
use crate::models::nn::{Activation, Conv2d, GroupNorm};
use crate::models::transformer::{BasicTransformerBlock, Transformer2DModel};
use crate::models::unet2d::UNet2DConditionModelConfig;
use crate::models::unet_blocks::{
    BlockInputs, CrossAttnConfig, DownBlock, DownBlockConfig, LayerStackConfig, MidBlock,
    MidBlockConfig, MotionConfig, ResnetSettings, UpBlock, UpBlockConfig, UpSkips,
};
use crate::models::unet_motion::UNetMotionModelConfig;
use crate::var_builder::VarBuilder;

/// A fully resolved trunk: every block spelled out (built from a config.json by
/// `UNet2DConditionModelConfig` / `UNetMotionModelConfig`).
#[derive(Clone, Debug)]
pub struct UNetTrunkConfig {
    /// e.g. 4
    pub in_channels: usize,
    /// e.g. 4
    pub out_channels: usize,
    /// e.g. [320, 640, 1280, 1280]
    pub block_out_channels: Vec<usize>,
    /// e.g. 3
    pub conv_in_kernel: usize,
    /// e.g. 3
    pub conv_out_kernel: usize,
    /// e.g. false
    pub center_input_sample: bool,
    pub time_proj: Timesteps,
    pub time_embedding: TimestepEmbeddingConfig,
    /// `time_embedding_act_fn`, e.g. None
    pub time_embed_act: Option<Activation>,
    pub down_blocks: Vec<DownBlockConfig>,
    /// None when `mid_block_type` is null
    pub mid_block: Option<MidBlockConfig>,
    pub up_blocks: Vec<UpBlockConfig>,
    /// `norm_num_groups`, `norm_eps` of `conv_norm_out`, e.g. Some((32, 1e-5))
    pub conv_norm_out: Option<(usize, f32)>,
    /// activation after `conv_norm_out`, e.g. silu
    pub conv_act: Activation,
}

#[derive(Clone, Debug)]
pub struct UNetTrunk<B: Backend> {
    pub time_proj: Timesteps,
    pub time_embedding: TimestepEmbedding<B>,
    pub time_embed_act: Option<Activation>,
    /// (C0, in_channels, k, k)
    pub conv_in: Conv2d<B>,
    pub down_blocks: Vec<DownBlock<B>>,
    pub mid_block: Option<MidBlock<B>>,
    pub up_blocks: Vec<UpBlock<B>>,
    pub conv_norm_out: Option<GroupNorm<B>>,
    pub conv_act: Activation,
    /// (out_channels, C0, k, k)
    pub conv_out: Conv2d<B>,
    pub center_input_sample: bool,
    pub num_upsamplers: usize,
    pub in_channels: usize,
}

impl<B: Backend> UNetTrunk<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &UNetTrunkConfig) -> Result<Self> {
        let c0 = cfg.block_out_channels[0];
        let conv_in = Conv2d::load_same(
            &vb.pp("conv_in"),
            cfg.in_channels,
            c0,
            cfg.conv_in_kernel,
            true,
        )?;
        let time_embedding =
            TimestepEmbedding::load(&vb.pp("time_embedding"), &cfg.time_embedding)?;
        let down_blocks = load_blocks(vb, "down_blocks", &cfg.down_blocks, DownBlock::load)?;
        let mid_block = match &cfg.mid_block {
            Some(m) => Some(MidBlock::load(&vb.pp("mid_block"), m, "mid_block")?),
            None => None,
        };
        let up_blocks = load_blocks(vb, "up_blocks", &cfg.up_blocks, UpBlock::load)?;
        let conv_norm_out = match cfg.conv_norm_out {
            Some((g, eps)) => Some(GroupNorm::load(&vb.pp("conv_norm_out"), g, c0, eps)?),
            None => None,
        };
        let conv_out = Conv2d::load_same(
            &vb.pp("conv_out"),
            c0,
            cfg.out_channels,
            cfg.conv_out_kernel,
            true,
        )?;
        let num_upsamplers = cfg.up_blocks.iter().filter(|u| u.add_upsample).count();
        Ok(UNetTrunk {
            time_proj: cfg.time_proj,
            time_embedding,
            time_embed_act: cfg.time_embed_act,
            conv_in,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_act: cfg.conv_act,
            conv_out,
            center_input_sample: cfg.center_input_sample,
            num_upsamplers,
            in_channels: cfg.in_channels,
        })
    }

    /// Every `BasicTransformerBlock` (its hook name is `.name`), block by block:
    /// spatial transformers, then motion modules.
    pub fn transformer_blocks(&self) -> Vec<&BasicTransformerBlock<B>> {
        fn push<'a, B: Backend>(
            out: &mut Vec<&'a BasicTransformerBlock<B>>,
            ts: &'a [Transformer2DModel<B>],
            ms: &'a [AnimateDiffTransformer3D<B>],
        ) {
            out.extend(ts.iter().flat_map(|t| t.transformer_blocks.iter()));
            out.extend(ms.iter().flat_map(|m| m.transformer_blocks.iter()));
        }
        let mut out = Vec::new();
        for d in &self.down_blocks {
            push(&mut out, &d.attentions, &d.motion_modules);
        }
        if let Some(m) = &self.mid_block {
            push(&mut out, &m.attentions, &m.motion_modules);
        }
        for u in &self.up_blocks {
            push(&mut out, &u.attentions, &u.motion_modules);
        }
        out
    }

    /// The `BasicTransformerBlock`s of the spatial transformers: the ones whose `attn2` reads
    /// `encoder_hidden_states` (motion modules pass none).
    pub fn spatial_transformer_blocks(&self) -> Vec<&BasicTransformerBlock<B>> {
        let down = self.down_blocks.iter().map(|d| &d.attentions);
        let mid = self.mid_block.iter().map(|m| &m.attentions);
        let up = self.up_blocks.iter().map(|u| &u.attentions);
        down.chain(mid)
            .chain(up)
            .flat_map(|ts| ts.iter().flat_map(|t| t.transformer_blocks.iter()))
            .collect()
    }

    /// The embedding (B, D) of per-batch-item timesteps, after the time-embedding hook.
    pub fn time_embed(
        &self,
        be: &B,
        timesteps: &B::Tensor,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<B::Tensor> {
        let t = self.time_proj.forward_t(be, timesteps)?;
        let r = hooks.time_embedding_residual(be)?;
        let emb = self.time_embedding.forward(be, &t, r.as_ref())?;
        let emb = hooks.after_time_embedding(be, emb)?;
        match self.time_embed_act {
            Some(a) => a.forward(be, &emb),
            None => Ok(emb),
        }
    }

    /// [`Self::forward_t`] with the timesteps given on the host.
    pub fn forward(
        &self,
        be: &B,
        sample: &B::Tensor,
        timesteps: &[f32],
        encoder_hidden_states: Option<&B::Tensor>,
        num_frames: usize,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<B::Tensor> {
        let t = be.from_f32_full(&[timesteps.len()], timesteps)?;
        self.forward_t(be, sample, &t, encoder_hidden_states, num_frames, hooks)
    }

    /// sample (B·F, C_in, H, W) frame-major per batch item; timesteps (B,) (or (1,),
    /// broadcast) on the device, so a replayed step graph reads new values without re-capture;
    /// encoder_hidden_states (B·F, S, D) or None → (B·F, C_out, H, W).
    pub fn forward_t(
        &self,
        be: &B,
        sample: &B::Tensor,
        timesteps: &B::Tensor,
        encoder_hidden_states: Option<&B::Tensor>,
        num_frames: usize,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<B::Tensor> {
        let s = sample.shape().to_vec();
        if s.len() != 4 {
            bail!("UNet: sample must be (N, C, H, W), got {s:?}");
        }
        if s[1] != self.in_channels {
            bail!(
                "UNet: sample has {} channels but the model's in_channels is {}",
                s[1],
                self.in_channels
            );
        }
        let n = s[0];
        if num_frames == 0 || n % num_frames != 0 {
            bail!("UNet: batch·frames {n} is not a multiple of num_frames {num_frames}");
        }
        let b = n / num_frames;
        match timesteps.shape() {
            [1] => {}
            [l] if *l == b => {}
            other => bail!(
                "UNet: timesteps {other:?} for a batch of {b}; give one per batch item (or one for all)"
            ),
        }
        if let Some(e) = encoder_hidden_states {
            if e.rank() != 3 || e.shape()[0] != n {
                bail!(
                    "UNet: encoder_hidden_states {:?} must be (batch·frames = {n}, seq, dim)",
                    e.shape()
                );
            }
        }

        // upsample sizes are forwarded when H or W is not a multiple of 2^num_upsamplers
        let factor = 1usize << self.num_upsamplers;
        let forward_upsample_size = s[2] % factor != 0 || s[3] % factor != 0;

        let mut x = sample.clone();
        if self.center_input_sample {
            x = be.affine(&x, 2.0, -1.0)?;
        }
        let mut emb = match hooks.time_embedding(be)? {
            Some(e) => {
                if e.shape() != [b, self.time_embedding.linear_2.weight.shape()[0]] {
                    bail!(
                        "UNet: the precomputed time embedding {:?} must be (batch {b}, {})",
                        e.shape(),
                        self.time_embedding.linear_2.weight.shape()[0]
                    );
                }
                e
            }
            None => {
                let timesteps = if timesteps.shape()[0] != b {
                    be.index_select(timesteps, 0, &vec![0; b])?
                } else {
                    timesteps.clone()
                };
                self.time_embed(be, &timesteps, hooks)?
            }
        };
        if num_frames > 1 {
            let idx: Vec<usize> = (0..n).map(|i| i / num_frames).collect();
            emb = be.index_select(&emb, 0, &idx)?;
        }

        // a hook's feature map rides in conv_in's epilogue when it has the output's shape or is
        // one image of it (broadcast over the batch: the denoiser's p_move)
        let r = hooks.conv_in_residual(be, num_frames)?;
        let out = ShapeBackend.conv2d(
            &ShapeTensor::new(x.shape()),
            &ShapeTensor::new(self.conv_in.weight.shape()),
            None,
            self.conv_in.params,
        )?;
        let h = match &r {
            Some(r)
                if crate::backends::composed::check_conv_residual(r.shape(), out.shape())
                    .is_ok() =>
            {
                let epi = ConvEpilogue {
                    residual: Some(r),
                    ..Default::default()
                };
                self.conv_in.forward_ext(be, &x, epi)?
            }
            Some(r) => be.add(&self.conv_in.forward(be, &x)?, r)?,
            None => self.conv_in.forward(be, &x)?,
        };
        let mut h = hooks.after_conv_in(be, h, num_frames)?;
        let inputs = BlockInputs {
            temb: &emb,
            encoder_hidden_states,
            num_frames,
        };
        let mut skips = vec![h.clone()];
        for (i, block) in self.down_blocks.iter().enumerate() {
            let (out, states) = block
                .forward(be, &h, &inputs, hooks)
                .with_context(|| format!("down_blocks.{i}"))?;
            h = out;
            skips.extend(states);
        }
        // The concat of each up block's input with its first skip state is written by the
        // producer of that input (the mid block's last resnet, the previous block's upsampler).
        let mut entry_concatenated = false;
        if let Some(mid) = &self.mid_block {
            let tail = skips.last().filter(|_| !self.up_blocks.is_empty());
            h = mid
                .forward_concat(be, &h, &inputs, hooks, tail)
                .context("mid_block")?;
            entry_concatenated = tail.is_some();
        }
        let nb = self.up_blocks.len();
        for (i, block) in self.up_blocks.iter().enumerate() {
            let is_final = i + 1 == nb;
            let keep = skips
                .len()
                .checked_sub(block.resnets.len())
                .context("UNet: too few skip states")?;
            let upsample_size = if !is_final && forward_upsample_size && keep > 0 {
                let t = &skips[keep - 1];
                Some((t.shape()[2], t.shape()[3]))
            } else {
                None
            };
            let mut res = skips.split_off(keep);
            let up_skips = UpSkips {
                own: &mut res,
                entry_concatenated,
                next: if is_final { None } else { skips.last() },
            };
            (h, entry_concatenated) = block
                .forward(be, &h, up_skips, &inputs, upsample_size, i, hooks)
                .with_context(|| format!("up_blocks.{i}"))?;
        }
        if let Some(gn) = &self.conv_norm_out {
            h = gn.forward_act(be, &h, self.conv_act)?;
        }
        self.conv_out.forward(be, &h)
    }
}

/// Block i of `configs` loaded by `load` from `{prefix}.{i}` (also its name).
fn load_blocks<B: Backend, C, T>(
    vb: &VarBuilder<B>,
    prefix: &str,
    configs: &[C],
    load: impl Fn(&VarBuilder<B>, &C, &str) -> Result<T>,
) -> Result<Vec<T>> {
    let vbp = vb.pp(prefix);
    let one = |(i, c): (usize, &C)| load(&vbp.pp(i.to_string()), c, &format!("{prefix}.{i}"));
    configs.iter().enumerate().map(one).collect()
}

/// A U-Net model (`UNet2DConditionModel`, `UNetMotionModel`): its parsed config `C` and the
/// trunk built from it.
#[derive(Clone, Debug)]
pub struct UNetModel<B: Backend, C> {
    pub config: C,
    pub trunk: UNetTrunk<B>,
}

impl<B: Backend, C: Clone + AsRef<UNetTrunkConfig>> UNetModel<B, C> {
    pub fn load(vb: &VarBuilder<B>, cfg: &C) -> Result<Self> {
        Ok(UNetModel {
            config: cfg.clone(),
            trunk: UNetTrunk::load(vb, cfg.as_ref())?,
        })
    }

    /// Every `BasicTransformerBlock` (hook name: `.name`), spatial and temporal.
    pub fn transformer_blocks(&self) -> Vec<&BasicTransformerBlock<B>> {
        self.trunk.transformer_blocks()
    }
}

/// Both model configs hold their resolved trunk in `trunk`.
macro_rules! trunk_of {
    ($($config:ty),*) => {
        $(impl AsRef<UNetTrunkConfig> for $config {
            fn as_ref(&self) -> &UNetTrunkConfig {
                &self.trunk
            }
        })*
    };
}
trunk_of!(UNet2DConditionModelConfig, UNetMotionModelConfig);

/// The block type names of one U-Net family (`UNet2DConditionModel`: `...2D`;
/// `UNetMotionModel`: `...Motion`).
pub struct BlockTypeNames {
    pub cross_down: &'static str,
    pub down: &'static str,
    pub cross_up: &'static str,
    pub up: &'static str,
    /// Spellings that mean the same block (e.g. diffusers' `UNetRes` prefix) map to the canonical one.
    pub normalize: fn(&str) -> &str,
}

/// The checked block layout of a config: `block_out_channels` and, per level, whether the down /
/// up block has cross-attention. Errors name the key and the unsupported value.
pub fn parse_block_layout(
    c: &ConfigJson,
    names: &BlockTypeNames,
) -> Result<(Vec<usize>, Vec<bool>, Vec<bool>)> {
    let down_types = c.str_list(
        "down_block_types",
        &[
            names.cross_down,
            names.cross_down,
            names.cross_down,
            names.down,
        ],
    )?;
    let up_types = c.str_list(
        "up_block_types",
        &[names.up, names.cross_up, names.cross_up, names.cross_up],
    )?;
    let n = down_types.len();
    if n == 0 {
        bail!("{}: `down_block_types` is empty", c.what);
    }
    if up_types.len() != n {
        bail!(
            "{}: `down_block_types` has {n} entries but `up_block_types` has {}",
            c.what,
            up_types.len()
        );
    }
    let block_out = c.usize_list("block_out_channels", &[320, 640, 1280, 1280])?;
    if block_out.len() != n {
        bail!(
            "{}: `block_out_channels` has {} entries; expected {n}",
            c.what,
            block_out.len()
        );
    }
    let attn = |types: &[String],
                key: &str,
                dir: &str,
                cross: &str,
                plain: &str|
     -> Result<Vec<bool>> {
        types
            .iter()
            .map(|t| match (names.normalize)(t) {
                x if x == cross => Ok(true),
                x if x == plain => Ok(false),
                other => bail!(
                    "{}: {dir} block type {other:?} in `{key}` is not supported (supported: {cross:?}, {plain:?})",
                    c.what
                ),
            })
            .collect()
    };
    let down_attn = attn(
        &down_types,
        "down_block_types",
        "down",
        names.cross_down,
        names.down,
    )?;
    let up_attn = attn(&up_types, "up_block_types", "up", names.cross_up, names.up)?;
    Ok((block_out, down_attn, up_attn))
}

/// `norm_num_groups` (default 32); an explicit null is an error (the resnets need groups).
fn parse_norm_groups(c: &ConfigJson) -> Result<usize> {
    Ok(match c.opt_usize("norm_num_groups")? {
        Some(g) => g,
        None if c.obj.contains_key("norm_num_groups") => {
            bail!(
                "{}: `norm_num_groups` = null is not supported (the resnets need groups)",
                c.what
            )
        }
        None => 32,
    })
}

/// The attention and motion configs of one block, given its index and layer count.
pub(crate) type BlockExtras = (Option<CrossAttnConfig>, Option<MotionConfig>);

/// The down and up block configs of a trunk with `block_out` channels and `layers[i]`
/// resnets in down block i (one more in its mirror up block). `down_extras(i, num_layers)`
/// and `up_extras(i, num_layers)` give the attention and motion configs of down block i
/// and of up block i (up blocks count from the deepest).
pub(crate) fn down_up_block_configs(
    block_out: &[usize],
    layers: &[usize],
    resnet: ResnetSettings,
    downsample_padding: usize,
    down_extras: impl Fn(usize, usize) -> BlockExtras,
    up_extras: impl Fn(usize, usize) -> BlockExtras,
) -> (Vec<DownBlockConfig>, Vec<UpBlockConfig>) {
    let n = block_out.len();
    let stack = |out_channels: usize, num_layers: usize, (attention, motion): BlockExtras| {
        LayerStackConfig {
            out_channels,
            num_layers,
            resnet,
            attention,
            motion,
        }
    };
    let mut down_blocks = Vec::with_capacity(n);
    let mut out_ch = block_out[0];
    for i in 0..n {
        let in_ch = out_ch;
        out_ch = block_out[i];
        down_blocks.push(DownBlockConfig {
            in_channels: in_ch,
            layers: stack(out_ch, layers[i], down_extras(i, layers[i])),
            add_downsample: i + 1 < n,
            downsample_padding,
        });
    }
    let mut up_blocks = Vec::with_capacity(n);
    let mut out_ch = block_out[n - 1];
    for i in 0..n {
        let prev = out_ch;
        out_ch = block_out[n - 1 - i];
        let in_ch = block_out[n - 1 - (i + 1).min(n - 1)];
        let num_layers = layers[n - 1 - i] + 1;
        up_blocks.push(UpBlockConfig {
            in_channels: in_ch,
            prev_output_channel: prev,
            layers: stack(out_ch, num_layers, up_extras(i, num_layers)),
            add_upsample: i + 1 < n,
        });
    }
    (down_blocks, up_blocks)
}

/// The keys `UNet2DConditionModel` and `UNetMotionModel` configs read alike (read in this
/// order), with the block layout.
pub(crate) struct TrunkBase {
    pub block_out: Vec<usize>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub layers: Vec<usize>,
    pub downsample_padding: usize,
    pub mid_scale: f32,
    pub act: Activation,
    pub groups: usize,
    pub eps: f32,
    pub cross: Vec<usize>,
    pub tlayers: Vec<usize>,
}

impl TrunkBase {
    pub(crate) fn parse(c: &ConfigJson, block_out: Vec<usize>) -> Result<Self> {
        let n = block_out.len();
        Ok(TrunkBase {
            in_channels: c.usize("in_channels", 4)?,
            out_channels: c.usize("out_channels", 4)?,
            layers: c.int_or_list("layers_per_block", n, 2)?,
            downsample_padding: c.usize("downsample_padding", 1)?,
            mid_scale: c.f32("mid_block_scale_factor", 1.0)?,
            act: Activation::parse(&c.str("act_fn", "silu")?, "act_fn")?,
            groups: parse_norm_groups(c)?,
            eps: c.f32("norm_eps", 1e-5)?,
            cross: c.int_or_list("cross_attention_dim", n, 1280)?,
            tlayers: c.int_or_list("transformer_layers_per_block", n, 1)?,
            block_out,
        })
    }

    /// The resnet settings of the down and up blocks (`mid: true`: of the mid block, its
    /// output scaled by `mid_block_scale_factor`).
    pub(crate) fn resnet(&self, temb_channels: usize, mid: bool) -> ResnetSettings {
        ResnetSettings {
            temb_channels,
            eps: self.eps,
            act: self.act,
            groups: self.groups,
            output_scale_factor: if mid { self.mid_scale } else { 1.0 },
        }
    }

    /// The trunk with these blocks and a `time_embed_dim` time embedding; the rest is
    /// diffusers' defaults: 3x3 `conv_in`/`conv_out`, no input centring,
    /// `Timesteps(C0, flip_sin_to_cos=True, 0)`, no extra time activations, `act_fn` after
    /// `conv_norm_out`.
    pub(crate) fn trunk(
        self,
        time_embed_dim: usize,
        down_blocks: Vec<DownBlockConfig>,
        mid_block: Option<MidBlockConfig>,
        up_blocks: Vec<UpBlockConfig>,
    ) -> UNetTrunkConfig {
        let c0 = self.block_out[0];
        UNetTrunkConfig {
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            block_out_channels: self.block_out,
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            center_input_sample: false,
            time_proj: Timesteps {
                num_channels: c0,
                flip_sin_to_cos: true,
                downscale_freq_shift: 0.0,
            },
            time_embedding: TimestepEmbeddingConfig {
                in_channels: c0,
                time_embed_dim,
                act_fn: self.act,
                out_dim: None,
                post_act_fn: None,
            },
            time_embed_act: None,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: Some((self.groups, self.eps)),
            conv_act: self.act,
        }
    }
}
