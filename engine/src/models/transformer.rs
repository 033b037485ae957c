//! diffusers `BasicTransformerBlock` and `FeedForward` (`models/attention.py`,
//! `norm_type = "layer_norm"`) and `Transformer2DModel` (`models/transformers/
//! transformer_2d.py`, continuous input).
//!
//! ```text
//! BasicTransformerBlock, x (N, L, C):
//!   n = norm1(x) [+ pos_embed];  x = attn1(n [, extra kv]) + x
//!   n = norm2(x) [+ pos_embed];  x = attn2(n, encoder_hidden_states) + x     (if attn2)
//!   x = ff(norm3(x)) + x
//! Transformer2DModel, x (N, C, H, W):
//!   h = norm(x) (GroupNorm eps 1e-6) → proj_in (1x1 conv, or linear after flattening)
//!   → blocks → proj_out → + x
//! ```
//!
//! The NCHW ↔ token permutations ride in the entry and exit ops
//! ([`Backend::group_norm_conv1x1_tokens`] / [`Backend::group_norm_tokens`],
//! [`Backend::tokens_conv1x1_planes_add`] / [`Backend::linear_tokens_planes_add`]): no layout
//! copies on CUDA.

use anyhow::{bail, Result};

use crate::backends::{Backend, BackendExt, LinearEpilogue, TensorLike, Unary};
use crate::models::attention::{Attention, AttentionConfig};
use crate::models::embeddings::SinusoidalPositionalEmbedding;
use crate::models::hooks::UNetHooks;
use crate::models::nn::{Conv2d, GroupNorm, LayerNorm, Linear};
use crate::var_builder::VarBuilder;

// ---------------------------------------------------------------------------
// FeedForward
// ---------------------------------------------------------------------------

/// `FeedForward.activation_fn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedForwardActivation {
    /// `"geglu"`: proj (2·inner) → a · gelu(gate)
    Geglu,
    /// `"geglu-approximate"` (`ApproximateGELU`): x · sigmoid(1.702 x)
    GegluApproximate,
    /// `"gelu"`
    Gelu,
    /// `"gelu-approximate"` (tanh)
    GeluApproximate,
}

impl FeedForwardActivation {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "geglu" => FeedForwardActivation::Geglu,
            "geglu-approximate" => FeedForwardActivation::GegluApproximate,
            "gelu" => FeedForwardActivation::Gelu,
            "gelu-approximate" => FeedForwardActivation::GeluApproximate,
            other => bail!(
                "activation_fn {other:?} is not supported (supported: \"geglu\", \"geglu-approximate\", \"gelu\", \"gelu-approximate\")"
            ),
        })
    }
}

/// `FeedForward(dim, mult=4, activation_fn, inner_dim, bias)`: `net.0.proj`, `net.2`.
#[derive(Clone, Debug)]
pub struct FeedForward<B: Backend> {
    /// `net.0.proj`: (2·inner, dim) for geglu, else (inner, dim)
    pub proj_in: Linear<B>,
    /// `net.2`: (dim_out, inner)
    pub proj_out: Linear<B>,
    pub act: FeedForwardActivation,
    pub inner_dim: usize,
}

impl<B: Backend> FeedForward<B> {
    pub fn load(
        vb: &VarBuilder<B>,
        dim: usize,
        inner_dim: Option<usize>,
        act: FeedForwardActivation,
        bias: bool,
    ) -> Result<Self> {
        let inner = inner_dim.unwrap_or(dim * 4);
        let proj_w = if act == FeedForwardActivation::Geglu {
            2 * inner
        } else {
            inner
        };
        Ok(FeedForward {
            proj_in: Linear::load(&vb.pp("net").pp("0").pp("proj"), dim, proj_w, bias)?,
            proj_out: Linear::load(&vb.pp("net").pp("2"), inner, dim, bias)?,
            act,
            inner_dim: inner,
        })
    }

    /// `ff(x) + residual`: GEGLU fused into `proj_in`, the residual into `proj_out`.
    pub fn forward(&self, be: &B, x: &B::Tensor, residual: &B::Tensor) -> Result<B::Tensor> {
        let h = match self.act {
            FeedForwardActivation::Geglu => self.proj_in.forward_ext(
                be,
                x,
                LinearEpilogue {
                    geglu: true,
                    ..Default::default()
                },
            )?,
            act => self.activate(be, &self.proj_in.forward(be, x)?, act)?,
        };
        self.proj_out
            .forward_ext(be, &h, LinearEpilogue::residual(residual))
    }

