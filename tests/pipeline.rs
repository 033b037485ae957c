//! The CyberHost pipeline on the built-in `tiny` model (CPU): clip continuation,
//! the unconditional branch, freshly initialised RCA, determinism.

mod common;

use cyberhost_engine::backends::cpu::{CpuBackend, CpuTensor};
use cyberhost_engine::backends::{Backend, BackendExt};
use cyberhost_engine::models::hooks::UNetHooks;
use cyberhost_engine::pipeline::audio::Speech;
use cyberhost_engine::pipeline::checkpoint::{Components, WeightsSource};
use cyberhost_engine::pipeline::conditions::PoseFile;
use cyberhost_engine::pipeline::generate::{DenoiseHooks, Prepared, Request};
use cyberhost_engine::pipeline::presets::Preset;
use image::RgbImage;

fn setup() -> (CpuBackend, Components<CpuBackend>, RgbImage, Speech) {
    let be = CpuBackend::new();
    let comps = WeightsSource::Preset {
        preset: Preset::Tiny,
        seed: 0,
    }
    .load(&be)
    .unwrap();
    let (img, speech) = common::reference_inputs(None);
    (be, comps, img, speech)
}

fn prepare(
    be: &CpuBackend,
    comps: &Components<CpuBackend>,
    img: &RgbImage,
    speech: &Speech,
    steps: usize,
) -> Prepared<CpuBackend> {
    let req = Request {
        steps: Some(steps),
        ..Default::default()
    };
    comps
        .prepare(be, img, speech, &PoseFile::default(), &req, &mut |_| {})
        .unwrap()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn second_clip_depends_on_the_first_through_the_motion_frames() {
    let (be, comps, img, speech) = setup();
    let p = prepare(&be, &comps, &img, &speech, 2);
    assert!(
        p.num_frames > p.geometry.frames,
        "the bundled speech must span two clips"
    );
    let sched = comps.scheduler(2).unwrap();
    let m0 = comps.initial_motion(&be, &p).unwrap();
    // clip `index` from `motion` and noise of seed `seed`
    let clip = |motion: &CpuTensor, seed: u64, index: usize| {
        let noise = comps.clip_noise(&be, &p, seed, index).unwrap();
        let out = comps.run_clip(&be, &p, &sched, motion, noise, index, None, &mut |_| {});
        out.unwrap()
    };
    // Clip 0 from two different noises gives two different motion contexts...
    let z_a = clip(&m0, 1, 0);
    let z_b = clip(&m0, 2, 0);
    let m_a = comps.next_motion(&be, &p, &m0, &z_a).unwrap();
    let m_b = comps.next_motion(&be, &p, &m0, &z_b).unwrap();
    // ...which are the last M clean latents of clip 0.
    let za = be.to_f32(&z_a).unwrap();
    let ma = be.to_f32(&m_a).unwrap();
    let g = p.geometry;
    let per = g.latent_h * g.latent_w;
    for c in 0..4 {
        for m in 0..g.motion {
            let src = &za[(c * g.frames + g.frames - g.motion + m) * per..][..per];
            let dst = &ma[(c * g.motion + m) * per..][..per];
            assert_eq!(
                src, dst,
                "motion frame {m} channel {c} is not clip 0's latent"
            );
        }
    }
    // Clip 1 with the SAME noise differs only because its motion frames differ.
    let (y_a, y_a2, y_b) = (clip(&m_a, 3, 1), clip(&m_a, 3, 1), clip(&m_b, 3, 1));
    let (ya, ya2, yb) = (
        be.to_f32(&y_a).unwrap(),
        be.to_f32(&y_a2).unwrap(),
        be.to_f32(&y_b).unwrap(),
    );
    assert_eq!(ya, ya2);
    assert!(
        rel_l2(&yb, &ya) > 1e-3,
        "clip 1 ignores clip 0 (rel change {})",
        rel_l2(&yb, &ya)
    );
}

/// The pipeline's hooks for `p` with reference K/V and identity from `pp`, every step constant
/// computed in the step.
fn hooks<'a>(
    comps: &'a Components<CpuBackend>,
    p: &'a Prepared<CpuBackend>,
    pp: &'a Prepared<CpuBackend>,
    rows: std::ops::Range<usize>,
) -> DenoiseHooks<'a, CpuBackend> {
    DenoiseHooks {
        comps,
        p_move: &p.p_move,
        clarity_emb: &p.clarity_emb,
        ref_kv: &pp.ref_kv,
        id: &pp.id,
        cond_rows: rows,
        reference: true,
        rca_kv: None,
        time_emb: None,
        context_kv: None,
    }
}

