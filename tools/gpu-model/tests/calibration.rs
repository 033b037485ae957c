//! Calibration against published optimisation series: every step's predicted throughput within
//! 2x of the published one, and the steps' ranking preserved (docs/profiling.md has the table).
//!
//! Counters: `calibration::trace_counters` (warp-level replay of each kernel's memory and math
//! instructions, 4 sampled blocks scaled to the grid); executed warp instructions measured by
//! running the committed PTX through `ptx-emu` at n = 128 and 256 and extrapolating
//! `a·n³ + b·n²` (exact for fixed-tile kernels: per-k-step work ∝ n³, per-block work ∝ n²).
//! When the emulator's own counters land, `step_counters` becomes one sampled emulator launch.

use gpu_model::calibration::{series, trace_counters, Kernel};
use gpu_model::{predict, Counters, GpuSpec};
use ptx_emu::{LaunchConfig, LaunchOptions, Memory, Module};
use std::path::Path;

const SAMPLE_BLOCKS: u64 = 4;

fn ptx(k: Kernel) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("calibration/ptx")
        .join(k.ptx_file());
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (warp, thread) instructions of one launch of `k` at size `n` in the current emulator.
fn emulate(k: Kernel, n: u64) -> (u64, u64) {
    let module = Module::parse(&ptx(k)).expect("calibration PTX parses");
    let mut mem = Memory::new();
    let elem = if k == Kernel::Hgemm1Simt { 2 } else { 4 };
    let bytes = (n * n * elem) as usize;
    let (a, b, c) = (
        mem.alloc(bytes).unwrap(),
        mem.alloc(bytes).unwrap(),
        mem.alloc(bytes).unwrap(),
    );
    let s = k.shape(n);
    let cfg = LaunchConfig {
        grid: s.grid,
        block: s.block,
        dynamic_smem_bytes: 0,
    };
    let ni = (n as i32).to_le_bytes();
    let (fa, fb) = (1.0f32.to_le_bytes(), 0.0f32.to_le_bytes());
    let (pa, pb, pc) = (a.to_le_bytes(), b.to_le_bytes(), c.to_le_bytes());
    let params: Vec<&[u8]> = if k == Kernel::Hgemm1Simt {
        vec![&ni, &ni, &ni, &pa, &pb, &pc]
    } else {
        vec![&ni, &ni, &ni, &fa, &pa, &pb, &fb, &pc]
    };
    let opts = LaunchOptions {
        schedules: 1,
        detect_races: false,
        detect_uninit_shared: false,
        ..Default::default()
    };
    let st = ptx_emu::launch(&module, k.entry(), &cfg, &params, &mut mem, &opts)
        .unwrap_or_else(|f| panic!("{}: {f}", k.entry()));
    (st.warp_instructions, st.thread_instructions)
}

/// Fit `a·n³ + b·n²` through two sizes and evaluate at `n`.
fn extrapolate(n1: u64, v1: u64, n2: u64, v2: u64, n: u64) -> u64 {
    let (x1, x2, x) = (n1 as f64, n2 as f64, n as f64);
    // v = a n^3 + b n^2  =>  v/n^2 = a n + b
    let (y1, y2) = (v1 as f64 / (x1 * x1), v2 as f64 / (x2 * x2));
    let a = (y2 - y1) / (x2 - x1);
    let b = y1 - a * x1;
    ((a * x + b) * x * x).round() as u64
}

/// The counters of one calibration step (the function to switch to the emulator's counters).
fn step_counters(k: Kernel, n: u64) -> Counters {
    let inst = k.emulator_runs().then(|| {
        let (w1, _) = emulate(k, 128);
        let (w2, _) = emulate(k, 256);
        extrapolate(128, w1, 256, w2, n)
    });
    trace_counters(k, n, Some(SAMPLE_BLOCKS), inst)
}

#[test]
fn extrapolation_is_exact_for_cubic_plus_quadratic() {
    let f = |n: u64| 3 * n * n * n + 7 * n * n;
    assert_eq!(extrapolate(128, f(128), 256, f(256), 4096), f(4096));
}

#[test]
fn published_series_within_2x_and_ranked() {
    let mut failures = Vec::new();
    for s in series() {
        let g = GpuSpec::by_name(s.gpu).unwrap();
        let flops = 2.0 * (s.n as f64).powi(3);
        println!(
            "\n{} on {} (n = {}), source: {}",
            s.name, g.marketing, s.n, s.source
        );
        println!(
            "{:<48} {:>12} {:>12} {:>7} {:>8}",
            "step", "published", "predicted", "ratio", "bound"
        );
        let mut predicted = Vec::new();
        for st in &s.steps {
            let c = step_counters(st.kernel, s.n);
            let p = predict(&c, g);
            let gf = flops / p.predicted_us / 1e3;
            let ratio = gf / st.published_gflops;
            println!(
                "{:<48} {:>12.1} {:>12.1} {:>7.2} {:>8}   (dram {:.0} tensor {:.0} fp32 {:.0} issue {:.0} shared {:.0} latency {:.0} us; {} blocks/SM)",
                st.label, st.published_gflops, gf, ratio, p.bound, p.dram_us, p.tensor_us, p.fp32_us, p.issue_us, p.shared_us, p.latency_us, p.blocks_per_sm
            );
            if !(0.5..=2.0).contains(&ratio) {
                failures.push(format!(
                    "{} / {}: predicted {gf:.0} GFLOP/s vs published {:.0} (x{ratio:.2})",
                    s.name, st.label, st.published_gflops
                ));
            }
            predicted.push((st.published_gflops, gf, st.label));
        }
        for w in predicted.windows(2) {
            let (p0, q0, l0) = w[0];
            let (p1, q1, l1) = w[1];
            if (p1 > p0) != (q1 > q0) {
                failures.push(format!(
                    "{}: ranking of {l0:?} and {l1:?} not preserved ({q0:.0} vs {q1:.0} predicted)",
                    s.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "calibration failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn shapes_use_the_committed_ptxas_registers() {
    for s in series() {
        // The Hopper series' numbers are for sm_90a, the A6000's for sm_8x (reported as sm_80).
        let arch = if s.gpu.starts_with("h1") {
            "sm_90a"
        } else {
            "sm_80"
        };
        for st in &s.steps {
            let k = st.kernel;
            let rep_path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("calibration/reports")
                .join(k.ptx_file().replace(".ptx", ".txt"));
            let rep = std::fs::read_to_string(&rep_path).unwrap();
            let regs = gpu_model::counters::registers_from_report(&rep, k.entry(), arch);
            assert_eq!(regs, Some(k.shape(s.n).regs), "{} ({arch})", k.entry());
        }
    }
}
