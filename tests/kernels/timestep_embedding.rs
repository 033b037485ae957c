//! `timestep_embedding_<out>_v1_<t>` against the CPU backend's `timestep_embedding` (the engine's
//! host default `composed::timestep_embedding_host`: torch's f32 operation order).

use crate::common::{assert_close, cpu, host, round_bf16, Rng, CPU};
use crate::harness::{Device, SCHEDULES};
use cyberhost_engine::backends::Backend;
use cyberhost_kernels::timestep_embedding::{
    launch_config, op_for_output, TimestepEmbeddingParams,
};
use cyberhost_kernels::{kernel_name, DType, KernelModule};

struct Case {
    n: usize,
    dim: usize,
    flip: bool,
    shift: f32,
    /// Override the launch grid (the grid-stride loop with fewer blocks than elements).
    grid: Option<u32>,
}

/// Timesteps as the sampler produces them: integers in [0, 1000), plus non-integer ones.
fn timesteps(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = rng.uniform() * 1000.0;
            if i % 2 == 0 {
                t.floor()
            } else {
                t
            }
        })
        .collect()
}

fn run(dev: &mut Device, t_dtype: DType, y_dtype: DType, c: &Case, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let mut t = timesteps(&mut rng, c.n);
    if c.n > 0 {
        t[0] = 999.0; // the largest argument the sampler feeds
    }
    let t = if t_dtype == DType::Bf16 {
        round_bf16(&t)
    } else {
        t
    };
    let want = host(
        &CPU.timestep_embedding(&cpu(&[c.n], &t), c.dim, c.flip, c.shift)
            .unwrap(),
    );
    let dt = dev.upload_as(t_dtype, &t).unwrap();
    let len = c.n * c.dim;
    let dy = dev.alloc_poisoned(len * y_dtype.size_in_bytes()).unwrap();
    let p = TimestepEmbeddingParams::new(dt, dy, c.n, c.dim, c.flip, c.shift).unwrap();
    let mut cfg = launch_config(&p);
    if let Some(g) = c.grid {
        cfg.grid = [g, 1, 1];
    }
    let entry = kernel_name(op_for_output(y_dtype), 1, t_dtype);
    dev.launch(KernelModule::TimestepEmbedding, &entry, cfg, &p)
        .unwrap();
    let got = dev.download_as(y_dtype, dy, len).unwrap();
    let want = if y_dtype == DType::Bf16 {
        round_bf16(&want)
    } else {
        want
    };
    let what = format!(
        "{entry} n={} dim={} flip={} shift={}",
        c.n, c.dim, c.flip, c.shift
    );
    // f32 output: freq is the correctly rounded exp the reference takes, sincosf is within 2 ulp;
    // bf16 output: the same values rounded (a 1-ulp f32 difference may flip a bf16 rounding).
    let tol = if y_dtype == DType::Bf16 { 4e-3 } else { 1e-6 };
    assert_close(&what, &got, &want, tol);
    let num: f64 = got
        .iter()
        .zip(&want)
        .map(|(&g, &w)| (g as f64 - w as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn cases() -> Vec<Case> {
    let base = Case {
        n: 2,
        dim: 320,
        flip: true,
        shift: 1.0,
        grid: None,
    };
    vec![
        // the SD / AnimateDiff UNet: Timesteps(320, flip_sin_to_cos=True, shift=1), cond + uncond
        Case { ..base },
        // odd dim: the last column stays 0; not flipped, shift 0
        Case {
            n: 3,
            dim: 33,
            flip: false,
            shift: 0.0,
            ..base
        },
        // wider rows than a block, grid-stride with one block
        Case {
            n: 5,
            dim: 1281,
            grid: Some(1),
            ..base
        },
        // dim 1: no frequencies, the single column is the zero pad
        Case {
            n: 4,
            dim: 1,
            ..base
        },
        Case {
            n: 1,
            dim: 6,
            flip: false,
            ..base
        },
    ]
}

fn run_all(t_dtype: DType, y_dtype: DType) {
    let mut worst = 0.0f64;
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, c) in cases().iter().enumerate() {
            worst = worst.max(run(&mut dev, t_dtype, y_dtype, c, (i * 100 + j) as u64 + 1));
        }
    }
    eprintln!("timestep_embedding t {t_dtype:?} -> {y_dtype:?}: worst rel L2 {worst:.2e}");
}

crate::harness::sweep_tests!(run_all;
    timestep_embedding_f32 => (DType::F32, DType::F32),
    timestep_embedding_bf16_out => (DType::F32, DType::Bf16),
    timestep_embedding_bf16_t => (DType::Bf16, DType::F32) (DType::Bf16, DType::Bf16),
);
