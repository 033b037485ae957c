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

/// One test's inputs: x of `shape` ~ randn(scale, offset), gamma, beta (rounded to bf16 for bf16),
/// eps, the CPU backend's output and the kernels' shape.
pub(crate) struct Inputs {
    pub x: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
    pub want: Vec<f32>,
    pub gshape: GroupNormShape,
}

pub(crate) fn inputs(
    dtype: DType,
    shape: (usize, usize, usize, usize),
    silu: bool,
    seed: u64,
    (scale, offset): (f32, f32),
) -> anyhow::Result<Inputs> {
    let (n, c, s, groups) = shape;
    let bf = dtype == DType::Bf16;
    let mut rng = Rng::new(seed);
    let round = |v: Vec<f32>| if bf { round_bf16(&v) } else { v };
    let x = round(rng.randn(n * c * s, scale, offset));
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
    let gshape = GroupNormShape {
        n: n as u64,
        c: c as u64,
        s: s as u64,
        groups: groups as u64,
    };
    Ok(Inputs {
        x,
        gamma,
        beta,
        eps,
        want,
        gshape,
    })
}

fn run(
    dev: &mut Device,
    dtype: DType,
    shape: (usize, usize, usize, usize),
    silu: bool,
    seed: u64,
) -> anyhow::Result<()> {
    let (n, c, s, groups) = shape;
    let bf = dtype == DType::Bf16;
    // Non-zero mean and non-unit spread so both statistics matter.
    let inp = inputs(dtype, shape, silu, seed, (2.5, 1.5))?;

    let [dx, dg, db] = dev.upload_all(dtype, [&inp.x, &inp.gamma, &inp.beta])?;
    let dy = dev.alloc_poisoned(inp.x.len() * dtype.size_in_bytes())?;
    let p = GroupNormParams::new(dx, dg, db, dy, inp.gshape, inp.eps)?;
    let entry = kernel_name(
        if silu {
            "group_norm_silu"
        } else {
            "group_norm"
        },
        1,
        dtype,
    );
    dev.launch(
        KernelModule::GroupNorm,
        &entry,
        launch_config(inp.gshape),
        &p,
    )?;
    let got = dev.download_as(dtype, dy, inp.x.len())?;
    assert_close(
        &format!("{entry} (N, C, S) = ({n}, {c}, {s}), groups {groups}"),
        &got,
        &inp.want,
        tol(bf),
    );
    Ok(())
}

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
        // C / groups * S = 2 * 4099: the v2 split reduction (2 chunks per group)
        (vec![2, 4, 4099], 2),
        // 4 * 603 = 2412: v2 with one chunk per group
        (vec![2, 8, 3, 201], 2),
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

// ------------------------------------------------------------------------------------------------
// token layout: group_norm_tokens (v2 stats + group_norm_tokens_v2), tokens_planes_add_v2
// ------------------------------------------------------------------------------------------------

/// (N·F, C, H, W), frames, groups: C and H·W not multiples of the (64 or 32) x 32 tile (partial
/// tiles on both edges), several frames per batch item (statistics merged over frames), F = 1
/// (the plain GroupNorm), a group of 2 x 4111 elements per frame (two stats chunks); odd C or H·W
/// (the scalar path) and, from `[4, 72, 5, 8]` on, C and H·W whole 16-byte vectors (the vector
/// path): C = 72 and H·W = 40 past the tiles, 64 groups of one channel in one tile (every warp
/// merging 8 groups), 3 stats chunks per frame.
const TOKEN_CASES: &[([usize; 4], usize, usize)] = &[
    ([6, 40, 5, 7], 3, 8),
    ([2, 33, 9, 4], 1, 3),
    ([4, 12, 3, 11], 4, 4),
    ([2, 4, 1, 4111], 2, 2),
    ([3, 64, 8, 8], 3, 32),
    ([4, 72, 5, 8], 2, 8),
    ([2, 64, 4, 6], 2, 64),
    ([2, 16, 2, 2052], 2, 4),
];

crate::storages_test!(group_norm_tokens_matches_cpu, |be, tol| {
    for (i, &(shape, frames, groups)) in TOKEN_CASES.iter().enumerate() {
        let c = shape[1];
        let seed = 120 + 3 * i as u64;
        let (x, xc) = rand_pair(&be, &shape, seed);
        let (g, gc) = rand_pair(&be, &[c], seed + 1);
        let (b, bc) = rand_pair(&be, &[c], seed + 2);
        check(
            &format!("group_norm_tokens {shape:?}, {frames} frames, {groups} groups"),
            &be,
            &be.group_norm_tokens(&x, frames, groups, Some(&g), Some(&b), 1e-6)
                .unwrap(),
            &CPU.group_norm_tokens(&xc, frames, groups, Some(&gc), Some(&bc), 1e-6)
                .unwrap(),
            tol,
        );
        // tokens (N, H·W, F, C) back to planes with a residual
        let n = shape[0] / frames;
        let tshape = [n, shape[2] * shape[3], frames, c];
        let (t, tc) = rand_pair(&be, &tshape, seed + 50);
        let (r, rc) = rand_pair(&be, &shape, seed + 51);
        check_op!(format!("tokens_planes_add {shape:?}, {frames} frames"), be, tol,
            tokens_planes_add(&t, &r, frames) ~ (&tc, &rc, frames));
    }
    let (x, _) = rand_pair(&be, &[4, 6, 2, 2], 1);
    assert!(
        be.group_norm_tokens(&x, 3, 2, None, None, 1e-5).is_err(),
        "3 frames of 4 planes"
    );
    assert!(
        be.group_norm_tokens(&x, 2, 4, None, None, 1e-5).is_err(),
        "6 channels in 4 groups"
    );
    let (t, _) = rand_pair(&be, &[2, 4, 2, 5], 2);
    assert!(
        be.tokens_planes_add(&t, &x, 2).is_err(),
        "80 tokens for 96 planes"
    );
});

