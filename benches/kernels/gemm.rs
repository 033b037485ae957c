//! `gemm.cu`: `linear` (B `(N, K)`) and `matmul` (B `(K, N)`) in bf16, and the GEGLU epilogue.

use criterion::Criterion;
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
}
