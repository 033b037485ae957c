//! Region Codebook Attention primitives (`rca_attention`, `rca_temporal_query`,
//! `rca_motion_sum`, `rca_merge`):
//! - CPU: `RegionCodebookAttention::forward` equals, bit for bit, the op sequence it ran before
//!   the primitives existed (written out here as `unfused_forward`);
//! - trace: one node per primitive, FLOPs recorded;
//! - CUDA (bf16 storage, stand-in driver, outputs poisoned) against the CPU, per op and for the
//!   whole RCA, and the launch count of one RCA before (unfused) and after.
//!
//! ```sh
//! cargo build -p ptx-emu-driver && cargo test --test rca_ops -- --nocapture
//! ```

mod common;
use common::rel_l2;

use std::collections::HashMap;
use std::ops::Range;

use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::cuda::CudaBackend;
use cyberhost_engine::backends::{Backend, BackendExt, TensorLike, Unary};
use cyberhost_engine::graph::{Op, TraceBackend};
use cyberhost_engine::models::cyberhost::{RcaSiteConfig, RegionCodebookAttention};
use cyberhost_engine::var_builder::VarBuilder;

/// Seeded uniform values in [−scale, scale) (the suite's one generator).
fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    common::random_span(n, seed, scale)
}

/// C 64 (1 head, d 64), 6 codebook rows, 4 frame slots, E 12.
fn cfg() -> RcaSiteConfig {
    RcaSiteConfig {
        channels: 64,
        codebook_size: 6,
        num_frames: 4,
        norm_num_groups: 8,
        identity_dim: 12,
    }
}

/// Random weights of one RCA at prefix `r` (to_out non-zero, so the update is not trivial).
fn weights(c: &RcaSiteConfig) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let ch = c.channels;
    let mut t = HashMap::new();
    let mut seed = 100;
    let mut put = |name: &str, shape: &[usize], scale: f32| {
        seed += 1;
        let n = shape.iter().product();
        t.insert(
            format!("r.{name}"),
            (shape.to_vec(), random(n, seed, scale)),
        );
    };
    let s = 1.0 / (ch as f32).sqrt();
    put("spatial_bank", &[c.codebook_size, ch], 1.0);
    put("temporal_bank", &[c.num_frames, ch], 1.0);
    put("norm.weight", &[ch], 1.0);
    put("norm.bias", &[ch], 0.5);
    for m in ["spatial", "temporal", "identity"] {
        for p in ["to_q", "to_k", "to_v"] {
            put(&format!("{m}.{p}.weight"), &[ch, ch], s);
        }
    }
    put("id_proj.weight", &[ch, c.identity_dim], 0.3);
    put("id_proj.bias", &[ch], 0.1);
    put("mask.conv1.weight", &[ch / 4, ch, 3, 3], s / 3.0);
    put("mask.conv1.bias", &[ch / 4], 0.1);
    put("mask.conv2.weight", &[1, ch / 4, 1, 1], 0.5);
    put("mask.conv2.bias", &[1], 0.2);
    put("to_out.weight", &[ch, ch], s);
    put("to_out.bias", &[ch], 0.1);
    t
}

fn load<B: Backend>(be: &B) -> RegionCodebookAttention<B> {
    let vb = VarBuilder::from_tensors(be.clone(), weights(&cfg())).unwrap();
    let m = RegionCodebookAttention::load(&vb.pp("r"), &cfg()).unwrap();
    vb.finish().unwrap();
    m
}

