//! `cyberhost bench --backend cuda --gpu NAME`: the GPU-free speed-of-light view
//! (docs/profiling.md). On the stand-in driver the denoising steps run with the emulator's
//! counters on (`PTX_EMU_STATS`, blocks sampled per `--sample-blocks`), and the gpu-model
//! predicts every launch on NAME: per-kernel table, predicted step and clip times, the planner's
//! roofline floor for NAME. `--from-stats FILE` re-predicts counters saved earlier
//! (`--save-stats`) for another GPU without running anything; on a real GPU, `--from-stats` gives
//! the prediction and the CUDA-event kernel timer the measured times beside it.

use super::{run_steps, setup, Args, Bench};
use crate::args::Activations;
use anyhow::{Context, Result};
use cyberhost_engine::backends::cuda::default_activations;
use cyberhost_engine::backends::cuda::CudaBackend;
use cyberhost_engine::backends::cuda::LaunchObserver;
use cyberhost_engine::error::UserError;
use cyberhost_engine::graph::pipeline::trace_pipeline_as;
use cyberhost_engine::pipeline::checkpoint::WeightsSource;
use gpu_model::report::{build, parse_jsonl, render_table, write_roofline, Report};
use gpu_model::sampling::SAMPLE_ENV;
use gpu_model::{Counters, GpuSpec};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Blocks per launch the `paper` preset runs by default on the stand-in (counters scaled to the
/// grid): enough to see every kernel's steady state, few enough for minutes, not hours.
pub const PAPER_SAMPLE_BLOCKS: u64 = 2;

/// The planner's roofline floor of the step on `g`: Σ over op classes of
/// max(work FLOPs / dense bf16 tensor peak, bytes / DRAM bandwidth), seconds (as `cyberhost plan`
/// computes it for the H100, with `g`'s figures; work FLOPs include the split passes of f32
/// products).
pub fn floor_seconds(classes: &[(u64, u64)], g: &GpuSpec) -> f64 {
    let peak = g.tensor_tflops("bf16").unwrap_or(g.fp32_tflops) * 1e12;
    let bw = g.dram_gbs * 1e9;
    classes
        .iter()
        .map(|&(f, b)| (f as f64 / peak).max(b as f64 / bw))
        .sum()
}

fn set_env_default(key: &str, value: &str) {
    if std::env::var_os(key).is_none() {
        // SAFETY: called before the CUDA backend (and any thread that reads the environment)
        // starts.
        unsafe { std::env::set_var(key, value) };
    }
}

fn read_rows(path: &Path) -> Result<Vec<Counters>> {
    let text = crate::args::read_arg_file(path, |e| {
        let p = path.display();
        format!("--from-stats {p}: {e} (give a file written by `bench --gpu ... --save-stats`)")
    })?;
    let rows = parse_jsonl(&text)
        .map_err(|e| UserError::new(format!("--from-stats {}: {e}", path.display())))?;
    if rows.is_empty() {
        cyberhost_engine::user_bail!("--from-stats {}: no launches in the file", path.display());
    }
    Ok(rows)
}

/// Counter rows of `steps` denoising steps run on the stand-in with counters on.
fn count_on_stand_in(be: &CudaBackend, source: &WeightsSource, a: &Args) -> Result<Vec<Counters>> {
    let stats = std::env::var_os(gpu_stats_env())
        .map(PathBuf::from)
        .context("PTX_EMU_STATS is not set")?;
    be.set_graphs(false);
    a.weights_dtype.apply(be)?;
    if let Some(act) = a.activations {
        Bench::activations(be, Some(act.dtype()));
    }
    let s = setup(be, source, a.size)?;
    be.sync()?;
    let before = std::fs::read_to_string(&stats).unwrap_or_default().len();
    run_steps(be, &s, a.kernel_steps, |_| {}).context("counted steps")?;
    be.sync()?;
    let text = std::fs::read_to_string(&stats)
        .with_context(|| format!("reading the stats file {}", stats.display()))?;
    let rows = parse_jsonl(&text[before..]).map_err(anyhow::Error::msg)?;
    if rows.is_empty() {
        anyhow::bail!(
            "the stand-in wrote no counters to {} (is CYBERHOST_CUDA_DRIVER the stand-in?)",
            stats.display()
        );
    }
    Ok(rows)
}

fn gpu_stats_env() -> &'static str {
    "PTX_EMU_STATS"
}