/// Run the denoiser once on a fixed input with the given hooks; returns (cond rows, uncond rows).
fn denoise_rows(
    be: &CpuBackend,
    comps: &Components<CpuBackend>,
    p: &Prepared<CpuBackend>,
    context: &<CpuBackend as Backend>::Tensor,
    hooks: &mut dyn UNetHooks<CpuBackend>,
) -> (Vec<f32>, Vec<f32>) {
    let motion = comps.initial_motion(be, p).unwrap();
    let noise = comps.clip_noise(be, p, 5, 0).unwrap();
    let x = be.concat(&[&motion, &noise], 2).unwrap();
    let x2 = be.concat(&[&x, &x], 0).unwrap();
    let out = comps
        .denoising_unet
        .forward(be, &x2, &[500.0, 500.0], context, hooks)
        .unwrap();
    let cond = be.to_f32(&be.narrow(&out, 0, 0, 1).unwrap()).unwrap();
    let uncond = be.to_f32(&be.narrow(&out, 0, 1, 1).unwrap()).unwrap();
    (cond, uncond)
}

#[test]
fn unconditional_branch_drops_audio_reference_and_identity() {
    let (be, comps, img, speech) = setup();
    let p = prepare(&be, &comps, &img, &speech, 1);
    // A second preparation from another reference and other speech.
    let other_img = RgbImage::from_fn(96, 160, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, 77])
    });
    let mut other_speech = speech.clone();
    other_speech
        .samples
        .iter_mut()
        .enumerate()
        .for_each(|(i, s)| *s = ((i as f32) * 0.05).sin() * 0.3);
    let q = prepare(&be, &comps, &other_img, &other_speech, 1);
    let slots = p.geometry.motion + p.geometry.frames;
    let ctx_p = comps.clip_context(&be, &p, 0).unwrap();
    let ctx_q = comps.clip_context(&be, &q, 0).unwrap();
    // Row 0 of `p` with the context and the hooks' second preparation from `other`.
    let rows = |ctx, other| {
        denoise_rows(
            &be,
            &comps,
            &p,
            ctx,
            &mut hooks(&comps, &p, other, 0..slots),
        )
    };
    let (c1, u1) = rows(&ctx_p, &p);
    let (c2, u2) = rows(&ctx_q, &q);
    assert_eq!(
        u1, u2,
        "the uncond half must not see audio tokens, reference K/V or identity tokens"
    );
    assert!(rel_l2(&c2, &c1) > 1e-4, "the cond half must see them");
    // The uncond context rows really are zeros.
    let ctx = be.to_f32(&ctx_p).unwrap();
    assert!(ctx[ctx.len() / 2..].iter().all(|&v| v == 0.0));
    assert!(ctx[..ctx.len() / 2].iter().any(|&v| v != 0.0));
}

/// Hooks that only add the movement map and clarity embedding: no RCA, no reference.
struct NoRca<'a> {
    p: &'a Prepared<CpuBackend>,
}
impl UNetHooks<CpuBackend> for NoRca<'_> {
    fn after_conv_in(
        &mut self,
        be: &CpuBackend,
        h: <CpuBackend as Backend>::Tensor,
        _n: usize,
    ) -> anyhow::Result<<CpuBackend as Backend>::Tensor> {
        be.add(&h, &self.p.p_move)
    }
    fn after_time_embedding(
        &mut self,
        be: &CpuBackend,
        e: <CpuBackend as Backend>::Tensor,
    ) -> anyhow::Result<<CpuBackend as Backend>::Tensor> {
        be.add(&e, &self.p.clarity_emb)
    }
}

type Rows = (Vec<f32>, Vec<f32>);

