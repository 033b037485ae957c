//! Counters + a GPU → predicted time, the bound and the share of speed of light.
//!
//! The model (each step is a line of `docs/profiling.md`):
//! 1. Occupancy: resident blocks per SM = the least of the thread, block, register (allocated per
//!    warp in units of 256) and shared-memory (plus 1 KB reserved per block) limits.
//! 2. Blocks are spread evenly: the busiest SM runs `ceil(blocks / SMs)` blocks (the tail).
//! 3. SM-side units, busy time on that SM = its blocks' share of the work / the unit's rate:
//!    `issue` (warp instructions / 4 per clock), `fp32` (FP32 FLOPs / peak per SM),
//!    `tensor` (per operand type, FLOPs / dense peak per SM), `shared` (L1 data-pipe wavefronts:
//!    shared + ldmatrix + one per 128-B line of each global request, 1 per clock).
//! 4. `dram` (device-wide): modelled bytes / bandwidth.
//! 5. `latency`: a warp cannot run faster than its chain of memory waits: `ceil(blocks on the SM
//!    / resident blocks) × round trips per warp × memory latency`.
//! 6. Predicted time = the slowest of 3–5 + the launch cost; `bound` = that unit, or `launch`
//!    when the launch cost is larger than all of them.

use crate::counters::{Counters, SECTOR};
use crate::gpu::GpuSpec;
use serde::Serialize;

/// The units a kernel can be bound by.
pub const BOUNDS: [&str; 7] = [
    "dram", "tensor", "fp32", "issue", "shared", "latency", "launch",
];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Prediction {
    pub gpu: String,
    pub blocks_per_sm: u32,
    /// What limits residency: `threads`, `blocks`, `registers` or `shared`.
    pub occupancy_limit: String,
    pub occupancy: f64,
    pub waves: f64,
    /// Busy time of each unit (µs), in [`BOUNDS`] order except `launch`.
    pub dram_us: f64,
    pub tensor_us: f64,
    pub fp32_us: f64,
    pub issue_us: f64,
    pub shared_us: f64,
    pub latency_us: f64,
    pub launch_us: f64,
    pub predicted_us: f64,
    pub bound: String,
    /// Ideal time (the largest unit's work spread over the whole GPU, no tail, no latency) /
    /// predicted time, in %.
    pub sol_pct: f64,
    pub dram_bytes_read: u64,
    pub dram_bytes_write: u64,
}

/// Resident blocks per SM and the limiting resource.
pub fn occupancy(c: &Counters, g: &GpuSpec) -> (u32, &'static str) {
    let warps = c.warps_per_block() as u32;
    let threads = warps * 32;
    let mut best = (g.max_blocks_per_sm, "blocks");
    let by_threads = g.max_threads_per_sm / threads.max(1);
    if by_threads < best.0 {
        best = (by_threads, "threads");
    }
    if let Some(r) = c.registers_per_thread {
        let per_warp = (r.max(1) * 32).div_ceil(256) * 256;
        let by_regs = g.regs_per_sm / (per_warp * warps).max(1);
        if by_regs < best.0 {
            best = (by_regs, "registers");
        }
    }
    let smem = c.shared_mem_per_block();
    if smem > 0 {
        let by_smem = (g.smem_per_sm / (smem + g.smem_reserved_per_block)) as u32;
        if by_smem < best.0 {
            best = (by_smem, "shared");
        }
    }
    (best.0.max(1), best.1)
}

/// Modelled DRAM bytes (read, write) for a GPU.
///
/// Reads: the launch's distinct sectors `F` are read once. If `F` exceeds the L2, data is reused
/// in the L2 only among the blocks resident together (a *wave*, which progresses through its
/// inputs together); each wave reads the union of its blocks' sectors, estimated as
/// `min(F, resident blocks × mean distinct sectors per block + B)` where the sectors every block
/// reads (`emu__broadcast_read_sectors`, B: gamma / beta, a bias, a small table) are taken out of
/// the per-block mean and counted once per wave, so
/// `reads = max(F, waves × that)`. Writes: the distinct sectors written (write-back L2).
///
/// Rows without the footprint ingredients (e.g. converted from a real Nsight Compute run) use
/// their `dram__bytes_*` values when present, else every requested global sector (no reuse).
pub fn dram_bytes(c: &Counters, g: &GpuSpec) -> (u64, u64) {
    if c.unique_read_sectors == 0 && c.unique_write_sectors == 0 && c.block_unique_read_sectors == 0
    {
        let rd = c.global_ld_sectors + c.global_ldgsts_sectors + c.global_atom_sectors;
        let wr = c.global_st_sectors + c.global_atom_sectors;
        return (
            c.dram_bytes_read.unwrap_or(rd * SECTOR),
            c.dram_bytes_write.unwrap_or(wr * SECTOR),
        );
    }
    let f = c.unique_read_sectors * SECTOR;
    let blocks = c.blocks();
    let reads = if f <= g.l2_bytes || blocks == 0 {
        f
    } else {
        let (bps, _) = occupancy(c, g);
        let resident = (bps as u64 * g.sms as u64).min(blocks).max(1);
        // every block reads the broadcast sectors: a wave brings them into the L2 once
        let shared = c.broadcast_read_sectors.min(c.unique_read_sectors) as f64 * SECTOR as f64;
        let per_block = c.block_unique_read_sectors as f64 * SECTOR as f64 / blocks as f64;
        let private = (per_block - shared).max(0.0);
        let wave_union = (private * resident as f64 + shared).min(f as f64);
        let waves = blocks as f64 / resident as f64;
        (waves * wave_union).max(f as f64) as u64
    };
    (reads, c.unique_write_sectors * SECTOR)
}