// An up block's `concat(h, skip)` with h from `tokens_planes_add`: the kernel writes the first C
// channels of the (N·F, C + C_t, H, W) output, the tail is copied after them. Odd C_t; the scalar
// and the vector path of the kernel; one frame and several.
crate::storages_test!(tokens_planes_add_concat_matches_cpu, |be, tol| {
    for (i, &(shape, frames, c_t)) in [
        ([6usize, 40, 5, 7], 3usize, 3usize),
        ([2, 33, 9, 4], 1, 17),
        ([4, 72, 5, 8], 2, 5),
    ]
    .iter()
    .enumerate()
    {
        let seed = 190 + 4 * i as u64;
        let tshape = [shape[0] / frames, shape[2] * shape[3], frames, shape[1]];
        let (t, tc) = rand_pair(&be, &tshape, seed);
        let (r, rc) = rand_pair(&be, &shape, seed + 1);
        let (tl, tlc) = rand_pair(&be, &[shape[0], c_t, shape[2], shape[3]], seed + 2);
        check_op!(format!("tokens_planes_add_concat {shape:?}, {frames} frames, tail {c_t}"),
            be, tol, tokens_planes_add_concat(&t, &r, frames, &tl) ~ (&tc, &rc, frames, &tlc));
    }
    let (t, _) = rand_pair(&be, &[2, 20, 2, 6], 3);
    let (r, _) = rand_pair(&be, &[4, 6, 4, 5], 4);
    let (bad, _) = rand_pair(&be, &[4, 3, 4, 6], 5);
    let err = be.tokens_planes_add_concat(&t, &r, 2, &bad).unwrap_err();
    assert!(err.to_string().contains("tail"), "{err}");
});

/// `tokens_planes_add_v2` into the channel slice `[c0, c0 + C)` of poisoned `(N·F, y_c, H, W)`
/// planes (`GnTokensParams::with_out_channels`): the slice against the CPU's `tokens_planes_add`,
/// every byte outside it still poison. Scalar path (odd C, odd H·W) and vector path (C and H·W
/// whole 16-byte vectors), first and middle slices, several frames; both dtypes.
#[test]
fn tokens_planes_add_channel_slice_output() {
    use crate::harness::POISON;
    use cyberhost_kernels::group_norm::{launch_config_tokens, GnTokensParams};
    let cases: [([usize; 4], usize, usize, usize); 4] = [
        ([6, 40, 5, 7], 3, 43, 0),
        ([2, 33, 9, 4], 1, 70, 21),
        ([4, 72, 5, 8], 2, 80, 0),
        ([2, 64, 4, 6], 2, 136, 64),
    ];
    let mut dev = Device::new(1, 0);
    for dtype in [DType::Bf16, DType::F32] {
        let bf = dtype == DType::Bf16;
        let es = dtype.size_in_bytes();
        for (i, &(shape, frames, y_c, c0)) in cases.iter().enumerate() {
            let [nf, c, hh, ww] = shape;
            let sp = hh * ww;
            let mut rng = Rng::new(230 + i as u64);
            let round = |v: Vec<f32>| if bf { round_bf16(&v) } else { v };
            let t = round(rng.randn(nf * sp * c, 1.0, 0.0));
            let r = round(rng.randn(nf * c * sp, 1.0, 0.5));
            let tshape = [nf / frames, sp, frames, c];
            let want = host(
                &CPU.tokens_planes_add(&cpu(&tshape, &t), &cpu(&shape, &r), frames)
                    .unwrap(),
            );
            let [dt, dr] = dev.upload_all(dtype, [&t, &r]).unwrap();
            let (plane, bytes) = (y_c * sp, nf * y_c * sp * es);
            let base = dev.alloc_poisoned(bytes).unwrap();
            let gshape = GroupNormShape {
                n: nf as u64,
                c: c as u64,
                s: sp as u64,
                groups: 1,
            };
            let y = base + (c0 * sp * es) as u64;
            let pt = GnTokensParams::tokens_planes_add(dt, dr, y, gshape, frames as u32)
                .unwrap()
                .with_out_channels(y_c as u32)
                .unwrap();
            let entry = kernel_name("tokens_planes_add", 2, dtype);
            let what = format!("{entry} {shape:?}, {frames} frames, into channels {c0}.. of {y_c}");
            dev.launch(
                KernelModule::GroupNorm,
                &entry,
                launch_config_tokens(gshape, dtype),
                &pt,
            )
            .unwrap();
            let raw = dev.download::<u8>(base, bytes).unwrap();
            for (k, b) in raw.iter().enumerate() {
                let ch = k / es / sp % y_c;
                if ch < c0 || ch >= c0 + c {
                    assert_eq!(
                        *b, POISON,
                        "{what}: byte {k} (channel {ch}) outside the slice written"
                    );
                }
            }
            let all = dev.download_as(dtype, base, nf * plane).unwrap();
            let got: Vec<f32> = (0..nf)
                .flat_map(|im| all[im * plane + c0 * sp..im * plane + (c0 + c) * sp].to_vec())
                .collect();
            assert_close(&what, &got, &want, tol(bf));
        }
    }
    let shape = GroupNormShape {
        n: 2,
        c: 8,
        s: 4,
        groups: 1,
    };
    let err = GnTokensParams::tokens_planes_add(0, 0, 0, shape, 1)
        .unwrap()
        .with_out_channels(7)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot hold 8 channels"), "{err}");
}

