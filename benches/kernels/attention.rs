//! `attention.cu`: flash attention at head dims 40 (padded to 48) and 64, bf16 entries; and the
//! f32 entry (split hi / lo operands, `--activations f32`) at head dim 40; the short-sequence
//! entry on temporal attention's shape (16 frames, 8 heads of 40, many (batch, head) problems).

use criterion::Criterion;
use cyberhost_engine::backends::cuda::DType;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    // (case prefix, Lq, Lk, D, activations dtype)
    let cases = [
        ("", 64, 96, 40, DType::Bf16),
        ("", 32, 32, 64, DType::Bf16),
        ("f32_", 64, 96, 40, DType::F32),
    ];
    for (prefix, lq, lk, d, dtype) in cases {
        let input = |shape: &[usize], seed| {
            let t = tensor(shape, seed);
            if dtype == DType::F32 {
                backend().to_dtype(&t, DType::F32).unwrap()
            } else {
                t
            }
        };
        let (q, k, v) = (
            input(&[1, 2, lq, d], 1),
            input(&[1, 2, lk, d], 2),
            input(&[1, 2, lk, d], 3),
        );
        let scale = 1.0 / (d as f32).sqrt();
        bench(
            c,
            "attention",
            &format!("{prefix}h2_{lq}x{lk}_d{d}"),
            || backend().attention(&q, &k, &v, scale),
        );
    }
    // token layouts through strides (the model's path): 8 heads of 40, reference rows with 64
    // shared extra keys
    let (n, l, ch, h) = (2usize, 64usize, 320usize, 8usize);
    let (q, k, v) = (
        tensor(&[n, l, ch], 4),
        tensor(&[n, l, ch], 5),
        tensor(&[n, l, ch], 6),
    );
    let (ke, ve) = (tensor(&[1, 64, ch], 7), tensor(&[1, 64, ch], 8));
    let scale = 1.0 / ((ch / h) as f32).sqrt();
    bench(c, "attention", "heads_n2_l64_c320_extra64", || {
        backend().attention_heads(&q, &k, &v, Some((&ke, &ve, 1..2)), h, scale)
    });
    // temporal attention: (B H W, F, C) tokens, F = 16 frames: attention_short_d40_v1_bf16
    let (n, f) = (64usize, 16usize);
    let (q, k, v) = (
        tensor(&[n, f, ch], 9),
        tensor(&[n, f, ch], 10),
        tensor(&[n, f, ch], 11),
    );
    bench(c, "attention", "heads_temporal_n64_f16_c320", || {
        backend().attention_heads(&q, &k, &v, None, h, scale)
    });
}