/// Per-kernel measured ms (total over the kernel pass) from the CUDA-event timer on a real GPU.
fn measure(be: &CudaBackend, source: &WeightsSource, a: &Args) -> Result<BTreeMap<String, f64>> {
    be.set_graphs(false);
    a.weights_dtype.apply(be)?;
    let s = setup(be, source, a.size)?;
    if a.warmup > 0 {
        run_steps(be, &s, a.warmup, |_| {}).context("warm-up steps")?;
    }
    let timer = Bench::kernel_timer(be).context("no kernel timer on this backend")?;
    Bench::observe(be, Some(timer.clone() as Arc<dyn LaunchObserver>));
    let r = run_steps(be, &s, a.kernel_steps, |_| {});
    Bench::observe(be, None);
    r.context("timed kernel pass")?;
    timer.resolve()?;
    let mut m = BTreeMap::new();
    for k in timer.stats() {
        if let Some(ms) = k.total_ms {
            *m.entry(k.entry.clone()).or_insert(0.0) += ms * 1e3;
        }
    }
    Ok(m)
}

pub fn run(a: &Args, gpu: &str) -> Result<ExitCode> {
    let g = GpuSpec::by_name(gpu).map_err(|e| UserError::new(format!("--gpu: {e}")))?;
    if a.backend != "cuda" {
        return Err(UserError::new(format!(
            "--gpu models CUDA kernels: use `--backend cuda` (not `{}`)",
            a.backend
        ))
        .into());
    }
    if a.kernel_steps == 0 {
        return Err(UserError::new("--gpu needs --kernel-steps of at least 1").into());
    }
    let source = a.weights.source()?;
    // the floor at the step's activation storage (`--activations`, else the backend's default)
    let activations = a
        .activations
        .map_or_else(default_activations, Activations::dtype);
    let graphs = trace_pipeline_as(&source, a.size, activations)?;
    let geo = graphs.geometry;
    let classes: Vec<(u64, u64)> = graphs
        .step
        .cost_by_class()
        .into_iter()
        .map(|(_, c)| (c.work_flops, c.bytes))
        .collect();
    let floor = floor_seconds(&classes, g);
    let steps = a.kernel_steps as f64;

    let (rows, measured, device, emulated) = match &a.from_stats {
        Some(path) if a.measure => {
            let be = CudaBackend::new(0)
                .map_err(|e| UserError::new(format!("--backend cuda: {e:#}")))?;
            let rows = read_rows(path)?;
            let m = if be.device().is_emulated() {
                None
            } else {
                Some(measure(&be, &source, a)?)
            };
            (
                rows,
                m,
                be.device().name().to_string(),
                be.device().is_emulated(),
            )
        }
        Some(path) => (
            read_rows(path)?,
            None,
            "none (counters from a file)".into(),
            true,
        ),
        None => {
            let sample = match (a.sample_blocks, a.weights.preset.as_deref()) {
                (Some(0), _) => None,
                (Some(n), _) => Some(n),
                (None, Some("paper")) => Some(PAPER_SAMPLE_BLOCKS),
                (None, _) => None,
            };
            let tmp = tempfile_path();
            // SAFETY: before the backend or any other thread starts.
            unsafe {
                std::env::set_var(gpu_stats_env(), &tmp);
                match sample {
                    Some(n) => std::env::set_var(SAMPLE_ENV, n.to_string()),
                    None => std::env::remove_var(SAMPLE_ENV),
                }
                std::env::set_var(gpu_model::gpu::GPU_ENV, g.name);
            }
            // Hazard checks do not change counts; one schedule halves the emulator time.
            set_env_default("PTX_EMU_CHECKS", "fast");
            let be = CudaBackend::new(0)
                .map_err(|e| UserError::new(format!("--backend cuda: {e:#}")))?;
            if !be.device().is_emulated() {
                let _ = std::fs::remove_file(&tmp);
                return Err(UserError::new(
                    "--gpu on a real GPU predicts from counters the stand-in recorded: run \
                     `bench --gpu NAME --save-stats FILE` on the stand-in driver first, then \
                     `bench --gpu NAME --from-stats FILE --measure` here",
                )
                .into());
            }
            let r = count_on_stand_in(&be, &source, a);
            let _ = std::fs::remove_file(&tmp);
            let rows = r?;
            (rows, None, be.device().name().to_string(), true)
        }
    };
    if let Some(path) = &a.save_stats {
        let _ = std::fs::remove_file(path);
        gpu_model::report::append_jsonl(path, &rows).map_err(anyhow::Error::msg)?;
    }
    let mut r = build(&rows, g, measured.as_ref());
    per_step(&mut r, steps);
    let step_ms = r.predicted_total_us / 1e3;
    let clip_s = step_ms * geo.steps as f64 / 1e3;
    if let Some(p) = &a.plot {
        write_roofline(&r, g, p).map_err(anyhow::Error::msg)?;
    }
    let sample_blocks = rows
        .iter()
        .filter(|c| c.sampled)
        .map(|c| c.blocks_executed)
        .max();

    if a.json {
        let out = json!({
            "schema": crate::bench::BENCH_SCHEMA,
            "model": graphs.label,
            "gpu": g.name,
            "device": device,
            "emulated": emulated,
            "activations": activations.suffix(),
            "width": geo.width, "height": geo.height,
            "frames": geo.motion + geo.frames, "batch": 2,
            "steps_per_clip": geo.steps,
            "kernel_steps": a.kernel_steps,
            "launches_per_step": r.launches as f64 / steps,
            "sampled": r.sampled,
            "sample_blocks": sample_blocks,
            "outputs_valid": !r.sampled,
            "predicted_step_ms": step_ms,
            "predicted_clip_s": clip_s,
            "floor_step_ms": floor * 1e3,
            "measured_step_ms": measured.as_ref().map(|m| m.values().sum::<f64>() / 1e3 / steps),
            "kernels": r.kernels,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} on {} (predicted for {}, counters from {}), {}x{}, {}+{} frames, CFG batch 2",
        graphs.label,
        device,
        g.name,
        if emulated {
            "the PTX emulator"
        } else {
            "a file"
        },
        geo.width,
        geo.height,
        geo.frames,
        geo.motion
    );
    if r.sampled {
        println!(
            "counters sampled (at most {} blocks per launch, scaled to the grid): outputs of this \
             run are not valid",
            sample_blocks.unwrap_or(0)
        );
    }
    print!("{}", render_table(&top(&r, a.top)));
    println!(
        "predicted step: {step_ms:.3} ms ({} launches); roofline floor on {}: {:.3} ms; \
         predicted clip ({} sampler steps): {clip_s:.3} s",
        r.launches as f64 / steps,
        g.name,
        floor * 1e3,
        geo.steps
    );
    if let Some(m) = &measured {
        println!(
            "measured step (CUDA events, kernels only): {:.3} ms",
            m.values().sum::<f64>() / 1e3 / steps
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The report over `steps` steps → per step.
fn per_step(r: &mut Report, steps: f64) {
    r.predicted_total_us /= steps;
    for k in &mut r.kernels {
        k.predicted_us /= steps;
        k.launches = (k.launches as f64 / steps).round() as u64;
        k.flops = (k.flops as f64 / steps).round() as u64;
        k.dram_bytes = (k.dram_bytes as f64 / steps).round() as u64;
        k.bank_conflicts = (k.bank_conflicts as f64 / steps).round() as u64;
        if let Some(m) = k.measured_us.as_mut() {
            *m /= steps;
        }
    }
}

fn top(r: &Report, n: usize) -> Report {
    let mut t = r.clone();
    t.kernels.truncate(n);
    t
}

fn tempfile_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "cyberhost-bench-{}.stats.jsonl",
        std::process::id()
    ))
}
