//! The graphs of one CyberHost run, traced from the pipeline's own code
//! (`Components::denoise_step` and the models), with shape-only weights.
//!
//! Graphs (each is cut where the CPU pipeline goes through the host):
//! - `vae_encode`: the reference image → `z_ref` (× scaling factor);
//! - `reference`: pose encoder on the skeleton and movement maps, ReferenceNet at t = 0
//!   (dead ops after the last `norm1` that is read are pruned, as on the GPU path), the
//!   reference K/V projections of every denoiser `attn1`, identity tokens, clarity embedding,
//!   the RCA banks' and identity tokens' K/V projections;
//! - `audio`: wav2vec2 on one clip's speech (F / fps seconds) and `audio_proj` on the F
//!   frames' windows (the windows are built on the host: an input);
//! - `clip`: the per-clip constants of the step: every cross-attention's K/V of the clip's
//!   audio context and the time embedding of every step of the schedule;
//! - `denoise_step`: one CFG step, `x = concat(motion, z)`, ONE `UNetMotionModel::forward`
//!   on the batch of 2 with every hook (p_move, reference K/V, RCA), then the fused
//!   guidance + eta = 0 DDIM update (`cfg_ddim_step`): exactly the step the CUDA backend
//!   captures; the timestep, its embedding, coefficients, per-clip and one-off results are
//!   inputs;
//! - `vae_decode`: the F clean latents of one clip → frames.

use super::{Graph, TensorKind, TraceBackend, TraceTensor};
use crate::backends::{Backend, BackendExt};
use crate::error::UserError;
use crate::models::hooks::UNetHooks;
use crate::pipeline::checkpoint::{Components, WeightsSource};
use crate::pipeline::generate::{Geometry, Prepared, Request};
use crate::var_builder::VarBuilder;
use anyhow::{Context, Result};
use cyberhost_kernels::DType;
use std::cell::Cell;
use std::collections::HashMap;

/// wav2vec2's input rate.
const AUDIO_SAMPLE_RATE: f64 = 16_000.0;

/// Parameter count per component, in load order.
pub type ParamCounts = Vec<(String, u64)>;

/// Every graph of one run, and what it was traced for.
pub struct PipelineGraphs {
    /// `preset tiny`, `preset paper` or the weights directory.
    pub label: String,
    pub geometry: Geometry,
    /// Parameter count per component (in load order).
    pub params: ParamCounts,
    pub vae_encode: Graph,
    pub reference: Graph,
    pub audio: Graph,
    pub clip: Graph,
    pub step: Graph,
    pub vae_decode: Graph,
}

impl PipelineGraphs {
    /// The graphs in run order.
    pub fn all(&self) -> [&Graph; 6] {
        [
            &self.vae_encode,
            &self.reference,
            &self.audio,
            &self.clip,
            &self.step,
            &self.vae_decode,
        ]
    }
}

/// A `VarBuilder` over `component` that reads no tensor data: a preset's parameters are
/// requested from nothing (every request is zeros of the right shape, as `list_params`
/// does), a directory's are checked by name and shape only.
fn shape_builder(
    be: &TraceBackend,
    source: &WeightsSource,
    component: &str,
    raw: &serde_json::Value,
) -> Result<VarBuilder<TraceBackend>> {
    Ok(match source {
        WeightsSource::Preset { .. } => {
            VarBuilder::from_tensors_with_config(be.clone(), HashMap::new(), raw.clone())?
                .shapes_only()
        }
        WeightsSource::Dir(dir) => VarBuilder::open(be.clone(), dir.join(component))
            .map_err(|e| anyhow::Error::new(UserError::new(format!("{e:#}"))))?
            .shapes_only(),
    })
}

/// Load every component on `be` with shape-only weights (leaves of kind `Weight`).
/// A directory is validated as `WeightsSource::load` does (all problems in one error);
/// no tensor data is read or kept. Returns the components and the parameter count of each.
pub fn load_shapes_only(
    be: &TraceBackend,
    source: &WeightsSource,
) -> Result<(Components<TraceBackend>, ParamCounts)> {
    be.set_leaf_kind(TensorKind::Weight);
    let configs = source.configs()?;
    let mut problems = Vec::new();
    let mut params = Vec::new();
    let before = Cell::new(0);
    let components = Components::load_with(
        configs,
        |name, configs| {
            before.set(weight_elems(be));
            shape_builder(be, source, name, &configs.raw[name])
        },
        |name, vb| {
            if matches!(source, WeightsSource::Dir(_)) {
                if let Err(e) = vb.finish() {
                    problems.push(format!("{e}"));
                }
            }
            params.push((name.to_string(), weight_elems(be) - before.get()));
        },
    )?;
    if !problems.is_empty() {
        return Err(UserError::new(format!(
            "the checkpoint does not match its configs:\n{}\n(fix the tensors or the config.json that contradicts them)",
            problems.join("\n")
        ))
        .into());
    }
    Ok((components, params))
}

