//! `rca.cu`: the Region Codebook Attention temporal query, motion sum and merge.

use criterion::Criterion;
use cyberhost_engine::backends::Backend;

use crate::{backend, bench, tensor};

pub fn benches(c: &mut Criterion) {
    let be = backend();
    let (n, l, ch) = (8, 16, 64);
    let (x, a_s, bank) = (
        tensor(&[n, l, ch], 1),
        tensor(&[n, l, ch], 2),
        tensor(&[4, ch], 3),
    );
    bench(c, "rca", "temporal_query_8x16x64", || {
        be.rca_temporal_query(&x, &a_s, &bank)
    });
    let (a_t, f_id) = (tensor(&[n, l, ch], 4), tensor(&[3, l, ch], 5));
    bench(c, "rca", "motion_sum_8x16x64", || {
        be.rca_motion_sum(&a_s, &a_t, Some((&f_id, 2)))
    });
    let (f_in, tok) = (tensor(&[2, ch, 8, 8], 6), tensor(&[2, 64, ch], 7));
    let (hid, mw, mb) = (
        tensor(&[2, 16, 8, 8], 8),
        tensor(&[1, 16, 1, 1], 9),
        tensor(&[1], 10),
    );
    bench(c, "rca", "merge_2x64x8x8", || {
        be.rca_merge(&f_in, &tok, &hid, &mw, Some(&mb))
    });
}
