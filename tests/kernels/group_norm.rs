//! `group_norm_v1_*` / `group_norm_silu_v1_*` against `reference::group_norm`.

use crate::harness::{assert_close, from_bf16, round_bf16, to_bf16, tol, Device, Rng, SCHEDULES};
use cyberhost_kernels::group_norm::{launch_config, GroupNormParams, GroupNormShape};
use cyberhost_kernels::{kernel_name, reference, DType, KernelModule};
use half::bf16;

/// (N, C, S, groups): group sizes below, around and well above the 256 threads of a block, none a
/// multiple of it; S odd; one group per channel; one group for all channels.
const SHAPES: &[(usize, usize, usize, usize)] = &[
    (2, 6, 7, 3),
    (1, 32, 50, 8),
    (2, 64, 9, 32),
    (1, 4, 301, 2),
    (1, 3, 5, 1),
    (2, 64, 1000, 32),
];

fn run(
    dev: &mut Device,
    dtype: DType,
    shape: (usize, usize, usize, usize),
    silu: bool,
    seed: u64,
) -> anyhow::Result<()> {
    let (n, c, s, groups) = shape;
    let bf = dtype == DType::Bf16;
    let mut rng = Rng::new(seed);
    let round = |v: Vec<f32>| if bf { round_bf16(&v) } else { v };
    // Non-zero mean and non-unit spread so both statistics matter.
    let x = round(rng.randn(n * c * s, 2.5, 1.5));
    let gamma = round(rng.randn(c, 0.5, 1.0));
    let beta = round(rng.randn(c, 0.5, 0.0));
    let eps = 1e-5;
    let want = reference::group_norm(&x, &gamma, &beta, n, c, s, groups, eps, silu);

    let up = |dev: &mut Device, v: &[f32]| {
        if bf {
            dev.upload(&to_bf16(v))
        } else {
            dev.upload(v)
        }
    };
    let (dx, dg, db) = (up(dev, &x)?, up(dev, &gamma)?, up(dev, &beta)?);
    let dy = dev.alloc_poisoned(x.len() * dtype.size_in_bytes())?;
    let gshape = GroupNormShape {
        n: n as u64,
        c: c as u64,
        s: s as u64,
        groups: groups as u64,
    };
    let p = GroupNormParams::new(dx, dg, db, dy, gshape, eps)?;
    let entry = kernel_name(
        if silu {
            "group_norm_silu"
        } else {
            "group_norm"
        },
        1,
        dtype,
    );
    dev.launch(KernelModule::GroupNorm, &entry, launch_config(gshape), &p)?;
    let got = if bf {
        from_bf16(&dev.download::<bf16>(dy, x.len())?)
    } else {
        dev.download::<f32>(dy, x.len())?
    };
    assert_close(
        &format!("{entry} (N, C, S) = ({n}, {c}, {s}), groups {groups}"),
        &got,
        &want,
        tol(bf),
    );
    Ok(())
}

fn sweep(dtype: DType, silu: bool) {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, &shape) in SHAPES.iter().enumerate() {
            run(
                &mut dev,
                dtype,
                shape,
                silu,
                (i * 10 + j) as u64 + silu as u64 * 1000,
            )
            .unwrap();
        }
    }
}

#[test]
fn group_norm_f32() {
    sweep(DType::F32, false);
}

#[test]
fn group_norm_bf16() {
    sweep(DType::Bf16, false);
}

#[test]
fn group_norm_silu_f32() {
    sweep(DType::F32, true);
}

#[test]
fn group_norm_silu_bf16() {
    sweep(DType::Bf16, true);
}
