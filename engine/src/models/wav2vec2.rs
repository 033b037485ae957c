//! transformers 5.25 `Wav2Vec2Model` (`models/wav2vec2/modeling_wav2vec2.py`),
//! eval mode, no attention mask, no SpecAugment masking.
//!
//! ```text
//! input_values (B, L)
//!   └─ feature_extractor: conv_layers[i] = Conv1d(k_i, s_i) → norm → act
//!        "group": GroupNorm(C, C) on layer 0 only; "layer": LayerNorm over C on every layer
//!   └─ (B, T, C) ─ feature_projection: LayerNorm(C) → Linear(C → H)
//!   └─ encoder: h += pos_conv_embed(h)   (grouped Conv1d, weight norm dim 2, SamePad, act)
//!        post-LN  (do_stable_layer_norm = false): h = LN(h); states = [h, h_1, ..., h_L]
//!                                                  last_hidden_state = h_L
//!        pre-LN   (do_stable_layer_norm = true):  states = [h, h_1, ..., h_L]
//!                                                  last_hidden_state = LN(h_L)
//!        (h_i = output of layer i; with `tie_last_hidden_states` the last state is
//!        replaced by last_hidden_state, which only changes anything for pre-LN)
//! ```
//!
//! [`Wav2Vec2Model::forward`] returns all `num_hidden_layers + 1` hidden states, exactly
//! what `output_hidden_states=True` gives: in transformers 5.x `Wav2Vec2Model.forward` is
//! `capture_outputs(tie_last_hidden_states=False)`, so the states are the input of layer 0
//! and each layer's output, and for pre-LN models the last one is BEFORE `encoder.layer_norm`.
//! transformers 4.x returned `last_hidden_state` (after the norm) as the last entry; a
//! `"tie_last_hidden_states": true` in `config.json` restores that, in both transformers
//! 5.x and here. [`Wav2Vec2Model::forward_outputs`] also returns `last_hidden_state`.
//! 1-D convolutions run as `conv2d` with H = 1.

use anyhow::{bail, Context, Result};

use crate::backends::{Backend, BackendExt, Conv2dParams, LinearEpilogue, TensorLike, Unary};
use crate::models::attention::Attention;
use crate::models::config_json::ConfigJson;
use crate::models::nn::{LayerNorm, Linear};
use crate::var_builder::VarBuilder;

/// `feat_extract_norm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatExtractNorm {
    /// GroupNorm (groups = channels) after the first conv only (wav2vec2-base).
    Group,
    /// LayerNorm over channels after every conv (wav2vec2-large-lv60).
    Layer,
}

/// A transformers activation name (`ACT2FN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum W2vActivation {
    /// "gelu" (exact erf)
    Gelu,
    /// "gelu_new" / "gelu_pytorch_tanh" / "gelu_fast"
    GeluTanh,
    Relu,
    /// "silu" / "swish"
    Silu,
}

impl W2vActivation {
    pub fn parse(name: &str, key: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => W2vActivation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => W2vActivation::GeluTanh,
            "relu" => W2vActivation::Relu,
            "silu" | "swish" => W2vActivation::Silu,
            other => bail!(
                "wav2vec2 config: `{key}` = {other:?} is not supported (supported: \"gelu\", \"gelu_new\", \"gelu_pytorch_tanh\", \"relu\", \"silu\")"
            ),
        })
    }

    pub fn forward<B: Backend>(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let op = match self {
            W2vActivation::Gelu => Unary::Gelu,
            W2vActivation::GeluTanh => Unary::GeluTanh,
            W2vActivation::Relu => Unary::Relu,
            W2vActivation::Silu => Unary::Silu,
        };
        be.unary(x, op)
    }
}

