//! The sampler loop: one video from a reference image and speech (spec sections 1, 3, 6, 7).
//!
//! One-off work (VAE encode of the reference, pose maps, ReferenceNet, cached
//! reference K/V, identity tokens, audio tokens) happens once; then each clip of
//! F frames is denoised with its M motion frames in front, both CFG branches in
//! one batch of 2 (row 0 = cond, row 1 = uncond), and decoded.

use crate::backends::composed::CFG_DDIM_COEFFS;
use crate::backends::step_loop::StepLoop;
use crate::backends::{Backend, BackendExt, TensorLike};
use crate::error::UserError;
use crate::models::attention::{ExtraKv, ExtraKvSource};
use crate::models::cyberhost::audio_proj::audio_windows;
use crate::models::cyberhost::rca::{IdentityTokens, RcaSiteKv};
use crate::models::hooks::UNetHooks;
use crate::pipeline::audio::Speech;
use crate::pipeline::checkpoint::Components;
use crate::pipeline::conditions::{self, Conditions, PoseFile};
use crate::pipeline::image::{cover_crop, from_chw_signed, to_chw_signed};
use crate::sampler::ddim::DdimScheduler;
use anyhow::{Context, Result};
use cyberhost_weights::synthetic::{name_hash, normal_at};
use image::RgbImage;
use std::collections::HashMap;
use std::ops::Range;

/// What the user asks for (overrides of the checkpoint's `pipeline` defaults).
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub seed: u64,
    pub steps: Option<usize>,
    pub guidance: Option<f32>,
    /// (width, height)
    pub size: Option<(usize, usize)>,
    pub hand_clarity: Option<f32>,
    /// Keep every step's latents (for backend comparisons).
    pub trace: bool,
}

/// Progress events.
#[derive(Clone, Debug)]
pub enum Event {
    /// A one-off stage starts (`"reference"`, `"audio"`, ...).
    Stage(&'static str),
    /// Something the user should know once (e.g. defaults used).
    Note(String),
    /// Clip `index` of `count` starts.
    Clip {
        index: usize,
        count: usize,
        steps: usize,
    },
    /// Step `step` (1-based) of clip `clip` is done.
    Step {
        clip: usize,
        step: usize,
        steps: usize,
    },
}

impl Event {
    /// The event as one JSON object, `t` seconds into the run: the lines of
    /// `cyberhost generate --json` and the Server-Sent Events of `cyberhost serve`.
    pub fn to_json(&self, t: f64) -> serde_json::Value {
        use serde_json::json;
        match self {
            Event::Stage(s) => json!({"event": "stage", "stage": s, "t": t}),
            Event::Note(n) => json!({"event": "note", "message": n, "t": t}),
            Event::Clip { index, count, .. } => {
                json!({"event": "clip", "clip": index, "clips": count, "t": t})
            }
            Event::Step { clip, step, steps } => {
                json!({"event": "step", "clip": clip, "step": step, "steps": steps, "t": t})
            }
        }
    }
}

/// The error a run returns when its stop check ([`Components::generate_until`]) said stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the run was cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// The result.
pub struct Video {
    pub frames: Vec<RgbImage>,
    pub fps: f64,
    /// Hand clarity score of the reference (reported; the condition is the request's).
    pub reference_hand_clarity: f64,
    /// Per clip, per step: the clip's F latents (1, 4, F, h, w) after the step (when traced).
    pub trace: Vec<Vec<Vec<f32>>>,
}

/// What the steps of one clip read that is constant over them ([`Components::clip_constants`]).
pub struct ClipConstants<B: Backend> {
    /// (2·(M+F), K_a, D_ctx): cond rows, then zeros
    pub context: B::Tensor,
    /// Per transformer block with cross-attention: `attn2`'s K/V of `context`.
    pub context_kv: ProjectedKv<B>,
}

/// Resolved run geometry.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub width: usize,
    pub height: usize,
    pub latent_w: usize,
    pub latent_h: usize,
    pub frames: usize,
    pub motion: usize,
    pub steps: usize,
    pub guidance: f32,
    pub fps: f64,
}

