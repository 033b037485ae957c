//! The fused sampler ops: `Backend::cfg_ddim_step` / `Backend::timestep_embedding`.
//!
//! * sampler consistency (CPU): `composed::cfg_ddim_one` with `DdimStepCoeffs::device_coeffs`
//!   equals diffusers' CFG combine followed by `DdimStepCoeffs::apply_one`, bit for bit, for every
//!   step of several schedules, all three prediction types, clipping on and off;
//! * `CudaBackend` (stand-in driver: cudarc runs the committed PTX on the emulator) against
//!   `CpuBackend` (the host defaults), outputs poisoned, ragged shapes, and checked to be one
//!   kernel launch with no host copy (capturable in a CUDA graph).
//!
//! ```sh
//! cargo test --test sampler_fused
//! ```

mod common;
use common::rel_l2;

use cyberhost_engine::backends::composed::{cfg_ddim_one, CFG_DDIM_COEFFS};
use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::cuda::{CudaBackend, CudaTensor, DType};
use cyberhost_engine::backends::{Backend, TensorLike};
use cyberhost_engine::sampler::{DdimConfig, DdimScheduler};

const CPU: CpuBackend = CpuBackend;

fn random(n: usize, seed: u64) -> Vec<f32> {
    common::random_span(n, seed, 2.0)
}

fn scheduler(prediction: &str, clip: bool, schedule: &str, steps: usize) -> DdimScheduler {
    let config = DdimConfig {
        prediction_type: prediction.into(),
        clip_sample: clip,
        beta_schedule: schedule.into(),
        beta_start: 0.00085,
        beta_end: 0.012,
        steps_offset: 1,
        set_alpha_to_one: false,
        ..Default::default()
    };
    let mut s = DdimScheduler::new(config).unwrap();
    s.set_timesteps(steps).unwrap();
    s
}

// ------------------------------------------------------------------------------------------------
// sampler consistency (CPU)
// ------------------------------------------------------------------------------------------------

