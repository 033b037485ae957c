//! The whole `tiny` model through the CUDA backend on the stand-in driver (PTX
//! emulator) against the CPU reference: latents after every sampler step and
//! the decoded frames, by relative L2, at the default (bf16) activations and at f32.

use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::cuda::{CudaBackend, DType};
use cyberhost_engine::pipeline::checkpoint::WeightsSource;
use cyberhost_engine::pipeline::conditions::PoseFile;
use cyberhost_engine::pipeline::generate::{Request, Video};
use cyberhost_engine::pipeline::presets::Preset;

mod common;
use common::numerics::U_BF16;

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    cyberhost_engine::conformance::rel_l2(a, b)
}

/// Relative L2 of a bf16 rounding of values with log-uniformly distributed mantissas:
/// 2^-7 / √(12·E[m²]), E[m²] = 3 / (2 ln 2), i.e. 0.39·u_bf16 = 1.53e-3 (docs/numerics.md).
fn bf16_rounding_rms() -> f64 {
    let e_m2 = 3.0 / (2.0 * std::f64::consts::LN_2);
    2.0 * U_BF16 / (12.0 * e_m2).sqrt()
}

/// How much the random-weight tiny model amplifies a relative perturbation of every op's
/// output by the first DDIM step's latents: measured on the CPU alone (`cuda_numerics.rs`
/// `bf16_sensitivity_on_the_cpu`: every op output rounded to bf16 → 1.59e-2, over the rounding's
/// 1.53e-3). docs/numerics.md "End to end".
const TINY_AMPLIFICATION: f64 = 10.4;

/// Independent error sources of the bf16 path, each at the rounding level: op outputs, weights,
/// and operands rounded on the way into the tensor cores (activations, softmax P) — they add in
/// quadrature: √3.
const BF16_SOURCES: f64 = 3.0;

/// Latents after a step of the bf16 path vs the CPU: √sources · rounding · amplification ×
/// 1.25 margin (the amplification is one seed's measurement) ≈ 3.5e-2.
fn bf16_latent_bound() -> f64 {
    1.25 * BF16_SOURCES.sqrt() * bf16_rounding_rms() * TINY_AMPLIFICATION
}

/// The bar for the decoded frames of the default tiny clip; the VAE decoder does not
/// amplify (frames ≤ latents in every measurement) and u8 quantisation adds ≤ 1/255 /
/// mean pixel level.
const FRAMES_BOUND: f64 = 3e-2;

fn inputs() -> (
    image::RgbImage,
    cyberhost_engine::pipeline::audio::Speech,
    Request,
) {
    // One clip of F frames plus a second clip: exercises motion-frame carry-over.
    let (img, speech) = common::reference_inputs(Some(16_000));
    // 64x64 instead of the preset's 128x128 keeps the emulated run short (CI has 2 cores).
    let req = Request {
        seed: 3,
        steps: Some(2),
        size: Some((64, 64)),
        trace: true,
        ..Default::default()
    };
    (img, speech, req)
}

fn src() -> WeightsSource {
    WeightsSource::Preset {
        preset: Preset::Tiny,
        seed: 0,
    }
}

fn run_on_cuda(activations: Option<DType>) -> (Video, Video) {
    // One warp schedule per launch: this test is about numerics; hazards are searched with several
    // schedules by the kernel tests (schedule 0 still runs every hazard detector). Set before the
    // stand-in driver's first launch reads it.
    std::env::set_var("PTX_EMU_SCHEDULES", "1");
    let (img, speech, req) = inputs();
    let cpu = CpuBackend::new();
    let reference = src()
        .load(&cpu)
        .unwrap()
        .generate(&cpu, &img, &speech, &PoseFile::default(), &req, &mut |_| {})
        .unwrap();
    let gpu = CudaBackend::new_emulated(0).expect("stand-in driver");
    if let Some(a) = activations {
        gpu.set_activations(a);
    }
    let got = src()
        .load(&gpu)
        .unwrap()
        .generate(&gpu, &img, &speech, &PoseFile::default(), &req, &mut |_| {})
        .unwrap();
    (reference, got)
}

/// Every step's latents and every frame vs the CPU: (worst latent error, worst frame error).
fn compare(label: &str, reference: &Video, got: &Video) -> (f64, f64) {
    assert_eq!(reference.trace.len(), got.trace.len());
    let mut worst = (0.0f64, 0.0f64);
    for (c, (rc, gc)) in reference.trace.iter().zip(&got.trace).enumerate() {
        assert_eq!(rc.len(), gc.len());
        for (s, (r, g)) in rc.iter().zip(gc).enumerate() {
            let e = rel_l2(g, r);
            eprintln!("{label}: clip {c} step {s}: latents rel_l2 {e:.3e}");
            worst.0 = worst.0.max(e);
        }
    }
    assert_eq!(reference.frames.len(), got.frames.len());
    for (i, (r, g)) in reference.frames.iter().zip(&got.frames).enumerate() {
        let r: Vec<f32> = r.as_raw().iter().map(|&v| v as f32).collect();
        let g: Vec<f32> = g.as_raw().iter().map(|&v| v as f32).collect();
        let e = rel_l2(&g, &r);
        eprintln!("{label}: frame {i}: rel_l2 {e:.3e}");
        worst.1 = worst.1.max(e);
    }
    worst
}

/// The default activations (bf16). Bounds: [`bf16_latent_bound`], [`FRAMES_BOUND`]. Measured:
/// latents 2.52e-2 / 2.51e-2 (clip 0), 2.43e-2 / 2.43e-2 (clip 1), frames 8.5e-3 – 1.71e-2
/// (about 10 minutes on the shared 2-core machine).
#[test]
fn tiny_model_on_cuda_matches_the_cpu_reference() {
    let (reference, got) = run_on_cuda(None);
    let (lat, frames) = compare("bf16", &reference, &got);
    let bound = bf16_latent_bound();
    assert!(lat <= bound, "latents differ by {lat:.3e} > {bound:.3e}");
    assert!(frames <= FRAMES_BOUND, "frames differ by {frames:.3e}");
}

/// `--activations f32`: f32-accurate products, so only bf16 weights and the bf16 parts of the
/// model (VAE, audio encoder, ReferenceNet, flash attention) remain: measured 1.6-1.7e-2 on the
/// latents, frames ≤ 1.24e-2 (docs/kernels.md "Numerics"); the bf16 bound minus the
/// activation-rounding sources (√2 instead of √3) still holds them.
#[test]
#[ignore = "a second emulated tiny run (minutes): cargo test --test cuda_pipeline -- --ignored"]
fn tiny_model_on_cuda_f32_activations_matches_the_cpu_reference() {
    let (reference, got) = run_on_cuda(Some(DType::F32));
    let (lat, frames) = compare("f32", &reference, &got);
    let bound = bf16_latent_bound() * (2.0f64 / BF16_SOURCES).sqrt();
    assert!(lat <= bound, "latents differ by {lat:.3e} > {bound:.3e}");
    assert!(frames <= FRAMES_BOUND, "frames differ by {frames:.3e}");
}
