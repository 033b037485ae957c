//! `conv2d_sm90_v1_*` (`kernels/cuda/conv2d_sm90.cu`, sm_90a only: implicit GEMM on wgmma) against
//! the CPU backend's `conv2d_ext`: 3x3 / 1x1 / 5x5 / 1xk kernels, stride 2, padding, dilation,
//! groups, odd H / W, C_in not a multiple of 8 (1x8 taps), ragged C_out, pixel columns and K over
//! several 256 x 128 x 64 tiles, every epilogue part (bias, temb, residual per image or broadcast,
//! scale; 4-column and single-column epilogues), bf16 and f32 y, poisoned outputs, several warp schedules; and the engine's launcher
//! ([`conv2d::conv2d_sm90`], [`conv2d::conv2d`]'s dispatch on an sm_90a device).

use crate::common::assert_close;
use crate::common::{round_bf16, Rng};
use crate::conv2d::{conv1d_shape, conv_ref, Bf16Case, ConvCase};
use crate::harness::{
    download_bf16 as download, engine_device, upload_bf16 as upload, Device, TOL_BF16 as TOL,
};
use cyberhost_engine::backends::cuda::conv2d;
use cyberhost_kernels::conv2d::Conv2dShape;
use cyberhost_kernels::conv2d_sm90::{
    launch_config, plan_split, reduce_launch_config, split_entries, split_launch_config, supports,
    C90Split, C90SplitParams, ENTRIES,
};
use cyberhost_kernels::{Arch, KernelModule};

fn cases() -> Vec<ConvCase> {
    let sq = Conv2dShape::square;
    let c = |s, bias, temb, residual, scale, bcast| ConvCase {
        s,
        bias,
        temb,
        residual,
        scale,
        plain: false,
        bcast,
    };
    vec![
        // ResNet conv1 + temb: K = 72 (two k tiles, the second ragged), odd H / W, C_out 70
        c(sq(2, 8, 9, 7, 70, 3, 1, 1), true, true, false, 1.0, false),
        // conv2 + shortcut and scale, K = 144
        c(
            sq(1, 16, 11, 10, 24, 3, 1, 1),
            true,
            false,
            true,
            0.5,
            false,
        ),
        // stride 2, K = 360 (6 k tiles), C_out 136 (2 row tiles), 264 columns (3 tiles, images
        // straddle a tile edge)
        c(
            sq(2, 40, 23, 21, 136, 3, 2, 1),
            true,
            false,
            false,
            1.0,
            false,
        ),
        // C_out 300: two row tiles, the second with one m64 half of one warpgroup
        c(
            sq(1, 16, 7, 9, 300, 3, 1, 1),
            true,
            false,
            false,
            1.0,
            false,
        ),
        // 1x1 shortcut + residual over 270 columns
        c(
            sq(2, 72, 9, 15, 140, 1, 1, 0),
            false,
            false,
            true,
            1.0,
            false,
        ),
        // broadcast residual (conv_in + movement map), N 3
        c(sq(3, 8, 9, 7, 20, 3, 1, 1), true, false, true, 1.0, true),
        // broadcast residual + temb + scale on the 4-column epilogue (Ho * Wo = 36)
        c(sq(2, 16, 6, 6, 20, 3, 1, 1), true, true, true, 0.5, true),
        // one exact 128 x 128 x 64 tile
        c(sq(2, 64, 8, 8, 128, 1, 1, 0), true, true, true, 1.0, false),
        // 5x5, K = 200
        c(sq(1, 8, 10, 9, 20, 5, 1, 2), true, false, false, 1.0, false),
        // dilation 2
        c(
            Conv2dShape {
                dilation: (2, 2),
                ..sq(2, 8, 9, 11, 20, 3, 1, 2)
            },
            true,
            false,
            false,
            1.0,
            false,
        ),
        // C_in 3 (not a multiple of 8) with 1x8 taps: K = 24; padding (0, 4)
        c(
            conv1d_shape(2, 3, 50, 20, 8, 1, 4, 1),
            true,
            false,
            false,
            1.0,
            false,
        ),
        // groups 4, 1x6, K = 48, + residual
        c(
            conv1d_shape(2, 32, 37, 32, 6, 1, 3, 4),
            true,
            false,
            true,
            1.0,
            false,
        ),
    ]
}

