//! `cyberhost profile`: run denoising steps of a preset on the CUDA backend inside NVTX ranges
//! (`cyberhost` around the profiled steps, `step i` per step, `module/entry` per kernel launch)
//! and between `cuProfilerStart`/`cuProfilerStop`, for Nsight Systems and Nsight Compute.
//! Without libnvToolsExt it says so and runs the steps anyway (kernels still show under their
//! entry names); on the stand-in driver it only checks that the steps run.

use crate::args::{parse_size, WeightsArgs};
use crate::bench::{run_steps, setup};
use anyhow::{Context, Result};
use cyberhost_engine::backends::cuda::cudarc;
use cyberhost_engine::backends::cuda::cudarc::driver::CudaStream;
use cyberhost_engine::backends::cuda::profiling::{Nvtx, NvtxLaunchRanges, ObserverChain};
use cyberhost_engine::backends::cuda::{CudaBackend, LaunchObserver};
use cyberhost_engine::error::UserError;
use cyberhost_kernels::KernelModule;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Printed after `--help` and in docs/performance.md.
pub const HELP: &str = "\
Nsight Systems (timeline with NVTX op names; only the profiled steps are captured):
  nsys profile --trace=cuda,nvtx --capture-range=cudaProfilerApi --capture-range-end=stop \\
       -o cyberhost_tiny cyberhost profile --preset tiny --backend cuda --steps 2
  nsys stats --report nvtx_sum,cuda_gpu_kern_sum cyberhost_tiny.nsys-rep

Nsight Compute (per-kernel metrics of the profiled steps, each kernel tagged with its NVTX range):
  ncu --profile-from-start off --nvtx --set full --launch-count 50 -o cyberhost_step \\
       cyberhost profile --preset paper --backend cuda --steps 1
  ncu --profile-from-start off --nvtx --nvtx-include \"cyberhost/\" -k regex:gemm --set full \\
       -o cyberhost_gemm cyberhost profile --preset paper --backend cuda --steps 1

NVTX comes from libnvToolsExt.so.1 (CUDA toolkit lib64, or `pip install nvidia-nvtx-cu12`);
set CYBERHOST_NVTX_LIB to its path if it is not on the library path. Without it the steps still
run (exit 0) and kernels still show under their PTX entry names.";

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: WeightsArgs,
    /// Only cuda: the ranges wrap CUDA kernel launches.
    #[arg(long, default_value = "cuda")]
    backend: String,
    /// Profiled sampler steps (inside the profiler range).
    #[arg(long, default_value_t = 1)]
    steps: usize,
    /// Steps run before the profiler range (module loads, caches).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Output size WxH (default: the checkpoint's).
    #[arg(long, value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// CUDA graph replay (on|off, default off: with graphs on, per-launch ranges exist only in
    /// the captured step; use `nsys --cuda-graph-trace=node` to see replayed kernels).
    #[arg(long, value_parser = ["on", "off"], default_value = "off")]
    graphs: String,
}

/// Counts the launches it sees.
#[derive(Default)]
struct LaunchCounter(AtomicU64);

impl LaunchObserver for LaunchCounter {
    fn before_launch(&self, _s: &Arc<CudaStream>, _m: KernelModule, _e: &str) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn after_launch(&self, _s: &Arc<CudaStream>, _m: KernelModule, _e: &str) {}
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.steps == 0 {
        return Err(UserError::new("--steps 0: profile at least one step").into());
    }
    if a.backend != "cuda" {
        return Err(UserError::new(format!(
            "--backend {}: profile wraps CUDA kernel launches, use `--backend cuda`",
            a.backend
        ))
        .into());
    }
    let source = a.weights.source()?;
    let be = CudaBackend::new(0).map_err(|e| UserError::new(format!("--backend cuda: {e:#}")))?;
    let emulated = be.device().is_emulated();

    let nvtx = match Nvtx::load() {
        Ok(n) => {
            eprintln!("NVTX: {}", n.path());
            Some(Arc::new(n))
        }
        Err(e) => {
            eprintln!(
                "warning: {e:#}\nwarning: running without NVTX ranges; kernels still show under \
                 their entry names"
            );
            None
        }
    };
    be.set_graphs(a.graphs == "on");
    let s = setup(&be, &source, a.size)?;
    if a.warmup > 0 {
        run_steps(&be, &s, a.warmup, |_| {}).context("warm-up steps")?;
    }

    let counter = Arc::new(LaunchCounter::default());
    let mut observers: Vec<Arc<dyn LaunchObserver>> = vec![counter.clone()];
    if let Some(n) = &nvtx {
        observers.push(Arc::new(NvtxLaunchRanges(n.clone())));
    }
    be.device()
        .set_launch_observer(Some(Arc::new(ObserverChain(observers))));
    // The stand-in driver does not implement cuProfilerStart; real drivers do (a no-op outside
    // a profiler).
    let profiler = if emulated {
        None
    } else {
        Some(cudarc::driver::Profiler::new().context("cuProfilerStart")?)
    };
    let push = |name: &str| {
        if let Some(n) = &nvtx {
            n.push(name);
        }
    };
    let pop = || {
        if let Some(n) = &nvtx {
            n.pop();
        }
    };
    let start = Instant::now();
    push("cyberhost");
    push("step 1");
    let steps = a.steps;
    let r = run_steps(&be, &s, steps, |i| {
        pop();
        if i + 1 < steps {
            push(&format!("step {}", i + 2));
        }
    });
    pop();
    drop(profiler);
    be.device().set_launch_observer(None);
    r.context("profiled steps")?;
    let secs = start.elapsed().as_secs_f64();

    let launches = counter.0.load(Ordering::Relaxed);
    let g = s.p.geometry;
    println!(
        "profiled {} step(s) of {}x{}, {}+{} frames on {}: {} kernel launches observed{}",
        steps,
        g.width,
        g.height,
        g.frames,
        g.motion,
        be.device().name(),
        launches,
        if emulated {
            " (stand-in driver: no profiler, no times)".to_string()
        } else {
            format!(", {:.3} ms wall per step", 1e3 * secs / steps as f64)
        }
    );
    println!(
        "NVTX ranges: {}",
        if nvtx.is_some() {
            "`cyberhost` > `step i` > `module/entry` per launch"
        } else {
            "none (libnvToolsExt not found)"
        }
    );
    Ok(ExitCode::SUCCESS)
}
