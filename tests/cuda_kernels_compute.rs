//! Compute kernels (`gemm.cu`, `conv2d.cu`, `attention.cu`) against the f32 CPU references in
//! `cyberhost_kernels::reference::compute`: random bf16 inputs, ragged shapes (not multiples of the
//! tiles), every output poisoned before the launch, several warp schedules, relative L2 <= 1e-2.
//!
//!   cargo test --test cuda_kernels_compute                 # direct ptx-emu (hazard detection on)
//!   CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test --test cuda_kernels_compute
//!   CYBERHOST_KERNEL_TEST_DEVICE=cuda cargo test --test cuda_kernels_compute   # real GPU
//!
//! The `*_engine_launcher` tests go through the engine's launch functions (cudarc + the stand-in
//! driver, or a real GPU when `CYBERHOST_KERNEL_TEST_DEVICE=cuda`).

#[allow(dead_code)]
#[path = "kernels/harness.rs"]
mod harness;

use cyberhost_engine::backends::cuda::CudaDevice;
use cyberhost_kernels::gemm::{
    launch_config as gemm_launch, GemmEpilogue, GemmLayout, GemmOp, GemmParams, GemmPtrs, GemmShape,
};
use cyberhost_kernels::reference::compute as reference;
use cyberhost_kernels::KernelModule;
use half::bf16;
use harness::{assert_close, from_bf16, round_bf16, to_bf16, Device, Rng, SCHEDULES};
use std::sync::OnceLock;

const TOL: f64 = 1e-2;

/// The engine launchers need a `CudaDevice`: the stand-in driver unless a real GPU is asked for.
fn engine_device() -> &'static CudaDevice {
    static DEV: OnceLock<CudaDevice> = OnceLock::new();
    DEV.get_or_init(|| {
        let real = std::env::var(harness::DEVICE_ENV).is_ok_and(|v| v == "cuda");
        let dev = if real {
            CudaDevice::new(0)
        } else {
            CudaDevice::new_emulated(0)
        };
        dev.unwrap_or_else(|e| panic!("engine launcher tests: {e:#}"))
    })
}

type Slice = cyberhost_engine::backends::cuda::cudarc::driver::CudaSlice<u16>;

/// bf16 values as raw bits (any 2-byte element type works for the launchers).
fn upload(dev: &CudaDevice, x: &[f32]) -> Slice {
    let bits: Vec<u16> = to_bf16(x).iter().map(|v| v.to_bits()).collect();
    dev.stream().clone_htod(&bits).expect("upload")
}

fn download(dev: &CudaDevice, x: &Slice) -> Vec<f32> {
    let v = dev.stream().clone_dtoh(x).expect("download");
    dev.synchronize().unwrap();
    v.iter().map(|&b| bf16::from_bits(b).to_f32()).collect()
}

// ------------------------------------------------------------------------------------------------
// gemm
// ------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct GemmCase {
    op: GemmOp,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    bias: bool,
    residual: bool,
    scale: f32,
    geglu: bool,
    broadcast_b: bool,
    plain: bool,
}

const G: GemmCase = GemmCase {
    op: GemmOp::Linear,
    batch: 1,
    m: 1,
    n: 1,
    k: 1,
    bias: false,
    residual: false,
    scale: 1.0,
    geglu: false,
    broadcast_b: true,
    plain: false,
};

