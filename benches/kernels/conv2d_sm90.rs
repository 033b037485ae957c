//! `conv2d_sm90.cu` (sm_90a only): the backend's 3x3 and 1x1 convolutions, which run on the Hopper
//! kernel on an sm_90a device (the stand-in at its default arch; `conv2d.cu` elsewhere), and a
//! conv of one column tile and 9 k tiles, which the planner splits (`conv2d_sm90_splitk_v1_bf16`
//! + `conv2d_sm90_reduce_v1_bf16`).

use criterion::Criterion;
use cyberhost_engine::backends::{Backend, Conv2dParams};

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    for (k, pad) in [(3, 1), (1, 0)] {
        let x = tensor(&[2, 64, 12, 12], 1);
        let w = tensor(&[64, 64, k, k], 2);
        let b = tensor(&[64], 3);
        bench(c, "conv2d_sm90", &format!("{k}x{k}_64x12x12_n2"), || {
            backend().conv2d(&x, &w, Some(&b), Conv2dParams::new(1, pad))
        });
    }
    let x = tensor(&[1, 128, 8, 8], 4);
    let w = tensor(&[64, 128, 3, 3], 5);
    let b = tensor(&[64], 6);
    bench(c, "conv2d_sm90", "3x3_128x8x8_to_64_splitk", || {
        backend().conv2d(&x, &w, Some(&b), Conv2dParams::new(1, 1))
    });
}
