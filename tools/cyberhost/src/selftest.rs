//! `cyberhost selftest`: every backend op, fused primitive and model-specific kernel (sampler,
//! Region Codebook Attention) on the CUDA device against the CPU reference, on seeded random
//! shapes with ragged sizes; prints a table (op, shapes, rel L2, kernel time). The time is one
//! call after a warm-up call, inputs already on the device, synchronised around the op only.
//!
//! Exit codes: 0 all within tolerance, 1 a mismatch or a failing op, 3 no GPU
//! (no CUDA driver). With `CYBERHOST_CUDA_DRIVER` pointing at the stand-in
//! driver (`docs/stand-in-driver.md`) it runs on the CPU through the PTX emulator.

use crate::args::WeightsDtype;
use anyhow::Result;
use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::cuda::{CudaBackend, NO_DRIVER_MSG};
use cyberhost_engine::backends::{
    Backend, Binary, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike, Unary,
};
use cyberhost_engine::conformance::rel_l2;
use cyberhost_weights::synthetic::normal_at;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Seed of the random shapes and values.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Relative L2 tolerance (bf16 storage, f32 accumulation).
    #[arg(long, default_value_t = 2e-2)]
    tolerance: f64,
    /// Only ops whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Print the table as JSON lines.
    #[arg(long)]
    json: bool,
    /// Linear weights as on `generate --weights-dtype`: fp8 quantises the weight of the linear
    /// cases on the device (sm_90a only) and checks them against the CPU's dequantised linear
    /// (activations and weights quantised to e4m3 the same way).
    #[arg(long, value_enum, default_value = "bf16")]
    weights_dtype: WeightsDtype,
}

impl Op {
    /// `linear`, `linear_ext`: the ops whose weight (`x[1]`) `--weights-dtype fp8` quantises.
    fn is_linear(&self) -> bool {
        matches!(self, Op::Linear | Op::LinearGeglu | Op::LinearResidual)
    }
}

/// `--weights-dtype fp8` reference inputs of a linear case: x `(.., K)` and w `(N, K)` replaced by
/// their per-row e4m3 quantisations of their bf16 values, dequantised (what the FP8 GEMM
/// multiplies).
fn fp8_inputs(inputs: &[Vec<usize>], host: &mut [Vec<f32>]) {
    use cyberhost_engine::backends::cpu::gemm_fp8_sm90::{dequantize_rows, quantize_rows};
    let k = inputs[1][1];
    if k % 8 != 0 {
        return; // the quantiser takes rows of whole 16 bytes: such a linear stays bf16
    }
    for v in host.iter_mut().take(2) {
        // the device quantises the bf16 values it stores (round to nearest even first)
        for x in v.iter_mut() {
            let b = x.to_bits();
            *x = f32::from_bits((b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) << 16);
        }
        let rows = v.len() / k.max(1);
        let (q, s) = quantize_rows(v, rows, k);
        *v = dequantize_rows(&q, &s, rows, k);
    }
}

/// One op under test, applied to its inputs on any backend.
#[derive(Clone, Debug)]
enum Op {
    Conv2d(Conv2dParams),
    Linear,
    Matmul,
    Attention,
    GroupNorm(usize),
    GroupNormSilu(usize),
    LayerNorm,
    Softmax,
    Unary(Unary),
    Binary(Binary),
    Permute(Vec<usize>),
    Concat(usize),
    Upsample(usize, usize),
    Pad2d,
    MaxPool,
    MeanDim(usize),
    /// Fused GroupNorm + SiLU (one launch).
    GroupNormAct(usize),
    /// `linear_ext` with GEGLU (w has 2N rows).
    LinearGeglu,
    /// `linear_ext` with a residual and an output scale.
    LinearResidual,
    /// `conv2d_ext` 3×3 with time-embedding add, residual and output scale.
    Conv2dEpilogue,
    /// `conv2d_ext` 3×3 with a (1, C, H, W) residual broadcast over the batch.
    Conv2dBroadcastResidual,
    /// `timestep_embedding` (dim = the second input's length, flip sin/cos, shift 0).
    TimestepEmbedding,
    /// `cfg_ddim_step` (frame offset 1).
    CfgDdim,
    RcaAttention(usize),
    RcaTemporalQuery,
    RcaMotionSum,
    RcaMerge,
}