    fn activate(&self, be: &B, h: &B::Tensor, act: FeedForwardActivation) -> Result<B::Tensor> {
        let h = h.clone();
        Ok(match act {
            FeedForwardActivation::Geglu => {
                let last = h.rank() - 1;
                let a = be.narrow(&h, last, 0, self.inner_dim)?;
                let gate = be.narrow(&h, last, self.inner_dim, self.inner_dim)?;
                let gate = be.unary(&gate, Unary::Gelu)?;
                be.mul(&a, &gate)?
            }
            FeedForwardActivation::GegluApproximate => {
                let s = be.affine(&h, 1.702, 0.0)?;
                let s = be.unary(&s, Unary::Sigmoid)?;
                be.mul(&h, &s)?
            }
            FeedForwardActivation::Gelu => be.unary(&h, Unary::Gelu)?,
            FeedForwardActivation::GeluApproximate => be.unary(&h, Unary::GeluTanh)?,
        })
    }
}

// ---------------------------------------------------------------------------
// BasicTransformerBlock
// ---------------------------------------------------------------------------

/// Construction arguments of `BasicTransformerBlock` (diffusers names, `norm_type = "layer_norm"`).
#[derive(Clone, Debug)]
pub struct BasicTransformerBlockConfig {
    /// e.g. 320
    pub dim: usize,
    /// e.g. 8
    pub num_attention_heads: usize,
    /// e.g. 40
    pub attention_head_dim: usize,
    /// e.g. Some(768); None: no attn2 unless double_self_attention
    pub cross_attention_dim: Option<usize>,
    /// e.g. Geglu
    pub activation_fn: FeedForwardActivation,
    /// e.g. false
    pub attention_bias: bool,
    /// e.g. false
    pub only_cross_attention: bool,
    /// e.g. false (true in motion modules)
    pub double_self_attention: bool,
    /// e.g. true
    pub norm_elementwise_affine: bool,
    /// e.g. 1e-5
    pub norm_eps: f32,
    /// `positional_embeddings = "sinusoidal"` with this `num_positional_embeddings`, e.g. Some(32)
    pub sinusoidal_pos_embed: Option<usize>,
    /// e.g. None (= 4·dim)
    pub ff_inner_dim: Option<usize>,
    /// e.g. true
    pub ff_bias: bool,
    /// e.g. true
    pub attention_out_bias: bool,
}