/// The `Wav2Vec2Config` fields the model uses (example values: wav2vec2-base).
#[derive(Clone, Debug)]
pub struct Wav2Vec2Config {
    /// e.g. 768
    pub hidden_size: usize,
    /// e.g. 12
    pub num_hidden_layers: usize,
    /// e.g. 12
    pub num_attention_heads: usize,
    /// e.g. 3072
    pub intermediate_size: usize,
    /// e.g. "gelu"
    pub hidden_act: W2vActivation,
    /// e.g. 1e-5
    pub layer_norm_eps: f32,
    /// `feature_extractor`: the `feat_extract_*` and `conv_*` fields
    pub feature_encoder: FeatureEncoderConfig,
    /// e.g. 128
    pub num_conv_pos_embeddings: usize,
    /// e.g. 16
    pub num_conv_pos_embedding_groups: usize,
    /// e.g. false
    pub do_stable_layer_norm: bool,
    /// `tie_last_hidden_states` (transformers 5.x; unset = false for `Wav2Vec2Model`):
    /// the last hidden state is `last_hidden_state`, after `encoder.layer_norm` for pre-LN
    /// models, as transformers 4.x returned it.
    pub tie_last_hidden_states: bool,
}

impl Default for Wav2Vec2Config {
    fn default() -> Self {
        Wav2Vec2Config {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: W2vActivation::Gelu,
            layer_norm_eps: 1e-5,
            feature_encoder: FeatureEncoderConfig::default(),
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            do_stable_layer_norm: false,
            tie_last_hidden_states: false,
        }
    }
}

impl Wav2Vec2Config {
    /// Read a transformers `config.json` (missing keys take `Wav2Vec2Config` defaults).
    pub fn from_config(c: &ConfigJson) -> Result<Self> {
        let d = Wav2Vec2Config::default();
        let feature_encoder = FeatureEncoderConfig::from_config(c)?;
        if c.bool("add_adapter", false)? {
            bail!(
                "{}: `add_adapter` = true is not supported (Wav2Vec2Model without adapter only)",
                c.what
            );
        }
        c.require_null("adapter_attn_dim")?;
        let hidden_size = c.usize("hidden_size", d.hidden_size)?;
        let num_attention_heads = c.usize("num_attention_heads", d.num_attention_heads)?;
        if num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
            bail!(
                "{}: `hidden_size` {hidden_size} is not divisible by `num_attention_heads` {num_attention_heads}",
                c.what
            );
        }
        let num_conv_pos_embeddings =
            c.usize("num_conv_pos_embeddings", d.num_conv_pos_embeddings)?;
        let groups = c.usize(
            "num_conv_pos_embedding_groups",
            d.num_conv_pos_embedding_groups,
        )?;
        if num_conv_pos_embeddings == 0 || groups == 0 || hidden_size % groups != 0 {
            bail!(
                "{}: `hidden_size` {hidden_size} must be divisible by `num_conv_pos_embedding_groups` {groups} and `num_conv_pos_embeddings` must be positive",
                c.what
            );
        }
        Ok(Wav2Vec2Config {
            hidden_size,
            num_hidden_layers: c.usize("num_hidden_layers", d.num_hidden_layers)?,
            num_attention_heads,
            intermediate_size: c.usize("intermediate_size", d.intermediate_size)?,
            hidden_act: W2vActivation::parse(&c.str("hidden_act", "gelu")?, "hidden_act")?,
            layer_norm_eps: c.f32("layer_norm_eps", d.layer_norm_eps)?,
            feature_encoder,
            num_conv_pos_embeddings,
            num_conv_pos_embedding_groups: groups,
            do_stable_layer_norm: c.bool("do_stable_layer_norm", d.do_stable_layer_norm)?,
            tie_last_hidden_states: c.bool("tie_last_hidden_states", d.tie_last_hidden_states)?,
        })
    }
}

