//! The fused primitives of `Backend` (`group_norm_act`, `linear_ext`, `conv2d_ext`):
//! - CPU against the unfused composition written out here (≤ 1e-6 relative L2);
//! - the shape and trace backends (output shapes, rejected operands, ONE traced node with
//!   the epilogue's FLOPs);
//! - CUDA (bf16 storage, stand-in driver `CudaBackend::new_emulated(0)`) against the CPU
//!   (≤ 1e-2), plus the f32-storage and non-SiLU fallbacks;
//! - the fusion rules on the traced graphs of the tiny preset's pipeline: no GroupNorm
//!   output feeds a SiLU node, and no conv/linear output feeds an `add` node (bias,
//!   time embedding and residuals ride in the producer's epilogue).
//!
//! ```sh
//! cargo build -p ptx-emu-driver && cargo test --test fused_ops
//! ```

mod common;
use common::random;

use cyberhost_engine::backends::cpu::{CpuBackend, CpuTensor};
use cyberhost_engine::backends::cuda::{CudaBackend, DType};
use cyberhost_engine::backends::shape::{ShapeBackend, ShapeTensor};
use cyberhost_engine::backends::{
    Backend, Binary, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike, Unary,
};
use cyberhost_engine::graph::{Graph, Op, TraceBackend};
use cyberhost_engine::pipeline::presets::Preset;

const CPU: CpuBackend = CpuBackend;

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert!(want.iter().any(|&w| w != 0.0), "reference is all zeros");
    common::rel_l2(got, want)
}

/// Host data of one operand: shape and seeded values.
struct Data {
    shape: Vec<usize>,
    v: Vec<f32>,
}

fn data(shape: &[usize], seed: u64) -> Data {
    Data {
        shape: shape.to_vec(),
        v: random(shape.iter().product(), seed),
    }
}

fn up<B: Backend>(be: &B, d: &Data) -> B::Tensor {
    be.from_f32(&d.shape, &d.v).unwrap()
}

fn cpu(d: &Data) -> CpuTensor {
    up(&CPU, d)
}

fn vals(t: &CpuTensor) -> Vec<f32> {
    CPU.to_f32(t).unwrap()
}

// ---- CPU: fused vs the unfused composition --------------------------------------------------

#[test]
fn cpu_group_norm_act_matches_group_norm_then_act() {
    let x = cpu(&data(&[2, 12, 5, 7], 1));
    let g = cpu(&data(&[12], 2));
    let b = cpu(&data(&[12], 3));
    for act in [None, Some(Unary::Silu), Some(Unary::Gelu)] {
        let fused = CPU
            .group_norm_act(&x, 4, Some(&g), Some(&b), 1e-5, act)
            .unwrap();
        let mut want = CPU.group_norm(&x, 4, Some(&g), Some(&b), 1e-5).unwrap();
        if let Some(op) = act {
            want = CPU.unary(&want, op).unwrap();
        }
        let e = rel_l2(&vals(&fused), &vals(&want));
        assert!(e <= 1e-6, "{act:?}: rel L2 {e}");
    }
}

