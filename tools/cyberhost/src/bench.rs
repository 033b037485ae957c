//! `cyberhost bench`: time the pipeline's real denoising step (`Components::run_clip`, one CFG
//! step per sampler step) of a preset or a weights dir, next to the step's exact FLOPs, bytes and
//! planned arena from the tracing backend, and the device's roofline limits.
//!
//! - Timed pass: `--warmup` + `--steps` sampler steps of one clip; the stream is synchronised
//!   after each step and the wall time between steps is the step time (no observer installed, so
//!   nothing perturbs it; CUDA graph replay per `--graphs`).
//! - Kernel pass (CUDA, `--kernel-steps`, default 1): more steps with graphs off and a
//!   [`KernelTimer`] (a CUDA event pair around every launch) → per-kernel table. On the stand-in
//!   driver (PTX emulator) events time nothing, so the table has launch and instruction counts
//!   and every time is `null`: wall time on the emulator says nothing about a GPU.
//! - NVML telemetry (clocks, power, temperature, memory) before and after the timed pass.
//!
//! The JSON schema is documented in docs/performance.md ("cyberhost bench").

use crate::args::{parse_size, Activations, WeightsArgs, WeightsDtype};
use anyhow::{Context, Result};
use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::cuda::graph::StepGraphInfo;
use cyberhost_engine::backends::cuda::profiling::{KernelStat, KernelTimer, Telemetry};
use cyberhost_engine::backends::cuda::{CudaBackend, DType, DriverStats, LaunchObserver};
use cyberhost_engine::backends::Backend;
use cyberhost_engine::error::UserError;
use cyberhost_engine::graph::pipeline::trace_pipeline;
use cyberhost_engine::pipeline::audio::load_wav_bytes;
use cyberhost_engine::pipeline::checkpoint::{Components, WeightsSource};
use cyberhost_engine::pipeline::conditions::PoseFile;
use cyberhost_engine::pipeline::generate::{Event, Prepared, Request};
use cyberhost_engine::pipeline::image::decode_image;
use cyberhost_engine::planner::plan;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

const IMAGE: &[u8] = include_bytes!("../../../engine/assets/reference.png");
const SPEECH: &[u8] = include_bytes!("../../../engine/assets/speech.wav");

#[path = "bench_gpu.rs"]
mod gpu;

/// `schema` of the JSON output; bump when a key changes meaning (new keys do not bump it).
pub const BENCH_SCHEMA: &str = "cyberhost-bench/2";

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: WeightsArgs,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Timed sampler steps.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Untimed warm-up steps (module loads, graph capture, caches).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Output size WxH (default: the checkpoint's).
    #[arg(long, value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// CUDA: steps run after the timed ones with an event pair around every kernel launch (graphs
    /// off) for the per-kernel table; 0 skips the table.
    #[arg(long, default_value_t = 1)]
    kernel_steps: usize,
    /// Rows of the per-kernel table in the human output (the JSON has every kernel).
    #[arg(long, default_value_t = 15)]
    top: usize,
    /// CUDA: replay each step from one captured CUDA graph (on|off; default: the backend's,
    /// on unless CYBERHOST_CUDA_GRAPHS=0).
    #[arg(long, value_parser = ["on", "off"])]
    graphs: Option<String>,
    /// CUDA: storage dtype of the denoiser's activations (bf16: the default; f32: f32-accurate
    /// products at about 2x the step time; default CYBERHOST_CUDA_ACTIVATIONS, else bf16).
    #[arg(long, value_enum)]
    activations: Option<Activations>,
    /// CUDA: storage of the linear weights: bf16 (default) or fp8 (e4m3 with per-output-channel
    /// scales, quantised once at load; linears on the Hopper FP8 GEMM with activations quantised
    /// per row; sm_90a devices only).
    #[arg(long, value_enum, default_value = "bf16")]
    pub(crate) weights_dtype: WeightsDtype,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// CUDA: predict every kernel on this GPU from the emulator's counters (h100-sxm, h100-pcie,
    /// h200, a100-sxm, a6000, l4, rtx4090; docs/profiling.md). On the stand-in driver the
    /// `--kernel-steps` steps run with counters on; no timed pass.
    #[arg(long)]
    gpu: Option<String>,
    /// With --gpu on the stand-in: blocks run per launch, counters scaled to the grid (outputs
    /// are then not valid); 0 = every block (exact). Default: 2 for the paper preset, else 0.
    #[arg(long, requires = "gpu")]
    sample_blocks: Option<u64>,
    /// With --gpu: write the counted launches here (JSON Lines, PTX_EMU_STATS format).
    #[arg(long, requires = "gpu")]
    save_stats: Option<PathBuf>,
    /// With --gpu: predict from counters saved earlier with --save-stats (same preset, size and
    /// --kernel-steps) instead of running the emulator; cheap, any GPU name.
    #[arg(long, requires = "gpu")]
    from_stats: Option<PathBuf>,
    /// With --gpu --from-stats on a real GPU: time every kernel with CUDA events and print the
    /// measured times and the model's error beside the prediction.
    #[arg(long, requires = "from_stats")]
    measure: bool,
    /// With --gpu: also write a roofline picture (SVG), one point per kernel.
    #[arg(long, requires = "gpu")]
    plot: Option<PathBuf>,
}

