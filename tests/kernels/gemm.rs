//! `linear_v1_bf16` / `matmul_v1_bf16` (`kernels/cuda/gemm.cu`) against the CPU backend's
//! `linear_ext` / `matmul` (`gemm_ref`): random bf16 inputs, ragged shapes (not multiples of the
//! tiles), bias / residual / scale / GEGLU epilogues, plain (non-cp.async) loads, every output
//! poisoned before the launch, several warp schedules, relative L2 <= 1e-2; and the engine's slice
//! launcher (`backends::cuda::gemm`) with its buffer-size errors.

use crate::check_op;
use crate::common::rand_pair;
use crate::common::{assert_close, rel_l2, round_bf16, to_bf16, Rng};
use crate::harness::{
    download_bf16 as download, engine_device, gemm_ref, upload_bf16 as upload, Device, POISON,
    TOL_BF16 as TOL,
};
use cyberhost_engine::backends::{Backend, TensorLike};
use cyberhost_kernels::gemm::{
    launch_config as gemm_launch, GemmEpilogue, GemmLayout, GemmOp, GemmParams, GemmPlan, GemmPtrs,
    GemmShape, GemmTile, GemmV2Params, SPLITK_ENTRY,
};
use cyberhost_kernels::{DType, KernelModule};

#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmCase {
    pub op: GemmOp,
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub bias: bool,
    pub residual: bool,
    pub scale: f32,
    pub geglu: bool,
    pub broadcast_b: bool,
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
pub(crate) const fn case(op: GemmOp, batch: usize, (m, n, k): (usize, usize, usize)) -> GemmCase {
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
pub(crate) enum Opt {
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
    pub(crate) fn with(mut self, opts: &[Opt]) -> GemmCase {
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

/// Case c's random A, B, bias and residual (drawn in that order from `seed`; B rounded to bf16
/// when `bf16_b`, the others when `bf16_rest`) and gemm_ref's output on them.
pub(crate) fn gemm_inputs(
    c: &GemmCase,
    seed: u64,
    bf16_b: bool,
    bf16_rest: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let round = |v: Vec<f32>, on: bool| if on { round_bf16(&v) } else { v };
    let b_rows = if c.geglu { 2 * c.n } else { c.n };
    let b_count = if c.broadcast_b { 1 } else { c.batch };
    let a = round(rng.randn(c.batch * c.m * c.k, 1.0, 0.0), bf16_rest);
    let b = round(rng.randn(b_count * b_rows * c.k, 1.0, 0.0), bf16_b);
    let bias = round(rng.randn(b_rows, 1.0, 0.0), bf16_rest);
    let res = round(rng.randn(c.batch * c.m * c.n, 1.0, 0.0), bf16_rest);
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
    (a, b, bias, res, want)
}

/// Case `c` on the device with contiguous bf16 operands ([`gemm_inputs`], bf16-rounded; only the
/// enabled bias / residual uploaded) and a poisoned bf16 C: shape, layout, pointers, epilogue
/// and the CPU reference.
pub(crate) fn upload_bf16_case(
    dev: &mut Device,
    c: &GemmCase,
    seed: u64,
) -> anyhow::Result<(GemmShape, GemmLayout, GemmPtrs, GemmEpilogue, Vec<f32>)> {
    let (a, b, bias, res, want) = gemm_inputs(c, seed, true, true);
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
    Ok((shape, layout, ptrs, epi, want))
}

fn run_gemm(dev: &mut Device, c: GemmCase, seed: u64) -> anyhow::Result<()> {
    let (shape, layout, ptrs, epi, want) = upload_bf16_case(dev, &c, seed)?;
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

/// A v2 case: the entry of `tile`, `splits` k splits (1 = none; more: the split-K pass after);
/// without split-K the persistent schedule of `GemmPlan::persistent` for `sched` = (resident
/// CTAs, L2 bytes), or one CTA per tile when `None`.
#[derive(Clone, Copy, Debug)]
struct V2Case {
    c: GemmCase,
    tile: GemmTile,
    splits: u32,
    sched: Option<(u32, u64)>,
}

fn v2_cases() -> Vec<V2Case> {
    use GemmOp::{Linear, Matmul};
    use GemmTile::{T128x128 as L, T128x256 as XL, T256x128 as XT, T64x64 as S};
    use Opt::*;
    let v = |c: GemmCase, tile, splits| V2Case {
        c,
        tile,
        splits,
        sched: None,
    };
    // persistent: `resident` CTAs, an L2 that bounds the raster group at `rows` tile rows of K
    let p = |c: GemmCase, tile: GemmTile, resident: u32, rows: u64| {
        let panel = tile.geometry().0 as u64 * c.k.div_ceil(32) as u64 * 64;
        V2Case {
            c,
            tile,
            splits: 1,
            sched: Some((resident, 4 * panel * rows)),
        }
    };
    vec![
        // Persistent CTAs over several tiles each, tile rows not a multiple of the raster group:
        // 5 x 4 tiles on 4 CTAs in groups of 2 rows (2, 2, 1).
        p(
            case(Linear, 1, (300, 200, 72)).with(&[Bias, Residual, Scale(0.5)]),
            S,
            4,
            2,
        ),
        // GEGLU, 3 x 2 tiles of 128 x 256 on 2 CTAs, groups of 2 rows
        p(
            case(Linear, 1, (260, 136, 40)).with(&[Bias, Geglu]),
            XL,
            2,
            2,
        ),
        // batched matmul: 2 x (3 x 2) tiles on 4 CTAs (a CTA's tiles cross batch entries)
        p(
            case(Matmul, 2, (260, 136, 48)).with(&[BatchedB, Residual]),
            L,
            4,
            2,
        ),
        // 3 x 2 tiles of 256 x 128 on 2 CTAs, groups of 2 rows
        p(case(Linear, 1, (520, 136, 48)).with(&[Bias]), XT, 2, 2),
        // M, N, K tails (K = 72: a partial last k tile), every epilogue term
        v(
            case(Linear, 1, (130, 136, 72)).with(&[Bias, Residual, Scale(0.5)]),
            L,
            1,
        ),
        v(case(Linear, 1, (150, 260, 40)).with(&[Bias]), XL, 1),
        v(case(Linear, 1, (129, 136, 64)).with(&[Bias, Geglu]), XL, 1),
        v(case(Linear, 1, (45, 37, 64)).with(&[Residual]), L, 1),
        v(
            case(Linear, 1, (33, 40, 24)).with(&[Bias, Geglu, Scale(2.0)]),
            S,
            1,
        ),
        v(
            case(Linear, 2, (20, 33, 48)).with(&[BatchedB, Residual]),
            S,
            1,
        ),
        v(
            case(Matmul, 2, (70, 136, 48)).with(&[BatchedB, Residual]),
            L,
            1,
        ),
        v(
            case(Matmul, 1, (65, 264, 32)).with(&[Bias, Scale(0.125)]),
            XL,
            1,
        ),
        v(case(Matmul, 3, (9, 24, 16)).with(&[Bias]), S, 1),
        v(
            case(Linear, 1, (260, 136, 40)).with(&[Bias, Residual]),
            XT,
            1,
        ),
        v(case(Linear, 1, (257, 72, 48)).with(&[Bias, Geglu]), XT, 1),
        v(case(Matmul, 2, (130, 136, 24)).with(&[BatchedB]), XT, 1),
        // split-K: deterministic f32 workspace + reduction pass
        v(case(Linear, 1, (20, 50, 264)).with(&[Bias, Residual]), S, 3),
        v(case(Linear, 1, (17, 24, 200)).with(&[Bias, Geglu]), S, 4),
        v(
            case(Matmul, 2, (40, 72, 136)).with(&[BatchedB, Scale(0.5)]),
            S,
            2,
        ),
        v(case(Linear, 2, (66, 130, 256)).with(&[Bias]), L, 2),
    ]
}

fn run_gemm_v2(dev: &mut Device, v: V2Case, seed: u64) -> anyhow::Result<()> {
    let c = v.c;
    let (shape, layout, ptrs, epi, want) = upload_bf16_case(dev, &c, seed)?;
    let g = GemmParams::new(c.op, ptrs, shape, layout, epi)?;
    assert_eq!(g.ops.aligned, 1, "{v:?}: v2 needs the cp.async path");
    let ktiles = c.k.div_ceil(32) as u64;
    let plan = match v.sched {
        _ if v.splits > 1 => GemmPlan::split_k(v.tile, ktiles, ktiles.div_ceil(v.splits as u64)),
        Some((resident, l2)) => GemmPlan::persistent(v.tile, shape, c.geglu, resident, l2),
        None => GemmPlan::persistent(v.tile, shape, c.geglu, u32::MAX, 40 << 20),
    };
    assert_eq!(plan.splits, v.splits, "{v:?}");
    if let Some((resident, _)) = v.sched {
        let tiles = v.tile.tiles(shape, c.geglu);
        let (tiles_m, _) = v.tile.tile_grid(shape, c.geglu);
        // the case is what it says: several tiles per CTA, a ragged last raster group
        assert!(
            plan.ctas <= resident && tiles > plan.ctas as u64,
            "{v:?} {plan:?}"
        );
        assert!(
            plan.raster > 1 && tiles_m % plan.raster as u64 != 0,
            "{v:?} {plan:?}"
        );
    }
    // the workspace is poisoned too: the reduction must read only what the splits wrote
    let ws = if plan.splits > 1 {
        dev.alloc_poisoned(plan.workspace_len(shape, c.geglu) as usize * 4)?
    } else {
        0
    };
    let p = GemmV2Params::new(g, plan, shape, ws)?;
    dev.launch(
        KernelModule::Gemm,
        v.tile.entry(c.op),
        plan.launch_config(shape, c.geglu),
        &p,
    )?;
    if plan.splits > 1 {
        dev.launch(
            KernelModule::Gemm,
            SPLITK_ENTRY,
            GemmPlan::splitk_launch_config(shape),
            &p,
        )?;
    }
    dev.check_bf16(&format!("{v:?}"), ptrs.c, &want)
}

crate::harness::schedules_test!(gemm_v2_tiles_splitk_epilogues, v2_cases(), 500, run_gemm_v2);

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

    {
        // Small M, long K: the plan splits K when given a workspace (GemmPlan::choose).
        use cyberhost_engine::backends::cuda::gemm::{launch, splitk_workspace_len};
        let (m, n, k) = (20, 50, 1024);
        let shape = GemmShape::new(1, m, n, k);
        let ws_len = splitk_workspace_len(dev, shape, false);
        assert!(ws_len > 0, "M {m} K {k} should split K");
        let x = round_bf16(&rng.randn(m * k, 1.0, 0.0));
        let w = round_bf16(&rng.randn(n * k, 1.0, 0.0));
        let b = round_bf16(&rng.randn(n, 1.0, 0.0));
        let r = round_bf16(&rng.randn(m * n, 1.0, 0.0));
        let (dx, dw, db, dr) = (
            upload(dev, &x),
            upload(dev, &w),
            upload(dev, &b),
            upload(dev, &r),
        );
        let ws = dev.stream().alloc_zeros::<u16>(2 * ws_len).unwrap();
        let mut out = dev.stream().alloc_zeros::<u16>(m * n).unwrap();
        let extras = GemmExtras {
            bias: Some(&db),
            residual: Some(&dr),
            scale: 0.5,
            workspace: Some(&ws),
            ..Default::default()
        };
        let layout = GemmLayout::contiguous(GemmOp::Linear, shape, false, true);
        launch(
            dev,
            GemmOp::Linear,
            &dx,
            &dw,
            &mut out,
            shape,
            layout,
            extras,
        )
        .unwrap();
        let want = gemm_ref(
            &x,
            &w,
            Some(&b),
            Some(&r),
            (1, m, n, k),
            false,
            false,
            0.5,
            false,
        );
        assert_close("engine linear split-K", &download(dev, &out), &want, TOL);
        let short_ws = dev.stream().alloc_zeros::<u16>(ws_len).unwrap();
        let extras = GemmExtras {
            workspace: Some(&short_ws),
            ..extras
        };
        let err = launch(
            dev,
            GemmOp::Linear,
            &dx,
            &dw,
            &mut out,
            shape,
            layout,
            extras,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("workspace"), "{err:#}");
    }

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

// ------------------------------------------------------------------------------------------------
// f32 entries (linear_v1_f32, linear_wbf16_v1_f32, matmul_v1_f32): split operands in registers
// ------------------------------------------------------------------------------------------------

/// An f32-entry case: f32 A (unrounded random values), B f32 or bf16 (`b_bf16`, linear only),
/// f32 bias / residual / output; `pad`: row strides lda, ldb, ldr, ldc larger than the rows (odd,
/// so the float4 / cp.async paths are off), the gaps NaN.
#[derive(Clone, Copy, Debug)]
struct F32Case {
    g: GemmCase,
    b_bf16: bool,
    pad: bool,
}

fn f32_cases() -> Vec<F32Case> {
    use GemmOp::{Linear, Matmul};
    use Opt::*;
    let f = |g: GemmCase, b_bf16: bool, pad: bool| F32Case { g, b_bf16, pad };
    let fused = case(Linear, 1, (70, 50, 40)).with(&[Bias, Residual, Scale(0.5)]);
    let geglu = case(Linear, 1, (33, 40, 72)).with(&[Bias, Geglu]);
    vec![
        f(fused, false, false),
        f(fused.with(&[PlainLoads]), false, false),
        f(fused, true, false),
        f(fused.with(&[PlainLoads]), true, false),
        f(case(Linear, 1, (65, 64, 96)), false, false),
        // K not a multiple of 4: scalar loads at the K edge; K = 1; empty M
        f(case(Linear, 1, (17, 9, 21)).with(&[Bias]), false, false),
        f(case(Linear, 1, (17, 9, 21)).with(&[Bias]), true, false),
        f(case(Linear, 1, (5, 7, 1)).with(&[Residual]), false, false),
        f(case(Linear, 1, (0, 8, 16)).with(&[Bias]), false, false),
        f(geglu, false, false),
        f(geglu, true, false),
        f(
            case(Linear, 1, (70, 20, 24)).with(&[Bias, Geglu, PlainLoads, Scale(2.0)]),
            true,
            false,
        ),
        f(
            case(Linear, 2, (20, 33, 48)).with(&[BatchedB, Residual]),
            false,
            true,
        ),
        f(
            case(Linear, 2, (20, 33, 48)).with(&[BatchedB, Residual, Bias]),
            true,
            true,
        ),
        f(
            case(Matmul, 2, (33, 65, 72)).with(&[BatchedB, Scale(0.125)]),
            false,
            false,
        ),
        f(
            case(Matmul, 3, (9, 21, 19)).with(&[Bias, Residual]),
            false,
            true,
        ),
        f(
            case(Matmul, 1, (66, 72, 40)).with(&[Bias, PlainLoads]),
            false,
            false,
        ),
        f(case(Matmul, 2, (7, 70, 1)).with(&[BatchedB]), false, false),
    ]
}

/// Dense `(count, rows, cols)` into rows of stride `ld` and a batch stride `rows * ld`, NaN gaps.
fn pad_rows(x: &[f32], count: usize, rows: usize, cols: usize, ld: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; (count * rows * ld).max(1)];
    for r in 0..count * rows {
        out[r * ld..r * ld + cols].copy_from_slice(&x[r * cols..(r + 1) * cols]);
    }
    out
}

/// erf in f64 (Abramowitz-Stegun 7.1.26, |error| <= 1.5e-7): bound terms only.
fn erf64(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}
fn gelu64(x: f64) -> f64 {
    0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2))
}

/// Per output element: the error bound of the split kernel against the f32 CPU reference
/// (docs/kernels.md Numerics, "f32 entries"), and the f64 output of the plain-bf16 variant (lo
/// parts dropped: A and B rounded to bf16 once).
fn split_bound(
    c: &F32Case,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    res: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    const U: f64 = 1.0 / (1u64 << 24) as f64; // f32 unit roundoff
    const S16: f64 = 1.0 / (1u64 << 16) as f64;
    let g = &c.g;
    let (m, n, k) = (g.m, g.n, g.k);
    let b_rows = if g.geglu { 2 * n } else { n };
    let b_size = b_rows * k;
    // missing terms of the split: lo.lo and the bf16 rounding of the lo parts (2^-16 each, see
    // the docs); a bf16 B is exact, so only A's lo rounding. Device sums parts * K products, the
    // CPU K, each addition within 2u (truncating adders allowed).
    let (c_split, parts) = if c.b_bf16 {
        (1.01 * S16, 2.0)
    } else {
        (3.1 * S16, 3.0)
    };
    let kf = k as f64;
    let c_acc = c_split + 2.0 * U * (parts * kf + 4.0) + U * (kf + 2.0);
    let hb = |x: f32| half::bf16::from_f32(x).to_f32() as f64;
    let mut tol = Vec::with_capacity(g.batch * m * n);
    let mut plain = Vec::with_capacity(g.batch * m * n);
    for z in 0..g.batch {
        let zb = if g.broadcast_b { 0 } else { z };
        let bat = |col: usize, kk: usize| -> f32 {
            if g.op == GemmOp::Matmul {
                b[zb * k * n + kk * n + col]
            } else {
                b[zb * b_size + col * k + kk]
            }
        };
        for i in 0..m {
            // (exact, |a||b| sum, plain bf16) of output column `col` of B
            let dot = |col: usize| -> (f64, f64, f64) {
                let (mut v, mut s, mut p) = (0.0, 0.0, 0.0);
                for kk in 0..k {
                    let (x, y) = (a[(z * m + i) * k + kk], bat(col, kk));
                    v += x as f64 * y as f64;
                    s += (x as f64 * y as f64).abs();
                    p += hb(x) * hb(y);
                }
                (v, s, p)
            };
            for j in 0..n {
                let r = if g.residual {
                    res[(z * m + i) * n + j] as f64
                } else {
                    0.0
                };
                let bv = if g.bias { bias[j] as f64 } else { 0.0 };
                let (v, sv, pv) = dot(j);
                let (e, out_plain, mag) = if g.geglu {
                    let bg = if g.bias { bias[n + j] as f64 } else { 0.0 };
                    let (gt, sg, pg) = dot(n + j);
                    let (x, vb) = (gt + bg, v + bv);
                    let (ev, eg) = (
                        c_acc * sv + 4.0 * U * bv.abs(),
                        c_acc * sg + 4.0 * U * bg.abs(),
                    );
                    // |gelu'| on [x - eg, x + eg]: gelu'(x) = Phi(x) + x phi(x), |gelu''| <= 0.8
                    let phi = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                    let d = (0.5 * (1.0 + erf64(x / std::f64::consts::SQRT_2)) + x * phi).abs();
                    let gel = gelu64(x);
                    let e =
                        (gel.abs() + (d + eg) * eg) * ev + vb.abs() * (d + 0.8 * eg + 2e-7) * eg;
                    let mag = (vb * gel).abs() + vb.abs() * x.abs() + r.abs();
                    (e, (pv + bv) * gelu64(pg + bg) + r, mag)
                } else {
                    (c_acc * sv, pv + bv + r, sv + bv.abs() + r.abs())
                };
                let scale = g.scale as f64;
                // epilogue: f32 adds / multiplies / erff on both sides
                tol.push(scale.abs() * (e + 16.0 * U * mag));
                plain.push(scale * out_plain);
            }
        }
    }
    (tol, plain)
}

fn run_gemm_f32(dev: &mut Device, c: F32Case, seed: u64) -> anyhow::Result<()> {
    let g = c.g;
    let b_rows = if g.geglu { 2 * g.n } else { g.n };
    let b_count = if g.broadcast_b { 1 } else { g.batch };
    let (a, b, bias, res, want) = gemm_inputs(&g, seed, c.b_bf16, false);
    let (tol, plain) = split_bound(&c, &a, &b, &bias, &res);
    let shape = GemmShape::new(g.batch, g.m, g.n, g.k);
    let mut layout = GemmLayout::contiguous(g.op, shape, g.geglu, g.broadcast_b);
    let (br, bc) = match g.op {
        GemmOp::Linear => (b_rows, g.k),
        GemmOp::Matmul => (g.k, g.n),
    };
    if c.pad {
        layout.lda = g.k as u64 + 1;
        layout.ldb = bc as u64 + 3;
        layout.ldr = g.n as u64 + 1;
        layout.ldc = g.n as u64 + 5;
        layout.stride_a = g.m as u64 * layout.lda;
        layout.stride_b = if g.broadcast_b {
            0
        } else {
            br as u64 * layout.ldb
        };
        layout.stride_r = g.m as u64 * layout.ldr;
        layout.stride_c = g.m as u64 * layout.ldc;
    }
    let ld = |l: u64| l as usize;
    let a_dev = pad_rows(&a, g.batch, g.m, g.k, ld(layout.lda));
    let b_dev = pad_rows(&b, b_count, br, bc, ld(layout.ldb));
    let r_dev = pad_rows(&res, g.batch, g.m, g.n, ld(layout.ldr));
    let c_len = (g.batch * g.m * ld(layout.ldc)).max(1);
    let b_dtype = if c.b_bf16 { DType::Bf16 } else { DType::F32 };
    let ptrs = GemmPtrs {
        a: dev.upload(&a_dev)?,
        b: dev.upload_as(b_dtype, &b_dev)?,
        bias: if g.bias { dev.upload(&bias)? } else { 0 },
        residual: if g.residual { dev.upload(&r_dev)? } else { 0 },
        c: dev.alloc_poisoned(c_len * 4)?,
    };
    let epi = GemmEpilogue {
        scale: g.scale,
        geglu: g.geglu,
    };
    let mut p = GemmParams::new_f32(g.op, b_dtype, ptrs, shape, layout, epi)?;
    if g.plain {
        p = p.without_cp_async();
    }
    let entry = g.op.entry_f32(b_dtype)?;
    dev.launch(KernelModule::Gemm, entry, gemm_launch(shape, g.geglu), &p)?;
    let got_all = dev.download::<f32>(ptrs.c, c_len)?;
    let mut got = Vec::with_capacity(want.len());
    for (r, row) in got_all
        .chunks(ld(layout.ldc))
        .take(g.batch * g.m)
        .enumerate()
    {
        got.extend_from_slice(&row[..g.n]);
        // the gaps of a padded C stay poisoned
        assert!(
            row[g.n..]
                .iter()
                .all(|x| x.to_bits() == u32::from_ne_bytes([POISON; 4])),
            "{entry} {c:?}: row {r} written past N"
        );
    }
    let what = format!("{entry} {c:?} aligned {}", p.ops.aligned);
    // the derived per-element bound, and its relative L2 form (the same bound in norm)
    let mut worst = 0.0f64;
    for (i, ((&x, &w), &t)) in got.iter().zip(&want).zip(&tol).enumerate() {
        let d = (x as f64 - w as f64).abs();
        assert!(
            d <= t,
            "{what}: element {i} got {x} want {w}, |d| {d:e} > bound {t:e}"
        );
        worst = worst.max(d / t);
    }
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let l2_tol = norm(&mut tol.iter().copied()) / norm(&mut want.iter().map(|&w| w as f64));
    if !want.is_empty() {
        assert_close(&what, &got, &want, l2_tol);
        // The bound separates the split from plain bf16 operands (lo parts dropped): most
        // elements of the plain variant fall outside it.
        let outside = plain
            .iter()
            .zip(&want)
            .zip(&tol)
            .filter(|((&p, &w), &t)| (p - w as f64).abs() > t)
            .count();
        assert!(
            2 * outside > want.len(),
            "{what}: the bound does not reject plain bf16 ({outside} of {} outside)",
            want.len()
        );
        let plain32: Vec<f32> = plain.iter().map(|&p| p as f32).collect();
        assert!(
            rel_l2(&plain32, &want) > 4.0 * l2_tol,
            "{what}: plain bf16 rel L2 {:e} vs tolerance {l2_tol:e}",
            rel_l2(&plain32, &want)
        );
    }
    let _ = worst;
    Ok(())
}

crate::harness::schedules_test!(gemm_f32_split_entries, f32_cases(), 500, run_gemm_f32);