impl<B: Backend> Components<B> {
    /// Check the request against the checkpoint and resolve sizes.
    pub fn geometry(&self, req: &Request) -> Result<Geometry> {
        let p = &self.configs.cyberhost.pipeline;
        let (width, height) = req.size.unwrap_or((p.width, p.height));
        let levels = self.configs.denoising_unet.trunk.block_out_channels.len();
        let vae_scale = self.vae.config.scale_factor();
        let multiple = vae_scale << levels.saturating_sub(1);
        if width == 0 || height == 0 || width % multiple != 0 || height % multiple != 0 {
            return Err(UserError::new(format!(
                "--size {width}x{height}: width and height must be positive multiples of {multiple} (VAE factor {vae_scale} × 2^(U-Net levels − 1))"
            ))
            .into());
        }
        let steps = req.steps.unwrap_or(p.num_inference_steps);
        if steps == 0 || steps > self.configs.scheduler.num_train_timesteps {
            return Err(UserError::new(format!(
                "--steps {steps}: use 1..={} DDIM steps",
                self.configs.scheduler.num_train_timesteps
            ))
            .into());
        }
        let guidance = req.guidance.unwrap_or(p.guidance_scale);
        if !(guidance >= 0.0) || !guidance.is_finite() {
            return Err(UserError::new(format!(
                "--guidance {guidance}: use a finite scale ≥ 0 (1 = no guidance)"
            ))
            .into());
        }
        if let Some(s) = req.hand_clarity {
            if !(0.0..=1.0).contains(&s) {
                return Err(
                    UserError::new(format!("--hand-clarity {s}: use a score in [0, 1]")).into(),
                );
            }
        }
        Ok(Geometry {
            width,
            height,
            latent_w: width / vae_scale,
            latent_h: height / vae_scale,
            frames: p.frames_per_clip,
            motion: p.motion_frames,
            steps,
            guidance,
            fps: p.fps as f64,
        })
    }
}

/// Frames of the video for `speech` at `fps`; a user error when the audio is too short.
pub fn video_frames(speech: &Speech, fps: f64) -> Result<usize> {
    let n = speech.frame_count(fps);
    if n == 0 {
        return Err(UserError::new(format!(
            "the audio lasts {:.3} s, shorter than half a frame at {} fps; give at least {:.3} s of speech",
            speech.seconds,
            fps,
            0.5 / fps
        ))
        .into());
    }
    Ok(n)
}

/// ReferenceNet hooks: add the pose-aligned reference feature, record every `norm1`.
struct ReferenceHooks<B: Backend> {
    p_ref: B::Tensor,
    norm1: HashMap<String, B::Tensor>,
}

impl<B: Backend> UNetHooks<B> for ReferenceHooks<B> {
    fn conv_in_residual(&mut self, _be: &B, _num_frames: usize) -> Result<Option<B::Tensor>> {
        Ok(Some(self.p_ref.clone()))
    }
    fn on_norm1(&mut self, _be: &B, name: &str, norm1: &B::Tensor) -> Result<()> {
        self.norm1.insert(name.to_string(), norm1.clone());
        Ok(())
    }
}

/// Only the clarity embedding, added to the time embedding (the sampler's per-clip table).
struct ClarityHooks<'a, B: Backend> {
    clarity_emb: &'a B::Tensor,
}

impl<B: Backend> UNetHooks<B> for ClarityHooks<'_, B> {
    fn time_embedding_residual(&mut self, _be: &B) -> Result<Option<B::Tensor>> {
        Ok(Some(self.clarity_emb.clone()))
    }
    fn records_norm1(&self, _name: &str) -> bool {
        false
    }
}

/// Keys and values projected once (per video or per clip) instead of every step.
pub type ProjectedKv<B> = HashMap<String, (<B as Backend>::Tensor, <B as Backend>::Tensor)>;