// Transformer2DModel's entry and exit with 1x1-conv projections: (N, C, H, W), groups, O; C, O
// and H·W not multiples of the tiles.
crate::storages_test!(transformer_projections_match_cpu, |be, tol| {
    for (i, &(shape, groups, o)) in [
        ([2usize, 12, 5, 7], 3usize, 20usize),
        ([1, 40, 6, 6], 8, 40),
    ]
    .iter()
    .enumerate()
    {
        let (n, c, hw) = (shape[0], shape[1], shape[2] * shape[3]);
        let seed = 160 + 10 * i as u64;
        let (x, xc) = rand_pair(&be, &shape, seed);
        let (g, gc) = rand_pair(&be, &[c], seed + 1);
        let (b, bc) = rand_pair(&be, &[c], seed + 2);
        let (w, wc) = rand_pair(&be, &[o, c, 1, 1], seed + 3);
        let (wb, wbc) = rand_pair(&be, &[o], seed + 4);
        check_op!(format!("group_norm_conv1x1_tokens {shape:?} -> {o}"), be, tol,
            group_norm_conv1x1_tokens(&x, groups, Some(&g), Some(&b), 1e-6, &w, Some(&wb))
            ~ (&xc, groups, Some(&gc), Some(&bc), 1e-6, &wc, Some(&wbc)));
        // exit: tokens (N, H·W, o) -> (N, C, H, W) + x
        let (t, tc) = rand_pair(&be, &[n, hw, o], seed + 5);
        let (w2, w2c) = rand_pair(&be, &[c, o, 1, 1], seed + 6);
        let (b2, b2c) = rand_pair(&be, &[c], seed + 7);
        check_op!(format!("tokens_conv1x1_planes_add {shape:?} <- {o}"), be, tol,
            tokens_conv1x1_planes_add(&t, &w2, Some(&b2), &x)
            ~ (&tc, &w2c, Some(&b2c), &xc));
    }
});

// ------------------------------------------------------------------------------------------------
// v2: split reduction (group_norm_stats_v2_* then group_norm[_silu]_v2_*), launched directly
// ------------------------------------------------------------------------------------------------

/// One v2 case: shape (N, C, S, groups), input mean and spread, whether y aliases x, and whether
/// x and y start one element past a 16-byte boundary (the kernels' all-scalar path).
struct V2Case {
    shape: (usize, usize, usize, usize),
    mean: f32,
    sigma: f32,
    alias: bool,
    misaligned: bool,
}

const fn v2_case(shape: (usize, usize, usize, usize), mean: f32, alias: bool) -> V2Case {
    V2Case {
        shape,
        mean,
        sigma: 1.5,
        alias,
        misaligned: false,
    }
}

/// The v1 shapes (one chunk per group, groups starting off 16-byte boundaries), S = 1, C / G = 1
/// with odd S, one group over many chunks, large odd S (25 chunks per group, every group and chunk
/// edge misaligned), y aliasing x, and a mean 1000 sigma far from zero (a one-pass
/// E[x^2] - E[x]^2 in f32 would lose the variance entirely: 1e6 * 2^-24 * sqrt(n) >> 1).
const V2_CASES: &[V2Case] = &[
    v2_case((2, 6, 7, 3), 2.5, false),
    v2_case((1, 32, 50, 8), 2.5, true),
    v2_case((2, 64, 9, 32), 2.5, false),
    v2_case((1, 4, 301, 2), 2.5, false),
    v2_case((1, 3, 5, 1), 2.5, false),
    v2_case((2, 6, 1, 3), 2.5, false),
    v2_case((2, 8, 1001, 8), -3.0, false),
    v2_case((2, 4, 8195, 1), 2.5, true),
    v2_case((1, 4, 100_003, 2), 2.5, false),
    V2Case {
        shape: (1, 2, 65_537, 1),
        mean: 1000.0,
        sigma: 1.0,
        alias: true,
        misaligned: false,
    },
    V2Case {
        shape: (2, 4, 4099, 2),
        mean: 2.5,
        sigma: 1.5,
        alias: false,
        misaligned: true,
    },
    V2Case {
        shape: (1, 2, 9000, 1),
        mean: 2.5,
        sigma: 1.5,
        alias: true,
        misaligned: true,
    },
];