/// The feature encoder's `Wav2Vec2Config` fields (example values: wav2vec2-base).
#[derive(Clone, Debug)]
pub struct FeatureEncoderConfig {
    /// e.g. Group
    pub feat_extract_norm: FeatExtractNorm,
    /// e.g. "gelu" (also the activation of `encoder.pos_conv_embed`)
    pub feat_extract_activation: W2vActivation,
    /// e.g. [512; 7]
    pub conv_dim: Vec<usize>,
    /// e.g. [5, 2, 2, 2, 2, 2, 2]
    pub conv_stride: Vec<usize>,
    /// e.g. [10, 3, 3, 3, 3, 2, 2]
    pub conv_kernel: Vec<usize>,
    /// e.g. false
    pub conv_bias: bool,
}

impl Default for FeatureEncoderConfig {
    fn default() -> Self {
        FeatureEncoderConfig {
            feat_extract_norm: FeatExtractNorm::Group,
            feat_extract_activation: W2vActivation::Gelu,
            conv_dim: vec![512; 7],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_bias: false,
        }
    }
}

impl FeatureEncoderConfig {
    /// Read the feature encoder's keys of a transformers `config.json` (missing keys take
    /// `Wav2Vec2Config` defaults).
    pub fn from_config(c: &ConfigJson) -> Result<Self> {
        let d = FeatureEncoderConfig::default();
        let feat_extract_norm = match c.str("feat_extract_norm", "group")?.as_str() {
            "group" => FeatExtractNorm::Group,
            "layer" => FeatExtractNorm::Layer,
            other => bail!(
                "{}: `feat_extract_norm` = {other:?} is not supported (supported: \"group\", \"layer\")",
                c.what
            ),
        };
        let conv_dim = c.usize_list("conv_dim", &d.conv_dim)?;
        let conv_stride = c.usize_list("conv_stride", &d.conv_stride)?;
        let conv_kernel = c.usize_list("conv_kernel", &d.conv_kernel)?;
        if conv_dim.is_empty()
            || conv_stride.len() != conv_dim.len()
            || conv_kernel.len() != conv_dim.len()
        {
            bail!(
                "{}: `conv_dim` ({}), `conv_stride` ({}) and `conv_kernel` ({}) must be non-empty lists of equal length",
                c.what,
                conv_dim.len(),
                conv_stride.len(),
                conv_kernel.len()
            );
        }
        if conv_stride.contains(&0) || conv_kernel.contains(&0) || conv_dim.contains(&0) {
            bail!(
                "{}: `conv_dim`, `conv_stride` and `conv_kernel` entries must be positive",
                c.what
            );
        }
        Ok(FeatureEncoderConfig {
            feat_extract_norm,
            feat_extract_activation: W2vActivation::parse(
                &c.str("feat_extract_activation", "gelu")?,
                "feat_extract_activation",
            )?,
            conv_dim,
            conv_stride,
            conv_kernel,
            conv_bias: c.bool("conv_bias", d.conv_bias)?,
        })
    }

    /// Number of feature frames for `samples` input samples (0 when too short).
    pub fn num_frames(&self, samples: usize) -> usize {
        let mut t = samples;
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride) {
            if t < k {
                return 0;
            }
            t = (t - k) / s + 1;
        }
        t
    }
}

// ---------------------------------------------------------------------------
// Feature encoder
// ---------------------------------------------------------------------------

/// One `conv_layers.{i}`: Conv1d (no padding) → optional norm → activation.
#[derive(Clone, Debug)]
pub struct FeatureConvLayer<B: Backend> {
    /// (C_out, C_in, 1, k) — the Conv1d weight with H = 1
    pub conv_weight: B::Tensor,
    /// (C_out,)
    pub conv_bias: Option<B::Tensor>,
    pub stride: usize,
    pub norm: FeatureNorm<B>,
    pub act: W2vActivation,
}

/// The norm of a feature conv layer.
#[derive(Clone, Debug)]
pub enum FeatureNorm<B: Backend> {
    None,
    /// GroupNorm(C, C), eps 1e-5: per-channel statistics over time
    Group {
        weight: B::Tensor,
        bias: B::Tensor,
    },
    /// LayerNorm(C), eps 1e-5, over channels at each time step
    Layer(LayerNorm<B>),
}

