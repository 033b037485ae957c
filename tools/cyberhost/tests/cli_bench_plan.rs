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

/// `cyberhost plan --activations`: f32 doubles the step's activation bytes and arena and adds
/// the split passes to the executed work; the JSON lists every arena buffer.
#[test]
fn plan_tiny_json_in_bf16_and_f32() {
    let plan = |act: &str| {
        json_of(
            &["plan", "--preset", "tiny", "--activations", act, "--json"],
            &[],
        )
    };
    let (b, f) = (plan("bf16"), plan("f32"));
    assert_eq!(
        (b["activations"].as_str(), f["activations"].as_str()),
        (Some("bf16"), Some("f32"))
    );
    let (bs, fs) = (&b["step"], &f["step"]);
    let u = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(u(bs, "work_flops"), u(bs, "flops"));
    assert_eq!(u(fs, "flops"), u(bs, "flops"));
    let ratio = u(fs, "work_flops") as f64 / u(bs, "work_flops") as f64;
    assert!((2.0..3.0).contains(&ratio), "f32 work / bf16 work {ratio}");
    // twice the bytes of every buffer; the arena within alignment of twice
    let buffers = |v: &serde_json::Value| -> Vec<u64> {
        let list = v["buffers"].as_array().unwrap();
        assert!(!list.is_empty());
        list.iter().map(|r| r["bytes"].as_u64().unwrap()).collect()
    };
    let (bb, fb) = (buffers(bs), buffers(fs));
    assert_eq!(fb, bb.iter().map(|x| 2 * x).collect::<Vec<_>>());
    assert!(u(fs, "peak_bytes") >= 2 * u(bs, "peak_bytes") - 256 * bb.len() as u64);
    // the one-off graphs stay bf16
    assert_eq!(f["one_off"][0]["activations"], "bf16");
    assert_eq!(f["one_off"][0]["bytes"], b["one_off"][0]["bytes"]);
    // a bad value names the flag and the choices
    let o = cli_util::run(&["plan", "--activations", "f16"]);
    assert_eq!(o.status.code(), Some(2));
    let e = cli_util::stderr(&o);
    assert!(
        e.contains("--activations") && e.contains("bf16") && e.contains("f32"),
        "{e}"
    );
}
