//! Calibration against published optimisation series: every step's predicted throughput within
//! 2x of the published one, and the steps' ranking preserved (docs/profiling.md has the table).
//!
//! Counters: one sampled launch of the committed PTX in the emulator (`ptx_emu::launch_counted`,
//! 4 blocks scaled to the grid) for every kernel the emulator runs; the Hopper kernels (wgmma,
//! TMA, mbarrier) use `calibration::trace_counters`, the warp-level replay of each kernel's
//! memory and math instructions, with the non-memory instructions counted from the PTX loops.

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

/// Counters of one launch of `k` at size `n` from the emulator itself (`ptx_emu::launch_counted`):
/// `SAMPLE_BLOCKS` blocks spread over the grid run (first and last included) and the counters are
/// scaled to the grid, as `PTX_EMU_SAMPLE_BLOCKS` does on the stand-in driver.
fn emulated_counters(k: Kernel, n: u64) -> Counters {
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
        dynamic_smem_bytes: s.smem_dynamic as u32,
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
    let call = ptx_emu::KernelCall {
        module: &module,
        kernel: k.entry(),
        cfg: &cfg,
        params: &params,
    };
    let (_, acc) = ptx_emu::launch_counted(call, &mut mem, &opts, Some(SAMPLE_BLOCKS))
        .unwrap_or_else(|f| panic!("{}: {f}", k.entry()));
    // reads bounded by the allocations the pointer parameters point into (as the stand-in
    // driver bounds them)
    acc.finish(&s.launch_info(k, 3 * bytes as u64))
}

/// The counters of one calibration step: the emulator's own (sampled) counters where it runs the
/// kernel (the sm_80 series); the warp-level replay for the Hopper kernels (wgmma, TMA and
/// mbarrier do not run in the emulator yet).
fn step_counters(k: Kernel, n: u64) -> Counters {
    if k.emulator_runs() {
        emulated_counters(k, n)
    } else {
        trace_counters(k, n, Some(SAMPLE_BLOCKS), None)
    }
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
