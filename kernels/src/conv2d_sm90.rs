//! `kernels/cuda/conv2d_sm90.cu` (sm_90a only): `conv2d.cu`'s v2 implicit GEMM (NCHW, batch folded
//! into the pixel columns, table-driven X_col gather, fused `scale * (conv + bias + temb +
//! residual)` epilogue) on Hopper `wgmma`, two warpgroups per 256 x 128 x 128 block tile. Takes
//! `conv2d.rs`'s [`Conv2dParams`](crate::conv2d::Conv2dParams); the shapes it does not take
//! ([`supports`]) run on `conv2d.cu`.

use crate::conv2d::{self, Conv2dParams, Conv2dShape};
use crate::{tiles, DType, Entry, LaunchConfig, TileWork};

/// Block tile: output channels x (image, pixel) columns x K.
pub const C90_BM: u32 = 256;
pub const C90_BN: u32 = 128;
pub const C90_BK: u32 = 128;
pub const C90_THREADS: u32 = 256;
/// Two stages of a 128B-swizzled W tile (64 KiB) and X_col tile (32 KiB) + a two-slot k table of
/// 8-byte rows, or
/// the f32 epilogue tile (256 rows of 136 floats), whichever is larger, + 1 KiB to align to 1024.
pub const C90_SMEM_BYTES: u32 = {
    let main = 2 * (C90_BM * C90_BK * 2 + C90_BK * C90_BN * 2) + 2 * C90_BK * 8;
    let epi = C90_BM * (C90_BN + 8) * 4;
    (if main > epi { main } else { epi }) + 1024
};

const LAUNCH: &str =
    "grid = (max(1, min(ceil(N * Ho * Wo / 128), floor(SMs / (ceil(C_out / groups / 256) * groups)))), ceil(C_out / groups / 256), groups) (persistent over column tiles), block = 256, dynamic smem = C90_SMEM_BYTES (199680); kh * kw <= 31, K % 8 == 0";

const SPLIT_LAUNCH: &str =
    "grid = (walkers, ceil(C_out / groups / 256), groups) over full_tiles + (tiles - full_tiles) * splits units (split_launch_config), block = 256, dynamic smem = C90_SMEM_BYTES (199680); then the reduce entry";
const REDUCE_LAUNCH: &str =
    "grid = clamp(ceil(C_out * split columns / (4 if Ho * Wo % 4 == 0 and y, residual aligned, else 1) / 256), 1, 65535), block = 256";

/// Every entry of the module: the plain entries ([`ENTRIES`]) then the split-K ones
/// ([`SPLIT_ENTRIES`]).
pub const ALL_ENTRIES: &[Entry] = &[
    Entry::v1(
        "conv2d_sm90_v1_bf16",
        "conv2d_sm90",
        DType::Bf16,
        ("Conv2dParams", 144),
        LAUNCH,
    ),
    // bf16 operands, f32 y
    Entry::v1(
        "conv2d_sm90_v1_f32",
        "conv2d_sm90",
        DType::F32,
        ("Conv2dParams", 144),
        LAUNCH,
    ),
    Entry::v1(
        "conv2d_sm90_splitk_v1_bf16",
        "conv2d_sm90_splitk",
        DType::Bf16,
        ("C90SplitParams", 168),
        SPLIT_LAUNCH,
    ),
    Entry::v1(
        "conv2d_sm90_splitk_v1_f32",
        "conv2d_sm90_splitk",
        DType::F32,
        ("C90SplitParams", 168),
        SPLIT_LAUNCH,
    ),
    Entry::v1(
        "conv2d_sm90_reduce_v1_bf16",
        "conv2d_sm90_reduce",
        DType::Bf16,
        ("C90SplitParams", 168),
        REDUCE_LAUNCH,
    ),
    Entry::v1(
        "conv2d_sm90_reduce_v1_f32",
        "conv2d_sm90_reduce",
        DType::F32,
        ("C90SplitParams", 168),
        REDUCE_LAUNCH,
    ),
];

/// The plain entries (`conv2d_sm90_v1_{bf16,f32}`, [`Conv2dParams`]).
pub const ENTRIES: &[Entry] = ALL_ENTRIES.split_at(2).0;

/// The split-K entries (`conv2d_sm90_splitk_v1_{bf16,f32}`: the partial / whole tiles,
/// `conv2d_sm90_reduce_v1_{bf16,f32}`: the ordered sum of the splits + epilogue), taking
/// [`C90SplitParams`].
pub const SPLIT_ENTRIES: &[Entry] = ALL_ENTRIES.split_at(2).1;

