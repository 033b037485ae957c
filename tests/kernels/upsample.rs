//! `kernels/cuda/upsample.cu` (`upsample_nearest2d_v1_*`) through the CUDA backend against the CPU
//! backend: bit for bit, both storages, up and down and non-integer scales; bad arguments and
//! known values on both backends (`backend_test!`).

use crate::check_op;
use crate::common::rounded_pair;
use cyberhost_engine::backends::Backend;

/// Not (N, C, H, W), or an empty plane resized to a non-empty one, is an error; 2x nearest
/// upsampling repeats each pixel.
fn upsample_bad_arguments_and_known_values<B: Backend>(be: &B) -> anyhow::Result<()> {
    let v = be.from_f32(&[2, 2], &[1.0; 4])?;
    assert!(be.upsample_nearest2d(&v, 4, 4).is_err(), "rank 2");
    let e = be.from_f32(&[1, 1, 0, 3], &[])?;
    assert!(
        be.upsample_nearest2d(&e, 2, 2).is_err(),
        "empty plane to 2x2"
    );
    let x = be.from_f32(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0])?;
    let y = be.to_f32(&be.upsample_nearest2d(&x, 4, 4)?)?;
    let want = [
        1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0,
    ];
    assert_eq!(y, want);
    Ok(())
}
crate::backend_test!(upsample_bad_arguments_and_known_values);

crate::storages_test!(upsample_nearest2d_is_exact, |be, _| {
    let (x, xc) = rounded_pair(&be, &[2, 3, 5, 7], 90);
    for (oh, ow) in [(10, 14), (5, 7), (3, 4), (15, 9), (11, 20)] {
        check_op!(format!("upsample {oh}x{ow}"), be, 0.0,
            upsample_nearest2d(&x, oh, ow) ~ (&xc, oh, ow));
    }
});