fn run(dev: &mut Device, c: ConvCase, seed: u64) -> anyhow::Result<()> {
    if !crate::harness::runs_or_refuses(dev, cyberhost_kernels::KernelModule::Conv2dSm90) {
        return Ok(());
    }
    let s = c.s;
    anyhow::ensure!(supports(s, 0), "{c:?}: not a conv2d_sm90 shape");
    let case = Bf16Case::new(dev, c, seed)?;
    anyhow::ensure!(case.p.aligned == 1, "{c:?}: W not cp.async-aligned");
    for (i, e) in ENTRIES.iter().enumerate() {
        // 2 SMs: blocks walk several column tiles (the persistent loop); 132: one tile each
        // where the shape has fewer than 132 / row tiles
        let sms = if i == 0 { 2 } else { 132 };
        let what = format!("{} {c:?}", e.name);
        let cfg = launch_config(s, sms);
        case.check(dev, KernelModule::Conv2dSm90, e.name, cfg, i == 1, &what)?;
    }
    Ok(())
}

crate::harness::schedules_test!(conv2d_sm90_implicit_gemm_epilogues, cases(), 9000, run);

/// Channel-slice outputs (`y_c` > C_out, an up block's skip concat written in place) on both
/// entries: the 4-column epilogue (Ho * Wo = 36, 16-byte aligned slice) and the single-column one
/// (Ho * Wo = 63), every byte outside the slice still poison.
#[test]
fn conv2d_sm90_channel_slice_output() {
    let (sq, c) = (Conv2dShape::square, ConvCase::slice);
    let cases = [
        (c(sq(2, 16, 6, 6, 20, 3, 1, 1), true), (27, 4)),
        (c(sq(2, 8, 9, 7, 70, 3, 1, 1), false), (75, 3)),
    ];
    let mut dev = Device::new(1, 0);
    if !crate::harness::runs_or_refuses(&dev, KernelModule::Conv2dSm90) {
        return;
    }
    for (i, (cc, slot)) in cases.into_iter().enumerate() {
        let case = Bf16Case::new(&mut dev, cc, 9500 + i as u64).unwrap();
        for (j, e) in ENTRIES.iter().enumerate() {
            let what = format!("{} {cc:?} into channels {slot:?}", e.name);
            let cfg = launch_config(cc.s, 132);
            case.check_slice(
                &mut dev,
                KernelModule::Conv2dSm90,
                e.name,
                cfg,
                j == 1,
                slot,
                &what,
            )
            .unwrap();
        }
    }
}

/// A split-K case: the conv, the split plan, the walkers (grid x) and a channel slot `(y_c, c0)`
/// of a wider y (or none).
#[derive(Debug, Clone, Copy)]
struct SplitCase {
    c: ConvCase,
    split: C90Split,
    walkers: u32,
    slot: Option<(u32, u32)>,
}

