//! Sampling, the GPU table, occupancy, the model's bounds and the report.

use gpu_model::counters::{Access, BlockAccumulator, LaunchAccumulator, LaunchInfo, TensorDtype};
use gpu_model::gpu::GPUS;
use gpu_model::model::{dram_bytes, occupancy};
use gpu_model::report::{
    append_jsonl, build, parse_jsonl, render_table, roofline_svg, to_json, write_roofline,
};
use gpu_model::sampling::{block_coords, plan, sample_blocks, scale_to_grid, Weighting, WorkSplit};
use gpu_model::{predict, Counters, GpuSpec};

#[test]
fn sampled_blocks_are_spread_and_include_first_and_last() {
    assert_eq!(sample_blocks(10, Some(4)), vec![0, 3, 6, 9]);
    assert_eq!(sample_blocks(5, None), vec![0, 1, 2, 3, 4]);
    assert_eq!(sample_blocks(5, Some(9)), vec![0, 1, 2, 3, 4]);
    assert_eq!(sample_blocks(7, Some(1)), vec![0]);
    for total in [2u64, 3, 17, 1000, 65_535 * 3] {
        for n in [2u64, 3, 7, 16, 64] {
            let s = sample_blocks(total, Some(n));
            assert_eq!(s.len() as u64, n.min(total));
            assert_eq!((s[0], *s.last().unwrap()), (0, total - 1));
            assert!(s.windows(2).all(|w| w[0] < w[1]), "{total} {n}: {s:?}");
            assert_eq!(s, sample_blocks(total, Some(n)), "deterministic");
        }
    }
    assert_eq!(block_coords(7, [3, 2, 2]), [1, 0, 1]);
}

#[test]
fn sampled_counters_scale_to_the_grid() {
    let mut l = LaunchAccumulator::new();
    for b in sample_blocks(8, Some(2)) {
        let mut acc = BlockAccumulator::new();
        acc.on_warp_inst(32);
        acc.on_global_access(
            Access::Load,
            4,
            &(0..32).map(|i| Some(b * 128 + 4 * i)).collect::<Vec<_>>(),
        );
        acc.on_mma(16, 8, 16, TensorDtype::F16);
        l.add_block(acc);
    }
    let c = l.finish(&LaunchInfo::new("k", [8, 1, 1], [32, 1, 1]));
    assert!(c.sampled);
    assert_eq!((c.blocks_total, c.blocks_executed), (8, 2));
    assert_eq!(
        (c.inst_executed, c.global_ld_requests, c.global_ld_sectors),
        (8, 8, 32)
    );
    assert_eq!(
        (c.tensor_inst, c.flop_tensor, c.flop_tensor_by_dtype["f16"]),
        (8, 8 * 4096, 8 * 4096)
    );
    assert_eq!(c.unique_read_sectors, 32);
    // A footprint cap bounds the extrapolated distinct sectors.
    let mut d = c.clone();
    d.blocks_executed = 2;
    d.unique_read_sectors = 8;
    d.block_unique_read_sectors = 8;
    d.read_footprint_cap_bytes = Some(320);
    d.blocks_total = 8;
    scale_to_grid(&mut d);
    assert_eq!(d.unique_read_sectors, 10);
}

