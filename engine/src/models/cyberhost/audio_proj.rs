//! `audio_proj`: wav2vec2 hidden-state windows → per-frame audio tokens (spec sections 5, 6).
//!
//! ```text
//! hidden (L+1, T_a, D_a) ─[audio_windows: interp to N frames, align_corners; window i−w..i+w,
//!                          edge-clamped, flattened (W, L+1, D_a)]─► (N, W·(L+1)·D_a)
//!   ─proj1─ReLU─proj2─ReLU─proj3─► (N, K_a·D_ctx) ─reshape─► (N, K_a, D_ctx) ─LayerNorm(1e-5)─►
//! ```

use anyhow::{bail, Result};

use super::config::AudioProjConfig;
use crate::backends::{Backend, TensorLike, Unary};
use crate::models::nn::{LayerNorm, Linear};
use crate::var_builder::VarBuilder;

/// LayerNorm eps of `audio_proj.norm`.
pub const AUDIO_PROJ_NORM_EPS: f32 = 1e-5;

/// The audio projection MLP (`audio_proj.*`).
#[derive(Clone, Debug)]
pub struct AudioProj<B: Backend> {
    /// (I, W·(L+1)·D_a)
    pub proj1: Linear<B>,
    /// (I, I)
    pub proj2: Linear<B>,
    /// (K_a·D_ctx, I)
    pub proj3: Linear<B>,
    /// (D_ctx,)
    pub norm: LayerNorm<B>,
    pub cfg: AudioProjConfig,
}

impl<B: Backend> AudioProj<B> {
    /// `vb` at `audio_proj`.
    pub fn load(vb: &VarBuilder<B>, cfg: &AudioProjConfig) -> Result<Self> {
        let i = cfg.intermediate_dim;
        Ok(AudioProj {
            proj1: Linear::load(&vb.pp("proj1"), cfg.input_dim(), i, true)?,
            proj2: Linear::load(&vb.pp("proj2"), i, i, true)?,
            proj3: Linear::load(&vb.pp("proj3"), i, cfg.num_tokens * cfg.context_dim, true)?,
            norm: LayerNorm::load(&vb.pp("norm"), cfg.context_dim, AUDIO_PROJ_NORM_EPS, true)?,
            cfg: cfg.clone(),
        })
    }

    /// windows (N, W·(L+1)·D_a) (from [`audio_windows`]) → tokens (N, K_a, D_ctx).
    pub fn forward(&self, be: &B, windows: &B::Tensor) -> Result<B::Tensor> {
        let s = windows.shape();
        if s.len() != 2 || s[1] != self.cfg.input_dim() {
            bail!(
                "audio_proj: windows have shape {s:?}, expected (N, {}) = (N, W·(L+1)·D_a) with W = {}, L+1 = {}, D_a = {}",
                self.cfg.input_dim(),
                self.cfg.window_frames(),
                self.cfg.num_hidden_states,
                self.cfg.audio_dim
            );
        }
        let n = s[0];
        let h = self.proj1.forward(be, windows)?;
        let h = be.unary(&h, Unary::Relu)?;
        let h = self.proj2.forward(be, &h)?;
        let h = be.unary(&h, Unary::Relu)?;
        let h = self.proj3.forward(be, &h)?;
        let h = be.reshape(&h, &[n, self.cfg.num_tokens, self.cfg.context_dim])?;
        self.norm.forward(be, &h)
    }
}

/// Linear interpolation along time of `hidden` (S, T_a, D) row-major to `n` frames, PyTorch
/// `F.interpolate(mode="linear", align_corners=True)` arithmetic (f32): frame i samples
/// src = i·(T_a−1)/(n−1) (n = 1 → frame 0) → (S, n, D).
pub fn interpolate_frames(hidden: &[f32], shape: [usize; 3], n: usize) -> Result<Vec<f32>> {
    let [s, t_a, d] = shape;
    if hidden.len() != s * t_a * d {
        bail!(
            "audio hidden states: {} values do not fill shape (L+1, T_a, D_a) = ({s}, {t_a}, {d})",
            hidden.len()
        );
    }
    if t_a == 0 {
        bail!("audio hidden states: no time steps (T_a = 0); is the audio empty?");
    }
    let scale = if n > 1 {
        (t_a - 1) as f32 / (n - 1) as f32
    } else {
        0.0
    };
    let mut out = vec![0f32; s * n * d];
    for i in 0..n {
        let src = scale * i as f32;
        let i0 = (src as usize).min(t_a - 1);
        let step = usize::from(i0 < t_a - 1);
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        let l0 = 1.0 - l1;
        for st in 0..s {
            let a = &hidden[(st * t_a + i0) * d..(st * t_a + i0 + 1) * d];
            let b = &hidden[(st * t_a + i0 + step) * d..(st * t_a + i0 + step + 1) * d];
            let o = &mut out[(st * n + i) * d..(st * n + i + 1) * d];
            for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                *o = l0 * a + l1 * b;
            }
        }
    }
    Ok(out)
}

/// The window of frame `i`: frames i−w..=i+w clamped to 0..n.
pub fn window_frames(i: usize, w: usize, n: usize) -> Vec<usize> {
    (0..2 * w + 1)
        .map(|k| (i + k).saturating_sub(w).min(n.saturating_sub(1)))
        .collect()
}

/// wav2vec2 hidden states (L+1, T_a, D_a) row-major → `audio_proj` input (N, W·(L+1)·D_a):
/// interpolated to `n_frames` ([`interpolate_frames`]), then for frame i the frames
/// i−w..i+w (edge-clamped), flattened as (W, L+1, D_a) row-major.
pub fn audio_windows(
    hidden: &[f32],
    shape: [usize; 3],
    n_frames: usize,
    w: usize,
) -> Result<Vec<f32>> {
    let [s, _, d] = shape;
    let interp = interpolate_frames(hidden, shape, n_frames)?;
    let win = 2 * w + 1;
    let row = win * s * d;
    let mut out = vec![0f32; n_frames * row];
    for i in 0..n_frames {
        for (k, j) in window_frames(i, w, n_frames).into_iter().enumerate() {
            for st in 0..s {
                let src = &interp[(st * n_frames + j) * d..(st * n_frames + j + 1) * d];
                let dst = i * row + (k * s + st) * d;
                out[dst..dst + d].copy_from_slice(src);
            }
        }
    }
    Ok(out)
}
