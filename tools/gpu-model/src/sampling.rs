//! `PTX_EMU_SAMPLE_BLOCKS=N`: which blocks run, and how their counters stand for the grid.

use crate::counters::{Counters, SECTOR};

/// Environment variable naming the number of blocks a launch executes at most.
pub const SAMPLE_ENV: &str = "PTX_EMU_SAMPLE_BLOCKS";

/// `PTX_EMU_SAMPLE_BLOCKS` parsed: `Ok(None)` when unset (exact counts), an error naming the
/// variable and the fix when it is not a positive integer.
pub fn sample_blocks_from_env() -> Result<Option<u64>, String> {
    match std::env::var(SAMPLE_ENV) {
        Err(_) => Ok(None),
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(format!(
                "{SAMPLE_ENV}={s:?} is not a positive integer: set it to the number of blocks to \
                 run per launch (e.g. 16), or unset it for exact counts"
            )),
        },
    }
}

/// The linear block indices (x fastest, then y, then z) a launch of `total` blocks runs when at
/// most `n` may run: all of them when `n >= total`; otherwise `n` distinct indices spread evenly
/// over the grid, `round(i·(total−1)/(n−1))` for `i = 0..n`, so the first and the last block are
/// always included. Deterministic; ascending.
pub fn sample_blocks(total: u64, n: Option<u64>) -> Vec<u64> {
    let n = match n {
        None => return (0..total).collect(),
        Some(n) if n >= total => return (0..total).collect(),
        Some(n) => n,
    };
    if total == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![0];
    }
    // total > n >= 2: consecutive picks differ by (total-1)/(n-1) > 1 - 1/(n-1) >= 0 rounded, and
    // are strictly increasing since the step is > 1 when total > n.
    (0..n)
        .map(|i| {
            ((i as u128 * (total as u128 - 1) * 2 + (n as u128 - 1)) / (2 * (n as u128 - 1))) as u64
        })
        .collect()
}

/// Linear block index → `(x, y, z)` block coordinates for grid `grid`.
pub fn block_coords(linear: u64, grid: [u32; 3]) -> [u32; 3] {
    let gx = u64::from(grid[0].max(1));
    let gy = u64::from(grid[1].max(1));
    [
        (linear % gx) as u32,
        ((linear / gx) % gy) as u32,
        (linear / (gx * gy)) as u32,
    ]
}

/// Scale the counters of `blocks_executed` blocks to `blocks_total` (a no-op when all ran):
/// every per-block sum is multiplied by `blocks_total / blocks_executed` (rounded); the launch's
/// distinct written sectors likewise (blocks write disjoint outputs); the distinct read sectors
/// are extrapolated the same way but never beyond `emu__read_footprint_cap_bytes` nor beyond the
/// per-block sum. Sets `emu__sampled`.
pub fn scale_to_grid(c: &mut Counters) {
    if c.blocks_executed == 0 || c.blocks_executed >= c.blocks_total {
        return;
    }
    let f = c.blocks_total as f64 / c.blocks_executed as f64;
    let s = |v: &mut u64| *v = (*v as f64 * f).round() as u64;
    for v in [
        &mut c.inst_executed,
        &mut c.thread_inst_executed,
        &mut c.global_ld_requests,
        &mut c.global_ld_sectors,
        &mut c.global_st_requests,
        &mut c.global_st_sectors,
        &mut c.global_atom_requests,
        &mut c.global_atom_sectors,
        &mut c.global_ldgsts_requests,
        &mut c.global_ldgsts_sectors,
        &mut c.shared_ld_inst,
        &mut c.shared_st_inst,
        &mut c.shared_ld_wavefronts,
        &mut c.shared_st_wavefronts,
        &mut c.shared_ld_bank_conflicts,
        &mut c.shared_st_bank_conflicts,
        &mut c.shared_atom_inst,
        &mut c.shared_atom_wavefronts,
        &mut c.ldsm_inst,
        &mut c.ldsm_wavefronts,
        &mut c.tensor_inst,
        &mut c.flop_tensor,
        &mut c.flop_fp32,
        &mut c.wgmma_inst,
        &mut c.flop_tensor_wgmma,
        &mut c.l1_global_wavefronts,
        &mut c.waiting_warps,
        &mut c.unique_write_sectors,
        &mut c.block_unique_read_sectors,
    ] {
        s(v);
    }
    c.mem_round_trips *= f;
    c.mem_wait_bytes *= f;
    for v in c.flop_tensor_by_dtype.values_mut() {
        s(v);
    }
    let mut unique = (c.unique_read_sectors as f64 * f).round() as u64;
    unique = unique.min(c.block_unique_read_sectors);
    if let Some(cap) = c.read_footprint_cap_bytes {
        unique = unique.min(cap.div_ceil(SECTOR));
    }
    c.unique_read_sectors = unique;
    c.sampled = true;
}