#[test]
fn cfg_ddim_one_with_device_coeffs_is_cfg_then_apply_one() {
    let mut checked = 0;
    for prediction in ["epsilon", "v_prediction", "sample"] {
        for clip in [false, true] {
            for schedule in ["scaled_linear", "linear"] {
                let s = scheduler(prediction, clip, schedule, 25);
                for (i, &t) in s.timesteps().iter().enumerate() {
                    let coeffs = s.step_coeffs(t, 0.0).unwrap();
                    for guidance in [1.0f32, 3.5, 7.5] {
                        let dc = coeffs.device_coeffs(guidance).unwrap();
                        let v = random(3 * 64, (i * 31 + checked) as u64);
                        for e in v.chunks(3) {
                            let (cond, uncond, z) = (e[0], e[1], e[2] * 2.0);
                            // diffusers: noise_pred_uncond + g * (noise_pred_text - noise_pred_uncond)
                            let m = uncond + guidance * (cond - uncond);
                            let (want, _) = coeffs.apply_one(m, z, 0.0);
                            let got = cfg_ddim_one(cond, uncond, z, &dc);
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{prediction} clip {clip} {schedule} t {t} g {guidance}: \
                                 fused {got} vs apply_one {want}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 10_000);
}

#[test]
fn device_coeffs_refuse_eta() {
    let s = scheduler("epsilon", false, "scaled_linear", 10);
    let t = s.timesteps()[3];
    assert!(s.step_coeffs(t, 1.0).unwrap().device_coeffs(2.0).is_err());
    let c = s.step_coeffs(t, 0.0).unwrap().device_coeffs(2.0).unwrap();
    assert_eq!(c.len(), CFG_DDIM_COEFFS);
    assert_eq!((c[6], c[7]), (f32::NEG_INFINITY, f32::INFINITY));
}

// ------------------------------------------------------------------------------------------------
// CudaBackend on the stand-in driver vs CpuBackend
// ------------------------------------------------------------------------------------------------

use common::{cuda_serial as serial, emulated_backend as gpu};

/// (memcpy calls, kernel launches) of the stand-in so far.
fn counters(be: &CudaBackend) -> (u64, u64) {
    let s = be.device().emulator_stats().expect("stand-in counters");
    (s.memcpy_calls, s.kernel_launches)
}

/// Runs `op` and checks it enqueued exactly one kernel and copied nothing to or from the host.
fn one_kernel_no_copy(be: &CudaBackend, what: &str, op: impl FnOnce() -> CudaTensor) -> CudaTensor {
    let before = counters(be);
    let y = op();
    let after = counters(be);
    assert_eq!(after.0, before.0, "{what}: host copies inside the op");
    assert_eq!(after.1, before.1 + 1, "{what}: kernel launches");
    y
}

#[test]
fn timestep_embedding_matches_cpu() {
    let _g = serial();
    for storage in [DType::Bf16, DType::F32] {
        let be = gpu().with_storage(storage);
        for (n, dim, flip, shift) in [
            (2usize, 320usize, true, 1.0f32),
            (3, 33, false, 0.0),
            (1, 1280, true, 0.0),
        ] {
            let t: Vec<f32> = random(n, dim as u64)
                .iter()
                .map(|v| ((v + 2.0) * 250.0).floor())
                .collect();
            let tg = be.from_f32_full(&[n], &t).unwrap();
            let what = format!("timestep_embedding n {n} dim {dim} ({storage:?} storage)");
            let y = one_kernel_no_copy(&be, &what, || {
                be.timestep_embedding(&tg, dim, flip, shift).unwrap()
            });
            assert_eq!(y.shape(), &[n, dim]);
            assert_eq!(y.dtype(), storage, "{what}: output dtype");
            let want = CPU
                .to_f32(
                    &CPU.timestep_embedding(&CPU.from_f32(&[n], &t).unwrap(), dim, flip, shift)
                        .unwrap(),
                )
                .unwrap();
            let got = be.to_f32(&y).unwrap();
            assert!(got.iter().all(|v| v.is_finite()), "{what}: unwritten");
            let tol = if storage == DType::Bf16 { 4e-3 } else { 1e-6 };
            let err = rel_l2(&got, &want);
            assert!(err <= tol, "{what}: rel L2 {err:e} > {tol:e}");
        }
        // t stored in bf16 works too (values the bf16 tensor holds)
        let tb = be.from_f32_as(&[2], &[999.0, 1.0], DType::Bf16).unwrap();
        let y = be.timestep_embedding(&tb, 8, true, 1.0).unwrap();
        let want = CPU
            .to_f32(
                &CPU.timestep_embedding(&CPU.from_f32(&[2], &[1000.0, 1.0]).unwrap(), 8, true, 1.0)
                    .unwrap(),
            )
            .unwrap();
        assert!(rel_l2(&be.to_f32(&y).unwrap(), &want) <= 4e-3);
        assert!(be
            .timestep_embedding(&be.from_f32(&[1, 2], &[1.0, 2.0]).unwrap(), 8, true, 1.0)
            .is_err());
    }
}

#[test]
fn cfg_ddim_step_matches_cpu() {
    let _g = serial();
    let s = scheduler("epsilon", true, "scaled_linear", 20);
    let sv = scheduler("v_prediction", false, "scaled_linear", 20);
    let ss = scheduler("sample", true, "linear", 20);
    let coeff_sets = [
        s.step_coeffs(s.timesteps()[5], 0.0)
            .unwrap()
            .device_coeffs(3.5)
            .unwrap(),
        sv.step_coeffs(sv.timesteps()[11], 0.0)
            .unwrap()
            .device_coeffs(7.5)
            .unwrap(),
        ss.step_coeffs(ss.timesteps()[0], 0.0)
            .unwrap()
            .device_coeffs(2.0)
            .unwrap(),
    ];
    // (C, S, F, frame_offset, trailing dims): motion frames first, vector and scalar paths
    let shapes: [(usize, usize, usize, usize, Vec<usize>); 4] = [
        (4, 6, 4, 2, vec![8, 8]),
        (3, 5, 5, 0, vec![3, 5]),
        (2, 7, 3, 4, vec![5, 3]),
        (4, 3, 1, 1, vec![]),
    ];
    for storage in [DType::Bf16, DType::F32] {
        let be = gpu().with_storage(storage);
        for (si, (c, sf, f, off, rest)) in shapes.iter().enumerate() {
            let out_shape: Vec<usize> = [2, *c, *sf].iter().chain(rest).copied().collect();
            let z_shape: Vec<usize> = [1, *c, *f].iter().chain(rest).copied().collect();
            let n_out: usize = out_shape.iter().product();
            let n_z: usize = z_shape.iter().product();
            let k = &coeff_sets[si % coeff_sets.len()];
            // the model output in storage dtype (as the UNet leaves it), z and coeffs in f32
            let out = be
                .from_f32(&out_shape, &random(n_out, 7 + si as u64))
                .unwrap();
            let z = be
                .from_f32_full(&z_shape, &random(n_z, 70 + si as u64))
                .unwrap();
            let kg = be.from_f32_full(&[CFG_DDIM_COEFFS], k).unwrap();
            let what = format!("cfg_ddim_step {out_shape:?} -> {z_shape:?} at {off} ({storage:?})");
            let y = one_kernel_no_copy(&be, &what, || {
                be.cfg_ddim_step(&out, &z, *off, &kg).unwrap()
            });
            assert_eq!(y.shape(), &z_shape[..]);
            assert_eq!(y.dtype(), DType::F32, "{what}: the new z keeps z's dtype");
            // the CPU sees exactly the values the device holds
            let oc = CPU.from_f32(&out_shape, &be.to_f32(&out).unwrap()).unwrap();
            let zc = CPU.from_f32(&z_shape, &be.to_f32(&z).unwrap()).unwrap();
            let kc = CPU.from_f32(&[CFG_DDIM_COEFFS], k).unwrap();
            let want = CPU
                .to_f32(&CPU.cfg_ddim_step(&oc, &zc, *off, &kc).unwrap())
                .unwrap();
            let got = be.to_f32(&y).unwrap();
            common::assert_same_bits(&what, &got, &want, "the host default's");
        }
        // shape and dtype errors name the problem
        let out = be.from_f32(&[2, 2, 3, 4], &random(48, 1)).unwrap();
        let z = be.from_f32_full(&[1, 2, 2, 4], &random(16, 2)).unwrap();
        let kg = be
            .from_f32_full(&[CFG_DDIM_COEFFS], &coeff_sets[0])
            .unwrap();
        assert!(be.cfg_ddim_step(&out, &z, 2, &kg).is_err());
        assert!(be.cfg_ddim_step(&z, &out, 0, &kg).is_err());
        let kb = be
            .from_f32_as(&[CFG_DDIM_COEFFS], &coeff_sets[0], DType::Bf16)
            .unwrap();
        let e = be.cfg_ddim_step(&out, &z, 1, &kb).unwrap_err();
        assert!(format!("{e:#}").contains("f32"), "{e:#}");
        assert!(be.cfg_ddim_step(&out, &z, 1, &kg).is_ok());
    }
}

/// The new z may be fed back as the next step's z (the sampler loop): two steps in a row.
#[test]
fn cfg_ddim_step_chains() {
    let _g = serial();
    let be = gpu().clone();
    let s = scheduler("epsilon", false, "scaled_linear", 10);
    let (c, sf, f, off) = (4usize, 6usize, 4usize, 2usize);
    let out_shape = [2, c, sf, 4, 4];
    let z_shape = [1, c, f, 4, 4];
    let out = be
        .from_f32(&out_shape, &random(2 * c * sf * 16, 3))
        .unwrap();
    let oc = CPU.from_f32(&out_shape, &be.to_f32(&out).unwrap()).unwrap();
    let mut z = be.from_f32_full(&z_shape, &random(c * f * 16, 4)).unwrap();
    let mut zc = CPU.from_f32(&z_shape, &be.to_f32(&z).unwrap()).unwrap();
    for &t in &s.timesteps()[..3] {
        let k = s.step_coeffs(t, 0.0).unwrap().device_coeffs(5.0).unwrap();
        let kg = be.from_f32_full(&[CFG_DDIM_COEFFS], &k).unwrap();
        z = be.cfg_ddim_step(&out, &z, off, &kg).unwrap();
        zc = CPU
            .cfg_ddim_step(
                &oc,
                &zc,
                off,
                &CPU.from_f32(&[CFG_DDIM_COEFFS], &k).unwrap(),
            )
            .unwrap();
    }
    let (g, w) = (be.to_f32(&z).unwrap(), CPU.to_f32(&zc).unwrap());
    assert!(g.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits()));
}
