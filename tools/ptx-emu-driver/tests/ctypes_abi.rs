//! Runs `driver_ctypes.py`: the stand-in driver's raw C ABI driven from Python `ctypes` (no
//! cudarc), with a correct kernel checked against a host reference and each broken kernel
//! checked for its CUDA error code (700 out-of-bounds, 719 race / barrier divergence /
//! uninitialised shared read) and for the sticky context error that follows.

use std::path::Path;
use std::process::Command;

mod util;
use util::driver_path;

#[test]
fn raw_c_abi_through_ctypes() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let out = Command::new("python3")
        .arg(here.join("driver_ctypes.py"))
        .arg(driver_path())
        .arg(here.join("ptx/driver_test_kernels.ptx"))
        .output()
        .expect("python3 is required for this test (it drives the C ABI through ctypes)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "driver_ctypes.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"));
    // The driver prints each fault (kernel, PTX line, thread/block) to stderr.
    for kernel in [
        "oob_write_f32",
        "smem_race_f32",
        "barrier_divergence_f32",
        "uninit_smem_f32",
    ] {
        assert!(
            stderr.contains(&format!("kernel {kernel}")),
            "no fault report for {kernel}:\n{stderr}"
        );
    }
}
