//! `bias_act_v1_*` / `bias_silu_v1_*` against `reference::bias_act`.

use crate::harness::{assert_close, from_bf16, round_bf16, to_bf16, tol, Device, Rng, SCHEDULES};
use cyberhost_kernels::elementwise::{launch_config, BiasActShape, ElementwiseParams};
use cyberhost_kernels::{kernel_name, reference, DType, KernelModule, LaunchConfig};
use half::bf16;

struct Case {
    n: usize,
    channels: usize,
    inner: usize,
    bias: bool,
    residual: bool,
    silu: bool,
    alpha: f32,
    beta: f32,
    /// Override the launch grid (tests the grid-stride loop with fewer blocks than tiles).
    grid: Option<u32>,
}

fn run(dev: &mut Device, dtype: DType, c: &Case, seed: u64) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let bf = dtype == DType::Bf16;
    let round = |v: Vec<f32>| if bf { round_bf16(&v) } else { v };
    let x = round(rng.randn(c.n, 2.0, 0.1));
    let bias = round(rng.randn(c.channels, 1.0, 0.0));
    let res = round(rng.randn(c.n, 1.0, 0.0));
    let want = reference::bias_act(
        &x,
        c.bias.then_some(&bias[..]),
        c.residual.then_some(&res[..]),
        c.inner,
        c.silu,
        c.alpha,
        c.beta,
    );

    let up = |dev: &mut Device, v: &[f32]| {
        if bf {
            dev.upload(&to_bf16(v))
        } else {
            dev.upload(v)
        }
    };
    let dx = up(dev, &x)?;
    let db = if c.bias { up(dev, &bias)? } else { 0 };
    let dr = if c.residual { up(dev, &res)? } else { 0 };
    let dy = dev.alloc_poisoned(c.n * dtype.size_in_bytes())?;
    let shape = BiasActShape {
        n: c.n as u64,
        channels: c.channels as u32,
        inner: c.inner as u32,
    };
    let p = ElementwiseParams::new(dx, db, dr, dy, shape, c.alpha, c.beta)?;
    let mut cfg: LaunchConfig = launch_config(shape);
    if let Some(g) = c.grid {
        cfg.grid = [g, 1, 1];
    }
    let entry = kernel_name(if c.silu { "bias_silu" } else { "bias_act" }, 1, dtype);
    dev.launch(KernelModule::Elementwise, &entry, cfg, &p)?;
    let got = if bf {
        from_bf16(&dev.download::<bf16>(dy, c.n)?)
    } else {
        dev.download::<f32>(dy, c.n)?
    };
    let what = format!(
        "{entry} n={} channels={} inner={} bias={} residual={}",
        c.n, c.channels, c.inner, c.bias, c.residual
    );
    assert_close(&what, &got, &want, tol(bf));
    Ok(())
}

fn cases() -> Vec<Case> {
    let base = Case {
        n: 1,
        channels: 1,
        inner: 1,
        bias: false,
        residual: false,
        silu: false,
        alpha: 1.0,
        beta: 1.0,
        grid: None,
    };
    vec![
        // bias + SiLU on a ragged (rows, C): n not a multiple of 256
        Case {
            n: 7 * 45,
            channels: 45,
            bias: true,
            silu: true,
            ..base
        },
        // per-channel bias on NCHW (inner = H*W), SiLU
        Case {
            n: 2 * 5 * 13,
            channels: 5,
            inner: 13,
            bias: true,
            silu: true,
            ..base
        },
        // scale-add: alpha*x + beta*residual, no bias
        Case {
            n: 1029,
            residual: true,
            alpha: 0.5,
            beta: -1.25,
            ..base
        },
        // everything, with the grid-stride loop covering 4 tiles per block
        Case {
            n: 4099,
            channels: 3,
            inner: 7,
            bias: true,
            residual: true,
            silu: true,
            alpha: 1.5,
            beta: 0.75,
            grid: Some(1),
        },
        Case {
            n: 1,
            channels: 1,
            bias: true,
            ..base
        },
    ]
}

#[test]
fn bias_act_f32() {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, c) in cases().iter().enumerate() {
            run(&mut dev, DType::F32, c, (i * 100 + j) as u64).unwrap();
        }
    }
}

#[test]
fn bias_act_bf16() {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, c) in cases().iter().enumerate() {
            run(&mut dev, DType::Bf16, c, (i * 100 + j) as u64 + 7).unwrap();
        }
    }
}

/// y may alias x (in-place activation).
#[test]
fn bias_silu_in_place() {
    let mut dev = Device::new(2, 1);
    let mut rng = Rng::new(3);
    let x = rng.randn(300, 1.0, 0.0);
    let bias = rng.randn(30, 1.0, 0.0);
    let want = reference::bias_act(&x, Some(&bias), None, 1, true, 1.0, 0.0);
    let dx = dev.upload(&x).unwrap();
    let db = dev.upload(&bias).unwrap();
    let shape = BiasActShape {
        n: 300,
        channels: 30,
        inner: 1,
    };
    let p = ElementwiseParams::new(dx, db, 0, dx, shape, 1.0, 0.0).unwrap();
    dev.launch(
        KernelModule::Elementwise,
        "bias_silu_v1_f32",
        launch_config(shape),
        &p,
    )
    .unwrap();
    assert_close(
        "bias_silu_v1_f32 in place",
        &dev.download::<f32>(dx, 300).unwrap(),
        &want,
        1e-5,
    );
}
