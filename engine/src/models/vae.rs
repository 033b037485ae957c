//! diffusers 0.42.1 `AutoencoderKL` (`models/autoencoders/autoencoder_kl.py`, `vae.py`
//! `Encoder` / `Decoder`, `unet_2d_blocks.py` `DownEncoderBlock2D` / `UpDecoderBlock2D` /
//! `UNetMidBlock2D`), without tiling or slicing.
//!
//! ```text
//! encode: conv_in → down_blocks[i] (resnets ×layers_per_block, Downsample2D pad (0,1,0,1) unless last)
//!         → mid_block (resnet, [attention], resnet) → GroupNorm → SiLU → conv_out (2·latent)
//!         → [quant_conv] → posterior mean = first `latent_channels` channels
//! decode: [post_quant_conv] → conv_in → mid_block → up_blocks[i] (resnets ×(layers_per_block+1),
//!         Upsample2D ×2 unless last) → GroupNorm → SiLU → conv_out
//! ```
//!
//! No scaling: callers multiply by / divide by `scaling_factor` themselves.

use anyhow::{bail, Result};

use crate::backends::{Backend, TensorLike};
use crate::models::attention::{Attention, AttentionConfig};
use crate::models::config_json::ConfigJson;
use crate::models::nn::{Activation, Conv2d, GroupNorm};
use crate::models::resnet::{ResnetBlock2D, ResnetBlock2DConfig};
use crate::models::sampling::{Downsample2D, Downsample2DConfig, Upsample2D, Upsample2DConfig};
use crate::var_builder::VarBuilder;

/// The resnets/attention eps used throughout the VAE.
const VAE_EPS: f32 = 1e-6;

/// `AutoencoderKL` config (example values: Stable Diffusion's VAE).
#[derive(Clone, Debug)]
pub struct AutoencoderKLConfig {
    /// e.g. 3
    pub in_channels: usize,
    /// e.g. 3
    pub out_channels: usize,
    /// e.g. [128, 256, 512, 512]
    pub block_out_channels: Vec<usize>,
    /// e.g. 2
    pub layers_per_block: usize,
    /// e.g. "silu"
    pub act_fn: Activation,
    /// e.g. 4
    pub latent_channels: usize,
    /// e.g. 32
    pub norm_num_groups: usize,
    /// e.g. 0.18215
    pub scaling_factor: f32,
    /// e.g. None
    pub shift_factor: Option<f32>,
    /// e.g. true
    pub use_quant_conv: bool,
    /// e.g. true
    pub use_post_quant_conv: bool,
    /// e.g. true
    pub mid_block_add_attention: bool,
}

impl Default for AutoencoderKLConfig {
    fn default() -> Self {
        AutoencoderKLConfig {
            in_channels: 3,
            out_channels: 3,
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            act_fn: Activation::Silu,
            latent_channels: 4,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            shift_factor: None,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }
}

impl AutoencoderKLConfig {
    /// Read a diffusers `config.json` (missing keys take `AutoencoderKL`'s defaults).
    pub fn from_config(c: &ConfigJson) -> Result<Self> {
        let block_out_channels = c.usize_list("block_out_channels", &[64])?;
        let n = block_out_channels.len();
        if n == 0 || block_out_channels.contains(&0) {
            bail!(
                "{}: `block_out_channels` must be a non-empty list of positive integers",
                c.what
            );
        }
        let down = c.str_list("down_block_types", &["DownEncoderBlock2D"])?;
        let up = c.str_list("up_block_types", &["UpDecoderBlock2D"])?;
        if down.len() != n || up.len() != n {
            bail!(
                "{}: `down_block_types` ({}) and `up_block_types` ({}) need one entry per `block_out_channels` entry ({n})",
                c.what,
                down.len(),
                up.len()
            );
        }
        if let Some(t) = down.iter().find(|t| t.as_str() != "DownEncoderBlock2D") {
            bail!(
                "{}: `down_block_types` entry {t:?} is not supported (only \"DownEncoderBlock2D\")",
                c.what
            );
        }
        if let Some(t) = up.iter().find(|t| t.as_str() != "UpDecoderBlock2D") {
            bail!(
                "{}: `up_block_types` entry {t:?} is not supported (only \"UpDecoderBlock2D\")",
                c.what
            );
        }
        c.require_null("latents_mean")?;
        c.require_null("latents_std")?;
        let norm_num_groups = c.usize("norm_num_groups", 32)?;
        if norm_num_groups == 0 {
            bail!("{}: `norm_num_groups` must be positive", c.what);
        }
        let shift_factor = match c.get("shift_factor") {
            None => None,
            Some(_) => Some(c.f32("shift_factor", 0.0)?),
        };
        Ok(AutoencoderKLConfig {
            in_channels: c.usize("in_channels", 3)?,
            out_channels: c.usize("out_channels", 3)?,
            block_out_channels,
            layers_per_block: c.usize("layers_per_block", 1)?,
            act_fn: Activation::parse(&c.str("act_fn", "silu")?, "act_fn")?,
            latent_channels: c.usize("latent_channels", 4)?,
            norm_num_groups,
            scaling_factor: c.f32("scaling_factor", 0.18215)?,
            shift_factor,
            use_quant_conv: c.bool("use_quant_conv", true)?,
            use_post_quant_conv: c.bool("use_post_quant_conv", true)?,
            mid_block_add_attention: c.bool("mid_block_add_attention", true)?,
        })
    }

