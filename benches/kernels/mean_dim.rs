//! `mean_dim.cu`: mean over the channel dim and over the last dim.

use criterion::Criterion;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let x = tensor(&[2, 16, 24, 24], 1);
    bench(c, "mean_dim", "dim1_2x16x24x24", || be.mean_dim(&x, 1));
    bench(c, "mean_dim", "dim3_2x16x24x24", || be.mean_dim(&x, 3));
}
