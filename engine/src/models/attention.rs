//! diffusers `Attention` (`models/attention_processor.py`) run the way
//! `AttnProcessor2_0` runs it, plus reference attention (extra key/value tokens
//! for a range of batch rows).
//!
//! ```text
//! x (N, L, C) or (N, C, H, W)  ─[group_norm]─► tokens (N, L, C)
//! q = to_q(tokens); k, v = to_k/to_v(encoder_hidden_states or tokens)
//!   [self-attention on backends that pack (`Backend::packs_qkv`, CUDA): q|k|v = to_qkv(tokens),
//!    one linear over the three weights concatenated at load, (N, L, 3·inner)]
//! out = to_out.0(softmax(q kᵀ / sqrt(d)) v)       heads split as (N, heads, L, d)
//! [4-D input: back to (N, C, H, W)]  [+ x if residual_connection]  / rescale_output_factor
//! ```

use std::ops::Range;

use anyhow::{bail, Context, Result};

use crate::backends::composed_attention::ExtraRows;
use crate::backends::{Backend, BackendExt, LinearEpilogue, TensorLike};
use crate::models::nn::{GroupNorm, Linear};
use crate::var_builder::VarBuilder;

/// Construction arguments of `Attention` (diffusers names).
#[derive(Clone, Debug)]
pub struct AttentionConfig {
    /// e.g. 320
    pub query_dim: usize,
    /// e.g. Some(768) for cross-attention; None = self-attention (k/v from query_dim)
    pub cross_attention_dim: Option<usize>,
    /// e.g. 8
    pub heads: usize,
    /// e.g. 40
    pub dim_head: usize,
    /// bias of to_q/to_k/to_v, e.g. false (UNet), true (VAE)
    pub bias: bool,
    /// bias of to_out.0, e.g. true
    pub out_bias: bool,
    /// (`norm_num_groups`, `eps`) of a `group_norm` before the projections, e.g. None;
    /// Some((32, 1e-6)) in the VAE mid block (diffusers' default eps is 1e-5)
    pub group_norm: Option<(usize, f32)>,
    /// e.g. false; true adds the input back (VAE)
    pub residual_connection: bool,
    /// e.g. 1.0
    pub rescale_output_factor: f32,
    /// e.g. None; Some(d) sets inner dim = d and heads = d / dim_head
    pub out_dim: Option<usize>,
}

impl AttentionConfig {
    /// A UNet transformer attention: no qkv bias, output bias, no norm.
    pub fn new(
        query_dim: usize,
        cross_attention_dim: Option<usize>,
        heads: usize,
        dim_head: usize,
    ) -> Self {
        AttentionConfig {
            query_dim,
            cross_attention_dim,
            heads,
            dim_head,
            bias: false,
            out_bias: true,
            group_norm: None,
            residual_connection: false,
            rescale_output_factor: 1.0,
            out_dim: None,
        }
    }
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig::new(320, Some(768), 8, 40)
    }
}

/// Extra key/value tokens for reference attention.
#[derive(Clone, Copy, Debug)]
pub enum ExtraKvSource<'a, B: Backend> {
    /// Raw tokens (1 or n_rows, L_ref, query_dim), projected by this layer's to_k / to_v.
    Tokens(&'a B::Tensor),
    /// Already projected by [`Attention::project_kv`]: k, v each (1 or n_rows, L_ref, inner_dim).
    Projected { k: &'a B::Tensor, v: &'a B::Tensor },
}

/// Extra keys/values appended (after the layer's own keys) for the batch rows `rows`;
/// the other rows run plain attention.
#[derive(Clone, Debug)]
pub struct ExtraKv<'a, B: Backend> {
    pub source: ExtraKvSource<'a, B>,
    pub rows: Range<usize>,
}