/// Denoising U-Net hooks: movement map, clarity embedding, reference K/V for
/// the cond rows, Region Codebook Attention at the up blocks. The `Option` fields are
/// step-independent values computed before the step loop; `None` computes them in the step.
pub struct DenoiseHooks<'a, B: Backend> {
    pub comps: &'a Components<B>,
    pub p_move: &'a B::Tensor,
    pub clarity_emb: &'a B::Tensor,
    /// Per transformer block: reference keys and values, projected once per video.
    pub ref_kv: &'a HashMap<String, (B::Tensor, B::Tensor)>,
    pub id: &'a IdentityTokens<B>,
    /// Rows of the folded batch (batch·frames) that are the cond branch.
    pub cond_rows: Range<usize>,
    /// When false the reference/identity paths are off (used by tests).
    pub reference: bool,
    /// Per RCA site (up block index): bank and identity K/V ([`Prepared::rca_kv`]).
    pub rca_kv: Option<&'a HashMap<usize, RcaSiteKv<B>>>,
    /// This step's finished time embedding (2, D) ([`Components::time_embeddings`]).
    pub time_emb: Option<&'a B::Tensor>,
    /// Per transformer block: `attn2`'s K/V of the clip's audio context ([`ClipConstants`]).
    pub context_kv: Option<&'a ProjectedKv<B>>,
}

impl<'a, B: Backend> UNetHooks<B> for DenoiseHooks<'a, B> {
    fn records_norm1(&self, _name: &str) -> bool {
        false
    }
    fn conv_in_residual(&mut self, _be: &B, _num_frames: usize) -> Result<Option<B::Tensor>> {
        Ok(Some(self.p_move.clone()))
    }
    fn time_embedding_residual(&mut self, _be: &B) -> Result<Option<B::Tensor>> {
        Ok(Some(self.clarity_emb.clone()))
    }
    fn time_embedding(&mut self, _be: &B) -> Result<Option<B::Tensor>> {
        Ok(self.time_emb.cloned())
    }
    fn attn2_kv(&self, name: &str) -> Option<(&B::Tensor, &B::Tensor)> {
        self.context_kv?.get(name).map(|(k, v)| (k, v))
    }
    fn after_up_block(
        &mut self,
        be: &B,
        index: usize,
        h: B::Tensor,
        num_frames: usize,
    ) -> Result<B::Tensor> {
        let Some(site) = self.comps.modules.rca_site(index) else {
            return Ok(h);
        };
        let rows = self.reference.then(|| self.cond_rows.clone());
        match self.rca_kv.and_then(|m| m.get(&index)) {
            Some(kv) => site.forward_kv(be, &h, num_frames, kv, rows),
            None => site.forward(be, &h, num_frames, rows.map(|r| (self.id, r))),
        }
    }
    fn attn1_extra_kv(&self, name: &str) -> Option<ExtraKv<'_, B>> {
        if !self.reference {
            return None;
        }
        self.ref_kv.get(name).map(|(k, v)| ExtraKv {
            source: ExtraKvSource::Projected { k, v },
            rows: self.cond_rows.clone(),
        })
    }
}

/// Everything computed once per video.
pub struct Prepared<B: Backend> {
    pub geometry: Geometry,
    /// (1, 4, h, w), already × scaling_factor
    pub z_ref: B::Tensor,
    pub p_move: B::Tensor,
    pub clarity_emb: B::Tensor,
    pub ref_kv: HashMap<String, (B::Tensor, B::Tensor)>,
    pub id: IdentityTokens<B>,
    /// Per RCA site (up block index): both banks' and the identity tokens' K/V, projected once.
    pub rca_kv: HashMap<usize, RcaSiteKv<B>>,
    /// (N, K_a, D_ctx)
    pub audio_tokens: B::Tensor,
    /// N = round(seconds · fps)
    pub num_frames: usize,
    pub reference_hand_clarity: f64,
}

