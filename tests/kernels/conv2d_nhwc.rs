//! `conv2d_nhwc_*` (`kernels/cuda/conv2d_nhwc.cu`, channels-last implicit GEMM on the v2 GEMM
//! mainloop) against the CPU reference `cpu::conv2d_nhwc` (the NCHW reference conv between two
//! permutes): every tile config, the element-wise loader (C % 8 != 0, x channel slices), stride
//! 1 / 2, padding, 1x1 / 3x3 / rectangular dilated kernels, bias / temb / residual / scale, channel-slice
//! outputs (the columns outside the slice keep their poison), a residual read in place from y,
//! split-K; odd pixel counts and C_out that are not multiples of the tiles; and the engine
//! launcher (`backends::cuda::conv2d_nhwc`).

use crate::common::{assert_close, cpu, host, round_bf16, to_bf16, Rng};
use crate::harness::{download_bf16 as download, engine_device, upload_bf16 as upload, Device};
use cyberhost_engine::backends::cpu::conv2d_nhwc::conv2d_nhwc as conv_nhwc_ref;
use cyberhost_engine::backends::Conv2dParams as EngineConv;
use cyberhost_kernels::conv2d::Conv2dShape;
use cyberhost_kernels::conv2d_nhwc::{
    entry_name, gemm_shape, k_pad, launch_config, pack_weights, splitk_launch_config, vectorized,
    ConvNhwcLayout, ConvNhwcParams, ConvNhwcPtrs, SPLITK_ENTRY,
};
use cyberhost_kernels::gemm::{GemmPlan, GemmTile};
use cyberhost_kernels::KernelModule;
use half::bf16;

/// Relative L2 bound of a bf16-output conv on bf16-rounded inputs against the f32 reference on
/// the same inputs: one bf16 rounding of each output (unit roundoff 2^-9, twice for margin) plus
/// f32 accumulation over K terms (K * 2^-24, doubled).
fn tol(k: u64) -> f64 {
    2.0 * 2f64.powi(-9) + 2.0 * k as f64 * 2f64.powi(-24)
}

#[derive(Clone, Copy, Debug)]
struct Case {
    s: Conv2dShape,
    tile: GemmTile,
    /// k splits (1 = none)
    splits: u32,
    /// the element-wise im2col loader
    scalar: bool,
    bias: bool,
    /// a per-image time embedding (N, C_out)
    temb: bool,
    residual: bool,
    scale: f32,
    /// extra channels of x / y rows (channel slices of wider tensors), y's slice offset
    x_extra: u64,
    y_extra: u64,
    y_c0: u64,
    /// the residual is y itself (read in place, ldr = ldy)
    alias: bool,
}

fn cases() -> Vec<Case> {
    use GemmTile::{T128x128 as L, T128x256 as XL, T256x128 as XT, T64x64 as S};
    let sq = Conv2dShape::square;
    let c = |s, tile| Case {
        s,
        tile,
        splits: 1,
        scalar: false,
        bias: true,
        temb: false,
        residual: false,
        scale: 1.0,
        x_extra: 0,
        y_extra: 0,
        y_c0: 0,
        alias: false,
    };
    vec![
        // 3x3 pad 1, 2 images of 9 x 11 (198 pixels: 2 row tiles of 128, ragged), C_out 40
        Case {
            temb: true,
            residual: true,
            scale: 0.5,
            ..c(sq(2, 16, 9, 11, 40, 3, 1, 1), L)
        },
        // stride 2 downsample, C 24 (k tiles straddle taps), C_out 72
        c(sq(2, 24, 9, 9, 72, 3, 2, 1), S),
        // 1x1 shortcut with residual, C_out 20 (one partial 8-column chunk)
        Case {
            residual: true,
            ..c(sq(1, 32, 7, 13, 20, 1, 1, 0), XL)
        },
        // the other big tiles: 3x3 C 8 (K 72), C_out 136 / 264
        c(sq(1, 8, 17, 16, 136, 3, 1, 1), XT),
        c(sq(1, 8, 5, 7, 264, 3, 1, 1), XL),
        // rectangular 3x2, stride (2, 1), padding (1, 0), dilation (1, 2)
        c(
            Conv2dShape {
                kh: 3,
                kw: 2,
                stride: (2, 1),
                pad: (1, 0),
                dilation: (1, 2),
                ..sq(1, 16, 10, 9, 24, 3, 1, 1)
            },
            S,
        ),
        // x a channel slice of 40-channel pixels; y the slice [8, 8 + 24) of 48 channels
        Case {
            x_extra: 8,
            y_extra: 24,
            y_c0: 8,
            residual: true,
            ..c(sq(2, 32, 6, 7, 24, 3, 1, 1), L)
        },
        // the residual read in place from y (a channel slice of 40: ldr = ldy = 40)
        Case {
            residual: true,
            alias: true,
            y_extra: 16,
            y_c0: 8,
            ..c(sq(1, 16, 7, 9, 24, 3, 1, 1), L)
        },
        // y slice at an odd offset (scalar stores), C_out 13
        Case {
            temb: true,
            y_extra: 5,
            y_c0: 3,
            ..c(sq(2, 16, 5, 6, 13, 3, 1, 1), S)
        },
        // element-wise loader: latent-like C 4 and C 9 (K 36 / 81, not multiples of 8), x slice
        Case {
            scalar: true,
            temb: true,
            residual: true,
            ..c(sq(2, 4, 9, 7, 20, 3, 1, 1), S)
        },
        Case {
            scalar: true,
            x_extra: 3,
            ..c(sq(1, 9, 8, 5, 12, 3, 2, 1), S)
        },
        // split-K: 2 images of 5 x 4, C 64, 3x3 (K 576, 18 k tiles) in 3 splits, + temb, residual
        Case {
            splits: 3,
            temb: true,
            residual: true,
            scale: 0.5,
            ..c(sq(2, 64, 5, 4, 40, 3, 1, 1), S)
        },
    ]
}