impl<B: Backend> FeatureConvLayer<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &FeatureEncoderConfig, i: usize) -> Result<Self> {
        let cin = if i == 0 { 1 } else { cfg.conv_dim[i - 1] };
        let cout = cfg.conv_dim[i];
        let k = cfg.conv_kernel[i];
        let cv = vb.pp("conv");
        let w = cv.get("weight", &[cout, cin, k])?;
        let conv_weight = vb_reshape(vb, &w, &[cout, cin, 1, k])?;
        let conv_bias = if cfg.conv_bias {
            Some(cv.get("bias", &[cout])?)
        } else {
            None
        };
        let norm = match cfg.feat_extract_norm {
            FeatExtractNorm::Group if i == 0 => {
                let ln = vb.pp("layer_norm");
                FeatureNorm::Group {
                    weight: ln.get("weight", &[cout])?,
                    bias: ln.get("bias", &[cout])?,
                }
            }
            FeatExtractNorm::Group => FeatureNorm::None,
            FeatExtractNorm::Layer => {
                FeatureNorm::Layer(LayerNorm::load(&vb.pp("layer_norm"), cout, 1e-5, true)?)
            }
        };
        Ok(FeatureConvLayer {
            conv_weight,
            conv_bias,
            stride: cfg.conv_stride[i],
            norm,
            act: cfg.feat_extract_activation,
        })
    }

    /// x (B, C_in, 1, T) → (B, C_out, 1, T').
    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let p = Conv2dParams {
            stride: (1, self.stride),
            ..Default::default()
        };
        let h = be.conv2d(x, &self.conv_weight, self.conv_bias.as_ref(), p)?;
        let h = match &self.norm {
            FeatureNorm::None => h,
            FeatureNorm::Group { weight, bias } => {
                let c = h.shape()[1];
                be.group_norm(&h, c, Some(weight), Some(bias), 1e-5)?
            }
            FeatureNorm::Layer(ln) => {
                let t = be.permute(&h, &[0, 2, 3, 1])?; // (B, 1, T, C)
                let t = ln.forward(be, &t)?;
                be.permute(&t, &[0, 3, 1, 2])?
            }
        };
        self.act.forward(be, &h)
    }
}

/// Reshape a freshly loaded weight, naming the tensor prefix on error.
fn vb_reshape<B: Backend>(vb: &VarBuilder<B>, t: &B::Tensor, shape: &[usize]) -> Result<B::Tensor> {
    vb.backend()
        .reshape(t, shape)
        .with_context(|| format!("reshaping `{}` weights", vb.prefix()))
}

// ---------------------------------------------------------------------------
// Positional conv embedding
// ---------------------------------------------------------------------------

/// `encoder.pos_conv_embed`: grouped Conv1d (kernel K, padding K/2, weight norm over
/// dim 2) → SamePad (drop the last step when K is even) → activation.
#[derive(Clone, Debug)]
pub struct PositionalConvEmbedding<B: Backend> {
    /// (H, H/groups, 1, K) — g·v/‖v‖ already applied
    pub weight: B::Tensor,
    /// (H,)
    pub bias: B::Tensor,
    pub kernel: usize,
    pub groups: usize,
    pub act: W2vActivation,
}

