//! `clarity_embedding`: the hand clarity score s ∈ [0, 1] → an offset added to the
//! denoising U-Net's time embedding (spec section 3, hook 2).
//!
//! ```text
//! s ─► time_proj(1000·s) (the U-Net's own Timesteps, C0) ─linear_1─SiLU─linear_2─► (4·C0)
//! ```

use anyhow::{bail, Result};

use super::config::ClarityEmbeddingConfig;
use crate::backends::{Backend, BackendExt};
use crate::models::embeddings::Timesteps;
use crate::models::nn::Linear;
use crate::var_builder::VarBuilder;

/// `clarity_embedding.*`.
#[derive(Clone, Debug)]
pub struct ClarityEmbedding<B: Backend> {
    /// (4·C0, C0)
    pub linear_1: Linear<B>,
    /// (4·C0, 4·C0), zero-init when fresh
    pub linear_2: Linear<B>,
    /// the denoising U-Net's `time_proj` (C0 channels, its flip_sin_to_cos / freq_shift)
    pub time_proj: Timesteps,
}

impl<B: Backend> ClarityEmbedding<B> {
    /// `vb` at `clarity_embedding`; `time_proj` is the denoising U-Net's.
    pub fn load(
        vb: &VarBuilder<B>,
        cfg: &ClarityEmbeddingConfig,
        time_proj: &Timesteps,
    ) -> Result<Self> {
        if time_proj.num_channels != cfg.in_channels {
            bail!(
                "clarity_embedding: `clarity_embedding.in_channels` = {} but the U-Net's time_proj has {} channels (block_out_channels[0])",
                cfg.in_channels,
                time_proj.num_channels
            );
        }
        let dims = (cfg.in_channels, cfg.time_embed_dim, cfg.time_embed_dim);
        let (linear_1, linear_2) = Linear::load_mlp(vb, dims)?;
        Ok(ClarityEmbedding {
            linear_1,
            linear_2,
            time_proj: *time_proj,
        })
    }

    /// One score per batch row, s (N,) → (N, 4·C0), to add to `temb`.
    pub fn forward(&self, be: &B, scores: &[f32]) -> Result<B::Tensor> {
        let t: Vec<f32> = scores.iter().map(|s| 1000.0 * s).collect();
        let x = self.time_proj.forward(be, &t)?;
        let h = be.silu(&self.linear_1.forward(be, &x)?)?;
        self.linear_2.forward(be, &h)
    }
}
