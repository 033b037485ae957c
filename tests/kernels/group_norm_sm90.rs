//! `group_norm[_silu]_sm90_c<CL>_v1_bf16` (`kernels/cuda/group_norm_sm90.cu`, single-pass GroupNorm
//! on thread-block clusters, sm_90a) against the CPU backend's `group_norm_act`, through the
//! sm_80 test's inputs (non-zero mean, non-unit spread, bf16-rounded x, gamma, beta; poisoned
//! output; relative L2 at the bf16 tolerance): every cluster size on every shape (blocks past a
//! small group's vectors hold nothing and merge as empty), groups starting off 16 bytes
//! (C / groups * S odd: masked edge vectors on both sides of a block's slice), S not a multiple
//! of the 8-element vector (vectors spanning two channels), several samples, SiLU and not.
//!
//! `group_norm_tokens_sm90_c<CL>_v1_bf16` (the token-layout GroupNorm in one pass) against the
//! CPU backend's `group_norm_tokens` the same way: every cluster size on every shape.

use crate::common::{assert_close, cpu, host, round_bf16, tol, Rng, CPU};
use crate::group_norm::inputs;
use crate::harness::Device;
use cyberhost_engine::backends::Backend;
use cyberhost_kernels::group_norm::GroupNormShape;
use cyberhost_kernels::group_norm_sm90::{
    launch_config, launch_config_tokens, plan, plan_tokens, with_cluster, with_cluster_tokens,
    GnSm90Params, GnTok90Params, CLUSTERS,
};
use cyberhost_kernels::{Arch, DType, KernelModule};

/// (N, C, S, groups).
const SHAPES: &[(usize, usize, usize, usize)] = &[
    (2, 6, 7, 3),     // 14 elements per group: groups 2..5 start off 16 bytes, <= 3 vectors
    (1, 3, 5, 1),     // one group of 15
    (1, 32, 50, 8),   // 200: whole vectors, channels of 50 (vectors span two channels)
    (2, 20, 301, 4),  // 1505: odd, 5 channels per group
    (3, 12, 1001, 4), // 3003: odd, several vectors per thread at CL 1
];

