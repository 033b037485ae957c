//! `CudaBackend` against the CPU reference, op by op, on the stand-in CUDA driver
//! (`tools/ptx-emu-driver`: cudarc runs the committed PTX on the `ptx-emu` interpreter).
//!
//! Every test uploads seeded random inputs (never all-zero) to both backends, runs the op and
//! compares by relative L2: ≤ 1e-2 with bf16 storage, tighter with f32 storage. Layout ops move
//! bits, so they must match the CPU exactly on the bf16-rounded inputs. The backend poisons every
//! new output (0xFF bytes = NaN) before the kernel writes it, so an element a kernel skips fails
//! the comparison. Shapes are small and ragged (odd sizes, not multiples of any block).
//!
//! ```sh
//! cargo test --test cuda_backend
//! ```

mod common;
use common::{random, rel_l2};

use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use cyberhost_engine::backends::cpu::{CpuBackend, CpuTensor};
use cyberhost_engine::backends::cuda::{CudaBackend, CudaTensor, DType, DRIVER_ENV, NO_DRIVER_MSG};
use cyberhost_engine::backends::{Backend, Binary, Conv2dParams, TensorLike, Unary};

static SERIAL: Mutex<()> = Mutex::new(());

/// One device per process, used by one test at a time.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// bf16-storage backend on the stand-in driver, outputs poisoned before every kernel.
fn gpu() -> &'static CudaBackend {
    static BE: OnceLock<CudaBackend> = OnceLock::new();
    BE.get_or_init(|| {
        let be = CudaBackend::new_emulated(0).expect("CudaBackend::new_emulated");
        assert!(be.device().is_emulated());
        be.set_poison_outputs(true);
        be
    })
}

fn storages() -> [(CudaBackend, f64); 2] {
    [
        (gpu().clone(), 1e-2),
        (gpu().with_storage(DType::F32), 1e-4),
    ]
}

const CPU: CpuBackend = CpuBackend;

/// The same data on both backends.
fn pair(be: &CudaBackend, shape: &[usize], data: &[f32]) -> (CudaTensor, CpuTensor) {
    (
        be.from_f32(shape, data).unwrap(),
        CPU.from_f32(shape, data).unwrap(),
    )
}

fn rand_pair(be: &CudaBackend, shape: &[usize], seed: u64) -> (CudaTensor, CpuTensor) {
    let n: usize = shape.iter().product();
    pair(be, shape, &random(n, seed))
}

/// Compares shapes and values (rel L2 ≤ tol; NaN from an unwritten poisoned element fails).
fn check(what: &str, be: &CudaBackend, got: &CudaTensor, want: &CpuTensor, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let g = be.to_f32(got).unwrap();
    let w = CPU.to_f32(want).unwrap();
    if let Some(i) = g.iter().position(|v| v.is_nan()) {
        if !w[i].is_nan() {
            panic!("{what}: element {i} is NaN (unwritten?), want {}", w[i]);
        }
    }
    if w.is_empty() {
        return;
    }
    let err = rel_l2(&g, &w);
    assert!(
        err <= tol,
        "{what} ({:?}, {}): rel L2 {err:e} > {tol:e}",
        got.dtype(),
        be.name()
    );
}

/// Layout ops: bit-exact against the CPU run on the values as stored (bf16-rounded).
fn rounded_pair(be: &CudaBackend, shape: &[usize], seed: u64) -> (CudaTensor, CpuTensor) {
    let n: usize = shape.iter().product();
    let g = be.from_f32(shape, &random(n, seed)).unwrap();
    let c = CPU.from_f32(shape, &be.to_f32(&g).unwrap()).unwrap();
    (g, c)
}

