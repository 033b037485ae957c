//! `kernels/cuda/pointwise.cu` (`unary`, `affine`, `binary` with NumPy broadcasting, the f32 <->
//! bf16 casts) through the CUDA backend against the CPU backend, in bf16 and f32 storage; bad
//! arguments and edge shapes on both backends (`backend_test!`).

use crate::backend_test;
use crate::check_op;
use crate::common::{check, cuda_backend, cuda_serial, pair, rand_pair, random, storages, CPU};
use cyberhost_engine::backends::cuda::DType;
use cyberhost_engine::backends::{Backend, Binary, TensorLike, Unary};

/// Shapes that do not broadcast are an error naming them; empty tensors stay empty.
fn pointwise_bad_shapes_and_empty<B: Backend>(be: &B) -> anyhow::Result<()> {
    let a = be.from_f32(&[2, 3], &random(6, 1))?;
    let b = be.from_f32(&[4], &random(4, 2))?;
    let err = be.binary(&a, &b, Binary::Add).unwrap_err();
    assert!(format!("{err:#}").contains("[2, 3]"), "{err:#}");
    let e = be.from_f32(&[0, 5], &[])?;
    assert_eq!(be.unary(&e, Unary::Silu)?.shape(), &[0, 5]);
    assert_eq!(be.affine(&e, 2.0, 1.0)?.shape(), &[0, 5]);
    // (3, 1) + (1, 4) broadcasts to (3, 4): known values
    let r = be.from_f32(&[3, 1], &[1.0, 2.0, 3.0])?;
    let c = be.from_f32(&[1, 4], &[0.0, 10.0, 20.0, 30.0])?;
    let s = be.to_f32(&be.binary(&r, &c, Binary::Add)?)?;
    assert_eq!(s[..4], [1.0, 11.0, 21.0, 31.0]);
    assert_eq!(s[8..], [3.0, 13.0, 23.0, 33.0]);
    Ok(())
}
backend_test!(pointwise_bad_shapes_and_empty);

// ------------------------------------------------------------------------------------------------
// through the CUDA backend (stand-in driver, or a GPU), against the CPU backend
// ------------------------------------------------------------------------------------------------

#[test]
fn unary_matches_cpu() {
    let _g = cuda_serial();
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
                check_op!(format!("unary {op:?} {shape:?}"), be, tol, unary(&g, op) ~ (&c, op));
            }
        }
    }
}

crate::storages_test!(affine_matches_cpu, |be, tol| {
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
});

#[test]
fn binary_broadcast_matches_cpu() {
    let _g = cuda_serial();
    // the last five: binary_v2's 16-byte path (last merged dim a whole number of vectors: same
    // shapes, a per-channel bias broadcast along the vector, a broadcast outer dim, a row vector)
    // and a last dim of 12 (vectors in f32, scalar in bf16)
    let cases: [(&[usize], &[usize]); 12] = [
        (&[2, 3, 5, 7], &[2, 3, 5, 7]),
        (&[2, 3, 5, 16], &[2, 3, 5, 16]),
        (&[2, 24, 3, 8], &[24, 1, 1]),
        (&[3, 1, 8], &[1, 5, 8]),
        (&[5, 32], &[32]),
        (&[2, 6, 12], &[2, 1, 12]),
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
    let _g = cuda_serial();
    let be32 = cuda_backend().with_storage(DType::F32);
    let (ga, ca) = rand_pair(cuda_backend(), &[3, 11], 5);
    let (gb, cb) = rand_pair(&be32, &[11], 6);
    let got = cuda_backend().binary(&ga, &gb, Binary::Mul).unwrap();
    assert_eq!(got.dtype(), DType::F32);
    check(
        "binary bf16 * f32",
        cuda_backend(),
        &got,
        &CPU.binary(&ca, &cb, Binary::Mul).unwrap(),
        1e-2,
    );
}
