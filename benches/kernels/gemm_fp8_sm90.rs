//! `gemm_fp8_sm90.cu`: `linear` and the GEGLU `linear` with `--weights-dtype fp8` weights through
//! the backend (per-row e4m3 quantisation of x, then `linear_fp8_sm90_v1_bf16`), on an sm_90a
//! device (the stand-in's default arch); skipped with a note on the sm_80 kernel set.

use criterion::Criterion;
use cyberhost_engine::backends::{Backend, LinearEpilogue};

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    if let Err(e) = be.set_weights_fp8(true) {
        eprintln!("gemm_fp8_sm90: skipped: {e:#}");
        return;
    }
    let (m, k, n) = (192, 128, 264);
    let (x, w, b) = (tensor(&[m, k], 1), tensor(&[n, k], 2), tensor(&[n], 3));
    let (wg, bg) = (tensor(&[2 * n, k], 4), tensor(&[2 * n], 5));
    for weight in [&w, &wg] {
        be.prepare_linear_weight(weight)
            .expect("quantise the weight");
    }
    bench(c, "gemm_fp8_sm90", &format!("linear_{m}x{k}x{n}"), || {
        be.linear(&x, &w, Some(&b))
    });
    let epi = LinearEpilogue {
        geglu: true,
        ..Default::default()
    };
    bench(c, "gemm_fp8_sm90", &format!("geglu_{m}x{k}x{n}"), || {
        be.linear_ext(&x, &wg, Some(&bg), epi)
    });
    be.set_weights_fp8(false).expect("bf16 weights again");
}
