//! `cyberhost bench` on the stand-in driver (PTX emulator) reports counts without times, and
//! `cyberhost profile` runs there without libnvToolsExt, saying so. Kept small (32x32, one
//! warm-up + one step): the emulator is slow.

use std::path::PathBuf;
use std::process::Command;

mod cli_util;
use cli_util::{bin, json_ok, kernel_rows, on_stand_in, stderr, stdout, TINY_CUDA};

/// `cyberhost CMD` on the tiny preset, CUDA backend at 32x32, with `warmup` warm-up steps,
/// one timed step and `extra` flags, on the stand-in driver.
fn tiny_on_stand_in(cmd: &str, warmup: &str, extra: &[&str]) -> Command {
    let steps = ["--warmup", warmup, "--steps", "1"];
    let mut c = on_stand_in(&[&[cmd][..], &TINY_CUDA, &steps, extra].concat());
    // One warp schedule per launch: half the emulator time, same counts.
    c.env("PTX_EMU_SCHEDULES", "1");
    c
}

#[test]
fn bench_tiny_cuda_json_on_the_stand_in_carries_counts_not_times() {
    let extra = ["--kernel-steps", "1", "--json"];
    let o = tiny_on_stand_in("bench", "1", &extra).output().unwrap();
    let v = json_ok(&o);
    assert_eq!(v["schema"], "cyberhost-bench/2");
    assert_eq!(v["emulated"], true);
    assert!(v["device"].as_str().unwrap().contains("ptx-emu"));
    assert_eq!(v["timed_steps"], 1);
    // Costs of one step: counted by the driver, traced, planned.
    let launches = v["launches_per_step"].as_f64().unwrap();
    assert!(launches > 100.0, "{launches}");
    assert!(v["flops_per_step"].as_u64().unwrap() > 100_000_000);
    assert!(v["bytes_per_step"].as_u64().unwrap() > 1_000_000);
    let arena = v["arena_bytes"].as_u64().unwrap();
    assert!(arena > 0 && arena < v["naive_activation_bytes"].as_u64().unwrap());
    // No times on the emulator: null, never 0.
    assert!(v["step_seconds"].is_null());
    assert!(v["achieved_tflops"].is_null());
    assert!(v["per_kernel_times"].is_null());
    assert!(v["device_limits"].is_null());
    assert!(v["telemetry"]["unavailable"].as_str().is_some());
    // Per-kernel counts from the kernel pass (graphs off): launches add up to the plain step's,
    // every kernel executed instructions, none has a time.
    let (kernels, sum) = kernel_rows(&v, "launches_per_step");
    assert!(sum > 100.0, "{sum}");
    for k in kernels {
        assert!(k["total_ms"].is_null(), "{k}");
        assert!(k["thread_instructions"].as_u64().unwrap() > 0, "{k}");
    }
    assert!(v["thread_instructions_per_step"].as_f64().unwrap() > 1e6);
}

#[test]
fn profile_on_the_stand_in_without_nvtx_says_so_and_runs() {
    let o = tiny_on_stand_in("profile", "0", &[])
        .env("CYBERHOST_NVTX_LIB", "/nonexistent/libnvToolsExt.so.1")
        .output()
        .unwrap();
    let (err, out) = (stderr(&o), stdout(&o));
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    if !err.contains("NVTX: ") {
        // No libnvToolsExt on this machine (the usual CI case).
        assert!(err.contains("NVTX unavailable"), "{err}");
        assert!(err.contains("CYBERHOST_NVTX_LIB"), "{err}");
        assert!(out.contains("none (libnvToolsExt not found)"), "{out}");
    }
    assert!(out.contains("kernel launches observed"), "{out}");
}

#[test]
fn profile_help_prints_the_nsight_command_lines() {
    let o = bin().args(["profile", "--help"]).output().unwrap();
    let out = stdout(&o);
    assert!(o.status.success());
    assert!(out.contains("nsys profile --trace=cuda,nvtx"), "{out}");
    assert!(out.contains("ncu --profile-from-start off"), "{out}");
}

#[test]
fn bench_cpu_json_has_the_new_keys() {
    let v = json_ok(&cli_util::run(&[
        "bench", "--preset", "tiny", "--size", "32x32", "--warmup", "0", "--steps", "2", "--json",
    ]));
    assert_eq!(v["schema"], "cyberhost-bench/2");
    let s = &v["step_seconds"];
    let (min, med, max) = (
        s["min"].as_f64().unwrap(),
        s["median"].as_f64().unwrap(),
        s["max"].as_f64().unwrap(),
    );
    assert!(0.0 < min && min <= med && med <= max, "{s}");
    assert!(s["mean"].as_f64().unwrap() > 0.0);
    assert_eq!(s["all"].as_array().unwrap().len(), 2);
    assert!(v["achieved_tflops"].as_f64().unwrap() > 0.0);
    assert_eq!(v["device_limits_note"], "unknown device: no % of peak");
    assert!(v["percent_of_peak"].is_null());
    assert!(v["graphs"].is_null());
    assert_eq!(v["kernels"].as_array().unwrap().len(), 0);
    assert!(v["telemetry"]["unavailable"]
        .as_str()
        .unwrap()
        .contains("cpu"));
}

#[test]
fn compare_script_byte_compiles() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../benches/compare/compare_unet_step.py");
    assert!(script.is_file(), "{}", script.display());
    let out = tempfile::tempdir().unwrap();
    let o = match Command::new("python3")
        .args([
            "-c",
            "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
        ])
        .arg(&script)
        .arg(out.path().join("compare_unet_step.pyc"))
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: no python3 ({e})");
            return;
        }
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