fn image_tensor<B: Backend>(be: &B, img: &RgbImage) -> Result<B::Tensor> {
    let (w, h) = img.dimensions();
    be.from_f32(&[1, 3, h as usize, w as usize], &to_chw_signed(img))
}

/// Condition maps are encoded in [0, 1].
fn map_tensor<B: Backend>(be: &B, img: &RgbImage) -> Result<B::Tensor> {
    let t = image_tensor(be, img)?;
    be.affine(&t, 0.5, 0.5)
}

/// The inputs of one clip's denoising ([`Components::run_clip`]).
struct ClipJob<'a, B: Backend> {
    p: &'a Prepared<B>,
    scheduler: &'a DdimScheduler,
    /// (1, 4, M, h, w)
    motion: &'a B::Tensor,
    /// (1, 4, F, h, w)
    noise: B::Tensor,
    clip: usize,
}

impl<B: Backend> Components<B> {
    /// The one-off parts of a run.
    pub fn prepare(
        &self,
        be: &B,
        reference: &RgbImage,
        speech: &Speech,
        pose: &PoseFile,
        req: &Request,
        on: &mut dyn FnMut(Event),
    ) -> Result<Prepared<B>> {
        let g = self.geometry(req)?;
        let cfg = &self.configs.cyberhost;
        let (w, h) = (g.width, g.height);

        on(Event::Stage("reference"));
        let (crop, tf) = cover_crop(reference, w as u32, h as u32);
        let conds = Conditions::resolve(pose, &tf, w, h);
        if !conds.defaulted.is_empty() {
            on(Event::Note(format!(
                "no {} given (--pose): using the spec's defaults relative to the frame",
                conds.defaulted.join(", ")
            )));
        }
        let scaling = self.vae.config.scaling_factor;
        let z_ref = self.vae.encode(be, &image_tensor(be, &crop)?)?;
        let z_ref = be.scale(&z_ref, scaling)?;

        let skeleton = conditions::render_skeleton(&conds.keypoints, w, h);
        let movement = conditions::render_box(&conds.movement, w, h);
        let p_ref = self
            .modules
            .pose_encoder
            .forward(be, &map_tensor(be, &skeleton)?)?;
        let p_move = self
            .modules
            .pose_encoder
            .forward(be, &map_tensor(be, &movement)?)?;

        // ReferenceNet at t = 0 with zero context; keep every norm1 output.
        let ctx = &cfg.audio_proj;
        let zeros_ctx = be.zeros(&[1, ctx.num_tokens, ctx.context_dim])?;
        let mut rh = ReferenceHooks::<B> {
            p_ref,
            norm1: HashMap::new(),
        };
        self.reference_unet
            .forward(be, &z_ref, &[0.0], &zeros_ctx, &mut rh)?;
        let mut ref_kv = HashMap::new();
        for block in self.denoising_unet.transformer_blocks() {
            if let Some(tokens) = rh.norm1.get(&block.name) {
                ref_kv.insert(block.name.clone(), block.attn1.project_kv(be, tokens)?);
            }
        }

        // Identity tokens from the face and hand crops of the reference frame.
        let crop_size = cfg.identity_encoder.crop_size as u32;
        let face = conditions::square_crop(&crop, &conds.face, crop_size);
        let hands = conds
            .hands
            .map(|b| conditions::square_crop(&crop, &b, crop_size));
        let hand_crops = be.concat(
            &[&image_tensor(be, &hands[0])?, &image_tensor(be, &hands[1])?],
            0,
        )?;
        let id = self
            .modules
            .identity_tokens(be, &image_tensor(be, &face)?, &hand_crops)?;
        let reference_hand_clarity = conds
            .hands
            .iter()
            .map(|b| conditions::hand_clarity(&conditions::square_crop(&crop, b, 128)))
            .sum::<f64>()
            / 2.0;
        let s = req.hand_clarity.unwrap_or(cfg.pipeline.hand_clarity);
        let clarity_emb = self.modules.clarity_embedding.forward(be, &[s])?;
        let rca_kv = self.rca_constants(be, &id)?;

        on(Event::Stage("audio"));
        let num_frames = video_frames(speech, g.fps)?;
        let input = be.from_f32(&[1, speech.samples.len()], &speech.normalized())?;
        let hidden = self
            .audio_encoder
            .forward(be, &input)
            .context("wav2vec2 on the input speech")?;
        let (t_a, d_a) = (hidden[0].shape()[1], hidden[0].shape()[2]);
        let mut stacked = Vec::with_capacity(hidden.len() * t_a * d_a);
        for hs in &hidden {
            stacked.extend(be.to_f32(hs)?);
        }
        let windows = audio_windows(&stacked, [hidden.len(), t_a, d_a], num_frames, ctx.window)?;
        let windows = be.from_f32(&[num_frames, windows.len() / num_frames], &windows)?;
        let audio_tokens = self.modules.audio_proj.forward(be, &windows)?;

        Ok(Prepared {
            geometry: g,
            z_ref,
            p_move,
            clarity_emb,
            ref_kv,
            id,
            rca_kv,
            audio_tokens,
            num_frames,
            reference_hand_clarity,
        })
    }