/// Row 0's (cond, uncond) UNet outputs without RCA, then with RCA (freshly initialised, or the
/// synthetic weights) and no reference K/V.
fn without_and_with_rca(fresh_rca: bool) -> (Rows, Rows) {
    let (be, comps, img, speech) = setup();
    let p = prepare(&be, &comps, &img, &speech, 1);
    let ctx = comps.clip_context(&be, &p, 0).unwrap();
    let slots = p.geometry.motion + p.geometry.frames;
    let base = denoise_rows(&be, &comps, &p, &ctx, &mut NoRca { p: &p });
    let comps = if fresh_rca {
        Components {
            modules: comps.modules.clone().with_fresh_rca(&be).unwrap(),
            ..comps
        }
    } else {
        comps
    };
    let no_ref = Default::default();
    let mut hooks = DenoiseHooks {
        ref_kv: &no_ref,
        ..hooks(&comps, &p, &p, 0..slots)
    };
    (base, denoise_rows(&be, &comps, &p, &ctx, &mut hooks))
}

#[test]
fn freshly_initialised_rca_leaves_the_unet_output_unchanged() {
    let ((base_c, base_u), (c, u)) = without_and_with_rca(true);
    assert_eq!(
        c, base_c,
        "zero to_out must leave the cond output unchanged"
    );
    assert_eq!(u, base_u);
}

#[test]
fn rca_with_synthetic_weights_changes_the_output() {
    let ((base_c, _), (c, _)) = without_and_with_rca(false);
    assert!(
        rel_l2(&c, &base_c) > 1e-4,
        "RCA with non-zero to_out must change the output"
    );
}

#[test]
fn generation_is_deterministic_by_seed() {
    let (be, comps, img, speech) = setup();
    let mut short = speech.clone();
    short.samples.truncate(8000);
    short.seconds = 0.5;
    let run = |seed| {
        let req = Request {
            seed,
            steps: Some(1),
            trace: true,
            ..Default::default()
        };
        comps
            .generate(&be, &img, &short, &PoseFile::default(), &req, &mut |_| {})
            .unwrap()
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a.frames.len(), 6);
    assert_eq!(a.trace, b.trace);
    assert!(a.frames.iter().zip(&b.frames).all(|(x, y)| x == y));
    assert_ne!(a.trace, c.trace);
}

/// The step constants computed once (RCA bank/identity K/V per video, cross-attention K/V of
/// the audio context and the schedule's time embeddings per clip) give the same bits as
/// computing them inside every step.
#[test]
fn step_constants_computed_once_match_the_per_step_computation_bit_for_bit() {
    let (be, comps, img, speech) = setup();
    let p = prepare(&be, &comps, &img, &speech, 2);
    let sched = comps.scheduler(2).unwrap();
    // clip 1: its context differs from clip 0's (motion slots read earlier frames)
    let consts = comps.clip_constants(&be, &p, 1).unwrap();
    let temb = comps.time_embeddings(&be, &p, &sched).unwrap();
    assert_eq!(temb.len(), sched.timesteps().len());
    let slots = p.geometry.motion + p.geometry.frames;
    let motion = comps.initial_motion(&be, &p).unwrap();
    let noise = comps.clip_noise(&be, &p, 5, 1).unwrap();
    let x = be.concat(&[&motion, &noise], 2).unwrap();
    let x2 = be.concat(&[&x, &x], 0).unwrap();
    for (i, &t) in sched.timesteps().iter().enumerate() {
        let tt = be.from_f32_full(&[1], &[t as f32]).unwrap();
        let mut per_step = hooks(&comps, &p, &p, 0..slots);
        let want = comps
            .denoising_unet
            .forward_t(&be, &x2, &tt, &consts.context, &mut per_step)
            .unwrap();
        let emb = be
            .from_f32_full(&[2, comps.time_embed_dim()], &temb[i])
            .unwrap();
        let mut once = DenoiseHooks {
            rca_kv: Some(&p.rca_kv),
            time_emb: Some(&emb),
            context_kv: Some(&consts.context_kv),
            ..per_step
        };
        let got = comps
            .denoising_unet
            .forward_t(&be, &x2, &tt, &consts.context, &mut once)
            .unwrap();
        let (want, got) = (be.to_f32(&want).unwrap(), be.to_f32(&got).unwrap());
        assert!(
            want.iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "step {i} (t = {t}): rel L2 {:.3e}",
            rel_l2(&got, &want)
        );
    }
}
