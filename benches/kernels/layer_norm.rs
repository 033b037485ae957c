//! `layer_norm.cu`: LayerNorm over the last dim of token rows.

use criterion::Criterion;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let (x, g, b) = (tensor(&[256, 64], 1), tensor(&[64], 2), tensor(&[64], 3));
    bench(c, "layer_norm", "256x64", || {
        backend().layer_norm(&x, Some(&g), Some(&b), 1e-5)
    });
}
