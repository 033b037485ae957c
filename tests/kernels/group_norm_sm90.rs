//! `group_norm[_silu]_sm90_c<CL>_v1_bf16` (`kernels/cuda/group_norm_sm90.cu`, single-pass GroupNorm
//! on thread-block clusters, sm_90a) against the CPU backend's `group_norm_act`, through the
//! sm_80 test's inputs (non-zero mean, non-unit spread, bf16-rounded x, gamma, beta; poisoned
//! output; relative L2 at the bf16 tolerance): every cluster size on every shape (blocks past a
//! small group's vectors hold nothing and merge as empty), groups starting off 16 bytes
//! (C / groups * S odd: masked edge vectors on both sides of a block's slice), S not a multiple
//! of the 8-element vector (vectors spanning two channels), several samples, SiLU and not.

use crate::common::{assert_close, tol};
use crate::group_norm::inputs;
use crate::harness::Device;
use cyberhost_kernels::group_norm::GroupNormShape;
use cyberhost_kernels::group_norm_sm90::{
    launch_config, plan, with_cluster, GnSm90Params, CLUSTERS,
};
use cyberhost_kernels::{Arch, DType, KernelModule};

/// (N, C, S, groups).
const SHAPES: &[(usize, usize, usize, usize)] = &[
    (2, 6, 7, 3),      // 14 elements per group: groups 2..5 start off 16 bytes, <= 3 vectors
    (1, 3, 5, 1),      // one group of 15
    (1, 32, 50, 8),    // 200: whole vectors, channels of 50 (vectors span two channels)
    (2, 20, 301, 4),   // 1505: odd, 5 channels per group
    (3, 12, 1001, 4),  // 3003: odd, several vectors per thread at CL 1
];

fn run(dev: &mut Device, (shape, i): ((usize, usize, usize, usize), usize), seed: u64) -> anyhow::Result<()> {
    if !crate::harness::runs_or_refuses(dev, KernelModule::GroupNormSm90) {
        return Ok(());
    }
    let (n, c, s, groups) = shape;
    let dtype = DType::Bf16;
    for (k, &cl) in CLUSTERS.iter().enumerate() {
        let silu = (i + k) % 2 == 1;
        let inp = inputs(dtype, shape, silu, seed + k as u64, (2.5, 1.5))?;
        let [dx, dg, db] = dev.upload_all(dtype, [&inp.x, &inp.gamma, &inp.beta])?;
        let dy = dev.alloc_poisoned(inp.x.len() * 2)?;
        let p = with_cluster(inp.gshape, cl);
        let params = GnSm90Params::new([dx, dg, db, dy], inp.gshape, inp.eps, p)?;
        let entry = p.entry(silu);
        dev.launch(KernelModule::GroupNormSm90, entry, launch_config(inp.gshape, p), &params)?;
        let got = dev.download_as(dtype, dy, inp.x.len())?;
        assert_close(
            &format!("{entry} (N, C, S) = ({n}, {c}, {s}), groups {groups}"),
            &got,
            &inp.want,
            tol(true),
        );
    }
    Ok(())
}

fn cases() -> Vec<((usize, usize, usize, usize), usize)> {
    SHAPES.iter().copied().zip(0..).collect()
}

crate::harness::schedules_test!(group_norm_sm90_clusters, cases(), 9800, run);

/// The module is Hopper-only; the launch rule keeps a block's slice in shared memory and
/// declines what does not fit (the backend runs `group_norm.cu`'s v2 then), and misaligned
/// x / y are refused with a message.
#[test]
fn group_norm_sm90_rules() {
    assert_eq!(KernelModule::GroupNormSm90.arch(), Arch::Sm90a);
    let shape = GroupNormShape {
        n: 2,
        c: 64,
        s: 4096,
        groups: 32,
    };
    let p = plan(shape, DType::Bf16).unwrap();
    assert_eq!((p.cluster, p.vpc), (1, 1024));
    let cfg = launch_config(shape, p);
    assert_eq!((cfg.grid, cfg.dynamic_smem_bytes), ([1, 32, 2], 16384));
    let err = GnSm90Params::new([8, 16, 16, 16], shape, 1e-5, p).unwrap_err();
    assert!(err.to_string().contains("16-byte aligned"), "{err}");
}
