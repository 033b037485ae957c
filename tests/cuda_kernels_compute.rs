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
