//! `conv2d.cu`: implicit-GEMM 3x3 and 1x1 convolutions; the 3x3 on f32 activations (split entry,
//! bf16 weight).

use criterion::Criterion;
use cyberhost_engine::backends::cuda::DType;
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
    let f = backend().with_storage(DType::F32);
    let x = backend()
        .to_dtype(&tensor(&[1, 32, 12, 12], 1), DType::F32)
        .unwrap();
    let w = backend()
        .to_dtype(&tensor(&[32, 32, 3, 3], 2), DType::Bf16)
        .unwrap();
    let b = backend().to_dtype(&tensor(&[32], 3), DType::F32).unwrap();
    bench(c, "conv2d", "3x3_32x12x12_f32_wbf16", || {
        f.conv2d(&x, &w, Some(&b), Conv2dParams::new(1, 1))
    });
}