/// Peak dense bf16 tensor-core FLOP/s and memory bandwidth of a card (datasheet values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceLimits {
    pub card: &'static str,
    pub bf16_flops: f64,
    pub bytes_per_s: f64,
}

/// What [`device_limits`] says when it does not know a device.
pub const UNKNOWN_DEVICE: &str = "unknown device: no % of peak";

/// The peaks of a device by its CUDA name (e.g. "NVIDIA H100 80GB HBM3"); `None` for unknown
/// devices, the stand-in driver (its name says "H100-like") and the CPU.
pub fn device_limits(name: &str) -> Option<DeviceLimits> {
    let n = name.to_ascii_uppercase();
    if n.contains("PTX-EMU") || n.contains("STAND-IN") || n.starts_with("CPU") {
        return None;
    }
    let l = |card, bf16_flops: f64, bytes_per_s: f64| DeviceLimits {
        card,
        bf16_flops,
        bytes_per_s,
    };
    // Most specific names first: "GH200" and "H200 NVL" before "H200", "H100 PCIe" before "H100".
    let table = [
        ("GH200", l("GH200", 989e12, 4.0e12)),
        ("H200 NVL", l("H200 NVL", 835e12, 4.8e12)),
        ("H200", l("H200 SXM", 989e12, 4.8e12)),
        ("H100 NVL", l("H100 NVL", 835e12, 3.9e12)),
        ("H100 PCIE", l("H100 PCIe", 756e12, 2.0e12)),
        ("H100", l("H100 SXM", 989e12, 3.35e12)),
        ("A100-SXM4-40GB", l("A100 40GB", 312e12, 1.555e12)),
        ("A100-PCIE-40GB", l("A100 40GB", 312e12, 1.555e12)),
        ("A100 80GB PCIE", l("A100 80GB PCIe", 312e12, 1.935e12)),
        ("A100", l("A100 80GB", 312e12, 2.039e12)),
    ];
    table
        .iter()
        .find(|(key, _)| n.contains(key))
        .map(|(_, lim)| *lim)
}