fn run(
    dev: &mut Device,
    (shape, i): ((usize, usize, usize, usize), usize),
    seed: u64,
) -> anyhow::Result<()> {
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
        dev.launch(
            KernelModule::GroupNormSm90,
            entry,
            launch_config(inp.gshape, p),
            &params,
        )?;
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

/// Counters of two `paper`-step ResNet GroupNorm + SiLU shapes (32 images, 32 groups; 1280
/// channels x 8x8 = 5 MiB, one block per group, and 640 channels x 2048 = 80 MiB, clusters of 2),
/// each as `group_norm.cu`'s v2 pair (stats, then apply) and as one `group_norm_silu_sm90`
/// launch: at sm_90a with `PTX_EMU_STATS=FILE PTX_EMU_SAMPLE_BLOCKS=2 PTX_EMU_GPU=h100-sxm
/// CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test -p cyberhost-suite --test kernels
/// group_norm_sm90_counters -- --ignored` (docs/performance.md, "Single-pass GroupNorm on
/// thread-block clusters"). Checks nothing: sampled launches leave outputs invalid.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_90a and PTX_EMU_STATS"]
fn group_norm_sm90_counters() {
    use cyberhost_kernels::group_norm::{
        launch_config_v2, workspace_f32s, GroupNorm2Params, GroupNormParams,
    };
    use cyberhost_kernels::kernel_name;
    let mut dev = Device::new(1, 0);
    assert!(
        matches!(dev, Device::Cuda { .. }),
        "run on the stand-in (CYBERHOST_KERNEL_TEST_DEVICE=stand-in)"
    );
    let dtype = DType::Bf16;
    for (c, s) in [(1280u64, 64u64), (640, 2048)] {
        let gshape = GroupNormShape {
            n: 32,
            c,
            s,
            groups: 32,
        };
        let len = (32 * c * s) as usize;
        let x = vec![1.0f32; len];
        let gamma = vec![1.0f32; c as usize];
        let [dx, dg, db] = dev.upload_all(dtype, [&x, &gamma, &gamma]).unwrap();
        let dy = dev.alloc_poisoned(len * 2).unwrap();
        let ws = dev
            .alloc_poisoned(workspace_f32s(gshape, dtype) as usize * 4)
            .unwrap();
        let p1 = GroupNormParams::new(dx, dg, db, dy, gshape, 1e-5).unwrap();
        let p2 = GroupNorm2Params::new(p1, ws, dtype).unwrap();
        let m = KernelModule::GroupNorm;
        let cfg = launch_config_v2(gshape, dtype);
        dev.launch(m, &kernel_name("group_norm_stats", 2, dtype), cfg, &p2)
            .unwrap();
        dev.launch(m, &kernel_name("group_norm_silu", 2, dtype), cfg, &p2)
            .unwrap();
        let p = plan(gshape, dtype).unwrap();
        let p90 = GnSm90Params::new([dx, dg, db, dy], gshape, 1e-5, p).unwrap();
        dev.launch(
            KernelModule::GroupNormSm90,
            p.entry(true),
            launch_config(gshape, p),
            &p90,
        )
        .unwrap();
        dev.download_as(dtype, dy, 1).unwrap();
    }
}

// ------------------------------------------------------------------------------------------------
// group_norm_tokens_sm90: planes (N·F, C, S) -> tokens (N, S, F, C), statistics over the F frames
// ------------------------------------------------------------------------------------------------

/// (N·F, C, S, groups), frames. C / G not a multiple of 8 (10: bundles of 4 groups, 40 channels,
/// 5 vectors per token row as in the paper; 6: 4 groups; 9: 8 groups, 72 channels; 1: 8 groups),
/// C / G = 16 and 40 (one group per bundle; 2 and 5 vectors per row), S not a multiple of a
/// block's units at any cluster size (40 = 5 units; 24; 2056 = 257 units, several per thread at
/// CL 1), F = 1 and F > 1 (a block's units crossing frames), S = 8 (one unit: the blocks of a
/// cluster past it hold nothing and merge as empty), several batch items and bundles. The plan
/// picks sector-aligned bundles (16-channel runs) for C / G = 16, 40, 4 and the last shape (C / G
/// = 10: 8 groups, 80 channels, an even NCV of 10), 8-channel runs for the rest.
const TOKEN_SHAPES: &[((usize, usize, usize, usize), usize)] = &[
    ((6, 40, 40, 4), 3),
    ((2, 24, 16, 4), 1),
    ((4, 72, 40, 8), 2),
    ((4, 48, 24, 3), 2),
    ((2, 80, 24, 2), 1),
    ((2, 40, 8, 4), 1),
    ((2, 16, 2056, 4), 2),
    ((4, 160, 24, 16), 2),
];

fn run_tokens(
    dev: &mut Device,
    (((nf, c, s, groups), frames), i): (((usize, usize, usize, usize), usize), usize),
    seed: u64,
) -> anyhow::Result<()> {
    if !crate::harness::runs_or_refuses(dev, KernelModule::GroupNormSm90) {
        return Ok(());
    }
    let dtype = DType::Bf16;
    let gshape = GroupNormShape {
        n: nf as u64,
        c: c as u64,
        s: s as u64,
        groups: groups as u64,
    };
    let bundle = match plan_tokens(gshape, frames as u64, dtype) {
        Some(p) => u64::from(p.bundle),
        None => panic!("case {i} must take the single pass"),
    };
    for (k, &cl) in CLUSTERS.iter().enumerate() {
        let mut rng = Rng::new(seed + k as u64);
        let x = round_bf16(&rng.randn(nf * c * s, 2.5, 1.5));
        let gamma = round_bf16(&rng.randn(c, 0.5, 1.0));
        let beta = round_bf16(&rng.randn(c, 0.5, 0.0));
        let eps = 1e-5;
        let want = host(&CPU.group_norm_tokens(
            &cpu(&[nf, c, s, 1], &x),
            frames,
            groups,
            Some(&cpu(&[c], &gamma)),
            Some(&cpu(&[c], &beta)),
            eps,
        )?);
        let [dx, dg, db] = dev.upload_all(dtype, [&x, &gamma, &beta])?;
        let dy = dev.alloc_poisoned(x.len() * 2)?;
        let p = with_cluster_tokens(gshape, frames as u64, bundle, cl);
        let params = GnTok90Params::new([dx, dg, db, dy], gshape, frames as u32, eps, p)?;
        let entry = p.entry();
        dev.launch(
            KernelModule::GroupNormSm90,
            entry,
            launch_config_tokens(gshape, frames as u64, p),
            &params,
        )?;
        let got = dev.download_as(dtype, dy, x.len())?;
        assert_close(
            &format!("{entry} (N·F, C, S) = ({nf}, {c}, {s}), {frames} frames, groups {groups}"),
            &got,
            &want,
            tol(true),
        );
    }
    Ok(())
}

fn token_cases() -> Vec<(((usize, usize, usize, usize), usize), usize)> {
    TOKEN_SHAPES.iter().copied().zip(0..).collect()
}

crate::harness::schedules_test!(
    group_norm_tokens_sm90_clusters,
    token_cases(),
    9900,
    run_tokens
);

/// The token-layout launch rule: the paper's Transformer2D entry shape in clusters of 8, shapes
/// the kernel cannot take declined (the backend runs the v2 stats + tokens pair), misaligned or
/// aliased x / y and frames not dividing the planes refused with a message.
#[test]
fn group_norm_tokens_sm90_rules() {
    let shape = GroupNormShape {
        n: 32,
        c: 320,
        s: 4096,
        groups: 32,
    };
    let p = plan_tokens(shape, 1, DType::Bf16).unwrap();
    let cfg = launch_config_tokens(shape, 1, p);
    assert_eq!(
        (cfg.grid, cfg.dynamic_smem_bytes),
        ([8, 8, 32], 64 * 45 * 16)
    );
    assert!(plan_tokens(GroupNormShape { s: 4100, ..shape }, 1, DType::Bf16).is_none());
    assert!(
        plan_tokens(shape, 3, DType::Bf16).is_none(),
        "3 frames of 32 planes"
    );
    let err = GnTok90Params::new([8, 16, 16, 32], shape, 1, 1e-5, p).unwrap_err();
    assert!(err.to_string().contains("16-byte aligned"), "{err}");
    let err = GnTok90Params::new([16, 16, 16, 16], shape, 1, 1e-5, p).unwrap_err();
    assert!(err.to_string().contains("distinct"), "{err}");
    let err = GnTok90Params::new([16, 16, 16, 32], shape, 3, 1e-5, p).unwrap_err();
    assert!(err.to_string().contains("3 frames"), "{err}");
}

/// Counters of the `paper` step's token-layout GroupNorm shapes (2 guidance halves x 16 frames =
/// 32 planes, 32 groups, bf16): the Transformer2D entries (F = 1) at 320 x 64x64, 640 x 32x32,
/// 1280 x 16x16 and 1280 x 8x8, and the motion-module entries (F = 16) at the last three (320 x
/// 64x64 over 16 frames does not fit a cluster: it keeps the pair), each as `group_norm.cu`'s
/// stats_v2 + group_norm_tokens_v2 pair and as one `group_norm_tokens_sm90` launch: at sm_90a
/// with `PTX_EMU_STATS=FILE PTX_EMU_SAMPLE_BLOCKS=2 CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo
/// test -p cyberhost-suite --test kernels group_norm_tokens_sm90_counters -- --ignored`, then
/// `gpu-report --gpu h100-sxm FILE` (docs/performance.md, branch `gntok90`). Checks nothing:
/// sampled launches leave outputs invalid.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_90a and PTX_EMU_STATS"]
fn group_norm_tokens_sm90_counters() {
    use cyberhost_kernels::group_norm::{
        launch_config_tokens as launch_config_pair, launch_config_v2, workspace_f32s,
        GnTokensParams, GroupNorm2Params, GroupNormParams,
    };
    use cyberhost_kernels::kernel_name;
    let mut dev = Device::new(1, 0);
    assert!(
        matches!(dev, Device::Cuda { .. }),
        "run on the stand-in (CYBERHOST_KERNEL_TEST_DEVICE=stand-in)"
    );
    let dtype = DType::Bf16;
    let shapes: [(u64, u64, u64); 7] = [
        (320, 4096, 1),
        (640, 1024, 1),
        (1280, 256, 1),
        (1280, 64, 1),
        (640, 1024, 16),
        (1280, 256, 16),
        (1280, 64, 16),
    ];
    for (c, s, frames) in shapes {
        let gshape = GroupNormShape {
            n: 32,
            c,
            s,
            groups: 32,
        };
        let len = (32 * c * s) as usize;
        let x = vec![1.0f32; len];
        let gamma = vec![1.0f32; c as usize];
        let [dx, dg, db] = dev.upload_all(dtype, [&x, &gamma, &gamma]).unwrap();
        let dy = dev.alloc_poisoned(len * 2).unwrap();
        let ws = dev
            .alloc_poisoned(workspace_f32s(gshape, dtype) as usize * 4)
            .unwrap();
        let p1 = GroupNormParams::new(dx, dg, db, dy, gshape, 1e-5).unwrap();
        let p2 = GroupNorm2Params::new(p1, ws, dtype).unwrap();
        let pt = GnTokensParams::new(p2, 0, frames as u32).unwrap();
        let m = KernelModule::GroupNorm;
        dev.launch(
            m,
            &kernel_name("group_norm_stats", 2, dtype),
            launch_config_v2(gshape, dtype),
            &p2,
        )
        .unwrap();
        dev.launch(
            m,
            &kernel_name("group_norm_tokens", 2, dtype),
            launch_config_pair(gshape, dtype),
            &pt,
        )
        .unwrap();
        let p = plan_tokens(gshape, frames, dtype).unwrap();
        let p90 = GnTok90Params::new([dx, dg, db, dy], gshape, frames as u32, 1e-5, p).unwrap();
        dev.launch(
            KernelModule::GroupNormSm90,
            p.entry(),
            launch_config_tokens(gshape, frames, p),
            &p90,
        )
        .unwrap();
        dev.download_as(dtype, dy, 1).unwrap();
    }
}
