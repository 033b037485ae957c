//! One full clip of the `tiny` model (preset size 128x128, the preset's sampler steps, bf16
//! activations, as `cyberhost generate --backend cuda --activations bf16` runs it) through the
//! CUDA backend on the stand-in driver at `PTX_EMU_CHECKS=fast`, against the CPU reference:
//! decoded frames within relative L2 3e-2.
//!
//! It is the CI's end-to-end proof that the whole CUDA path runs at real size (the shortened runs
//! of `tests/cuda_pipeline.rs` check every step's latents at f32). Its run time is the emulator's
//! speed (docs/emulator.md: minutes of one core), so the plain `cargo test` skips it and
//! `tools/test.sh` runs it on its own after the workspace tests, reusing their build (the test
//! profile is optimised): `cargo test --workspace --test cuda_clip -- --ignored`.

mod common;

use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::cuda::{CudaBackend, DType};
use cyberhost_engine::pipeline::checkpoint::WeightsSource;
use cyberhost_engine::pipeline::conditions::PoseFile;
use cyberhost_engine::pipeline::generate::Request;
use cyberhost_engine::pipeline::presets::Preset;

#[test]
#[ignore = "minutes of emulation: tools/test.sh runs it with -- --ignored"]
fn one_full_tiny_clip_bf16_on_the_stand_in_matches_the_cpu() {
    // Set before the stand-in driver's first launch reads them: bounds and alignment checks only,
    // one schedule (the kernel tests run every hazard detector at `full`).
    std::env::set_var("PTX_EMU_CHECKS", "fast");
    std::env::remove_var("PTX_EMU_SCHEDULES");
    // One clip: the tiny preset has 8 frames per clip at 12 fps (samples are at 16 kHz).
    let (img, speech) = common::reference_inputs(Some(16_000 * 8 / 12));
    let req = Request {
        seed: 7,
        ..Default::default()
    };
    let src = WeightsSource::Preset {
        preset: Preset::Tiny,
        seed: 0,
    };

    let cpu = CpuBackend::new();
    let reference = src
        .load(&cpu)
        .unwrap()
        .generate(&cpu, &img, &speech, &PoseFile::default(), &req, &mut |_| {})
        .unwrap();

    let gpu = CudaBackend::new_emulated(0).expect("stand-in driver");
    gpu.set_activations(DType::Bf16);
    let t0 = std::time::Instant::now();
    let got = src
        .load(&gpu)
        .unwrap()
        .generate(&gpu, &img, &speech, &PoseFile::default(), &req, &mut |_| {})
        .unwrap();
    eprintln!(
        "one tiny clip ({} frames) on the stand-in: {:.1} s",
        got.frames.len(),
        t0.elapsed().as_secs_f64()
    );

    assert_eq!(reference.frames.len(), 8, "one clip of 8 frames");
    assert_eq!(reference.frames.len(), got.frames.len());
    let r: Vec<f32> = reference
        .frames
        .iter()
        .flat_map(|f| f.as_raw().iter().map(|&v| v as f32))
        .collect();
    let g: Vec<f32> = got
        .frames
        .iter()
        .flat_map(|f| f.as_raw().iter().map(|&v| v as f32))
        .collect();
    let e = cyberhost_engine::conformance::rel_l2(&g, &r);
    eprintln!("frames: rel_l2 {e:.3e}");
    assert!(
        e <= 3e-2,
        "decoded frames differ from the CPU by rel L2 {e:.3e}"
    );
}
