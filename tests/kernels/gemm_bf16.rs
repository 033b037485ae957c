//! `gemm_bf16_v1_*` against the CPU backend's `linear` (`gemm_ref`): ragged M/N/K, batched and broadcast B, padded
//! row strides (K-edge chunks zero-filled by cp.async src-size), unaligned K (plain-load path).

use crate::common::{assert_close, round_bf16, to_bf16, tol, Rng};
use crate::harness::{gemm_ref, Device, SCHEDULES};
use cyberhost_kernels::gemm_bf16::{launch_config, GemmLayout, GemmParams, GemmPtrs, GemmShape};
use cyberhost_kernels::{kernel_name, DType, KernelModule};
use half::bf16;

#[derive(Clone, Copy)]
struct Case {
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    /// Extra elements at the end of each A/B row (lda = k + pad) and C row (ldc = n + pad).
    pad: usize,
    bias: bool,
    /// One B shared by every batch (stride_b = 0).
    broadcast_b: bool,
    /// Force the plain-load path even when cp.async would be legal.
    plain: bool,
}

const BASE: Case = Case {
    batch: 1,
    m: 1,
    n: 1,
    k: 1,
    pad: 0,
    bias: false,
    broadcast_b: true,
    plain: false,
};

fn cases() -> Vec<Case> {
    vec![
        Case {
            m: 1,
            n: 1,
            k: 1,
            bias: true,
            ..BASE
        }, // K % 8 != 0 -> plain loads
        Case {
            m: 64,
            n: 64,
            k: 32,
            ..BASE
        }, // exactly one tile
        Case {
            m: 70,
            n: 50,
            k: 40,
            bias: true,
            ..BASE
        }, // ragged M, N; K tail tile
        Case {
            m: 70,
            n: 50,
            k: 40,
            bias: true,
            plain: true,
            ..BASE
        }, // same, plain loads
        Case {
            m: 65,
            n: 64,
            k: 160,
            ..BASE
        }, // 5 k-tiles through 2 stages
        Case {
            batch: 2,
            m: 33,
            n: 65,
            k: 72,
            bias: true,
            broadcast_b: false,
            ..BASE
        }, // batched B
        Case {
            batch: 3,
            m: 17,
            n: 9,
            k: 21,
            bias: true,
            ..BASE
        }, // unaligned K, broadcast B
        Case {
            m: 20,
            n: 24,
            k: 20,
            pad: 4,
            bias: true,
            ..BASE
        }, // lda 24: partial 16B chunk
        Case {
            batch: 2,
            m: 130,
            n: 200,
            k: 264,
            bias: true,
            broadcast_b: false,
            ..BASE
        }, // 3 x 4 blocks, 9 k-tiles
        Case {
            m: 5,
            n: 6,
            k: 0,
            bias: true,
            ..BASE
        }, // K = 0: C = bias
    ]
}

/// `C = A . B^T + bias` per batch entry (B `(N, K)`, batched or shared), on the CPU backend.
fn linear_ref(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    dims: (usize, usize, usize, usize),
    b_batched: bool,
) -> Vec<f32> {
    gemm_ref(a, b, bias, None, dims, false, b_batched, 1.0, false)
}

/// The params of the buffers `[a, b, bias, c]`.
fn params(
    [a, b, bias, c]: [u64; 4],
    shape: GemmShape,
    layout: GemmLayout,
) -> anyhow::Result<GemmParams> {
    GemmParams::new(GemmPtrs { a, b, bias, c }, shape, layout)
}