#[test]
fn from_f32_to_f32_roundtrip_and_zeros() {
    let _g = serial();
    let data = random(37, 1);
    let be32 = gpu().with_storage(DType::F32);
    let t = be32.from_f32(&[37], &data).unwrap();
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(be32.to_f32(&t).unwrap(), data);
    let b = gpu().from_f32(&[37], &data).unwrap();
    assert_eq!(b.dtype(), DType::Bf16);
    let back = gpu().to_f32(&b).unwrap();
    for (x, y) in back.iter().zip(&data) {
        assert_eq!(*x, half::bf16::from_f32(*y).to_f32());
    }
    // f32 <-> bf16 casts on the device agree with the host conversion
    let cast = gpu().to_dtype(&t, DType::Bf16).unwrap();
    assert_eq!(gpu().to_f32(&cast).unwrap(), back);
    let up = gpu().to_dtype(&b, DType::F32).unwrap();
    assert_eq!(gpu().to_f32(&up).unwrap(), back);
    let z = gpu().zeros(&[3, 5]).unwrap();
    assert_eq!(gpu().to_f32(&z).unwrap(), vec![0.0; 15]);
    assert!(gpu().from_f32(&[2, 2], &data[..3]).is_err());
}

#[test]
fn unary_matches_cpu() {
    let _g = serial();
    let ops = [
        Unary::Silu,
        Unary::Gelu,
        Unary::GeluTanh,
        Unary::Relu,
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::Exp,
        Unary::Neg,
        Unary::Sqrt,
    ];
    for (be, tol) in storages() {
        for (si, shape) in [vec![7usize, 13], vec![3, 5, 17], vec![1]]
            .iter()
            .enumerate()
        {
            for op in ops {
                let n: usize = shape.iter().product();
                let mut data: Vec<f32> =
                    random(n, 10 + si as u64).iter().map(|v| v * 3.0).collect();
                if op == Unary::Sqrt {
                    data.iter_mut().for_each(|v| *v = v.abs() + 0.01);
                }
                let (g, c) = pair(&be, shape, &data);
                check(
                    &format!("unary {op:?} {shape:?}"),
                    &be,
                    &be.unary(&g, op).unwrap(),
                    &CPU.unary(&c, op).unwrap(),
                    tol,
                );
            }
        }
    }
}

#[test]
fn ops_run_as_kernels_on_the_stand_in() {
    let _g = serial();
    let stats = || gpu().device().emulator_stats().expect("stand-in stats");
    let before = stats();
    let (x, xc) = rand_pair(gpu(), &[4, 33], 7);
    let y = gpu().unary(&x, Unary::Silu).unwrap();
    let y = gpu().layer_norm(&y, None, None, 1e-5).unwrap();
    let y = gpu().permute(&y, &[1, 0]).unwrap();
    let want = CPU
        .permute(
            &CPU.layer_norm(&CPU.unary(&xc, Unary::Silu).unwrap(), None, None, 1e-5)
                .unwrap(),
            &[1, 0],
        )
        .unwrap();
    check("silu -> layer_norm -> permute", gpu(), &y, &want, 1e-2);
    let after = stats();
    assert!(
        after.kernel_launches >= before.kernel_launches + 3,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.faults, before.faults, "the emulator reported a fault");
}

#[test]
fn affine_matches_cpu() {
    let _g = serial();
    for (be, tol) in storages() {
        for shape in [vec![5usize, 7, 3], vec![1029]] {
            let (g, c) = rand_pair(&be, &shape, 3);
            check(
                "affine",
                &be,
                &be.affine(&g, -1.75, 0.3).unwrap(),
                &CPU.affine(&c, -1.75, 0.3).unwrap(),
                tol,
            );
        }
    }
}

#[test]
fn binary_broadcast_matches_cpu() {
    let _g = serial();
    let cases: [(&[usize], &[usize]); 7] = [
        (&[2, 3, 5, 7], &[2, 3, 5, 7]),
        (&[2, 3, 5, 7], &[7]),
        (&[2, 1, 5, 1], &[3, 1, 7]),
        (&[5, 1], &[1, 6]),
        (&[], &[4, 3]),
        (&[2, 3, 4, 1, 5, 1, 3], &[4, 1, 1, 2, 3]),
        (&[1, 9, 1], &[9, 9, 1]),
    ];
    for (be, tol) in storages() {
        for (i, (sa, sb)) in cases.iter().enumerate() {
            for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div] {
                let (ga, ca) = rand_pair(&be, sa, 20 + i as u64);
                let nb: usize = sb.iter().product();
                // Div: keep the divisor away from 0
                let db: Vec<f32> = random(nb, 40 + i as u64)
                    .iter()
                    .map(|v| if op == Binary::Div { 1.0 + 0.5 * v } else { *v })
                    .collect();
                let (gb, cb) = pair(&be, sb, &db);
                let what = format!("binary {op:?} {sa:?} {sb:?}");
                check(
                    &what,
                    &be,
                    &be.binary(&ga, &gb, op).unwrap(),
                    &CPU.binary(&ca, &cb, op).unwrap(),
                    tol,
                );
            }
        }
        let (ga, _) = rand_pair(&be, &[3, 4], 1);
        let (gb, _) = rand_pair(&be, &[5], 2);
        assert!(be.binary(&ga, &gb, Binary::Add).is_err());
    }
}

