//! `cfg_ddim_<z>_v1_<out>` against the CPU backend's `cfg_ddim_step` (bit for bit: both are the
//! same single-rounded f32 operations, `composed::cfg_ddim_one`).

use crate::common::{assert_close, cpu, host, round_bf16, Rng, CPU};
use crate::harness::{Device, SCHEDULES};
use cyberhost_engine::backends::composed::cfg_ddim_one;
use cyberhost_engine::backends::Backend;
use cyberhost_kernels::cfg_ddim::{
    launch_config, op_for_sample, CfgDdimParams, CfgDdimShape, CFG_DDIM_COEFFS,
};
use cyberhost_kernels::{kernel_name, DType, KernelModule};

const INF: f32 = f32::INFINITY;

/// Prediction type codes of the coefficient vector.
const EPSILON: f32 = 0.0;
const V: f32 = 1.0;
const SAMPLE: f32 = 2.0;

/// A mid-schedule DDIM step (alpha_t = 0.3, alpha_prev = 0.45) with guidance `g`.
fn coeffs(g: f32, pred: f32, clip: Option<f32>) -> [f32; CFG_DDIM_COEFFS] {
    let (a_t, a_prev) = (0.3f32, 0.45f32);
    let (lo, hi) = clip.map_or((-INF, INF), |r| (-r, r));
    [
        g,
        a_t.sqrt(),
        (1.0 - a_t).sqrt(),
        a_prev.sqrt(),
        (1.0 - a_prev).sqrt(),
        pred,
        lo,
        hi,
    ]
}

struct Case {
    shape: CfgDdimShape,
    /// Expected `CfgDdimParams::vec` (both paths must be exercised).
    vec: bool,
    /// Write the new sample over `z`.
    in_place: bool,
    grid: Option<u32>,
}

fn shape(c: usize, s: usize, f: usize, off: usize, inner: usize) -> CfgDdimShape {
    CfgDdimShape {
        channels: c,
        frames_total: s,
        frames: f,
        frame_offset: off,
        inner,
    }
}

fn cases() -> Vec<Case> {
    let base = Case {
        shape: shape(4, 6, 4, 2, 8 * 8),
        vec: true,
        in_place: false,
        grid: None,
    };
    vec![
        // motion frames first (offset 2 of 6), vector path
        Case { ..base },
        // every frame of the output, in place
        Case {
            shape: shape(3, 5, 5, 0, 12),
            in_place: true,
            ..base
        },
        // ragged: inner 7 (not a multiple of 4), offset 1 -> scalar path
        Case {
            shape: shape(3, 7, 3, 1, 7),
            vec: false,
            ..base
        },
        // ragged, one block covering everything through the grid-stride loop
        Case {
            shape: shape(5, 9, 4, 5, 13),
            vec: false,
            grid: Some(1),
            ..base
        },
        // vector path, one block, several steps each
        Case {
            shape: shape(4, 16, 12, 4, 16),
            grid: Some(1),
            ..base
        },
        Case {
            shape: shape(1, 1, 1, 0, 1),
            vec: false,
            ..base
        },
    ]
}

