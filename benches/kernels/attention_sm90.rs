//! `attention_sm90.cu`: the wgmma attention (sm_90a: the stand-in at its default arch, or an
//! H100 / H200) through the backend's `attention_heads` on token layouts, head dims 40, 80 and
//! 160 (the U-Net's), 8 heads, reference rows with 64 shared extra keys for d40. On an sm_80
//! device the same cases time the sm_80 kernel.

use criterion::Criterion;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let (n, l, h) = (2usize, 128usize, 8usize);
    for d in [40usize, 80, 160] {
        let ch = h * d;
        let (q, k, v) = (
            tensor(&[n, l, ch], 4),
            tensor(&[n, l, ch], 5),
            tensor(&[n, l, ch], 6),
        );
        let scale = 1.0 / (d as f32).sqrt();
        bench(c, "attention_sm90", &format!("heads_n2_l128_d{d}"), || {
            backend().attention_heads(&q, &k, &v, None, h, scale)
        });
    }
    let ch = 320;
    let (q, k, v) = (
        tensor(&[n, l, ch], 7),
        tensor(&[n, l, ch], 8),
        tensor(&[n, l, ch], 9),
    );
    let (ke, ve) = (tensor(&[1, 64, ch], 10), tensor(&[1, 64, ch], 11));
    bench(c, "attention_sm90", "heads_n2_l128_d40_extra64", || {
        backend().attention_heads(&q, &k, &v, Some((&ke, &ve, 1..2)), h, 1.0 / 40f32.sqrt())
    });
}
