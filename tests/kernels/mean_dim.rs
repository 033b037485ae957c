//! `kernels/cuda/mean_dim.cu` (`mean_dim_v1_*`) through the CUDA backend against the CPU backend,
//! both storages, every dim of a ragged 4-D tensor; bad arguments and known values on both
//! backends (`backend_test!`).

use crate::check_op;
use crate::common::{pair, random};
use cyberhost_engine::backends::{Backend, TensorLike};

/// A missing dim is an error; the dim is kept with size 1; an empty dim gives NaN (PyTorch).
fn mean_dim_bad_arguments_and_known_values<B: Backend>(be: &B) -> anyhow::Result<()> {
    let x = be.from_f32(&[1, 1, 2, 2], &[1.0, -2.0, 3.0, 8.0])?;
    assert!(be.mean_dim(&x, 4).is_err(), "mean over a missing dim");
    let m = be.mean_dim(&x, 3)?;
    assert_eq!(m.shape(), &[1, 1, 2, 1]);
    assert_eq!(be.to_f32(&m)?, [-0.5, 5.5]);
    let e = be.from_f32(&[2, 0, 3], &[])?;
    let me = be.mean_dim(&e, 1)?;
    assert_eq!(me.shape(), &[2, 1, 3]);
    assert!(be.to_f32(&me)?.iter().all(|v| v.is_nan()));
    Ok(())
}
crate::backend_test!(mean_dim_bad_arguments_and_known_values);

crate::storages_test!(mean_dim_matches_cpu, |be, tol| {
    let shape = [3usize, 5, 7, 2];
    let data: Vec<f32> = random(210, 130).iter().map(|v| v + 0.3).collect();
    let (x, xc) = pair(&be, &shape, &data);
    for dim in 0..4 {
        check_op!(format!("mean_dim {dim}"), be, tol, mean_dim(&x, dim) ~ (&xc, dim));
    }
    assert!(be.mean_dim(&x, 4).is_err());
});