#[derive(Clone, Debug)]
pub struct Attention<B: Backend> {
    pub group_norm: Option<GroupNorm<B>>,
    /// (inner, query_dim)
    pub to_q: Linear<B>,
    /// (inner, cross_dim)
    pub to_k: Linear<B>,
    /// (inner, cross_dim)
    pub to_v: Linear<B>,
    /// `to_out.0`: (out_dim, inner)
    pub to_out: Linear<B>,
    /// to_q, to_k, to_v stacked: (3·inner, query_dim), biases concatenated; set by
    /// [`Self::pack_qkv`] for self-attention on backends that pack ([`Backend::packs_qkv`]), and
    /// run instead of the three for keys and values from the tokens themselves.
    pub to_qkv: Option<Linear<B>>,
    pub heads: usize,
    pub inner_dim: usize,
    pub residual_connection: bool,
    pub rescale_output_factor: f32,
}

impl<B: Backend> Attention<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &AttentionConfig) -> Result<Self> {
        let inner = cfg.out_dim.unwrap_or(cfg.dim_head * cfg.heads);
        let heads = match cfg.out_dim {
            Some(d) => d / cfg.dim_head,
            None => cfg.heads,
        };
        if heads == 0 || inner % heads != 0 {
            bail!(
                "Attention `{}`: inner dim {inner} is not divisible by {heads} heads",
                vb.prefix()
            );
        }
        let out_dim = cfg.out_dim.unwrap_or(cfg.query_dim);
        let kv_dim = cfg.cross_attention_dim.unwrap_or(cfg.query_dim);
        let group_norm = match cfg.group_norm {
            Some((groups, eps)) => Some(GroupNorm::load(
                &vb.pp("group_norm"),
                groups,
                cfg.query_dim,
                eps,
            )?),
            None => None,
        };
        let attn = Attention {
            group_norm,
            to_q: Linear::load(&vb.pp("to_q"), cfg.query_dim, inner, cfg.bias)?,
            to_k: Linear::load(&vb.pp("to_k"), kv_dim, inner, cfg.bias)?,
            to_v: Linear::load(&vb.pp("to_v"), kv_dim, inner, cfg.bias)?,
            to_out: Linear::load(&vb.pp("to_out").pp("0"), inner, out_dim, cfg.out_bias)?,
            to_qkv: None,
            heads,
            inner_dim: inner,
            residual_connection: cfg.residual_connection,
            rescale_output_factor: cfg.rescale_output_factor,
        };
        if cfg.cross_attention_dim.is_some() {
            return Ok(attn);
        }
        attn.pack_qkv(vb.backend())
            .with_context(|| format!("Attention `{}`: packing to_q / to_k / to_v", vb.prefix()))
    }

    /// Sets [`Self::to_qkv`] (the three projection weights, and biases, concatenated; prepared
    /// like any linear weight, e.g. quantised per output channel for `--weights-dtype fp8`) on
    /// backends that pack ([`Backend::packs_qkv`]) when to_q, to_k, to_v all read the same width;
    /// else `self` as it is.
    pub fn pack_qkv(mut self, be: &B) -> Result<Self> {
        let (q, k, v) = (&self.to_q, &self.to_k, &self.to_v);
        let same_in =
            q.weight.shape()[1] == k.weight.shape()[1] && k.weight.shape() == v.weight.shape();
        let biases = [&q.bias, &k.bias, &v.bias];
        let same_bias = biases.iter().all(|b| b.is_some()) || biases.iter().all(|b| b.is_none());
        if !be.packs_qkv(self.heads, self.inner_dim / self.heads) || !same_in || !same_bias {
            return Ok(self);
        }
        let weight = be.concat(&[&q.weight, &k.weight, &v.weight], 0)?;
        be.prepare_linear_weight(&weight)?;
        let bias = match biases {
            [Some(bq), Some(bk), Some(bv)] => Some(be.concat(&[bq, bk, bv], 0)?),
            _ => None,
        };
        self.to_qkv = Some(Linear { weight, bias });
        Ok(self)
    }

    /// Project reference tokens (n, L_ref, cross_dim) once: returns (k, v), each (n, L_ref, inner).
    /// Pass them back as [`ExtraKvSource::Projected`] to skip the projection on every call.
    pub fn project_kv(&self, be: &B, tokens: &B::Tensor) -> Result<(B::Tensor, B::Tensor)> {
        Ok((
            self.to_k.forward(be, tokens)?,
            self.to_v.forward(be, tokens)?,
        ))
    }

    /// x (N, L, C) or (N, C, H, W); encoder_hidden_states (N, S, cross_dim) or None (self-attention).
    pub fn forward(
        &self,
        be: &B,
        x: &B::Tensor,
        encoder_hidden_states: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        self.forward_residual(be, x, encoder_hidden_states, None, None)
    }

    /// [`forward`](Self::forward) with optional extra key/value tokens for some batch rows,
    /// `+ residual` (the caller's skip connection, e.g.
    /// `BasicTransformerBlock`'s `attn1(norm1(x)) + x`; same shape as the output), with the
    /// skip fused into `to_out`'s epilogue whenever the arithmetic allows.
    pub fn forward_residual(
        &self,
        be: &B,
        x: &B::Tensor,
        encoder_hidden_states: Option<&B::Tensor>,
        extra: Option<&ExtraKv<'_, B>>,
        residual: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        self.forward_inner(
            be,
            x,
            KvSource::States(encoder_hidden_states),
            extra,
            residual,
        )
    }

    /// Cross-attention with its keys and values already projected ([`Self::project_kv`] of
    /// the encoder hidden states, each (N, S, inner)), `+ residual` as in
    /// [`forward_residual`](Self::forward_residual).
    pub fn forward_projected(
        &self,
        be: &B,
        x: &B::Tensor,
        (k, v): (&B::Tensor, &B::Tensor),
        residual: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        self.forward_inner(be, x, KvSource::Projected(k, v), None, residual)
    }

    fn forward_inner(
        &self,
        be: &B,
        x: &B::Tensor,
        kv: KvSource<'_, B>,
        extra: Option<&ExtraKv<'_, B>>,
        residual: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let shape = x.shape().to_vec();
        // tokens (N, L, C)
        let tokens = match shape.len() {
            4 => {
                let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
                let t = match &self.group_norm {
                    Some(gn) => gn.forward(be, x)?,
                    None => x.clone(),
                };
                let t = be.reshape(&t, &[n, c, h * w])?;
                be.permute(&t, &[0, 2, 1])?
            }
            3 => match &self.group_norm {
                Some(gn) => {
                    let t = be.permute(x, &[0, 2, 1])?;
                    let t = gn.forward(be, &t)?;
                    be.permute(&t, &[0, 2, 1])?
                }
                None => x.clone(),
            },
            r => {
                bail!("Attention: input must be (N, L, C) or (N, C, H, W), got rank {r} {shape:?}")
            }
        };
        let d = self.inner_dim / self.heads;
        let attn_scale = 1.0 / (d as f32).sqrt();
        // heads split / merged (and reference rows, extra keys) inside the op: on CUDA the flash
        // kernel reads the projection outputs through strides and writes the layout to_out reads
        let mut projected = None;
        let out = match (&self.to_qkv, &kv) {
            // self-attention, packed: one projection, q / k / v read from it in place
            (Some(qkv), KvSource::States(None)) => {
                let qkv = qkv.forward(be, &tokens)?;
                let extra = self.extra_kv(be, extra, &mut projected)?;
                be.attention_heads_packed(&qkv, extra, self.heads, attn_scale)?
            }
            _ => self.attend(be, &tokens, kv, extra, attn_scale)?,
        };
        self.project_out(be, x, &shape, out, residual)
    }

    /// The extra keys / values of `extra` for `attention_heads`: given, or projected by to_k /
    /// to_v into `projected`.
    fn extra_kv<'a>(
        &self,
        be: &B,
        extra: Option<&'a ExtraKv<'a, B>>,
        projected: &'a mut Option<(B::Tensor, B::Tensor)>,
    ) -> Result<ExtraRows<'a, B::Tensor>> {
        let Some(extra) = extra else {
            return Ok(None);
        };
        let (k_ref, v_ref) = match extra.source {
            ExtraKvSource::Tokens(t) => {
                let (k, v) = projected.insert(self.project_kv(be, t)?);
                (&*k, &*v)
            }
            ExtraKvSource::Projected { k, v } => (k, v),
        };
        Ok(Some((k_ref, v_ref, extra.rows.clone())))
    }

    /// q = to_q(tokens), k / v from `kv` (to_k / to_v of the states or the tokens, or given), then
    /// [`Backend::attention_heads`] (with `extra`'s keys): (N, L, inner).
    fn attend(
        &self,
        be: &B,
        tokens: &B::Tensor,
        kv: KvSource<'_, B>,
        extra: Option<&ExtraKv<'_, B>>,
        attn_scale: f32,
    ) -> Result<B::Tensor> {
        let n = tokens.shape()[0];
        let q = self.to_q.forward(be, tokens)?;
        let (k, v) = match kv {
            KvSource::States(states) => {
                let ctx = states.unwrap_or(tokens);
                if ctx.shape()[0] != n {
                    bail!(
                        "Attention: encoder_hidden_states batch {} differs from the hidden states batch {n}",
                        ctx.shape()[0]
                    );
                }
                self.project_kv(be, ctx)?
            }
            KvSource::Projected(k, v) => {
                for (what, t) in [("keys", k), ("values", v)] {
                    if t.rank() != 3 || t.shape()[0] != n || t.shape()[2] != self.inner_dim {
                        bail!(
                            "Attention: projected {what} {:?} must be (batch {n}, S, inner {})",
                            t.shape(),
                            self.inner_dim
                        );
                    }
                }
                (k.clone(), v.clone())
            }
        };
        let mut projected = None;
        let extra = self.extra_kv(be, extra, &mut projected)?;
        be.attention_heads(&q, &k, &v, extra, self.heads, attn_scale)
    }

    /// to_out of the attention output `out` (N, L, inner), with the residual / rescale epilogue,
    /// back in x's layout (`shape`).
    fn project_out(
        &self,
        be: &B,
        x: &B::Tensor,
        shape: &[usize],
        out: B::Tensor,
        residual: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        // to_out epilogue: scale · (to_out(..) + fused); `after` is added once back in x's layout
        let scale = 1.0 / self.rescale_output_factor;
        let (fused, scale, after) = match (self.residual_connection, residual) {
            (true, r) => (Some(x), scale, r),
            (false, Some(r)) if scale == 1.0 => (Some(r), 1.0, None),
            (false, r) => (None, scale, r),
        };
        let fused = match fused {
            Some(r) if shape.len() == 4 => {
                let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
                if r.shape() != shape {
                    bail!(
                        "Attention: residual {:?} differs from the input {shape:?}",
                        r.shape()
                    );
                }
                let t = be.reshape(r, &[n, c, h * w])?;
                Some(be.permute(&t, &[0, 2, 1])?)
            }
            Some(r) => Some(r.clone()),
            None => None,
        };
        let epi = LinearEpilogue {
            residual: fused.as_ref(),
            scale,
            geglu: false,
        };
        let mut out = self
            .to_out
            .forward_ext(be, &out, epi)
            .context("Attention: the residual must have the output's shape (N, L, out_dim)")?;
        if shape.len() == 4 {
            let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
            let oc = out.shape()[2];
            if oc != c {
                bail!("Attention: 4-D input needs out_dim == channels ({oc} != {c})");
            }
            out = be.reshape(&out, &[n, h, w, c])?;
            out = be.permute(&out, &[0, 3, 1, 2])?;
        }
        if let Some(r) = after {
            out = be.add(&out, r)?;
        }
        Ok(out)
    }
}

/// Where `Attention` gets its keys and values.
#[derive(Clone, Copy)]
enum KvSource<'a, B: Backend> {
    /// Projected here from the encoder hidden states (None: self-attention on the tokens).
    States(Option<&'a B::Tensor>),
    /// Already projected k, v (N, S, inner).
    Projected(&'a B::Tensor, &'a B::Tensor),
}