#[test]
fn sampled_reads_are_capped_per_allocation() {
    // 8 blocks; every block reads one half of the 1 KiB panel A (even blocks the first 16
    // sectors, odd blocks the last 16: shared by 4 blocks each, on hardware it comes from DRAM
    // once) and its own 128-byte row of B (4 sectors); the launch also points at a write-only
    // 64 KiB output. 2 blocks run (0 and 7: no sector read by both, so nothing is broadcast).
    const A: u64 = 0x1000;
    const B: u64 = 0x10_0000;
    const C: u64 = 0x20_0000;
    let run = |allocs: Vec<(u64, u64)>| {
        let mut l = LaunchAccumulator::new();
        for b in sample_blocks(8, Some(2)) {
            let mut acc = BlockAccumulator::new();
            for r in (b % 2) * 4..(b % 2) * 4 + 4 {
                let lanes: Vec<_> = (0..32).map(|i| Some(A + r * 128 + 4 * i)).collect();
                acc.on_global_access(Access::Load, 4, &lanes);
            }
            let lanes: Vec<_> = (0..32).map(|i| Some(B + b * 128 + 4 * i)).collect();
            acc.on_global_access(Access::Load, 4, &lanes);
            l.add_block(acc);
        }
        let mut info = LaunchInfo::new("k", [8, 1, 1], [32, 1, 1]);
        info.read_footprint_cap_bytes = Some(1024 + 8 * 128 + 65536);
        info.read_allocations = allocs;
        l.finish(&info)
    };
    // Without the allocations: (32 + 2 * 4) sectors x 4, under the whole-launch cap.
    let old = run(Vec::new());
    assert_eq!(old.unique_read_sectors, 160);
    assert_eq!(old.read_footprint_cap_bytes, Some(1024 + 1024 + 65536));
    // Per allocation: A at most its 32 sectors, B 8 x 4; C is never read (not in the cap).
    let new = run(vec![(A, 1024), (B, 8 * 128), (C, 65536)]);
    assert_eq!(new.unique_read_sectors, 32 + 32);
    assert_eq!(new.read_footprint_cap_bytes, Some(1024 + 1024));
    // Sectors outside every listed allocation are extrapolated without a cap of their own.
    let part = run(vec![(B, 8 * 128)]);
    assert_eq!(part.unique_read_sectors, 32 * 4 + 32);
}

#[test]
fn broadcast_reads_count_once() {
    // 64 blocks; every block reads the same 1 KiB (gamma and beta: 32 sectors) and its own
    // 128-byte row of x (4 sectors). The exact footprint is 32 + 64 * 4 sectors.
    const G: u64 = 0x1000;
    const X: u64 = 0x10_0000;
    let run = |sample: Option<u64>, allocs: Vec<(u64, u64)>| {
        let mut l = LaunchAccumulator::new();
        for b in sample_blocks(64, sample) {
            let mut acc = BlockAccumulator::new();
            for r in 0..8 {
                let lanes: Vec<_> = (0..32).map(|i| Some(G + r * 128 + 4 * i)).collect();
                acc.on_global_access(Access::Load, 4, &lanes);
            }
            let lanes: Vec<_> = (0..32).map(|i| Some(X + b * 128 + 4 * i)).collect();
            acc.on_global_access(Access::Load, 4, &lanes);
            l.add_block(acc);
        }
        let mut info = LaunchInfo::new("k", [64, 1, 1], [32, 1, 1]);
        info.read_allocations = allocs;
        l.finish(&info)
    };
    let exact = run(None, Vec::new());
    assert_eq!(
        (exact.unique_read_sectors, exact.broadcast_read_sectors),
        (32 + 256, 32)
    );
    // Sampled (2 or 5 blocks), with or without the allocations (gamma inside a large one, as a
    // view of a weights or arena allocation is): gamma once, x extrapolated.
    for n in [2, 5] {
        for allocs in [Vec::new(), vec![(0, 1 << 30)]] {
            let c = run(Some(n), allocs.clone());
            assert!(c.sampled);
            assert_eq!(c.broadcast_read_sectors, 32, "{n} {allocs:?}");
            assert_eq!(c.unique_read_sectors, 32 + 256, "{n} {allocs:?}");
        }
    }
    // A sector only some of the executed blocks read is extrapolated as before: with 3 blocks
    // (0, 31/32, 63) and the first half of gamma read by even blocks only, it is not broadcast.
    let mut l = LaunchAccumulator::new();
    for b in sample_blocks(64, Some(3)) {
        let mut acc = BlockAccumulator::new();
        let rows = if b % 2 == 0 { 0..8 } else { 4..8 };
        for r in rows {
            let lanes: Vec<_> = (0..32).map(|i| Some(G + r * 128 + 4 * i)).collect();
            acc.on_global_access(Access::Load, 4, &lanes);
        }
        l.add_block(acc);
    }
    let c = l.finish(&LaunchInfo::new("k", [64, 1, 1], [32, 1, 1]));
    assert_eq!(c.broadcast_read_sectors, 16);
    // 16 broadcast + 16 others x 64 / 3, bounded by the scaled per-block sum
    assert_eq!(
        c.unique_read_sectors,
        16 + (16.0f64 * 64.0 / 3.0).round() as u64
    );
}