/// The op sequence `RegionCodebookAttention::forward` ran before the RCA primitives.
fn unfused_forward<B: Backend>(
    m: &RegionCodebookAttention<B>,
    be: &B,
    f_in: &B::Tensor,
    num_frames: usize,
    id: Option<(&B::Tensor, Range<usize>)>,
) -> B::Tensor {
    let s = f_in.shape().to_vec();
    let c = m.cfg.channels;
    let (n, h, w) = (s[0], s[2], s[3]);
    let hw = h * w;
    let mha = |a: &cyberhost_engine::models::cyberhost::rca::CodebookAttention<B>,
               q_in: &B::Tensor,
               kv: &B::Tensor| {
        let (n, l) = (q_in.shape()[0], q_in.shape()[1]);
        let lk = kv.shape()[0];
        let d = c / a.heads;
        let split = |t: &B::Tensor, l: usize| {
            let t = be.reshape(t, &[l, a.heads, d]).unwrap();
            let t = be.permute(&t, &[1, 0, 2]).unwrap();
            be.reshape(&t, &[1, a.heads, l, d]).unwrap()
        };
        let q = a
            .to_q
            .forward(be, &be.reshape(q_in, &[n * l, c]).unwrap())
            .unwrap();
        let q = split(&q, n * l);
        let k = split(&a.to_k.forward(be, kv).unwrap(), lk);
        let v = split(&a.to_v.forward(be, kv).unwrap(), lk);
        let o = be.attention(&q, &k, &v, 1.0 / (d as f32).sqrt()).unwrap();
        let o = be.reshape(&o, &[a.heads, n * l, d]).unwrap();
        let o = be.permute(&o, &[1, 0, 2]).unwrap();
        be.reshape(&o, &[n, l, c]).unwrap()
    };
    let x = m.norm.forward(be, f_in).unwrap();
    let x = be
        .permute(&be.reshape(&x, &[n, c, hw]).unwrap(), &[0, 2, 1])
        .unwrap();
    let a_s = mha(&m.spatial, &x, &m.spatial_bank);
    let slots: Vec<usize> = (0..n).map(|i| i % num_frames).collect();
    let t_f = be
        .reshape(
            &be.index_select(&m.temporal_bank, 0, &slots).unwrap(),
            &[n, 1, c],
        )
        .unwrap();
    let q_t = be.add(&be.add(&x, &a_s).unwrap(), &t_f).unwrap();
    let a_t = mha(&m.temporal, &q_t, &m.temporal_bank);
    let mut sum = be.add(&a_s, &a_t).unwrap();
    if let Some((tokens, rows)) = id {
        if !rows.is_empty() {
            let kv = m.id_proj.forward(be, tokens).unwrap();
            let len = rows.end - rows.start;
            let x_id = be.narrow(&x, 0, rows.start, len).unwrap();
            let f_id = mha(&m.identity, &x_id, &kv);
            let mid = be
                .add(&be.narrow(&sum, 0, rows.start, len).unwrap(), &f_id)
                .unwrap();
            let pre = (rows.start > 0).then(|| be.narrow(&sum, 0, 0, rows.start).unwrap());
            let post = (rows.end < n).then(|| be.narrow(&sum, 0, rows.end, n - rows.end).unwrap());
            let mut parts = Vec::new();
            parts.extend(pre.as_ref());
            parts.push(&mid);
            parts.extend(post.as_ref());
            sum = be.concat(&parts, 0).unwrap();
        }
    }
    let out = m.to_out.forward(be, &sum).unwrap();
    let out = be
        .reshape(&be.permute(&out, &[0, 2, 1]).unwrap(), &[n, c, h, w])
        .unwrap();
    let mm = be.silu(&m.mask_conv1.forward(be, f_in).unwrap()).unwrap();
    let mm = be
        .unary(&m.mask_conv2.forward(be, &mm).unwrap(), Unary::Sigmoid)
        .unwrap();
    be.add(f_in, &be.mul(&mm, &out).unwrap()).unwrap()
}

/// (N, h, w, identity rows): N = 2·F (cond, uncond), N = 1 (F ∤ ... a single frame), ragged h·w.
const CASES: &[(usize, usize, usize, Option<(usize, usize)>)] = &[
    (8, 3, 5, Some((0, 4))),
    (8, 4, 4, Some((2, 7))),
    (4, 5, 3, None),
    (4, 1, 7, Some((0, 4))),
];

fn input(n: usize, h: usize, w: usize, seed: u64) -> (Vec<usize>, Vec<f32>) {
    let shape = vec![n, cfg().channels, h, w];
    let v = random(shape.iter().product(), seed, 1.5);
    (shape, v)
}