fn split_cases() -> Vec<SplitCase> {
    let sq = Conv2dShape::square;
    let c = |s, bias, temb, residual, scale, bcast| ConvCase {
        s,
        bias,
        temb,
        residual,
        scale,
        plain: false,
        bcast,
    };
    let sp = |splits, full_tiles, kt_split| C90Split {
        splits,
        full_tiles,
        kt_split,
    };
    let case = |c, split, walkers| SplitCase {
        c,
        split,
        walkers,
        slot: None,
    };
    vec![
        // K = 360 (3 k tiles) in splits of 2 + 1, C_out 136 (the second row tile one m64 half),
        // 264 columns (3 tiles, the last ragged, images straddling tiles), 4-column reduce
        case(
            c(
                sq(2, 40, 23, 21, 136, 3, 2, 1),
                true,
                false,
                false,
                1.0,
                false,
            ),
            sp(2, 0, 2),
            2,
        ),
        // the same with 2 whole tiles first (the hybrid walk) and 3 splits of 1 on 2 walkers
        case(
            c(
                sq(2, 40, 23, 21, 136, 3, 2, 1),
                true,
                true,
                true,
                0.5,
                false,
            ),
            sp(3, 2, 1),
            2,
        ),
        // C_out 300 (second row tile: one half of one warpgroup), 63 columns (single-column
        // reduce), K = 144 in 2 splits of 1
        case(
            c(
                sq(1, 16, 7, 9, 300, 3, 1, 1),
                true,
                false,
                false,
                1.0,
                false,
            ),
            sp(2, 0, 1),
            1,
        ),
        // S = 1 (every tile through the workspace, nothing summed), temb, one k tile
        case(
            c(sq(2, 8, 9, 7, 70, 3, 1, 1), true, true, false, 1.0, false),
            sp(1, 0, 1),
            3,
        ),
        // broadcast residual + temb + scale, K = 288 in 3 splits, single-column reduce
        case(
            c(sq(3, 32, 9, 7, 20, 3, 1, 1), true, true, true, 0.5, true),
            sp(3, 0, 1),
            4,
        ),
        // every epilogue on the 4-column reduce, one whole tile then 2 tiles split in 2
        case(
            c(sq(2, 24, 12, 12, 40, 3, 1, 1), true, true, true, 0.5, false),
            sp(2, 1, 1),
            1,
        ),
        // groups 4 (workspace rows of every group), K = 384 per group in splits of 2 + 1
        case(
            c(
                conv1d_shape(2, 256, 37, 32, 6, 1, 3, 4),
                true,
                false,
                true,
                1.0,
                false,
            ),
            sp(2, 0, 2),
            1,
        ),
        // K = 1152 (9 k tiles) in 4 splits of 3, 3, 3, 0 + the rest: kt_split * splits > k tiles
        case(
            c(
                sq(1, 128, 8, 8, 64, 3, 1, 1),
                true,
                false,
                false,
                1.0,
                false,
            ),
            sp(4, 0, 3),
            5,
        ),
        // a channel slice of a wider y, the 4-column reduce (Ho * Wo = 36)
        SplitCase {
            slot: Some((27, 4)),
            ..case(
                ConvCase::slice(sq(2, 16, 6, 6, 20, 3, 1, 1), true),
                sp(2, 0, 1),
                2,
            )
        },
        // a channel slice, single-column reduce (Ho * Wo = 63)
        SplitCase {
            slot: Some((75, 3)),
            ..case(
                ConvCase::slice(sq(2, 32, 9, 7, 70, 3, 1, 1), false),
                sp(3, 0, 1),
                2,
            )
        },
    ]
}

/// Launches the split pair of `sc` (bf16 or f32 y) on a poisoned y (and a poisoned workspace):
/// returns y's bytes.
fn run_split(
    dev: &mut Device,
    case: &Bf16Case,
    sc: SplitCase,
    out_f32: bool,
) -> anyhow::Result<Vec<u8>> {
    let s = sc.c.s;
    let es = if out_f32 { 4 } else { 2 };
    let npix = (s.h_out() * s.w_out()) as usize;
    let (y_c, c0) = sc.slot.unwrap_or((s.c_out as u32, 0));
    let y_bytes = s.n as usize * y_c as usize * npix * es;
    let base = dev.alloc_poisoned(y_bytes)?;
    let mut p = case.p;
    p.ptrs.y = base + (c0 as usize * npix * es) as u64;
    if sc.slot.is_some() {
        p = p.into_channels(u64::from(y_c))?;
    }
    // (splits, C_out, ws_ld) f32: workspace_len's size, also for S = 1 (which it calls no split)
    let ws_len = sc.split.splits as usize * s.c_out as usize * sc.split.ws_ld(s) as usize;
    let ws = dev.alloc_poisoned(4 * ws_len)?;
    let q = C90SplitParams::new(p, s, sc.split, ws);
    let (entry, reduce) = split_entries(out_f32);
    // the walkers: grid x of split_launch_config on walkers * row tiles SMs
    let rows = s.c_out_g().div_ceil(256) as u32 * s.groups as u32;
    let cfg = split_launch_config(s, sc.walkers * rows, sc.split);
    dev.launch(KernelModule::Conv2dSm90, entry, cfg, &q)?;
    dev.launch(
        KernelModule::Conv2dSm90,
        reduce,
        reduce_launch_config(s, &q),
        &q,
    )?;
    dev.download::<u8>(base, y_bytes)
}