fn run(dev: &mut Device, out: DType, c: Case, seed: u64) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let (lda, ldc) = (c.k + c.pad, c.n + c.pad);
    let b_count = if c.broadcast_b { 1 } else { c.batch };
    // Dense values for the reference, bf16-rounded.
    let a = round_bf16(&rng.randn(c.batch * c.m * c.k, 1.0, 0.0));
    let b = round_bf16(&rng.randn(b_count * c.n * c.k, 1.0, 0.0));
    let bias = round_bf16(&rng.randn(c.n, 1.0, 0.0));
    let dims = (c.batch, c.m, c.n, c.k);
    let want = linear_ref(&a, &b, c.bias.then_some(&bias[..]), dims, !c.broadcast_b);

    // Strided device copies; row padding holds NaN so a read past K poisons the result.
    let strided = |dense: &[f32], rows: usize| -> Vec<bf16> {
        let mut v = vec![bf16::NAN; rows * lda];
        for r in 0..rows {
            v[r * lda..r * lda + c.k].copy_from_slice(&to_bf16(&dense[r * c.k..(r + 1) * c.k]));
        }
        v
    };
    let da = dev.upload(&strided(&a, c.batch * c.m))?;
    let db = dev.upload(&strided(&b, b_count * c.n))?;
    let dbias = dev.upload_bf16_opt(c.bias, &bias)?;
    let c_len = c.batch * c.m * ldc;
    let dc = dev.alloc_poisoned(c_len * out.size_in_bytes())?;

    let shape = GemmShape::new(c.batch, c.m, c.n, c.k);
    let layout = GemmLayout {
        lda: lda as u64,
        ldb: lda as u64,
        ldc: ldc as u64,
        stride_a: (c.m * lda) as u64,
        stride_b: if c.broadcast_b { 0 } else { (c.n * lda) as u64 },
        stride_c: (c.m * ldc) as u64,
    };
    let mut p = params([da, db, dbias, dc], shape, layout)?;
    if c.plain {
        p = p.without_cp_async();
    }
    let entry = kernel_name("gemm_bf16", 1, out);
    dev.launch(KernelModule::GemmBf16, &entry, launch_config(shape), &p)?;
    let got_full = dev.download_as(out, dc, c_len)?;
    // Dense view for the comparison; the padding columns must still hold the poison (NaN).
    let mut got = Vec::with_capacity(c.batch * c.m * c.n);
    for r in 0..c.batch * c.m {
        got.extend_from_slice(&got_full[r * ldc..r * ldc + c.n]);
        assert!(
            got_full[r * ldc + c.n..(r + 1) * ldc]
                .iter()
                .all(|v| v.is_nan()),
            "{entry}: store past N in row {r}"
        );
    }
    let what = format!(
        "{entry} batch {} M {} N {} K {} lda {lda} aligned {} bias {} broadcast_b {}",
        c.batch, c.m, c.n, c.k, p.ops.aligned, c.bias, c.broadcast_b
    );
    // bf16 inputs with f32 accumulation: the f32-output tolerance is the f32 one.
    assert_close(&what, &got, &want, tol(out == DType::Bf16));
    Ok(())
}

fn sweep(out: DType) {
    for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
        let mut dev = Device::new(*schedules, *seed);
        for (j, c) in cases().into_iter().enumerate() {
            run(
                &mut dev,
                out,
                c,
                (i * 100 + j) as u64 + out.size_in_bytes() as u64 * 1000,
            )
            .unwrap();
        }
    }
}

#[test]
fn gemm_bf16_f32_out() {
    sweep(DType::F32);
}

#[test]
fn gemm_bf16_bf16_out() {
    sweep(DType::Bf16);
}

/// The aligned flag picks cp.async for the dense 16-byte-aligned cases and plain loads otherwise.
#[test]
fn gemm_bf16_path_selection() {
    let mut dev = Device::new(1, 0);
    let da = dev.upload(&vec![bf16::ONE; 64 * 40]).unwrap();
    let shape = GemmShape {
        batch: 1,
        m: 64,
        n: 40,
        k: 40,
    };
    let aligned = |a: u64, s: GemmShape| {
        let p = params([a, da, 0, 0], s, GemmLayout::contiguous(s, true));
        p.unwrap().ops.aligned
    };
    assert_eq!(aligned(da, shape), 1);
    assert_eq!(aligned(da, GemmShape { k: 39, ..shape }), 0);
    assert_eq!(aligned(da + 2, shape), 0);
}

/// Small integers are exact in bf16 and their sums exact in f32: the f32 result must match the
/// reference bit for bit (exposes any fragment or index mix-up without tolerance).
#[test]
fn gemm_bf16_exact_on_integers() {
    let (m, n, k) = (67usize, 72usize, 88usize);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7 + i / k) % 5) as f32 - 2.0)
        .collect();
    let b: Vec<f32> = (0..n * k)
        .map(|i| ((i * 3 + i / k) % 7) as f32 - 3.0)
        .collect();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 - 30.0).collect();
    let want = linear_ref(&a, &b, Some(&bias), (1, m, n, k), false);
    for plain in [false, true] {
        let mut dev = Device::new(2, 11);
        let (da, db, dbias) = (
            dev.upload(&to_bf16(&a)).unwrap(),
            dev.upload(&to_bf16(&b)).unwrap(),
            dev.upload(&to_bf16(&bias)).unwrap(),
        );
        let dc = dev.alloc_poisoned(m * n * 4).unwrap();
        let shape = GemmShape::new(1, m, n, k);
        let mut p = params(
            [da, db, dbias, dc],
            shape,
            GemmLayout::contiguous(shape, true),
        )
        .unwrap();
        assert_eq!(p.ops.aligned, 1);
        if plain {
            p = p.without_cp_async();
        }
        dev.launch(
            KernelModule::GemmBf16,
            "gemm_bf16_v1_f32",
            launch_config(shape),
            &p,
        )
        .unwrap();
        let got = dev.download::<f32>(dc, m * n).unwrap();
        if let Some(i) = (0..m * n).find(|&i| got[i] != want[i]) {
            panic!(
                "gemm_bf16_v1_f32 (plain loads: {plain}) at (row {}, col {}): got {}, want {}",
                i / n,
                i % n,
                got[i],
                want[i]
            );
        }
    }
}