/// The split entry and the reduce entry for a bf16 (`out_f32` false) or f32 y.
pub fn split_entries(out_f32: bool) -> (&'static str, &'static str) {
    (
        SPLIT_ENTRIES[out_f32 as usize].name,
        SPLIT_ENTRIES[2 + out_f32 as usize].name,
    )
}

/// Mirrors `struct C90SplitParams` in `conv2d_sm90.cu` (168 bytes): the convolution, the f32
/// workspace and the split plan ([`C90Split`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct C90SplitParams {
    pub p: Conv2dParams,
    /// `(splits, C_out, ws_ld)` f32, [`C90Split::workspace_len`] elements.
    pub ws: u64,
    pub splits: u32,
    pub full_tiles: u32,
    pub kt_split: u32,
    pub ws_ld: u32,
}

impl C90SplitParams {
    pub fn new(p: Conv2dParams, s: Conv2dShape, split: C90Split, ws: u64) -> Self {
        Self {
            p,
            ws,
            splits: split.splits,
            full_tiles: split.full_tiles,
            kt_split: split.kt_split,
            ws_ld: split.ws_ld(s),
        }
    }

    /// Whether the reduce pass takes 4 columns per thread (the `.cu`'s `vec4`): `Ho * Wo % 4 == 0`,
    /// y 16-byte and the residual 8-byte aligned.
    pub fn reduce_vec4(&self) -> bool {
        self.p.h_out * self.p.w_out % 4 == 0
            && self.p.ptrs.y % 16 == 0
            && self.p.ptrs.residual % 8 == 0
    }
}

/// The split-K plan of a `conv2d_sm90` launch ([`plan_split`]): column tiles `0 .. full_tiles`
/// whole, each later tile as `splits` units of `kt_split` k tiles (the last split the rest).
/// `splits == 1`: no split (the plain entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct C90Split {
    pub splits: u32,
    pub full_tiles: u32,
    pub kt_split: u32,
}

impl C90Split {
    pub const NONE: C90Split = C90Split {
        splits: 1,
        full_tiles: 0,
        kt_split: 0,
    };

    pub fn is_split(self) -> bool {
        self.splits > 1
    }

    /// Workspace row length: the split tiles' columns, whole tiles.
    pub fn ws_ld(self, s: Conv2dShape) -> u32 {
        let col_tiles = tiles(s.n * s.h_out() * s.w_out(), C90_BN);
        col_tiles.saturating_sub(self.full_tiles) * C90_BN
    }

    /// f32 elements of the workspace (0 without a split).
    pub fn workspace_len(self, s: Conv2dShape) -> u64 {
        if !self.is_split() {
            return 0;
        }
        u64::from(self.splits) * s.c_out * u64::from(self.ws_ld(s))
    }
}

/// Cost model of [`plan_split`], in units of one SM's 128-deep k tile of a 256 x 128 block tile
/// (~1.1 us on h100-sxm in the gpu-model's prediction of the 8x8 1280-channel convs): a whole
/// tile's prologue + fused epilogue, a split unit's prologue + f32 partial store (128 KiB per SM
/// at the same time as every other SM's), the reduce launch's fixed cost and its DRAM bytes per k
/// tile (~3.35 TB/s x 1.1 us, rounded down).
const TILE_OVERHEAD: f64 = 3.0;
const PART_OVERHEAD: f64 = 4.0;
const REDUCE_FIXED: f64 = 3.0;
const REDUCE_BYTES_PER_KTILE: f64 = 3.5e6;
/// A split must beat the whole-tile walk by this factor of the predicted cost.
const MIN_GAIN: f64 = 0.93;

/// Walkers per row tile of the plain launch (at most one block per SM).
fn walkers(s: Conv2dShape, sms: u32) -> u32 {
    let rows = tiles(s.c_out_g(), C90_BM) * s.groups.max(1) as u32;
    (sms.max(1) / rows.max(1)).max(1)
}

