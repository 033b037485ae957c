//! `kernels/cuda/layer_norm.cu` (`layer_norm_v2_*`: optional gamma / beta;
//! 16-byte vector path with the row in registers, streamed vector path, scalar path) through the CUDA backend
//! against the CPU backend, both storages; bad arguments and edge shapes on both backends
//! (`backend_test!`).

use crate::backend_test;
use crate::check_op;
use crate::common::{pair, rand_pair, random};
use cyberhost_engine::backends::Backend;

/// A scalar or a gamma of the wrong length is an error; a constant row normalises to beta.
fn layer_norm_bad_arguments_and_constant_rows<B: Backend>(be: &B) -> anyhow::Result<()> {
    let s = be.from_f32(&[], &[1.0])?;
    assert!(be.layer_norm(&s, None, None, 1e-5).is_err(), "scalar");
    let x = be.from_f32(&[2, 4], &[3.0; 8])?;
    let g = be.from_f32(&[3], &[1.0; 3])?;
    assert!(
        be.layer_norm(&x, Some(&g), None, 1e-5).is_err(),
        "gamma of 3 for 4 columns"
    );
    let b = be.from_f32(&[4], &[0.5, -1.0, 2.0, 0.0])?;
    let y = be.to_f32(&be.layer_norm(&x, None, Some(&b), 1e-5)?)?;
    assert_eq!(y, [0.5, -1.0, 2.0, 0.0, 0.5, -1.0, 2.0, 0.0]);
    Ok(())
}
backend_test!(layer_norm_bad_arguments_and_constant_rows);

// ------------------------------------------------------------------------------------------------
// through the CUDA backend (stand-in driver, or a GPU), against the CPU backend
// ------------------------------------------------------------------------------------------------

crate::storages_test!(layer_norm_matches_cpu, |be, tol| {
    for shape in [vec![3usize, 7], vec![2, 5, 67], vec![5, 320], vec![1]] {
        let c = *shape.last().unwrap();
        let data: Vec<f32> = random(shape.iter().product(), 120)
            .iter()
            .map(|v| v * 2.0 + 0.5)
            .collect();
        let (x, xc) = pair(&be, &shape, &data);
        let (g, gc) = rand_pair(&be, &[c], 121);
        let (b, bc) = rand_pair(&be, &[c], 122);
        check_op!(format!("layer_norm {shape:?} affine"), be, tol,
            layer_norm(&x, Some(&g), Some(&b), 1e-5) ~ (&xc, Some(&gc), Some(&bc), 1e-5));
        check_op!(format!("layer_norm {shape:?} gamma only"), be, tol,
            layer_norm(&x, Some(&g), None, 1e-6) ~ (&xc, Some(&gc), None, 1e-6));
        check_op!(format!("layer_norm {shape:?} plain"), be, tol,
            layer_norm(&x, None, None, 1e-5) ~ (&xc, None, None, 1e-5));
    }
});

// Every path of `layer_norm_v2`: cols % 8 != 0 (bf16) / % 4 != 0 (f32) take the scalar path (1, 7,
// 37, 1283); 320, 1000, 1280 the vector path with the row in registers (bf16: 40, 125, 160
// vectors a row, lanes with unequal counts; f32 up to 1024); 2056 (and f32 1280) the streamed
// vector path (> 32 * 8 vectors a row). 37 rows: the last block of 4 warps is partial. Rows carry their own offset and scale so
// a wrong row's statistics show.
crate::storages_test!(layer_norm_v2_paths_match_cpu, |be, tol| {
    for (rows, c) in [
        (37usize, 1usize),
        (37, 7),
        (37, 37),
        (37, 320),
        (37, 1000),
        (9, 1280),
        (13, 1283),
        (5, 2056),
    ] {
        let data: Vec<f32> = random(rows * c, 130 + c as u64)
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let r = (i / c) as f32;
                v * (1.0 + 0.25 * r) + 0.1 * r - 1.0
            })
            .collect();
        let shape = [rows, c];
        let (x, xc) = pair(&be, &shape, &data);
        let (g, gc) = rand_pair(&be, &[c], 131);
        let (b, bc) = rand_pair(&be, &[c], 132);
        check_op!(format!("layer_norm {shape:?} affine"), be, tol,
            layer_norm(&x, Some(&g), Some(&b), 1e-5) ~ (&xc, Some(&gc), Some(&bc), 1e-5));
        check_op!(format!("layer_norm {shape:?} beta only"), be, tol,
            layer_norm(&x, None, Some(&b), 1e-5) ~ (&xc, None, Some(&bc), 1e-5));
        check_op!(format!("layer_norm {shape:?} plain"), be, tol,
            layer_norm(&x, None, None, 1e-5) ~ (&xc, None, None, 1e-5));
    }
});

// ------------------------------------------------------------------------------------------------
// layer_norm_add: the row table added in the same launch (the motion module's norm + pos_embed)
// ------------------------------------------------------------------------------------------------

/// A table whose trailing dims are not x's `(L, C)`, or with a leading dim other than 1, is an
/// error naming the shapes; a `(L, C)` and a `(1, L, C)` table give the same result.
fn layer_norm_add_bad_tables<B: Backend>(be: &B) -> anyhow::Result<()> {
    let x = be.from_f32(&[2, 3, 4], &random(24, 140))?;
    for bad in [
        vec![3usize, 5],
        vec![2, 4],
        vec![2, 3, 4],
        vec![4],
        vec![1, 1, 2, 4],
    ] {
        let t = be.from_f32(&bad, &random(bad.iter().product(), 141))?;
        let e = be
            .layer_norm_add(&x, None, None, 1e-5, &t)
            .expect_err("mismatched table");
        assert!(format!("{e:#}").contains("row table"), "{bad:?}: {e:#}");
    }
    let t2 = be.from_f32(&[3, 4], &random(12, 142))?;
    let t3 = be.reshape(&t2, &[1, 3, 4])?;
    let a = be.to_f32(&be.layer_norm_add(&x, None, None, 1e-5, &t2)?)?;
    let b = be.to_f32(&be.layer_norm_add(&x, None, None, 1e-5, &t3)?)?;
    assert_eq!(a, b);
    Ok(())
}
backend_test!(layer_norm_add_bad_tables);

// Rows r take table row r % L: L = 16 (a motion module's frames), 3 (37 rows: not a multiple of
// L, the last block partial), 1; the vector path in registers (320), streamed (2056) and the
// scalar path (37 columns); with and without the affine.
crate::storages_test!(layer_norm_add_matches_cpu, |be, tol| {
    for (n, l, c) in [
        (5usize, 16usize, 320usize),
        (1, 37, 37),
        (13, 3, 320),
        (2, 3, 2056),
        (7, 1, 40),
    ] {
        let shape = [n, l, c];
        let data: Vec<f32> = random(n * l * c, 150 + c as u64)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + 0.1 * (i / c % 7) as f32) + 0.3)
            .collect();
        let (x, xc) = pair(&be, &shape, &data);
        let (t, tc) = rand_pair(&be, &[1, l, c], 151);
        let (g, gc) = rand_pair(&be, &[c], 152);
        let (b, bc) = rand_pair(&be, &[c], 153);
        check_op!(format!("layer_norm_add {shape:?} affine"), be, tol,
            layer_norm_add(&x, Some(&g), Some(&b), 1e-5, &t)
                ~ (&xc, Some(&gc), Some(&bc), 1e-5, &tc));
        check_op!(format!("layer_norm_add {shape:?} plain"), be, tol,
            layer_norm_add(&x, None, None, 1e-5, &t) ~ (&xc, None, None, 1e-5, &tc));
    }
});
