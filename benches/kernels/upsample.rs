//! `upsample.cu`: nearest 2x upsampling (the U-Net upsamplers) and a non-integer scale.

use criterion::Criterion;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let x = tensor(&[2, 16, 12, 12], 1);
    bench(c, "upsample", "2x_2x16x12x12", || {
        be.upsample_nearest2d(&x, 24, 24)
    });
    bench(c, "upsample", "to_17x19", || {
        be.upsample_nearest2d(&x, 17, 19)
    });
}
