//! `rca_temporal_query_v1_*`, `rca_motion_sum_v1_*`, `rca_merge_v1_*`, `rca_merge_nhwc_v1_*` against
//! the CPU backend's `rca_*` (the compositions of `backends/composed_rca.rs`): ragged C (not a multiple of 32 or of a vector width), odd L / h·w, N = 1,
//! frame counts that do not divide N's period, identity rows in the middle / at the ends / none.

use crate::common::{assert_close, cpu, host, round_bf16, tol, Rng, CPU};
use crate::harness::{Device, SCHEDULES};
use cyberhost_engine::backends::Backend;
use cyberhost_kernels::rca::{launch_config, RcaOp, RcaParams};
use cyberhost_kernels::{kernel_name, DType, KernelModule};

/// Runs `op`'s entry of `dtype` with `p` and downloads its `n` outputs at `out`; returns the
/// entry's name and the outputs.
fn run(
    dev: &mut Device,
    op: RcaOp,
    dtype: DType,
    p: &RcaParams,
    (out, n): (u64, usize),
) -> anyhow::Result<(String, Vec<f32>)> {
    let entry = kernel_name(op.name(), 1, dtype);
    dev.launch(KernelModule::Rca, &entry, launch_config(op, p), p)?;
    Ok((entry, dev.download_as(dtype, out, n)?))
}

fn sweep(f: impl Fn(&mut Device, DType, u64) -> anyhow::Result<()>) {
    for dtype in [DType::F32, DType::Bf16] {
        for (i, (schedules, seed)) in SCHEDULES.iter().enumerate() {
            let mut dev = Device::new(*schedules, *seed);
            f(&mut dev, dtype, i as u64 * 100).unwrap();
        }
    }
}

/// (N, L, C, frames)
const TQ_SHAPES: &[(usize, usize, usize, usize)] =
    &[(6, 5, 33, 3), (1, 7, 64, 4), (10, 9, 20, 4), (4, 1, 3, 4)];

#[test]
fn rca_temporal_query() {
    sweep(|dev, dtype, seed| {
        let bf = dtype == DType::Bf16;
        for (j, &(n, l, c, f)) in TQ_SHAPES.iter().enumerate() {
            let mut rng = Rng::new(seed + j as u64);
            let r = |v: Vec<f32>| if bf { round_bf16(&v) } else { v };
            let x = r(rng.randn(n * l * c, 1.0, 0.5));
            let a_s = r(rng.randn(n * l * c, 0.7, -0.2));
            let bank = r(rng.randn(f * c, 1.0, 0.0));
            let want = host(&CPU.rca_temporal_query(
                &cpu(&[n, l, c], &x),
                &cpu(&[n, l, c], &a_s),
                &cpu(&[f, c], &bank),
            )?);
            let [dx, da, db] = dev.upload_all(dtype, [&x, &a_s, &bank])?;
            let dq = dev.alloc_poisoned(want.len() * dtype.size_in_bytes())?;
            let dims = (n as u64, l as u64, c as u64);
            let p = RcaParams::temporal_query(dx, da, db, dq, dims, f as u64)?;
            let (entry, got) = run(dev, RcaOp::TemporalQuery, dtype, &p, (dq, want.len()))?;
            assert_close(&format!("{entry} {:?}", TQ_SHAPES[j]), &got, &want, tol(bf));
        }
        Ok(())
    });
}

/// (N, L, C, identity rows)
const MS_SHAPES: &[(usize, usize, usize, Option<(usize, usize)>)] = &[
    (6, 5, 33, Some((0, 3))),
    (6, 5, 33, Some((2, 5))),
    (4, 7, 20, Some((1, 4))),
    (1, 9, 64, Some((0, 1))),
    (3, 3, 7, None),
    (5, 2, 9, Some((3, 3))),
];

#[test]
fn rca_motion_sum() {
    sweep(|dev, dtype, seed| {
        let bf = dtype == DType::Bf16;
        for (j, &(n, l, c, rows)) in MS_SHAPES.iter().enumerate() {
            let mut rng = Rng::new(seed + 10 + j as u64);
            let r = |v: Vec<f32>| if bf { round_bf16(&v) } else { v };
            let a_s = r(rng.randn(n * l * c, 1.0, 0.3));
            let a_t = r(rng.randn(n * l * c, 0.8, -0.1));
            let nid = rows.map_or(0, |(a, b)| b - a);
            let f_id = r(rng.randn(nid.max(1) * l * c, 1.2, 0.2));
            let f_id = &f_id[..nid * l * c];
            let f_id_t = cpu(&[nid, l, c], f_id);
            let want = host(&CPU.rca_motion_sum(
                &cpu(&[n, l, c], &a_s),
                &cpu(&[n, l, c], &a_t),
                rows.map(|(a, _)| (&f_id_t, a)),
            )?);
            let [da, dt] = dev.upload_all(dtype, [&a_s, &a_t])?;
            let df = if rows.is_some() {
                dev.upload_as(dtype, f_id)?
            } else {
                0
            };
            let ds = dev.alloc_poisoned(want.len() * dtype.size_in_bytes())?;
            let dims = (n as u64, l as u64, c as u64);
            let rr = rows.map_or((0, 0), |(a, b)| (a as u64, b as u64));
            let p = RcaParams::motion_sum(da, dt, df, ds, dims, rr)?;
            let (entry, got) = run(dev, RcaOp::MotionSum, dtype, &p, (ds, want.len()))?;
            assert_close(&format!("{entry} {:?}", MS_SHAPES[j]), &got, &want, tol(bf));
        }
        Ok(())
    });
}