/// How a case's input values are drawn.
#[derive(Clone, Copy, Debug)]
enum Values {
    Normal,
    /// Timesteps in [0, 1000).
    Timesteps,
    /// A valid CFG + DDIM coefficient vector.
    DdimCoeffs,
}

impl Op {
    fn run<B: Backend>(&self, be: &B, x: &[B::Tensor]) -> Result<B::Tensor> {
        match self {
            Op::Conv2d(p) => be.conv2d(&x[0], &x[1], Some(&x[2]), *p),
            Op::Linear => be.linear(&x[0], &x[1], Some(&x[2])),
            Op::Matmul => be.matmul(&x[0], &x[1]),
            Op::Attention => {
                let d = x[0].shape()[3] as f32;
                be.attention(&x[0], &x[1], &x[2], 1.0 / d.sqrt())
            }
            Op::GroupNorm(g) => be.group_norm(&x[0], *g, Some(&x[1]), Some(&x[2]), 1e-5),
            Op::GroupNormSilu(g) => {
                let y = be.group_norm(&x[0], *g, Some(&x[1]), Some(&x[2]), 1e-5)?;
                be.unary(&y, Unary::Silu)
            }
            Op::LayerNorm => be.layer_norm(&x[0], Some(&x[1]), Some(&x[2]), 1e-5),
            Op::Softmax => be.softmax_last(&x[0]),
            Op::Unary(u) => be.unary(&x[0], *u),
            Op::Binary(b) => be.binary(&x[0], &x[1], *b),
            Op::Permute(d) => be.permute(&x[0], d),
            Op::Concat(d) => be.concat(&[&x[0], &x[1]], *d),
            Op::Upsample(h, w) => be.upsample_nearest2d(&x[0], *h, *w),
            Op::Pad2d => be.pad2d(&x[0], 1, 0, 1, 0),
            Op::MaxPool => be.max_pool2d(&x[0], 3, 2, 1),
            Op::MeanDim(d) => be.mean_dim(&x[0], *d),
            Op::GroupNormAct(g) => {
                be.group_norm_act(&x[0], *g, Some(&x[1]), Some(&x[2]), 1e-5, Some(Unary::Silu))
            }
            Op::LinearGeglu => be.linear_ext(
                &x[0],
                &x[1],
                Some(&x[2]),
                LinearEpilogue {
                    geglu: true,
                    ..Default::default()
                },
            ),
            Op::LinearResidual => be.linear_ext(
                &x[0],
                &x[1],
                Some(&x[2]),
                LinearEpilogue {
                    residual: Some(&x[3]),
                    scale: 0.7,
                    geglu: false,
                },
            ),
            Op::Conv2dEpilogue => conv3x3_ext(be, x, Some(&x[3]), &x[4], 0.5),
            Op::Conv2dBroadcastResidual => conv3x3_ext(be, x, None, &x[3], 1.0),
            Op::TimestepEmbedding => be.timestep_embedding(&x[0], x[1].shape()[0], true, 0.0),
            Op::CfgDdim => be.cfg_ddim_step(&x[0], &x[1], 1, &x[2]),
            Op::RcaAttention(heads) => {
                let d = (x[0].shape()[2] / heads) as f32;
                be.rca_attention(&x[0], &x[1], &x[2], *heads, 1.0 / d.sqrt())
            }
            Op::RcaTemporalQuery => be.rca_temporal_query(&x[0], &x[1], &x[2]),
            Op::RcaMotionSum => be.rca_motion_sum(&x[0], &x[1], Some((&x[2], 1))),
            Op::RcaMerge => be.rca_merge(&x[0], &x[1], &x[2], &x[3], Some(&x[4])),
        }
    }
}

