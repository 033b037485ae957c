//! Profiling counters (`ptx_emu::launch_counted`, docs/profiling.md) on hand-written kernels whose
//! Nsight Compute counts can be derived by hand (tests/ptx/counters.ptx), exact and sampled.
mod common;
use common::*;
use gpu_model::sampling::WorkSplit;
use gpu_model::{Counters, LaunchInfo};
use ptx_emu::*;

/// Every detector on, 2 schedules (the second must not count), blocks on `threads` threads;
/// `shared32` reads words it never wrote (to get every stride from one store): no
/// uninitialised-read detector there.
fn opts(kernel: &str, threads: u32) -> LaunchOptions {
    LaunchOptions {
        threads,
        detect_uninit_shared: kernel != "shared32",
        ..LaunchOptions::with_checks(Checks::Full)
    }
}

/// Launch `kernel` with counters: `sample` blocks at most; the finished counters.
fn counted(
    kernel: &str,
    grid: u32,
    block: u32,
    params: &[Vec<u8>],
    mem: &mut Memory,
    sample: Option<u64>,
    threads: u32,
) -> Counters {
    let m = module("counters.ptx");
    let p: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
    let c = cfg([grid, 1, 1], [block, 1, 1], 0);
    let call = KernelCall {
        module: &m,
        kernel,
        cfg: &c,
        params: &p,
    };
    let (_, acc) = launch_counted(call, mem, &opts(kernel, threads), sample)
        .unwrap_or_else(|f| panic!("{kernel}: {f}"));
    acc.finish(&LaunchInfo::new(kernel, c.grid, c.block))
}

fn ptr(a: u64) -> Vec<u8> {
    a.to_le_bytes().to_vec()
}

/// `ld32` with a 32-bit element stride on one warp: returns the counters.
fn ld32(stride: u32) -> Counters {
    let mut mem = Memory::new();
    let inp = upload(&mut mem, &f32_bytes(&rand_f32(32 * 32, 1)));
    let out = mem.alloc(32 * 4).unwrap();
    let params = [ptr(inp), ptr(out), stride.to_le_bytes().to_vec()];
    counted("ld32", 1, 32, &params, &mut mem, None, 1)
}

#[test]
fn global_sectors_per_request() {
    let c = ld32(1);
    // 16 PTX instructions (ret included), every lane active.
    assert_eq!(c.inst_executed, 16);
    assert_eq!(c.thread_inst_executed, 16 * 32);
    assert_eq!((c.global_ld_requests, c.global_ld_sectors), (1, 4));
    assert_eq!((c.global_st_requests, c.global_st_sectors), (1, 4));
    assert_eq!(c.flop_fp32, 32 * 2, "one fma.f32 per lane");
    // the fma is the first use of the loaded register: one round trip of 4 sectors
    assert_eq!(c.waiting_warps, 1);
    assert_eq!(c.mem_round_trips, 1.0);
    assert_eq!(c.mem_wait_bytes, 128.0);
    assert_eq!((c.unique_read_sectors, c.unique_write_sectors), (4, 4));
    assert_eq!(
        c.l1_global_wavefronts, 2,
        "one 128-B line loaded, one stored"
    );
    assert!(!c.sampled);

    let c = ld32(32);
    assert_eq!((c.global_ld_requests, c.global_ld_sectors), (1, 32));
    assert_eq!((c.global_st_requests, c.global_st_sectors), (1, 4));

    let mut mem = Memory::new();
    let inp = upload(&mut mem, &f32_bytes(&rand_f32(32 * 4, 2)));
    let out = mem.alloc(32 * 16).unwrap();
    let c = counted("ld128", 1, 32, &[ptr(inp), ptr(out)], &mut mem, None, 1);
    assert_eq!((c.global_ld_requests, c.global_ld_sectors), (1, 16));
    assert_eq!((c.global_st_requests, c.global_st_sectors), (1, 16));
    assert_eq!(
        download(&mem, out, 32 * 16),
        download(&mem, inp, 32 * 16),
        "counting does not change results"
    );
}