    /// Spatial downsampling factor of the encoder (2^(blocks − 1)).
    pub fn scale_factor(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    fn resnet(&self, cin: usize, cout: usize) -> ResnetBlock2DConfig {
        let mut r = ResnetBlock2DConfig::new(cin, cout, None, self.norm_num_groups, VAE_EPS);
        r.non_linearity = self.act_fn;
        r
    }
}

// ---------------------------------------------------------------------------
// Mid block
// ---------------------------------------------------------------------------

/// `UNetMidBlock2D` as the VAE builds it: resnet → [attention (1 head, group norm,
/// residual)] → resnet, no time embedding.
#[derive(Clone, Debug)]
pub struct VaeMidBlock<B: Backend> {
    /// `resnets.{0,1}`
    pub resnets: Vec<ResnetBlock2D<B>>,
    /// `attentions.0`
    pub attention: Option<Attention<B>>,
}

impl<B: Backend> VaeMidBlock<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &AutoencoderKLConfig, channels: usize) -> Result<Self> {
        let rv = vb.pp("resnets");
        let resnets = vec![
            ResnetBlock2D::load(&rv.pp(0), &cfg.resnet(channels, channels))?,
            ResnetBlock2D::load(&rv.pp(1), &cfg.resnet(channels, channels))?,
        ];
        let attention = if cfg.mid_block_add_attention {
            // heads = in_channels / attention_head_dim with attention_head_dim = in_channels.
            let mut a = AttentionConfig::new(channels, None, 1, channels);
            a.bias = true;
            a.out_bias = true;
            a.group_norm = Some((cfg.norm_num_groups, VAE_EPS));
            a.residual_connection = true;
            a.rescale_output_factor = 1.0;
            Some(Attention::load(&vb.pp("attentions").pp(0), &a)?)
        } else {
            None
        };
        Ok(VaeMidBlock { resnets, attention })
    }

    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let mut h = self.resnets[0].forward(be, x, None)?;
        if let Some(attn) = &self.attention {
            h = attn.forward(be, &h, None)?;
        }
        self.resnets[1].forward(be, &h, None)
    }
}

// ---------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------

/// `DownEncoderBlock2D` (`S` = [`Downsample2D`], stride 2, padding 0) or `UpDecoderBlock2D`
/// (`S` = [`Upsample2D`], nearest ×2 with conv): resnets, then the resampler
/// (`downsamplers.0` / `upsamplers.0`; none in the last block).
#[derive(Clone, Debug)]
pub struct VaeBlock<B: Backend, S> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub sampler: Option<S>,
}

pub type DownEncoderBlock2D<B> = VaeBlock<B, Downsample2D<B>>;
pub type UpDecoderBlock2D<B> = VaeBlock<B, Upsample2D<B>>;