/// Derived tolerance of v2 against the f64 reference: v1's storage tolerance (output rounding:
/// bf16 2^-8 per element, f32 a few 2^-24) plus the error of the f32 group mean, which shifts every
/// normalised output by delta_mean / sigma. Quantities of magnitude |mu| are rounded once per step
/// on the mean's path: the 32 in-register adds of a stats thread and the 5 + 3 levels of the block
/// sum (the chunk mean), then the ceil(chunks / 256) sequential Chan merges of an apply thread and
/// the 5 + 3 butterfly levels of the block merge; random-walk growth sqrt(steps) * 2^-24 * |mu| /
/// sigma, times 4 for a 4-sigma bound. (The variance is a sum of squared deviations from a
/// chunk's own mean, so its error is relative to sigma^2 and below this term.)
fn v2_tol(bf: bool, mean: f32, sigma: f32, chunks: u64) -> f64 {
    let steps = 32.0 + 8.0 + chunks.div_ceil(256) as f64 + 8.0;
    let u = 2f64.powi(-24);
    tol(bf) + 4.0 * steps.sqrt() * u * (1.0 + (mean / sigma).abs() as f64)
}

/// A case's buffers: x (after one poison element when misaligned: the buffers start aligned),
/// gamma, beta, y (x itself when aliased, else poisoned) and a poisoned workspace of `ws_f32s`.
/// Returns the v1 params, the workspace, y's buffer start and the leading elements.
fn upload_case(
    dev: &mut Device,
    dtype: DType,
    case: &V2Case,
    x: &[f32],
    inp: &Inputs,
    ws_f32s: u64,
) -> anyhow::Result<(GroupNormParams, u64, u64, usize)> {
    let lead = case.misaligned as usize;
    let sz = dtype.size_in_bytes();
    let mut xl = vec![f32::NAN; lead];
    xl.extend_from_slice(x);
    let [dx0, dg, db] = dev.upload_all(dtype, [&xl, &inp.gamma, &inp.beta])?;
    let dy0 = if case.alias {
        dx0
    } else {
        dev.alloc_poisoned(xl.len() * sz)?
    };
    let (dx, dy) = (dx0 + (lead * sz) as u64, dy0 + (lead * sz) as u64);
    let ws = dev.alloc_poisoned(ws_f32s as usize * 4)?;
    let p1 = GroupNormParams::new(dx, dg, db, dy, inp.gshape, inp.eps)?;
    Ok((p1, ws, dy0, lead))
}

fn run_v2(
    dev: &mut Device,
    dtype: DType,
    case: &V2Case,
    silu: bool,
    seed: u64,
) -> anyhow::Result<()> {
    use cyberhost_kernels::group_norm::{
        chunks, launch_config_v2, workspace_f32s, GroupNorm2Params,
    };
    let (n, c, s, groups) = case.shape;
    let bf = dtype == DType::Bf16;
    let inp = inputs(dtype, case.shape, silu, seed, (case.sigma, case.mean))?;

    let (p1, ws, dy0, lead) = upload_case(
        dev,
        dtype,
        case,
        &inp.x,
        &inp,
        workspace_f32s(inp.gshape, dtype),
    )?;
    let p = GroupNorm2Params::new(p1, ws, dtype)?;
    let cfg = launch_config_v2(inp.gshape, dtype);
    let op = if silu {
        "group_norm_silu"
    } else {
        "group_norm"
    };
    dev.launch(
        KernelModule::GroupNorm,
        &kernel_name("group_norm_stats", 2, dtype),
        cfg,
        &p,
    )?;
    let entry = kernel_name(op, 2, dtype);
    dev.launch(KernelModule::GroupNorm, &entry, cfg, &p)?;
    let got = dev.download_as(dtype, dy0, lead + inp.x.len())?[lead..].to_vec();
    let k = chunks(inp.gshape, dtype);
    assert_close(
        &format!(
            "{entry} (N, C, S) = ({n}, {c}, {s}), groups {groups}, {k} chunks, mean {}, alias {}, \
             misaligned {}",
            case.mean, case.alias, case.misaligned
        ),
        &got,
        &inp.want,
        v2_tol(bf, case.mean, case.sigma, k),
    );
    Ok(())
}

/// Version `version` (1: SHAPES through `run`, 2: V2_CASES through `run_v2`) under every schedule.
fn sweep(dtype: DType, silu: bool, version: u32) {
    let silu_seed = silu as u64 * 1000;
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        if version == 1 {
            for (j, &shape) in SHAPES.iter().enumerate() {
                run(
                    &mut dev,
                    dtype,
                    shape,
                    silu,
                    (i * 10 + j) as u64 + silu_seed,
                )
                .unwrap();
            }
            continue;
        }
        for (j, case) in V2_CASES.iter().enumerate() {
            // The big cases once (first schedule): they take most of the emulator's time.
            if i > 0 && case.shape.2 > 10_000 {
                continue;
            }
            run_v2(
                &mut dev,
                dtype,
                case,
                silu,
                (i * 100 + j) as u64 + silu_seed + 7,
            )
            .unwrap();
        }
    }
}

