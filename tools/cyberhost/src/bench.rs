//! `cyberhost bench`: time sampler steps of a preset (or a weights dir) on a
//! backend, next to the step's exact FLOPs, bytes and planned arena from the
//! tracing backend, and the device's roofline limits.
//!
//! On a GPU: per-step wall time (the stream synchronised after each step),
//! achieved TFLOP/s and GB/s against the card's peaks. On the stand-in driver
//! (PTX emulator) the times mean nothing and are reported as `null`; kernel
//! launches, allocations and copies per step are counted by the driver.

use crate::args::{parse_size, weights_source};
use anyhow::Result;
use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::cuda::{CudaBackend, DriverStats};
use cyberhost_engine::backends::Backend;
use cyberhost_engine::error::UserError;
use cyberhost_engine::graph::pipeline::trace_pipeline;
use cyberhost_engine::pipeline::audio::load_wav_bytes;
use cyberhost_engine::pipeline::checkpoint::WeightsSource;
use cyberhost_engine::pipeline::conditions::PoseFile;
use cyberhost_engine::pipeline::generate::Request;
use cyberhost_engine::pipeline::image::decode_image;
use cyberhost_engine::planner::plan;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const IMAGE: &[u8] = include_bytes!("../../../engine/assets/reference.png");
const SPEECH: &[u8] = include_bytes!("../../../engine/assets/speech.wav");

#[derive(clap::Args)]
pub struct Args {
    /// tiny or paper (default tiny).
    #[arg(long, conflicts_with = "weights")]
    preset: Option<String>,
    /// A checkpoint directory (spec layout).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Timed sampler steps.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Untimed warm-up steps (module loads, caches).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Output size WxH (default: the checkpoint's).
    #[arg(long, value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Peak dense bf16 tensor FLOP/s and memory bandwidth of known cards (datasheets, SXM parts).
fn device_limits(name: &str) -> Option<(&'static str, f64, f64)> {
    let n = name.to_ascii_uppercase();
    if n.contains("H200") {
        Some(("H200", 989e12, 4.8e12))
    } else if n.contains("H100") && !n.contains("PTX-EMU") {
        Some(("H100", 989e12, 3.35e12))
    } else if n.contains("A100") {
        Some(("A100", 312e12, 2.039e12))
    } else {
        None
    }
}

/// What the timing loop needs from a backend besides the ops.
trait Bench: Backend {
    fn sync(&self) -> Result<()>;
    fn stats(&self) -> Option<DriverStats>;
    fn device_name(&self) -> String;
    fn emulated(&self) -> bool;
}

impl Bench for CpuBackend {
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    fn stats(&self) -> Option<DriverStats> {
        None
    }
    fn device_name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }
    fn emulated(&self) -> bool {
        false
    }
}