fn gemm_cases() -> Vec<GemmCase> {
    vec![
        GemmCase {
            m: 70,
            n: 50,
            k: 40,
            bias: true,
            residual: true,
            scale: 0.5,
            ..G
        },
        GemmCase {
            m: 70,
            n: 50,
            k: 40,
            bias: true,
            residual: true,
            scale: 0.5,
            plain: true,
            ..G
        },
        GemmCase {
            m: 65,
            n: 64,
            k: 96,
            ..G
        },
        GemmCase {
            m: 17,
            n: 9,
            k: 21,
            bias: true,
            ..G
        }, // unaligned K: scalar loads
        GemmCase {
            m: 33,
            n: 40,
            k: 72,
            bias: true,
            geglu: true,
            ..G
        },
        GemmCase {
            m: 70,
            n: 20,
            k: 24,
            bias: true,
            geglu: true,
            plain: true,
            scale: 2.0,
            ..G
        },
        GemmCase {
            op: GemmOp::Linear,
            batch: 2,
            m: 20,
            n: 33,
            k: 48,
            broadcast_b: false,
            residual: true,
            ..G
        },
        GemmCase {
            op: GemmOp::Matmul,
            batch: 2,
            m: 33,
            n: 65,
            k: 72,
            broadcast_b: false,
            scale: 0.125,
            ..G
        },
        GemmCase {
            op: GemmOp::Matmul,
            batch: 3,
            m: 9,
            n: 21,
            k: 19,
            bias: true,
            residual: true,
            ..G
        },
        GemmCase {
            op: GemmOp::Matmul,
            batch: 1,
            m: 66,
            n: 72,
            k: 40,
            bias: true,
            ..G
        },
    ]
}

fn run_gemm(dev: &mut Device, c: GemmCase, seed: u64) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let b_rows = if c.geglu { 2 * c.n } else { c.n };
    let b_count = if c.broadcast_b { 1 } else { c.batch };
    let a = round_bf16(&rng.randn(c.batch * c.m * c.k, 1.0, 0.0));
    let b = round_bf16(&rng.randn(b_count * b_rows * c.k, 1.0, 0.0));
    let bias = round_bf16(&rng.randn(b_rows, 1.0, 0.0));
    let res = round_bf16(&rng.randn(c.batch * c.m * c.n, 1.0, 0.0));
    let want = reference::gemm(
        &a,
        &b,
        c.bias.then_some(&bias[..]),
        c.residual.then_some(&res[..]),
        c.batch,
        c.m,
        c.n,
        c.k,
        c.op == GemmOp::Matmul,
        !c.broadcast_b,
        c.scale,
        c.geglu,
    );
    let shape = GemmShape {
        batch: c.batch as u64,
        m: c.m as u64,
        n: c.n as u64,
        k: c.k as u64,
    };
    let layout = GemmLayout::contiguous(c.op, shape, c.geglu, c.broadcast_b);
    let ptrs = GemmPtrs {
        a: dev.upload(&to_bf16(&a))?,
        b: dev.upload(&to_bf16(&b))?,
        bias: if c.bias {
            dev.upload(&to_bf16(&bias))?
        } else {
            0
        },
        residual: if c.residual {
            dev.upload(&to_bf16(&res))?
        } else {
            0
        },
        c: dev.alloc_poisoned(want.len() * 2)?,
    };
    let epi = GemmEpilogue {
        scale: c.scale,
        geglu: c.geglu,
    };
    let mut p = GemmParams::new(c.op, ptrs, shape, layout, epi)?;
    if c.plain {
        p = p.without_cp_async();
    }
    dev.launch(
        KernelModule::Gemm,
        c.op.entry(),
        gemm_launch(shape, c.geglu),
        &p,
    )?;
    let got = from_bf16(&dev.download::<bf16>(ptrs.c, want.len())?);
    assert_close(&format!("{c:?} aligned {}", p.aligned), &got, &want, TOL);
    Ok(())
}

#[test]
fn gemm_linear_matmul_epilogues() {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, c) in gemm_cases().into_iter().enumerate() {
            run_gemm(&mut dev, c, (i * 100 + j) as u64).unwrap();
        }
    }
}

