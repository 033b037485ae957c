//! `cyberhost plan [--preset tiny|paper | --weights DIR] [--size WxH] [--activations bf16|f32]
//! [--json]`: trace one run on the tracing backend (shape-only weights: nothing is allocated),
//! plan every graph's activations into one arena, and print the cost of one CFG step per op
//! class with its H100 roofline floor (989 TFLOP/s dense bf16, 3.35 TB/s), plus the one-off
//! graphs. `--activations` is the storage of the step's activations, as the CUDA backend's
//! flag of that name (f32: 4-byte activations and the split passes of f32 products); the JSON
//! lists every arena buffer with the op that writes it.

use crate::args::{parse_size, Activations, WeightsArgs};
use anyhow::Result;
use cyberhost_engine::graph::pipeline::{trace_pipeline_as, PipelineGraphs};
use cyberhost_engine::graph::Graph;
use cyberhost_engine::planner::{plan, PlanKey, PlanReport, H100_BF16_FLOPS, H100_HBM_BYTES_PER_S};
use serde_json::json;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: WeightsArgs,
    /// Output size WxH (default: the checkpoint's).
    #[arg(long, value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// Storage of the denoiser step's activations, as `generate --activations`: bf16 (default)
    /// or f32 (4-byte activations, f32 products as 2-3 bf16 tensor-core passes). Weights are
    /// bf16 and the one-off graphs bf16 either way.
    #[arg(long, value_enum, default_value_t = Activations::Bf16)]
    activations: Activations,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

fn report(pg: &PipelineGraphs, g: &Graph) -> PlanReport {
    let geo = pg.geometry;
    let key = PlanKey {
        model: pg.label.clone(),
        graph: g.name.clone(),
        width: geo.width,
        height: geo.height,
        frames: geo.motion + geo.frames,
        batch: 2,
    };
    PlanReport::new(key, g, &plan(g))
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

pub fn run(a: Args) -> Result<ExitCode> {
    let source = a.weights.source()?;
    let activations = a.activations.dtype();
    let pg = trace_pipeline_as(&source, a.size, activations)?;
    let geo = pg.geometry;
    let step = report(&pg, &pg.step);
    let one_off: Vec<PlanReport> = [
        &pg.vae_encode,
        &pg.reference,
        &pg.audio,
        &pg.clip,
        &pg.vae_decode,
    ]
    .iter()
    .map(|g| report(&pg, g))
    .collect();
    let params: u64 = pg.params.iter().map(|(_, n)| n).sum();

    if a.json {
        let out = json!({
            "model": pg.label,
            "width": geo.width,
            "height": geo.height,
            "frames_per_clip": geo.frames,
            "motion_frames": geo.motion,
            "steps": geo.steps,
            "activations": activations.suffix(),
            "parameters": pg.params.iter().map(|(c, n)| json!({"component": c, "count": n})).collect::<Vec<_>>(),
            "h100": {"bf16_flops": H100_BF16_FLOPS, "hbm_bytes_per_s": H100_HBM_BYTES_PER_S},
            "step": step,
            "one_off": one_off,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }

    println!(
        "{}: {}x{}, {}+{} frames (F+M), CFG batch 2, {} steps; {:.3} G parameters ({:.2} GiB at bf16, never allocated here)",
        pg.label,
        geo.width,
        geo.height,
        geo.frames,
        geo.motion,
        geo.steps,
        params as f64 / 1e9,
        gib(params * 2)
    );
    println!();
    println!(
        "One CFG step (one UNetMotionModel forward on 2·(M+F) = {} latent frames + guidance + DDIM): {} ops",
        2 * (geo.frames + geo.motion),
        step.ops
    );
    println!("| op class | ops | GFLOP | GB moved | FLOP/byte | H100 floor (ms) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for c in &step.classes {
        println!(
            "| {} | {} | {:.1} | {:.2} | {:.1} | {:.3} |",
            c.class.name(),
            c.ops,
            c.flops as f64 / 1e9,
            c.bytes as f64 / 1e9,
            c.intensity,
            c.h100_floor_s * 1e3
        );
    }
    println!(
        "| **total** | {} | {:.1} | {:.2} | {:.1} | {:.3} |",
        step.ops,
        step.flops as f64 / 1e9,
        step.bytes as f64 / 1e9,
        step.flops as f64 / step.bytes.max(1) as f64,
        step.h100_floor_s * 1e3
    );
    println!();
    println!("The same step per CUDA kernel (kernels/cuda/<kernel>.cu; views excluded):");
    println!("| kernel | launches | GFLOP | GB moved | FLOP/byte | H100 floor (ms) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for k in &step.kernels {
        println!(
            "| `{}` | {} | {:.2} | {:.3} | {:.1} | {:.3} |",
            k.kernel,
            k.ops,
            k.flops as f64 / 1e9,
            k.bytes as f64 / 1e9,
            k.intensity,
            k.h100_floor_s * 1e3
        );
    }
    println!();
    if step.work_flops != step.flops {
        println!(
            "Work executed with the f32 split passes: {:.1} GFLOP ({:.2}x the arithmetic); the floors use it.",
            step.work_flops as f64 / 1e9,
            step.work_flops as f64 / step.flops.max(1) as f64
        );
    }
    println!(
        "Floor per op (no overlap between ops): {:.3} ms; per clip ({} steps): {:.3} s.",
        step.h100_floor_per_op_s * 1e3,
        geo.steps,
        step.h100_floor_per_op_s * geo.steps as f64
    );
    println!(
        "Weights read per step {:.2} GiB (bf16), inputs {:.2} GiB ({}).",
        gib(step.weight_bytes),
        gib(step.input_bytes),
        step.activations
    );
    println!();
    println!(
        "Activation memory of one step ({}, 256-byte aligned; every buffer in --json):",
        step.activations
    );
    println!(
        "- planned arena (peak): {:.3} GiB ({} B)",
        gib(step.peak_bytes),
        step.peak_bytes
    );
    println!(
        "- naive sum: {:.3} GiB ({} B), {:.1}x the arena",
        gib(step.naive_bytes),
        step.naive_bytes,
        step.naive_bytes as f64 / step.peak_bytes.max(1) as f64
    );
    println!(
        "- largest live set: {:.3} GiB ({} B, {} tensors) at op {}",
        gib(step.max_live.aligned_bytes),
        step.max_live.aligned_bytes,
        step.max_live.count,
        step.max_live_op
    );
    if let Some(b) = step.buffers.first() {
        println!(
            "- largest buffer: {:.1} MiB, written by {}",
            b.bytes as f64 / (1 << 20) as f64,
            b.op
        );
    }
    println!();
    println!("One-off graphs (audio, clip and decode: per clip):");
    println!("| graph | ops | GFLOP | GB moved | H100 floor (ms) | arena (MiB) | naive (MiB) | largest live set at |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for r in &one_off {
        println!(
            "| {} | {} | {:.1} | {:.2} | {:.3} | {:.1} | {:.1} | {} |",
            r.key.graph,
            r.ops,
            r.flops as f64 / 1e9,
            r.bytes as f64 / 1e9,
            r.h100_floor_s * 1e3,
            r.peak_bytes as f64 / (1 << 20) as f64,
            r.naive_bytes as f64 / (1 << 20) as f64,
            r.max_live_op
        );
    }
    Ok(ExitCode::SUCCESS)
}