impl<B: Backend> PositionalConvEmbedding<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &Wav2Vec2Config) -> Result<Self> {
        let h = cfg.hidden_size;
        let g = cfg.num_conv_pos_embedding_groups;
        let k = cfg.num_conv_pos_embeddings;
        let w = vb.get_weight_norm("conv", &[h, h / g, k], 2)?;
        let weight = vb_reshape(vb, &w, &[h, h / g, 1, k])?;
        let bias = vb.pp("conv").get("bias", &[h])?;
        Ok(PositionalConvEmbedding {
            weight,
            bias,
            kernel: k,
            groups: g,
            act: cfg.feature_encoder.feat_extract_activation,
        })
    }

    /// h (B, T, H) → (B, T, H).
    pub fn forward(&self, be: &B, h: &B::Tensor) -> Result<B::Tensor> {
        let (b, t, c) = (h.shape()[0], h.shape()[1], h.shape()[2]);
        let x = be.permute(h, &[0, 2, 1])?;
        let x = be.reshape(&x, &[b, c, 1, t])?;
        let p = Conv2dParams {
            padding: (0, self.kernel / 2),
            groups: self.groups,
            ..Default::default()
        };
        let y = be.conv2d(&x, &self.weight, Some(&self.bias), p)?;
        // SamePad: with an even kernel the conv yields T + 1 steps; keep the first T.
        let y = if y.shape()[3] != t {
            be.narrow(&y, 3, 0, t)?
        } else {
            y
        };
        let y = self.act.forward(be, &y)?;
        let y = be.reshape(&y, &[b, c, t])?;
        be.permute(&y, &[0, 2, 1])
    }
}

// ---------------------------------------------------------------------------
// Encoder layer
// ---------------------------------------------------------------------------

/// `Wav2Vec2Attention` (self-attention, biases on all projections, no mask): the diffusers
/// [`Attention`] arithmetic with (H, H) projections under wav2vec2's names.
pub fn load_attention<B: Backend>(
    vb: &VarBuilder<B>,
    hidden: usize,
    heads: usize,
) -> Result<Attention<B>> {
    let proj = |name: &str| Linear::load(&vb.pp(name), hidden, hidden, true);
    Attention {
        group_norm: None,
        to_q: proj("q_proj")?,
        to_k: proj("k_proj")?,
        to_v: proj("v_proj")?,
        to_out: proj("out_proj")?,
        to_qkv: None,
        heads,
        inner_dim: hidden,
        residual_connection: false,
        rescale_output_factor: 1.0,
    }
    .pack_qkv(vb.backend())
}

/// `Wav2Vec2FeedForward`: intermediate_dense → act → output_dense.
#[derive(Clone, Debug)]
pub struct Wav2Vec2FeedForward<B: Backend> {
    /// (I, H)
    pub intermediate_dense: Linear<B>,
    /// (H, I)
    pub output_dense: Linear<B>,
    pub act: W2vActivation,
}

impl<B: Backend> Wav2Vec2FeedForward<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &Wav2Vec2Config) -> Result<Self> {
        Ok(Wav2Vec2FeedForward {
            intermediate_dense: Linear::load(
                &vb.pp("intermediate_dense"),
                cfg.hidden_size,
                cfg.intermediate_size,
                true,
            )?,
            output_dense: Linear::load(
                &vb.pp("output_dense"),
                cfg.intermediate_size,
                cfg.hidden_size,
                true,
            )?,
            act: cfg.hidden_act,
        })
    }

    /// `ff(x) + residual`, the residual fused into `output_dense`.
    pub fn forward(&self, be: &B, x: &B::Tensor, residual: &B::Tensor) -> Result<B::Tensor> {
        let h = self.intermediate_dense.forward(be, x)?;
        let h = self.act.forward(be, &h)?;
        self.output_dense
            .forward_ext(be, &h, LinearEpilogue::residual(residual))
    }
}

/// `Wav2Vec2EncoderLayer` (post-LN) or `Wav2Vec2EncoderLayerStableLayerNorm` (pre-LN).
#[derive(Clone, Debug)]
pub struct Wav2Vec2EncoderLayer<B: Backend> {
    /// `attention` ([`load_attention`])
    pub attention: Attention<B>,
    pub layer_norm: LayerNorm<B>,
    pub feed_forward: Wav2Vec2FeedForward<B>,
    pub final_layer_norm: LayerNorm<B>,
    pub stable: bool,
}

