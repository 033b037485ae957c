//! `attention.cu`: flash attention at head dims 40 (padded to 48) and 64.

use criterion::Criterion;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    for (lq, lk, d) in [(64, 96, 40), (32, 32, 64)] {
        let (q, k, v) = (
            tensor(&[1, 2, lq, d], 1),
            tensor(&[1, 2, lk, d], 2),
            tensor(&[1, 2, lk, d], 3),
        );
        let scale = 1.0 / (d as f32).sqrt();
        bench(c, "attention", &format!("h2_{lq}x{lk}_d{d}"), || {
            backend().attention(&q, &k, &v, scale)
        });
    }
}