/// Seeded bf16-rounded data.
fn data(rng: &mut Rng, n: u64) -> Vec<f32> {
    round_bf16(&rng.randn(n as usize, 1.0, 0.0))
}

/// `rows` rows of `cols` values from `src` (dense) spread over rows of `ld`, columns from `c0`,
/// the rest `fill`.
fn strided(src: &[f32], rows: u64, cols: u64, ld: u64, c0: u64, fill: f32) -> Vec<f32> {
    let mut out = vec![fill; (rows * ld) as usize];
    for r in 0..rows as usize {
        let (cols, ld, c0) = (cols as usize, ld as usize, c0 as usize);
        out[r * ld + c0..r * ld + c0 + cols].copy_from_slice(&src[r * cols..(r + 1) * cols]);
    }
    out
}

fn run(dev: &mut Device, c: Case, seed: u64) -> anyhow::Result<()> {
    let s = c.s;
    let u = |v: u64| v as usize;
    let mut rng = Rng::new(seed);
    let (pixels, opix) = (s.n * s.h * s.w, s.n * s.h_out() * s.w_out());
    let x = data(&mut rng, pixels * s.c_in);
    let w = data(&mut rng, s.c_out * s.k());
    let b = data(&mut rng, s.c_out);
    let t = data(&mut rng, s.n * s.c_out);
    let r = data(&mut rng, opix * s.c_out);
    let want = conv_nhwc_ref(
        &cpu(&[u(s.n), u(s.h), u(s.w), u(s.c_in)], &x),
        &cpu(&[u(s.c_out), u(s.c_in), u(s.kh), u(s.kw)], &w),
        c.bias.then(|| cpu(&[u(s.c_out)], &b)).as_ref(),
        c.temb.then(|| cpu(&[u(s.n), u(s.c_out)], &t)).as_ref(),
        c.residual
            .then(|| cpu(&[u(s.n), u(s.h_out()), u(s.w_out()), u(s.c_out)], &r))
            .as_ref(),
        EngineConv {
            stride: (u(s.stride.0), u(s.stride.1)),
            padding: (u(s.pad.0), u(s.pad.1)),
            dilation: (u(s.dilation.0), u(s.dilation.1)),
            groups: 1,
        },
        c.scale,
    )?;
    let want = host(&want);

    let ldy = s.c_out + c.y_extra;
    let layout = ConvNhwcLayout {
        ldx: s.c_in + c.x_extra,
        ldr: if c.alias { ldy } else { s.c_out },
        ldy,
    };
    let xs = strided(&x, pixels, s.c_in, layout.ldx, 0, 0.0);
    let packed = pack_weights(&to_bf16(&w), s)?;
    assert_eq!(packed.len() as u64, s.c_out * k_pad(s));
    let px = dev.upload(&to_bf16(&xs))?;
    let pw = dev.upload(&packed)?;
    let pb = dev.upload_bf16_opt(c.bias, &b)?;
    let pt = dev.upload_bf16_opt(c.temb, &t)?;
    let (py, pr) = if c.alias {
        // y = the residual in its slice, poison (0xffff) around it
        let mut bits = vec![0xffffu16; (opix * ldy) as usize];
        for (i, v) in to_bf16(&r).iter().enumerate() {
            let (row, col) = (i as u64 / s.c_out, i as u64 % s.c_out);
            bits[(row * ldy + c.y_c0 + col) as usize] = v.to_bits();
        }
        let py = dev.upload(&bits)?;
        (py, py + c.y_c0 * 2)
    } else {
        let pr = dev.upload_bf16_opt(c.residual, &r)?;
        (dev.alloc_poisoned((opix * ldy * 2) as usize)?, pr)
    };
    let ptrs = ConvNhwcPtrs {
        x: px,
        w: pw,
        bias: pb,
        temb: pt,
        residual: pr,
        y: py + c.y_c0 * 2,
    };
    assert_eq!(
        vectorized(s, px, layout.ldx),
        !c.scalar,
        "{c:?}: the case picks its loader"
    );
    let g = gemm_shape(s);
    let ktiles = g.k.div_ceil(32);
    let plan = if c.splits > 1 {
        GemmPlan::split_k(c.tile, ktiles, ktiles.div_ceil(c.splits as u64))
    } else {
        // a few persistent CTAs over several tiles each where the grid allows
        GemmPlan::persistent(c.tile, g, false, 3, 40 << 20)
    };
    assert_eq!(plan.splits, c.splits, "{c:?}");
    let ws = if plan.splits > 1 {
        dev.alloc_poisoned(plan.workspace_len(g, false) as usize * 4)?
    } else {
        0
    };
    let p = ConvNhwcParams::new(ptrs, s, layout, c.scale, plan, ws)?;
    let entry = entry_name(c.tile, !c.scalar)?;
    dev.launch(KernelModule::Conv2dNhwc, entry, launch_config(&plan, s), &p)?;
    if plan.splits > 1 {
        dev.launch(
            KernelModule::Conv2dNhwc,
            SPLITK_ENTRY,
            splitk_launch_config(s),
            &p,
        )?;
    }
    let all = dev.download::<bf16>(py, (opix * layout.ldy) as usize)?;
    let mut got = Vec::with_capacity(want.len());
    for row in 0..opix {
        for col in 0..layout.ldy {
            let v = all[(row * layout.ldy + col) as usize];
            if col >= c.y_c0 && col < c.y_c0 + s.c_out {
                got.push(v.to_f32());
            } else {
                assert_eq!(
                    v.to_bits(),
                    0xffff,
                    "{c:?}: y[{row}, {col}] outside the slice was written"
                );
            }
        }
    }
    assert_close(&format!("{entry} {c:?}"), &got, &want, tol(g.k));
    Ok(())
}

