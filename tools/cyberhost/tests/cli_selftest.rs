//! `cyberhost selftest`: exit 3 with a clear message without a GPU; on the
//! stand-in driver (PTX emulator) it checks ops against the CPU reference.

use std::path::PathBuf;
use std::process::Command;

fn stand_in() -> PathBuf {
    // The stand-in driver is built beside the test binaries (target/<profile>/).
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_cyberhost"));
    let dir = exe.parent().unwrap().to_path_buf();
    [
        dir.join("libptx_emu_driver.so"),
        dir.join("deps").join("libptx_emu_driver.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| dir.join("libptx_emu_driver.so"))
}

#[test]
fn without_a_driver_selftest_exits_3_and_says_why() {
    let o = Command::new(env!("CARGO_BIN_EXE_cyberhost"))
        .arg("selftest")
        .env_remove("CYBERHOST_CUDA_DRIVER")
        .env("LD_LIBRARY_PATH", "")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("device:") {
        return; // a machine with a real NVIDIA driver: nothing to check here
    }
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("no CUDA driver found"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn on_the_stand_in_driver_selftest_checks_ops() {
    let lib = stand_in();
    assert!(
        lib.is_file(),
        "stand-in driver not built at {}",
        lib.display()
    );
    let o = Command::new(env!("CARGO_BIN_EXE_cyberhost"))
        .args(["selftest", "--filter", "layer_norm", "--json"])
        .env("CYBERHOST_CUDA_DRIVER", &lib)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["op"], "layer_norm");
    assert_eq!(row["result"], "ok");
    assert!(row["rel_l2"].as_f64().unwrap() < 2e-2);
    assert!(row["device"].as_str().unwrap().contains("ptx-emu"));
}