/// `conv2d_ext` 3×3 (stride 1, pad 1) of `x[0]` with weight `x[1]` and bias `x[2]`, then the
/// epilogue: `temb` added, `residual` added, output scaled by `scale`.
fn conv3x3_ext<B: Backend>(
    be: &B,
    x: &[B::Tensor],
    temb: Option<&B::Tensor>,
    residual: &B::Tensor,
    scale: f32,
) -> Result<B::Tensor> {
    let epilogue = ConvEpilogue {
        temb,
        residual: Some(residual),
        scale,
    };
    be.conv2d_ext(&x[0], &x[1], Some(&x[2]), Conv2dParams::new(1, 1), epilogue)
}

struct Case {
    name: String,
    op: Op,
    inputs: Vec<Vec<usize>>,
    /// Per input (missing = normal).
    values: Vec<Values>,
}

/// Sizes drawn from a small seeded range, so ragged edges show up.
struct Dice {
    seed: u64,
    n: u64,
}

impl Dice {
    fn pick(&mut self, lo: usize, hi: usize) -> usize {
        self.n += 1;
        let u = normal_at(self.seed, 0x5e1f, self.n).abs() as f64;
        lo + ((u * 1000.0) as usize) % (hi - lo + 1)
    }
}

fn cases(seed: u64) -> Vec<Case> {
    let mut d = Dice { seed, n: 0 };
    let mut v = Vec::new();
    let mut add_with = |name: &str, op: Op, inputs: Vec<Vec<usize>>, values: Vec<Values>| {
        v.push(Case {
            name: name.to_string(),
            op,
            inputs,
            values,
        })
    };
    let mut add = |name: &str, op: Op, inputs: Vec<Vec<usize>>| add_with(name, op, inputs, vec![]);
    let (h, w) = (d.pick(5, 12), d.pick(5, 12));
    let (ci, co) = (d.pick(3, 24), d.pick(3, 24));
    // a 3x3 convolution's input `x`, its weight and bias, then `more` inputs
    let conv3 = |x: [usize; 4], more: &[Vec<usize>]| {
        [
            vec![x.to_vec(), vec![co, ci, 3, 3], vec![co]],
            more.to_vec(),
        ]
        .concat()
    };
    add(
        "conv2d_3x3_s1",
        Op::Conv2d(Conv2dParams::new(1, 1)),
        conv3([2, ci, h, w], &[]),
    );
    add(
        "conv2d_3x3_s2",
        Op::Conv2d(Conv2dParams::new(2, 1)),
        conv3([1, ci, h, w], &[]),
    );
    add(
        "conv2d_1x1",
        Op::Conv2d(Conv2dParams::new(1, 0)),
        vec![vec![2, ci, h, w], vec![co, ci, 1, 1], vec![co]],
    );
    let (m, k, n) = (d.pick(7, 70), d.pick(8, 72), d.pick(5, 40));
    add("linear", Op::Linear, vec![vec![m, k], vec![n, k], vec![n]]);
    add("matmul", Op::Matmul, vec![vec![2, m, k], vec![2, k, n]]);
    for dh in [40, 64, 80, 128, 160] {
        let (lq, lk) = (d.pick(5, 40), d.pick(20, 80));
        add(
            &format!("attention_d{dh}"),
            Op::Attention,
            vec![vec![1, 2, lq, dh], vec![1, 2, lk, dh], vec![1, 2, lk, dh]],
        );
    }
    add(
        "attention_short_kv",
        Op::Attention,
        vec![vec![2, 2, 33, 40], vec![2, 2, 4, 40], vec![2, 2, 4, 40]],
    );
    let c = 4 * d.pick(2, 8);
    // x (N, C, H, W), per-channel weight and bias
    let group_norm_shapes = vec![vec![2, c, h, w], vec![c], vec![c]];
    add("group_norm", Op::GroupNorm(4), group_norm_shapes.clone());
    add(
        "group_norm_silu",
        Op::GroupNormSilu(4),
        group_norm_shapes.clone(),
    );
    add(
        "layer_norm",
        Op::LayerNorm,
        vec![vec![m, k], vec![k], vec![k]],
    );
    add("softmax", Op::Softmax, vec![vec![m, n]]);
    for (nm, u) in [
        ("silu", Unary::Silu),
        ("gelu", Unary::Gelu),
        ("sigmoid", Unary::Sigmoid),
    ] {
        add(nm, Op::Unary(u), vec![vec![m, n]]);
    }
    add(
        "add_broadcast",
        Op::Binary(Binary::Add),
        vec![vec![2, c, h, w], vec![1, c, 1, 1]],
    );
    add("mul", Op::Binary(Binary::Mul), vec![vec![m, n], vec![m, n]]);
    add(
        "permute",
        Op::Permute(vec![0, 2, 3, 1]),
        vec![vec![2, c, h, w]],
    );
    add(
        "concat",
        Op::Concat(1),
        vec![vec![2, c, h, w], vec![2, 3, h, w]],
    );
    add(
        "upsample_nearest2d",
        Op::Upsample(2 * h, 2 * w),
        vec![vec![1, c, h, w]],
    );
    add("pad2d", Op::Pad2d, vec![vec![1, c, h, w]]);
    add("max_pool2d", Op::MaxPool, vec![vec![1, c, h, w]]);
    add("mean_dim", Op::MeanDim(1), vec![vec![2, c, h * w]]);

    // fused primitives
    add(
        "group_norm_act_silu",
        Op::GroupNormAct(4),
        group_norm_shapes.clone(),
    );
    add(
        "linear_geglu",
        Op::LinearGeglu,
        vec![vec![m, k], vec![2 * n, k], vec![2 * n]],
    );
    add(
        "linear_residual_scale",
        Op::LinearResidual,
        vec![vec![m, k], vec![n, k], vec![n], vec![m, n]],
    );
    add(
        "conv2d_temb_residual",
        Op::Conv2dEpilogue,
        conv3([2, ci, h, w], &[vec![2, co], vec![2, co, h, w]]),
    );
    add(
        "conv2d_bcast_residual",
        Op::Conv2dBroadcastResidual,
        conv3([3, ci, h, w], &[vec![1, co, h, w]]),
    );

    // sampler
    let dim = 2 * d.pick(8, 96) + 1;
    v.push(Case {
        name: "timestep_embedding".into(),
        op: Op::TimestepEmbedding,
        inputs: vec![vec![d.pick(1, 5)], vec![dim]],
        values: vec![Values::Timesteps],
    });
    let frames = d.pick(2, 6);
    v.push(Case {
        name: "cfg_ddim_step".into(),
        op: Op::CfgDdim,
        inputs: vec![
            vec![2, 4, frames + 2, h, w],
            vec![1, 4, frames, h, w],
            vec![8],
        ],
        values: vec![Values::Normal, Values::Normal, Values::DdimCoeffs],
    });

    // Region Codebook Attention
    let (rows, l, cb, fr) = (d.pick(2, 6), h * w, d.pick(3, 9), d.pick(2, 5));
    let cc = 64 * d.pick(1, 2);
    let mut add = |name: &str, op: Op, inputs: Vec<Vec<usize>>| {
        v.push(Case {
            name: name.to_string(),
            op,
            inputs,
            values: vec![],
        })
    };
    add(
        "rca_attention",
        Op::RcaAttention(cc / 64),
        vec![vec![rows, l, cc], vec![cb, cc], vec![cb, cc]],
    );
    add(
        "rca_temporal_query",
        Op::RcaTemporalQuery,
        vec![vec![fr * 2, l, cc], vec![fr * 2, l, cc], vec![fr, cc]],
    );
    add(
        "rca_motion_sum",
        Op::RcaMotionSum,
        vec![
            vec![rows + 1, l, cc],
            vec![rows + 1, l, cc],
            vec![rows, l, cc],
        ],
    );
    add(
        "rca_merge",
        Op::RcaMerge,
        vec![
            vec![rows, cc, h, w],
            vec![rows, h * w, cc],
            vec![rows, cc / 4, h, w],
            vec![1, cc / 4, 1, 1],
            vec![1],
        ],
    );
    v
}

