//! `kernels/cuda/layout.cu` (`copy` for permute / concat / narrow, `index_select`, `pad2d`) through the CUDA backend against the CPU backend: bit for bit, both
//! storages; bad arguments and edge shapes on both backends (`backend_test!`).

use crate::backend_test;
use crate::check_op;
use crate::common::{check, cuda_backend, cuda_serial, random, rounded_pair, storages, CPU};
use cyberhost_engine::backends::cpu::CpuTensor;
use cyberhost_engine::backends::cuda::CudaTensor;
use cyberhost_engine::backends::cuda::DType;
use cyberhost_engine::backends::{Backend, TensorLike};

/// Out-of-range dims, slices and indices are errors; a permutation of a known tensor is exact.
fn layout_bad_arguments_and_known_values<B: Backend>(be: &B) -> anyhow::Result<()> {
    let t = be.from_f32(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])?;
    assert!(
        be.permute(&t, &[0, 0]).is_err(),
        "permute with a repeated dim"
    );
    assert!(be.permute(&t, &[0]).is_err(), "permute of the wrong rank");
    assert!(be.narrow(&t, 1, 2, 2).is_err(), "narrow past the end");
    assert!(be.narrow(&t, 2, 0, 1).is_err(), "narrow of a missing dim");
    assert!(be.index_select(&t, 0, &[2]).is_err(), "index out of range");
    let u = be.from_f32(&[2, 2], &random(4, 3))?;
    assert!(
        be.concat(&[&t, &u], 0).is_err(),
        "concat of mismatched dims"
    );
    assert!(
        be.reshape(&t, &[4, 2]).is_err(),
        "reshape changing the element count"
    );
    let p = be.to_f32(&be.permute(&t, &[1, 0])?)?;
    assert_eq!(p, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let e = be.narrow(&t, 1, 1, 0)?;
    assert_eq!(e.shape(), &[2, 0]);
    Ok(())
}
backend_test!(layout_bad_arguments_and_known_values);

// ------------------------------------------------------------------------------------------------
// through the CUDA backend (stand-in driver, or a GPU), against the CPU backend
// ------------------------------------------------------------------------------------------------

#[test]
fn permute_is_exact() {
    let _g = cuda_serial();
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
            check_op!(format!("permute {shape:?} {dims:?}"), be, 0.0,
                permute(&g, dims) ~ (&c, dims));
        }
        let (g, _) = rounded_pair(&be, &[2, 3], 1);
        assert!(be.permute(&g, &[0, 0]).is_err());
    }
}

crate::storages_test!(concat_narrow_index_select_are_exact, |be, _| {
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
        check_op!(format!("concat dim {dim}"), be, 0.0, concat(&g, dim) ~ (&c, dim));

        let (t, tc) = rounded_pair(&be, &[4, 6, 5], 70 + dim as u64);
        let d = [4, 6, 5][dim];
        check_op!(format!("narrow dim {dim}"), be, 0.0,
            narrow(&t, dim, 1, d - 2) ~ (&tc, dim, 1, d - 2));
        let idx = [d - 1, 0, 2, 2, 1, d - 1, 0];
        check_op!(format!("index_select dim {dim}"), be, 0.0,
            index_select(&t, dim, &idx) ~ (&tc, dim, &idx));
    }
    let (t, _) = rounded_pair(&be, &[4, 6], 1);
    assert!(be.narrow(&t, 1, 4, 3).is_err());
    assert!(be.index_select(&t, 0, &[4]).is_err());
    // concat of mixed dtypes promotes to f32
    let other = if be.storage() == DType::F32 {
        cuda_backend().clone()
    } else {
        cuda_backend().with_storage(DType::F32)
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
});

// copy_v2's 16-byte path: channel concats and narrows whose last merged dim is a whole number of
// vectors (8 bf16 / 4 f32) at aligned offsets, mixed with pieces that are not (the v1 loop).
crate::storages_test!(copy_vectors_are_exact, |be, _| {
    // concat along C of (2, C_i, 3, 8): vectors throughout; then C_i * 4 * 3 = 12, 24: f32 vectors
    // only (bf16: 12 is not a multiple of 8, scalar)
    for (hw, cs) in [([3usize, 8usize], [2usize, 5, 1]), ([4, 3], [1, 2, 3])] {
        let pairs: Vec<_> = cs
            .iter()
            .enumerate()
            .map(|(k, &c)| rounded_pair(&be, &[2, c, hw[0], hw[1]], 100 + k as u64))
            .collect();
        let g: Vec<&CudaTensor> = pairs.iter().map(|p| &p.0).collect();
        let c: Vec<&CpuTensor> = pairs.iter().map(|p| &p.1).collect();
        check_op!(format!("concat {hw:?} {cs:?}"), be, 0.0, concat(&g, 1) ~ (&c, 1));
    }
    // narrow along dim 1 of (3, 7, 16): offsets 16 * start, rows of 16 (vectors); dim 2 start 8
    let (t, tc) = rounded_pair(&be, &[3, 7, 16], 110);
    check_op!("narrow vectors", be, 0.0, narrow(&t, 1, 2, 4) ~ (&tc, 1, 2, 4));
    check_op!("narrow dim 2 by 8", be, 0.0, narrow(&t, 2, 8, 8) ~ (&tc, 2, 8, 8));
    // a permute keeping the last dim (16 contiguous): vectors through permuted outer strides
    check_op!("permute outer", be, 0.0, permute(&t, &[1, 0, 2]) ~ (&tc, &[1, 0, 2]));
});

crate::storages_test!(pad2d_is_exact, |be, _| {
    let (x, xc) = rounded_pair(&be, &[2, 3, 5, 7], 90);
    for (l, r, t, b) in [(1, 1, 1, 1), (0, 3, 2, 0), (2, 0, 0, 1)] {
        check_op!(format!("pad2d {l} {r} {t} {b}"), be, 0.0,
            pad2d(&x, l, r, t, b) ~ (&xc, l, r, t, b));
    }
    let (x3, x3c) = rounded_pair(&be, &[3, 4, 6], 91);
    check(
        "pad2d rank 3",
        &be,
        &be.pad2d(&x3, 2, 1, 0, 3).unwrap(),
        &CPU.pad2d(&x3c, 2, 1, 0, 3).unwrap(),
        0.0,
    );
});
