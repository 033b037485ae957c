//! `PTX_EMU_SAMPLE_BLOCKS=N`: which blocks run, and how their counters stand for the grid.
//!
//! Without a [`WorkSplit`] (every launch whose blocks do like work) the `N` blocks are spread
//! over the grid ([`sample_blocks`]) and every count is scaled by `blocks / N`
//! ([`scale_to_grid`], weighting `uniform`). A persistent launch, whose block `b` walks tiles
//! `b, b + P, ..`, has blocks of unequal work (`ceil(T / P)` or `floor(T / P)` tiles): its
//! launcher states the work units of every block ([`WorkSplit`]) and [`plan`] runs at least one
//! block of every *work class* (blocks of equal units), each class's counts scaled by its size
//! over its runs (weighting `work_classes`: exact when the blocks of a class count alike). With
//! fewer blocks allowed than there are classes the spread blocks' counts are scaled by the
//! launch's units over theirs (weighting `work_units`).

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

/// How the counts of a sampled launch were scaled to its grid (`emu__sample_weighting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weighting {
    /// Every block ran: exact counts.
    Exact,
    /// Blocks spread over the grid, counts times `blocks / executed` ([`scale_to_grid`]).
    Uniform,
    /// One or more blocks of every work class of a [`WorkSplit`], each class's counts times its
    /// blocks over its executed blocks.
    WorkClasses,
    /// Blocks spread over the grid, counts times the launch's work units over the executed
    /// blocks' (fewer blocks allowed than the split has classes).
    WorkUnits,
}

impl Weighting {
    /// The `emu__sample_weighting` value.
    pub fn name(self) -> &'static str {
        match self {
            Weighting::Exact => "exact",
            Weighting::Uniform => "uniform",
            Weighting::WorkClasses => "work_classes",
            Weighting::WorkUnits => "work_units",
        }
    }
}

/// How a launch's work is shared among its blocks: runs of consecutive blocks (linear index, x
/// fastest) with the work units (e.g. tiles) each block of the run carries. Blocks with equal
/// units form one *work class*: the sampler assumes they count alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkSplit {
    /// `(blocks, units per block)`, no empty run, no two neighbours with equal units.
    runs: Vec<(u64, u64)>,
}

impl WorkSplit {
    /// The split of a grid of `total` blocks into `runs` of `(blocks, units per block)` in linear
    /// block order (empty runs dropped, equal neighbours merged); an error naming the mismatch
    /// when the runs do not cover exactly `total` blocks.
    pub fn from_runs(runs: &[(u64, u64)], total: u64) -> Result<WorkSplit, String> {
        let covered = runs
            .iter()
            .try_fold(0u64, |a, &(n, _)| a.checked_add(n))
            .unwrap_or(u64::MAX);
        if covered != total {
            return Err(format!(
                "the work split covers {covered} blocks but the grid has {total}: give one \
                 (blocks, units) run per stretch of blocks, covering every block once"
            ));
        }
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
        for &(n, u) in runs.iter().filter(|r| r.0 > 0) {
            match merged.last_mut() {
                Some(last) if last.1 == u => last.0 += n,
                _ => merged.push((n, u)),
            }
        }
        Ok(WorkSplit { runs: merged })
    }

    /// The runs `(blocks, units per block)`.
    pub fn runs(&self) -> &[(u64, u64)] {
        &self.runs
    }

    /// Work units of every block, summed.
    pub fn total_units(&self) -> u64 {
        self.runs.iter().map(|&(n, u)| n * u).sum()
    }

    /// Work units of block `b` (0 past the grid).
    pub fn units_of(&self, b: u64) -> u64 {
        let mut start = 0;
        for &(n, u) in &self.runs {
            if b < start + n {
                return u;
            }
            start += n;
        }
        0
    }

    /// The work classes in order of first block: units, and the runs `(first block, blocks)`.
    fn classes(&self) -> Vec<(u64, Vec<(u64, u64)>)> {
        let mut classes: Vec<(u64, Vec<(u64, u64)>)> = Vec::new();
        let mut start = 0;
        for &(n, u) in &self.runs {
            match classes.iter_mut().find(|c| c.0 == u) {
                Some(c) => c.1.push((start, n)),
                None => classes.push((u, vec![(start, n)])),
            }
            start += n;
        }
        classes
    }
}

/// The blocks a launch runs and the factor each one's counts are scaled by.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePlan {
    /// Linear block indices, ascending.
    pub blocks: Vec<u64>,
    /// Class of each block of `blocks` (an index into `factors`).
    pub class_of: Vec<usize>,
    /// Scale factor of each class (its blocks over its executed blocks).
    pub factors: Vec<f64>,
    pub weighting: Weighting,
}

impl SamplePlan {
    fn single(blocks: Vec<u64>, factor: f64, weighting: Weighting) -> SamplePlan {
        SamplePlan {
            class_of: vec![0; blocks.len()],
            blocks,
            factors: vec![factor],
            weighting,
        }
    }

    /// Whether the blocks' counts are scaled per class or by work units (the weighted finish of
    /// [`crate::counters::LaunchAccumulator::with_plan`]) rather than exact or uniformly.
    pub fn is_weighted(&self) -> bool {
        matches!(
            self.weighting,
            Weighting::WorkClasses | Weighting::WorkUnits
        )
    }
}

