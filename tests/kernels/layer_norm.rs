//! `kernels/cuda/layer_norm.cu` (`layer_norm_v1_*`: optional gamma / beta) through the CUDA backend
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