#[test]
fn gemm_engine_launcher() {
    use cyberhost_engine::backends::cuda::gemm::{linear, matmul, GemmExtras};
    let dev = engine_device();
    let mut rng = Rng::new(7);
    // FeedForward GEGLU proj: x (M, K) . w (2N, K)^T.
    let (m, n, k) = (37, 24, 40);
    let x = round_bf16(&rng.randn(m * k, 1.0, 0.0));
    let w = round_bf16(&rng.randn(2 * n * k, 1.0, 0.0));
    let b = round_bf16(&rng.randn(2 * n, 1.0, 0.0));
    let (dx, dw, db) = (upload(dev, &x), upload(dev, &w), upload(dev, &b));
    let mut out = dev.stream().alloc_zeros::<u16>(m * n).unwrap();
    let extras = GemmExtras {
        bias: Some(&db),
        geglu: true,
        ..Default::default()
    };
    linear(dev, &dx, &dw, &mut out, m, n, k, extras).unwrap();
    let want = reference::gemm(&x, &w, Some(&b), None, 1, m, n, k, false, false, 1.0, true);
    assert_close("engine linear GEGLU", &download(dev, &out), &want, TOL);

    // Batched matmul with residual and scale.
    let (batch, m, n, k) = (2, 19, 30, 24);
    let a = round_bf16(&rng.randn(batch * m * k, 1.0, 0.0));
    let bm = round_bf16(&rng.randn(batch * k * n, 1.0, 0.0));
    let r = round_bf16(&rng.randn(batch * m * n, 1.0, 0.0));
    let (da, dbm, dr) = (upload(dev, &a), upload(dev, &bm), upload(dev, &r));
    let mut out = dev.stream().alloc_zeros::<u16>(batch * m * n).unwrap();
    let extras = GemmExtras {
        residual: Some(&dr),
        scale: 0.5,
        ..Default::default()
    };
    matmul(dev, &da, &dbm, &mut out, batch, m, n, k, false, extras).unwrap();
    let want = reference::gemm(
        &a,
        &bm,
        None,
        Some(&r),
        batch,
        m,
        n,
        k,
        true,
        true,
        0.5,
        false,
    );
    assert_close("engine matmul", &download(dev, &out), &want, TOL);

    // Too-short output buffer: an error naming the buffer, not a fault.
    let mut short = dev.stream().alloc_zeros::<u16>(3).unwrap();
    let err = matmul(
        dev,
        &da,
        &dbm,
        &mut short,
        batch,
        m,
        n,
        k,
        false,
        GemmExtras::default(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("out"), "{err:#}");
}

// ------------------------------------------------------------------------------------------------
// conv2d
// ------------------------------------------------------------------------------------------------

use cyberhost_kernels::conv2d::{
    launch_config as conv_launch, Conv2dParams, Conv2dPtrs, Conv2dShape,
};

#[derive(Clone, Copy, Debug)]
struct ConvCase {
    s: Conv2dShape,
    bias: bool,
    temb: bool,
    residual: bool,
    scale: f32,
    plain: bool,
    /// The residual is one image `(1, C_out, Ho, Wo)` broadcast over the batch.
    bcast: bool,
}

fn conv_shape(
    n: u64,
    c_in: u64,
    h: u64,
    w: u64,
    c_out: u64,
    k: u64,
    stride: u64,
    pad: u64,
) -> Conv2dShape {
    Conv2dShape::square(n, c_in, h, w, c_out, k, stride, pad)
}

/// 1-D convolution as conv2d with H = 1: kernel (1, k), stride (1, stride), padding (0, pad).
fn conv1d_shape(
    n: u64,
    c_in: u64,
    w: u64,
    c_out: u64,
    k: u64,
    stride: u64,
    pad: u64,
    groups: u64,
) -> Conv2dShape {
    Conv2dShape {
        n,
        c_in,
        h: 1,
        w,
        c_out,
        kh: 1,
        kw: k,
        stride: (1, stride),
        pad: (0, pad),
        dilation: (1, 1),
        groups,
    }
}

/// f32 reference for any geometry (groups, dilation, per-axis stride / padding):
/// `scale * (conv + bias[o] + temb[n, o] + residual)`; a residual of one image's length is
/// broadcast over the batch.
fn conv_ref(
    x: &[f32],
    w: &[f32],
    s: Conv2dShape,
    bias: Option<&[f32]>,
    temb: Option<&[f32]>,
    res: Option<&[f32]>,
    scale: f32,
) -> Vec<f32> {
    let u = |v: u64| v as usize;
    let (n, c_in, h, wi, c_out, kh, kw) = (
        u(s.n),
        u(s.c_in),
        u(s.h),
        u(s.w),
        u(s.c_out),
        u(s.kh),
        u(s.kw),
    );
    let (ho, wo, cig, cog) = (u(s.h_out()), u(s.w_out()), u(s.c_in_g()), u(s.c_out_g()));
    let mut y = vec![0f32; n * c_out * ho * wo];
    for img in 0..n {
        for o in 0..c_out {
            let g = o / cog;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = 0f64;
                    for c in 0..cig {
                        for ky in 0..kh {
                            let iy = (oy * u(s.stride.0) + ky * u(s.dilation.0)) as isize
                                - s.pad.0 as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * u(s.stride.1) + kx * u(s.dilation.1)) as isize
                                    - s.pad.1 as isize;
                                if ix < 0 || ix >= wi as isize {
                                    continue;
                                }
                                let xv = x[((img * c_in + g * cig + c) * h + iy as usize) * wi
                                    + ix as usize];
                                let wv = w[((o * cig + c) * kh + ky) * kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    let idx = ((img * c_out + o) * ho + oy) * wo + ox;
                    let mut v = acc as f32;
                    v += bias.map_or(0.0, |b| b[o]);
                    v += temb.map_or(0.0, |t| t[img * c_out + o]);
                    v += res.map_or(0.0, |r| r[idx % r.len()]);
                    y[idx] = v * scale;
                }
            }
        }
    }
    y
}

fn conv_cases() -> Vec<ConvCase> {
    let c = |s, bias, temb, residual, scale, plain| ConvCase {
        s,
        bias,
        temb,
        residual,
        scale,
        plain,
        bcast: false,
    };
    let b = |s, scale, plain| ConvCase {
        bcast: true,
        ..c(s, true, false, true, scale, plain)
    };
    let mut cases = vec![
        // broadcast residual (1, C_out, Ho, Wo): the denoiser's conv_in + p_move (3x3, N 3, ragged
        // C_out and an odd pixel count), a 1x1 with scale and plain W loads, N = 1
        b(conv_shape(3, 4, 9, 7, 20, 3, 1, 1), 1.0, false),
        b(conv_shape(2, 24, 5, 13, 70, 1, 1, 0), 0.5, true),
        b(conv_shape(1, 8, 6, 6, 12, 3, 2, 1), 1.0, false),
    ];
    cases.extend(vec![
        c(
            conv_shape(2, 8, 9, 7, 70, 3, 1, 1),
            true,
            true,
            false,
            1.0,
            false,
        ), // ResNet conv1 + temb
        c(
            conv_shape(1, 8, 9, 7, 70, 3, 1, 1),
            true,
            false,
            false,
            1.0,
            true,
        ), // plain W loads
        c(
            conv_shape(1, 16, 11, 10, 24, 3, 1, 1),
            true,
            false,
            true,
            0.5,
            false,
        ), // conv2 + shortcut / scale
        c(
            conv_shape(2, 12, 9, 9, 20, 3, 2, 1),
            true,
            false,
            false,
            1.0,
            false,
        ), // downsample stride 2
        c(
            conv_shape(1, 24, 6, 13, 33, 1, 1, 0),
            true,
            false,
            true,
            1.0,
            false,
        ), // 1x1 shortcut
        c(
            conv_shape(1, 3, 8, 8, 5, 3, 1, 1),
            false,
            false,
            false,
            1.0,
            false,
        ), // K = 27 (unaligned)
        c(
            conv1d_shape(2, 1, 403, 70, 10, 5, 0, 1),
            false,
            false,
            false,
            1.0,
            false,
        ), // wav2vec2 feature extractor conv0: 1x10 stride (1, 5), H = 1, C_in 1 (K = 10)
        c(
            conv1d_shape(1, 24, 97, 33, 3, 2, 0, 1),
            true,
            false,
            false,
            1.0,
            false,
        ), // feature extractor conv1..: 1x3 stride (1, 2)
        c(
            conv1d_shape(2, 16, 50, 16, 8, 1, 4, 2),
            true,
            false,
            false,
            1.0,
            false,
        ), // positional conv embedding: groups 2, 1x8, padding (0, 4) -> Wo = W + 1
        c(
            conv1d_shape(2, 32, 37, 32, 6, 1, 3, 4),
            true,
            false,
            true,
            1.0,
            false,
        ), // groups 4, 1x6, padding (0, 3), K = 48 (cp.async), + residual
        c(
            conv1d_shape(1, 48, 29, 280, 4, 1, 2, 4),
            true,
            true,
            false,
            0.5,
            true,
        ), // groups 4 with 70 channels per group (ragged M tile inside each group), plain loads
        c(
            Conv2dShape {
                dilation: (2, 2),
                ..conv_shape(2, 8, 9, 11, 20, 3, 1, 2)
            },
            true,
            false,
            false,
            1.0,
            false,
        ), // dilation 2, 3x3
        c(
            Conv2dShape {
                kh: 3,
                kw: 2,
                stride: (2, 1),
                pad: (1, 0),
                dilation: (1, 3),
                ..conv_shape(1, 6, 10, 9, 12, 3, 1, 1)
            },
            true,
            false,
            false,
            1.0,
            false,
        ), // rectangular 3x2, stride (2, 1), padding (1, 0), dilation (1, 3)
    ]);
    cases
}

fn run_conv(dev: &mut Device, c: ConvCase, seed: u64) -> anyhow::Result<()> {
    let s = c.s;
    let mut rng = Rng::new(seed);
    let out_len = (s.n * s.c_out * s.h_out() * s.w_out()) as usize;
    let x = round_bf16(&rng.randn((s.n * s.c_in * s.h * s.w) as usize, 1.0, 0.0));
    let w = round_bf16(&rng.randn((s.c_out * s.k()) as usize, 0.3, 0.0));
    let bias = round_bf16(&rng.randn(s.c_out as usize, 1.0, 0.0));
    let temb = round_bf16(&rng.randn((s.n * s.c_out) as usize, 1.0, 0.0));
    let res_len = if c.bcast {
        out_len / s.n as usize
    } else {
        out_len
    };
    let res = round_bf16(&rng.randn(res_len, 1.0, 0.0));
    let want = conv_ref(
        &x,
        &w,
        s,
        c.bias.then_some(&bias[..]),
        c.temb.then_some(&temb[..]),
        c.residual.then_some(&res[..]),
        c.scale,
    );
    let ptrs = Conv2dPtrs {
        x: dev.upload(&to_bf16(&x))?,
        w: dev.upload(&to_bf16(&w))?,
        bias: if c.bias {
            dev.upload(&to_bf16(&bias))?
        } else {
            0
        },
        temb: if c.temb {
            dev.upload(&to_bf16(&temb))?
        } else {
            0
        },
        residual: if c.residual {
            dev.upload(&to_bf16(&res))?
        } else {
            0
        },
        y: dev.alloc_poisoned(out_len * 2)?,
    };
    let mut p = Conv2dParams::new(ptrs, s, c.scale)?;
    if c.plain {
        p = p.without_cp_async();
    }
    if c.bcast {
        p = p.with_broadcast_residual();
    }
    dev.launch(KernelModule::Conv2d, "conv2d_v1_bf16", conv_launch(s), &p)?;
    let got = from_bf16(&dev.download::<bf16>(ptrs.y, out_len)?);
    assert_close(&format!("{c:?} aligned {}", p.aligned), &got, &want, TOL);
    Ok(())
}

#[test]
fn conv2d_implicit_gemm_epilogues() {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, c) in conv_cases().into_iter().enumerate() {
            run_conv(&mut dev, c, (i * 100 + j) as u64 + 5000).unwrap();
        }
    }
}

