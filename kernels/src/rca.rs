//! `kernels/cuda/rca.cu`: the memory passes of Region Codebook Attention, one launch each:
//! `rca_temporal_query` (`x + A_s + T[n mod F]`), `rca_motion_sum` (`A_s + A_t + F_id` on the
//! identity rows) and `rca_merge` (`F_in + sigmoid(conv2(SiLU(hid))) ⊙ tokens→NCHW`).

use crate::{grid_stride, tiles, to_u32, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Threads per block (`RCA_THREADS` in the `.cu`).
pub const RCA_THREADS: u32 = 256;
/// Pixels (and channels) per merge tile (`RCA_TILE`).
pub const RCA_TILE: u32 = 32;
/// Elements per thread the elementwise launch rule aims for before the grid is capped.
pub const RCA_ITEMS_PER_THREAD: u64 = 4;
/// Static shared memory of `rca_merge`: partial sums, mask, padded tile (f32).
pub const RCA_MERGE_SMEM_BYTES: u32 =
    (RCA_THREADS / 32 * RCA_TILE + RCA_TILE + RCA_TILE * (RCA_TILE + 1)) * 4;

/// The three ops of the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcaOp {
    TemporalQuery,
    MotionSum,
    Merge,
    /// `rca_merge` on channels-last rows (`rca_merge_nhwc`).
    MergeNhwc,
}

impl RcaOp {
    /// The `op` part of the entry name.
    pub fn name(self) -> &'static str {
        match self {
            RcaOp::TemporalQuery => "rca_temporal_query",
            RcaOp::MotionSum => "rca_motion_sum",
            RcaOp::Merge => "rca_merge",
            RcaOp::MergeNhwc => "rca_merge_nhwc",
        }
    }
}

const LAUNCH_EW: &str = "grid = clamp(ceil(n / 1024), 1, 65535), block = 256, grid-stride loop";
const LAUNCH_MERGE: &str = "grid = (ceil(P / 32), N), block = 256, static smem 5376 B";
const LAUNCH_MERGE_NHWC: &str =
    "grid = clamp(ceil(N * P / 8), 1, 65535), block = 256 (one warp per pixel row), grid-stride";

const fn entry(name: &'static str, op: &'static str, dtype: DType, launch: &'static str) -> Entry {
    Entry::v1(name, op, dtype, ("RcaParams", 88), launch)
}

pub const ENTRIES: &[Entry] = &[
    entry(
        "rca_temporal_query_v1_f32",
        "rca_temporal_query",
        DType::F32,
        LAUNCH_EW,
    ),
    entry(
        "rca_temporal_query_v1_bf16",
        "rca_temporal_query",
        DType::Bf16,
        LAUNCH_EW,
    ),
    entry(
        "rca_motion_sum_v1_f32",
        "rca_motion_sum",
        DType::F32,
        LAUNCH_EW,
    ),
    entry(
        "rca_motion_sum_v1_bf16",
        "rca_motion_sum",
        DType::Bf16,
        LAUNCH_EW,
    ),
    entry("rca_merge_v1_f32", "rca_merge", DType::F32, LAUNCH_MERGE),
    entry("rca_merge_v1_bf16", "rca_merge", DType::Bf16, LAUNCH_MERGE),
    entry(
        "rca_merge_nhwc_v1_f32",
        "rca_merge_nhwc",
        DType::F32,
        LAUNCH_MERGE_NHWC,
    ),
    entry(
        "rca_merge_nhwc_v1_bf16",
        "rca_merge_nhwc",
        DType::Bf16,
        LAUNCH_MERGE_NHWC,
    ),
];

/// Mirrors `struct RcaParams` in `rca.cu` field for field (88 bytes). Operand roles per op in
/// the constructors.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RcaParams {
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub d: u64,
    pub e: u64,
    pub out: u64,
    /// `N * L * C` (elementwise ops).
    pub n_elem: u64,
    pub n: u32,
    /// Tokens per row L (merge: pixels P = h·w).
    pub l: u32,
    pub ch: u32,
    pub frames: u32,
    pub r0: u32,
    pub r1: u32,
    pub c4: u32,
    pub pad0: u32,
}

fn base(n: u64, l: u64, c: u64) -> Result<RcaParams> {
    Ok(RcaParams {
        a: 0,
        b: 0,
        c: 0,
        d: 0,
        e: 0,
        out: 0,
        n_elem: n * l * c,
        n: to_u32(n, "rca N")?,
        l: to_u32(l, "rca L")?,
        ch: to_u32(c, "rca C")?,
        frames: 1,
        r0: 0,
        r1: 0,
        c4: 0,
        pad0: 0,
    })
}