fn weight_elems(be: &TraceBackend) -> u64 {
    be.leaf_elems(TensorKind::Weight)
}

/// ReferenceNet hooks: add the pose-aligned reference feature, record every `norm1`.
struct ReferenceHooks {
    p_ref: TraceTensor,
    norm1: HashMap<String, TraceTensor>,
}

impl UNetHooks<TraceBackend> for ReferenceHooks {
    fn conv_in_residual(
        &mut self,
        _be: &TraceBackend,
        _num_frames: usize,
    ) -> Result<Option<TraceTensor>> {
        Ok(Some(self.p_ref.clone()))
    }
    fn on_norm1(&mut self, _be: &TraceBackend, name: &str, norm1: &TraceTensor) -> Result<()> {
        self.norm1.insert(name.to_string(), norm1.clone());
        Ok(())
    }
}

/// Trace every graph of a run from `source` at `size` (default: the checkpoint's), bf16
/// activations throughout.
pub fn trace_pipeline(
    source: &WeightsSource,
    size: Option<(usize, usize)>,
) -> Result<PipelineGraphs> {
    trace_pipeline_as(source, size, DType::Bf16)
}

/// [`trace_pipeline`] with the denoiser step's activations stored as `step_activations` (the
/// CUDA backend's `--activations`: it applies to the step only; the one-off graphs stay bf16).
pub fn trace_pipeline_as(
    source: &WeightsSource,
    size: Option<(usize, usize)>,
    step_activations: DType,
) -> Result<PipelineGraphs> {
    let be = TraceBackend::new();
    let (comps, params) = load_shapes_only(&be, source)?;
    let label = match source {
        WeightsSource::Preset { preset, .. } => format!("preset {}", preset.name()),
        WeightsSource::Dir(d) => d.display().to_string(),
    };
    let g = comps.geometry(&Request {
        size,
        ..Default::default()
    })?;
    let cfg = &comps.configs.cyberhost;
    let (f, m, h, w) = (g.frames, g.motion, g.latent_h, g.latent_w);
    let latent = comps.configs.denoising_unet.trunk.in_channels;
    be.set_leaf_kind(TensorKind::Input);

    // ---- vae_encode
    let image = be.zeros(&[1, 3, g.height, g.width])?;
    let z_ref = comps
        .vae
        .encode(&be, &image)
        .context("tracing VAE encode")?;
    let z_ref = be.scale(&z_ref, comps.vae.config.scaling_factor)?;
    let vae_encode = be.cut("vae_encode", &[&z_ref]);

    // ---- reference
    let map = |be: &TraceBackend| -> Result<TraceTensor> {
        be.affine(&be.zeros(&[1, 3, g.height, g.width])?, 0.5, 0.5)
    };
    let p_ref = comps.modules.pose_encoder.forward(&be, &map(&be)?)?;
    let p_move = comps.modules.pose_encoder.forward(&be, &map(&be)?)?;
    let ctx = &cfg.audio_proj;
    let zeros_ctx = be.zeros(&[1, ctx.num_tokens, ctx.context_dim])?;
    let mut rh = ReferenceHooks {
        p_ref,
        norm1: HashMap::new(),
    };
    comps
        .reference_unet
        .forward(&be, &z_ref, &[0.0], &zeros_ctx, &mut rh)
        .context("tracing the ReferenceNet")?;
    let mut ref_kv = HashMap::new();
    for block in comps.denoising_unet.transformer_blocks() {
        if let Some(tokens) = rh.norm1.get(&block.name) {
            ref_kv.insert(block.name.clone(), block.attn1.project_kv(&be, tokens)?);
        }
    }
    let s = cfg.identity_encoder.crop_size;
    let face = be.zeros(&[1, 3, s, s])?;
    let hands = be.concat(&[&be.zeros(&[1, 3, s, s])?, &be.zeros(&[1, 3, s, s])?], 0)?;
    let id = comps.modules.identity_tokens(&be, &face, &hands)?;
    let clarity_emb = comps
        .modules
        .clarity_embedding
        .forward(&be, &[cfg.pipeline.hand_clarity])?;
    let rca_kv = comps.rca_constants(&be, &id)?;
    let mut keep: Vec<&TraceTensor> = vec![&p_move, &clarity_emb, &id.face, &id.hand];
    let mut sites: Vec<&usize> = rca_kv.keys().collect();
    sites.sort();
    for site in sites {
        for r in [&rca_kv[site].face, &rca_kv[site].hand] {
            keep.extend([&r.spatial.0, &r.spatial.1, &r.temporal.0, &r.temporal.1]);
            if let Some((k, v)) = &r.identity {
                keep.extend([k, v]);
            }
        }
    }
    let mut names: Vec<&String> = ref_kv.keys().collect();
    names.sort();
    for n in names {
        let (k, v) = &ref_kv[n];
        keep.extend([k, v]);
    }
    let reference = be.cut("reference", &keep).pruned();

    // ---- audio (one clip: F frames of speech)
    let samples = ((f as f64 / g.fps) * AUDIO_SAMPLE_RATE).round() as usize;
    let speech = be.zeros(&[1, samples])?;
    let hidden = comps
        .audio_encoder
        .forward(&be, &speech)
        .context("tracing wav2vec2")?;
    let windows = be.zeros(&[f, ctx.input_dim()])?;
    let audio_tokens = comps.modules.audio_proj.forward(&be, &windows)?;
    let mut keep: Vec<&TraceTensor> = hidden.iter().collect();
    keep.push(&audio_tokens);
    let audio = be.cut("audio", &keep);

    let prepared = Prepared {
        geometry: g,
        z_ref: z_ref.clone(),
        p_move: p_move.clone(),
        clarity_emb: clarity_emb.clone(),
        ref_kv,
        id,
        rca_kv,
        audio_tokens,
        num_frames: f,
        reference_hand_clarity: 0.0,
    };

    // ---- clip (the audio context is gathered from the audio tokens on the host side of a cut)
    let context = be.zeros(&[2 * (m + f), ctx.num_tokens, ctx.context_dim])?;
    let consts = comps.context_constants(&be, context)?;
    let scheduler = comps.scheduler(g.steps)?;
    let embeddings = scheduler
        .timesteps()
        .iter()
        .map(|&t| comps.time_embedding(&be, &prepared, t))
        .collect::<Result<Vec<_>>>()?;
    let mut keep: Vec<&TraceTensor> = embeddings.iter().collect();
    let mut names: Vec<&String> = consts.context_kv.keys().collect();
    names.sort();
    for n in names {
        let (k, v) = &consts.context_kv[n];
        keep.extend([k, v]);
    }
    let clip = be.cut("clip", &keep);

    // ---- denoise_step
    let motion = be.zeros(&[1, latent, m, h, w])?;
    let z = be.zeros(&[1, latent, f, h, w])?;
    // the step inputs: timestep (1,), its time embedding (2, D), CFG + DDIM coefficients (8,)
    let t = be.zeros(&[1])?;
    let temb = be.zeros(&[2, comps.time_embed_dim()])?;
    let coeffs = be.zeros(&[crate::backends::composed::CFG_DDIM_COEFFS])?;
    let z_next = comps
        .denoise_step(&be, &prepared, &motion, &consts, &z, &t, &temb, &coeffs)
        .context("tracing one CFG step")?;
    be.set_activations(step_activations);
    let step = be.cut("denoise_step", &[&z_next]);
    be.set_activations(DType::Bf16);

    // ---- vae_decode (as `Components::decode_frames`, up to the host copy)
    let z0 = be.zeros(&[1, latent, f, h, w])?;
    let zf = be.permute(&z0, &[0, 2, 1, 3, 4])?;
    let zf = be.reshape(&zf, &[f, latent, h, w])?;
    let zf = be.scale(&zf, 1.0 / comps.vae.config.scaling_factor)?;
    let frames = comps.vae.decode(&be, &zf).context("tracing VAE decode")?;
    let vae_decode = be.cut("vae_decode", &[&frames]);

    Ok(PipelineGraphs {
        label,
        geometry: g,
        params,
        vae_encode,
        reference,
        audio,
        clip,
        step,
        vae_decode,
    })
}