fn upload(dev: &mut Device, v: &[f32], dt: DType) -> u64 {
    dev.upload_as(dt, v).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn run(
    dev: &mut Device,
    out_dtype: DType,
    z_dtype: DType,
    c: &Case,
    k: &[f32; CFG_DDIM_COEFFS],
    seed: u64,
) {
    let s = c.shape;
    let mut rng = Rng::new(seed);
    let round = |v: Vec<f32>, dt: DType| if dt == DType::Bf16 { round_bf16(&v) } else { v };
    let out = round(rng.randn(s.output_len(), 1.0, 0.05), out_dtype);
    let z = round(rng.randn(s.sample_len(), 1.0, -0.02), z_dtype);
    let want = host(
        &CPU.cfg_ddim_step(
            &cpu(&[2, s.channels, s.frames_total, s.inner], &out),
            &cpu(&[1, s.channels, s.frames, s.inner], &z),
            s.frame_offset,
            &cpu(&[CFG_DDIM_COEFFS], k),
        )
        .unwrap(),
    );
    let want = round(want, z_dtype);
    let d_out = upload(dev, &out, out_dtype);
    let d_z = upload(dev, &z, z_dtype);
    let d_k = dev.upload(&k[..]).unwrap();
    let d_y = if c.in_place {
        d_z
    } else {
        dev.alloc_poisoned(s.sample_len() * z_dtype.size_in_bytes())
            .unwrap()
    };
    let p = CfgDdimParams::new(d_out, d_z, d_y, d_k, s, out_dtype, z_dtype).unwrap();
    assert_eq!(p.vec != 0, c.vec, "{s:?}: vector path");
    let mut cfg = launch_config(&p);
    if let Some(g) = c.grid {
        cfg.grid = [g, 1, 1];
    }
    let entry = kernel_name(op_for_sample(z_dtype), 1, out_dtype);
    dev.launch(KernelModule::CfgDdim, &entry, cfg, &p).unwrap();
    let got = dev.download_as(z_dtype, d_y, s.sample_len()).unwrap();
    let what = format!("{entry} {s:?} coeffs {k:?} in_place {}", c.in_place);
    if z_dtype == DType::Bf16 {
        // The emulator rounds f32 -> bf16 through `half::bf16::from_f64`, which drops the sticky
        // bits below f64 bit 32: f32 values just past a bf16 tie may round the other way (1 ulp).
        assert_close(&what, &got, &want, 1e-3);
        return;
    }
    assert_close(&what, &got, &want, 1e-6);
    crate::common::assert_same_bits(&what, &got, &want, "the reference's");
}

fn run_all(out_dtype: DType, z_dtype: DType) {
    let ks = [
        coeffs(3.5, EPSILON, None),
        coeffs(1.0, EPSILON, Some(1.0)),
        coeffs(7.5, V, None),
        coeffs(2.0, V, Some(0.5)),
        coeffs(4.0, SAMPLE, None),
        coeffs(0.0, SAMPLE, Some(1.0)),
    ];
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, c) in cases().iter().enumerate() {
            let k = &ks[(i + j) % ks.len()];
            run(&mut dev, out_dtype, z_dtype, c, k, (i * 100 + j) as u64 + 3);
        }
    }
    // every coefficient vector on the first case
    let mut dev = Device::new(1, 0);
    for (j, k) in ks.iter().enumerate() {
        for c in &cases()[..3] {
            run(&mut dev, out_dtype, z_dtype, c, k, 500 + j as u64);
        }
    }
}

crate::harness::sweep_tests!(run_all;
    /// The pipeline's combination: f32 sample, f32 model output.
    cfg_ddim_f32 => (DType::F32, DType::F32),
    /// The pipeline's combination with bf16 storage: bf16 model output, f32 sample.
    cfg_ddim_bf16_out_f32_z => (DType::Bf16, DType::F32),
    cfg_ddim_bf16_z => (DType::Bf16, DType::Bf16) (DType::F32, DType::Bf16),
);

/// Clipping keeps NaN (torch.clamp) and the ±inf bounds never clip.
#[test]
fn cfg_ddim_reference_keeps_nan_and_inf_bounds_never_clip() {
    let mut rng = Rng::new(9);
    for pred in [EPSILON, V, SAMPLE] {
        let (open, clipped) = (coeffs(5.0, pred, None), coeffs(5.0, pred, Some(1e30)));
        for _ in 0..200 {
            let (c, u, z) = (rng.normal() * 2.0, rng.normal(), rng.normal());
            let (a, b) = (
                cfg_ddim_one(c, u, z, &open),
                cfg_ddim_one(c, u, z, &clipped),
            );
            assert_eq!(a.to_bits(), b.to_bits(), "pred {pred}: a far bound clipped");
        }
        for clip in [None, Some(1.0)] {
            let k = coeffs(5.0, pred, clip);
            assert!(
                cfg_ddim_one(f32::NAN, 0.0, 0.0, &k).is_nan(),
                "pred {pred} clip {clip:?}"
            );
        }
    }
}
