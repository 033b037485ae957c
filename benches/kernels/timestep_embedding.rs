//! `timestep_embedding.cu`: the sinusoidal embedding of the two CFG timesteps.

use criterion::Criterion;
use cyberhost_engine::backends::cuda::DType;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let t = be.from_f32_as(&[2], &[981.0, 981.0], DType::F32).unwrap();
    bench(c, "timestep_embedding", "2x320", || {
        be.timestep_embedding(&t, 320, true, 1.0)
    });
}
