//! Region Codebook Attention (spec section 4): one site (an up block's output, C channels),
//! one region r ∈ {face, hand}; `rca.{face,hand}.{site}.*`.
//!
//! ```text
//! F_in (N, C, h, w), N = batch·(M+F) frame-major (row n is frame slot f = n mod (M+F))
//! X   = GroupNorm(norm_num_groups, eps 1e-6)(F_in) as (N, h·w, C)
//! A_s = MHA_spatial(q = X, kv = S)                     S (n, C): spatial bank
//! A_t = MHA_temporal(q = X + A_s + T_f, kv = T)        T (M+F, C): temporal bank, T_f = row f
//! F_id = MHA_identity(q = X, kv = id_proj(id tokens))  rows with identity (cond half); 0 elsewhere
//! M_r = sigmoid(mask.conv2(SiLU(mask.conv1(F_in))))    conv1 3×3 C→C/4, conv2 1×1 C/4→1
//! F_out = F_in + M_r ⊙ to_out(A_s + A_t + F_id)
//! MHA = to_q/to_k/to_v (C×C, no bias), heads C/64 (≥ 1), softmax(q kᵀ/√d) v, no out proj
//! ```
//!
//! Both banks are orthonormalised at load time (modified Gram-Schmidt over rows in row order,
//! f64, then × √C, cast to f32), so S Sᵀ = C·I: [`orthonormalize_rows`].
//!
//! **[choice]** Per site, the face RCA runs first and the hand RCA takes its output
//! ([`RcaSite::forward`]): F_out = RCA_hand(RCA_face(F_in)).
//!
//! A freshly initialised RCA has `to_out` = 0 ([`RegionCodebookAttention::with_fresh_to_out`]),
//! so F_out = F_in exactly.

use std::ops::Range;

use anyhow::{bail, Result};

use super::config::RcaConfig;
use crate::backends::{Backend, TensorLike};
use crate::models::nn::{Conv2d, GroupNorm, Linear};
use crate::var_builder::VarBuilder;

/// GroupNorm eps of `rca.*.norm`.
pub const RCA_NORM_EPS: f32 = 1e-6;

/// The two regions, in the order they run and their checkpoint names.
pub const RCA_REGIONS: [&str; 2] = ["face", "hand"];

/// Sizes of one RCA (one site, one region).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcaSiteConfig {
    /// C, e.g. 64
    pub channels: usize,
    /// n, spatial bank rows, e.g. 8
    pub codebook_size: usize,
    /// M+F, temporal bank rows, e.g. 10
    pub num_frames: usize,
    /// the U-Net's norm_num_groups, e.g. 8
    pub norm_num_groups: usize,
    /// E, identity token width, e.g. 16
    pub identity_dim: usize,
}

impl RcaSiteConfig {
    /// The config of site index `i` (position in `rca.sites`).
    pub fn from_rca(cfg: &RcaConfig, i: usize) -> Self {
        RcaSiteConfig {
            channels: cfg.site_channels[i],
            codebook_size: cfg.codebook_size,
            num_frames: cfg.num_frames,
            norm_num_groups: cfg.norm_num_groups,
            identity_dim: cfg.identity_dim,
        }
    }

    /// C/64, at least 1.
    pub fn heads(&self) -> usize {
        (self.channels / 64).max(1)
    }
}