/// A VAE block's resampler: to half or twice the size.
pub trait Resample<B: Backend> {
    fn resample(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor>;
}

impl<B: Backend> Resample<B> for Downsample2D<B> {
    fn resample(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        self.forward(be, x)
    }
}

impl<B: Backend> Resample<B> for Upsample2D<B> {
    fn resample(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        self.forward(be, x, None)
    }
}

impl<B: Backend, S: Resample<B>> VaeBlock<B, S> {
    /// The blocks under `vb` (`down_blocks` / `up_blocks`) of the channel ladder `ch`: block i
    /// has `layers` resnets, `ch[i - 1]` (`ch[0]` for the first) channels into its first and
    /// `ch[i]` out of each, then (but the last) the resampler `sampler(vb of the block, ch[i])`.
    fn load_ladder(
        vb: &VarBuilder<B>,
        cfg: &AutoencoderKLConfig,
        ch: &[usize],
        layers: usize,
        sampler: impl Fn(&VarBuilder<B>, usize) -> Result<S>,
    ) -> Result<Vec<Self>> {
        let mut blocks = Vec::with_capacity(ch.len());
        let mut out_ch = ch[0];
        for (i, &c) in ch.iter().enumerate() {
            let in_ch = out_ch;
            out_ch = c;
            let bv = vb.pp(i);
            let resnets = (0..layers)
                .map(|j| {
                    let cin = if j == 0 { in_ch } else { out_ch };
                    ResnetBlock2D::load(&bv.pp("resnets").pp(j), &cfg.resnet(cin, out_ch))
                })
                .collect::<Result<Vec<_>>>()?;
            let last = i + 1 == ch.len();
            blocks.push(VaeBlock {
                resnets,
                sampler: (!last).then(|| sampler(&bv, out_ch)).transpose()?,
            });
        }
        Ok(blocks)
    }

    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let mut h = x.clone();
        for r in &self.resnets {
            h = r.forward(be, &h, None)?;
        }
        match &self.sampler {
            Some(d) => d.resample(be, &h),
            None => Ok(h),
        }
    }
}

/// `vae.Encoder` with `double_z = true`.
#[derive(Clone, Debug)]
pub struct VaeEncoder<B: Backend> {
    /// (C0, in_channels, 3, 3)
    pub conv_in: Conv2d<B>,
    pub down_blocks: Vec<DownEncoderBlock2D<B>>,
    pub mid_block: VaeMidBlock<B>,
    /// (C_last,)
    pub conv_norm_out: GroupNorm<B>,
    /// (2·latent_channels, C_last, 3, 3)
    pub conv_out: Conv2d<B>,
}

impl<B: Backend> VaeEncoder<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &AutoencoderKLConfig) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let conv_in = Conv2d::load_same(&vb.pp("conv_in"), cfg.in_channels, ch[0], 3, true)?;
        let down = |bv: &VarBuilder<B>, c| {
            Downsample2D::load(
                &bv.pp("downsamplers").pp(0),
                &Downsample2DConfig::down(c, 0),
            )
        };
        let down_blocks =
            VaeBlock::load_ladder(&vb.pp("down_blocks"), cfg, ch, cfg.layers_per_block, down)?;
        let c_last = *ch.last().expect("block_out_channels checked non-empty");
        let mid_block = VaeMidBlock::load(&vb.pp("mid_block"), cfg, c_last)?;
        let conv_norm_out = GroupNorm::load(
            &vb.pp("conv_norm_out"),
            cfg.norm_num_groups,
            c_last,
            VAE_EPS,
        )?;
        let conv_out =
            Conv2d::load_same(&vb.pp("conv_out"), c_last, 2 * cfg.latent_channels, 3, true)?;
        Ok(VaeEncoder {
            conv_in,
            down_blocks,
            mid_block,
            conv_norm_out,
            conv_out,
        })
    }

    /// x (N, in_channels, H, W) → moments (N, 2·latent_channels, H/f, W/f).
    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let mut h = self.conv_in.forward(be, x)?;
        for b in &self.down_blocks {
            h = b.forward(be, &h)?;
        }
        let h = self.mid_block.forward(be, &h)?;
        let h = self.conv_norm_out.forward_act(be, &h, Activation::Silu)?;
        self.conv_out.forward(be, &h)
    }
}

// ---------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------

/// `vae.Decoder` with `norm_type = "group"`.
#[derive(Clone, Debug)]
pub struct VaeDecoder<B: Backend> {
    /// (C_last, latent_channels, 3, 3)
    pub conv_in: Conv2d<B>,
    pub mid_block: VaeMidBlock<B>,
    pub up_blocks: Vec<UpDecoderBlock2D<B>>,
    /// (C0,)
    pub conv_norm_out: GroupNorm<B>,
    /// (out_channels, C0, 3, 3)
    pub conv_out: Conv2d<B>,
}

