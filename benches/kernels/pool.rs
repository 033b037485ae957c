//! `pool.cu`: `max_pool2d`.

use criterion::Criterion;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let x = tensor(&[2, 16, 24, 24], 1);
    bench(c, "pool", "max_pool2d_k3s2p1", || {
        be.max_pool2d(&x, 3, 2, 1)
    });
}