#[test]
fn binary_mixed_dtypes_promote_to_f32() {
    let _g = serial();
    let be32 = gpu().with_storage(DType::F32);
    let (ga, ca) = rand_pair(gpu(), &[3, 11], 5);
    let (gb, cb) = rand_pair(&be32, &[11], 6);
    let got = gpu().binary(&ga, &gb, Binary::Mul).unwrap();
    assert_eq!(got.dtype(), DType::F32);
    check(
        "binary bf16 * f32",
        gpu(),
        &got,
        &CPU.binary(&ca, &cb, Binary::Mul).unwrap(),
        1e-2,
    );
}

#[test]
fn permute_is_exact() {
    let _g = serial();
    let cases: [(&[usize], &[usize]); 5] = [
        (&[2, 3, 4, 5], &[3, 1, 0, 2]),
        (&[2, 3, 4, 5], &[0, 2, 1, 3]),
        (&[2, 3, 2, 3, 2, 3], &[5, 4, 3, 2, 1, 0]),
        (&[7, 9], &[1, 0]),
        (&[11], &[0]),
    ];
    for (be, _) in storages() {
        for (i, (shape, dims)) in cases.iter().enumerate() {
            let (g, c) = rounded_pair(&be, shape, 50 + i as u64);
            check(
                &format!("permute {shape:?} {dims:?}"),
                &be,
                &be.permute(&g, dims).unwrap(),
                &CPU.permute(&c, dims).unwrap(),
                0.0,
            );
        }
        let (g, _) = rounded_pair(&be, &[2, 3], 1);
        assert!(be.permute(&g, &[0, 0]).is_err());
    }
}

#[test]
fn concat_narrow_index_select_are_exact() {
    let _g = serial();
    for (be, _) in storages() {
        for dim in 0..3 {
            let mut shapes = [vec![3usize, 5, 7], vec![3, 5, 7], vec![3, 5, 7]];
            for (k, s) in shapes.iter_mut().enumerate() {
                s[dim] = [2, 5, 1][k];
            }
            let pairs: Vec<_> = shapes
                .iter()
                .enumerate()
                .map(|(k, s)| rounded_pair(&be, s, 60 + k as u64))
                .collect();
            let g: Vec<&CudaTensor> = pairs.iter().map(|p| &p.0).collect();
            let c: Vec<&CpuTensor> = pairs.iter().map(|p| &p.1).collect();
            check(
                &format!("concat dim {dim}"),
                &be,
                &be.concat(&g, dim).unwrap(),
                &CPU.concat(&c, dim).unwrap(),
                0.0,
            );

            let (t, tc) = rounded_pair(&be, &[4, 6, 5], 70 + dim as u64);
            let d = [4, 6, 5][dim];
            check(
                &format!("narrow dim {dim}"),
                &be,
                &be.narrow(&t, dim, 1, d - 2).unwrap(),
                &CPU.narrow(&tc, dim, 1, d - 2).unwrap(),
                0.0,
            );
            let idx = [d - 1, 0, 2, 2, 1, d - 1, 0];
            check(
                &format!("index_select dim {dim}"),
                &be,
                &be.index_select(&t, dim, &idx).unwrap(),
                &CPU.index_select(&tc, dim, &idx).unwrap(),
                0.0,
            );
        }
        let (t, _) = rounded_pair(&be, &[4, 6], 1);
        assert!(be.narrow(&t, 1, 4, 3).is_err());
        assert!(be.index_select(&t, 0, &[4]).is_err());
        // concat of mixed dtypes promotes to f32
        let other = if be.storage() == DType::F32 {
            gpu().clone()
        } else {
            gpu().with_storage(DType::F32)
        };
        let (a, ac) = rounded_pair(&be, &[2, 3], 80);
        let (b, bc) = rounded_pair(&other, &[1, 3], 81);
        let got = be.concat(&[&a, &b], 0).unwrap();
        assert_eq!(got.dtype(), DType::F32);
        check(
            "concat mixed",
            &be,
            &got,
            &CPU.concat(&[&ac, &bc], 0).unwrap(),
            0.0,
        );
    }
}

