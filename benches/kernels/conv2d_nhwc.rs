//! `conv2d_nhwc.cu`: channels-last implicit-GEMM 3x3 (pad 1; stride 1 and 2) and 1x1
//! convolutions through `CudaBackend::conv2d_nhwc` (weights packed once, outside the timing).

use criterion::Criterion;
use cyberhost_engine::backends::Conv2dParams;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let x = tensor(&[1, 12, 12, 32], 1);
    let b = tensor(&[32], 3);
    for (k, stride, pad) in [(3, 1, 1), (3, 2, 1), (1, 1, 0)] {
        let w = be
            .conv2d_nhwc_weight(&tensor(&[32, 32, k, k], 2))
            .expect("pack");
        bench(
            c,
            "conv2d_nhwc",
            &format!("{k}x{k}_s{stride}_12x12x32"),
            || be.conv2d_nhwc(&x, &w, Some(&b), Conv2dParams::new(stride, pad)),
        );
    }
    // the element-wise loader: a 4-channel latent
    let x4 = tensor(&[1, 12, 12, 4], 4);
    let w4 = be
        .conv2d_nhwc_weight(&tensor(&[32, 4, 3, 3], 5))
        .expect("pack");
    bench(c, "conv2d_nhwc", "3x3_12x12x4_scalar", || {
        be.conv2d_nhwc(&x4, &w4, Some(&b), Conv2dParams::new(1, 1))
    });
}