/// Predict one launch's time on `g`.
pub fn predict(c: &Counters, g: &GpuSpec) -> Prediction {
    let (bps, limit) = occupancy(c, g);
    let sms = g.sms as f64;
    let blocks = c.blocks().max(1) as f64;
    let busiest = c.blocks().max(1).div_ceil(g.sms as u64) as f64;
    let share = busiest / blocks; // fraction of the launch's work on the busiest SM
    let hz = g.clock_hz();
    let to_us = |cycles: f64| cycles / hz * 1e6;

    let issue_cyc = c.inst_executed as f64 * share / g.issue_per_clk;
    let fp32_cyc = c.flop_fp32 as f64 * share / g.fp32_per_clk_sm();
    let mut tensor_s_sm = 0.0; // seconds on the busiest SM
    let mut tensor_s_ideal = 0.0;
    for (dtype, &fl) in &c.flop_tensor_by_dtype {
        // An operand type the GPU has no tensor path for runs at its FP32 rate (emulated).
        let tf = g.tensor_tflops(dtype).unwrap_or(g.fp32_tflops) * 1e12;
        tensor_s_sm += fl as f64 * share / (tf / sms);
        tensor_s_ideal += fl as f64 / tf;
    }
    if c.flop_tensor_by_dtype.is_empty() && c.flop_tensor > 0 {
        let tf = g.tensor_peak_tflops() * 1e12;
        tensor_s_sm = c.flop_tensor as f64 * share / (tf / sms);
        tensor_s_ideal = c.flop_tensor as f64 / tf;
    }
    let l1_per_clk = g.shared_bytes_per_clk / 128.0;
    let (rd, wr) = dram_bytes(c, g);
    // Rows without `emu__l1_global_wavefronts`: at least one pass per request, one per 4 sectors.
    let l1_global = if c.l1_global_wavefronts > 0 {
        c.l1_global_wavefronts
    } else {
        c.global_requests().max(c.global_sectors().div_ceil(4))
    };
    let shared_cyc = (c.shared_wavefronts() + l1_global) as f64 * share / l1_per_clk;
    let dram_us = (rd + wr) as f64 / (g.dram_gbs * 1e9) * 1e6;
    let waiting = c.waiting_warps.max(1) as f64;
    let trips_per_warp = c.mem_round_trips / waiting;
    let bytes_per_warp = c.mem_wait_bytes / waiting;
    // Bytes waited for arrive from DRAM (the modelled DRAM share of the global traffic) at the
    // SM's fair share of DRAM bandwidth, the rest from the L2 at its per-SM bandwidth.
    let bw_share = g.dram_gbs * 1e9 / sms / hz;
    let requested = (c.global_sectors() * SECTOR) as f64;
    let f_dram = if requested > 0.0 {
        ((rd + wr) as f64 / requested).min(1.0)
    } else {
        1.0
    };
    let cyc_per_byte = f_dram / bw_share + (1.0 - f_dram) / g.l2_bytes_per_clk_sm;
    let rounds = (busiest / bps as f64).ceil();
    let latency_cyc =
        rounds * (trips_per_warp * g.mem_latency_cycles + bytes_per_warp * cyc_per_byte);

    let units = [
        ("dram", dram_us),
        ("tensor", tensor_s_sm * 1e6),
        ("fp32", to_us(fp32_cyc)),
        ("issue", to_us(issue_cyc)),
        ("shared", to_us(shared_cyc)),
        ("latency", to_us(latency_cyc)),
    ];
    let (mut bound, mut top) = ("launch", 0.0f64);
    for (n, t) in units {
        if t > top {
            top = t;
            bound = n;
        }
    }
    if g.launch_us > top {
        bound = "launch";
    }
    let predicted = top + g.launch_us;
    // Ideal: each unit's work over the whole GPU, no tail and no latency.
    let ideal = [
        dram_us,
        tensor_s_ideal * 1e6,
        to_us(c.flop_fp32 as f64 / g.fp32_per_clk_sm() / sms),
        to_us(c.inst_executed as f64 / g.issue_per_clk / sms),
        to_us((c.shared_wavefronts() + l1_global) as f64 / l1_per_clk / sms),
    ]
    .into_iter()
    .fold(0.0f64, f64::max);
    let waves = blocks / (bps as f64 * sms);
    let occ = (bps * c.warps_per_block() as u32) as f64 / (g.max_threads_per_sm / 32) as f64;
    Prediction {
        gpu: g.name.to_string(),
        blocks_per_sm: bps,
        occupancy_limit: limit.to_string(),
        occupancy: occ.min(1.0),
        waves,
        dram_us,
        tensor_us: tensor_s_sm * 1e6,
        fp32_us: to_us(fp32_cyc),
        issue_us: to_us(issue_cyc),
        shared_us: to_us(shared_cyc),
        latency_us: to_us(latency_cyc),
        launch_us: g.launch_us,
        predicted_us: predicted,
        bound: bound.to_string(),
        sol_pct: 100.0 * ideal / predicted,
        dram_bytes_read: rd,
        dram_bytes_write: wr,
    }
}

/// Fill the counters' modelled fields (`dram__bytes_*`, `predicted_us`, `bound`) for `g`.
pub fn annotate(c: &mut Counters, g: &GpuSpec) -> Prediction {
    let p = predict(c, g);
    c.dram_bytes_read = Some(p.dram_bytes_read);
    c.dram_bytes_write = Some(p.dram_bytes_write);
    c.predicted_us = Some(p.predicted_us);
    c.bound = Some(p.bound.clone());
    p
}