#[test]
fn pad2d_and_upsample_are_exact() {
    let _g = serial();
    for (be, _) in storages() {
        let (x, xc) = rounded_pair(&be, &[2, 3, 5, 7], 90);
        for (l, r, t, b) in [(1, 1, 1, 1), (0, 3, 2, 0), (2, 0, 0, 1)] {
            check(
                &format!("pad2d {l} {r} {t} {b}"),
                &be,
                &be.pad2d(&x, l, r, t, b).unwrap(),
                &CPU.pad2d(&xc, l, r, t, b).unwrap(),
                0.0,
            );
        }
        let (x3, x3c) = rounded_pair(&be, &[3, 4, 6], 91);
        check(
            "pad2d rank 3",
            &be,
            &be.pad2d(&x3, 2, 1, 0, 3).unwrap(),
            &CPU.pad2d(&x3c, 2, 1, 0, 3).unwrap(),
            0.0,
        );
        for (oh, ow) in [(10, 14), (5, 7), (3, 4), (15, 9), (11, 20)] {
            check(
                &format!("upsample {oh}x{ow}"),
                &be,
                &be.upsample_nearest2d(&x, oh, ow).unwrap(),
                &CPU.upsample_nearest2d(&xc, oh, ow).unwrap(),
                0.0,
            );
        }
    }
}

#[test]
fn softmax_matches_cpu() {
    let _g = serial();
    for (be, tol) in storages() {
        for shape in [vec![3usize, 7], vec![2, 5, 33], vec![4, 130], vec![1]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = random(n, 100).iter().map(|v| v * 4.0).collect();
            let (g, c) = pair(&be, &shape, &data);
            check(
                &format!("softmax {shape:?}"),
                &be,
                &be.softmax_last(&g).unwrap(),
                &CPU.softmax_last(&c).unwrap(),
                tol.max(1e-5),
            );
        }
    }
}

#[test]
fn group_norm_matches_cpu() {
    let _g = serial();
    for (be, tol) in storages() {
        for (shape, groups) in [
            (vec![2usize, 6, 5, 7], 3),
            (vec![1, 8, 13], 4),
            (vec![2, 4, 3, 3, 5], 2),
            (vec![3, 5], 5),
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
            check(
                &format!("group_norm {shape:?} plain"),
                &be,
                &be.group_norm(&x, groups, None, None, 1e-6).unwrap(),
                &CPU.group_norm(&xc, groups, None, None, 1e-6).unwrap(),
                tol,
            );
        }
        let (x, _) = rand_pair(&be, &[1, 6, 4], 1);
        assert!(be.group_norm(&x, 4, None, None, 1e-5).is_err());
    }
}

#[test]
fn layer_norm_matches_cpu() {
    let _g = serial();
    for (be, tol) in storages() {
        for shape in [vec![3usize, 7], vec![2, 5, 67], vec![5, 320], vec![1]] {
            let c = *shape.last().unwrap();
            let data: Vec<f32> = random(shape.iter().product(), 120)
                .iter()
                .map(|v| v * 2.0 + 0.5)
                .collect();
            let (x, xc) = pair(&be, &shape, &data);
            let (g, gc) = rand_pair(&be, &[c], 121);
            let (b, bc) = rand_pair(&be, &[c], 122);
            check(
                &format!("layer_norm {shape:?} affine"),
                &be,
                &be.layer_norm(&x, Some(&g), Some(&b), 1e-5).unwrap(),
                &CPU.layer_norm(&xc, Some(&gc), Some(&bc), 1e-5).unwrap(),
                tol,
            );
            check(
                &format!("layer_norm {shape:?} gamma only"),
                &be,
                &be.layer_norm(&x, Some(&g), None, 1e-6).unwrap(),
                &CPU.layer_norm(&xc, Some(&gc), None, 1e-6).unwrap(),
                tol,
            );
            check(
                &format!("layer_norm {shape:?} plain"),
                &be,
                &be.layer_norm(&x, None, None, 1e-5).unwrap(),
                &CPU.layer_norm(&xc, None, None, 1e-5).unwrap(),
                tol,
            );
        }
    }
}

