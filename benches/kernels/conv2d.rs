//! `conv2d.cu`: implicit-GEMM 3x3 and 1x1 convolutions.

use criterion::Criterion;
use cyberhost_engine::backends::{Backend, Conv2dParams};

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    for (k, pad) in [(3, 1), (1, 0)] {
        let x = tensor(&[1, 32, 12, 12], 1);
        let w = tensor(&[32, 32, k, k], 2);
        let b = tensor(&[32], 3);
        bench(c, "conv2d", &format!("{k}x{k}_32x12x12"), || {
            backend().conv2d(&x, &w, Some(&b), Conv2dParams::new(1, pad))
        });
    }
}