crate::harness::sweep_tests!(sweep;
    group_norm_f32 => (DType::F32, false, 1),
    group_norm_bf16 => (DType::Bf16, false, 1),
    group_norm_silu_f32 => (DType::F32, true, 1),
    group_norm_silu_bf16 => (DType::Bf16, true, 1),
    group_norm_v2_f32 => (DType::F32, false, 2),
    group_norm_v2_bf16 => (DType::Bf16, false, 2),
    group_norm_silu_v2_f32 => (DType::F32, true, 2),
    group_norm_silu_v2_bf16 => (DType::Bf16, true, 2),
);

// ------------------------------------------------------------------------------------------------
// channels-last: group_norm_stats_nhwc_v1 + group_norm[_silu]_nhwc_v1 over (N, S, C) rows
// ------------------------------------------------------------------------------------------------

/// Channels-last cases (the V2Case fields; x and y are (N, S, C) rows): C / G = 10, 5 and 48 (groups
/// off the 16-byte vectors, groups straddling the 64-channel tiles), C / G = 1, S not a multiple of
/// the 512-row chunk (up to 3 chunks), C = 6 (not a multiple of 8: the element-wise path), one chunk of 1 row, y
/// aliasing x, pointers one element off 16 bytes, and a mean 1000 sigma far from zero.
const NHWC_CASES: &[V2Case] = &[
    v2_case((2, 40, 130, 4), 2.5, false),
    v2_case((1, 320, 300, 32), -3.0, false),
    v2_case((2, 96, 1031, 2), 2.5, true),
    v2_case((1, 24, 129, 24), 2.5, false),
    v2_case((2, 6, 7, 3), 2.5, false),
    v2_case((3, 16, 1, 2), 2.5, false),
    V2Case {
        shape: (1, 64, 1000, 8),
        mean: 1000.0,
        sigma: 1.0,
        alias: true,
        misaligned: false,
    },
    V2Case {
        shape: (2, 40, 700, 8),
        mean: 2.5,
        sigma: 1.5,
        alias: false,
        misaligned: true,
    },
];

/// (N, C, S) planes as (N, S, C) rows.
fn planes_to_rows(x: &[f32], n: usize, c: usize, s: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for i in 0..n {
        for ch in 0..c {
            for p in 0..s {
                out[(i * s + p) * c + ch] = x[(i * c + ch) * s + p];
            }
        }
    }
    out
}

/// Derived tolerance of the channels-last pair, as [`v2_tol`] with its steps on the mean's path:
/// the 16 rows of a stats thread, 2 shuffle merges, the 8 warps, ceil(C/G / 32) in-order channel
/// merges and 5 butterfly levels; then ceil(parts / 32) in-order merges of an apply lane over the
/// group's `parts` partials (chunks x tiles spanned) and 5 butterfly levels.
fn nhwc_tol(bf: bool, mean: f32, sigma: f32, cpg: usize, parts: u64) -> f64 {
    let steps = 16.0 + 2.0 + 8.0 + cpg.div_ceil(32) as f64 + 5.0 + parts.div_ceil(32) as f64 + 5.0;
    let u = 2f64.powi(-24);
    tol(bf) + 4.0 * steps.sqrt() * u * (1.0 + (mean / sigma).abs() as f64)
}

fn run_nhwc(
    dev: &mut Device,
    dtype: DType,
    case: &V2Case,
    silu: bool,
    seed: u64,
) -> anyhow::Result<()> {
    use cyberhost_kernels::group_norm::{
        launch_config_nhwc, nhwc_chunks, nhwc_tiles, workspace_f32s_nhwc, GroupNorm2Params,
    };
    let (n, c, s, groups) = case.shape;
    let bf = dtype == DType::Bf16;
    let inp = inputs(dtype, case.shape, silu, seed, (case.sigma, case.mean))?;
    let rows = planes_to_rows(&inp.x, n, c, s);
    let ws_f32s = workspace_f32s_nhwc(inp.gshape, dtype);
    let (p1, ws, dy0, lead) = upload_case(dev, dtype, case, &rows, &inp, ws_f32s)?;
    let p = GroupNorm2Params::nhwc(p1, ws, dtype)?;
    let cfg = launch_config_nhwc(inp.gshape, dtype);
    let op = if silu {
        "group_norm_silu_nhwc"
    } else {
        "group_norm_nhwc"
    };
    let m = KernelModule::GroupNorm;
    dev.launch(m, &kernel_name("group_norm_stats_nhwc", 1, dtype), cfg, &p)?;
    let entry = kernel_name(op, 1, dtype);
    dev.launch(m, &entry, cfg, &p)?;
    let got = dev.download_as(dtype, dy0, lead + rows.len())?[lead..].to_vec();
    let cpg = c / groups;
    let parts = nhwc_chunks(inp.gshape) * nhwc_tiles(inp.gshape, dtype).min(2);
    assert_close(
        &format!(
            "{entry} (N, C, S) = ({n}, {c}, {s}), groups {groups}, mean {}, alias {}, misaligned {}",
            case.mean, case.alias, case.misaligned
        ),
        &got,
        &planes_to_rows(&inp.want, n, c, s),
        nhwc_tol(bf, case.mean, case.sigma, cpg, parts),
    );
    Ok(())
}