/// What the timing loop needs from a backend besides the ops.
pub(crate) trait Bench: Backend {
    fn sync(&self) -> Result<()>;
    fn stats(&self) -> Option<DriverStats>;
    fn device_name(&self) -> String;
    fn emulated(&self) -> bool;
    /// Graph replay on/off (`None`: leave the default); returns the setting in effect, `None`
    /// where the backend has no graphs.
    fn graphs(&self, _on: Option<bool>) -> Option<bool> {
        None
    }
    fn step_graph(&self) -> Option<StepGraphInfo> {
        None
    }
    /// Denoiser activation dtype (`None`: leave the default); returns the one in effect.
    fn activations(&self, _dtype: Option<DType>) -> &'static str {
        "f32"
    }
    fn observe(&self, _o: Option<Arc<dyn LaunchObserver>>) {}
    fn kernel_timer(&self) -> Option<Arc<KernelTimer>> {
        None
    }
    fn telemetry(&self) -> std::result::Result<Telemetry, String> {
        Err(format!("the {} backend has no GPU", self.name()))
    }
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
    fn graphs(&self, on: Option<bool>) -> Option<bool> {
        if let Some(on) = on {
            self.set_graphs(on);
        }
        Some(CudaBackend::graphs(self))
    }
    fn step_graph(&self) -> Option<StepGraphInfo> {
        self.last_step_graph()
    }
    fn activations(&self, dtype: Option<DType>) -> &'static str {
        if let Some(dtype) = dtype {
            self.set_activations(dtype);
        }
        CudaBackend::activations(self).suffix()
    }
    fn observe(&self, o: Option<Arc<dyn LaunchObserver>>) {
        self.device().set_launch_observer(o);
    }
    fn kernel_timer(&self) -> Option<Arc<KernelTimer>> {
        Some(KernelTimer::new(self.device()))
    }
    fn telemetry(&self) -> std::result::Result<Telemetry, String> {
        Telemetry::open(self.device())
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.steps == 0 {
        return Err(UserError::new("--steps 0: time at least one step").into());
    }
    if let Some(g) = &a.gpu {
        return gpu::run(&a, g);
    }
    let source = a.weights.source()?;
    match a.backend.as_str() {
        "cpu" => {
            a.weights_dtype.check_cpu()?;
            bench(CpuBackend::new(), &source, &a)
        }
        "cuda" => {
            let be = CudaBackend::new(0)
                .map_err(|e| UserError::new(format!("--backend cuda: {e:#}")))?;
            a.weights_dtype.apply(&be)?;
            bench(be, &source, &a)
        }
        other => Err(UserError::new(format!("--backend {other}: use `cpu` or `cuda`")).into()),
    }
}

/// Loaded components and everything computed once per video, ready to run denoising steps.
pub(crate) struct StepSetup<B: Backend> {
    pub comps: Components<B>,
    pub p: Prepared<B>,
    pub motion: B::Tensor,
}

/// Load `source` on `be` and run the one-off stages on the bundled reference image and one clip
/// of the bundled speech.
pub(crate) fn setup<B: Backend>(
    be: &B,
    source: &WeightsSource,
    size: Option<(usize, usize)>,
) -> Result<StepSetup<B>> {
    let comps = source.load(be)?;
    let img = decode_image(IMAGE, "bundled reference.png")?;
    let mut speech = load_wav_bytes(SPEECH, "bundled speech.wav")?;
    let g0 = comps.geometry(&Request {
        size,
        ..Default::default()
    })?;
    // One clip of audio is enough for the step loop.
    let keep = ((g0.frames as f64 / g0.fps) * 16_000.0).ceil() as usize;
    speech.samples.truncate(keep.max(1));
    speech.seconds = speech.samples.len() as f64 / 16_000.0;
    let req = Request {
        size,
        ..Default::default()
    };
    let p = comps.prepare(be, &img, &speech, &PoseFile::default(), &req, &mut |_| {})?;
    let motion = comps.initial_motion(be, &p)?;
    Ok(StepSetup { comps, p, motion })
}

/// Run `steps` denoising steps of clip 0 through the pipeline's own loop; `after(i)` runs after
/// step `i` (0-based) once the device is synchronised.
pub(crate) fn run_steps<B: Bench>(
    be: &B,
    s: &StepSetup<B>,
    steps: usize,
    mut after: impl FnMut(usize),
) -> Result<()> {
    let sched = s.comps.scheduler(steps)?;
    let noise = s.comps.clip_noise(be, &s.p, 0, 0)?;
    be.sync()?;
    let mut sync_err = None;
    let mut on = |e: Event| {
        if let Event::Step { step, .. } = e {
            if let Err(e) = be.sync() {
                sync_err.get_or_insert(e);
            }
            after(step - 1);
        }
    };
    s.comps
        .run_clip(be, &s.p, &sched, &s.motion, noise, 0, None, &mut on)?;
    if let Some(e) = sync_err {
        return Err(e.context("synchronizing after a step"));
    }
    be.sync()
}