/// y's bytes of [`run_split`] against the reference: the slot's channels (f32 or bf16), every
/// byte outside it still poison.
fn check_split(bytes: &[u8], case: &Bf16Case, sc: SplitCase, out_f32: bool, what: &str) {
    let s = sc.c.s;
    let es = if out_f32 { 4 } else { 2 };
    let npix = (s.h_out() * s.w_out()) as usize;
    let (y_c, c0) = sc.slot.unwrap_or((s.c_out as u32, 0));
    let (y_c, c0, c_out) = (y_c as usize, c0 as usize, s.c_out as usize);
    let mut got = Vec::with_capacity(case.want.len());
    for (i, v) in bytes.chunks(es).enumerate() {
        let c = i / npix % y_c;
        if c < c0 || c >= c0 + c_out {
            assert!(
                v.iter().all(|b| *b == crate::harness::POISON),
                "{what}: element {i} (channel {c}) outside the slice written"
            );
            continue;
        }
        got.push(if out_f32 {
            f32::from_le_bytes([v[0], v[1], v[2], v[3]])
        } else {
            f32::from_bits((v[0] as u32) << 16 | (v[1] as u32) << 24)
        });
    }
    assert_close(what, &got, &case.want, TOL);
}

/// Split-K (`conv2d_sm90_splitk_v1_*` then `conv2d_sm90_reduce_v1_*`) against the CPU reference:
/// splits that do not divide the k tiles, S = 1, whole tiles before the split ones, ragged C_out
/// and columns, groups, every epilogue part on both reduce paths, channel slices; bf16 and f32 y;
/// poisoned y and workspace; two runs bit-identical.
#[test]
fn conv2d_sm90_split_k() {
    let mut dev = Device::new(1, 0);
    if !crate::harness::runs_or_refuses(&dev, KernelModule::Conv2dSm90) {
        return;
    }
    for (i, sc) in split_cases().into_iter().enumerate() {
        let s = sc.c.s;
        assert!(supports(s, 0), "{sc:?}: not a conv2d_sm90 shape");
        let case = Bf16Case::new(&mut dev, sc.c, 9700 + i as u64).unwrap();
        for out_f32 in [false, true] {
            let what = format!("split-K {sc:?} f32 y {out_f32}");
            let got = run_split(&mut dev, &case, sc, out_f32).unwrap();
            check_split(&got, &case, sc, out_f32, &what);
            if i == 0 || i == 6 {
                let again = run_split(&mut dev, &case, sc, out_f32).unwrap();
                assert!(again == got, "{what}: two runs differ");
            }
        }
    }
}

/// The module is sm_90a-only PTX.
#[test]
fn conv2d_sm90_is_hopper_only() {
    assert_eq!(KernelModule::Conv2dSm90.arch(), Arch::Sm90a);
}