/// (N, C, h, w, C4, bias)
const MERGE_SHAPES: &[(usize, usize, usize, usize, usize, bool)] = &[
    (2, 64, 6, 6, 16, true),
    (3, 70, 5, 7, 17, true),
    (1, 8, 9, 9, 2, false),
    (2, 33, 1, 1, 8, true),
    (1, 96, 4, 17, 24, true),
];

#[test]
fn rca_merge() {
    sweep(|dev, dtype, seed| {
        let bf = dtype == DType::Bf16;
        for (j, &(n, c, h, w, c4, bias)) in MERGE_SHAPES.iter().enumerate() {
            let p_ = h * w;
            let mut rng = Rng::new(seed + 20 + j as u64);
            let r = |v: Vec<f32>| if bf { round_bf16(&v) } else { v };
            let f_in = r(rng.randn(n * c * p_, 1.0, 0.2));
            let tok = r(rng.randn(n * p_ * c, 1.0, -0.3));
            let hid = r(rng.randn(n * c4 * p_, 1.5, 0.1));
            let w2 = r(rng.randn(c4, 0.4, 0.0));
            let b2 = r(rng.randn(1, 0.5, 0.2));
            let b2_t = cpu(&[1], &b2);
            let want = host(&CPU.rca_merge(
                &cpu(&[n, c, h, w], &f_in),
                &cpu(&[n, p_, c], &tok),
                &cpu(&[n, c4, h, w], &hid),
                &cpu(&[1, c4, 1, 1], &w2),
                bias.then_some(&b2_t),
            )?);
            let [df, dt, dh, dw] = dev.upload_all(dtype, [&f_in, &tok, &hid, &w2])?;
            let db = if bias { dev.upload_as(dtype, &b2)? } else { 0 };
            let dout = dev.alloc_poisoned(want.len() * dtype.size_in_bytes())?;
            let dims = (n as u64, p_ as u64, c as u64);
            let p = RcaParams::merge(df, dt, dh, dw, db, dout, dims, c4 as u64)?;
            let (entry, got) = run(dev, RcaOp::Merge, dtype, &p, (dout, want.len()))?;
            assert_close(
                &format!("{entry} {:?}", MERGE_SHAPES[j]),
                &got,
                &want,
                tol(bf),
            );
        }
        Ok(())
    });
}

/// (N, C, H·W) planes as (N, H·W, C) rows.
fn rows_of(x: &[f32], n: usize, c: usize, s: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for i in 0..n {
        for ch in 0..c {
            for q in 0..s {
                out[(i * s + q) * c + ch] = x[(i * c + ch) * s + q];
            }
        }
    }
    out
}

/// `rca_merge_nhwc_v1` (the channels-last trunk's merge) against the CPU's NCHW `rca_merge` with
/// f_in, the hidden state and the output as `(N, P, C)` rows: the merge shapes (C = 64 and 96 on
/// 16-byte vectors, C = 70, 33, 8 off them for bf16 or f32, P = 1, C4 = 17, 2) and pointers one
/// element off 16 bytes (element-wise path). The output is poisoned first.
#[test]
fn rca_merge_nhwc() {
    sweep(|dev, dtype, seed| {
        let bf = dtype == DType::Bf16;
        for (j, &(n, c, h, w, c4, bias)) in MERGE_SHAPES.iter().enumerate() {
            for misaligned in [false, true] {
                let p_ = h * w;
                let mut rng = Rng::new(seed + 40 + j as u64);
                let r = |v: Vec<f32>| if bf { round_bf16(&v) } else { v };
                let f_in = r(rng.randn(n * c * p_, 1.0, 0.2));
                let tok = r(rng.randn(n * p_ * c, 1.0, -0.3));
                let hid = r(rng.randn(n * c4 * p_, 1.5, 0.1));
                let w2 = r(rng.randn(c4, 0.4, 0.0));
                let b2 = r(rng.randn(1, 0.5, 0.2));
                let b2_t = cpu(&[1], &b2);
                let want = host(&CPU.rca_merge(
                    &cpu(&[n, c, h, w], &f_in),
                    &cpu(&[n, p_, c], &tok),
                    &cpu(&[n, c4, h, w], &hid),
                    &cpu(&[1, c4, 1, 1], &w2),
                    bias.then_some(&b2_t),
                )?);
                let want = rows_of(&want, n, c, p_);
                let lead = misaligned as usize;
                let pad = |v: Vec<f32>| {
                    let mut o = vec![f32::NAN; lead];
                    o.extend(v);
                    o
                };
                let sz = dtype.size_in_bytes();
                let [df, dt, dh, dw] = dev.upload_all(
                    dtype,
                    [
                        &pad(rows_of(&f_in, n, c, p_)),
                        &pad(tok.clone()),
                        &rows_of(&hid, n, c4, p_),
                        &w2,
                    ],
                )?;
                let db = if bias { dev.upload_as(dtype, &b2)? } else { 0 };
                let dout = dev.alloc_poisoned((lead + want.len()) * sz)?;
                let off = (lead * sz) as u64;
                let dims = (n as u64, p_ as u64, c as u64);
                let p =
                    RcaParams::merge(df + off, dt + off, dh, dw, db, dout + off, dims, c4 as u64)?;
                let (entry, got) =
                    run(dev, RcaOp::MergeNhwc, dtype, &p, (dout, lead + want.len()))?;
                assert_close(
                    &format!("{entry} {:?}, misaligned {misaligned}", MERGE_SHAPES[j]),
                    &got[lead..],
                    &want,
                    tol(bf),
                );
            }
        }
        Ok(())
    });
}