#[test]
fn shared_wavefronts_by_stride() {
    for (stride, wavefronts) in [(1u32, 1u64), (2, 2), (32, 32), (33, 1), (0, 1)] {
        let mut mem = Memory::new();
        let out = mem.alloc(32 * 4).unwrap();
        let params = [ptr(out), stride.to_le_bytes().to_vec()];
        let c = counted("shared32", 1, 32, &params, &mut mem, None, 1);
        assert_eq!(
            (c.shared_st_inst, c.shared_st_wavefronts),
            (1, 1),
            "stride-1 store"
        );
        assert_eq!(c.shared_st_bank_conflicts, 0);
        assert_eq!(c.shared_ld_inst, 1);
        assert_eq!(c.shared_ld_wavefronts, wavefronts, "load stride {stride}");
        assert_eq!(
            c.shared_ld_bank_conflicts,
            wavefronts - 1,
            "stride {stride}"
        );
        assert_eq!(
            c.global_ld_requests, 0,
            "shared accesses are not global requests"
        );
    }
    let mut mem = Memory::new();
    let out = mem.alloc(32 * 4).unwrap();
    let c = counted("shared128", 1, 32, &[ptr(out)], &mut mem, None, 1);
    assert_eq!((c.shared_st_inst, c.shared_st_wavefronts), (1, 4));
    assert_eq!((c.shared_ld_inst, c.shared_ld_wavefronts), (1, 4));
    assert_eq!(
        c.bank_conflicts(),
        0,
        "conflict-free 128-bit is 4 wavefronts"
    );
}

#[test]
fn one_mma_per_warp_is_one_tensor_instruction() {
    for warps in [1u32, 2] {
        let mut mem = Memory::new();
        let out = mem.alloc(64 * 4).unwrap();
        let c = counted("mma1", 1, 32 * warps, &[ptr(out)], &mut mem, None, 1);
        let w = u64::from(warps);
        assert_eq!(c.tensor_inst, w);
        assert_eq!(c.flop_tensor, 4096 * w);
        assert_eq!(c.flop_tensor_by_dtype.get("bf16"), Some(&(4096 * w)));
        assert_eq!(c.flop_fp32, 0);
        // A = B = 1.0 (bf16 0x3f80), C = 0: every D element is K = 16
        assert_eq!(bytes_f32(&download(&mem, out, 4))[0], 16.0);
    }
}

/// Uniform kernel, 64 blocks of 2 warps: 8 sampled blocks scaled to the grid give the exact
/// per-block sums; the exact counts do not depend on how many threads run the blocks.
#[test]
fn sampled_counts_equal_exact_on_a_uniform_kernel() {
    let run = |sample: Option<u64>, threads: u32| {
        let mut mem = Memory::new();
        let inp = upload(&mut mem, &f32_bytes(&rand_f32(64 * 64, 3)));
        let out = mem.alloc(64 * 64 * 4).unwrap();
        let params = [ptr(inp), ptr(out), 1u32.to_le_bytes().to_vec()];
        counted("ld32", 64, 64, &params, &mut mem, sample, threads)
    };
    let exact = run(None, 1);
    assert_eq!(exact, run(None, 3), "block order / threads change counts");
    assert_eq!(exact.blocks_executed, 64);
    assert_eq!(exact.global_ld_sectors, 64 * 2 * 4);
    let s = run(Some(8), 2);
    assert!(s.sampled && !exact.sampled);
    assert_eq!((s.blocks_executed, s.blocks_total), (8, 64));
    assert_eq!(s.inst_executed, exact.inst_executed);
    assert_eq!(s.thread_inst_executed, exact.thread_inst_executed);
    assert_eq!(s.global_ld_requests, exact.global_ld_requests);
    assert_eq!(s.global_ld_sectors, exact.global_ld_sectors);
    assert_eq!(s.global_st_sectors, exact.global_st_sectors);
    assert_eq!(s.flop_fp32, exact.flop_fp32);
    assert_eq!(s.unique_read_sectors, exact.unique_read_sectors);
    assert_eq!(s.unique_write_sectors, exact.unique_write_sectors);
    assert_eq!(s.waiting_warps, exact.waiting_warps);
    assert_eq!(s.mem_round_trips, exact.mem_round_trips);
}

/// `persistent` (tests/ptx/counters.ptx) on `grid` blocks of one warp over `tiles` tiles:
/// `sample` blocks at most, weighted by `split` when given; the finished counters.
fn persistent(grid: u32, tiles: u32, sample: Option<u64>, split: Option<&WorkSplit>) -> Counters {
    let mut mem = Memory::new();
    let n = 32 * tiles as usize;
    let inp = upload(&mut mem, &f32_bytes(&rand_f32(n, 5)));
    let out = mem.alloc(n * 4).unwrap();
    let params = [ptr(inp), ptr(out), tiles.to_le_bytes().to_vec()];
    let m = module("counters.ptx");
    let p: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
    let c = cfg([grid, 1, 1], [32, 1, 1], 0);
    let call = KernelCall {
        module: &m,
        kernel: "persistent",
        cfg: &c,
        params: &p,
    };
    let (_, acc) = launch_counted_split(
        call,
        [1, 1, 1],
        &mut mem,
        &opts("persistent", 2),
        sample,
        split,
    )
    .unwrap_or_else(|f| panic!("persistent: {f}"));
    acc.finish(&LaunchInfo::new("persistent", c.grid, c.block))
}