impl<B: Backend> Wav2Vec2EncoderLayer<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &Wav2Vec2Config) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Wav2Vec2EncoderLayer {
            attention: load_attention(&vb.pp("attention"), h, cfg.num_attention_heads)?,
            layer_norm: LayerNorm::load(&vb.pp("layer_norm"), h, cfg.layer_norm_eps, true)?,
            feed_forward: Wav2Vec2FeedForward::load(&vb.pp("feed_forward"), cfg)?,
            final_layer_norm: LayerNorm::load(
                &vb.pp("final_layer_norm"),
                h,
                cfg.layer_norm_eps,
                true,
            )?,
            stable: cfg.do_stable_layer_norm,
        })
    }

    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        if self.stable {
            let h = self.layer_norm.forward(be, x)?;
            let h = self
                .attention
                .forward_residual(be, &h, None, None, Some(x))?;
            let f = self.final_layer_norm.forward(be, &h)?;
            self.feed_forward.forward(be, &f, &h)
        } else {
            let h = self
                .attention
                .forward_residual(be, x, None, None, Some(x))?;
            let h = self.layer_norm.forward(be, &h)?;
            let h = self.feed_forward.forward(be, &h, &h)?;
            self.final_layer_norm.forward(be, &h)
        }
    }
}

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

/// `Wav2Vec2Model`.
#[derive(Clone, Debug)]
pub struct Wav2Vec2Model<B: Backend> {
    pub config: Wav2Vec2Config,
    /// `feature_extractor.conv_layers.{i}`
    pub conv_layers: Vec<FeatureConvLayer<B>>,
    /// `feature_projection.layer_norm` (C_last,)
    pub projection_norm: LayerNorm<B>,
    /// `feature_projection.projection` (H, C_last)
    pub projection: Linear<B>,
    /// `encoder.pos_conv_embed`
    pub pos_conv_embed: PositionalConvEmbedding<B>,
    /// `encoder.layer_norm` (H,)
    pub encoder_layer_norm: LayerNorm<B>,
    /// `encoder.layers.{i}`
    pub layers: Vec<Wav2Vec2EncoderLayer<B>>,
}

impl<B: Backend> Wav2Vec2Model<B> {
    /// Load from a `Wav2Vec2Model` checkpoint (keys without a model prefix).
    pub fn load(vb: &VarBuilder<B>, config: &Wav2Vec2Config) -> Result<Self> {
        let fe = vb.pp("feature_extractor").pp("conv_layers");
        let fc = &config.feature_encoder;
        let conv_layers = (0..fc.conv_dim.len())
            .map(|i| FeatureConvLayer::load(&fe.pp(i.to_string()), fc, i))
            .collect::<Result<Vec<_>>>()?;
        let c_last = *fc.conv_dim.last().expect("conv_dim checked non-empty");
        let fp = vb.pp("feature_projection");
        let projection_norm =
            LayerNorm::load(&fp.pp("layer_norm"), c_last, config.layer_norm_eps, true)?;
        let projection = Linear::load(&fp.pp("projection"), c_last, config.hidden_size, true)?;
        let enc = vb.pp("encoder");
        let pos_conv_embed = PositionalConvEmbedding::load(&enc.pp("pos_conv_embed"), config)?;
        let encoder_layer_norm = LayerNorm::load(
            &enc.pp("layer_norm"),
            config.hidden_size,
            config.layer_norm_eps,
            true,
        )?;
        let el = enc.pp("layers");
        let layers = (0..config.num_hidden_layers)
            .map(|i| Wav2Vec2EncoderLayer::load(&el.pp(i.to_string()), config))
            .collect::<Result<Vec<_>>>()?;
        // SpecAugment's mask vector (present when mask_time_prob > 0): training only.
        vb.skip("masked_spec_embed");
        Ok(Wav2Vec2Model {
            config: config.clone(),
            conv_layers,
            projection_norm,
            projection,
            pos_conv_embed,
            encoder_layer_norm,
            layers,
        })
    }

