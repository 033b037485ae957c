//! `cyberhost bench --backend cuda --gpu NAME` on the stand-in driver: counters from the
//! emulator, the gpu-model's prediction per kernel, the planner's floor; re-prediction of saved
//! counters for another GPU; bad GPU names. Kept small (tiny preset, 32x32, sampled blocks).

mod cli_util;
use cli_util::{json_ok as json, kernel_rows, on_stand_in, stderr, TINY_CUDA};

fn cyberhost(args: &[&str]) -> std::process::Output {
    on_stand_in(args)
        .env_remove("PTX_EMU_STATS")
        .env_remove("PTX_EMU_SAMPLE_BLOCKS")
        .output()
        .unwrap()
}

#[test]
fn bench_gpu_on_the_stand_in_predicts_per_kernel_and_repredicts_saved_counters() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.jsonl");
    let svg = dir.path().join("roofline.svg");
    let (s, p) = (stats.to_str().unwrap(), svg.to_str().unwrap());
    let base = [&["bench"][..], &TINY_CUDA, &["--json"]].concat();
    let mut args = base.to_vec();
    args.extend([
        "--gpu",
        "h100-sxm",
        "--sample-blocks",
        "2",
        "--save-stats",
        s,
        "--plot",
        p,
    ]);
    let o = cyberhost(&args);
    let h = json(&o);
    // the stand-in says that device memory read back after a sampled launch is not valid
    assert!(stderr(&o).contains("NOT valid"));
    assert_eq!(h["gpu"], "h100-sxm");
    assert_eq!(h["emulated"], true);
    assert_eq!(
        (h["sampled"].clone(), h["outputs_valid"].clone()),
        (true.into(), false.into())
    );
    let step = h["predicted_step_ms"].as_f64().unwrap();
    let floor = h["floor_step_ms"].as_f64().unwrap();
    assert!(
        step > 0.0 && floor > 0.0 && step >= floor,
        "{step} ms vs floor {floor} ms"
    );
    let (kernels, sum) = kernel_rows(&h, "predicted_us");
    assert!(
        (sum / 1e3 - step).abs() < 1e-6 * step.max(1.0),
        "rows sum to the step"
    );
    for key in [
        "kernel",
        "launches",
        "predicted_us",
        "share_pct",
        "bound",
        "sol_pct",
        "achieved_tflops",
        "dram_gbs",
        "bank_conflicts",
        "sectors_per_request",
    ] {
        assert!(!kernels[0][key].is_null(), "{key} in {}", kernels[0]);
    }
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    // Every saved row is one launch with Nsight-named counters.
    let text = std::fs::read_to_string(&stats).unwrap();
    let launches = h["launches_per_step"].as_f64().unwrap();
    assert_eq!(text.lines().count() as f64, launches);
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            row["smsp__inst_executed.sum"].as_u64().unwrap() > 0,
            "{row}"
        );
        // committed PTX: registers from the pinned ptxas report
        assert!(
            row["launch__registers_per_thread"].as_u64().unwrap() > 0,
            "{row}"
        );
        assert!(row["predicted_us"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["blocks_executed"].as_u64() <= row["blocks_total"].as_u64());
        // A launch that reads global memory reads DRAM: its read footprint is known from the
        // pointers in its (struct) parameters and bounds, never zeroes, the extrapolated reads.
        if row["emu__block_unique_read_sectors"].as_u64().unwrap() > 0 {
            assert!(
                row["emu__read_footprint_cap_bytes"].as_u64().unwrap() > 0,
                "{row}"
            );
            assert!(row["dram__bytes_read.sum"].as_u64().unwrap() > 0, "{row}");
        }
    }

    // Saved counters, another GPU: same launches, a slower card predicts a slower step.
    let mut args = base.to_vec();
    args.extend(["--gpu", "a100-sxm", "--from-stats", s]);
    let a = json(&cyberhost(&args));
    assert_eq!(a["launches_per_step"], h["launches_per_step"]);
    assert!(a["predicted_step_ms"].as_f64().unwrap() > step);
    assert!(a["floor_step_ms"].as_f64().unwrap() > floor);

    // Unknown GPU: exit 2, the valid names listed.
    let o = cyberhost(&[&["bench"][..], &TINY_CUDA[..4], &["--gpu", "h900"]].concat());
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("h900") && err.contains("h100-sxm") && err.contains("a100-sxm"),
        "{err}"
    );
}
