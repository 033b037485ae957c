//! `attention.cu`: flash attention at head dims 40 (padded to 48) and 64, bf16 entries; and the
//! f32 entry (split hi / lo operands, `--activations f32`) at head dim 40.

use criterion::Criterion;
use cyberhost_engine::backends::cuda::DType;
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
    let (lq, lk, d) = (64, 96, 40);
    let f32_of = |shape: &[usize], seed| {
        backend()
            .to_dtype(&tensor(shape, seed), DType::F32)
            .unwrap()
    };
    let (q, k, v) = (
        f32_of(&[1, 2, lq, d], 1),
        f32_of(&[1, 2, lk, d], 2),
        f32_of(&[1, 2, lk, d], 3),
    );
    let scale = 1.0 / (d as f32).sqrt();
    bench(c, "attention", &format!("f32_h2_{lq}x{lk}_d{d}"), || {
        backend().attention(&q, &k, &v, scale)
    });
}