/// Mean, median, min, max of step times in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTimes {
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl StepTimes {
    pub fn of(times: &[f64]) -> Option<Self> {
        if times.is_empty() {
            return None;
        }
        let mut v = times.to_vec();
        v.sort_by(|x, y| x.total_cmp(y));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        };
        Some(StepTimes {
            mean: v.iter().sum::<f64>() / n as f64,
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// The per-kernel rows of the JSON output (per-step figures divide by `steps`).
pub fn kernel_rows(stats: &[KernelStat], steps: usize) -> Vec<Value> {
    let total_ms: f64 = stats.iter().filter_map(|k| k.total_ms).sum();
    let per = |x: f64| x / steps.max(1) as f64;
    stats
        .iter()
        .map(|k| {
            json!({
                "module": k.module,
                "entry": k.entry,
                "launches": k.launches,
                "launches_per_step": per(k.launches as f64),
                "total_ms": k.total_ms,
                "ms_per_step": k.total_ms.map(per),
                "mean_ms": k.mean_ms(),
                "min_ms": k.min_ms,
                "max_ms": k.max_ms,
                "time_share": k.total_ms.filter(|_| total_ms > 0.0).map(|t| t / total_ms),
                "thread_instructions": k.thread_instructions,
                "thread_instructions_per_step": k.thread_instructions.map(|n| per(n as f64)),
            })
        })
        .collect()
}

fn bench<B: Bench>(be: B, source: &WeightsSource, a: &Args) -> Result<ExitCode> {
    // Exact cost of one step from the tracing backend (no weights allocated).
    let graphs = trace_pipeline(source, a.size)?;
    let step_graph = &graphs.step;
    let step_plan = plan(step_graph);
    let (flops, bytes) = (step_graph.total_flops(), step_graph.total_bytes());

    let graphs_on = be.graphs(a.graphs.as_deref().map(|g| g == "on"));
    let activations = be.activations(a.activations.map(Activations::dtype));
    let s = setup(&be, source, a.size)?;
    let g = s.p.geometry;
    be.sync()?;

    let telemetry = be.telemetry();
    let sample = |when: &str| -> Value {
        match &telemetry {
            Ok(t) => t
                .sample()
                .map(|x| json!(x))
                .unwrap_or_else(|e| json!({ "error": format!("{when}: {e:#}") })),
            Err(_) => Value::Null,
        }
    };

    // Timed pass: the pipeline's loop, nothing observing the launches.
    let mut telemetry_before = Value::Null;
    let mut start = Instant::now();
    let mut times = Vec::new();
    let mut first: Option<DriverStats> = None;
    let mut last: Option<DriverStats> = None;
    if a.warmup == 0 {
        telemetry_before = sample("before");
        first = be.stats();
        start = Instant::now();
    }
    run_steps(&be, &s, a.warmup + a.steps, |i| {
        let now = Instant::now();
        if i + 1 == a.warmup {
            telemetry_before = sample("before");
            first = be.stats();
        } else if i >= a.warmup {
            times.push(now.duration_since(start).as_secs_f64());
            last = be.stats();
        }
        start = Instant::now();
    })?;
    let telemetry_after = sample("after");
    let step_graph_info = be.step_graph();

    // Kernel pass: graphs off (a replayed graph launches no kernel through the observer).
    let mut kernels: Option<(Arc<KernelTimer>, usize)> = None;
    if a.kernel_steps > 0 {
        if let Some(timer) = be.kernel_timer() {
            let saved = be.graphs(None);
            be.graphs(Some(false));
            be.observe(Some(timer.clone() as Arc<dyn LaunchObserver>));
            let r = run_steps(&be, &s, a.kernel_steps, |_| {});
            be.observe(None);
            be.graphs(saved);
            r.context("kernel pass (per-kernel timing, graphs off)")?;
            timer.resolve()?;
            kernels = Some((timer, a.kernel_steps));
        }
    }

    let timed = !be.emulated();
    let st = StepTimes::of(&times).filter(|_| timed);
    let counted = first.zip(last);
    let per_step = |f: fn(&DriverStats) -> u64| {
        counted.map(|(b, e)| (f(&e) - f(&b)) as f64 / times.len() as f64)
    };
    let kernel_stats = kernels.as_ref().map(|(t, _)| t.stats()).unwrap_or_default();
    let kernel_steps = kernels.as_ref().map_or(0, |k| k.1);
    let kernel_launches: u64 = kernel_stats.iter().map(|k| k.launches).sum();
    let kernel_ms: Option<f64> = kernels
        .as_ref()
        .filter(|(t, _)| t.is_timed())
        .map(|_| kernel_stats.iter().filter_map(|k| k.total_ms).sum::<f64>());
    let instructions: Option<u64> = kernels
        .as_ref()
        .filter(|(t, _)| t.counts_instructions())
        .map(|_| {
            kernel_stats
                .iter()
                .filter_map(|k| k.thread_instructions)
                .sum()
        });
    // Launches per step: driver-counted on the stand-in (timed pass, graph replays included),
    // else from the kernel pass.
    let launches = per_step(|s| s.kernel_launches)
        .or_else(|| (kernel_steps > 0).then(|| kernel_launches as f64 / kernel_steps as f64));
    let allocs = per_step(|s| s.alloc_calls);
    let copies = per_step(|s| s.memcpy_calls);
    let name = be.device_name();
    let limits = device_limits(&name);
    let tflops = st.map(|t| flops as f64 / t.median / 1e12);
    let gbs = st.map(|t| bytes as f64 / t.median / 1e9);
    let pct = st.zip(limits).map(|(t, l)| {
        (
            100.0 * flops as f64 / t.median / l.bf16_flops,
            100.0 * bytes as f64 / t.median / l.bytes_per_s,
        )
    });
    let limits_note = if limits.is_some() {
        None
    } else if be.emulated() {
        Some("stand-in driver (PTX emulator): no times, no % of peak".to_string())
    } else {
        Some(UNKNOWN_DEVICE.to_string())
    };

    if a.json {
        let out = json!({
            "schema": BENCH_SCHEMA,
            "model": graphs.label, "backend": be.name(), "device": name, "emulated": be.emulated(),
            "width": g.width, "height": g.height,
            "frames": g.motion + g.frames, "batch": 2,
            "graphs": graphs_on, "activations": activations,
            "warmup_steps": a.warmup, "timed_steps": times.len(),
            "step_seconds": st.map(|t| json!({"mean": t.mean, "median": t.median, "min": t.min, "max": t.max, "all": times})),
            "launches_per_step": launches, "allocations_per_step": allocs, "memcpys_per_step": copies,
            "ops_per_step": step_graph.nodes.len(),
            "flops_per_step": flops, "bytes_per_step": bytes,
            "arena_bytes": step_plan.peak_bytes, "naive_activation_bytes": step_plan.naive_bytes,
            "step_graph": step_graph_info.map(|i| json!({
                "allocations": i.allocations, "arena_bytes": i.arena_bytes,
                "naive_bytes": i.naive_bytes, "max_live_bytes": i.max_live_bytes,
            })),
            "achieved_tflops": tflops, "achieved_gbs": gbs,
            "device_limits": limits.map(|l| json!({"card": l.card, "bf16_flops": l.bf16_flops, "bytes_per_s": l.bytes_per_s})),
            "percent_of_peak": pct.map(|(c, b)| json!({"compute": c, "bandwidth": b})),
            "device_limits_note": limits_note,
            "kernel_steps": kernel_steps,
            "kernel_ms_per_step": kernel_ms.map(|t| t / kernel_steps.max(1) as f64),
            "thread_instructions_per_step": instructions.map(|n| n as f64 / kernel_steps.max(1) as f64),
            "kernels": kernel_rows(&kernel_stats, kernel_steps),
            "per_kernel_times": kernel_ms.map(|_| kernel_rows(&kernel_stats, kernel_steps)),
            "telemetry": match &telemetry {
                Ok(t) => json!({"device": t.device_name, "before": telemetry_before, "after": telemetry_after}),
                Err(why) => json!({"unavailable": why}),
            },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }

    println!(
        "{} on {} ({}), {}x{}, {}+{} frames, CFG batch 2{}",
        graphs.label,
        be.name(),
        name,
        g.width,
        g.height,
        g.frames,
        g.motion,
        match graphs_on {
            Some(true) => ", CUDA graphs on",
            Some(false) => ", CUDA graphs off",
            None => "",
        }
    );
    println!(
        "per step: {} ops, {:.3} GFLOP, {:.3} GB moved; planned arena {:.1} MiB (naive {:.1} MiB)",
        step_graph.nodes.len(),
        flops as f64 / 1e9,
        bytes as f64 / 1e9,
        mib(step_plan.peak_bytes as f64),
        mib(step_plan.naive_bytes as f64)
    );
    if let Some(i) = &step_graph_info {
        println!(
            "device step graph: {} allocations from one {:.1} MiB arena (naive {:.1} MiB)",
            i.allocations,
            mib(i.arena_bytes as f64),
            mib(i.naive_bytes as f64)
        );
    }
    if let Some(t) = st {
        println!(
            "step time: mean {:.3} ms, median {:.3} ms (min {:.3}, max {:.3}) over {} steps after {} warm-up",
            t.mean * 1e3,
            t.median * 1e3,
            t.min * 1e3,
            t.max * 1e3,
            times.len(),
            a.warmup
        );
        let tf = tflops.unwrap_or(0.0);
        println!(
            "achieved (median): {}, {:.1} GB/s",
            if tf >= 1.0 {
                format!("{tf:.2} TFLOP/s")
            } else {
                format!("{:.2} GFLOP/s", tf * 1e3)
            },
            gbs.unwrap_or(0.0)
        );
        match (limits, pct) {
            (Some(l), Some((c, b))) => println!(
                "{} limits: {:.0} TFLOP/s bf16 dense, {:.2} TB/s → {c:.1} % of compute, {b:.1} % of bandwidth",
                l.card,
                l.bf16_flops / 1e12,
                l.bytes_per_s / 1e12
            ),
            _ => println!("{}", limits_note.as_deref().unwrap_or(UNKNOWN_DEVICE)),
        }
    } else {
        println!("step time: not reported (PTX emulator: wall time says nothing about a GPU)");
    }
    if let Some(l) = launches {
        match counted {
            Some(_) => println!(
                "per step (counted by the stand-in driver): {l:.0} kernel launches, {:.0} allocations, {:.0} copies",
                allocs.unwrap_or(0.0),
                copies.unwrap_or(0.0)
            ),
            None => println!("per step: {l:.0} kernel launches (kernel pass)"),
        }
    }
    if let Some(n) = instructions {
        println!(
            "per step: {:.3} G thread-instructions executed (emulator)",
            n as f64 / kernel_steps.max(1) as f64 / 1e9
        );
    }
    print_kernels(&kernel_stats, kernel_steps, kernel_ms, a.top);
    match &telemetry {
        Ok(t) => {
            println!("telemetry ({}):", t.device_name);
            for (when, v) in [("before", &telemetry_before), ("after", &telemetry_after)] {
                println!("  {when:<6} {}", telemetry_line(v));
            }
        }
        Err(why) => println!("telemetry unavailable: {why}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn mib(b: f64) -> f64 {
    b / (1u64 << 20) as f64
}

fn telemetry_line(v: &Value) -> String {
    if let Some(e) = v.get("error") {
        return format!("error: {}", e.as_str().unwrap_or(""));
    }
    let f = |k: &str, unit: &str, scale: f64| {
        v[k].as_f64()
            .map_or("?".to_string(), |x| format!("{:.0} {unit}", x / scale))
    };
    format!(
        "SM {}, memory {}, {}, {}, memory used {} of {}",
        f("sm_clock_mhz", "MHz", 1.0),
        f("memory_clock_mhz", "MHz", 1.0),
        f("power_watts", "W", 1.0),
        f("temperature_c", "°C", 1.0),
        f("memory_used_bytes", "MiB", (1u64 << 20) as f64),
        f("memory_total_bytes", "MiB", (1u64 << 20) as f64),
    )
}

fn print_kernels(stats: &[KernelStat], steps: usize, total_ms: Option<f64>, top: usize) {
    if stats.is_empty() {
        return;
    }
    let per = |x: f64| x / steps.max(1) as f64;
    let shown = stats.len().min(top);
    match total_ms {
        Some(total) => {
            println!(
                "kernels by time ({} kernel step(s), graphs off, CUDA events; {:.3} ms of kernels per step), top {shown} of {}:",
                steps,
                per(total),
                stats.len()
            );
            println!(
                "  {:>8} {:>10} {:>10} {:>6}  kernel",
                "launches", "ms/step", "mean ms", "share"
            );
            for k in &stats[..shown] {
                let t = k.total_ms.unwrap_or(0.0);
                println!(
                    "  {:>8.0} {:>10.3} {:>10.4} {:>5.1}%  {}/{}",
                    per(k.launches as f64),
                    per(t),
                    k.mean_ms().unwrap_or(0.0),
                    if total > 0.0 { 100.0 * t / total } else { 0.0 },
                    k.module,
                    k.entry
                );
            }
        }
        None => {
            println!(
                "kernels by instructions ({} kernel step(s); no times on the emulator), top {shown} of {}:",
                steps,
                stats.len()
            );
            println!(
                "  {:>8} {:>14} {:>12}  kernel",
                "launches", "G thr-instr", "per launch"
            );
            for k in &stats[..shown] {
                let n = k.thread_instructions.map(|n| per(n as f64));
                println!(
                    "  {:>8.0} {:>14} {:>12}  {}/{}",
                    per(k.launches as f64),
                    n.map_or("-".into(), |n| format!("{:.4}", n / 1e9)),
                    k.thread_instructions.map_or("-".into(), |t| format!(
                        "{:.3e}",
                        t as f64 / k.launches.max(1) as f64
                    )),
                    k.module,
                    k.entry
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_limits_match_card_names() {
        let h100 = device_limits("NVIDIA H100 80GB HBM3").unwrap();
        assert_eq!(h100.card, "H100 SXM");
        assert_eq!(h100.bf16_flops, 989e12);
        assert_eq!(h100.bytes_per_s, 3.35e12);
        let h200 = device_limits("NVIDIA H200").unwrap();
        assert_eq!((h200.bf16_flops, h200.bytes_per_s), (989e12, 4.8e12));
        let a100 = device_limits("NVIDIA A100-SXM4-80GB").unwrap();
        assert_eq!((a100.bf16_flops, a100.bytes_per_s), (312e12, 2.039e12));
        assert_eq!(device_limits("NVIDIA H100 PCIe").unwrap().card, "H100 PCIe");
        assert_eq!(device_limits("NVIDIA H100 NVL").unwrap().card, "H100 NVL");
        assert_eq!(device_limits("NVIDIA GH200 480GB").unwrap().card, "GH200");
        assert_eq!(
            device_limits("NVIDIA A100-PCIE-40GB").unwrap().bytes_per_s,
            1.555e12
        );
        // The stand-in calls itself H100-like: it has no peaks.
        assert_eq!(device_limits("ptx-emu stand-in (sm_90, H100-like)"), None);
        assert_eq!(device_limits("NVIDIA GeForce RTX 4090"), None);
        assert_eq!(device_limits("cpu (2 threads)"), None);
    }

    #[test]
    fn step_times_median_of_even_count_averages() {
        let t = StepTimes::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((t.mean, t.median, t.min, t.max), (2.5, 2.5, 1.0, 4.0));
        assert_eq!(StepTimes::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(StepTimes::of(&[]), None);
    }

    #[test]
    fn kernel_rows_divide_by_steps_and_share_time() {
        let k = |entry: &str, launches, ms: Option<f64>, instr: Option<u64>| KernelStat {
            module: "gemm",
            entry: entry.into(),
            launches,
            total_ms: ms,
            min_ms: ms.map(|m| m / launches as f64),
            max_ms: ms.map(|m| m / launches as f64),
            thread_instructions: instr,
        };
        let rows = kernel_rows(&[k("a", 4, Some(3.0), None), k("b", 2, Some(1.0), None)], 2);
        assert_eq!(rows[0]["launches_per_step"], 2.0);
        assert_eq!(rows[0]["ms_per_step"], 1.5);
        assert_eq!(rows[0]["time_share"], 0.75);
        assert_eq!(rows[1]["mean_ms"], 0.5);
        // Untimed (emulator): times are null, never 0.
        let rows = kernel_rows(&[k("c", 3, None, Some(300))], 1);
        assert!(rows[0]["total_ms"].is_null());
        assert!(rows[0]["time_share"].is_null());
        assert_eq!(rows[0]["thread_instructions_per_step"], 300.0);
    }
}
