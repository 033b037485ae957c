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
}