#[test]
fn cpu_rca_forward_is_bit_identical_to_the_unfused_sequence() {
    let be = CpuBackend::new();
    let m = load(&be);
    let tokens = be.from_f32(&[5, 12], &random(60, 7, 1.0)).unwrap();
    for (i, &(n, h, w, rows)) in CASES.iter().enumerate() {
        let (s, v) = input(n, h, w, 30 + i as u64);
        let x = be.from_f32(&s, &v).unwrap();
        let id = rows.map(|(a, b)| (&tokens, a..b));
        let got = be
            .to_f32(&m.forward(&be, &x, 4, id.clone()).unwrap())
            .unwrap();
        let want = be.to_f32(&unfused_forward(&m, &be, &x, 4, id)).unwrap();
        assert_eq!(got, want, "case {:?}", CASES[i]);
        assert!(rel_l2(&got, &v) > 1e-3, "the update is not trivial");
    }
}

#[test]
fn trace_records_one_node_per_rca_primitive() {
    let tb = TraceBackend::new();
    let m = load(&tb);
    let tokens = tb.zeros(&[5, 12]).unwrap();
    let x = tb.zeros(&[8, 64, 3, 5]).unwrap();
    let _ = tb.cut("load", &[]);
    let y = m.forward(&tb, &x, 4, Some((&tokens, 0..4))).unwrap();
    let g = tb.cut("rca", &[&y]);
    let count = |f: &dyn Fn(&Op) -> bool| g.nodes.iter().filter(|n| f(&n.op)).count();
    assert_eq!(count(&|o| matches!(o, Op::RcaAttention { heads: 1 })), 3);
    assert_eq!(count(&|o| *o == Op::RcaTemporalQuery), 1);
    assert_eq!(count(&|o| *o == Op::RcaMotionSum), 1);
    assert_eq!(count(&|o| *o == Op::RcaMerge), 1);
    assert_eq!(
        count(&|o| matches!(o, Op::Binary(_) | Op::Unary(_) | Op::Concat { .. })),
        0
    );
    let non_alias = g.nodes.iter().filter(|n| !n.op.is_alias()).count();
    println!("traced RCA (N 8, C 64, 3x5, identity rows 0..4): {non_alias} ops");
    for n in g.nodes.iter().filter(|n| !n.op.is_alias()) {
        println!("  {} flops {} bytes {}", n.op.name(), n.flops, n.bytes);
        assert!(n.flops > 0 || n.op.name() == "narrow" || n.op.name() == "permute");
    }
    // shape errors are reported, not broadcast
    let bad = tb.zeros(&[8, 15, 63]).unwrap();
    let k = tb.zeros(&[6, 64]).unwrap();
    assert!(tb.rca_attention(&bad, &k, &k, 1, 1.0).is_err());
    let bank = tb.zeros(&[4, 64]).unwrap();
    let q = tb.zeros(&[8, 15, 64]).unwrap();
    assert!(tb.rca_temporal_query(&q, &bad, &bank).is_err());
    let f = tb.zeros(&[5, 15, 64]).unwrap();
    assert!(tb.rca_motion_sum(&q, &q, Some((&f, 4))).is_err());
}

// ---- CUDA (stand-in driver) vs CPU ------------------------------------------------------------

// The stand-in's launch counter is per process: the CUDA tests of this file take turns
// (`serial`), so one test's launches never land in another's count.
use common::{cuda_serial as serial, emulated_backend as gpu, emulated_launches as launches};

#[test]
fn cuda_rca_matches_cpu_and_launch_counts() {
    let _serial = serial();
    let (cpu, be) = (CpuBackend::new(), gpu().clone());
    let (mc, mg) = (load(&cpu), load(&be));
    let tv = random(60, 7, 1.0);
    let (tc, tg) = (
        cpu.from_f32(&[5, 12], &tv).unwrap(),
        be.from_f32(&[5, 12], &tv).unwrap(),
    );
    for (i, &(n, h, w, rows)) in CASES.iter().enumerate() {
        let (s, v) = input(n, h, w, 30 + i as u64);
        let (xc, xg) = (cpu.from_f32(&s, &v).unwrap(), be.from_f32(&s, &v).unwrap());
        let want = cpu
            .to_f32(
                &mc.forward(&cpu, &xc, 4, rows.map(|(a, b)| (&tc, a..b)))
                    .unwrap(),
            )
            .unwrap();
        let mut y = None;
        let after = launches(|| {
            y = Some(
                mg.forward(&be, &xg, 4, rows.map(|(a, b)| (&tg, a..b)))
                    .unwrap(),
            );
        });
        let before = launches(|| {
            unfused_forward(&mg, &be, &xg, 4, rows.map(|(a, b)| (&tg, a..b)));
        });
        let got = be.to_f32(&y.unwrap()).unwrap();
        // compare the update F_out − F_in (F_in dominates)
        let gd: Vec<f32> = got.iter().zip(&v).map(|(a, b)| a - b).collect();
        let wd: Vec<f32> = want.iter().zip(&v).map(|(a, b)| a - b).collect();
        let e = rel_l2(&gd, &wd);
        let e_out = rel_l2(&got, &want);
        println!(
            "RCA {:?}: launches unfused {before} -> fused {after}; update rel L2 {e:.2e}, output {e_out:.2e}",
            CASES[i]
        );
        assert!(e_out <= 1e-2, "output rel L2 {e_out}");
        assert!(e <= 5e-2, "update rel L2 {e}");
        assert!(after < before);
    }
}