/// A persistent grid's split: `(T mod P)` blocks of `T / P + 1` tiles, then `T / P`.
fn strided(p: u64, t: u64) -> WorkSplit {
    WorkSplit::from_runs(&[(t % p, t / p + 1), (p - t % p, t / p)], p).unwrap()
}

#[test]
fn work_split_runs_must_cover_the_grid() {
    let s = WorkSplit::from_runs(&[(3, 2), (0, 9), (2, 2), (5, 1)], 10).unwrap();
    assert_eq!(
        s.runs(),
        &[(5, 2), (5, 1)],
        "empty runs dropped, equal neighbours merged"
    );
    assert_eq!(
        (
            s.total_units(),
            s.units_of(4),
            s.units_of(5),
            s.units_of(10)
        ),
        (15, 2, 1, 0)
    );
    let e = WorkSplit::from_runs(&[(3, 2), (5, 1)], 10).unwrap_err();
    assert!(e.contains("covers 8 blocks but the grid has 10"), "{e}");
    assert!(WorkSplit::from_runs(&[(u64::MAX, 1), (2, 1)], 10).is_err());
}

#[test]
fn sample_plan_runs_every_work_class() {
    // no split, or a split of one class: the spread blocks, uniformly scaled (unchanged rule)
    for split in [None, Some(strided(132, 264))] {
        let p = plan(132, Some(2), split.as_ref());
        assert_eq!(p.blocks, sample_blocks(132, Some(2)));
        assert_eq!(
            (p.weighting, p.factors.clone()),
            (Weighting::Uniform, vec![66.0])
        );
    }
    assert_eq!(plan(5, Some(9), None).weighting, Weighting::Exact);
    // 263 tiles on 132 blocks: 131 blocks of 2 tiles, 1 of 1
    let p = plan(132, Some(2), Some(&strided(132, 263)));
    assert_eq!(p.weighting, Weighting::WorkClasses);
    assert_eq!(
        (p.blocks.clone(), p.class_of.clone()),
        (vec![0, 131], vec![0, 1])
    );
    assert_eq!(p.factors, vec![131.0, 1.0]);
    // more blocks: given to the class with the most blocks per pick, spread within it
    let p = plan(10, Some(5), Some(&strided(10, 23)));
    assert_eq!(p.blocks, vec![0, 2, 3, 6, 9]);
    assert_eq!(p.class_of, vec![0, 0, 1, 1, 1]);
    assert_eq!(p.factors, vec![1.5, 7.0 / 3.0]);
    assert_eq!(
        p,
        plan(10, Some(5), Some(&strided(10, 23))),
        "deterministic"
    );
    // classes need not be contiguous: rows of a 2-D persistent grid (4 x 3 over 6 tiles each)
    let rows = WorkSplit::from_runs(&[(2, 2), (2, 1), (2, 2), (2, 1), (2, 2), (2, 1)], 12).unwrap();
    let p = plan(12, Some(2), Some(&rows));
    assert_eq!(
        (p.blocks.clone(), p.factors.clone()),
        (vec![0, 2], vec![6.0, 6.0])
    );
    // fewer blocks than classes: the spread blocks, scaled by units (23 / (3 + 2))
    let p = plan(10, Some(1), Some(&strided(10, 23)));
    assert_eq!(
        (p.weighting, p.blocks.clone()),
        (Weighting::WorkUnits, vec![0])
    );
    assert_eq!(p.factors, vec![23.0 / 3.0]);
}