/// The blocks of a launch of `total` blocks to run when at most `n` may (`None`: all), and their
/// weights. Without `split`, or when the split has one class, the blocks are
/// [`sample_blocks`]'s, scaled uniformly (today's rule, counts unchanged). With a split of `C`
/// classes and `n >= C`: one block per class, the `n - C` others given one at a time to the class
/// with the most blocks per executed block (ties: the earlier class), spread within each class as
/// [`sample_blocks`] spreads over a grid; class factor = class blocks / executed blocks. With
/// `n < C`: [`sample_blocks`]'s blocks, one factor = the launch's units / theirs (uniform when
/// they carry none). Deterministic.
pub fn plan(total: u64, n: Option<u64>, split: Option<&WorkSplit>) -> SamplePlan {
    let blocks = sample_blocks(total, n);
    if blocks.len() as u64 >= total {
        return SamplePlan::single(blocks, 1.0, Weighting::Exact);
    }
    let uniform = |blocks: Vec<u64>| {
        let f = total as f64 / blocks.len().max(1) as f64;
        SamplePlan::single(blocks, f, Weighting::Uniform)
    };
    let Some(split) = split else {
        return uniform(blocks);
    };
    let classes = split.classes();
    let n = n.unwrap_or(total);
    if classes.len() <= 1 {
        return uniform(blocks);
    }
    if (n as usize) < classes.len() {
        let units: u64 = blocks.iter().map(|&b| split.units_of(b)).sum();
        if units == 0 {
            return uniform(blocks);
        }
        let f = split.total_units() as f64 / units as f64;
        return SamplePlan::single(blocks, f, Weighting::WorkUnits);
    }
    let sizes: Vec<u64> = classes
        .iter()
        .map(|c| c.1.iter().map(|r| r.1).sum())
        .collect();
    let mut picks = vec![1u64; classes.len()];
    for _ in classes.len() as u64..n {
        // the class with the most blocks per pick that still has an unpicked block
        let best = (0..classes.len())
            .filter(|&k| picks[k] < sizes[k])
            .max_by(|&a, &b| {
                (sizes[a] * picks[b])
                    .cmp(&(sizes[b] * picks[a]))
                    .then(b.cmp(&a))
            });
        match best {
            Some(k) => picks[k] += 1,
            None => break,
        }
    }
    let mut chosen: Vec<(u64, usize)> = Vec::with_capacity(n as usize);
    for (k, (_, runs)) in classes.iter().enumerate() {
        for m in sample_blocks(sizes[k], Some(picks[k])) {
            // the m-th block of the class, walking its runs
            let mut m = m;
            for &(start, len) in runs {
                if m < len {
                    chosen.push((start + m, k));
                    break;
                }
                m -= len;
            }
        }
    }
    chosen.sort_unstable();
    SamplePlan {
        blocks: chosen.iter().map(|c| c.0).collect(),
        class_of: chosen.iter().map(|c| c.1).collect(),
        factors: sizes
            .iter()
            .zip(&picks)
            .map(|(&s, &p)| s as f64 / p as f64)
            .collect(),
        weighting: Weighting::WorkClasses,
    }
}

/// The per-block sums of a launch's counters (every block adds its own; scaling multiplies them).
pub(crate) fn block_sums(c: &mut Counters) -> [&mut u64; 29] {
    [
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
    ]
}

/// Multiply the per-block sums of `c` ([`block_sums`], the memory waits, the tensor FLOPs by
/// type) by `f`, rounding the integers.
pub(crate) fn scale_sums(c: &mut Counters, f: f64) {
    let s = |v: &mut u64| *v = (*v as f64 * f).round() as u64;
    for v in block_sums(c) {
        s(v);
    }
    c.mem_round_trips *= f;
    c.mem_wait_bytes *= f;
    for v in c.flop_tensor_by_dtype.values_mut() {
        s(v);
    }
}

/// The launch's distinct read sectors `c.unique_read_sectors` (those of the executed blocks)
/// extrapolated by `f`, but never beyond `emu__read_footprint_cap_bytes` nor beyond the (scaled)
/// per-block sum; with the executed blocks' reads per allocation known
/// (`read_sectors_by_allocation`), each allocation's share is extrapolated and capped by the
/// allocation's size on its own (blocks that share an operand panel are not counted twice
/// beyond the operand's size, and a write-only output adds nothing to the cap). The sectors
/// every executed block read (`emu__broadcast_read_sectors`: gamma / beta, a bias, a table that
/// every block reads) are counted once and not extrapolated.
pub(crate) fn extrapolate_unique_reads(c: &mut Counters, f: f64) {
    let b = c.broadcast_read_sectors.min(c.unique_read_sectors);
    let mut unique = b + if c.read_sectors_by_allocation.is_empty() {
        ((c.unique_read_sectors - b) as f64 * f).round() as u64
    } else {
        c.read_sectors_by_allocation
            .iter()
            .map(|&(d, cap)| ((d as f64 * f).round() as u64).min(cap))
            .sum()
    };
    unique = unique.min(c.block_unique_read_sectors);
    if let Some(cap) = c.read_footprint_cap_bytes {
        unique = unique.min(cap.div_ceil(SECTOR));
    }
    c.unique_read_sectors = unique;
}

/// Scale the counters of `blocks_executed` blocks to `blocks_total` (a no-op when all ran):
/// every per-block sum is multiplied by `blocks_total / blocks_executed` (rounded); the launch's
/// distinct written sectors likewise (blocks write disjoint outputs); the distinct read sectors
/// are extrapolated the same way but never beyond `emu__read_footprint_cap_bytes` nor beyond the
/// per-block sum. Sets `emu__sampled` and `emu__sample_weighting` (`uniform`).
pub fn scale_to_grid(c: &mut Counters) {
    if c.blocks_executed == 0 || c.blocks_executed >= c.blocks_total {
        return;
    }
    let f = c.blocks_total as f64 / c.blocks_executed as f64;
    scale_sums(c, f);
    extrapolate_unique_reads(c, f);
    c.sampled = true;
    c.sample_weighting = Some(Weighting::Uniform.name().to_string());
}