#[test]
fn cuda_rca_ops_match_cpu() {
    let _serial = serial();
    let (cpu, be) = (CpuBackend::new(), gpu().clone());
    let t = |shape: &[usize], seed: u64| {
        let v = random(shape.iter().product(), seed, 1.0);
        (
            cpu.from_f32(shape, &v).unwrap(),
            be.from_f32(shape, &v).unwrap(),
        )
    };
    let check =
        |what: &str, g: &<CudaBackend as Backend>::Tensor, c: &<CpuBackend as Backend>::Tensor| {
            assert_eq!(g.shape(), c.shape(), "{what}");
            let e = rel_l2(&be.to_f32(g).unwrap(), &cpu.to_f32(c).unwrap());
            println!("{what}: rel L2 {e:.2e}");
            assert!(e <= 1e-2, "{what}: rel L2 {e}");
        };
    // N 5 (frames 3 do not divide it), L 7, C 40 (ragged), heads 5 of d 8 (flash, padded to 48) and
    // C 128 heads 2 of d 64 (flash, token strides)
    for (c, heads) in [(40, 5), (128, 2)] {
        let (qc, qg) = t(&[5, 7, c], 1);
        let (kc, kg) = t(&[9, c], 2);
        let (vc, vg) = t(&[9, c], 3);
        let s = 1.0 / ((c / heads) as f32).sqrt();
        check(
            &format!("rca_attention C {c} heads {heads}"),
            &be.rca_attention(&qg, &kg, &vg, heads, s).unwrap(),
            &cpu.rca_attention(&qc, &kc, &vc, heads, s).unwrap(),
        );
        let (ac, ag) = t(&[5, 7, c], 4);
        let (bc, bg) = t(&[3, c], 5);
        check(
            &format!("rca_temporal_query C {c}"),
            &be.rca_temporal_query(&qg, &ag, &bg).unwrap(),
            &cpu.rca_temporal_query(&qc, &ac, &bc).unwrap(),
        );
        let (fc, fg) = t(&[2, 7, c], 6);
        for start in [0, 2, 3] {
            check(
                &format!("rca_motion_sum C {c} rows {start}..{}", start + 2),
                &be.rca_motion_sum(&qg, &ag, Some((&fg, start))).unwrap(),
                &cpu.rca_motion_sum(&qc, &ac, Some((&fc, start))).unwrap(),
            );
        }
        check(
            &format!("rca_motion_sum C {c} no identity"),
            &be.rca_motion_sum(&qg, &ag, None).unwrap(),
            &cpu.rca_motion_sum(&qc, &ac, None).unwrap(),
        );
    }
    for (n, c, h, w) in [(3, 36, 3, 5), (1, 64, 7, 9)] {
        let (fc, fg) = t(&[n, c, h, w], 7);
        let (oc, og) = t(&[n, h * w, c], 8);
        let (hc, hg) = t(&[n, c / 4, h, w], 9);
        let (wc, wg) = t(&[1, c / 4, 1, 1], 10);
        let (bc, bg) = t(&[1], 11);
        check(
            &format!("rca_merge ({n}, {c}, {h}, {w})"),
            &be.rca_merge(&fg, &og, &hg, &wg, Some(&bg)).unwrap(),
            &cpu.rca_merge(&fc, &oc, &hc, &wc, Some(&bc)).unwrap(),
        );
        assert_eq!(
            launches(|| drop(be.rca_merge(&fg, &og, &hg, &wg, None).unwrap())),
            1
        );
    }
}
