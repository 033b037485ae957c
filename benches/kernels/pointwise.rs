//! `pointwise.cu`: a unary activation, a broadcast binary op, affine and a cast.

use criterion::Criterion;
use cyberhost_engine::backends::cuda::DType;
use cyberhost_engine::backends::{Backend, Binary, Unary};

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let x = tensor(&[4, 32, 16, 16], 1);
    let b = tensor(&[1, 32, 1, 1], 2);
    bench(c, "pointwise", "silu_32k", || be.unary(&x, Unary::Silu));
    bench(c, "pointwise", "add_bcast_32k", || {
        be.binary(&x, &b, Binary::Add)
    });
    // same shapes, last merged dim a whole number of 16-byte vectors: binary_v2's vector path
    let y = tensor(&[4, 32, 16, 16], 3);
    bench(c, "pointwise", "add_32k", || be.binary(&x, &y, Binary::Add));
    bench(c, "pointwise", "affine_32k", || be.affine(&x, 0.5, 1.0));
    bench(c, "pointwise", "cast_f32_32k", || {
        be.to_dtype(&x, DType::F32)
    });
}