#[test]
fn mean_dim_matches_cpu() {
    let _g = serial();
    for (be, tol) in storages() {
        let shape = [3usize, 5, 7, 2];
        let data: Vec<f32> = random(210, 130).iter().map(|v| v + 0.3).collect();
        let (x, xc) = pair(&be, &shape, &data);
        for dim in 0..4 {
            check(
                &format!("mean_dim {dim}"),
                &be,
                &be.mean_dim(&x, dim).unwrap(),
                &CPU.mean_dim(&xc, dim).unwrap(),
                tol,
            );
        }
        assert!(be.mean_dim(&x, 4).is_err());
    }
}

#[test]
fn max_pool2d_is_exact() {
    let _g = serial();
    for (be, _) in storages() {
        for (shape, k, s, p) in [
            ([2usize, 3, 9, 11], 3, 2, 1),
            ([1, 2, 8, 8], 2, 2, 0),
            ([1, 3, 7, 5], 3, 1, 1),
            ([2, 1, 5, 6], 1, 3, 0),
        ] {
            let (x, xc) = rounded_pair(&be, &shape, 140);
            check(
                &format!("max_pool2d {shape:?} k{k} s{s} p{p}"),
                &be,
                &be.max_pool2d(&x, k, s, p).unwrap(),
                &CPU.max_pool2d(&xc, k, s, p).unwrap(),
                0.0,
            );
        }
        let (x, _) = rounded_pair(&be, &[1, 1, 4, 4], 1);
        assert!(be.max_pool2d(&x, 2, 2, 2).is_err());
    }
}

#[test]
fn linear_and_matmul_match_cpu() {
    let _g = serial();
    // the GEMM rounds its operands to bf16 in both storages
    for (be, _) in storages() {
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
            check(
                &format!("linear {xs:?} n {n}"),
                &be,
                &be.linear(&x, &w, gb).unwrap(),
                &CPU.linear(&xc, &wc, cb).unwrap(),
                1e-2,
            );
        }
        for (sa, sb) in [
            ([2usize, 3, 19, 21], [2usize, 3, 21, 13]),
            ([1, 1, 40, 8], [1, 1, 8, 70]),
        ] {
            let (a, ac) = rand_pair(&be, &sa, 160);
            let (b, bc) = rand_pair(&be, &sb, 161);
            check(
                &format!("matmul {sa:?} {sb:?}"),
                &be,
                &be.matmul(&a, &b).unwrap(),
                &CPU.matmul(&ac, &bc).unwrap(),
                1e-2,
            );
        }
        let (a, _) = rand_pair(&be, &[2, 3], 1);
        assert!(be.matmul(&a, &a).is_err());
        let (w, _) = rand_pair(&be, &[4, 2], 2);
        assert!(be.linear(&a, &w, None).is_err());
    }
}

#[test]
fn attention_matches_cpu() {
    let _g = serial();
    for (be, _) in storages() {
        for (b, h, lq, lk, d, dv) in [
            (1usize, 2usize, 19usize, 23usize, 16usize, 16usize),
            (2, 1, 5, 70, 40, 24),
        ] {
            let (q, qc) = rand_pair(&be, &[b, h, lq, d], 170);
            let (k, kc) = rand_pair(&be, &[b, h, lk, d], 171);
            let (v, vc) = rand_pair(&be, &[b, h, lk, dv], 172);
            let scale = 1.0 / (d as f32).sqrt() * 2.0;
            check(
                &format!("attention b{b} h{h} lq{lq} lk{lk} d{d} dv{dv}"),
                &be,
                &be.attention(&q, &k, &v, scale).unwrap(),
                &CPU.attention(&qc, &kc, &vc, scale).unwrap(),
                1e-2,
            );
        }
    }
}