crate::harness::schedules_test!(conv2d_nhwc_tiles_loaders_epilogues, cases(), 900, run);

#[test]
fn conv2d_nhwc_engine_launcher() {
    use cyberhost_engine::backends::cuda::conv2d_nhwc::{
        conv2d_nhwc, workspace_len, ConvNhwcExtras,
    };
    let dev = engine_device();
    let mut rng = Rng::new(11);
    let u = |v: u64| v as usize;
    // 3x3 pad 1 with bias and temb over a poisoned-then-overwritten y; then a split-K shape (20
    // pixels, K 576) with a residual
    for (s, with_res) in [
        (Conv2dShape::square(2, 24, 7, 9, 40, 3, 1, 1), false),
        (Conv2dShape::square(1, 64, 4, 5, 24, 3, 1, 1), true),
    ] {
        let opix = s.n * s.h_out() * s.w_out();
        let x = data(&mut rng, s.n * s.h * s.w * s.c_in);
        let w = data(&mut rng, s.c_out * s.k());
        let b = data(&mut rng, s.c_out);
        let r = data(&mut rng, opix * s.c_out);
        let bits: Vec<u16> = to_bf16(&w).iter().map(|v| v.to_bits()).collect();
        let dx = upload(dev, &x);
        let dw = dev
            .stream()
            .clone_htod(&pack_weights(&bits, s).unwrap())
            .unwrap();
        let tm = data(&mut rng, s.n * s.c_out);
        let (db, dt, dr) = (upload(dev, &b), upload(dev, &tm), upload(dev, &r));
        let mut y = upload(dev, &vec![f32::NAN; u(opix * s.c_out)]);
        let ws_len = workspace_len(dev, s, 256, s.c_in);
        assert_eq!(ws_len > 0, with_res, "{s:?}: split-K plan");
        let ws = dev.stream().alloc_zeros::<u16>(2 * ws_len.max(1)).unwrap();
        let extras = ConvNhwcExtras {
            bias: Some(&db),
            temb: Some(&dt),
            residual: with_res.then_some(&dr),
            workspace: Some(&ws),
            ..Default::default()
        };
        conv2d_nhwc(dev, &dx, &dw, &mut y, s, extras).unwrap();
        let want = conv_nhwc_ref(
            &cpu(&[u(s.n), u(s.h), u(s.w), u(s.c_in)], &x),
            &cpu(&[u(s.c_out), u(s.c_in), u(s.kh), u(s.kw)], &w),
            Some(&cpu(&[u(s.c_out)], &b)),
            Some(&cpu(&[u(s.n), u(s.c_out)], &tm)),
            with_res
                .then(|| cpu(&[u(s.n), u(s.h_out()), u(s.w_out()), u(s.c_out)], &r))
                .as_ref(),
            EngineConv {
                stride: (1, 1),
                padding: (1, 1),
                dilation: (1, 1),
                groups: 1,
            },
            1.0,
        )
        .unwrap();
        assert_close(
            &format!("engine conv2d_nhwc {s:?}"),
            &download(dev, &y),
            &host(&want),
            tol(s.k()),
        );
    }
    // errors name the thing and the fix: grouped convs, a short weight
    let s = Conv2dShape {
        groups: 2,
        ..Conv2dShape::square(1, 8, 4, 4, 8, 3, 1, 1)
    };
    let err = pack_weights(&vec![0u16; 8 * 4 * 9], s).unwrap_err();
    assert!(format!("{err}").contains("groups = 1"), "{err}");
    let s = Conv2dShape::square(1, 8, 4, 4, 8, 3, 1, 1);
    let dx = upload(dev, &vec![0.0; 128]);
    let dw = upload(dev, &[0.0; 8]);
    let mut y = upload(dev, &vec![0.0; 128]);
    let err = conv2d_nhwc(dev, &dx, &dw, &mut y, s, Default::default()).unwrap_err();
    assert!(format!("{err:#}").contains("conv2d_nhwc w"), "{err:#}");
}

