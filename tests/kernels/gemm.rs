//! `linear_v1_bf16` / `matmul_v1_bf16` (`kernels/cuda/gemm.cu`) against the CPU backend's
//! `linear_ext` / `matmul` (`gemm_ref`): random bf16 inputs, ragged shapes (not multiples of the
//! tiles), bias / residual / scale / GEGLU epilogues, plain (non-cp.async) loads, every output
//! poisoned before the launch, several warp schedules, relative L2 <= 1e-2; and the engine's slice
//! launcher (`backends::cuda::gemm`) with its buffer-size errors.

use crate::check_op;
use crate::common::rand_pair;
use crate::common::{assert_close, round_bf16, to_bf16, Rng};
use crate::harness::{
    download_bf16 as download, engine_device, gemm_ref, upload_bf16 as upload, Device,
    TOL_BF16 as TOL,
};
use cyberhost_engine::backends::{Backend, TensorLike};
use cyberhost_kernels::gemm::{
    launch_config as gemm_launch, GemmEpilogue, GemmLayout, GemmOp, GemmParams, GemmPtrs, GemmShape,
};
use cyberhost_kernels::KernelModule;

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

/// An `(M, N, K)` case of `op` over `batch` products, otherwise [`G`].
const fn case(op: GemmOp, batch: usize, (m, n, k): (usize, usize, usize)) -> GemmCase {
    GemmCase {
        op,
        batch,
        m,
        n,
        k,
        ..G
    }
}

/// An option of a [`GemmCase`] over its [`case`] defaults.
#[derive(Clone, Copy)]
enum Opt {
    Bias,
    Residual,
    Scale(f32),
    Geglu,
    /// One B per batch entry instead of one shared B.
    BatchedB,
    /// Plain (non-cp.async) loads.
    PlainLoads,
}

impl GemmCase {
    fn with(mut self, opts: &[Opt]) -> GemmCase {
        for &o in opts {
            match o {
                Opt::Bias => self.bias = true,
                Opt::Residual => self.residual = true,
                Opt::Scale(s) => self.scale = s,
                Opt::Geglu => self.geglu = true,
                Opt::BatchedB => self.broadcast_b = false,
                Opt::PlainLoads => self.plain = true,
            }
        }
        self
    }
}

fn gemm_cases() -> Vec<GemmCase> {
    use GemmOp::{Linear, Matmul};
    use Opt::*;
    let fused = case(Linear, 1, (70, 50, 40)).with(&[Bias, Residual, Scale(0.5)]);
    let geglu = case(Linear, 1, (33, 40, 72)).with(&[Bias, Geglu]);
    vec![
        fused,
        fused.with(&[PlainLoads]),
        case(Linear, 1, (65, 64, 96)),
        // unaligned K: scalar loads
        case(Linear, 1, (17, 9, 21)).with(&[Bias]),
        geglu,
        case(Linear, 1, (70, 20, 24)).with(&[Bias, Geglu, PlainLoads, Scale(2.0)]),
        case(Linear, 2, (20, 33, 48)).with(&[BatchedB, Residual]),
        case(Matmul, 2, (33, 65, 72)).with(&[BatchedB, Scale(0.125)]),
        case(Matmul, 3, (9, 21, 19)).with(&[Bias, Residual]),
        case(Matmul, 1, (66, 72, 40)).with(&[Bias]),
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
    let want = gemm_ref(
        &a,
        &b,
        c.bias.then_some(&bias[..]),
        c.residual.then_some(&res[..]),
        (c.batch, c.m, c.n, c.k),
        c.op == GemmOp::Matmul,
        !c.broadcast_b,
        c.scale,
        c.geglu,
    );
    let shape = GemmShape::new(c.batch, c.m, c.n, c.k);
    let layout = GemmLayout::contiguous(c.op, shape, c.geglu, c.broadcast_b);
    let ptrs = GemmPtrs {
        a: dev.upload(&to_bf16(&a))?,
        b: dev.upload(&to_bf16(&b))?,
        bias: dev.upload_bf16_opt(c.bias, &bias)?,
        residual: dev.upload_bf16_opt(c.residual, &res)?,
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
    dev.check_bf16(&format!("{c:?} aligned {}", p.ops.aligned), ptrs.c, &want)
}

crate::harness::schedules_test!(gemm_linear_matmul_epilogues, gemm_cases(), 0, run_gemm);

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
    let want = gemm_ref(
        &x,
        &w,
        Some(&b),
        None,
        (1, m, n, k),
        false,
        false,
        1.0,
        true,
    );
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
    let want = gemm_ref(
        &a,
        &bm,
        None,
        Some(&r),
        (batch, m, n, k),
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

/// Mismatched inner dims are errors naming the shapes; a product with K = 0 is the bias.
fn linear_matmul_bad_shapes<B: Backend>(be: &B) -> anyhow::Result<()> {
    let x = be.from_f32(&[3, 4], &[1.0; 12])?;
    let w = be.from_f32(&[5, 3], &[1.0; 15])?;
    assert!(be.linear(&x, &w, None).is_err(), "linear K 4 vs 3");
    let b = be.from_f32(&[5, 2], &[1.0; 10])?;
    assert!(be.matmul(&x, &b).is_err(), "matmul K 4 vs 5");
    let w = be.from_f32(&[2, 4], &[1.0; 8])?;
    let bias = be.from_f32(&[3], &[1.0; 3])?;
    assert!(
        be.linear(&x, &w, Some(&bias)).is_err(),
        "bias of 3 for 2 outputs"
    );
    let y = be.linear(&x, &w, None)?;
    assert_eq!(y.shape(), &[3, 2]);
    assert_eq!(be.to_f32(&y)?, [4.0; 6]);
    Ok(())
}
crate::backend_test!(linear_matmul_bad_shapes);

// ------------------------------------------------------------------------------------------------
// through the CUDA backend (stand-in driver, or a GPU), against the CPU backend
// ------------------------------------------------------------------------------------------------

// the GEMM rounds its operands to bf16 in both storages
crate::storages_test!(linear_and_matmul_match_cpu, |be, _| {
    for (xs, n, bias) in [
        (vec![37usize, 70], 45usize, true),
        (vec![2, 5, 24], 17, false),
        (vec![3, 8], 64, true),
    ] {
        let k = *xs.last().unwrap();
        let (x, xc) = rand_pair(&be, &xs, 150);
        let (w, wc) = rand_pair(&be, &[n, k], 151);
        let (b, bc) = rand_pair(&be, &[n], 152);
        let (gb, cb) = if bias {
            (Some(&b), Some(&bc))
        } else {
            (None, None)
        };
        check_op!(format!("linear {xs:?} n {n}"), be, 1e-2,
            linear(&x, &w, gb) ~ (&xc, &wc, cb));
    }
    for (sa, sb) in [
        ([2usize, 3, 19, 21], [2usize, 3, 21, 13]),
        ([1, 1, 40, 8], [1, 1, 8, 70]),
    ] {
        let (a, ac) = rand_pair(&be, &sa, 160);
        let (b, bc) = rand_pair(&be, &sb, 161);
        check_op!(format!("matmul {sa:?} {sb:?}"), be, 1e-2, matmul(&a, &b) ~ (&ac, &bc));
    }
    let (a, _) = rand_pair(&be, &[2, 3], 1);
    assert!(be.matmul(&a, &a).is_err());
    let (w, _) = rand_pair(&be, &[4, 2], 2);
    assert!(be.linear(&a, &w, None).is_err());
});