/// The split-K plan for `s` on `sms` SMs: where a row tile has fewer column tiles than walkers
/// (SMs left idle), the k-split that minimises the modelled busiest walker + reduce pass, if it
/// beats the plain walk by 7 %; else [`C90Split::NONE`]. Grids of at least one tile per walker
/// are not split (`full_tiles` stays 0): the gpu-model predicts the 16x16 1280-channel convs (64
/// tiles on 26 walkers, 2.46 rounds) at 97 % of tensor speed of light unsplit, and whole rounds +
/// a split last round no faster (docs/performance.md, branch `sk90`, twelfth session); the kernel
/// takes `full_tiles` > 0 all the same (tested).
pub fn plan_split(s: Conv2dShape, sms: u32) -> C90Split {
    let t = tiles(s.n * s.h_out() * s.w_out(), C90_BN);
    let k = tiles(s.k(), C90_BK);
    if t == 0 || k < 2 {
        return C90Split::NONE;
    }
    let g = walkers(s, sms);
    if t >= g {
        return C90Split::NONE;
    }
    let whole = |n: u32| f64::from(n) * (f64::from(k) + TILE_OVERHEAD);
    let base = whole(t.div_ceil(g));
    let mut best = (base * MIN_GAIN, C90Split::NONE);
    // every tile split (full_tiles 0): each walker takes at most ceil(t * splits / g) units
    for splits in 2..=k.min(32) {
        let kts = k.div_ceil(splits);
        if (splits - 1) * kts >= k {
            continue; // an empty last split
        }
        let part = f64::from((t * splits).div_ceil(g)) * (f64::from(kts) + PART_OVERHEAD);
        let bytes = s.c_out as f64 * f64::from(t * C90_BN) * f64::from(4 * splits + 4);
        let cost = part + REDUCE_FIXED + bytes / REDUCE_BYTES_PER_KTILE;
        if cost < best.0 {
            let split = C90Split {
                splits,
                full_tiles: 0,
                kt_split: kts,
            };
            best = (cost, split);
        }
    }
    best.1
}

/// The split entry's launch: `grid = (walkers, ceil(C_out / groups / 256), groups)`, walkers =
/// [`launch_config`]'s (at most one block per SM) capped at the units of a row tile. The work
/// stated to the profiler counts a whole tile as `splits` units (`persistent_tiles = tiles *
/// splits`: with `full_tiles` a multiple of the walkers every walker's share is the `.cu`'s).
pub fn split_launch_config(s: Conv2dShape, sms: u32, split: C90Split) -> LaunchConfig {
    let t = tiles(s.n * s.h_out() * s.w_out(), C90_BN).max(1);
    let units = split.full_tiles + (t - split.full_tiles.min(t)) * split.splits;
    let mut cfg = launch_config(s, sms);
    cfg.grid[0] = walkers(s, sms).clamp(1, units.max(1));
    cfg.persistent_tiles = u64::from(t) * u64::from(split.splits);
    cfg
}

/// The reduce entry's launch over the split columns of `q`.
pub fn reduce_launch_config(s: Conv2dShape, q: &C90SplitParams) -> LaunchConfig {
    let cols = (s.n * s.h_out() * s.w_out()).saturating_sub(u64::from(q.full_tiles * C90_BN));
    let per = if q.reduce_vec4() { 4 } else { 1 };
    crate::grid_stride(s.c_out * (cols / per), 256, 1)
}

/// Whether the sm_90a kernel takes `s` with a W at device address `w_ptr`: the shapes of
/// `conv2d.cu`'s v2 ([`conv2d::version`] 2) whose `K = C_in / groups * kh * kw` is a multiple of 8
/// and whose W is 16-byte aligned (16-byte cp.async of the swizzled W tile).
pub fn supports(s: Conv2dShape, w_ptr: u64) -> bool {
    conv2d::version(s) == 2 && s.k() % 8 == 0 && w_ptr % 16 == 0
}

/// The entry for a bf16 (`out_f32` false) or f32 y.
pub fn entry(out_f32: bool) -> &'static str {
    ENTRIES[out_f32 as usize].name
}