    /// Every RCA site's step-independent keys and values for this video's identity tokens.
    pub fn rca_constants(
        &self,
        be: &B,
        id: &IdentityTokens<B>,
    ) -> Result<HashMap<usize, RcaSiteKv<B>>> {
        self.modules
            .rca
            .iter()
            .map(|site| Ok((site.site, site.project_kv(be, Some(id))?)))
            .collect()
    }

    /// Audio tokens of every slot of clip `clip` (M motion slots, then F new frames),
    /// cond rows then zeros for the uncond rows: (2·(M+F), K_a, D_ctx).
    pub fn clip_context(&self, be: &B, p: &Prepared<B>, clip: usize) -> Result<B::Tensor> {
        let (f, m, n) = (
            p.geometry.frames as i64,
            p.geometry.motion as i64,
            p.num_frames as i64,
        );
        let slots: Vec<usize> = (0..m + f)
            .map(|s| (clip as i64 * f - m + s).clamp(0, n - 1) as usize)
            .collect();
        let cond = be.index_select(&p.audio_tokens, 0, &slots)?;
        let uncond = be.zeros(cond.shape())?;
        be.concat(&[&cond, &uncond], 0)
    }

    /// What the steps of clip `clip` read that does not change between them: the audio
    /// context and every cross-attention's K/V of it.
    pub fn clip_constants(&self, be: &B, p: &Prepared<B>, clip: usize) -> Result<ClipConstants<B>> {
        let context = self.clip_context(be, p, clip)?;
        self.context_constants(be, context)
    }

    /// [`ClipConstants`] of a given audio context (2·(M+F), K_a, D_ctx).
    pub fn context_constants(&self, be: &B, context: B::Tensor) -> Result<ClipConstants<B>> {
        let mut context_kv = HashMap::new();
        for block in self.denoising_unet.trunk.spatial_transformer_blocks() {
            if let Some(attn2) = &block.attn2 {
                context_kv.insert(block.name.clone(), attn2.project_kv(be, &context)?);
            }
        }
        Ok(ClipConstants {
            context,
            context_kv,
        })
    }

    /// The finished time embedding (2, D) (clarity embedding added) of every timestep of
    /// `scheduler`, as host values: the per-step input of [`Self::denoise_step`]. Computed once
    /// per clip with exactly the ops the step would run, so the step reads the same values.
    pub fn time_embeddings(
        &self,
        be: &B,
        p: &Prepared<B>,
        scheduler: &DdimScheduler,
    ) -> Result<Vec<Vec<f32>>> {
        scheduler
            .timesteps()
            .iter()
            .map(|&t| be.to_f32(&self.time_embedding(be, p, t)?))
            .collect()
    }

