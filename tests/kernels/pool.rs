//! `kernels/cuda/pool.cu` (`max_pool2d_v1_*`) through the CUDA backend against the CPU backend, both
//! storages, bit for bit; bad arguments and known values on both backends (`backend_test!`).

use crate::backend_test;
use crate::check_op;
use crate::common::rounded_pair;
use cyberhost_engine::backends::Backend;

/// A window larger than the padded input, or padding over half the window, is an error; a known
/// small result.
fn pool_bad_arguments_and_known_values<B: Backend>(be: &B) -> anyhow::Result<()> {
    let x = be.from_f32(&[1, 1, 2, 2], &[1.0, -2.0, 3.0, 8.0])?;
    assert!(
        be.max_pool2d(&x, 5, 1, 0).is_err(),
        "window larger than the input"
    );
    assert_eq!(be.to_f32(&be.max_pool2d(&x, 2, 2, 0)?)?, [8.0]);
    Ok(())
}
backend_test!(pool_bad_arguments_and_known_values);

// ------------------------------------------------------------------------------------------------
// through the CUDA backend (stand-in driver, or a GPU), against the CPU backend
// ------------------------------------------------------------------------------------------------

crate::storages_test!(max_pool2d_is_exact, |be, _| {
    for (shape, k, s, p) in [
        ([2usize, 3, 9, 11], 3, 2, 1),
        ([1, 2, 8, 8], 2, 2, 0),
        ([1, 3, 7, 5], 3, 1, 1),
        ([2, 1, 5, 6], 1, 3, 0),
    ] {
        let (x, xc) = rounded_pair(&be, &shape, 140);
        check_op!(format!("max_pool2d {shape:?} k{k} s{s} p{p}"), be, 0.0,
            max_pool2d(&x, k, s, p) ~ (&xc, k, s, p));
    }
    let (x, _) = rounded_pair(&be, &[1, 1, 4, 4], 1);
    assert!(be.max_pool2d(&x, 2, 2, 2).is_err());
});