#[test]
fn conv2d_engine_launcher() {
    use cyberhost_engine::backends::cuda::conv2d::{conv2d, Conv2dExtras};
    let dev = engine_device();
    let mut rng = Rng::new(11);
    // Grouped, rectangular, per-axis stride / padding.
    let s = Conv2dShape {
        kh: 3,
        kw: 2,
        stride: (1, 2),
        pad: (1, 0),
        groups: 2,
        ..conv_shape(2, 8, 7, 6, 20, 3, 1, 1)
    };
    let out_len = (s.n * s.c_out * s.h_out() * s.w_out()) as usize;
    let x = round_bf16(&rng.randn((s.n * s.c_in * s.h * s.w) as usize, 1.0, 0.0));
    let w = round_bf16(&rng.randn((s.c_out * s.k()) as usize, 0.3, 0.0));
    let b = round_bf16(&rng.randn(s.c_out as usize, 1.0, 0.0));
    let t = round_bf16(&rng.randn((s.n * s.c_out) as usize, 1.0, 0.0));
    let r = round_bf16(&rng.randn(out_len, 1.0, 0.0));
    let (dx, dw, db, dt, dr) = (
        upload(dev, &x),
        upload(dev, &w),
        upload(dev, &b),
        upload(dev, &t),
        upload(dev, &r),
    );
    let mut y = dev.stream().alloc_zeros::<u16>(out_len).unwrap();
    let extras = Conv2dExtras {
        bias: Some(&db),
        temb: Some(&dt),
        residual: Some(&dr),
        broadcast_residual: false,
        scale: 0.5,
    };
    conv2d(dev, &dx, &dw, &mut y, s, extras).unwrap();
    let want = conv_ref(&x, &w, s, Some(&b), Some(&t), Some(&r), 0.5);
    assert_close("engine conv2d", &download(dev, &y), &want, TOL);
}