#[test]
fn cpu_linear_ext_matches_composition() {
    let x = cpu(&data(&[2, 5, 24], 4));
    let w = cpu(&data(&[2 * 18, 24], 5));
    let b = cpu(&data(&[2 * 18], 6));
    // GEGLU: value half first, gate half second; exact GELU.
    let fused = CPU
        .linear_ext(
            &x,
            &w,
            Some(&b),
            LinearEpilogue {
                geglu: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(fused.shape(), &[2, 5, 18]);
    let y = vals(&CPU.linear(&x, &w, Some(&b)).unwrap());
    let erf_gelu = |v: f32| {
        let t = CPU.from_f32(&[1], &[v]).unwrap();
        vals(&CPU.unary(&t, Unary::Gelu).unwrap())[0]
    };
    let want: Vec<f32> = y
        .chunks(36)
        .flat_map(|row| {
            (0..18)
                .map(|j| row[j] * erf_gelu(row[18 + j]))
                .collect::<Vec<_>>()
        })
        .collect();
    let e = rel_l2(&vals(&fused), &want);
    assert!(e <= 1e-6, "geglu: rel L2 {e}");

    // residual and scale: scale * (x·wᵀ + b + r)
    let w = cpu(&data(&[18, 24], 7));
    let b = cpu(&data(&[18], 8));
    let r = cpu(&data(&[2, 5, 18], 9));
    for (res, scale, geglu) in [(true, 1.0, false), (true, 0.5, false), (false, 0.25, false)] {
        let epi = LinearEpilogue {
            residual: res.then_some(&r),
            scale,
            geglu,
        };
        let fused = CPU.linear_ext(&x, &w, Some(&b), epi).unwrap();
        let mut want = CPU.linear(&x, &w, Some(&b)).unwrap();
        if res {
            want = CPU.binary(&want, &r, Binary::Add).unwrap();
        }
        want = CPU.affine(&want, scale, 0.0).unwrap();
        let e = rel_l2(&vals(&fused), &vals(&want));
        assert!(e <= 1e-6, "residual {res} scale {scale}: rel L2 {e}");
    }
    // GEGLU + residual
    let wg = cpu(&data(&[36, 24], 10));
    let fused = CPU
        .linear_ext(
            &x,
            &wg,
            None,
            LinearEpilogue {
                residual: Some(&r),
                scale: 1.0,
                geglu: true,
            },
        )
        .unwrap();
    let g = CPU
        .linear_ext(
            &x,
            &wg,
            None,
            LinearEpilogue {
                geglu: true,
                ..Default::default()
            },
        )
        .unwrap();
    let want = CPU.binary(&g, &r, Binary::Add).unwrap();
    assert!(rel_l2(&vals(&fused), &vals(&want)) <= 1e-6);
}

#[test]
fn cpu_conv2d_ext_matches_composition() {
    let x = cpu(&data(&[2, 6, 7, 9], 11));
    let w = cpu(&data(&[10, 6, 3, 3], 12));
    let b = cpu(&data(&[10], 13));
    let t = cpu(&data(&[2, 10], 14));
    let r = cpu(&data(&[2, 10, 7, 9], 15));
    let p = Conv2dParams::new(1, 1);
    for (temb, res, scale) in [
        (true, false, 1.0),
        (false, true, 1.0),
        (true, true, 1.0 / 1.5),
    ] {
        let epi = ConvEpilogue {
            temb: temb.then_some(&t),
            residual: res.then_some(&r),
            scale,
        };
        let fused = CPU.conv2d_ext(&x, &w, Some(&b), p, epi).unwrap();
        let mut want = CPU.conv2d(&x, &w, Some(&b), p).unwrap();
        if temb {
            let t4 = CPU.reshape(&t, &[2, 10, 1, 1]).unwrap();
            want = CPU.binary(&want, &t4, Binary::Add).unwrap();
        }
        if res {
            want = CPU.binary(&want, &r, Binary::Add).unwrap();
        }
        want = CPU.affine(&want, scale, 0.0).unwrap();
        let e = rel_l2(&vals(&fused), &vals(&want));
        assert!(
            e <= 1e-6,
            "temb {temb} residual {res} scale {scale}: rel L2 {e}"
        );
    }
    // one image (1, C_out, Ho, Wo) broadcast over the batch: the same as the broadcasting add
    let r1 = cpu(&data(&[1, 10, 7, 9], 18));
    let epi = ConvEpilogue {
        residual: Some(&r1),
        ..Default::default()
    };
    let fused = CPU.conv2d_ext(&x, &w, Some(&b), p, epi).unwrap();
    let want = CPU
        .binary(&CPU.conv2d(&x, &w, Some(&b), p).unwrap(), &r1, Binary::Add)
        .unwrap();
    assert_eq!(vals(&fused), vals(&want), "batch-broadcast residual");
    // operands of the wrong shape are errors, not broadcasts
    let bad_t = cpu(&data(&[1, 10], 16));
    let epi = ConvEpilogue {
        temb: Some(&bad_t),
        ..Default::default()
    };
    assert!(CPU.conv2d_ext(&x, &w, Some(&b), p, epi).is_err());
    for bad in [&[2, 10, 7, 8][..], &[1, 1, 7, 9], &[10, 7, 9]] {
        let bad_r = cpu(&data(bad, 17));
        let epi = ConvEpilogue {
            residual: Some(&bad_r),
            ..Default::default()
        };
        assert!(CPU.conv2d_ext(&x, &w, Some(&b), p, epi).is_err(), "{bad:?}");
    }
}

// ---- shape and trace backends ----------------------------------------------------------------

#[test]
fn shape_backend_checks_epilogue_operands() {
    let s = |d: &[usize]| ShapeTensor::new(d);
    let be = ShapeBackend;
    let (x, w) = (s(&[3, 4, 16]), s(&[20, 16]));
    let y = be
        .linear_ext(
            &x,
            &w,
            Some(&s(&[20])),
            LinearEpilogue {
                geglu: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(y.shape(), &[3, 4, 10]);
    let r = s(&[3, 4, 10]);
    assert!(be
        .linear_ext(
            &x,
            &w,
            None,
            LinearEpilogue {
                residual: Some(&r),
                scale: 1.0,
                geglu: true
            }
        )
        .is_ok());
    assert!(be
        .linear_ext(&x, &w, None, LinearEpilogue::residual(&r))
        .is_err());
    assert!(be
        .linear_ext(
            &x,
            &s(&[7, 16]),
            None,
            LinearEpilogue {
                geglu: true,
                ..Default::default()
            }
        )
        .is_err());
    let (x, w) = (s(&[2, 8, 6, 6]), s(&[4, 8, 3, 3]));
    let p = Conv2dParams::new(2, 1);
    let t = s(&[2, 4]);
    let r = s(&[2, 4, 3, 3]);
    let y = be
        .conv2d_ext(
            &x,
            &w,
            None,
            p,
            ConvEpilogue {
                temb: Some(&t),
                residual: Some(&r),
                scale: 0.5,
            },
        )
        .unwrap();
    assert_eq!(y.shape(), &[2, 4, 3, 3]);
    // a temb of the wrong channel count, a residual of the wrong spatial size
    let (bad_temb, bad_res) = (s(&[2, 3]), s(&[2, 4, 6, 6]));
    let temb = ConvEpilogue {
        temb: Some(&bad_temb),
        ..Default::default()
    };
    let residual = ConvEpilogue {
        residual: Some(&bad_res),
        ..Default::default()
    };
    for (what, epi) in [("temb", temb), ("residual", residual)] {
        assert!(be.conv2d_ext(&x, &w, None, p, epi).is_err(), "bad {what}");
    }
    assert!(be
        .group_norm_act(&x, 4, Some(&s(&[7])), None, 1e-5, Some(Unary::Silu))
        .is_err());
}

#[test]
fn trace_records_one_node_per_fused_op() {
    let tb = TraceBackend::new();
    let x = tb.zeros(&[2, 8, 6, 6]).unwrap();
    let g = tb.zeros(&[8]).unwrap();
    let b = tb.zeros(&[8]).unwrap();
    let w = tb.zeros(&[4, 8, 3, 3]).unwrap();
    let cb = tb.zeros(&[4]).unwrap();
    let t = tb.zeros(&[2, 4]).unwrap();
    let r = tb.zeros(&[2, 4, 6, 6]).unwrap();
    let h = tb
        .group_norm_act(&x, 2, Some(&g), Some(&b), 1e-5, Some(Unary::Silu))
        .unwrap();
    let p = Conv2dParams::new(1, 1);
    let y = tb
        .conv2d_ext(
            &h,
            &w,
            Some(&cb),
            p,
            ConvEpilogue {
                temb: Some(&t),
                residual: Some(&r),
                scale: 0.5,
            },
        )
        .unwrap();
    let xs = tb.zeros(&[3, 5, 16]).unwrap();
    let wl = tb.zeros(&[24, 16]).unwrap();
    let bl = tb.zeros(&[24]).unwrap();
    let rl = tb.zeros(&[3, 5, 12]).unwrap();
    let z = tb
        .linear_ext(
            &xs,
            &wl,
            Some(&bl),
            LinearEpilogue {
                residual: Some(&rl),
                scale: 1.0,
                geglu: true,
            },
        )
        .unwrap();
    let graph = tb.cut("fused", &[&y, &z]);
    assert_eq!(graph.nodes.len(), 3, "one node per fused op");
    let [gn, conv, lin] = [&graph.nodes[0], &graph.nodes[1], &graph.nodes[2]];
    assert_eq!(
        gn.op,
        Op::GroupNorm {
            groups: 2,
            affine: true,
            act: Some(Unary::Silu)
        }
    );
    assert_eq!(gn.flops, 8 * 2 * 8 * 36);
    assert!(matches!(
        conv.op,
        Op::Conv2d {
            bias: true,
            temb: true,
            residual: true,
            scaled: true,
            ..
        }
    ));
    assert_eq!(conv.inputs.len(), 5, "x, w, bias, temb, residual");
    let out = 2 * 4 * 36u64;
    assert_eq!(conv.flops, 2 * out * 8 * 9 + 4 * out);
    assert_eq!(
        conv.bytes,
        2 * (2 * 8 * 36 + 4 * 8 * 9 + 4 + 2 * 4 + out + out)
    );
    assert_eq!(
        lin.op,
        Op::Linear {
            bias: true,
            residual: true,
            geglu: true,
            scaled: false
        }
    );
    // GEMM over 24 rows, bias on 24, gelu + multiply on 12, residual on 12
    let m = 15u64;
    assert_eq!(lin.flops, 2 * m * 24 * 16 + m * 24 + 2 * m * 12 + m * 12);
    assert_eq!(graph.tensors[lin.output].shape, vec![3, 5, 12]);
}

// ---- the fusion rules on the real model graphs -----------------------------------------------

/// Whether tensor `t` of `g` is computed from tensor `target`.
fn depends_on(g: &Graph, t: usize, target: usize) -> bool {
    let mut stack = vec![t];
    let mut seen = std::collections::HashSet::new();
    while let Some(t) = stack.pop() {
        if t == target {
            return true;
        }
        if seen.insert(t) {
            if let Some(p) = g.tensors[t].producer {
                stack.extend(g.nodes[p].inputs.iter().copied());
            }
        }
    }
    false
}

/// Nodes of `g` that break the issue's fusion rules: a SiLU reading a GroupNorm output, or an
/// `add` of a conv/linear output and an operand that does not depend on it (so it could have
/// ridden in the producer's epilogue; wav2vec2's `h + gelu(pos_conv(h))` cannot).
fn unfused(g: &Graph) -> Vec<String> {
    let producer = |t: usize| g.tensors[t].producer.map(|p| &g.nodes[p]);
    let mut bad = Vec::new();
    for (i, n) in g.nodes.iter().enumerate() {
        match n.op {
            Op::Unary(Unary::Silu)
                if n.inputs
                    .iter()
                    .filter_map(|&t| producer(t))
                    .any(|p| matches!(p.op, Op::GroupNorm { .. })) =>
            {
                bad.push(format!("{} reads a group_norm", g.describe_node(i)))
            }
            Op::Binary(Binary::Add) => {
                let fusable = n.inputs.iter().enumerate().any(|(j, &t)| {
                    let other = n.inputs[1 - j.min(1)];
                    producer(t)
                        .is_some_and(|p| matches!(p.op, Op::Conv2d { .. } | Op::Linear { .. }))
                        && !depends_on(g, other, t)
                });
                if fusable {
                    let from: Vec<String> = n
                        .inputs
                        .iter()
                        .map(|&t| match g.tensors[t].producer {
                            Some(p) => g.describe_node(p),
                            None => format!("leaf {:?}", g.tensors[t].shape),
                        })
                        .collect();
                    bad.push(format!(
                        "{} reads a conv2d/linear output: {from:?}",
                        g.describe_node(i)
                    ))
                }
            }
            _ => {}
        }
    }
    bad
}

/// Whether node `i` is an `add` of a conv output and a map that only broadcasts to it over the
/// batch (`(1, C, H, W)` + `(N, C, H, W)`, N > 1): `conv2d.cu`'s residual takes it with batch
/// stride 0, so none may remain.
fn batch_broadcast_conv_add(g: &Graph, i: usize) -> bool {
    let n = &g.nodes[i];
    let out = &g.tensors[n.output].shape;
    let conv_in = n.inputs.iter().any(|&t| {
        g.tensors[t]
            .producer
            .is_some_and(|p| matches!(g.nodes[p].op, Op::Conv2d { .. }))
    });
    let other_batch1 = n.inputs.iter().any(|&t| {
        let s = &g.tensors[t].shape;
        s.len() == out.len() && s[0] == 1 && out[0] > 1 && s[1..] == out[1..]
    });
    n.op == Op::Binary(Binary::Add) && conv_in && other_batch1
}

#[test]
fn tiny_pipeline_graphs_obey_the_fusion_rules() {
    let pg = common::trace_preset(Preset::Tiny);
    let mut report = Vec::new();
    let mut broadcast = Vec::new();
    for g in pg.all() {
        let fused_gn = g
            .nodes
            .iter()
            .filter(|n| {
                matches!(
                    n.op,
                    Op::GroupNorm {
                        act: Some(Unary::Silu),
                        ..
                    }
                )
            })
            .count();
        let bad = unfused(g);
        println!(
            "{}: {} nodes, {fused_gn} group_norm+silu, {} unfused",
            g.name,
            g.nodes.len(),
            bad.len()
        );
        for b in &bad {
            println!("  {b}");
        }
        for (i, _) in g.nodes.iter().enumerate() {
            if batch_broadcast_conv_add(g, i) {
                broadcast.push(format!("{}: {}", g.name, g.describe_node(i)));
            }
        }
        report.extend(bad.into_iter().map(|b| format!("{}: {b}", g.name)));
    }
    let step = &pg.step;
    // every fused form occurs in the step
    type IsFused = fn(&Op) -> bool;
    let fused: [(&str, IsFused); 5] = [
        ("GroupNorm + SiLU", |op| {
            matches!(
                op,
                Op::GroupNorm {
                    act: Some(Unary::Silu),
                    ..
                }
            )
        }),
        ("conv + temb", |op| {
            matches!(op, Op::Conv2d { temb: true, .. })
        }),
        ("conv + residual", |op| {
            matches!(op, Op::Conv2d { residual: true, .. })
        }),
        ("linear + GEGLU", |op| {
            matches!(op, Op::Linear { geglu: true, .. })
        }),
        ("linear + residual", |op| {
            matches!(op, Op::Linear { residual: true, .. })
        }),
    ];
    for (what, is) in fused {
        assert!(
            step.nodes.iter().any(|n| is(&n.op)),
            "no {what} in the step"
        );
    }
    // The movement map p_move (1, C0, h, w) rides in conv_in's epilogue as a batch-broadcast
    // residual of the (2·(M+F), C0, h, w) output: no add after any conv broadcasts over the batch.
    assert!(
        broadcast.is_empty(),
        "batch-broadcast conv adds left: {broadcast:?}"
    );
    assert!(
        step.nodes
            .iter()
            .any(|n| matches!(n.op, Op::Conv2d { residual: true, .. })
                && n.inputs.iter().any(|&t| {
                    let (s, o) = (&step.tensors[t].shape, &step.tensors[n.output].shape);
                    s.len() == 4 && s[0] == 1 && o[0] > 1 && s[1..] == o[1..]
                })),
        "the denoiser's conv_in takes p_move as a batch-broadcast residual"
    );
    assert!(
        report.is_empty(),
        "unfused epilogues:\n{}",
        report.join("\n")
    );
}

// ---- CUDA (stand-in driver) vs CPU ------------------------------------------------------------

use common::{cuda_serial as serial, emulated_backend as gpu, emulated_launches as launches};

/// The stand-in backend in bf16 and in f32 storage, labelled.
fn storages() -> [(CudaBackend, &'static str); 2] {
    [
        (gpu().clone(), "bf16"),
        (gpu().with_storage(DType::F32), "f32"),
    ]
}

fn check(what: &str, got: &CudaTensor, want: &CpuTensor, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let g = gpu().to_f32(got).unwrap();
    let e = rel_l2(&g, &vals(want));
    println!("{what}: rel L2 {e:.2e}");
    assert!(e <= tol, "{what}: rel L2 {e} > {tol}");
}

use cyberhost_engine::backends::cuda::CudaTensor;

/// `linear_ext` of input, weight and bias `xwb` with an optional residual on `be` (the backend
/// under test, or the CPU reference).
fn linear_ext_on<B: Backend>(
    be: &B,
    xwb: [&Data; 3],
    res: Option<&Data>,
    scale: f32,
    geglu: bool,
) -> B::Tensor {
    let [x, w, b] = xwb.map(|d| up(be, d));
    let r = res.map(|r| up(be, r));
    let epi = LinearEpilogue {
        residual: r.as_ref(),
        scale,
        geglu,
    };
    be.linear_ext(&x, &w, Some(&b), epi).unwrap()
}

/// `conv2d_ext` of input, weight and bias `xwb` with optional temb and residual on `be`.
fn conv2d_ext_on<B: Backend>(
    be: &B,
    xwb: [&Data; 3],
    p: Conv2dParams,
    temb: Option<&Data>,
    res: Option<&Data>,
    scale: f32,
) -> B::Tensor {
    let [x, w, b] = xwb.map(|d| up(be, d));
    let (t, r) = (temb.map(|t| up(be, t)), res.map(|r| up(be, r)));
    let epi = ConvEpilogue {
        temb: t.as_ref(),
        residual: r.as_ref(),
        scale,
    };
    be.conv2d_ext(&x, &w, Some(&b), p, epi).unwrap()
}

#[test]
fn cuda_group_norm_act_matches_cpu() {
    let _g = serial();
    for (be, label) in storages() {
        let x = data(&[2, 8, 5, 3], 21);
        let gm = data(&[8], 22);
        let bt = data(&[8], 23);
        for act in [Some(Unary::Silu), Some(Unary::Gelu), None] {
            let got = be
                .group_norm_act(
                    &up(&be, &x),
                    4,
                    Some(&up(&be, &gm)),
                    Some(&up(&be, &bt)),
                    1e-5,
                    act,
                )
                .unwrap();
            let want = CPU
                .group_norm_act(&cpu(&x), 4, Some(&cpu(&gm)), Some(&cpu(&bt)), 1e-5, act)
                .unwrap();
            check(
                &format!("group_norm_act {label} {act:?}"),
                &got,
                &want,
                1e-2,
            );
        }
    }
}

#[test]
fn cuda_linear_ext_matches_cpu() {
    let _g = serial();
    let x = data(&[2, 5, 24], 31);
    let wg = data(&[36, 24], 32);
    let bg = data(&[36], 33);
    let w = data(&[18, 24], 34);
    let b = data(&[18], 35);
    let r = data(&[2, 5, 18], 36);
    let row = data(&[1, 18], 37);
    for (be, label) in storages() {
        let cases: [(&str, &Data, &Data, Option<&Data>, f32, bool); 5] = [
            ("geglu", &wg, &bg, None, 1.0, true),
            ("geglu+residual", &wg, &bg, Some(&r), 1.0, true),
            ("residual+scale", &w, &b, Some(&r), 0.5, false),
            ("row residual", &w, &b, Some(&row), 1.0, false),
            ("scale", &w, &b, None, 0.25, false),
        ];
        for (name, w, b, res, scale, geglu) in cases {
            let got = linear_ext_on(&be, [&x, w, b], res, scale, geglu);
            let want = linear_ext_on(&CPU, [&x, w, b], res, scale, geglu);
            check(&format!("linear_ext {label} {name}"), &got, &want, 1e-2);
        }
    }
}

#[test]
fn cuda_conv2d_ext_matches_cpu() {
    let _g = serial();
    let x = data(&[2, 6, 7, 9], 41);
    let w = data(&[10, 6, 3, 3], 42);
    let b = data(&[10], 43);
    let t = data(&[2, 10], 44);
    let r = data(&[2, 10, 7, 9], 45);
    let r2 = data(&[2, 10, 4, 5], 46);
    let wg = data(&[10, 3, 3, 3], 47);
    let r1 = data(&[1, 10, 7, 9], 48);
    for (be, label) in storages() {
        let p1 = Conv2dParams::new(1, 1);
        let p2 = Conv2dParams::new(2, 1);
        let pg = Conv2dParams {
            groups: 2,
            ..Conv2dParams::new(1, 1)
        };
        let cases: [(&str, &Data, Conv2dParams, bool, Option<&Data>, f32); 6] = [
            ("batch-broadcast residual", &w, p1, false, Some(&r1), 1.0),
            ("temb", &w, p1, true, None, 1.0),
            ("residual", &w, p1, false, Some(&r), 1.0),
            ("temb+residual+scale", &w, p1, true, Some(&r), 1.0 / 1.5),
            ("stride 2 residual", &w, p2, false, Some(&r2), 1.0),
            ("groups 2 temb+residual", &wg, pg, true, Some(&r), 0.5),
        ];
        for (name, w, p, temb, res, scale) in cases {
            let temb = temb.then_some(&t);
            let got = conv2d_ext_on(&be, [&x, w, &b], p, temb, res, scale);
            let want = conv2d_ext_on(&CPU, [&x, w, &b], p, temb, res, scale);
            check(&format!("conv2d_ext {label} {name}"), &got, &want, 1e-2);
        }
    }
}

/// The backend's convs on a shape `conv2d_sm90`'s planner splits on the stand-in's 132 SMs (one
/// column tile, 9 k tiles: `conv2d_sm90_splitk_v1_bf16` + the reduce pass, the workspace from the
/// backend's allocator): `conv2d` and `conv2d_ext` with every epilogue part against the CPU.
#[test]
fn cuda_conv2d_split_k_matches_cpu() {
    let _g = serial();
    let x = data(&[1, 128, 8, 8], 141);
    let w = data(&[64, 128, 3, 3], 142);
    let b = data(&[64], 143);
    let t = data(&[1, 64], 144);
    let r = data(&[1, 64, 8, 8], 145);
    let p = Conv2dParams::new(1, 1);
    for (be, label) in storages() {
        let got = be
            .conv2d(&up(&be, &x), &up(&be, &w), Some(&up(&be, &b)), p)
            .unwrap();
        let want = CPU.conv2d(&cpu(&x), &cpu(&w), Some(&cpu(&b)), p).unwrap();
        check(&format!("conv2d split-K {label}"), &got, &want, 1e-2);
        let got = conv2d_ext_on(&be, [&x, &w, &b], p, Some(&t), Some(&r), 0.5);
        let want = conv2d_ext_on(&CPU, [&x, &w, &b], p, Some(&t), Some(&r), 0.5);
        check(&format!("conv2d_ext split-K {label}"), &got, &want, 1e-2);
    }
}

#[test]
fn cuda_fused_ops_are_one_launch_each() {
    let _g = serial();
    let be = gpu();
    let x = up(be, &data(&[2, 8, 5, 3], 51));
    let (gm, bt) = (up(be, &data(&[8], 52)), up(be, &data(&[8], 53)));
    let n = launches(|| {
        be.group_norm_act(&x, 4, Some(&gm), Some(&bt), 1e-5, Some(Unary::Silu))
            .unwrap();
    });
    assert_eq!(n, 1, "group_norm_act(SiLU)");

    let xl = up(be, &data(&[2, 5, 24], 54));
    let wg = up(be, &data(&[36, 24], 55));
    let bg = up(be, &data(&[36], 56));
    let r = up(be, &data(&[2, 5, 18], 57));
    let n = launches(|| {
        let epi = LinearEpilogue {
            residual: Some(&r),
            scale: 0.5,
            geglu: true,
        };
        be.linear_ext(&xl, &wg, Some(&bg), epi).unwrap();
    });
    assert_eq!(n, 1, "linear_ext(GEGLU + residual + scale)");
    let row = up(be, &data(&[1, 36], 58));
    let n = launches(|| {
        be.linear_ext(&xl, &wg, Some(&bg), LinearEpilogue::residual(&row))
            .unwrap();
    });
    assert_eq!(n, 1, "linear_ext(one-row residual)");
    // f32 activations keep the fusion: one launch of the f32 entries (f32 weight, then a bf16
    // weight with f32 bias / residual).
    let f = gpu().with_storage(DType::F32);
    let (xf, wf, bf, rf) = (
        up(&f, &data(&[2, 5, 24], 54)),
        up(&f, &data(&[36, 24], 55)),
        up(&f, &data(&[36], 56)),
        up(&f, &data(&[2, 5, 18], 57)),
    );
    let wb = be.to_dtype(&wf, DType::Bf16).unwrap();
    for (w, what) in [(&wf, "f32 w"), (&wb, "bf16 w")] {
        let n = launches(|| {
            let epi = LinearEpilogue {
                residual: Some(&rf),
                scale: 0.5,
                geglu: true,
            };
            f.linear_ext(&xf, w, Some(&bf), epi).unwrap();
        });
        assert_eq!(n, 1, "f32 linear_ext(GEGLU + residual + scale), {what}");
    }

    let xc = up(be, &data(&[2, 6, 7, 9], 59));
    let wc = up(be, &data(&[10, 6, 3, 3], 60));
    let bc = up(be, &data(&[10], 61));
    let t = up(be, &data(&[2, 10], 62));
    let rc = up(be, &data(&[2, 10, 7, 9], 63));
    let n = launches(|| {
        let epi = ConvEpilogue {
            temb: Some(&t),
            residual: Some(&rc),
            scale: 0.5,
        };
        be.conv2d_ext(&xc, &wc, Some(&bc), Conv2dParams::new(1, 1), epi)
            .unwrap();
    });
    assert_eq!(n, 1, "conv2d_ext(temb + residual + scale)");
    // f32 activations: one launch of a split entry (f32 and bf16 weight)
    let f = gpu().with_storage(DType::F32);
    let (xf, wf) = (
        up(&f, &data(&[2, 6, 7, 9], 59)),
        up(&f, &data(&[10, 6, 3, 3], 60)),
    );
    let (bf, tf) = (up(&f, &data(&[10], 61)), up(&f, &data(&[2, 10], 62)));
    let rf = up(&f, &data(&[2, 10, 7, 9], 63));
    let wb = be.to_dtype(&wf, DType::Bf16).unwrap();
    for (w, what) in [(&wf, "f32 w"), (&wb, "bf16 w")] {
        let n = launches(|| {
            let epi = ConvEpilogue {
                temb: Some(&tf),
                residual: Some(&rf),
                scale: 0.5,
            };
            f.conv2d_ext(&xf, w, Some(&bf), Conv2dParams::new(1, 1), epi)
                .unwrap();
        });
        assert_eq!(n, 1, "f32 conv2d_ext(temb + residual + scale), {what}");
    }
}

/// `conv2d_concat` (an up block's skip concat with the conv writing its channels in place)
/// against the CPU's `conv2d_ext` + `concat` in both storages: bf16 is two launches (the conv
/// into the concatenated tensor, one copy of the tail), with temb + residual + scale, stride 2
/// and groups; a tail of the wrong size is an error. A concat of one tensor with itself is one
/// copy launch.
#[test]
fn cuda_conv2d_concat_matches_cpu() {
    let _g = serial();
    let x = data(&[2, 6, 7, 9], 71);
    let w = data(&[10, 6, 3, 3], 72);
    let wg = data(&[10, 3, 3, 3], 73);
    let b = data(&[10], 74);
    let t = data(&[2, 10], 75);
    let r = data(&[2, 10, 7, 9], 76);
    let tail = data(&[2, 5, 7, 9], 77);
    let tail2 = data(&[2, 3, 4, 5], 78);
    let pg = Conv2dParams {
        groups: 2,
        ..Conv2dParams::new(1, 1)
    };
    for (be, label) in storages() {
        let cases: [(&str, &Data, Conv2dParams, bool, &Data); 3] = [
            (
                "temb+residual+scale",
                &w,
                Conv2dParams::new(1, 1),
                true,
                &tail,
            ),
            ("stride 2", &w, Conv2dParams::new(2, 1), false, &tail2),
            ("groups 2 temb+residual+scale", &wg, pg, true, &tail),
        ];
        for (name, w, p, tr, tl) in cases {
            let tr = tr.then_some((&t, &r));
            let got = conv2d_concat_on(&be, [&x, w, &b], p, tr, tl);
            let want = conv2d_concat_on(&CPU, [&x, w, &b], p, tr, tl);
            check(&format!("conv2d_concat {label} {name}"), &got, &want, 1e-2);
        }
    }
    let be = gpu();
    let (xc, wc, bc) = (up(be, &x), up(be, &w), up(be, &b));
    let (tc, rc, tl) = (up(be, &t), up(be, &r), up(be, &tail));
    let epi = ConvEpilogue {
        temb: Some(&tc),
        residual: Some(&rc),
        scale: 0.5,
    };
    let n = launches(|| {
        be.conv2d_concat(&xc, &wc, Some(&bc), Conv2dParams::new(1, 1), epi, &tl)
            .unwrap();
    });
    assert_eq!(n, 2, "conv2d_concat: the conv and one copy of the tail");
    let bad = up(be, &data(&[2, 5, 7, 8], 79));
    let err = be
        .conv2d_concat(&xc, &wc, Some(&bc), Conv2dParams::new(1, 1), epi, &bad)
        .unwrap_err();
    assert!(err.to_string().contains("tail"), "{err}");
    let mut thrice = None;
    let n = launches(|| thrice = Some(be.concat(&[&xc, &xc, &xc], 1).unwrap()));
    assert_eq!(n, 1, "concat of one tensor with itself");
    let want = CPU.concat(&[&cpu(&x), &cpu(&x), &cpu(&x)], 1).unwrap();
    check("concat of one tensor 3x", &thrice.unwrap(), &want, 1e-2);
}

/// `tokens_planes_add_concat` (an up layer's output written into the next layer's skip concat)
/// is two launches on bf16: `tokens_planes_add_v2` into the concatenated tensor and one copy of
/// the tail (its values: `tests/kernels/group_norm.rs`).
#[test]
fn cuda_tokens_planes_add_concat_is_two_launches() {
    let _g = serial();
    let be = gpu();
    let (td, rd, tld) = (
        data(&[2, 20, 3, 6], 81),
        data(&[6, 6, 4, 5], 82),
        data(&[6, 5, 4, 5], 83),
    );
    let (t, r, tail) = (up(be, &td), up(be, &rd), up(be, &tld));
    let mut out = None;
    let n = launches(|| out = Some(be.tokens_planes_add_concat(&t, &r, 3, &tail).unwrap()));
    assert_eq!(
        n, 2,
        "tokens_planes_add_concat: the kernel and one copy of the tail"
    );
    let want = CPU
        .tokens_planes_add_concat(&cpu(&td), &cpu(&rd), 3, &cpu(&tld))
        .unwrap();
    check("tokens_planes_add_concat", &out.unwrap(), &want, 1e-2);
}

/// `conv2d_concat` of input, weight and bias `xwb` (with temb + residual and scale 0.5 when
/// `tr`) and `tail` on `be`.
fn conv2d_concat_on<B: Backend>(
    be: &B,
    xwb: [&Data; 3],
    p: Conv2dParams,
    tr: Option<(&Data, &Data)>,
    tail: &Data,
) -> B::Tensor {
    let [x, w, b] = xwb.map(|d| up(be, d));
    let tr = tr.map(|(t, r)| (up(be, t), up(be, r)));
    let epi = ConvEpilogue {
        temb: tr.as_ref().map(|v| &v.0),
        residual: tr.as_ref().map(|v| &v.1),
        scale: if tr.is_some() { 0.5 } else { 1.0 },
    };
    be.conv2d_concat(&x, &w, Some(&b), p, epi, &up(be, tail))
        .unwrap()
}

/// f32 attention is one flash launch (no score matrix, no split / softmax launches); a bf16
/// operand among f32 ones adds only its widening cast; `Dv != D` still composes.
#[test]
fn cuda_f32_attention_is_one_flash_launch() {
    let _serial = serial();
    let be = gpu().with_storage(DType::F32);
    let (b, h, lq, lk, d) = (1usize, 2usize, 70usize, 5usize, 80usize);
    let t = |l: usize, dd: usize, seed| {
        be.from_f32(&[b, h, l, dd], &random(b * h * l * dd, seed))
            .unwrap()
    };
    let (q, k, v) = (t(lq, d, 191), t(lk, d, 192), t(lk, d, 193));
    assert_eq!(q.dtype(), DType::F32);
    let kb = be.to_dtype(&k, DType::Bf16).unwrap();
    let v24 = t(lk, 24, 194);
    let run =
        |k: &CudaTensor, v: &CudaTensor| launches(|| drop(be.attention(&q, k, v, 0.1).unwrap()));
    assert_eq!(run(&k, &v), 1, "f32 q, k, v");
    assert_eq!(run(&kb, &v), 2, "f32 q, v with bf16 k: cast + flash");
    // composed on the f32 GEMM entries: scores GEMM, softmax, P·V GEMM (no split launches)
    assert_eq!(run(&k, &v24), 3, "Dv != D: composed");
}

/// `Attention` with self-attention's q / k / v packed on CUDA (`Backend::packs_qkv`: one linear
/// over the weights concatenated at load, `attention_heads_packed` reading q, k, v through row
/// stride 3C) against the CPU reference, which keeps the three projections: with and without
/// q/k/v biases, reference attention's extra tokens on some rows, the caller's residual, both
/// storages; two launches fewer than the same layer unpacked. Cross-attention is not packed.
#[test]
fn cuda_self_attention_projects_qkv_once() {
    use cyberhost_engine::models::attention::{Attention, AttentionConfig, ExtraKv, ExtraKvSource};
    use cyberhost_engine::var_builder::VarBuilder;
    use std::collections::HashMap;
    let _g = serial();
    let (c, heads, dim_head, n, l) = (24usize, 2usize, 12usize, 3usize, 37usize);
    let load = |gb: &CudaBackend, bias: bool, cross: Option<usize>| {
        let mut cfg = AttentionConfig::new(c, cross, heads, dim_head);
        cfg.bias = bias;
        let inner = heads * dim_head;
        let kv = cross.unwrap_or(c);
        let mut t = HashMap::new();
        let mut put = |name: &str, shape: &[usize], seed: u64| {
            let v: Vec<f32> = random(shape.iter().product(), seed)
                .iter()
                .map(|x| x * 0.3)
                .collect();
            t.insert(format!("a.{name}"), (shape.to_vec(), v));
        };
        for (i, p) in ["to_q", "to_k", "to_v"].into_iter().enumerate() {
            let din = if p == "to_q" { c } else { kv };
            put(&format!("{p}.weight"), &[inner, din], 900 + i as u64);
            if bias {
                put(&format!("{p}.bias"), &[inner], 910 + i as u64);
            }
        }
        put("to_out.0.weight", &[c, inner], 920);
        put("to_out.0.bias", &[c], 921);
        let cpu_attn = {
            let vb = VarBuilder::from_tensors(CPU, t.clone()).unwrap();
            Attention::load(&vb.pp("a"), &cfg).unwrap()
        };
        let vb = VarBuilder::from_tensors(gb.clone(), t).unwrap();
        (Attention::load(&vb.pp("a"), &cfg).unwrap(), cpu_attn)
    };
    for (gb, label) in storages() {
        for bias in [false, true] {
            let (attn, cpu_attn) = load(&gb, bias, None);
            assert!(
                attn.to_qkv.is_some(),
                "{label} bias {bias}: self-attention packed on CUDA"
            );
            assert!(
                cpu_attn.to_qkv.is_none(),
                "the CPU reference keeps to_q / to_k / to_v"
            );
            let (x, r, rf) = (
                data(&[n, l, c], 930),
                data(&[n, l, c], 931),
                data(&[1, 11, c], 932),
            );
            let (xg, rg, rfg) = (up(&gb, &x), up(&gb, &r), up(&gb, &rf));
            let (xc, rc, rfc) = (cpu(&x), cpu(&r), cpu(&rf));
            let what = format!("packed self-attention {label} bias {bias}");
            let got = attn.forward(&gb, &xg, None).unwrap();
            let want = cpu_attn.forward(&CPU, &xc, None).unwrap();
            check(&what, &got, &want, 1e-2);
            // reference attention: 11 extra tokens (projected by to_k / to_v) for rows 1..3
            let (exg, exc) = (
                ExtraKv {
                    source: ExtraKvSource::Tokens(&rfg),
                    rows: 1..3,
                },
                ExtraKv {
                    source: ExtraKvSource::Tokens(&rfc),
                    rows: 1..3,
                },
            );
            let got = attn
                .forward_residual(&gb, &xg, None, Some(&exg), Some(&rg))
                .unwrap();
            let want = cpu_attn
                .forward_residual(&CPU, &xc, None, Some(&exc), Some(&rc))
                .unwrap();
            check(&format!("{what}, extra keys, residual"), &got, &want, 1e-2);
            // the same layer unpacked: to_q, to_k, to_v as three launches
            let mut unpacked = attn.clone();
            unpacked.to_qkv = None;
            let packed_n = launches(|| drop(attn.forward(&gb, &xg, None).unwrap()));
            let unpacked_n = launches(|| drop(unpacked.forward(&gb, &xg, None).unwrap()));
            assert_eq!(
                unpacked_n,
                packed_n + 2,
                "{what}: launches {packed_n} vs {unpacked_n}"
            );
        }
        let (cross, _) = load(&gb, false, Some(16));
        assert!(cross.to_qkv.is_none(), "cross-attention is not packed");
    }
}

/// `linear_tokens_planes_add` (a motion module's exit into the next layer's skip concat): on an
/// sm_90a device two launches (`linear_sm90_v1_bf16` writing the planes + residual, one copy of
/// the tail), elsewhere the composed three (linear, `tokens_planes_add_v2`, the copy); the values
/// match the CPU's composition either way (the kernel's cases: `tests/kernels/gemm_sm90.rs`).
#[test]
fn cuda_linear_tokens_planes_add_launches() {
    let _g = serial();
    let be = gpu();
    let (td, wd, bd, rd, tld) = (
        data(&[72, 3, 32], 84),
        data(&[24, 32], 85),
        data(&[24], 86),
        data(&[3, 24, 8, 9], 87),
        data(&[3, 5, 8, 9], 88),
    );
    let [t, w, b, r, tail] = [&td, &wd, &bd, &rd, &tld].map(|d| up(be, d));
    let mut out = None;
    let n = launches(|| {
        out = Some(
            be.linear_tokens_planes_add(&t, &w, Some(&b), &r, 3, Some(&tail))
                .unwrap(),
        )
    });
    let hopper = be.device().arch() == cyberhost_kernels::Arch::Sm90a;
    assert_eq!(
        n,
        if hopper { 2 } else { 3 },
        "linear_tokens_planes_add launches"
    );
    let [tc, wc, bc, rc, tlc] = [&td, &wd, &bd, &rd, &tld].map(cpu);
    let want = CPU
        .linear_tokens_planes_add(&tc, &wc, Some(&bc), &rc, 3, Some(&tlc))
        .unwrap();
    check("linear_tokens_planes_add", &out.unwrap(), &want, 1e-2);
}