/// The work split of a persistent grid of `p` blocks over `t` tiles (block b: tiles b, b + p, ..).
fn strided(p: u64, t: u64) -> WorkSplit {
    WorkSplit::from_runs(&[(t % p, t / p + 1), (p - t % p, t / p)], p).unwrap()
}

/// A persistent grid (blocks of unequal tile counts): 2 sampled blocks weighted by work class
/// give the exact per-block sums for every (grid, tiles) tried, where the spread blocks scaled
/// uniformly (the old rule: blocks 0 and P - 1 times P / 2) are off by P / 2 - T mod P tiles.
#[test]
fn sampled_persistent_launch_weighted_by_work_class_is_exact() {
    for (grid, tiles) in [(7u32, 23u32), (132, 200), (132, 263), (10, 11), (5, 15)] {
        let exact = persistent(grid, tiles, None, None);
        let (p, t) = (u64::from(grid), u64::from(tiles));
        assert_eq!(exact.tensor_inst, t, "one mma per tile");
        assert_eq!(exact.flop_tensor, 4096 * t);
        let split = strided(p, t);
        let s = persistent(grid, tiles, Some(2), Some(&split));
        assert!(s.sampled && s.blocks_executed == 2, "{grid} {tiles}");
        let weighting = if t % p == 0 {
            "uniform"
        } else {
            "work_classes"
        };
        assert_eq!(s.sample_weighting.as_deref(), Some(weighting));
        for (name, a, b) in [
            ("inst", s.inst_executed, exact.inst_executed),
            (
                "thread inst",
                s.thread_inst_executed,
                exact.thread_inst_executed,
            ),
            ("tensor inst", s.tensor_inst, exact.tensor_inst),
            ("flop tensor", s.flop_tensor, exact.flop_tensor),
            ("fp32", s.flop_fp32, exact.flop_fp32),
            ("ld sectors", s.global_ld_sectors, exact.global_ld_sectors),
            ("st sectors", s.global_st_sectors, exact.global_st_sectors),
            ("writes", s.unique_write_sectors, exact.unique_write_sectors),
            ("reads", s.unique_read_sectors, exact.unique_read_sectors),
            ("waiting warps", s.waiting_warps, exact.waiting_warps),
        ] {
            assert_eq!(a, b, "{name}: grid {grid} tiles {tiles}");
        }
        assert_eq!(s.flop_tensor_by_dtype, exact.flop_tensor_by_dtype);
        assert_eq!(s.mem_round_trips, exact.mem_round_trips);
        // The old endpoint rule: blocks 0 and P - 1, each count times P / 2.
        let old = persistent(grid, tiles, Some(2), None);
        assert_eq!(old.sample_weighting.as_deref(), Some("uniform"));
        let tiles_old = ((t.div_ceil(p) + t / p) * p).div_ceil(2); // rounded half up
        assert_eq!(old.tensor_inst, tiles_old, "grid {grid} tiles {tiles}");
        if 2 * (t % p) != p && t % p != 0 {
            assert_ne!(
                old.flop_tensor, exact.flop_tensor,
                "grid {grid} tiles {tiles}"
            );
        }
    }
}

/// Fewer sampled blocks than work classes: the blocks' counts are scaled by the launch's tiles
/// over theirs (exact for the tensor work, which is per tile; the per-block prologue is not).
#[test]
fn one_sampled_block_scales_by_work_units() {
    let exact = persistent(7, 23, None, None);
    let s = persistent(7, 23, Some(1), Some(&strided(7, 23)));
    assert_eq!(s.sample_weighting.as_deref(), Some("work_units"));
    assert_eq!(s.blocks_executed, 1);
    assert_eq!(
        (s.tensor_inst, s.flop_tensor),
        (exact.tensor_inst, exact.flop_tensor)
    );
    assert_eq!(s.global_ld_sectors, exact.global_ld_sectors);
}