/// Modified Gram-Schmidt over the rows of `rows` (n, c) row-major, in row order, in f64;
/// the orthonormal rows are scaled by √c and cast to f32 (so the result R has R Rᵀ = c·I).
/// `what` names the tensor in errors (n > c, or a row dependent on the earlier ones).
pub fn orthonormalize_rows(rows: &[f32], n: usize, c: usize, what: &str) -> Result<Vec<f32>> {
    if rows.len() != n * c {
        bail!("{what}: {} values do not fill ({n}, {c})", rows.len());
    }
    if n > c {
        bail!("{what}: {n} rows cannot be orthonormal in {c} dimensions (Gram-Schmidt needs rows ≤ C)");
    }
    let mut q: Vec<f64> = rows.iter().map(|&v| v as f64).collect();
    for i in 0..n {
        let (done, rest) = q.split_at_mut(i * c);
        let v = &mut rest[..c];
        let norm0 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        for j in 0..i {
            let qj = &done[j * c..(j + 1) * c];
            let dot: f64 = v.iter().zip(qj).map(|(a, b)| a * b).sum();
            for (a, b) in v.iter_mut().zip(qj) {
                *a -= dot * b;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if !(norm.is_finite() && norm > 1e-10 * norm0) {
            bail!("{what}: row {i} is (numerically) a combination of rows 0..{i}; cannot orthonormalise (draw the bank at random)");
        }
        for a in v.iter_mut() {
            *a /= norm;
        }
    }
    let s = (c as f64).sqrt();
    Ok(q.iter().map(|&v| (v * s) as f32).collect())
}

/// One multi-head attention of the RCA: `to_q`, `to_k`, `to_v` (C×C, no bias), no output
/// projection. Keys and values are one token set shared by every query row.
#[derive(Clone, Debug)]
pub struct CodebookAttention<B: Backend> {
    /// (C, C)
    pub to_q: Linear<B>,
    /// (C, C)
    pub to_k: Linear<B>,
    /// (C, C)
    pub to_v: Linear<B>,
    pub heads: usize,
}

impl<B: Backend> CodebookAttention<B> {
    pub fn load(vb: &VarBuilder<B>, channels: usize, heads: usize) -> Result<Self> {
        Ok(CodebookAttention {
            to_q: Linear::load(&vb.pp("to_q"), channels, channels, false)?,
            to_k: Linear::load(&vb.pp("to_k"), channels, channels, false)?,
            to_v: Linear::load(&vb.pp("to_v"), channels, channels, false)?,
            heads,
        })
    }

    /// The keys and values (each (L_kv, C)) of the token set kv (L_kv, C): constant over a
    /// video's steps, so the pipeline projects them once ([`RegionCodebookAttention::project_kv`]).
    pub fn project_kv(&self, be: &B, kv: &B::Tensor) -> Result<(B::Tensor, B::Tensor)> {
        Ok((self.to_k.forward(be, kv)?, self.to_v.forward(be, kv)?))
    }

    /// q_in (N, L, C), kv (L_kv, C) → (N, L, C). The keys are shared by all rows: the N·L
    /// queries are one sequence per head ([`Backend::rca_attention`]).
    pub fn forward(&self, be: &B, q_in: &B::Tensor, kv: &B::Tensor) -> Result<B::Tensor> {
        let (k, v) = self.project_kv(be, kv)?;
        self.forward_projected(be, q_in, &k, &v)
    }

    /// [`Self::forward`] with the keys and values already projected ([`Self::project_kv`]).
    pub fn forward_projected(
        &self,
        be: &B,
        q_in: &B::Tensor,
        k: &B::Tensor,
        v: &B::Tensor,
    ) -> Result<B::Tensor> {
        let (n, l, c) = (q_in.shape()[0], q_in.shape()[1], q_in.shape()[2]);
        let d = c / self.heads;
        let q = self.to_q.forward(be, &be.reshape(q_in, &[n * l, c])?)?;
        let q = be.reshape(&q, &[n, l, c])?;
        be.rca_attention(&q, k, v, self.heads, 1.0 / (d as f32).sqrt())
    }
}

/// The keys and values one RCA reads that do not depend on the step: both banks' and (with
/// identity tokens) the identity tokens' `id_proj` → `to_k` / `to_v`. Each (L_kv, C).
#[derive(Clone, Debug)]
pub struct RcaKv<B: Backend> {
    pub spatial: (B::Tensor, B::Tensor),
    pub temporal: (B::Tensor, B::Tensor),
    pub identity: Option<(B::Tensor, B::Tensor)>,
}

/// One Region Codebook Attention (`rca.{face,hand}.{site}`).
#[derive(Clone, Debug)]
pub struct RegionCodebookAttention<B: Backend> {
    /// S (n, C), orthonormalised × √C
    pub spatial_bank: B::Tensor,
    /// T (M+F, C), orthonormalised × √C
    pub temporal_bank: B::Tensor,
    /// GroupNorm (C,), eps 1e-6
    pub norm: GroupNorm<B>,
    pub spatial: CodebookAttention<B>,
    pub temporal: CodebookAttention<B>,
    pub identity: CodebookAttention<B>,
    /// (C, E)
    pub id_proj: Linear<B>,
    /// (C/4, C, 3, 3), padding 1
    pub mask_conv1: Conv2d<B>,
    /// (1, C/4, 1, 1)
    pub mask_conv2: Conv2d<B>,
    /// (C, C), zero-init when fresh
    pub to_out: Linear<B>,
    pub cfg: RcaSiteConfig,
}

impl<B: Backend> RegionCodebookAttention<B> {
    /// `vb` at `rca.{face,hand}.{site}`.
    pub fn load(vb: &VarBuilder<B>, cfg: &RcaSiteConfig) -> Result<Self> {
        let c = cfg.channels;
        let heads = cfg.heads();
        if c % 4 != 0 || c % heads != 0 {
            bail!(
                "RCA `{}`: {c} channels must be divisible by 4 and by its {heads} heads",
                vb.prefix()
            );
        }
        let be = vb.backend();
        let bank = |name: &str, rows: usize| -> Result<B::Tensor> {
            let raw = vb.get_f32(name, &[rows, c])?;
            let q =
                orthonormalize_rows(&raw, rows, c, &format!("RCA bank `{}`", vb.full_name(name)))
                    .or_else(|e| {
                    // An all-zero placeholder (missing or mis-shaped tensor, reported by
                    // `finish`) must not hide the real problem behind a Gram-Schmidt error.
                    if raw.iter().all(|&v| v == 0.0) {
                        Ok(raw.clone())
                    } else {
                        Err(e)
                    }
                })?;
            be.from_f32(&[rows, c], &q)
        };
        Ok(RegionCodebookAttention {
            spatial_bank: bank("spatial_bank", cfg.codebook_size)?,
            temporal_bank: bank("temporal_bank", cfg.num_frames)?,
            norm: GroupNorm::load(&vb.pp("norm"), cfg.norm_num_groups, c, RCA_NORM_EPS)?,
            spatial: CodebookAttention::load(&vb.pp("spatial"), c, heads)?,
            temporal: CodebookAttention::load(&vb.pp("temporal"), c, heads)?,
            identity: CodebookAttention::load(&vb.pp("identity"), c, heads)?,
            id_proj: Linear::load(&vb.pp("id_proj"), cfg.identity_dim, c, true)?,
            mask_conv1: Conv2d::load_same(&vb.pp("mask").pp("conv1"), c, c / 4, 3, true)?,
            mask_conv2: Conv2d::load_same(&vb.pp("mask").pp("conv2"), c / 4, 1, 1, true)?,
            to_out: Linear::load(&vb.pp("to_out"), c, c, true)?,
            cfg: cfg.clone(),
        })
    }

    /// The freshly-initialised rule of spec section 4: `to_out` weight and bias zero, so
    /// the module is the identity (F_out = F_in exactly).
    pub fn with_fresh_to_out(mut self, be: &B) -> Result<Self> {
        let c = self.cfg.channels;
        self.to_out = Linear {
            weight: be.zeros(&[c, c])?,
            bias: Some(be.zeros(&[c])?),
        };
        Ok(self)
    }

    /// The step-independent keys and values ([`RcaKv`]) for identity tokens `id` (T_id, E) of
    /// this region (None: no identity path).
    pub fn project_kv(&self, be: &B, id: Option<&B::Tensor>) -> Result<RcaKv<B>> {
        let identity = match id {
            Some(tokens) => {
                let ts = tokens.shape();
                if ts.len() != 2 || ts[1] != self.cfg.identity_dim {
                    bail!(
                        "RCA: identity tokens have shape {ts:?}, expected (T_id, {})",
                        self.cfg.identity_dim
                    );
                }
                let kv = self.id_proj.forward(be, tokens)?;
                Some(self.identity.project_kv(be, &kv)?)
            }
            None => None,
        };
        Ok(RcaKv {
            spatial: self.spatial.project_kv(be, &self.spatial_bank)?,
            temporal: self.temporal.project_kv(be, &self.temporal_bank)?,
            identity,
        })
    }

    /// f_in (N, C, h, w), N = batch·num_frames frame-major (num_frames = M+F) →
    /// F_out (N, C, h, w). `id` = (identity tokens (T_id, E) of this region, the rows of
    /// f_in that receive them, e.g. `0..M+F` for the cond half); other rows get F_id = 0.
    pub fn forward(
        &self,
        be: &B,
        f_in: &B::Tensor,
        num_frames: usize,
        id: Option<(&B::Tensor, Range<usize>)>,
    ) -> Result<B::Tensor> {
        let kv = self.project_kv(be, id.as_ref().map(|(t, _)| *t))?;
        self.forward_kv(be, f_in, num_frames, &kv, id.map(|(_, r)| r))
    }

    /// [`Self::forward`] with the step-independent keys and values projected once
    /// ([`Self::project_kv`]); `id_rows` = the rows that receive the identity descriptor (needs
    /// `kv.identity`), None for none.
    pub fn forward_kv(
        &self,
        be: &B,
        f_in: &B::Tensor,
        num_frames: usize,
        kv: &RcaKv<B>,
        id_rows: Option<Range<usize>>,
    ) -> Result<B::Tensor> {
        let s = f_in.shape();
        let c = self.cfg.channels;
        if s.len() != 4 || s[1] != c {
            bail!("RCA: input has shape {s:?}, expected (N, {c}, h, w)");
        }
        if num_frames != self.cfg.num_frames || s[0] % num_frames != 0 {
            bail!(
                "RCA: {} rows with {num_frames} frames per batch item; the temporal bank has {} frame slots (M+F) and rows must be batch·(M+F)",
                s[0],
                self.cfg.num_frames
            );
        }
        let (n, h, w) = (s[0], s[2], s[3]);
        let hw = h * w;

        // X = GroupNorm(F_in) as (N, h·w, C), written in token layout by the norm itself
        let norm = &self.norm;
        let x = be.group_norm_tokens(
            f_in,
            1,
            norm.groups,
            Some(&norm.weight),
            Some(&norm.bias),
            norm.eps,
        )?;
        let x = be.reshape(&x, &[n, hw, c])?;

        // motion codebook
        let (sk, sv) = &kv.spatial;
        let a_s = self.spatial.forward_projected(be, &x, sk, sv)?;
        let q_t = be.rca_temporal_query(&x, &a_s, &self.temporal_bank)?;
        let (tk, tv) = &kv.temporal;
        let a_t = self.temporal.forward_projected(be, &q_t, tk, tv)?;

        // identity descriptor on the rows that have identity tokens
        let mut f_id = None;
        if let Some(rows) = id_rows {
            let Some((ik, iv)) = &kv.identity else {
                bail!("RCA: identity rows {rows:?} given without identity keys/values");
            };
            if rows.start > rows.end || rows.end > n {
                bail!("RCA: identity rows {rows:?} are outside the {n} input rows");
            }
            if !rows.is_empty() {
                let x_id = be.narrow(&x, 0, rows.start, rows.end - rows.start)?;
                f_id = Some((
                    self.identity.forward_projected(be, &x_id, ik, iv)?,
                    rows.start,
                ));
            }
        }
        // A_s + A_t (+ F_id on the identity rows)
        let sum = be.rca_motion_sum(&a_s, &a_t, f_id.as_ref().map(|(f, r)| (f, *r)))?;

        // merge: F_in + M_r ⊙ to_out(...), M_r = sigmoid(conv2(SiLU(conv1(F_in))))
        let out = self.to_out.forward(be, &sum)?;
        let hidden = self.mask_conv1.forward(be, f_in)?;
        be.rca_merge(
            f_in,
            &out,
            &hidden,
            &self.mask_conv2.weight,
            self.mask_conv2.bias.as_ref(),
        )
    }
}

/// Identity tokens of one video, per region (spec section 6), before each site's `id_proj`.
#[derive(Clone, Debug)]
pub struct IdentityTokens<B: Backend> {
    /// (g², E)
    pub face: B::Tensor,
    /// (2·g², E): both hand crops' tokens, concatenated
    pub hand: B::Tensor,
}

/// The face and hand RCAs of one site (`rca.{face,hand}.{site}`).
#[derive(Clone, Debug)]
pub struct RcaSite<B: Backend> {
    /// the up block index, e.g. 1
    pub site: usize,
    pub face: RegionCodebookAttention<B>,
    pub hand: RegionCodebookAttention<B>,
}

impl<B: Backend> RcaSite<B> {
    /// `vb` at `rca`; loads `face.{site}` and `hand.{site}`.
    pub fn load(vb: &VarBuilder<B>, site: usize, cfg: &RcaSiteConfig) -> Result<Self> {
        Ok(RcaSite {
            site,
            face: RegionCodebookAttention::load(&vb.pp("face").pp(site), cfg)?,
            hand: RegionCodebookAttention::load(&vb.pp("hand").pp(site), cfg)?,
        })
    }

    /// Both regions freshly initialised (`to_out` = 0).
    pub fn with_fresh_to_out(self, be: &B) -> Result<Self> {
        Ok(RcaSite {
            site: self.site,
            face: self.face.with_fresh_to_out(be)?,
            hand: self.hand.with_fresh_to_out(be)?,
        })
    }

    /// Face, then hands on the face's output ([choice], module docs). `id` = (this video's
    /// identity tokens, the rows that receive them (the cond half)); `None` for no identity.
    pub fn forward(
        &self,
        be: &B,
        f_in: &B::Tensor,
        num_frames: usize,
        id: Option<(&IdentityTokens<B>, Range<usize>)>,
    ) -> Result<B::Tensor> {
        let kv = self.project_kv(be, id.as_ref().map(|(t, _)| *t))?;
        self.forward_kv(be, f_in, num_frames, &kv, id.map(|(_, r)| r))
    }

    /// Both regions' step-independent keys and values ([`RegionCodebookAttention::project_kv`]).
    pub fn project_kv(&self, be: &B, id: Option<&IdentityTokens<B>>) -> Result<RcaSiteKv<B>> {
        Ok(RcaSiteKv {
            face: self.face.project_kv(be, id.map(|t| &t.face))?,
            hand: self.hand.project_kv(be, id.map(|t| &t.hand))?,
        })
    }

    /// [`Self::forward`] with the keys and values projected once ([`Self::project_kv`]).
    pub fn forward_kv(
        &self,
        be: &B,
        f_in: &B::Tensor,
        num_frames: usize,
        kv: &RcaSiteKv<B>,
        id_rows: Option<Range<usize>>,
    ) -> Result<B::Tensor> {
        let h = self
            .face
            .forward_kv(be, f_in, num_frames, &kv.face, id_rows.clone())?;
        self.hand.forward_kv(be, &h, num_frames, &kv.hand, id_rows)
    }
}

/// One site's [`RcaKv`], per region.
#[derive(Clone, Debug)]
pub struct RcaSiteKv<B: Backend> {
    pub face: RcaKv<B>,
    pub hand: RcaKv<B>,
}
