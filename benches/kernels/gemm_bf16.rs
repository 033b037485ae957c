//! `gemm_bf16.cu`: the f32-output GEMM (`linear` / `matmul` with f32 storage, split operands).

use criterion::Criterion;
use cyberhost_engine::backends::cuda::DType;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend().with_storage(DType::F32);
    let (m, k, n) = (64, 48, 40);
    let x = be.to_dtype(&tensor(&[m, k], 1), DType::F32).unwrap();
    let w = tensor(&[n, k], 2); // bf16 weight: exact, one split operand
    bench(c, "gemm_bf16", &format!("linear_f32_{m}x{k}x{n}"), || {
        be.linear(&x, &w, None)
    });
}