    /// Feature encoder + projection: input_values (B, L) → (B, T, H).
    pub fn embed(&self, be: &B, input_values: &B::Tensor) -> Result<B::Tensor> {
        let s = input_values.shape();
        if s.len() != 2 {
            bail!(
                "wav2vec2: input_values must be (batch, samples), got {:?}",
                s
            );
        }
        let (b, l) = (s[0], s[1]);
        let fc = &self.config.feature_encoder;
        if fc.num_frames(l) == 0 {
            bail!(
                "wav2vec2: {l} input samples are too few for the feature encoder (kernels {:?}, strides {:?})",
                fc.conv_kernel,
                fc.conv_stride
            );
        }
        let mut x = be.reshape(input_values, &[b, 1, 1, l])?;
        for layer in &self.conv_layers {
            x = layer.forward(be, &x)?;
        }
        let (c, t) = (x.shape()[1], x.shape()[3]);
        let x = be.reshape(&x, &[b, c, t])?;
        let x = be.permute(&x, &[0, 2, 1])?;
        let x = self.projection_norm.forward(be, &x)?;
        self.projection.forward(be, &x)
    }

    /// All hidden states, as transformers 5.x
    /// `Wav2Vec2Model(input_values, output_hidden_states=True).hidden_states`:
    /// `num_hidden_layers + 1` tensors of shape (B, T, H), the input of layer 0 and the
    /// output of every layer. For pre-LN (`do_stable_layer_norm`) models the last one is
    /// before `encoder.layer_norm` unless the config sets `tie_last_hidden_states`.
    pub fn forward(&self, be: &B, input_values: &B::Tensor) -> Result<Vec<B::Tensor>> {
        Ok(self.run(be, input_values, false)?.0)
    }

    /// [`Self::forward`]'s hidden states and `last_hidden_state`.
    pub fn forward_outputs(
        &self,
        be: &B,
        input_values: &B::Tensor,
    ) -> Result<Wav2Vec2Output<B::Tensor>> {
        let (hidden_states, last) = self.run(be, input_values, true)?;
        Ok(Wav2Vec2Output {
            last_hidden_state: last.expect("last_hidden_state was asked for"),
            hidden_states,
        })
    }

    /// The encoder: (hidden states, `last_hidden_state` when `want_last`). For pre-LN
    /// models `last_hidden_state` costs a LayerNorm the hidden states may not need.
    fn run(
        &self,
        be: &B,
        input_values: &B::Tensor,
        want_last: bool,
    ) -> Result<(Vec<B::Tensor>, Option<B::Tensor>)> {
        let h = self.embed(be, input_values)?;
        let pos = self.pos_conv_embed.forward(be, &h)?;
        let mut h = be.add(&h, &pos)?;
        let stable = self.config.do_stable_layer_norm;
        if !stable {
            h = self.encoder_layer_norm.forward(be, &h)?;
        }
        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        for layer in &self.layers {
            hidden_states.push(h.clone());
            h = layer.forward(be, &h)?;
        }
        if !stable {
            hidden_states.push(h.clone());
            return Ok((hidden_states, Some(h)));
        }
        let tie = self.config.tie_last_hidden_states;
        let normed = if want_last || tie {
            Some(self.encoder_layer_norm.forward(be, &h)?)
        } else {
            None
        };
        hidden_states.push(match &normed {
            Some(n) if tie => n.clone(),
            _ => h,
        });
        Ok((hidden_states, normed))
    }
}

/// [`Wav2Vec2Model::forward_outputs`]: `Wav2Vec2Model(..., output_hidden_states=True)`.
#[derive(Clone, Debug)]
pub struct Wav2Vec2Output<T> {
    /// (B, T, H), after `encoder.layer_norm` for pre-LN models
    pub last_hidden_state: T,
    /// `num_hidden_layers + 1` tensors (B, T, H), as [`Wav2Vec2Model::forward`]
    pub hidden_states: Vec<T>,
}