/// The engine's launcher: `conv2d_sm90` on the stand-in (sm_90a at its default arch) against the
/// CPU, `conv2d` picking it (the same bits), and an error for a shape it does not take (K = 36).
#[test]
fn conv2d_sm90_engine_launcher() {
    let dev = engine_device();
    if dev.arch() != Arch::Sm90a {
        return; // an sm_80 device runs conv2d.cu only
    }
    let s = Conv2dShape::square(2, 16, 9, 7, 40, 3, 1, 1);
    let mut rng = Rng::new(77);
    let out_len = (s.n * s.c_out * s.h_out() * s.w_out()) as usize;
    let x = round_bf16(&rng.randn((s.n * s.c_in * s.h * s.w) as usize, 1.0, 0.0));
    let w = round_bf16(&rng.randn((s.c_out * s.k()) as usize, 0.3, 0.0));
    let b = round_bf16(&rng.randn(s.c_out as usize, 1.0, 0.0));
    let want = conv_ref(&x, &w, s, Some(&b), None, None, 1.0);
    let (xd, wd, bd) = (upload(dev, &x), upload(dev, &w), upload(dev, &b));
    let extras = conv2d::Conv2dExtras {
        bias: Some(&bd),
        ..Default::default()
    };
    let mut y = upload(dev, &vec![f32::NAN; out_len]);
    conv2d::conv2d_sm90(dev, &xd, &wd, &mut y, s, extras).unwrap();
    let got = download(dev, &y);
    assert_close("conv2d_sm90 launcher", &got, &want, TOL);
    let mut y2 = upload(dev, &vec![f32::NAN; out_len]);
    conv2d::conv2d(dev, &xd, &wd, &mut y2, s, extras).unwrap();
    assert_eq!(download(dev, &y2), got, "conv2d dispatches to conv2d_sm90");
    let s36 = Conv2dShape::square(1, 4, 5, 5, 8, 3, 1, 1);
    let (x36, w36) = (upload(dev, &[0.5; 100]), upload(dev, &[0.25; 8 * 36]));
    let mut y36 = upload(dev, &[0.0; 200]);
    let err = conv2d::conv2d_sm90(dev, &x36, &w36, &mut y36, s36, Default::default());
    assert!(err.is_err(), "K = 36 is not a conv2d_sm90 shape");
    conv2d::conv2d(dev, &x36, &w36, &mut y36, s36, Default::default()).unwrap();
    assert_eq!(
        download(dev, &y36),
        vec![0.5 * 0.25 * 36.0; 200]
            .iter()
            .enumerate()
            .map(|(i, v)| {
                // border pixels see fewer taps
                let (yy, xx) = ((i % 25) / 5, i % 5);
                let taps = |c: usize| if c == 0 || c == 4 { 2.0 } else { 3.0 };
                v / 9.0 * taps(yy) * taps(xx)
            })
            .collect::<Vec<f32>>()
    );
}

/// The engine's launcher on a shape its planner splits (1 column tile of 64 channels, K = 1152 on
/// the stand-in's SMs): `conv2d` with the workspace `sm90_workspace_len` sizes (split-K) against
/// the CPU and against the unsplit kernel (no workspace); a too-small workspace is an error.
#[test]
fn conv2d_sm90_engine_split_k() {
    let dev = engine_device();
    if dev.arch() != Arch::Sm90a {
        return;
    }
    let s = Conv2dShape::square(1, 128, 8, 8, 64, 3, 1, 1);
    assert!(plan_split(s, dev.sm_count()).is_split(), "{s:?} splits");
    let mut rng = Rng::new(78);
    let out_len = (s.n * s.c_out * s.h_out() * s.w_out()) as usize;
    let x = round_bf16(&rng.randn((s.n * s.c_in * s.h * s.w) as usize, 1.0, 0.0));
    let w = round_bf16(&rng.randn((s.c_out * s.k()) as usize, 0.3, 0.0));
    let b = round_bf16(&rng.randn(s.c_out as usize, 1.0, 0.0));
    let r = round_bf16(&rng.randn(out_len, 1.0, 0.0));
    let want = conv_ref(&x, &w, s, Some(&b), None, Some(&r), 0.5);
    let (xd, wd, bd, rd) = (
        upload(dev, &x),
        upload(dev, &w),
        upload(dev, &b),
        upload(dev, &r),
    );
    let (pw, _g) =
        cyberhost_engine::backends::cuda::cudarc::driver::DevicePtr::device_ptr(&wd, dev.stream());
    let ws_len = conv2d::sm90_workspace_len(dev, s, pw);
    assert!(ws_len > 0);
    // workspace elements are f32: 2 u16 each
    let ws = upload(dev, &vec![f32::NAN; 2 * ws_len]);
    let extras = conv2d::Conv2dExtras {
        bias: Some(&bd),
        residual: Some(&rd),
        scale: 0.5,
        workspace: Some(&ws),
        ..Default::default()
    };
    let mut y = upload(dev, &vec![f32::NAN; out_len]);
    conv2d::conv2d(dev, &xd, &wd, &mut y, s, extras).unwrap();
    let got = download(dev, &y);
    assert_close("conv2d_sm90 split-K launcher", &got, &want, TOL);
    let mut y1 = upload(dev, &vec![f32::NAN; out_len]);
    let plain = conv2d::Conv2dExtras {
        workspace: None,
        ..extras
    };
    conv2d::conv2d(dev, &xd, &wd, &mut y1, s, plain).unwrap();
    assert_close("split vs unsplit", &got, &download(dev, &y1), TOL);
    let small = upload(dev, &vec![0.0; 2 * ws_len - 2]);
    let short = conv2d::Conv2dExtras {
        workspace: Some(&small),
        ..extras
    };
    let err = conv2d::conv2d(dev, &xd, &wd, &mut y1, s, short).unwrap_err();
    assert!(format!("{err:#}").contains("workspace"), "{err:#}");
}