/// Host values of input `i` of a case.
fn values(seed: u64, stream: u64, shape: &[usize], kind: Values) -> Vec<f32> {
    match kind {
        Values::Normal => random(seed, stream, shape),
        Values::Timesteps => random(seed, stream, shape)
            .iter()
            .map(|u| ((u.abs() * 400.0) % 1000.0).floor())
            .collect(),
        Values::DdimCoeffs => {
            // guidance 3.5 at ᾱ_t = 0.3 → ᾱ_prev = 0.6, ε-prediction, clip_sample to [-1, 1]
            let (a, ap) = (0.3f32, 0.6f32);
            vec![
                3.5,
                a.sqrt(),
                (1.0 - a).sqrt(),
                ap.sqrt(),
                (1.0 - ap).sqrt(),
                0.0,
                -1.0,
                1.0,
            ]
        }
    }
}

fn random(seed: u64, stream: u64, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    (0..n as u64).map(|i| normal_at(seed, stream, i)).collect()
}

pub fn run(a: Args) -> Result<ExitCode> {
    let gpu = match CudaBackend::new(0) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("selftest: no GPU available: {e:#}");
            if !format!("{e:#}").contains(NO_DRIVER_MSG) {
                eprintln!("({NO_DRIVER_MSG})");
            }
            return Ok(ExitCode::from(3));
        }
    };
    a.weights_dtype.apply(&gpu)?;
    let fp8 = a.weights_dtype == WeightsDtype::Fp8;
    let cpu = CpuBackend::new();
    let device = format!("{:?}", gpu.device());
    if !a.json {
        println!("device: {device}");
        println!(
            "{:<22} {:<34} {:>10} {:>10}  result",
            "op", "input shapes", "rel_l2", "time_ms"
        );
    }
    let mut failed = 0;
    for (ci, case) in cases(a.seed).into_iter().enumerate() {
        if a.filter
            .as_ref()
            .is_some_and(|f| !case.name.contains(f.as_str()))
        {
            continue;
        }
        let host: Vec<Vec<f32>> = case
            .inputs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let kind = case.values.get(i).copied().unwrap_or(Values::Normal);
                values(a.seed, (ci * 16 + i) as u64, s, kind)
            })
            .collect();
        let mut ref_host = host.clone();
        if fp8 && case.op.is_linear() {
            fp8_inputs(&case.inputs, &mut ref_host);
        }
        let reference = (|| -> Result<Vec<f32>> {
            let xs = case
                .inputs
                .iter()
                .zip(&ref_host)
                .map(|(s, d)| cpu.from_f32(s, d))
                .collect::<Result<Vec<_>>>()?;
            cpu.to_f32(&case.op.run(&cpu, &xs)?)
        })();
        let mut ms = f64::NAN;
        let got = (|| -> Result<Vec<f32>> {
            let xs = case
                .inputs
                .iter()
                .zip(&host)
                .map(|(s, d)| {
                    // the sampler's latents and timesteps are f32 on the device; the rest bf16
                    if matches!(case.op, Op::CfgDdim | Op::TimestepEmbedding) {
                        gpu.from_f32_full(s, d)
                    } else {
                        gpu.from_f32(s, d)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            if case.op.is_linear() {
                gpu.prepare_linear_weight(&xs[1])?;
            }
            // warm-up on a GPU (module load, first touch); the emulator's times mean nothing
            if !gpu.device().is_emulated() {
                drop(case.op.run(&gpu, &xs)?);
                gpu.device().synchronize()?;
            }
            let start = Instant::now();
            let y = case.op.run(&gpu, &xs)?;
            gpu.device().synchronize()?;
            ms = start.elapsed().as_secs_f64() * 1e3;
            gpu.to_f32(&y)
        })();
        let shapes = case
            .inputs
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (err, verdict) = match (&reference, &got) {
            (Ok(r), Ok(g)) => {
                let e = rel_l2(g, r);
                (
                    e,
                    if e <= a.tolerance {
                        "ok".to_string()
                    } else {
                        "FAIL".to_string()
                    },
                )
            }
            (_, Err(e)) | (Err(e), _) => (f64::NAN, format!("FAIL: {e:#}")),
        };
        if verdict != "ok" {
            failed += 1;
        }
        if a.json {
            println!(
                "{}",
                serde_json::json!({"op": case.name, "inputs": case.inputs, "rel_l2": err, "time_ms": ms, "result": verdict, "device": device})
            );
        } else {
            println!(
                "{:<22} {:<34} {:>10.3e} {:>10.2}  {verdict}",
                case.name, shapes, err, ms
            );
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
