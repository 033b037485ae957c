//! `gpu-report` on a stats file: table, JSON, plot, and errors that name the problem.

use gpu_model::calibration::{trace_counters, Kernel};
use gpu_model::report::append_jsonl;
use std::process::Command;

fn gpu_report(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_gpu-report"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn report_from_a_stats_file() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.jsonl");
    let rows = [
        trace_counters(Kernel::Sgemm4OneD, 256, Some(2), None),
        trace_counters(Kernel::Sgemm6Vectorize, 256, Some(2), None),
    ];
    append_jsonl(&stats, &rows).unwrap();
    let s = stats.to_str().unwrap();
    let (rc, out, err) = gpu_report(&["--gpu", "a100-sxm", s]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        out.contains("sgemm4_1d") && out.contains("sgemm6_vectorize") && out.contains("sampled"),
        "{out}"
    );
    let plot = dir.path().join("roofline.svg");
    let (rc, out, err) = gpu_report(&[
        "--gpu",
        "h200",
        s,
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["gpu"], "h200");
    assert_eq!(j["kernels"].as_array().unwrap().len(), 2);
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));

    let (rc, _, err) = gpu_report(&["--gpu", "v100", s]);
    assert_eq!(rc, 2);
    assert!(
        err.contains("unknown GPU") && err.contains("h100-sxm"),
        "{err}"
    );
    let (rc, _, err) = gpu_report(&[
        "--gpu",
        "l4",
        dir.path().join("missing.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(rc, 2);
    assert!(
        err.contains("cannot read") && err.contains("PTX_EMU_STATS"),
        "{err}"
    );
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "not json\n").unwrap();
    let (rc, _, err) = gpu_report(&["--gpu", "l4", bad.to_str().unwrap()]);
    assert_eq!(rc, 2);
    assert!(err.contains("line 1"), "{err}");
    let bad_plot = dir.path().join("no/dir/r.svg");
    let (rc, _, err) = gpu_report(&["--gpu", "l4", s, "--plot", bad_plot.to_str().unwrap()]);
    assert_eq!(rc, 2);
    assert!(err.contains("cannot write"), "{err}");
}