impl Bench for CudaBackend {
    fn sync(&self) -> Result<()> {
        self.device().synchronize()
    }
    fn stats(&self) -> Option<DriverStats> {
        self.device().emulator_stats()
    }
    fn device_name(&self) -> String {
        self.device().name().to_string()
    }
    fn emulated(&self) -> bool {
        self.device().is_emulated()
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.steps == 0 {
        return Err(UserError::new("--steps 0: time at least one step").into());
    }
    let source = weights_source(&a.weights, &a.preset)?;
    match a.backend.as_str() {
        "cpu" => bench(CpuBackend::new(), &source, &a),
        "cuda" => {
            let be = CudaBackend::new(0)
                .map_err(|e| UserError::new(format!("--backend cuda: {e:#}")))?;
            bench(be, &source, &a)
        }
        other => Err(UserError::new(format!("--backend {other}: use `cpu` or `cuda`")).into()),
    }
}

fn bench<B: Bench>(be: B, source: &WeightsSource, a: &Args) -> Result<ExitCode> {
    // Exact cost of one step from the tracing backend (no weights allocated).
    let graphs = trace_pipeline(source, a.size)?;
    let step_graph = &graphs.step;
    let step_plan = plan(step_graph);
    let (flops, bytes) = (step_graph.total_flops(), step_graph.total_bytes());

    let comps = source.load(&be)?;
    let img = decode_image(IMAGE, "bundled reference.png")?;
    let mut speech = load_wav_bytes(SPEECH, "bundled speech.wav")?;
    let g0 = comps.geometry(&Request {
        size: a.size,
        ..Default::default()
    })?;
    // One clip of audio is enough for the step loop.
    let keep = ((g0.frames as f64 / g0.fps) * 16_000.0).ceil() as usize;
    speech.samples.truncate(keep.max(1));
    speech.seconds = speech.samples.len() as f64 / 16_000.0;
    let req = Request {
        size: a.size,
        steps: Some(a.warmup + a.steps),
        ..Default::default()
    };
    let p = comps.prepare(&be, &img, &speech, &PoseFile::default(), &req, &mut |_| {})?;
    let sched = comps.scheduler(a.warmup + a.steps)?;
    let context = comps.clip_context(&be, &p, 0)?;
    let motion = comps.initial_motion(&be, &p)?;
    let mut z = comps.clip_noise(&be, &p, 0, 0)?;
    be.sync()?;

    let mut times = Vec::new();
    let mut counted: Option<(DriverStats, DriverStats)> = None;
    for (i, &t) in sched.timesteps().iter().enumerate() {
        let before = be.stats();
        let start = Instant::now();
        let x = be.concat(&[&motion, &z], 2)?;
        let eps = comps.guided_eps(&be, &p, &x, t, &context, true)?;
        let next = sched.step(&be.to_f32(&eps)?, t, &be.to_f32(&z)?, 0.0, None)?;
        z = be.from_f32(
            &[
                1,
                4,
                p.geometry.frames,
                p.geometry.latent_h,
                p.geometry.latent_w,
            ],
            &next,
        )?;
        be.sync()?;
        let dt = start.elapsed().as_secs_f64();
        if i >= a.warmup {
            times.push(dt);
            if let (Some(b), Some(after)) = (before, be.stats()) {
                counted.get_or_insert((b, after)).1 = after;
            }
        }
    }
    let timed = !be.emulated();
    times.sort_by(|x, y| x.total_cmp(y));
    let median = times[times.len() / 2];
    let per_step = |f: fn(&DriverStats) -> u64| {
        counted.map(|(b, e)| (f(&e) - f(&b)) as f64 / times.len() as f64)
    };
    let launches = per_step(|s| s.kernel_launches);
    let allocs = per_step(|s| s.alloc_calls);
    let copies = per_step(|s| s.memcpy_calls);
    let name = be.device_name();
    let limits = device_limits(&name);
    let tflops = timed.then(|| flops as f64 / median / 1e12);
    let gbs = timed.then(|| bytes as f64 / median / 1e9);

    if a.json {
        let out = json!({
            "model": graphs.label, "backend": be.name(), "device": name, "emulated": be.emulated(),
            "width": p.geometry.width, "height": p.geometry.height,
            "frames": p.geometry.motion + p.geometry.frames, "batch": 2,
            "warmup_steps": a.warmup, "timed_steps": times.len(),
            "step_seconds": if timed { json!({"median": median, "min": times[0], "max": times[times.len() - 1], "all": times}) } else { serde_json::Value::Null },
            "launches_per_step": launches, "allocations_per_step": allocs, "memcpys_per_step": copies,
            "ops_per_step": step_graph.nodes.len(),
            "flops_per_step": flops, "bytes_per_step": bytes,
            "arena_bytes": step_plan.peak_bytes, "naive_activation_bytes": step_plan.naive_bytes,
            "achieved_tflops": tflops, "achieved_gbs": gbs,
            "device_limits": limits.map(|(n, f, b)| json!({"card": n, "bf16_flops": f, "bytes_per_s": b})),
            "per_kernel_times": serde_json::Value::Null,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} on {} ({}), {}x{}, {}+{} frames, CFG batch 2",
        graphs.label,
        be.name(),
        name,
        p.geometry.width,
        p.geometry.height,
        p.geometry.frames,
        p.geometry.motion
    );
    println!(
        "per step: {} ops, {:.3} GFLOP, {:.3} GB moved; planned arena {:.1} MiB (naive {:.1} MiB)",
        step_graph.nodes.len(),
        flops as f64 / 1e9,
        bytes as f64 / 1e9,
        step_plan.peak_bytes as f64 / (1 << 20) as f64,
        step_plan.naive_bytes as f64 / (1 << 20) as f64
    );
    if timed {
        println!(
            "step time: median {:.3} ms (min {:.3}, max {:.3}) over {} steps after {} warm-up",
            median * 1e3,
            times[0] * 1e3,
            times[times.len() - 1] * 1e3,
            times.len(),
            a.warmup
        );
        println!(
            "achieved: {:.2} TFLOP/s, {:.1} GB/s",
            tflops.unwrap_or(0.0),
            gbs.unwrap_or(0.0)
        );
        if let Some((card, f, b)) = limits {
            println!("{card} limits: {:.0} TFLOP/s bf16, {:.2} TB/s → {:.1} % of compute, {:.1} % of bandwidth",
                f / 1e12, b / 1e12, 100.0 * flops as f64 / median / f, 100.0 * bytes as f64 / median / b);
        }
    } else {
        println!("step time: not reported (PTX emulator: wall time says nothing about a GPU)");
    }
    if let Some(l) = launches {
        println!("per step (counted by the stand-in driver): {l:.0} kernel launches, {:.0} allocations, {:.0} copies",
            allocs.unwrap_or(0.0), copies.unwrap_or(0.0));
    }
    println!("per-kernel times: not measured yet (needs CUDA events around each launch on a GPU)");
    Ok(ExitCode::SUCCESS)
}