    /// The finished time embedding (2, D) of timestep `t` on the device: the ops
    /// `UNetTrunk::forward_t` runs on a (1,) timestep for the CFG batch of 2.
    pub fn time_embedding(&self, be: &B, p: &Prepared<B>, t: usize) -> Result<B::Tensor> {
        let mut hooks = ClarityHooks {
            clarity_emb: &p.clarity_emb,
        };
        let t = be.from_f32_full(&[1], &[t as f32])?;
        let t = be.index_select(&t, 0, &[0, 0])?;
        self.denoising_unet.trunk.time_embed(be, &t, &mut hooks)
    }

    /// The width D of the time embedding.
    pub fn time_embed_dim(&self) -> usize {
        self.denoising_unet
            .trunk
            .time_embedding
            .linear_2
            .weight
            .shape()[0]
    }

    /// Both CFG branches of the denoiser: x (1, 4, M+F, h, w) at timestep `t` (1,) on the
    /// device (or its finished embedding `time_emb` (2, D)) → model output (2, 4, M+F, h, w),
    /// row 0 cond, row 1 uncond.
    #[allow(clippy::too_many_arguments)]
    pub fn denoise_both(
        &self,
        be: &B,
        p: &Prepared<B>,
        x: &B::Tensor,
        t: &B::Tensor,
        time_emb: Option<&B::Tensor>,
        clip: &ClipConstants<B>,
        reference: bool,
    ) -> Result<B::Tensor> {
        let g = &p.geometry;
        let slots = g.motion + g.frames;
        let x2 = be.concat(&[x, x], 0)?;
        let mut hooks = DenoiseHooks {
            comps: self,
            p_move: &p.p_move,
            clarity_emb: &p.clarity_emb,
            ref_kv: &p.ref_kv,
            id: &p.id,
            cond_rows: 0..slots,
            reference,
            rca_kv: Some(&p.rca_kv),
            time_emb,
            context_kv: Some(&clip.context_kv),
        };
        self.denoising_unet
            .forward_t(be, &x2, t, &clip.context, &mut hooks)
    }

    /// One sampler step, the body [`Backend::run_steps`] replays: latents z (1, 4, F, h, w) after
    /// the motion latents (1, 4, M, h, w), both CFG branches of the denoiser at timestep `t`
    /// (1,) with its finished embedding `time_emb` (2, D) (f32 host values:
    /// [`Self::time_embeddings`]), then guidance + DDIM with `coeffs` (8,)
    /// (`DdimStepCoeffs::device_coeffs`) → new z. Everything constant over the clip's steps
    /// comes in `p` and `clip`, computed once.
    #[allow(clippy::too_many_arguments)]
    pub fn denoise_step(
        &self,
        be: &B,
        p: &Prepared<B>,
        motion: &B::Tensor,
        clip: &ClipConstants<B>,
        z: &B::Tensor,
        t: &B::Tensor,
        time_emb: &B::Tensor,
        coeffs: &B::Tensor,
    ) -> Result<B::Tensor> {
        let x = be.to_activation(&be.concat(&[motion, z], 2)?)?;
        let time_emb = be.to_activation(time_emb)?;
        let out = self.denoise_both(be, p, &x, t, Some(&time_emb), clip, true)?;
        be.cfg_ddim_step(&out, z, p.geometry.motion, coeffs)
    }

    /// One CFG denoiser evaluation: x (1, 4, M+F, h, w) → guided eps for the F new frames.
    pub fn guided_eps(
        &self,
        be: &B,
        p: &Prepared<B>,
        x: &B::Tensor,
        t: usize,
        clip: &ClipConstants<B>,
        reference: bool,
    ) -> Result<B::Tensor> {
        let g = &p.geometry;
        let tt = be.from_f32_full(&[1], &[t as f32])?;
        let eps = self.denoise_both(be, p, x, &tt, None, clip, reference)?;
        let eps = be.narrow(&eps, 2, g.motion, g.frames)?;
        let cond = be.narrow(&eps, 0, 0, 1)?;
        let uncond = be.narrow(&eps, 0, 1, 1)?;
        let diff = be.sub(&cond, &uncond)?;
        be.add(&uncond, &be.scale(&diff, g.guidance)?)
    }

