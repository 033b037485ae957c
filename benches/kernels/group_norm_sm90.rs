//! `group_norm_sm90.cu` (sm_90a only): the backend's bf16 GroupNorm (+ SiLU) on v2 shapes, which
//! runs on the single-pass cluster kernel on an sm_90a device (the stand-in at its default arch;
//! `group_norm.cu`'s v2 elsewhere): one block per group, and 8-block clusters for a large group;
//! the token-layout GroupNorm (`group_norm_tokens`, on `group_norm_tokens_sm90` there).

use criterion::Criterion;
use cyberhost_engine::backends::{Backend, Unary};

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let (g, b) = (tensor(&[64], 2), tensor(&[64], 3));
    // 2 x 8 groups of 8 x 1024 elements: 16 KiB per group, clusters of 1
    let x = tensor(&[2, 64, 32, 32], 1);
    bench(c, "group_norm_sm90", "silu_2x64x32x32_g8", || {
        be.group_norm_act(&x, 8, Some(&g), Some(&b), 1e-5, Some(Unary::Silu))
    });
    // 1 group of 64 x 4096 elements: 512 KiB, one cluster of 8 blocks
    let xl = tensor(&[1, 64, 64, 64], 4);
    bench(c, "group_norm_sm90", "1x64x64x64_g1", || {
        be.group_norm(&xl, 1, Some(&g), Some(&b), 1e-5)
    });
    // tokens: 2 items x 4 frames, 320 channels (bundles of 4 groups of 10) at 16x16
    let (gt, bt) = (tensor(&[320], 5), tensor(&[320], 6));
    let xt = tensor(&[8, 320, 16, 16], 7);
    bench(c, "group_norm_sm90", "tokens_8x320x16x16_f4_g32", || {
        be.group_norm_tokens(&xt, 4, 32, Some(&gt), Some(&bt), 1e-5)
    });
}