/// The channels-last cases under every schedule.
fn sweep_nhwc(dtype: DType, silu: bool) {
    let silu_seed = silu as u64 * 1000;
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, case) in NHWC_CASES.iter().enumerate() {
            run_nhwc(
                &mut dev,
                dtype,
                case,
                silu,
                (i * 100 + j) as u64 + silu_seed + 11,
            )
            .unwrap();
        }
    }
}

crate::harness::sweep_tests!(sweep_nhwc;
    group_norm_nhwc_f32 => (DType::F32, false),
    group_norm_nhwc_bf16 => (DType::Bf16, false),
    group_norm_silu_nhwc_f32 => (DType::F32, true),
    group_norm_silu_nhwc_bf16 => (DType::Bf16, true),
);

// ------------------------------------------------------------------------------------------------
// channels-last token layouts: group_norm_tokens_nhwc_v1 (after the stats launch) and
// tokens_planes_add_nhwc_v1, the motion module's entry and exit on channels-last planes
// ------------------------------------------------------------------------------------------------

/// Frames of a channels-last tokens case: the smallest divisor F > 1 of S up to 16 (S = F·H·W), else 1.
fn case_frames(s: usize) -> usize {
    (2..=16).find(|f| s % f == 0).unwrap_or(1)
}

/// Per item, rows `f·HW + q` of `(N, F·HW, C)` rows moved to `q·F + f` (the `(N, HW, F, C)` tokens).
fn rows_to_tokens(rows: &[f32], n: usize, frames: usize, hw: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows.len()];
    for i in 0..n {
        for f in 0..frames {
            for q in 0..hw {
                let src = ((i * frames + f) * hw + q) * c;
                let dst = ((i * hw + q) * frames + f) * c;
                out[dst..dst + c].copy_from_slice(&rows[src..src + c]);
            }
        }
    }
    out
}

/// `group_norm_tokens_nhwc_v1`: the channels-last cases (N items of S = F·H·W rows; y never
/// aliases x, the rows move) against the CPU's GroupNorm with its rows permuted to tokens.
fn run_nhwc_tokens(dev: &mut Device, dtype: DType, case: &V2Case, seed: u64) -> anyhow::Result<()> {
    use cyberhost_kernels::group_norm::{
        launch_config_nhwc, nhwc_chunks, nhwc_tiles, workspace_f32s_nhwc, GnTokensParams,
        GroupNorm2Params,
    };
    let case = &V2Case {
        alias: false,
        ..*case
    };
    let (n, c, s, groups) = case.shape;
    let frames = case_frames(s);
    let bf = dtype == DType::Bf16;
    let inp = inputs(dtype, case.shape, false, seed, (case.sigma, case.mean))?;
    let rows = planes_to_rows(&inp.x, n, c, s);
    let (p1, ws, dy0, lead) = upload_case(
        dev,
        dtype,
        case,
        &rows,
        &inp,
        workspace_f32s_nhwc(inp.gshape, dtype),
    )?;
    let p = GroupNorm2Params::nhwc(p1, ws, dtype)?;
    let pt = GnTokensParams {
        gn: p,
        residual: 0,
        frames: frames as u32,
        y_c: c as u32,
    };
    let cfg = launch_config_nhwc(inp.gshape, dtype);
    let m = KernelModule::GroupNorm;
    dev.launch(m, &kernel_name("group_norm_stats_nhwc", 1, dtype), cfg, &p)?;
    let entry = kernel_name("group_norm_tokens_nhwc", 1, dtype);
    dev.launch(m, &entry, cfg, &pt)?;
    let got = dev.download_as(dtype, dy0, lead + rows.len())?[lead..].to_vec();
    let want = rows_to_tokens(
        &planes_to_rows(&inp.want, n, c, s),
        n,
        frames,
        s / frames,
        c,
    );
    let parts = nhwc_chunks(inp.gshape) * nhwc_tiles(inp.gshape, dtype).min(2);
    assert_close(
        &format!(
            "{entry} (N, C, F·H·W) = ({n}, {c}, {s}), F = {frames}, groups {groups}, mean {}, \
             misaligned {}",
            case.mean, case.misaligned
        ),
        &got,
        &want,
        nhwc_tol(bf, case.mean, case.sigma, c / groups, parts),
    );
    Ok(())
}

