//! `softmax.cu`: row softmax over the last dim.

use criterion::Criterion;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let x = tensor(&[128, 96], 1);
    bench(c, "softmax", "128x96", || backend().softmax_last(&x));
}