#[test]
fn conv2d_matches_cpu() {
    let _g = serial();
    for (be, _) in storages() {
        // (x shape, out channels, kernel, stride, padding, bias)
        type Case = ([usize; 4], usize, (usize, usize), usize, usize, bool);
        let cases: [Case; 4] = [
            ([1, 3, 9, 11], 5, (3, 3), 1, 1, true),
            ([2, 4, 8, 7], 6, (3, 3), 2, 1, false),
            ([1, 5, 6, 6], 3, (1, 1), 1, 0, true),
            ([2, 2, 7, 5], 4, (2, 3), 1, 0, true),
        ];
        for (i, (xs, o, (kh, kw), s, p, bias)) in cases.into_iter().enumerate() {
            let (x, xc) = rand_pair(&be, &xs, 180 + i as u64);
            let (w, wc) = rand_pair(&be, &[o, xs[1], kh, kw], 190 + i as u64);
            let (b, bc) = rand_pair(&be, &[o], 200 + i as u64);
            let (gb, cb) = if bias {
                (Some(&b), Some(&bc))
            } else {
                (None, None)
            };
            let prm = Conv2dParams::new(s, p);
            let got = be.conv2d(&x, &w, gb, prm).unwrap();
            assert_eq!(got.dtype(), be.storage());
            check(
                &format!("conv2d {xs:?} o{o} k{kh}x{kw} s{s} p{p}"),
                &be,
                &got,
                &CPU.conv2d(&xc, &wc, cb, prm).unwrap(),
                1e-2,
            );
        }
    }
    // groups, dilation, per-axis stride / padding (wav2vec2's 1-D convs as H = 1 conv2d)
    let cases: [([usize; 4], [usize; 4], Conv2dParams); 3] = [
        (
            [1, 4, 5, 5],
            [4, 2, 3, 3],
            Conv2dParams {
                groups: 2,
                ..Conv2dParams::new(1, 1)
            },
        ),
        (
            [2, 8, 1, 23],
            [8, 2, 1, 6],
            Conv2dParams {
                padding: (0, 3),
                groups: 4,
                ..Default::default()
            },
        ),
        (
            [1, 3, 1, 41],
            [5, 3, 1, 4],
            Conv2dParams {
                stride: (1, 3),
                dilation: (1, 2),
                ..Default::default()
            },
        ),
    ];
    for (be, _) in storages() {
        for (i, (xs, ws, prm)) in cases.into_iter().enumerate() {
            let (x, xc) = rand_pair(&be, &xs, 210 + i as u64);
            let (w, wc) = rand_pair(&be, &ws, 220 + i as u64);
            let (b, bc) = rand_pair(&be, &[ws[0]], 230 + i as u64);
            check(
                &format!("conv2d {xs:?} w {ws:?} {prm:?}"),
                &be,
                &be.conv2d(&x, &w, Some(&b), prm).unwrap(),
                &CPU.conv2d(&xc, &wc, Some(&bc), prm).unwrap(),
                1e-2,
            );
        }
    }
}

#[test]
fn no_driver_is_a_clear_error_not_a_panic() {
    // A fresh process that never loads the stand-in, with nothing on LD_LIBRARY_PATH.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_new_backend",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CUDA_BACKEND_TEST_CHILD", "1")
        .env("LD_LIBRARY_PATH", "")
        .env_remove(DRIVER_ENV)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed (a panic?):\n{text}");
    assert!(text.contains("CHILD-RESULT: "), "{text}");
    if text.contains("CHILD-SYSTEM-DRIVER") {
        // An NVIDIA driver is installed system-wide: the no-driver path cannot happen here.
        return;
    }
    assert!(
        text.contains("CHILD-RESULT: Err(") && text.contains(NO_DRIVER_MSG),
        "{text}"
    );
}

/// Runs only as the child of the test above.
#[test]
fn child_new_backend() {
    if std::env::var_os("CUDA_BACKEND_TEST_CHILD").is_none() {
        return;
    }
    if cyberhost_engine::backends::cuda::driver_present().unwrap_or(false) {
        println!("CHILD-SYSTEM-DRIVER");
    }
    match CudaBackend::new(0) {
        Ok(b) => println!("CHILD-RESULT: Ok({})", b.device().name()),
        Err(e) => println!("CHILD-RESULT: Err({e:#})"),
    }
}