    /// Seeded initial noise of clip `clip`: (1, 4, F, h, w), the same on every backend.
    pub fn clip_noise(&self, be: &B, p: &Prepared<B>, seed: u64, clip: usize) -> Result<B::Tensor> {
        let g = &p.geometry;
        let shape = [1, 4, g.frames, g.latent_h, g.latent_w];
        let n: usize = shape.iter().product();
        let stream = name_hash("noise") ^ (clip as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let data: Vec<f32> = (0..n as u64).map(|i| normal_at(seed, stream, i)).collect();
        // The latents stay f32 through the whole loop (bf16 would round them every step).
        be.from_f32_full(&shape, &data)
    }

    /// Decode latents (1, 4, F, h, w) to F RGB frames.
    pub fn decode_frames(&self, be: &B, z: &B::Tensor) -> Result<Vec<RgbImage>> {
        let s = z.shape().to_vec();
        let (f, h, w) = (s[2], s[3], s[4]);
        let z = be.permute(z, &[0, 2, 1, 3, 4])?;
        let z = be.reshape(&z, &[f, s[1], h, w])?;
        let z = be.scale(&z, 1.0 / self.vae.config.scaling_factor)?;
        let img = self.vae.decode(be, &z)?;
        let (ih, iw) = (img.shape()[2], img.shape()[3]);
        let data = be.to_f32(&img)?;
        Ok((0..f)
            .map(|i| from_chw_signed(&data[i * 3 * ih * iw..(i + 1) * 3 * ih * iw], iw, ih))
            .collect())
    }

    /// Denoise one clip from `noise` (1, 4, F, h, w) with `motion` (1, 4, M, h, w) in
    /// front; returns the clean latents of the F new frames. Every step's latents are
    /// appended to `trace` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn run_clip(
        &self,
        be: &B,
        p: &Prepared<B>,
        scheduler: &DdimScheduler,
        motion: &B::Tensor,
        noise: B::Tensor,
        clip: usize,
        trace: Option<&mut Vec<Vec<f32>>>,
        on: &mut dyn FnMut(Event),
    ) -> Result<B::Tensor> {
        let job = ClipJob {
            p,
            scheduler,
            motion,
            noise,
            clip,
        };
        self.run_clip_until(be, job, trace, on, &|| false)
    }

    /// [`Self::run_clip`] of `job`, asking `stop` after every step: `true` ends the run with
    /// [`Cancelled`] (cooperative cancellation; the step in flight finishes first).
    fn run_clip_until(
        &self,
        be: &B,
        job: ClipJob<'_, B>,
        mut trace: Option<&mut Vec<Vec<f32>>>,
        on: &mut dyn FnMut(Event),
        stop: &dyn Fn() -> bool,
    ) -> Result<B::Tensor> {
        let ClipJob {
            p,
            scheduler,
            motion,
            noise,
            clip,
        } = job;
        let timesteps = scheduler.timesteps().to_vec();
        let g = p.geometry;
        // Once per clip: the audio context's cross-attention K/V and the time embedding of
        // every step of the schedule.
        let consts = self.clip_constants(be, p, clip)?;
        let time_emb = self.time_embeddings(be, p, scheduler)?;
        // Per step: the timestep, the CFG + DDIM coefficients and the step's time embedding, as
        // device inputs, so one captured step serves every step (`Backend::run_steps`).
        let mut inputs = |i: usize| -> Result<Vec<Vec<f32>>> {
            let t = timesteps[i];
            let c = scheduler.step_coeffs(t, 0.0)?.device_coeffs(g.guidance)?;
            Ok(vec![vec![t as f32], c.to_vec(), time_emb[i].clone()])
        };
        let mut body = |be: &B, z: &B::Tensor, ins: &[B::Tensor]| -> Result<B::Tensor> {
            self.denoise_step(be, p, motion, &consts, z, &ins[0], &ins[2], &ins[1])
        };
        let steps = timesteps.len();
        let mut after = |i: usize, z: &B::Tensor| -> Result<()> {
            if let Some(tr) = trace.as_deref_mut() {
                tr.push(be.to_f32(z)?);
            }
            on(Event::Step {
                clip,
                step: i + 1,
                steps,
            });
            if stop() {
                return Err(Cancelled.into());
            }
            Ok(())
        };
        be.run_steps(
            noise,
            StepLoop {
                steps,
                input_shapes: vec![
                    vec![1],
                    vec![CFG_DDIM_COEFFS],
                    vec![2, self.time_embed_dim()],
                ],
                inputs: &mut inputs,
                body: &mut body,
                after: &mut after,
            },
        )
    }