/// Counters of `conv2d_sm90_v1_bf16` at the `paper` step's U-Net conv shapes (batch 32 = 2 CFG
/// rows x 16 frames, 3x3, bias + residual as a ResNet conv2 fuses them): 64x64 320 -> 320 and
/// 640 -> 320, 32x32 640 -> 640, 16x16 1280 -> 1280, 8x8 1280 -> 1280, launched as the backend
/// does (132 SMs). Run on the stand-in at its default sm_90a with `PTX_EMU_STATS=FILE
/// PTX_EMU_SAMPLE_BLOCKS=2 CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test -p cyberhost-suite
/// --test kernels conv2d_sm90_counters -- --ignored`, then `gpu-report --gpu h100-sxm FILE`
/// (docs/performance.md). Checks nothing: sampled launches leave outputs invalid.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_90a and PTX_EMU_STATS"]
fn conv2d_sm90_counters() {
    use cyberhost_kernels::conv2d::{Conv2dParams, Conv2dPtrs};
    let mut dev = Device::new(1, 0);
    assert!(
        matches!(dev, Device::Cuda { .. }),
        "run on the stand-in (CYBERHOST_KERNEL_TEST_DEVICE=stand-in)"
    );
    let sq = Conv2dShape::square;
    let shapes = [
        sq(32, 320, 64, 64, 320, 3, 1, 1),
        sq(32, 2560, 8, 8, 1280, 3, 1, 1),
        sq(32, 2560, 16, 16, 1280, 3, 1, 1),
        sq(32, 640, 16, 16, 1280, 3, 1, 1),
        sq(32, 640, 64, 64, 320, 3, 1, 1),
        sq(32, 640, 32, 32, 640, 3, 1, 1),
        sq(32, 1280, 16, 16, 1280, 3, 1, 1),
        sq(32, 1280, 8, 8, 1280, 3, 1, 1),
    ];
    let half = 0x3f00u16; // bf16 0.5
    for s in shapes {
        // exact-size buffers: the model's DRAM footprint is capped by the buffers' sizes
        let y_len = (s.n * s.c_out * s.h_out() * s.w_out()) as usize;
        let ptrs = Conv2dPtrs {
            x: dev
                .upload(&vec![half; (s.n * s.c_in * s.h * s.w) as usize])
                .unwrap(),
            w: dev.upload(&vec![half; (s.c_out * s.k()) as usize]).unwrap(),
            bias: dev.upload(&vec![half; s.c_out as usize]).unwrap(),
            temb: 0,
            residual: dev.upload(&vec![half; y_len]).unwrap(),
            y: dev.alloc_poisoned(2 * y_len).unwrap(),
        };
        let p = Conv2dParams::new(ptrs, s, 1.0).unwrap();
        assert!(supports(s, ptrs.w) && p.aligned == 1, "{s:?}");
        dev.launch(
            KernelModule::Conv2dSm90,
            ENTRIES[0].name,
            launch_config(s, 132),
            &p,
        )
        .unwrap();
        // the split-K pair where the planner splits (the same conv: before / after)
        let split = plan_split(s, 132);
        if split.is_split() {
            let ws = dev
                .alloc_poisoned(4 * split.workspace_len(s) as usize)
                .unwrap();
            let q = C90SplitParams::new(p, s, split, ws);
            let (entry, reduce) = split_entries(false);
            let cfg = split_launch_config(s, 132, split);
            dev.launch(KernelModule::Conv2dSm90, entry, cfg, &q)
                .unwrap();
            let cfg = reduce_launch_config(s, &q);
            dev.launch(KernelModule::Conv2dSm90, reduce, cfg, &q)
                .unwrap();
        }
    }
}