impl RcaParams {
    /// `q (N, L, C) = x + a_s + bank[n mod frames]`, bank `(frames, C)`, e.g. N 32, L 256, C 640,
    /// frames 16.
    pub fn temporal_query(
        x: u64,
        a_s: u64,
        bank: u64,
        q: u64,
        (n, l, c): (u64, u64, u64),
        frames: u64,
    ) -> Result<Self> {
        ensure!(
            frames >= 1,
            "rca_temporal_query: the temporal bank has no rows"
        );
        Ok(RcaParams {
            a: x,
            b: a_s,
            c: bank,
            out: q,
            frames: to_u32(frames, "rca_temporal_query frames")?,
            ..base(n, l, c)?
        })
    }

    /// `s (N, L, C) = a_s + a_t (+ f_id[n - r0] on rows r0..r1)`; `f_id` 0 = none (`rows` ignored).
    pub fn motion_sum(
        a_s: u64,
        a_t: u64,
        f_id: u64,
        s: u64,
        (n, l, c): (u64, u64, u64),
        rows: (u64, u64),
    ) -> Result<Self> {
        let (r0, r1) = if f_id == 0 { (0, 0) } else { rows };
        ensure!(
            r0 <= r1 && r1 <= n,
            "rca_motion_sum: identity rows {r0}..{r1} outside the {n} rows"
        );
        Ok(RcaParams {
            a: a_s,
            b: a_t,
            c: f_id,
            out: s,
            r0: to_u32(r0, "rca_motion_sum r0")?,
            r1: to_u32(r1, "rca_motion_sum r1")?,
            ..base(n, l, c)?
        })
    }

    /// `out (N, C, P) = f_in + sigmoid(b2 + w2 · silu(hid[:, :, p])) ⊙ tokᵀ`, tok `(N, P, C)`,
    /// hid `(N, C4, P)`, w2 `(C4)`, b2 `(1)` or 0; e.g. N 32, P 256, C 640, C4 160.
    #[allow(clippy::too_many_arguments)]
    pub fn merge(
        f_in: u64,
        tok: u64,
        hid: u64,
        w2: u64,
        b2: u64,
        out: u64,
        (n, p, c): (u64, u64, u64),
        c4: u64,
    ) -> Result<Self> {
        ensure!(
            (1..=65_535).contains(&n) || n * p * c == 0,
            "rca_merge: {n} images must be in 1..=65535 (gridDim.y)"
        );
        Ok(RcaParams {
            a: f_in,
            b: tok,
            c: hid,
            d: w2,
            e: b2,
            out,
            c4: to_u32(c4, "rca_merge C4")?,
            ..base(n, p, c)?
        })
    }
}

/// The launch of `op` on params `p` (see the `.cu` header).
pub fn launch_config(op: RcaOp, p: &RcaParams) -> LaunchConfig {
    let grid = match op {
        RcaOp::TemporalQuery | RcaOp::MotionSum => {
            grid_stride(p.n_elem, RCA_THREADS, RCA_ITEMS_PER_THREAD).grid
        }
        RcaOp::Merge => [tiles(p.l as u64, RCA_TILE), p.n.max(1), 1],
        // one warp per pixel row
        RcaOp::MergeNhwc => grid_stride(p.n as u64 * p.l as u64 * 32, RCA_THREADS, 1).grid,
    };
    LaunchConfig::blocks(grid, RCA_THREADS)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(RcaParams, 88; assert_eq!(RCA_MERGE_SMEM_BYTES, 5376));

    #[test]
    fn launch_rules() {
        let p = RcaParams::merge(16, 16, 16, 16, 0, 16, (3, 65, 70), 17).unwrap();
        assert_eq!(launch_config(RcaOp::Merge, &p).grid, [3, 3, 1]);
        let q = RcaParams::temporal_query(16, 16, 16, 16, (5, 7, 9), 3).unwrap();
        assert_eq!(launch_config(RcaOp::TemporalQuery, &q).grid, [1, 1, 1]);
        let s = RcaParams::motion_sum(16, 16, 16, 16, (4, 1000, 64), (2, 4)).unwrap();
        assert_eq!(launch_config(RcaOp::MotionSum, &s).grid, [250, 1, 1]);
        assert!(RcaParams::motion_sum(16, 16, 16, 16, (4, 1, 1), (3, 5)).is_err());
    }
}