impl Default for BasicTransformerBlockConfig {
    fn default() -> Self {
        BasicTransformerBlockConfig {
            dim: 320,
            num_attention_heads: 8,
            attention_head_dim: 40,
            cross_attention_dim: Some(768),
            activation_fn: FeedForwardActivation::Geglu,
            attention_bias: false,
            only_cross_attention: false,
            double_self_attention: false,
            norm_elementwise_affine: true,
            norm_eps: 1e-5,
            sinusoidal_pos_embed: None,
            ff_inner_dim: None,
            ff_bias: true,
            attention_out_bias: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BasicTransformerBlock<B: Backend> {
    /// Full checkpoint prefix, e.g. `down_blocks.0.attentions.0.transformer_blocks.0` (hook key).
    pub name: String,
    pub norm1: LayerNorm<B>,
    pub attn1: Attention<B>,
    pub norm2: Option<LayerNorm<B>>,
    pub attn2: Option<Attention<B>>,
    pub norm3: LayerNorm<B>,
    pub ff: FeedForward<B>,
    pub pos_embed: Option<SinusoidalPositionalEmbedding<B>>,
    pub only_cross_attention: bool,
}

impl<B: Backend> BasicTransformerBlock<B> {
    /// `name` is the block's full checkpoint prefix (the hook key).
    pub fn load(
        vb: &VarBuilder<B>,
        cfg: &BasicTransformerBlockConfig,
        name: String,
    ) -> Result<Self> {
        let dim = cfg.dim;
        let heads = cfg.num_attention_heads;
        let hd = cfg.attention_head_dim;
        let pos_embed = match cfg.sinusoidal_pos_embed {
            Some(max_len) => Some(SinusoidalPositionalEmbedding::load(
                &vb.pp("pos_embed"),
                dim,
                max_len,
            )?),
            None => None,
        };
        let norm =
            |n: &str| LayerNorm::load(&vb.pp(n), dim, cfg.norm_eps, cfg.norm_elementwise_affine);
        // `cross`: the key/value source's dimension (None: self-attention)
        let attention = |n: &str, cross: Option<usize>| {
            let mut a = AttentionConfig::new(dim, cross, heads, hd);
            a.bias = cfg.attention_bias;
            a.out_bias = cfg.attention_out_bias;
            Attention::load(&vb.pp(n), &a)
        };
        let norm1 = norm("norm1")?;
        let attn1 = attention(
            "attn1",
            cfg.cross_attention_dim.filter(|_| cfg.only_cross_attention),
        )?;
        let (norm2, attn2) = if cfg.cross_attention_dim.is_some() || cfg.double_self_attention {
            let cross = cfg
                .cross_attention_dim
                .filter(|_| !cfg.double_self_attention);
            (Some(norm("norm2")?), Some(attention("attn2", cross)?))
        } else {
            (None, None)
        };
        let norm3 = norm("norm3")?;
        let ff = FeedForward::load(
            &vb.pp("ff"),
            dim,
            cfg.ff_inner_dim,
            cfg.activation_fn,
            cfg.ff_bias,
        )?;
        Ok(BasicTransformerBlock {
            name,
            norm1,
            attn1,
            norm2,
            attn2,
            norm3,
            ff,
            pos_embed,
            only_cross_attention: cfg.only_cross_attention,
        })
    }

    /// `num_layers` blocks under `vb` (`transformer_blocks`), the i-th named
    /// `{name}.transformer_blocks.{i}`.
    pub fn load_stack(
        vb: &VarBuilder<B>,
        cfg: &BasicTransformerBlockConfig,
        num_layers: usize,
        name: &str,
    ) -> Result<Vec<Self>> {
        let vbt = vb.pp("transformer_blocks");
        (0..num_layers)
            .map(|i| {
                Self::load(
                    &vbt.pp(i.to_string()),
                    cfg,
                    format!("{name}.transformer_blocks.{i}"),
                )
            })
            .collect()
    }

    /// x (N, L, dim); encoder_hidden_states (N, S, cross_dim) or None.
    pub fn forward(
        &self,
        be: &B,
        x: &B::Tensor,
        encoder_hidden_states: Option<&B::Tensor>,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<B::Tensor> {
        // With a positional embedding, norm1(x) + pe is one op unless a hook records norm1.
        let pe = match &self.pos_embed {
            Some(pe) => Some(pe.table(be, x.shape()[1])?),
            None => None,
        };
        let n = match &pe {
            Some(t) if !hooks.records_norm1(&self.name) => self.norm1.forward_add(be, x, t)?,
            _ => {
                let n = self.norm1.forward(be, x)?;
                hooks.on_norm1(be, &self.name, &n)?;
                match &pe {
                    Some(t) => be.add(&n, t)?,
                    None => n,
                }
            }
        };
        let a = {
            let extra = hooks.attn1_extra_kv(&self.name);
            let enc = if self.only_cross_attention {
                encoder_hidden_states
            } else {
                None
            };
            self.attn1
                .forward_residual(be, &n, enc, extra.as_ref(), Some(x))?
        };
        let mut h = a;
        if let (Some(norm2), Some(attn2)) = (&self.norm2, &self.attn2) {
            let n = match &pe {
                Some(t) => norm2.forward_add(be, &h, t)?,
                None => norm2.forward(be, &h)?,
            };
            h = match hooks.attn2_kv(&self.name) {
                Some(kv) => attn2.forward_projected(be, &n, kv, Some(&h))?,
                None => attn2.forward_residual(be, &n, encoder_hidden_states, None, Some(&h))?,
            };
        }
        let n = self.norm3.forward(be, &h)?;
        self.ff.forward(be, &n, &h)
    }
}

// ---------------------------------------------------------------------------
// Transformer2DModel
// ---------------------------------------------------------------------------

/// Construction arguments of `Transformer2DModel` (continuous input; diffusers names).
#[derive(Clone, Debug)]
pub struct Transformer2DModelConfig {
    /// e.g. 320
    pub in_channels: usize,
    /// e.g. None (= in_channels)
    pub out_channels: Option<usize>,
    /// e.g. 1 (`transformer_layers_per_block`)
    pub num_layers: usize,
    /// e.g. 32
    pub norm_num_groups: usize,
    /// e.g. false (SD1.5), true (SD2)
    pub use_linear_projection: bool,
    /// The settings of every `transformer_blocks.{i}` (heads, head dim, cross-attention,
    /// norms, feed-forward); its `dim` is replaced by heads · head_dim on load.
    pub block: BasicTransformerBlockConfig,
}

impl Default for Transformer2DModelConfig {
    fn default() -> Self {
        Transformer2DModelConfig {
            in_channels: 320,
            out_channels: None,
            num_layers: 1,
            norm_num_groups: 32,
            use_linear_projection: false,
            block: BasicTransformerBlockConfig::default(),
        }
    }
}

/// `proj_in` / `proj_out`: a 1x1 conv or a linear layer.
#[derive(Clone, Debug)]
pub enum Projection<B: Backend> {
    /// (out, in, 1, 1)
    Conv(Conv2d<B>),
    /// (out, in)
    Linear(Linear<B>),
}

#[derive(Clone, Debug)]
pub struct Transformer2DModel<B: Backend> {
    pub norm: GroupNorm<B>,
    pub proj_in: Projection<B>,
    pub transformer_blocks: Vec<BasicTransformerBlock<B>>,
    pub proj_out: Projection<B>,
    pub inner_dim: usize,
}

impl<B: Backend> Transformer2DModel<B> {
    /// `name` is the module's full checkpoint prefix, e.g. `down_blocks.0.attentions.0`.
    pub fn load(vb: &VarBuilder<B>, cfg: &Transformer2DModelConfig, name: &str) -> Result<Self> {
        let cin = cfg.in_channels;
        let cout = cfg.out_channels.unwrap_or(cin);
        let inner = cfg.block.num_attention_heads * cfg.block.attention_head_dim;
        if cout != inner {
            bail!(
                "Transformer2DModel `{name}`: out_channels {cout} must equal heads·head_dim {inner} \
                 (diffusers reshapes the output with the inner dim)"
            );
        }
        let norm = GroupNorm::load(&vb.pp("norm"), cfg.norm_num_groups, cin, 1e-6)?;
        let (proj_in, proj_out) = if cfg.use_linear_projection {
            (
                Projection::Linear(Linear::load(&vb.pp("proj_in"), cin, inner, true)?),
                Projection::Linear(Linear::load(&vb.pp("proj_out"), inner, cout, true)?),
            )
        } else {
            (
                Projection::Conv(Conv2d::load_same(&vb.pp("proj_in"), cin, inner, 1, true)?),
                Projection::Conv(Conv2d::load_same(&vb.pp("proj_out"), inner, cout, 1, true)?),
            )
        };
        let bcfg = BasicTransformerBlockConfig {
            dim: inner,
            ..cfg.block.clone()
        };
        let transformer_blocks =
            BasicTransformerBlock::load_stack(vb, &bcfg, cfg.num_layers, name)?;
        Ok(Transformer2DModel {
            norm,
            proj_in,
            transformer_blocks,
            proj_out,
            inner_dim: inner,
        })
    }

    /// x (N, C, H, W); encoder_hidden_states (N, S, cross_dim) → (N, C, H, W).
    pub fn forward(
        &self,
        be: &B,
        x: &B::Tensor,
        encoder_hidden_states: Option<&B::Tensor>,
        hooks: &mut dyn UNetHooks<B>,
    ) -> Result<B::Tensor> {
        self.forward_concat(be, x, encoder_hidden_states, hooks, None)
    }

    /// `forward`, then (with a `tail`, the next up layer's skip state) `concat([out, tail], 1)`:
    /// with a linear `proj_out` the exit op writes its channels of the concat in place
    /// ([`Backend::linear_tokens_planes_add`](crate::backends::Backend::linear_tokens_planes_add));
    /// the 1x1-conv `proj_out` concatenates after it.
    pub fn forward_concat(
        &self,
        be: &B,
        x: &B::Tensor,
        encoder_hidden_states: Option<&B::Tensor>,
        hooks: &mut dyn UNetHooks<B>,
        tail: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let s = x.shape();
        let (n, c, hh, ww) = (s[0], s[1], s[2], s[3]);
        let norm = &self.norm;
        let (gamma, beta) = (Some(&norm.weight), Some(&norm.bias));
        // GroupNorm + proj_in written as tokens (N, H·W, inner): no permute copies
        let mut h = match &self.proj_in {
            Projection::Conv(conv) => be.group_norm_conv1x1_tokens(
                x,
                norm.groups,
                gamma,
                beta,
                norm.eps,
                &conv.weight,
                conv.bias.as_ref(),
            )?,
            Projection::Linear(lin) => {
                let h = be.group_norm_tokens(x, 1, norm.groups, gamma, beta, norm.eps)?;
                lin.forward(be, &be.reshape(&h, &[n, hh * ww, c])?)?
            }
        };
        for block in &self.transformer_blocks {
            h = block.forward(be, &h, encoder_hidden_states, hooks)?;
        }
        // proj_out back to (N, C, H, W) + x: the skip connection rides in the same op
        let out = match &self.proj_out {
            Projection::Conv(conv) => {
                be.tokens_conv1x1_planes_add(&h, &conv.weight, conv.bias.as_ref(), x)?
            }
            Projection::Linear(lin) => {
                return be.linear_tokens_planes_add(&h, &lin.weight, lin.bias.as_ref(), x, 1, tail);
            }
        };
        match tail {
            Some(t) => be.concat(&[&out, t], 1),
            None => Ok(out),
        }
    }
}