    /// The scheduler with `steps` timesteps set.
    pub fn scheduler(&self, steps: usize) -> Result<DdimScheduler> {
        let mut s = DdimScheduler::new(self.configs.scheduler.clone())?;
        s.set_timesteps(steps)?;
        Ok(s)
    }

    /// Clip 0's motion latents: `z_ref` repeated M times, (1, 4, M, h, w).
    pub fn initial_motion(&self, be: &B, p: &Prepared<B>) -> Result<B::Tensor> {
        let g = &p.geometry;
        let z_ref5 = be.reshape(&p.z_ref, &[1, 4, 1, g.latent_h, g.latent_w])?;
        be.index_select(&z_ref5, 2, &vec![0; g.motion])
    }

    /// The next clip's motion latents: the last M of concat(motion, z0).
    pub fn next_motion(
        &self,
        be: &B,
        p: &Prepared<B>,
        motion: &B::Tensor,
        z0: &B::Tensor,
    ) -> Result<B::Tensor> {
        let all = be.concat(&[motion, z0], 2)?;
        be.narrow(&all, 2, p.geometry.frames, p.geometry.motion)
    }

    /// The whole video.
    pub fn generate(
        &self,
        be: &B,
        reference: &RgbImage,
        speech: &Speech,
        pose: &PoseFile,
        req: &Request,
        on: &mut dyn FnMut(Event),
    ) -> Result<Video> {
        self.generate_until(be, reference, speech, pose, req, on, &|| false)
    }

    /// [`Self::generate`], asking `stop` after every sampler step and before every clip:
    /// `true` ends the run with [`Cancelled`].
    #[allow(clippy::too_many_arguments)]
    pub fn generate_until(
        &self,
        be: &B,
        reference: &RgbImage,
        speech: &Speech,
        pose: &PoseFile,
        req: &Request,
        on: &mut dyn FnMut(Event),
        stop: &dyn Fn() -> bool,
    ) -> Result<Video> {
        let p = self.prepare(be, reference, speech, pose, req, on)?;
        let g = p.geometry;
        let clips = p.num_frames.div_ceil(g.frames);
        let scheduler = self.scheduler(g.steps)?;
        let mut motion = self.initial_motion(be, &p)?;
        let mut frames = Vec::with_capacity(clips * g.frames);
        let mut trace = Vec::new();
        for clip in 0..clips {
            if stop() {
                return Err(Cancelled.into());
            }
            on(Event::Clip {
                index: clip,
                count: clips,
                steps: scheduler.timesteps().len(),
            });
            let noise = self.clip_noise(be, &p, req.seed, clip)?;
            let mut clip_trace = Vec::new();
            let job = ClipJob {
                p: &p,
                scheduler: &scheduler,
                motion: &motion,
                noise,
                clip,
            };
            let z0 =
                self.run_clip_until(be, job, req.trace.then_some(&mut clip_trace), on, stop)?;
            trace.push(clip_trace);
            frames.extend(self.decode_frames(be, &z0)?);
            motion = self.next_motion(be, &p, &motion, &z0)?;
        }
        frames.truncate(p.num_frames);
        Ok(Video {
            frames,
            fps: g.fps,
            reference_hand_clarity: p.reference_hand_clarity,
            trace,
        })
    }
}
