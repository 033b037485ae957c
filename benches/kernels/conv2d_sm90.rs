//! `conv2d_sm90.cu` (sm_90a only): the backend's 3x3 and 1x1 convolutions, which run on the Hopper
//! kernel on an sm_90a device (the stand-in at its default arch; `conv2d.cu` elsewhere).

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
}