// ------------------------------------------------------------------------------------------------
// attention
// ------------------------------------------------------------------------------------------------

use cyberhost_kernels::attention::{
    launch_config as attn_launch, traits_for, AttentionParams, AttentionShape, AttnStrides,
};

#[derive(Clone, Copy, Debug)]
struct AttnCase {
    batch: u64,
    heads: u64,
    lq: u64,
    lk: u64,
    d: u64,
    /// `(B, L, H, D)` operands instead of `(B, H, L, D)`.
    blhd: bool,
    plain: bool,
}

fn attn_cases() -> Vec<AttnCase> {
    let c = |batch, heads, lq, lk, d, blhd, plain| AttnCase {
        batch,
        heads,
        lq,
        lk,
        d,
        blhd,
        plain,
    };
    vec![
        c(1, 2, 70, 150, 40, false, false), // reference attention Lk > Lq, ragged both, 3 key tiles
        c(2, 1, 37, 9, 40, true, false),    // audio cross-attention: short Lk, (B, L, H, D)
        c(1, 1, 16, 16, 64, false, false),  // temporal attention Lq = Lk = frames
        c(1, 2, 33, 70, 80, false, true),   // plain loads
        c(1, 1, 65, 40, 128, false, false), // 2 query blocks, BN 32 tiles
        c(1, 1, 20, 45, 160, true, false),  // largest head dim
        c(1, 1, 5, 4, 160, false, true),    // 4 audio tokens
    ]
}

