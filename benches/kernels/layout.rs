//! `layout.cu`: permute and concat (strided `copy`), `index_select`, `pad2d`.

use criterion::Criterion;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let x = tensor(&[2, 16, 12, 12], 1);
    bench(c, "layout", "permute_0231_2x16x12x12", || {
        be.permute(&x, &[0, 2, 3, 1])
    });
    // channel concat: rows of 16 * 144 elements, copy_v2's 16-byte vectors
    bench(c, "layout", "concat_c_2x32x12x12", || {
        be.concat(&[&x, &x], 1)
    });
    let idx: Vec<usize> = (0..16).rev().collect();
    bench(c, "layout", "index_select_16", || {
        be.index_select(&x, 1, &idx)
    });
    bench(c, "layout", "pad2d_1", || be.pad2d(&x, 1, 1, 1, 1));
    bench(c, "layout", "upsample_2x", || {
        be.upsample_nearest2d(&x, 24, 24)
    });
}
