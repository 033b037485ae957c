//! `cyberhost bench` and `cyberhost plan` report what programs need, as JSON.

use std::process::Command;

fn json_of(args: &[&str], envs: &[(&str, &str)]) -> serde_json::Value {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cyberhost"));
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn bench_tiny_cpu_json_carries_costs_and_times() {
    let v = json_of(
        &[
            "bench", "--preset", "tiny", "--steps", "1", "--warmup", "0", "--json",
        ],
        &[],
    );
    assert!(v["flops_per_step"].as_u64().unwrap() > 1_000_000_000);
    assert!(v["bytes_per_step"].as_u64().unwrap() > 0);
    assert!(v["arena_bytes"].as_u64().unwrap() > 0);
    assert!(v["arena_bytes"].as_u64().unwrap() < v["naive_activation_bytes"].as_u64().unwrap());
    assert!(v["step_seconds"]["median"].as_f64().unwrap() > 0.0);
    assert_eq!(v["batch"], 2);
}

#[test]
fn bench_rejects_bad_flags() {
    let o = Command::new(env!("CARGO_BIN_EXE_cyberhost"))
        .args(["bench", "--steps", "0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(env!("CARGO_BIN_EXE_cyberhost"))
        .args(["bench", "--backend", "tpu"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