fn run_attn(dev: &mut Device, c: AttnCase, seed: u64) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let (b, h, lq, lk, d) = (
        c.batch as usize,
        c.heads as usize,
        c.lq as usize,
        c.lk as usize,
        c.d as usize,
    );
    // Dense (B*H, L, D) for the reference; scores of O(3) so the softmax is not flat.
    let q = round_bf16(&rng.randn(b * h * lq * d, 1.0, 0.0));
    let k = round_bf16(&rng.randn(b * h * lk * d, 1.0, 0.0));
    let v = round_bf16(&rng.randn(b * h * lk * d, 1.0, 0.0));
    let scale = 1.0 / (d as f32).sqrt();
    let want = reference::attention(&q, &k, &v, b * h, lq, lk, d, scale);
    // (B, H, L, D) -> (B, L, H, D) when asked.
    let to_layout = |x: &[f32], len: usize| -> Vec<f32> {
        if !c.blhd {
            return x.to_vec();
        }
        let mut y = vec![0.0; x.len()];
        for bi in 0..b {
            for hi in 0..h {
                for l in 0..len {
                    let src = ((bi * h + hi) * len + l) * d;
                    let dst = ((bi * len + l) * h + hi) * d;
                    y[dst..dst + d].copy_from_slice(&x[src..src + d]);
                }
            }
        }
        y
    };
    let st = |len: u64| {
        if c.blhd {
            AttnStrides::blhd(c.heads, len, c.d)
        } else {
            AttnStrides::bhld(c.heads, len, c.d)
        }
    };
    let shape = AttentionShape {
        batch: c.batch,
        heads: c.heads,
        lq: c.lq,
        lk: c.lk,
        d: c.d,
    };
    let ptrs = [
        dev.upload(&to_bf16(&to_layout(&q, lq)))?,
        dev.upload(&to_bf16(&to_layout(&k, lk)))?,
        dev.upload(&to_bf16(&to_layout(&v, lk)))?,
        dev.alloc_poisoned(want.len() * 2)?,
    ];
    let mut p = AttentionParams::new(ptrs, [st(c.lq), st(c.lk), st(c.lk), st(c.lq)], shape, scale)?;
    if c.plain {
        p = p.without_cp_async();
    }
    let entry = traits_for(c.d)?.entry;
    dev.launch(KernelModule::Attention, entry, attn_launch(shape), &p)?;
    let got = from_bf16(&dev.download::<bf16>(ptrs[3], want.len())?);
    // back to (B, H, L, D)
    let got = if c.blhd {
        let mut y = vec![0.0; got.len()];
        for bi in 0..b {
            for hi in 0..h {
                for l in 0..lq {
                    let dst = ((bi * h + hi) * lq + l) * d;
                    let src = ((bi * lq + l) * h + hi) * d;
                    y[dst..dst + d].copy_from_slice(&got[src..src + d]);
                }
            }
        }
        y
    } else {
        got
    };
    assert_close(
        &format!("{entry} {c:?} aligned {}", p.aligned),
        &got,
        &want,
        TOL,
    );
    Ok(())
}