/// Two work classes (blocks 0..3 run 3 tiles, 3..8 run 2): the class-weighted sample of blocks
/// 0 and 3 reproduces the full run's sums, the uniform rule does not.
#[test]
fn class_weighted_counters_equal_the_full_run() {
    let split = WorkSplit::from_runs(&[(3, 3), (5, 2)], 8).unwrap();
    let block = |b: u64| {
        let mut acc = BlockAccumulator::new();
        acc.on_warp_inst(32); // prologue
        for t in 0..split.units_of(b) {
            let tile = b + 8 * t;
            acc.on_warp_inst(32);
            acc.on_global_access(
                Access::Store,
                4,
                &(0..32)
                    .map(|i| Some(tile * 128 + 4 * i))
                    .collect::<Vec<_>>(),
            );
            acc.on_mma(16, 8, 16, TensorDtype::Bf16);
        }
        acc
    };
    let info = LaunchInfo::new("k", [8, 1, 1], [32, 1, 1]);
    let mut full = LaunchAccumulator::new();
    (0..8).for_each(|b| full.add_block_at(b, block(b)));
    let full = full.finish(&info);
    let p = plan(8, Some(2), Some(&split));
    assert_eq!(p.blocks, vec![0, 3]);
    let mut l = LaunchAccumulator::with_plan(&p);
    p.blocks.iter().for_each(|&b| l.add_block_at(b, block(b)));
    let c = l.finish(&info);
    assert!(c.sampled && !full.sampled);
    assert_eq!(c.sample_weighting.as_deref(), Some("work_classes"));
    assert_eq!(full.sample_weighting, None);
    assert_eq!((c.blocks_total, c.blocks_executed), (8, 2));
    assert_eq!((full.tensor_inst, full.flop_tensor), (19, 19 * 4096));
    assert_eq!(
        (
            c.inst_executed,
            c.tensor_inst,
            c.flop_tensor,
            c.flop_tensor_by_dtype.clone()
        ),
        (
            full.inst_executed,
            full.tensor_inst,
            full.flop_tensor,
            full.flop_tensor_by_dtype.clone()
        )
    );
    assert_eq!(
        (
            c.global_st_requests,
            c.global_st_sectors,
            c.unique_write_sectors
        ),
        (
            full.global_st_requests,
            full.global_st_sectors,
            full.unique_write_sectors
        )
    );
    // the old rule (blocks 0 and 7, times 4) counts 20 tiles
    let mut u = LaunchAccumulator::new();
    sample_blocks(8, Some(2))
        .into_iter()
        .for_each(|b| u.add_block(block(b)));
    let u = u.finish(&info);
    assert_eq!(u.sample_weighting.as_deref(), Some("uniform"));
    assert_eq!(u.tensor_inst, 20);
}

#[test]
fn gpu_table_is_complete_and_named() {
    let names: Vec<_> = GPUS.iter().map(|g| g.name).collect();
    assert_eq!(
        names,
        [
            "h100-sxm",
            "h100-pcie",
            "h200",
            "a100-sxm",
            "a6000",
            "l4",
            "rtx4090"
        ]
    );
    for g in GPUS {
        assert!(
            g.sms > 0 && g.boost_mhz > 0.0 && g.dram_gbs > 0.0 && g.l2_bytes > 0,
            "{}",
            g.name
        );
        assert!(g.tensor_bf16_tflops > g.fp32_tflops, "{}", g.name);
        // FP32 lanes per SM: 64 (GA100) or 128, i.e. 128 or 256 FLOP/clk.
        let per_clk = g.fp32_per_clk_sm();
        assert!(
            (per_clk - 128.0).abs() < 6.0 || (per_clk - 256.0).abs() < 12.0,
            "{} {per_clk}",
            g.name
        );
        assert!(!g.src.is_empty());
    }
    let e = GpuSpec::by_name("v100").unwrap_err();
    assert!(e.contains("h100-sxm") && e.contains("rtx4090"), "{e}");
    assert_eq!(GpuSpec::by_name(" H200 ").unwrap().name, "h200");
}

fn kernel(grid: u64, block: u64, regs: u32, smem: u64) -> Counters {
    Counters {
        kernel: "k".into(),
        grid_size: grid,
        block_size: block,
        blocks_total: grid,
        blocks_executed: grid,
        registers_per_thread: Some(regs),
        smem_static: smem,
        ..Default::default()
    }
}

#[test]
fn occupancy_limits() {
    let h100 = GpuSpec::by_name("h100-sxm").unwrap();
    assert_eq!(occupancy(&kernel(1, 256, 32, 0), h100), (8, "threads"));
    assert_eq!(occupancy(&kernel(1, 256, 128, 0), h100), (2, "registers"));
    assert_eq!(
        occupancy(&kernel(1, 128, 32, 100 * 1024), h100),
        (2, "shared")
    );
    assert_eq!(occupancy(&kernel(1, 32, 16, 0), h100), (32, "blocks"));
    let a6000 = GpuSpec::by_name("a6000").unwrap();
    assert_eq!(occupancy(&kernel(1, 1024, 32, 0), a6000), (1, "threads"));
}

