//! diffusers embeddings (`models/embeddings.py`): the sinusoidal timestep
//! projection (`get_timestep_embedding` / `Timesteps`), `TimestepEmbedding`
//! and `SinusoidalPositionalEmbedding` (AnimateDiff motion modules).

use anyhow::{bail, Result};

use crate::backends::{Backend, BackendExt, LinearEpilogue, TensorLike};
use crate::models::nn::{Activation, Linear};
use crate::var_builder::VarBuilder;

// ---------------------------------------------------------------------------
// Timesteps
// ---------------------------------------------------------------------------

/// `Timesteps(num_channels, flip_sin_to_cos, downscale_freq_shift)`: no weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timesteps {
    /// e.g. 320 (= block_out_channels[0])
    pub num_channels: usize,
    /// e.g. true
    pub flip_sin_to_cos: bool,
    /// e.g. 0.0 (SD), 1.0
    pub downscale_freq_shift: f32,
}

impl Timesteps {
    /// `get_timestep_embedding(t, num_channels, flip, shift, scale=1, max_period=10000)`
    /// on the host, with f32 arithmetic in torch's order → (N, num_channels) row-major.
    pub fn embed_host(&self, timesteps: &[f32]) -> Vec<f32> {
        crate::backends::composed::timestep_embedding_host(
            timesteps,
            self.num_channels,
            self.flip_sin_to_cos,
            self.downscale_freq_shift,
        )
    }

    /// (N,) timesteps on the device → (N, num_channels) ([`Backend::timestep_embedding`]).
    pub fn forward_t<B: Backend>(&self, be: &B, timesteps: &B::Tensor) -> Result<B::Tensor> {
        be.timestep_embedding(
            timesteps,
            self.num_channels,
            self.flip_sin_to_cos,
            self.downscale_freq_shift,
        )
    }

    /// (N,) timesteps → (N, num_channels) tensor.
    pub fn forward<B: Backend>(&self, be: &B, timesteps: &[f32]) -> Result<B::Tensor> {
        be.from_f32(
            &[timesteps.len(), self.num_channels],
            &self.embed_host(timesteps),
        )
    }
}

// ---------------------------------------------------------------------------
// TimestepEmbedding
// ---------------------------------------------------------------------------

/// Construction arguments of `TimestepEmbedding` (diffusers names).
#[derive(Clone, Debug)]
pub struct TimestepEmbeddingConfig {
    /// e.g. 320
    pub in_channels: usize,
    /// e.g. 1280
    pub time_embed_dim: usize,
    /// e.g. "silu"
    pub act_fn: Activation,
    /// e.g. None (= time_embed_dim)
    pub out_dim: Option<usize>,
    /// e.g. None
    pub post_act_fn: Option<Activation>,
}

impl Default for TimestepEmbeddingConfig {
    fn default() -> Self {
        TimestepEmbeddingConfig {
            in_channels: 320,
            time_embed_dim: 1280,
            act_fn: Activation::Silu,
            out_dim: None,
            post_act_fn: None,
        }
    }
}

/// `linear_2(act(linear_1(x)))` [→ post_act]. A `cond_proj` in the checkpoint is
/// not loaded: it is only used with `timestep_cond`, which the engine never passes.
#[derive(Clone, Debug)]
pub struct TimestepEmbedding<B: Backend> {
    /// (time_embed_dim, in_channels)
    pub linear_1: Linear<B>,
    /// (out_dim, time_embed_dim)
    pub linear_2: Linear<B>,
    pub act: Activation,
    pub post_act: Option<Activation>,
}

impl<B: Backend> TimestepEmbedding<B> {
    pub fn load(vb: &VarBuilder<B>, cfg: &TimestepEmbeddingConfig) -> Result<Self> {
        let out = cfg.out_dim.unwrap_or(cfg.time_embed_dim);
        // `cond_proj` (time_cond_proj_dim) only acts on `timestep_cond`, never passed here.
        vb.pp("cond_proj").skip("weight");
        let dims = (cfg.in_channels, cfg.time_embed_dim, out);
        let (linear_1, linear_2) = Linear::load_mlp(vb, dims)?;
        Ok(TimestepEmbedding {
            linear_1,
            linear_2,
            act: cfg.act_fn,
            post_act: cfg.post_act_fn,
        })
    }

    /// x (N, in_channels) → (N, out_dim), `+ residual` (the output's shape, or one row
    /// broadcast over the batch); the residual rides in `linear_2`'s epilogue when there is
    /// no `post_act`.
    pub fn forward(
        &self,
        be: &B,
        x: &B::Tensor,
        residual: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let h = self.linear_1.forward(be, x)?;
        let h = self.act.forward(be, &h)?;
        let fuse = residual.filter(|_| self.post_act.is_none());
        let h = self.linear_2.forward_ext(
            be,
            &h,
            LinearEpilogue {
                residual: fuse,
                ..Default::default()
            },
        )?;
        let h = match self.post_act {
            Some(a) => a.forward(be, &h)?,
            None => h,
        };
        match residual {
            Some(r) if fuse.is_none() => be.add(&h, r),
            _ => Ok(h),
        }
    }
}

// ---------------------------------------------------------------------------
// SinusoidalPositionalEmbedding
// ---------------------------------------------------------------------------

/// `SinusoidalPositionalEmbedding(embed_dim, max_seq_length)`: x (N, L, D) + pe[:L].
/// `pe` is a persistent buffer, so it is read from the checkpoint (`pos_embed.pe`).
#[derive(Clone, Debug)]
pub struct SinusoidalPositionalEmbedding<B: Backend> {
    /// (1, max_seq_length, embed_dim)
    pub pe: B::Tensor,
    pub max_seq_length: usize,
}

impl<B: Backend> SinusoidalPositionalEmbedding<B> {
    pub fn load(vb: &VarBuilder<B>, embed_dim: usize, max_seq_length: usize) -> Result<Self> {
        Ok(SinusoidalPositionalEmbedding {
            pe: vb.get("pe", &[1, max_seq_length, embed_dim])?,
            max_seq_length,
        })
    }

    /// The buffer diffusers builds at init (f32, torch's order of operations): (max_seq_length, embed_dim).
    pub fn table_host(embed_dim: usize, max_seq_length: usize) -> Vec<f32> {
        let mut pe = vec![0f32; max_seq_length * embed_dim];
        let k = -(10000f64.ln() as f32) / embed_dim as f32;
        for p in 0..max_seq_length {
            for (j, i) in (0..embed_dim).step_by(2).enumerate() {
                let div = ((i as f32 * k) as f64).exp() as f32;
                let arg = p as f32 * div;
                pe[p * embed_dim + 2 * j] = (arg as f64).sin() as f32;
                if 2 * j + 1 < embed_dim {
                    pe[p * embed_dim + 2 * j + 1] = (arg as f64).cos() as f32;
                }
            }
        }
        pe
    }

    /// x (N, L, D) → x + pe[:, :L].
    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        be.add(x, &self.table(be, x.shape()[1])?)
    }

    /// pe[:, :L] (1, L, D), the rows added to a sequence of L frames.
    pub fn table(&self, be: &B, l: usize) -> Result<B::Tensor> {
        if l > self.max_seq_length {
            bail!(
                "SinusoidalPositionalEmbedding: sequence of {l} frames exceeds motion_max_seq_length {}",
                self.max_seq_length
            );
        }
        be.narrow(&self.pe, 1, 0, l)
    }
}