#[test]
fn attention_flash_head_dims() {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, c) in attn_cases().into_iter().enumerate() {
            run_attn(&mut dev, c, (i * 100 + j) as u64 + 9000).unwrap();
        }
    }
}

#[test]
fn attention_engine_launcher() {
    use cyberhost_engine::backends::cuda::attention::{attention, AttnLayout};
    let dev = engine_device();
    let mut rng = Rng::new(13);
    let (b, h, lq, lk, d) = (1usize, 2usize, 40usize, 72usize, 40usize);
    let q = round_bf16(&rng.randn(b * h * lq * d, 1.0, 0.0));
    let k = round_bf16(&rng.randn(b * h * lk * d, 1.0, 0.0));
    let v = round_bf16(&rng.randn(b * h * lk * d, 1.0, 0.0));
    let (dq, dk, dv) = (upload(dev, &q), upload(dev, &k), upload(dev, &v));
    let mut o = dev.stream().alloc_zeros::<u16>(b * h * lq * d).unwrap();
    let shape = AttentionShape {
        batch: b as u64,
        heads: h as u64,
        lq: lq as u64,
        lk: lk as u64,
        d: d as u64,
    };
    let scale = 1.0 / (d as f32).sqrt();
    attention(dev, &dq, &dk, &dv, &mut o, shape, AttnLayout::Bhld, scale).unwrap();
    let want = reference::attention(&q, &k, &v, b * h, lq, lk, d, scale);
    assert_close("engine attention", &download(dev, &o), &want, TOL);
    // Unsupported head dim: an error, not a launch.
    let bad = AttentionShape { d: 36, ..shape };
    assert!(attention(dev, &dq, &dk, &dv, &mut o, bad, AttnLayout::Bhld, scale).is_err());
}