/// `grid = (x, ceil(C_out / groups / 256), groups)`, `block = 256`, [`C90_SMEM_BYTES`] of dynamic
/// shared memory: the kernel is persistent over its `ceil(N * Ho * Wo / 128)` column tiles, block
/// x taking tiles x, x + gridDim.x, ...; `x` = as many blocks as give each of `sms` SMs at most one
/// block (at least 1, at most one per column tile). The work split stated to the profiler
/// ([`LaunchConfig::work_runs`]) counts a tile of row tile y as its m64 wgmma halves holding
/// output channels ([`TileWork::RowSlices`]: 4 per whole 256-row tile, 1 for C_out / groups
/// 320's second), the kernel's tensor work per tile.
pub fn launch_config(s: Conv2dShape, sms: u32) -> LaunchConfig {
    let col_tiles = tiles(s.n * s.h_out() * s.w_out(), C90_BN);
    let rows = tiles(s.c_out_g(), C90_BM) * s.groups.max(1) as u32;
    // floor: one block per SM at most (a ceil would put the blocks past `sms` in a second wave,
    // e.g. 27 x 5 = 135 blocks for C_out 1280 on 132 SMs)
    let x = (sms.max(1) / rows.max(1)).clamp(1, col_tiles.max(1));
    LaunchConfig {
        grid: [x, tiles(s.c_out_g(), C90_BM), s.groups.max(1) as u32],
        block: [C90_THREADS, 1, 1],
        dynamic_smem_bytes: C90_SMEM_BYTES,
        persistent_tiles: u64::from(col_tiles.max(1)),
        tile_work: TileWork::RowSlices {
            rows: s.c_out_g() as u32,
            tile_rows: C90_BM,
            slice_rows: 64,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(C90SplitParams, 168);

    #[test]
    fn split_plans() {
        let sq = Conv2dShape::square;
        // 8x8 1280 -> 1280, batch 32: 16 column tiles per row tile on 26 walkers: split
        let c8 = sq(32, 1280, 8, 8, 1280, 3, 1, 1);
        let p8 = plan_split(c8, 132);
        assert_eq!(
            p8,
            C90Split {
                splits: 3,
                full_tiles: 0,
                kt_split: 30
            }
        );
        // 8x8 2560 -> 1280 (K = 180 k tiles): the same 3 splits; its 1x1 shortcut (20 k tiles):
        // none (the reduce pass costs more than the split saves)
        assert_eq!(plan_split(sq(32, 2560, 8, 8, 1280, 3, 1, 1), 132).splits, 3);
        assert_eq!(
            plan_split(sq(32, 2560, 8, 8, 1280, 1, 1, 0), 132),
            C90Split::NONE
        );
        // 16x16 1280 -> 1280: 64 tiles on 26 walkers, at least one tile each: no split
        assert_eq!(
            plan_split(sq(32, 1280, 16, 16, 1280, 3, 1, 1), 132),
            C90Split::NONE
        );
        let cfg = split_launch_config(c8, 132, p8);
        assert!(cfg.grid[0] <= 26 && cfg.grid[1] == 5, "{cfg:?}");
        assert_eq!(p8.workspace_len(c8), u64::from(p8.splits) * 1280 * 16 * 128);
        // 64x64 320 -> 320, batch 32: 1024 tiles fill the machine: no split
        assert_eq!(
            plan_split(sq(32, 320, 64, 64, 320, 3, 1, 1), 132),
            C90Split::NONE
        );
        // one k tile: nothing to split
        assert_eq!(
            plan_split(sq(1, 8, 8, 8, 1280, 3, 1, 1), 132),
            C90Split::NONE
        );
        // every split non-empty
        for (s, sms) in [
            (c8, 132),
            (sq(32, 1280, 16, 16, 1280, 3, 1, 1), 132),
            (sq(2, 40, 23, 21, 136, 3, 2, 1), 132),
        ] {
            let p = plan_split(s, sms);
            if p.is_split() {
                let k = tiles(s.k(), C90_BK);
                assert!(
                    (p.splits - 1) * p.kt_split < k && p.splits * p.kt_split >= k,
                    "{p:?}"
                );
                assert_eq!(p.full_tiles % walkers(s, sms), 0, "{p:?}");
            }
        }
    }

    #[test]
    fn smem_and_support() {
        assert_eq!(
            C90_SMEM_BYTES,
            2 * (256 * 128 * 2 + 128 * 128 * 2) + 2 * 128 * 8 + 1024
        );
        let s = Conv2dShape::square(2, 320, 16, 16, 320, 3, 1, 1);
        assert!(supports(s, 0));
        assert!(!supports(s, 2));
        assert!(!supports(
            Conv2dShape::square(2, 4, 16, 16, 320, 3, 1, 1),
            0
        )); // K = 36
        assert_eq!(launch_config(s, 132).grid, [4, 2, 1]);
        let big = Conv2dShape::square(32, 320, 64, 64, 320, 3, 1, 1); // 1024 column tiles
        assert_eq!(launch_config(big, 132).grid, [66, 2, 1]);
        assert_eq!(launch_config(big, 1).grid, [1, 2, 1]);
        // 1024 column tiles on 66 walkers per row tile (34 walk 16, 32 walk 15); row tile 0
        // computes 4 m64 halves per tile, row tile 1 (channels 256..319) one
        assert_eq!(
            launch_config(big, 132).work_runs(),
            Some(vec![(34, 64), (32, 60), (34, 16), (32, 15)])
        );
        // C_out 1280 (5 row tiles): 26 x 5 = 130 blocks on 132 SMs, not 27 x 5 = 135
        let c1280 = Conv2dShape::square(32, 1280, 16, 16, 1280, 3, 1, 1);
        assert_eq!(launch_config(c1280, 132).grid, [26, 5, 1]);
        // 64 column tiles: 12 walkers of 3 tiles and 14 of 2 in each whole row tile
        assert_eq!(
            launch_config(c1280, 132).work_runs().unwrap()[..2],
            [(12, 12), (14, 8)]
        );
    }
}