#[test]
fn bounds_follow_the_dominant_unit() {
    let g = GpuSpec::by_name("h100-sxm").unwrap();
    // Streaming copy of 1 GiB: DRAM bound, ~ 2 x 1 GiB / 3.35 TB/s.
    let mut copy = kernel(1 << 18, 256, 16, 0);
    copy.unique_read_sectors = (1 << 30) / 32;
    copy.block_unique_read_sectors = copy.unique_read_sectors;
    copy.unique_write_sectors = (1 << 30) / 32;
    copy.global_ld_requests = (1 << 30) / 512;
    copy.global_ld_sectors = (1 << 30) / 32;
    copy.inst_executed = 4 * copy.global_ld_requests;
    let p = predict(&copy, g);
    assert_eq!(p.bound, "dram");
    let ideal = 2.0 * (1u64 << 30) as f64 / 3.35e12 * 1e6;
    assert!(
        (p.predicted_us - ideal - g.launch_us).abs() / ideal < 1e-9,
        "{p:?}"
    );
    assert!(p.sol_pct > 99.0 && p.sol_pct <= 100.0);
    let (r, w) = dram_bytes(&copy, g);
    assert_eq!((r, w), (1 << 30, 1 << 30));
    // Tensor GEMM-like: tensor bound at the dense bf16 rate, tail included.
    let mut mma = kernel(132 * 4, 128, 128, 32 * 1024);
    mma.flop_tensor = 1 << 44;
    mma.flop_tensor_by_dtype.insert("bf16".into(), 1 << 44);
    let p = predict(&mma, g);
    assert_eq!(p.bound, "tensor");
    assert!(
        (p.tensor_us - (1u64 << 44) as f64 / 989.4e12 * 1e6).abs() < 1.0,
        "{p:?}"
    );
    // One tiny block: the launch dominates.
    let mut tiny = kernel(1, 32, 16, 0);
    tiny.inst_executed = 10;
    assert_eq!(predict(&tiny, g).bound, "launch");
    // Low occupancy and a long chain of dependent loads: latency bound.
    let mut chase = kernel(1, 32, 16, 0);
    chase.inst_executed = 3 * 100_000;
    chase.global_ld_requests = 100_000;
    chase.global_ld_sectors = 100_000;
    chase.mem_round_trips = 100_000.0;
    chase.mem_wait_bytes = 3_200_000.0;
    chase.waiting_warps = 1;
    assert_eq!(predict(&chase, g).bound, "latency");
    // More waves, more time: the tail is whole blocks on the busiest SM.
    let mut a = kernel(132, 1024, 64, 0);
    a.inst_executed = 132 * 1_000_000;
    let mut b = a.clone();
    b.grid_size = 133;
    b.blocks_total = 133;
    b.inst_executed = 133 * 1_000_000;
    assert!(predict(&b, g).issue_us > 1.9 * predict(&a, g).issue_us);
}

#[test]
fn dram_rereads_when_footprint_exceeds_l2() {
    let g = GpuSpec::by_name("a6000").unwrap(); // 6 MB L2, 84 SMs
    let mut c = kernel(84 * 10, 1024, 32, 0); // 1 block/SM: 10 waves of 84
    c.unique_read_sectors = (64 << 20) / 32; // 64 MB footprint
    c.block_unique_read_sectors = c.blocks_total * (1 << 20) / 32; // 1 MB per block
    let (r, _) = dram_bytes(&c, g);
    // Each wave reads min(F, 84 MB) = 64 MB; 10 waves.
    assert_eq!(r, 10 * (64 << 20));
    c.unique_read_sectors = (4 << 20) / 32; // fits the L2: read once
    assert_eq!(dram_bytes(&c, g).0, 4 << 20);
    // 0.5 MB of each block's 1 MB is read by every block (broadcast): a wave reads it once,
    // 84 x 0.5 MB + 0.5 MB = 42.5 MB per wave instead of 64 MB.
    c.unique_read_sectors = (64 << 20) / 32;
    c.broadcast_read_sectors = (512 << 10) / 32;
    assert_eq!(dram_bytes(&c, g).0, 10 * (85 << 19));
    // a footprint that is all broadcast (every block reads the same 64 MB): once per wave
    c.block_unique_read_sectors = c.blocks_total * (64 << 20) / 32;
    c.broadcast_read_sectors = (64 << 20) / 32;
    assert_eq!(dram_bytes(&c, g).0, 10 * (64 << 20));
}

