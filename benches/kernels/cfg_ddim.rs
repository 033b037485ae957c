//! `cfg_ddim.cu`: the fused CFG + DDIM step over a small latent clip.

use criterion::Criterion;
use cyberhost_engine::backends::cuda::DType;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let out = tensor(&[2, 4, 10, 16, 16], 1);
    let z = be
        .to_dtype(&tensor(&[1, 4, 8, 16, 16], 2), DType::F32)
        .unwrap();
    let k = [
        5.0,
        0.55,
        0.84,
        0.67,
        0.74,
        0.0,
        f32::NEG_INFINITY,
        f32::INFINITY,
    ];
    let coeffs = be.from_f32_as(&[8], &k, DType::F32).unwrap();
    bench(c, "cfg_ddim", "c4_f8_16x16", || {
        be.cfg_ddim_step(&out, &z, 2, &coeffs)
    });
}
