//! `group_norm.cu`: GroupNorm and GroupNorm + SiLU over `(N, C, H, W)` (v1 for small groups, v2 above
//! 1024 elements per group).

use criterion::Criterion;
use cyberhost_engine::backends::{Backend, Unary};

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let (x, g, b) = (
        tensor(&[2, 32, 16, 16], 1),
        tensor(&[32], 2),
        tensor(&[32], 3),
    );
    bench(c, "group_norm", "2x32x16x16_g8", || {
        be.group_norm(&x, 8, Some(&g), Some(&b), 1e-5)
    });
    bench(c, "group_norm", "silu_2x32x16x16_g8", || {
        be.group_norm_act(&x, 8, Some(&g), Some(&b), 1e-5, Some(Unary::Silu))
    });
    // 4 * 64 * 64 = 16384 elements per group: the v2 split reduction (2 chunks per group).
    let xl = tensor(&[2, 32, 64, 64], 4);
    bench(c, "group_norm", "v2_2x32x64x64_g8", || {
        be.group_norm(&xl, 8, Some(&g), Some(&b), 1e-5)
    });
    // token layout (v2 entries): 2 items x 4 frames of (32, 16, 16) planes -> (2, 256, 4, 32)
    let xt = tensor(&[8, 32, 16, 16], 5);
    bench(c, "group_norm", "tokens_8x32x16x16_f4_g8", || {
        be.group_norm_tokens(&xt, 4, 8, Some(&g), Some(&b), 1e-5)
    });
    let t = tensor(&[2, 256, 4, 32], 6);
    bench(c, "group_norm", "tokens_planes_add_8x32x16x16_f4", || {
        be.tokens_planes_add(&t, &xt, 4)
    });
}