impl<B: Backend> VaeDecoder<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &AutoencoderKLConfig) -> Result<Self> {
        let rev: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let c_last = rev[0];
        let conv_in = Conv2d::load_same(&vb.pp("conv_in"), cfg.latent_channels, c_last, 3, true)?;
        let mid_block = VaeMidBlock::load(&vb.pp("mid_block"), cfg, c_last)?;
        let up = |bv: &VarBuilder<B>, c| {
            Upsample2D::load(&bv.pp("upsamplers").pp(0), &Upsample2DConfig::up(c))
        };
        let layers = cfg.layers_per_block + 1;
        let up_blocks = VaeBlock::load_ladder(&vb.pp("up_blocks"), cfg, &rev, layers, up)?;
        let c0 = cfg.block_out_channels[0];
        let conv_norm_out =
            GroupNorm::load(&vb.pp("conv_norm_out"), cfg.norm_num_groups, c0, VAE_EPS)?;
        let conv_out = Conv2d::load_same(&vb.pp("conv_out"), c0, cfg.out_channels, 3, true)?;
        Ok(VaeDecoder {
            conv_in,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
        })
    }

    /// z (N, latent_channels, h, w) → (N, out_channels, h·f, w·f).
    pub fn forward(&self, be: &B, z: &B::Tensor) -> Result<B::Tensor> {
        let h = self.conv_in.forward(be, z)?;
        let mut h = self.mid_block.forward(be, &h)?;
        for b in &self.up_blocks {
            h = b.forward(be, &h)?;
        }
        let h = self.conv_norm_out.forward_act(be, &h, Activation::Silu)?;
        self.conv_out.forward(be, &h)
    }
}

// ---------------------------------------------------------------------------
// AutoencoderKL
// ---------------------------------------------------------------------------

/// diffusers `AutoencoderKL`.
#[derive(Clone, Debug)]
pub struct AutoencoderKL<B: Backend> {
    pub config: AutoencoderKLConfig,
    pub encoder: VaeEncoder<B>,
    pub decoder: VaeDecoder<B>,
    /// (2·latent, 2·latent, 1, 1)
    pub quant_conv: Option<Conv2d<B>>,
    /// (latent, latent, 1, 1)
    pub post_quant_conv: Option<Conv2d<B>>,
}

impl<B: Backend> AutoencoderKL<B> {
    pub fn load(vb: &VarBuilder<B>, config: &AutoencoderKLConfig) -> Result<Self> {
        let l = config.latent_channels;
        let encoder = VaeEncoder::load(&vb.pp("encoder"), config)?;
        let decoder = VaeDecoder::load(&vb.pp("decoder"), config)?;
        let quant_conv = if config.use_quant_conv {
            Some(Conv2d::load_same(
                &vb.pp("quant_conv"),
                2 * l,
                2 * l,
                1,
                true,
            )?)
        } else {
            None
        };
        let post_quant_conv = if config.use_post_quant_conv {
            Some(Conv2d::load_same(&vb.pp("post_quant_conv"), l, l, 1, true)?)
        } else {
            None
        };
        Ok(AutoencoderKL {
            config: config.clone(),
            encoder,
            decoder,
            quant_conv,
            post_quant_conv,
        })
    }

    fn check_input(&self, x: &B::Tensor, channels: usize, what: &str) -> Result<()> {
        let s = x.shape();
        if s.len() != 4 || s[1] != channels {
            bail!("AutoencoderKL {what}: input must be (N, {channels}, H, W), got {s:?}");
        }
        Ok(())
    }

    /// The posterior's moments (N, 2·latent, h, w): mean then log-variance (unclamped).
    pub fn encode_moments(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        self.check_input(x, self.config.in_channels, "encode")?;
        let h = self.encoder.forward(be, x)?;
        match &self.quant_conv {
            Some(q) => q.forward(be, &h),
            None => Ok(h),
        }
    }

    /// `encode(x).latent_dist.mean`: x (N, in_channels, H, W) → (N, latent, H/f, W/f). No scaling.
    pub fn encode(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let m = self.encode_moments(be, x)?;
        be.narrow(&m, 1, 0, self.config.latent_channels)
    }

    /// `decode(z).sample`: z (N, latent, h, w) → (N, out_channels, h·f, w·f). No scaling.
    pub fn decode(&self, be: &B, z: &B::Tensor) -> Result<B::Tensor> {
        self.check_input(z, self.config.latent_channels, "decode")?;
        let z = match &self.post_quant_conv {
            Some(q) => q.forward(be, z)?,
            None => z.clone(),
        };
        self.decoder.forward(be, &z)
    }
}