/// `tokens_planes_add_nhwc_v1`: tokens (N, S, F, C) + channels-last residual rows (N·F, S, C)
/// into channels [0, C) of (N·F, S, y_c) rows, against the sum on the host (exact in f32, one
/// rounding in bf16); the channels past C keep their poison.
fn run_tokens_add_nhwc(
    dev: &mut Device,
    dtype: DType,
    (n, frames, s, c, y_c): (usize, usize, usize, usize, usize),
    misaligned: bool,
    seed: u64,
) -> anyhow::Result<()> {
    use cyberhost_kernels::group_norm::{launch_config_rows, GnTokensParams, GroupNormShape};
    let len = n * frames * s * c;
    let round = |v: Vec<f32>| {
        if dtype == DType::Bf16 {
            round_bf16(&v)
        } else {
            v
        }
    };
    let tokens = round(crate::common::random(len, seed));
    let residual = round(crate::common::random(len, seed + 1));
    let lead = misaligned as usize;
    let sz = dtype.size_in_bytes();
    let pad = |v: &[f32]| {
        let mut o = vec![f32::NAN; lead];
        o.extend_from_slice(v);
        o
    };
    let [dt, dr] = dev.upload_all(dtype, [&pad(&tokens), &pad(&residual)])?;
    let out_len = n * frames * s * y_c;
    let dy = dev.alloc_poisoned((lead + out_len) * sz)?;
    let off = (lead * sz) as u64;
    let shape = GroupNormShape {
        n: (n * frames) as u64,
        c: c as u64,
        s: s as u64,
        groups: 1,
    };
    let p = GnTokensParams::tokens_planes_add(dt + off, dr + off, dy + off, shape, frames as u32)?
        .with_out_channels(y_c as u32)?;
    let vectors = (n * frames * s * c.div_ceil(16 / sz)) as u64;
    let entry = kernel_name("tokens_planes_add_nhwc", 1, dtype);
    dev.launch(
        KernelModule::GroupNorm,
        &entry,
        launch_config_rows(vectors),
        &p,
    )?;
    let got = dev.download_as(dtype, dy, lead + out_len)?[lead..].to_vec();
    let pz = dev.alloc_poisoned(sz)?;
    let poison = dev.download_as(dtype, pz, 1)?[0];
    let mut want = vec![0.0f32; out_len];
    let mut written = Vec::with_capacity(len);
    let mut gw = Vec::with_capacity(len);
    for i in 0..n {
        for f in 0..frames {
            for q in 0..s {
                for ch in 0..y_c {
                    let r = (i * frames + f) * s + q;
                    let o = r * y_c + ch;
                    if ch < c {
                        let t = tokens[((i * s + q) * frames + f) * c + ch];
                        want[o] = residual[r * c + ch] + t;
                        written.push(want[o]);
                        gw.push(got[o]);
                    } else {
                        assert!(
                            got[o].to_bits() == poison.to_bits()
                                || (got[o].is_nan() && poison.is_nan()),
                            "{entry}: channel {ch} >= C = {c} of row {r} was written"
                        );
                    }
                }
            }
        }
    }
    let tol = if dtype == DType::Bf16 {
        2f64.powi(-8)
    } else {
        0.0
    };
    assert_close(
        &format!(
            "{entry} (N, F, S, C, y_c) = ({n}, {frames}, {s}, {c}, {y_c}), misaligned {misaligned}"
        ),
        &gw,
        &written,
        tol,
    );
    Ok(())
}

/// The channels-last token cases under every schedule: the entry over `NHWC_CASES`, the exit over
/// F = 1, 2, 3, 16, C = 40, 320, 6 (element-wise), 8, y_c = C or a concat's wider rows (y_c = C + 16,
/// C + 3: off whole vectors), and pointers one element off 16 bytes.
fn sweep_nhwc_tokens(dtype: DType) {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, case) in NHWC_CASES.iter().enumerate() {
            run_nhwc_tokens(&mut dev, dtype, case, (i * 100 + j) as u64 + 71).unwrap();
        }
        let exits = [
            ((1, 2, 35, 40, 40), false),
            ((2, 3, 21, 320, 336), false),
            ((1, 16, 9, 8, 8), false),
            ((2, 1, 33, 40, 56), false),
            ((1, 3, 13, 6, 6), false),
            ((1, 2, 17, 40, 43), false),
            ((2, 2, 11, 48, 48), true),
        ];
        for (j, (dims, mis)) in exits.into_iter().enumerate() {
            run_tokens_add_nhwc(&mut dev, dtype, dims, mis, (i * 100 + j) as u64 + 91).unwrap();
        }
    }
}

crate::harness::sweep_tests!(sweep_nhwc_tokens;
    group_norm_tokens_nhwc_f32 => (DType::F32),
    group_norm_tokens_nhwc_bf16 => (DType::Bf16),
);

