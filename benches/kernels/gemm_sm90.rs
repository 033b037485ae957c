//! `gemm_sm90.cu`: `linear`, the GEGLU `linear` and a motion module's exit
//! (`linear_tokens_planes_add`, the planes epilogue) in bf16 through the backend, which takes
//! `linear_sm90_v1_bf16` on an sm_90a device (the stand-in's default arch, H100/H200).

use criterion::Criterion;
use cyberhost_engine::backends::{Backend, LinearEpilogue};

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let (m, k, n) = (192, 128, 264);
    let (x, w, b) = (tensor(&[m, k], 1), tensor(&[n, k], 2), tensor(&[n], 3));
    bench(c, "gemm_sm90", &format!("linear_{m}x{k}x{n}"), || {
        be.linear(&x, &w, Some(&b))
    });
    let (wg, bg) = (tensor(&[2 * n, k], 4), tensor(&[2 * n], 5));
    let epi = LinearEpilogue {
        geglu: true,
        ..Default::default()
    };
    bench(c, "gemm_sm90", &format!("geglu_{m}x{k}x{n}"), || {
        be.linear_ext(&x, &wg, Some(&bg), epi)
    });
    // 2 items x 4 frames of 8 x 12 planes, 128 -> 264 channels, the skip state's 8 as the tail
    let (f, hw) = (4, 96);
    let (t, r, tail) = (
        tensor(&[2 * hw, f, k], 6),
        tensor(&[2 * f, n, 8, 12], 7),
        tensor(&[2 * f, 8, 8, 12], 8),
    );
    bench(
        c,
        "gemm_sm90",
        &format!("exit_planes_f{f}_{hw}x{k}x{n}"),
        || be.linear_tokens_planes_add(&t, &w, Some(&b), &r, f, Some(&tail)),
    );
}
