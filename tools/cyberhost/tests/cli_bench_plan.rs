//! `cyberhost bench` and `cyberhost plan` report what programs need, as JSON.

mod cli_util;

fn json_of(args: &[&str], envs: &[(&str, &str)]) -> serde_json::Value {
    let mut c = cli_util::bin();
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    cli_util::json_ok(&c.output().unwrap())
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
    for args in [["bench", "--steps", "0"], ["bench", "--backend", "tpu"]] {
        assert_eq!(cli_util::run(&args).status.code(), Some(2), "{args:?}");
    }
}