/// The `paper` preset's U-Net conv shapes (N = 32: 2 CFG branches x 16 frames; from the grids and
/// tensor FLOPs of its `conv2d_v2_bf16` launches), largest predicted time first: 3x3 at 64x64 /
/// 32x32 / 16x16 / 8x8, the up blocks' concat inputs, a stride-2 downsampler, a 1x1 shortcut.
pub(crate) fn paper_conv_shapes() -> Vec<(&'static str, Conv2dShape)> {
    let sq = |c, hw, o, k, stride| Conv2dShape::square(32, c, hw, hw, o, k, stride, k / 2);
    vec![
        ("3x3 320->320 @64x64", sq(320, 64, 320, 3, 1)),
        ("3x3 1280->1280 @16x16", sq(1280, 16, 1280, 3, 1)),
        ("3x3 640->640 @32x32", sq(640, 32, 640, 3, 1)),
        ("3x3 640->320 @64x64", sq(640, 64, 320, 3, 1)),
        ("3x3 2560->1280 @16x16", sq(2560, 16, 1280, 3, 1)),
        ("3x3 1280->1280 @8x8", sq(1280, 8, 1280, 3, 1)),
        ("3x3 640->640 @64x64", sq(640, 64, 640, 3, 1)),
        ("3x3 s2 320->320 @64x64", sq(320, 64, 320, 3, 2)),
        ("1x1 640->320 @64x64", sq(640, 64, 320, 1, 1)),
    ]
}

/// Profiling run for docs/performance.md, not a check: each paper conv shape once through
/// `conv2d` (NCHW, `conv2d_v2_bf16` on the sm_80 set) and once through `conv2d_nhwc` on the
/// engine device, bias epilogue, split-K workspace given; run on the stand-in with
/// `PTX_EMU_STATS=FILE PTX_EMU_SAMPLE_BLOCKS=N PTX_EMU_ARCH=sm_80` and read FILE with
/// `gpu-report --gpu a100-sxm FILE` (launches in the order printed).
#[test]
#[ignore = "minutes of emulation: a profiling run for docs/performance.md (PTX_EMU_STATS)"]
fn conv2d_nhwc_paper_shapes_vs_v2() {
    use cyberhost_engine::backends::cuda::conv2d::{conv2d, Conv2dExtras};
    use cyberhost_engine::backends::cuda::conv2d_nhwc::{
        conv2d_nhwc, workspace_len, ConvNhwcExtras,
    };
    let dev = engine_device();
    for (label, s) in paper_conv_shapes() {
        let pattern = |n: u64| -> Vec<u16> {
            (0..n)
                .map(|i| bf16::from_f32(((i % 13) as f32 - 6.0) / 8.0).to_bits())
                .collect()
        };
        let up = |v: Vec<u16>| dev.stream().clone_htod(&v).unwrap();
        let x = up(pattern(s.n * s.c_in * s.h * s.w));
        let w = up(pattern(s.c_out * s.k()));
        let wp = up(pack_weights(&pattern(s.c_out * s.k()), s).unwrap());
        let b = up(pattern(s.c_out));
        let mut y = dev
            .stream()
            .alloc_zeros::<u16>((s.n * s.c_out * s.h_out() * s.w_out()) as usize)
            .unwrap();
        let ws = dev
            .stream()
            .alloc_zeros::<u16>(2 * workspace_len(dev, s, 256, s.c_in).max(1))
            .unwrap();
        eprintln!("profile: conv2d (NCHW v2) {label}");
        let extras = Conv2dExtras {
            bias: Some(&b),
            ..Default::default()
        };
        conv2d(dev, &x, &w, &mut y, s, extras).unwrap();
        dev.synchronize().unwrap();
        eprintln!("profile: conv2d_nhwc {label}");
        let extras = ConvNhwcExtras {
            bias: Some(&b),
            workspace: Some(&ws),
            ..Default::default()
        };
        conv2d_nhwc(dev, &x, &wp, &mut y, s, extras).unwrap();
        dev.synchronize().unwrap();
    }
}

