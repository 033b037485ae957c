//! `gemm.cu`: `linear` (B `(N, K)`) and `matmul` (B `(K, N)`) in bf16, and the GEGLU epilogue;
//! the f32 entries (f32 activations split in registers) on a bf16 weight and on two f32 operands.

use criterion::Criterion;
use cyberhost_engine::backends::cuda::DType;
use cyberhost_engine::backends::{Backend, LinearEpilogue};

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let (m, k, n) = (96, 64, 80);
    let (x, w, b) = (tensor(&[m, k], 1), tensor(&[n, k], 2), tensor(&[n], 3));
    bench(c, "gemm", &format!("linear_{m}x{k}x{n}"), || {
        be.linear(&x, &w, Some(&b))
    });
    let bkn = tensor(&[1, k, n], 4);
    let x3 = tensor(&[1, m, k], 5);
    bench(c, "gemm", &format!("matmul_{m}x{k}x{n}"), || {
        be.matmul(&x3, &bkn)
    });
    let (wg, bg) = (tensor(&[2 * n, k], 6), tensor(&[2 * n], 7));
    let epi = LinearEpilogue {
        geglu: true,
        ..Default::default()
    };
    bench(c, "gemm", &format!("geglu_{m}x{k}x{n}"), || {
        be.linear_ext(&x, &wg, Some(&bg), epi)
    });

    // f32 activations: linear_wbf16_v1_f32 (bf16 weight), GEGLU on it, matmul_v1_f32
    let f = be.with_storage(DType::F32);
    let up = |shape: &[usize], seed| be.to_dtype(&tensor(shape, seed), DType::F32).unwrap();
    let (xf, x3f, bknf, bgf) = (
        up(&[m, k], 8),
        up(&[1, m, k], 9),
        up(&[1, k, n], 10),
        up(&[2 * n], 11),
    );
    let wgb = be.to_dtype(&wg, DType::Bf16).unwrap();
    bench(c, "gemm", &format!("geglu_f32_wbf16_{m}x{k}x{n}"), || {
        f.linear_ext(&xf, &wgb, Some(&bgf), epi)
    });
    bench(c, "gemm", &format!("matmul_f32_{m}x{k}x{n}"), || {
        f.matmul(&x3f, &bknf)
    });
}
