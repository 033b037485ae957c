//! `group_norm_v1_*` / `group_norm_silu_v1_*` against the CPU backend's `group_norm_act`.

use crate::check_op;
use crate::common::{assert_close, cpu, host, round_bf16, tol, Rng, CPU};
use crate::common::{check, rand_pair};
use crate::harness::{Device, SCHEDULES};
use cyberhost_engine::backends::{Backend, Unary};
use cyberhost_kernels::group_norm::{launch_config, GroupNormParams, GroupNormShape};
use cyberhost_kernels::{kernel_name, DType, KernelModule};

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
    let want = host(&CPU.group_norm_act(
        &cpu(&[n, c, s], &x),
        groups,
        Some(&cpu(&[c], &gamma)),
        Some(&cpu(&[c], &beta)),
        eps,
        silu.then_some(Unary::Silu),
    )?);

    let [dx, dg, db] = dev.upload_all(dtype, [&x, &gamma, &beta])?;
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
    let got = dev.download_as(dtype, dy, x.len())?;
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

crate::harness::sweep_tests!(sweep;
    group_norm_f32 => (DType::F32, false),
    group_norm_bf16 => (DType::Bf16, false),
    group_norm_silu_f32 => (DType::F32, true),
    group_norm_silu_bf16 => (DType::Bf16, true),
);

/// Channels not divisible into the groups, a rank-1 input and a gamma of the wrong length are
/// errors.
fn group_norm_bad_arguments<B: Backend>(be: &B) -> anyhow::Result<()> {
    let x = be.from_f32(&[1, 6, 4], &[1.0; 24])?;
    assert!(
        be.group_norm(&x, 4, None, None, 1e-5).is_err(),
        "6 channels in 4 groups"
    );
    assert!(be.group_norm(&x, 0, None, None, 1e-5).is_err(), "0 groups");
    let v = be.from_f32(&[6], &[1.0; 6])?;
    assert!(be.group_norm(&v, 3, None, None, 1e-5).is_err(), "rank 1");
    let g = be.from_f32(&[5], &[1.0; 5])?;
    assert!(
        be.group_norm(&x, 3, Some(&g), None, 1e-5).is_err(),
        "gamma of 5 for 6 channels"
    );
    Ok(())
}
crate::backend_test!(group_norm_bad_arguments);

// ------------------------------------------------------------------------------------------------
// through the CUDA backend (stand-in driver, or a GPU), against the CPU backend
// ------------------------------------------------------------------------------------------------

crate::storages_test!(group_norm_matches_cpu, |be, tol| {
    for (shape, groups) in [
        (vec![2usize, 6, 5, 7], 3),
        (vec![1, 8, 13], 4),
        (vec![2, 4, 3, 3, 5], 2),
        (vec![3, 5], 5),
    ] {
        let c = shape[1];
        let (x, xc) = rand_pair(&be, &shape, 110);
        let (g, gc) = rand_pair(&be, &[c], 111);
        let (b, bc) = rand_pair(&be, &[c], 112);
        check(
            &format!("group_norm {shape:?} affine"),
            &be,
            &be.group_norm(&x, groups, Some(&g), Some(&b), 1e-5).unwrap(),
            &CPU.group_norm(&xc, groups, Some(&gc), Some(&bc), 1e-5)
                .unwrap(),
            tol,
        );
        check_op!(format!("group_norm {shape:?} plain"), be, tol,
            group_norm(&x, groups, None, None, 1e-6) ~ (&xc, groups, None, None, 1e-6));
    }
    let (x, _) = rand_pair(&be, &[1, 6, 4], 1);
    assert!(be.group_norm(&x, 4, None, None, 1e-5).is_err());
});