#[test]
fn report_table_json_and_roofline() {
    let g = GpuSpec::by_name("h100-sxm").unwrap();
    let mut rows = Vec::new();
    for i in 0..3u64 {
        let mut c = kernel(1024, 256, 64, 0);
        c.kernel = if i < 2 { "gemm".into() } else { "norm".into() };
        c.flop_fp32 = 1 << 30;
        c.inst_executed = 1 << 24;
        c.global_ld_requests = 1000;
        c.global_ld_sectors = 4000;
        c.shared_ld_bank_conflicts = 7;
        c.unique_read_sectors = 1 << 20;
        c.block_unique_read_sectors = 1 << 20;
        rows.push(c);
    }
    let text: String = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    let parsed = parse_jsonl(&text).unwrap();
    assert_eq!(parsed, rows);
    let err = parse_jsonl("{\"kernel\": \"x\"}\nnot json\n").unwrap_err();
    assert!(err.contains("line 1") || err.contains("line 2"), "{err}");
    let r = build(&parsed, g, None);
    assert_eq!(r.launches, 3);
    assert_eq!(r.kernels[0].kernel, "gemm");
    assert_eq!(r.kernels[0].launches, 2);
    assert_eq!(r.kernels[0].bank_conflicts, 14);
    assert_eq!(r.kernels[0].sectors_per_request, 4.0);
    let share: f64 = r.kernels.iter().map(|k| k.share_pct).sum();
    assert!((share - 100.0).abs() < 1e-9);
    let t = render_table(&r);
    for col in gpu_model::report::COLUMNS.iter().chain(&["gemm", "norm"]) {
        assert!(t.contains(col), "{col} missing in\n{t}");
    }
    let j: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
    assert_eq!(j["kernels"].as_array().unwrap().len(), 2);
    let measured = [("gemm".to_string(), 10.0)].into_iter().collect();
    let rm = build(&parsed, g, Some(&measured));
    assert!(rm.kernels[0].error_pct.is_some() && render_table(&rm).contains("measured_us"));
    let svg = roofline_svg(&r, g).unwrap();
    assert!(svg.contains("<svg") && svg.contains("gemm"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roofline.svg");
    write_roofline(&r, g, &path).unwrap();
    assert!(std::fs::read_to_string(&path).unwrap().contains("</svg>"));
    assert!(write_roofline(&r, g, &dir.path().join("missing/roofline.svg")).is_err());
}

#[test]
fn stats_file_appends_rows() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("stats.jsonl");
    let a = kernel(4, 64, 32, 0);
    let mut b = kernel(8, 128, 40, 1024);
    b.kernel = "other".into();
    append_jsonl(&p, std::slice::from_ref(&a)).unwrap();
    append_jsonl(&p, &[b.clone(), a.clone()]).unwrap();
    assert_eq!(
        parse_jsonl(&std::fs::read_to_string(&p).unwrap()).unwrap(),
        vec![a.clone(), b, a]
    );
    let e = append_jsonl(&dir.path().join("no/such/dir.jsonl"), &[]).unwrap_err();
    assert!(e.contains("stats file"), "{e}");
}

#[test]
fn rows_without_emulator_ingredients_use_their_nsight_values() {
    let g = GpuSpec::by_name("a100-sxm").unwrap();
    let mut c = kernel(108 * 8, 256, 32, 0);
    c.global_ld_requests = 1 << 20;
    c.global_ld_sectors = 4 << 20;
    c.inst_executed = 4 << 20;
    // No footprint: every requested sector counts, 128 MiB.
    assert_eq!(gpu_model::model::dram_bytes(&c, g), (128 << 20, 0));
    c.dram_bytes_read = Some(1 << 30);
    c.dram_bytes_write = Some(1 << 29);
    assert_eq!(gpu_model::model::dram_bytes(&c, g), (1 << 30, 1 << 29));
    let p = predict(&c, g);
    assert_eq!(p.bound, "dram");
    assert!((p.dram_us - 1.5 * (1u64 << 30) as f64 / 2039e9 * 1e6).abs() < 1e-6);
    // Operand type aliases reach the right tensor rate.
    assert_eq!(
        GpuSpec::by_name("h100-sxm").unwrap().tensor_tflops("e4m3"),
        Some(1978.8)
    );
    assert_eq!(g.tensor_tflops("f8"), None);
}
