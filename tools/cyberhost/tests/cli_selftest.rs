//! `cyberhost selftest`: exit 3 with a clear message without a GPU; on the
//! stand-in driver (PTX emulator) it checks ops against the CPU reference.

mod cli_util;
use cli_util::{bin, on_stand_in, stderr, stdout};

#[test]
fn without_a_driver_selftest_exits_3_and_says_why() {
    let o = bin()
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
    let o = on_stand_in(&["selftest", "--filter", "layer_norm", "--json"])
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["op"], "layer_norm");
    assert_eq!(row["result"], "ok");
    assert!(row["rel_l2"].as_f64().unwrap() < 2e-2);
    assert!(row["device"].as_str().unwrap().contains("ptx-emu"));
}