/// Counters of v2 (planes) and the channels-last pair on the paper step's ResNet GroupNorm + SiLU
/// shapes (N = 32 images: 2 guidance halves x 16 frames; 32 groups; bf16): (C, H·W) = (320, 64²),
/// (640, 32²), (1280, 16²), (1280, 8²). Run on the stand-in at `PTX_EMU_ARCH=sm_80` with
/// `PTX_EMU_STATS=FILE PTX_EMU_SAMPLE_BLOCKS=4 CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test -p
/// cyberhost-suite --test kernels group_norm_nhwc_counters -- --ignored`, then `gpu-report --gpu
/// a100-sxm FILE` (docs/performance.md, "Channels-last trunk, step 2"). Checks nothing: sampled
/// launches leave outputs invalid.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in and PTX_EMU_STATS"]
fn group_norm_nhwc_counters() {
    use cyberhost_kernels::group_norm::{
        launch_config_nhwc, launch_config_v2, workspace_f32s, workspace_f32s_nhwc, GroupNorm2Params,
    };
    let mut dev = Device::new(1, 0);
    assert!(
        matches!(dev, Device::Cuda { .. }),
        "run on the stand-in (CYBERHOST_KERNEL_TEST_DEVICE=stand-in)"
    );
    let dtype = DType::Bf16;
    let m = KernelModule::GroupNorm;
    for (c, s) in [
        (320u64, 64 * 64u64),
        (640, 32 * 32),
        (1280, 16 * 16),
        (1280, 8 * 8),
    ] {
        let gshape = GroupNormShape {
            n: 32,
            c,
            s,
            groups: 32,
        };
        let len = (32 * c * s) as usize;
        let gamma = vec![1.0f32; c as usize];
        let [dx, dg] = dev.upload_all(dtype, [&vec![1.0f32; len], &gamma]).unwrap();
        let ws_len = workspace_f32s(gshape, dtype).max(workspace_f32s_nhwc(gshape, dtype));
        let ws = dev.alloc_poisoned(ws_len as usize * 4).unwrap();
        let p1 = GroupNormParams::new(dx, dg, dg, dx, gshape, 1e-5).unwrap();
        let p2 = GroupNorm2Params::new(p1, ws, dtype).unwrap();
        let cfg = launch_config_v2(gshape, dtype);
        dev.launch(m, &kernel_name("group_norm_stats", 2, dtype), cfg, &p2)
            .unwrap();
        dev.launch(m, &kernel_name("group_norm_silu", 2, dtype), cfg, &p2)
            .unwrap();
        let pn = GroupNorm2Params::nhwc(p1, ws, dtype).unwrap();
        let cfg = launch_config_nhwc(gshape, dtype);
        dev.launch(m, &kernel_name("group_norm_stats_nhwc", 1, dtype), cfg, &pn)
            .unwrap();
        dev.launch(m, &kernel_name("group_norm_silu_nhwc", 1, dtype), cfg, &pn)
            .unwrap();
    }
}

/// Counters of v1 and v2 on the paper's largest video GroupNorm, (N, C, S) = (2, 320, 16*64*64),
/// 32 groups, bf16, and image-sized S = 64*64, 32*32, 16*16 (the last: one chunk per group, v1
/// territory): run on the stand-in with
/// `PTX_EMU_STATS=FILE PTX_EMU_SAMPLE_BLOCKS=4 CYBERHOST_KERNEL_TEST_DEVICE=stand-in
/// cargo test -p cyberhost-suite --test kernels group_norm_counters -- --ignored`, then
/// `gpu-report --gpu h100-sxm FILE` (docs/performance.md, "GroupNorm split reduction").
/// Checks nothing: sampled launches leave outputs invalid.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in and PTX_EMU_STATS"]
fn group_norm_counters() {
    use cyberhost_kernels::group_norm::{launch_config_v2, workspace_f32s, GroupNorm2Params};
    let mut dev = Device::new(1, 0);
    assert!(
        matches!(dev, Device::Cuda { .. }),
        "run on the stand-in (CYBERHOST_KERNEL_TEST_DEVICE=stand-in)"
    );
    let dtype = DType::Bf16;
    for s in [16 * 64 * 64, 64 * 64, 32 * 32, 16 * 16, 8 * 8, 4 * 4] {
        let gshape = GroupNormShape {
            n: 2,
            c: 320,
            s,
            groups: 32,
        };
        let len = (2 * 320 * s) as usize;
        let x = vec![1.0f32; len];
        let gamma = vec![1.0f32; 320];
        let [dx, dg, db] = dev.upload_all(dtype, [&x, &gamma, &gamma]).unwrap();
        let ws = dev
            .alloc_poisoned(workspace_f32s(gshape, dtype) as usize * 4)
            .unwrap();
        let p1 = GroupNormParams::new(dx, dg, db, dx, gshape, 1e-5).unwrap();
        let p2 = GroupNorm2Params::new(p1, ws, dtype).unwrap();
        for op in ["group_norm", "group_norm_silu"] {
            let m = KernelModule::GroupNorm;
            dev.launch(m, &kernel_name(op, 1, dtype), launch_config(gshape), &p1)
                .unwrap();
            let cfg = launch_config_v2(gshape, dtype);
            dev.launch(m, &kernel_name("group_norm_stats", 2, dtype), cfg, &p2)
                .unwrap();
            dev.launch(m, &kernel_name(op, 2, dtype), cfg, &p2).unwrap();
        }
    }
}