/// The channels-last trunk through the `Backend` trait (`CudaBackend::set_channels_last`, sm_80
/// set): convolutions whose weight was packed at load (`prepare_conv_weight`) run on
/// `conv2d_nhwc` and return channels-last tensors — from contiguous or channels-last inputs, the
/// epilogue's residual in either format, a 4-channel input (the element-wise loader), a conv
/// whose output is the first part of a channel concat — against the CPU's NCHW ops; GroupNorm
/// (+SiLU) reads and returns channels-last; ops that do not read channels-last (elementwise,
/// GroupNorm with another activation, narrow, reshape) get a contiguous copy and
/// agree with the CPU on the same values; an unpacked weight keeps the NCHW conv. On the sm_90a
/// set the switch is refused with a message naming the arch.
#[test]
fn conv2d_nhwc_channels_last_trunk() {
    use crate::common::{check, open_cuda_backend, random, CPU};
    use cyberhost_engine::backends::cuda::{CudaBackend, CudaTensor, MemoryFormat};
    use cyberhost_engine::backends::{Backend, ConvEpilogue, TensorLike, Unary};
    use cyberhost_kernels::Arch;
    let be = open_cuda_backend();
    be.set_poison_outputs(true);
    if be.device().arch() != Arch::Sm80 {
        let err = be.set_channels_last(true).unwrap_err();
        assert!(format!("{err:#}").contains("sm_80"), "{err:#}");
        assert!(!be.channels_last());
        return;
    }
    be.set_channels_last(true).unwrap();
    // bf16-rounded values on both backends
    let pair = |be: &CudaBackend, shape: &[usize], seed: u64| {
        let n: usize = shape.iter().product();
        let v = round_bf16(&random(n, seed));
        (be.from_f32(shape, &v).unwrap(), cpu(shape, &v))
    };
    let weight = |be: &CudaBackend, shape: &[usize], seed: u64, p: EngineConv| {
        let (g, c) = pair(be, shape, seed);
        be.prepare_conv_weight(&g, p).unwrap();
        (g, c)
    };
    // the device's values as the CPU's inputs (checks of the later ops alone)
    let same = |t: &CudaTensor| cpu(t.shape(), &be.to_f32(t).unwrap());
    let p3 = EngineConv::new(1, 1);
    // ResNet conv1: contiguous x (the trunk's entry), bias + temb + scale
    let (x, xc) = pair(&be, &[2, 24, 7, 9], 1);
    let (w1, w1c) = weight(&be, &[40, 24, 3, 3], 2, p3);
    let (b1, b1c) = pair(&be, &[40], 3);
    let (t1, t1c) = pair(&be, &[2, 40], 4);
    fn epi<'a, T>(temb: Option<&'a T>, residual: Option<&'a T>, scale: f32) -> ConvEpilogue<'a, T> {
        ConvEpilogue {
            temb,
            residual,
            scale,
        }
    }
    let h = be
        .conv2d_ext(&x, &w1, Some(&b1), p3, epi(Some(&t1), None, 0.5))
        .unwrap();
    assert_eq!(h.memory_format(), MemoryFormat::ChannelsLast, "{h:?}");
    assert_eq!(h.shape(), [2, 40, 7, 9]);
    assert_eq!(h.storage_shape(), [2, 7, 9, 40]);
    let hc = CPU
        .conv2d_ext(&xc, &w1c, Some(&b1c), p3, epi(Some(&t1c), None, 0.5))
        .unwrap();
    check("channels-last conv2d_ext (temb)", &be, &h, &hc, tol(24 * 9));
    // ResNet conv2: channels-last x, a contiguous residual, output scale
    let (w2, w2c) = weight(&be, &[40, 40, 3, 3], 5, p3);
    let (r, rc) = pair(&be, &[2, 40, 7, 9], 6);
    let hs = same(&h);
    let y = be
        .conv2d_ext(&h, &w2, None, p3, epi(None, Some(&r), 0.7))
        .unwrap();
    assert!(y.is_channels_last());
    let yc = CPU
        .conv2d_ext(&hs, &w2c, None, p3, epi(None, Some(&rc), 0.7))
        .unwrap();
    check(
        "channels-last conv2d_ext (residual)",
        &be,
        &y,
        &yc,
        tol(40 * 9),
    );
    // a channels-last residual, stride-2 downsampler, plain conv2d
    let p1 = EngineConv::new(1, 0);
    let (w3, w3c) = weight(&be, &[40, 40, 1, 1], 7, p1);
    let z = be
        .conv2d_ext(&y, &w3, None, p1, epi(None, Some(&h), 1.0))
        .unwrap();
    let ys = same(&y);
    let zc = CPU
        .conv2d_ext(&ys, &w3c, None, p1, epi(None, Some(&hs), 1.0))
        .unwrap();
    check("channels-last residual", &be, &z, &zc, tol(40));
    let p2 = EngineConv::new(2, 1);
    let (w4, w4c) = weight(&be, &[16, 40, 3, 3], 8, p2);
    let d = be.conv2d(&y, &w4, None, p2).unwrap();
    assert!(d.is_channels_last());
    assert_eq!(d.shape(), [2, 16, 4, 5]);
    check(
        "channels-last stride 2",
        &be,
        &d,
        &CPU.conv2d(&ys, &w4c, None, p2).unwrap(),
        tol(360),
    );
    // 4 channels (conv_in of a latent: the element-wise loader)
    let (l, lc) = pair(&be, &[1, 4, 5, 6], 9);
    let (w5, w5c) = weight(&be, &[8, 4, 3, 3], 10, p3);
    let o = be.conv2d(&l, &w5, None, p3).unwrap();
    assert!(o.is_channels_last());
    check(
        "channels-last C = 4",
        &be,
        &o,
        &CPU.conv2d(&lc, &w5c, None, p3).unwrap(),
        tol(36),
    );
    // the conv as the first part of a concat: a contiguous tail, and a channels-last one
    for tail in [r.clone(), h.clone()] {
        let tc = same(&tail);
        let cat = be
            .conv2d_concat(&y, &w3, None, p1, ConvEpilogue::default(), &tail)
            .unwrap();
        assert!(cat.is_channels_last());
        let want = CPU
            .conv2d_concat(&ys, &w3c, None, p1, ConvEpilogue::default(), &tc)
            .unwrap();
        check("channels-last conv2d_concat", &be, &cat, &want, tol(40));
    }
    // ops that do not read channels-last get a contiguous copy
    let ew = 2f64.powi(-8);
    check(
        "silu of channels-last",
        &be,
        &be.unary(&y, Unary::Silu).unwrap(),
        &CPU.unary(&ys, Unary::Silu).unwrap(),
        ew,
    );
    // GroupNorm(+SiLU) reads and writes channels-last (C / G = 5: groups off the 16-byte vectors)
    let (g, gc) = pair(&be, &[40], 11);
    let (bb, bbc) = pair(&be, &[40], 13);
    let gn = be.group_norm(&y, 8, Some(&g), None, 1e-5).unwrap();
    assert!(gn.is_channels_last(), "{gn:?}");
    check(
        "group_norm of channels-last",
        &be,
        &gn,
        &CPU.group_norm(&ys, 8, Some(&gc), None, 1e-5).unwrap(),
        4.0 * ew,
    );
    let gs = be
        .group_norm_act(&y, 8, Some(&g), Some(&bb), 1e-5, Some(Unary::Silu))
        .unwrap();
    assert!(gs.is_channels_last(), "{gs:?}");
    check(
        "group_norm + SiLU of channels-last",
        &be,
        &gs,
        &CPU.group_norm_act(&ys, 8, Some(&gc), Some(&bbc), 1e-5, Some(Unary::Silu))
            .unwrap(),
        4.0 * ew,
    );
    // Transformer2D entries / exits (F = 1): a channels-last image's storage is the tokens
    let tk = be
        .group_norm_tokens(&y, 1, 8, Some(&g), Some(&bb), 1e-5)
        .unwrap();
    check(
        "group_norm_tokens of channels-last",
        &be,
        &tk,
        &CPU.group_norm_tokens(&ys, 1, 8, Some(&gc), Some(&bbc), 1e-5)
            .unwrap(),
        4.0 * ew,
    );
    check(
        "group_norm_tokens of channels-last, 2 frames (rows permuted in the kernel)",
        &be,
        &be.group_norm_tokens(&y, 2, 8, Some(&g), Some(&bb), 1e-5)
            .unwrap(),
        &CPU.group_norm_tokens(&ys, 2, 8, Some(&gc), Some(&bbc), 1e-5)
            .unwrap(),
        4.0 * ew,
    );
    let (wp, wpc) = pair(&be, &[24, 40, 1, 1], 15);
    let (bp, bpc) = pair(&be, &[24], 16);
    check(
        "group_norm_conv1x1_tokens of channels-last",
        &be,
        &be.group_norm_conv1x1_tokens(&y, 8, Some(&g), Some(&bb), 1e-5, &wp, Some(&bp))
            .unwrap(),
        &CPU.group_norm_conv1x1_tokens(&ys, 8, Some(&gc), Some(&bbc), 1e-5, &wpc, Some(&bpc))
            .unwrap(),
        tol(40),
    );
    let (tok, tokc) = pair(&be, &[2, 63, 40], 17);
    let ta = be.tokens_planes_add(&tok, &y, 1).unwrap();
    assert!(ta.is_channels_last(), "{ta:?}");
    check(
        "tokens_planes_add, channels-last residual",
        &be,
        &ta,
        &CPU.tokens_planes_add(&tokc, &ys, 1).unwrap(),
        ew,
    );
    let tc = be.tokens_planes_add_concat(&tok, &y, 1, &r).unwrap();
    assert!(tc.is_channels_last(), "{tc:?}");
    check(
        "tokens_planes_add_concat, channels-last residual",
        &be,
        &tc,
        &CPU.tokens_planes_add_concat(&tokc, &ys, 1, &rc).unwrap(),
        ew,
    );
    let (ti, tic) = pair(&be, &[2, 63, 24], 18);
    let (wo, woc) = pair(&be, &[40, 24, 1, 1], 19);
    let to = be
        .tokens_conv1x1_planes_add(&ti, &wo, Some(&b1), &y)
        .unwrap();
    assert!(to.is_channels_last(), "{to:?}");
    check(
        "tokens_conv1x1_planes_add, channels-last residual",
        &be,
        &to,
        &CPU.tokens_conv1x1_planes_add(&tic, &woc, Some(&b1c), &ys)
            .unwrap(),
        tol(24),
    );
    // the motion module (F = 3 frames of 2 items): entry GroupNorm to tokens, exit back to
    // channels-last planes (+ the next layer's skip concat), all on channels-last rows
    let (x6, _) = pair(&be, &[6, 40, 5, 3], 20);
    let m = be.conv2d(&x6, &w2, None, p3).unwrap();
    assert!(m.is_channels_last());
    let ms = same(&m);
    let mt = be
        .group_norm_tokens(&m, 3, 8, Some(&g), Some(&bb), 1e-5)
        .unwrap();
    assert_eq!(mt.shape(), [2, 15, 3, 40]);
    check(
        "group_norm_tokens of channels-last, 3 frames",
        &be,
        &mt,
        &CPU.group_norm_tokens(&ms, 3, 8, Some(&gc), Some(&bbc), 1e-5)
            .unwrap(),
        4.0 * ew,
    );
    let (mtok, mtokc) = pair(&be, &[30, 3, 40], 21);
    let ma = be.tokens_planes_add(&mtok, &m, 3).unwrap();
    assert!(ma.is_channels_last(), "{ma:?}");
    check(
        "tokens_planes_add, 3 frames, channels-last residual",
        &be,
        &ma,
        &CPU.tokens_planes_add(&mtokc, &ms, 3).unwrap(),
        ew,
    );
    let (mtail, mtailc) = pair(&be, &[6, 12, 5, 3], 22);
    let (w12, _) = weight(&be, &[12, 40, 1, 1], 23, p1);
    let mtail_cl = be.conv2d(&m, &w12, None, p1).unwrap();
    assert!(mtail_cl.is_channels_last());
    for (tail, tc) in [(&mtail, mtailc.clone()), (&mtail_cl, same(&mtail_cl))] {
        let mc = be.tokens_planes_add_concat(&mtok, &m, 3, tail).unwrap();
        assert!(mc.is_channels_last(), "{mc:?}");
        check(
            "tokens_planes_add_concat, 3 frames, channels-last residual",
            &be,
            &mc,
            &CPU.tokens_planes_add_concat(&mtokc, &ms, 3, &tc).unwrap(),
            ew,
        );
    }
    let (mh, mhc) = pair(&be, &[30, 3, 24], 24);
    let (wl, wlc) = pair(&be, &[40, 24], 25);
    let ml = be
        .linear_tokens_planes_add(&mh, &wl, Some(&b1), &m, 3, Some(&mtail))
        .unwrap();
    assert!(ml.is_channels_last(), "{ml:?}");
    check(
        "linear_tokens_planes_add, 3 frames, channels-last residual, concat",
        &be,
        &ml,
        &CPU.linear_tokens_planes_add(&mhc, &wlc, Some(&b1c), &ms, 3, Some(&mtailc))
            .unwrap(),
        tol(24),
    );
    // RCA's merge on the rows: f_in and the mask hidden state (conv1's output) channels-last
    let hid = be.conv2d(&y, &w12, None, p1).unwrap();
    assert!(hid.is_channels_last());
    let (mw, mwc) = pair(&be, &[1, 12, 1, 1], 27);
    let (mb, mbc) = pair(&be, &[1], 28);
    let rm = be.rca_merge(&y, &tok, &hid, &mw, Some(&mb)).unwrap();
    assert!(rm.is_channels_last(), "{rm:?}");
    check(
        "rca_merge, channels-last f_in and hidden",
        &be,
        &rm,
        &CPU.rca_merge(&ys, &tokc, &same(&hid), &mwc, Some(&mbc))
            .unwrap(),
        tol(12),
    );
    // nearest upsample on the rows (16-byte vectors; 12 channels: the element-wise path), then
    // the up block's conv into its part of the concat
    for (t, (oh, ow)) in [(&y, (14, 18)), (&y, (10, 13)), (&mtail_cl, (10, 6))] {
        let up = be.upsample_nearest2d(t, oh, ow).unwrap();
        assert!(up.is_channels_last(), "{up:?}");
        check(
            "upsample_nearest2d of channels-last",
            &be,
            &up,
            &CPU.upsample_nearest2d(&same(t), oh, ow).unwrap(),
            0.0,
        );
    }
    let up = be.upsample_nearest2d(&y, 14, 18).unwrap();
    let ups = same(&up);
    let (rt, rtc) = pair(&be, &[2, 16, 14, 18], 26);
    let uc = be
        .conv2d_concat(&up, &w4, None, p3, ConvEpilogue::default(), &rt)
        .unwrap();
    assert!(uc.is_channels_last());
    assert_eq!(uc.shape(), [2, 32, 14, 18]);
    check(
        "upsample then conv2d_concat (3x3, in place)",
        &be,
        &uc,
        &CPU.conv2d_concat(&ups, &w4c, None, p3, ConvEpilogue::default(), &rtc)
            .unwrap(),
        tol(360),
    );
    // an activation without a fused kernel: composed on a contiguous copy
    check(
        "group_norm + GELU of channels-last",
        &be,
        &be.group_norm_act(&y, 8, Some(&g), None, 1e-5, Some(Unary::Gelu))
            .unwrap(),
        &CPU.group_norm_act(&ys, 8, Some(&gc), None, 1e-5, Some(Unary::Gelu))
            .unwrap(),
        4.0 * ew,
    );
    check(
        "narrow of channels-last",
        &be,
        &be.narrow(&y, 1, 3, 10).unwrap(),
        &CPU.narrow(&ys, 1, 3, 10).unwrap(),
        0.0,
    );
    check(
        "reshape of channels-last",
        &be,
        &be.reshape(&y, &[2, 40, 63]).unwrap(),
        &CPU.reshape(&ys, &[2, 40, 63]).unwrap(),
        0.0,
    );
    check(
        "binary of channels-last and contiguous",
        &be,
        &be.binary(&y, &r, cyberhost_engine::backends::Binary::Add)
            .unwrap(),
        &CPU.binary(&ys, &rc, cyberhost_engine::backends::Binary::Add)
            .unwrap(),
        ew,
    );
    // a weight not packed at load keeps the NCHW conv (and a contiguous output)
    let (w6, w6c) = pair(&be, &[8, 40, 1, 1], 12);
    let u = be.conv2d(&y, &w6, None, p1).unwrap();
    assert!(!u.is_channels_last());
    check(
        "unpacked weight",
        &be,
        &u,
        &CPU.conv2d(&ys, &w6c, None, p1).unwrap(),
        tol(40),
    );
}
