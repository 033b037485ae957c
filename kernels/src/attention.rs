//! `kernels/cuda/attention.cu`: fused flash-style multi-head attention forward, bf16 or f32 in/out
//! (f32 as bf16 hi + lo tensor-core operands), f32 accumulation; one entry per padded head dim and
//! dtype (`attention_d{48,64,80,128,160}_v1_{bf16,f32}`).

use crate::{tiles, to_u32, DType, Entry, LaunchConfig};
use anyhow::{bail, ensure, Result};

/// Query rows per warp (one mma M); a block has `bm / 16` warps.
pub const ATTN_WARP_ROWS: u32 = 16;

/// One head-dim specialisation: `AttnTraits<DP, BN, S>` in the `.cu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnTraits {
    /// Padded head dim (multiple of 16).
    pub dp: u32,
    /// Keys per tile.
    pub bn: u32,
    /// Query rows per block (128 for head dims <= 64, else 64).
    pub bm: u32,
    /// Storage dtype of q, k, v and o (f32: bf16 hi + lo planes in shared memory).
    pub dtype: DType,
    /// Resident blocks per SM: the entry's `__launch_bounds__` minimum, which its ptxas registers
    /// and static shared memory give on A100 and H100 alike (checked against
    /// `kernels/reports/attention.txt`); the persistent grid is this times the SMs.
    pub ctas_per_sm: u32,
    /// Persistent blocks walking the tiles head-major (`AttnTraits::PERSIST` in the `.cu`: the
    /// 64-row entries, DP >= 80); the 128-row entries run one tile per block on the grid
    /// `(ceil(Lq / BM), H, B)`.
    pub persistent: bool,
    pub entry: &'static str,
}

impl AttnTraits {
    /// Padded shared row, bf16 elements.
    pub const fn lds(self) -> u32 {
        self.dp + 8
    }
    /// Static shared memory. bf16: Q tile + K tile + V tile. f32: hi and lo planes of the K and V
    /// tiles, the Q planes staged over them (Q lives in registers after the prologue).
    pub const fn smem_bytes(self) -> u32 {
        let rows = match self.dtype {
            DType::Bf16 => self.bm + 2 * self.bn,
            DType::F32 => {
                if 4 * self.bn > 2 * self.bm {
                    4 * self.bn
                } else {
                    2 * self.bm
                }
            }
        };
        rows * self.lds() * 2
    }
    /// Threads per block (`bm / 16` warps).
    pub const fn threads(self) -> u32 {
        self.bm / ATTN_WARP_ROWS * 32
    }
}

/// Query rows per block at padded head dim `dp`: 128 (8 warps) up to 64, else 64 (4 warps).
pub const fn block_rows(dp: u64) -> u32 {
    if dp <= 64 {
        128
    } else {
        64
    }
}

const fn tr(dp: u32, bn: u32, dtype: DType, ctas_per_sm: u32, entry: &'static str) -> AttnTraits {
    AttnTraits {
        dp,
        bn,
        bm: block_rows(dp as u64),
        dtype,
        ctas_per_sm,
        persistent: dp >= 80,
        entry,
    }
}

/// Every specialisation, bf16 then f32, smallest head dim first (the launcher picks the first of
/// the operands' dtype with `dp >= D`).
pub const TRAITS: [AttnTraits; 10] = [
    tr(48, 64, DType::Bf16, 2, "attention_d48_v1_bf16"),
    tr(64, 64, DType::Bf16, 1, "attention_d64_v1_bf16"),
    tr(80, 64, DType::Bf16, 3, "attention_d80_v1_bf16"),
    tr(128, 32, DType::Bf16, 3, "attention_d128_v1_bf16"),
    tr(160, 32, DType::Bf16, 2, "attention_d160_v1_bf16"),
    tr(48, 64, DType::F32, 2, "attention_d48_v1_f32"),
    tr(64, 64, DType::F32, 1, "attention_d64_v1_f32"),
    tr(80, 64, DType::F32, 3, "attention_d80_v1_f32"),
    tr(128, 32, DType::F32, 2, "attention_d128_v1_f32"),
    tr(160, 32, DType::F32, 2, "attention_d160_v1_f32"),
];

/// The largest head dim any entry takes.
pub const MAX_HEAD_DIM: u64 = 160;

const _: () = {
    let mut i = 0;
    while i < TRAITS.len() {
        assert!(TRAITS[i].smem_bytes() <= 48 * 1024);
        assert!(TRAITS[i].dp % 16 == 0 && TRAITS[i].bn % 16 == 0);
        i += 1;
    }
};

const LAUNCH: &str = "DP >= 80: persistent, grid = min(ceil(Lq / BM) H B, ctas_per_sm SMs) \
                      walking the tiles head-major; else grid = (ceil(Lq / BM), H, B); BM = 128 \
                      (D <= 64) or 64, block = 2 BM, static smem (Q + K + V tiles; f32: hi + lo \
                      planes)";

macro_rules! entry {
    ($name:literal, $op:literal, $dt:ident) => {
        Entry::v1($name, $op, DType::$dt, ("AttentionParams", 200), LAUNCH)
    };
}

const SHORT_LAUNCH: &str = "grid = ceil(B H / W), block = 32 W (one warp per (batch, head), W = \
                            ShortTraits::warps), dynamic smem W (16 + 32 NT) LDS 2 bytes, NT = \
                            ceil(Lk / 16) <= 2";

macro_rules! short_entry {
    ($name:literal, $op:literal) => {
        Entry::v1(
            $name,
            $op,
            DType::Bf16,
            ("AttentionParams", 200),
            SHORT_LAUNCH,
        )
    };
}

pub const ENTRIES: &[Entry] = &[
    entry!("attention_d48_v1_bf16", "attention_d48", Bf16),
    entry!("attention_d64_v1_bf16", "attention_d64", Bf16),
    entry!("attention_d80_v1_bf16", "attention_d80", Bf16),
    entry!("attention_d128_v1_bf16", "attention_d128", Bf16),
    entry!("attention_d160_v1_bf16", "attention_d160", Bf16),
    entry!("attention_d48_v1_f32", "attention_d48", F32),
    entry!("attention_d64_v1_f32", "attention_d64", F32),
    entry!("attention_d80_v1_f32", "attention_d80", F32),
    entry!("attention_d128_v1_f32", "attention_d128", F32),
    entry!("attention_d160_v1_f32", "attention_d160", F32),
    short_entry!("attention_short_d16_v1_bf16", "attention_short_d16"),
    short_entry!("attention_short_d32_v1_bf16", "attention_short_d32"),
    short_entry!("attention_short_d40_v1_bf16", "attention_short_d40"),
    short_entry!("attention_short_d64_v1_bf16", "attention_short_d64"),
    short_entry!("attention_short_d80_v1_bf16", "attention_short_d80"),
    short_entry!("attention_short_d128_v1_bf16", "attention_short_d128"),
    short_entry!("attention_short_d160_v1_bf16", "attention_short_d160"),
];

/// Most keys (own + extra) the short-sequence entries take: two 16-key tiles, all in registers.
pub const SHORT_MAX_LK: u64 = 32;
/// Most query rows the launcher gives the short-sequence entries (each warp loops over its
/// problem's 16-row chunks; more rows would leave too few problems per launch to fill the GPU).
pub const SHORT_MAX_LQ: u64 = 64;
/// Most warps (problems) per short-sequence block.
pub const SHORT_MAX_WARPS: u32 = 8;

/// One short-sequence entry (`ShortTraits<D>` in the `.cu`): one warp per (batch, head) problem,
/// Lk <= [`SHORT_MAX_LK`] keys, the exact head dim `d` (a multiple of 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortTraits {
    pub d: u32,
    pub entry: &'static str,
}

/// Every short-sequence specialisation, smallest head dim first.
pub const SHORT_TRAITS: [ShortTraits; 7] = [
    ShortTraits {
        d: 16,
        entry: "attention_short_d16_v1_bf16",
    },
    ShortTraits {
        d: 32,
        entry: "attention_short_d32_v1_bf16",
    },
    ShortTraits {
        d: 40,
        entry: "attention_short_d40_v1_bf16",
    },
    ShortTraits {
        d: 64,
        entry: "attention_short_d64_v1_bf16",
    },
    ShortTraits {
        d: 80,
        entry: "attention_short_d80_v1_bf16",
    },
    ShortTraits {
        d: 128,
        entry: "attention_short_d128_v1_bf16",
    },
    ShortTraits {
        d: 160,
        entry: "attention_short_d160_v1_bf16",
    },
];

impl ShortTraits {
    /// Shared row in bf16: `d + 8` when `d % 16 == 0`, else `d` (an odd number of 16-byte units).
    pub const fn lds(self) -> u32 {
        if self.d % 16 == 0 {
            self.d + 8
        } else {
            self.d
        }
    }
    /// Shared bytes of one warp for `lk` keys: a 16-row Q chunk and 16 NT rows of K and of V.
    pub const fn warp_smem_bytes(self, lk: u64) -> u32 {
        let nt = (lk as u32).div_ceil(16);
        (16 + 32 * nt) * self.lds() * 2
    }
    /// Warps per block: up to [`SHORT_MAX_WARPS`], at most 48 KB of shared memory.
    pub const fn warps(self, lk: u64) -> u32 {
        let w = 48 * 1024 / self.warp_smem_bytes(lk);
        if w > SHORT_MAX_WARPS {
            SHORT_MAX_WARPS
        } else if w == 0 {
            1
        } else {
            w
        }
    }
}

/// The short-sequence entry for `p` (operands of `dtype`), if it takes it: bf16, 16-byte aligned
/// loads ([`ALIGNED_LOADS`]), a head dim with an entry, 1 <= Lk <= [`SHORT_MAX_LK`] (own + extra
/// keys) and Lq <= [`SHORT_MAX_LQ`].
pub fn short_traits(p: &AttentionParams, dtype: DType) -> Option<ShortTraits> {
    if dtype != DType::Bf16
        || p.aligned & ALIGNED_LOADS == 0
        || p.lk == 0
        || p.lk as u64 > SHORT_MAX_LK
        || p.lq as u64 > SHORT_MAX_LQ
    {
        return None;
    }
    SHORT_TRAITS.iter().find(|t| t.d == p.d).copied()
}

/// `grid = ceil(B H / W)`, `block = 32 W` ([`ShortTraits::warps`]), dynamic smem W warps' worth,
/// for the params' B, H and Lk (own + extra keys).
pub fn launch_config_short(t: ShortTraits, p: &AttentionParams) -> LaunchConfig {
    let lk = p.lk as u64;
    let w = t.warps(lk);
    let problems = (p.batch.max(1) as u64) * (p.heads.max(1) as u64);
    let mut cfg = LaunchConfig::blocks([tiles(problems, w), 1, 1], w * 32);
    cfg.dynamic_smem_bytes = w * t.warp_smem_bytes(lk);
    cfg
}

/// Mirrors `struct AttentionParams` in `attention.cu` (200 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttentionParams {
    /// `(B, H, Lq, D)` bf16 or f32 (the entry's dtype; strided).
    pub q: u64,
    /// `(B, H, Lk_own, D)`: keys `0..lk_own`.
    pub k: u64,
    /// `(B, H, Lk_own, D)`.
    pub v: u64,
    /// `(B, H, Lq, D)`.
    pub o: u64,
    /// `(B, H, Lk - Lk_own, D)`: extra keys `lk_own..lk` (= `k` when there are none).
    pub k2: u64,
    /// `(B, H, Lk - Lk_own, D)`.
    pub v2: u64,
    pub q_batch: u64,
    pub q_head: u64,
    pub k_batch: u64,
    pub k_head: u64,
    pub v_batch: u64,
    pub v_head: u64,
    pub o_batch: u64,
    pub o_head: u64,
    pub k2_batch: u64,
    pub k2_head: u64,
    pub v2_batch: u64,
    pub v2_head: u64,
    pub q_row: u32,
    pub k_row: u32,
    pub v_row: u32,
    pub o_row: u32,
    pub k2_row: u32,
    pub v2_row: u32,
    pub heads: u32,
    pub lq: u32,
    /// All keys (own + extra).
    pub lk: u32,
    pub lk_own: u32,
    pub d: u32,
    /// Softmax scale times `log2(e)` (> 0).
    pub scale_log2: f32,
    /// Bit 0 ([`ALIGNED_LOADS`]): q, k, v (and k2, v2) 16-byte aligned with every stride a
    /// multiple of 8 (cp.async / 16-byte loads); bit 1 ([`ALIGNED_STORES`]): o likewise (16-byte
    /// stores).
    pub aligned: u32,
    /// B (the short-sequence entries' problem count is B H).
    pub batch: u32,
}

/// [`AttentionParams::aligned`] bit: 16-byte operand loads.
pub const ALIGNED_LOADS: u32 = 1;
/// [`AttentionParams::aligned`] bit: 16-byte output stores.
pub const ALIGNED_STORES: u32 = 2;

fn aligned16(ptr: u64, s: &AttnStrides) -> bool {
    ptr % 16 == 0 && s.batch % 8 == 0 && s.head % 8 == 0 && s.row % 8 == 0
}

/// `B x H` heads of `Lq` queries over `Lk` keys at head dim `D`, e.g. `B 32, H 8, Lq 4096,
/// Lk 8192, D 40` (reference attention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: u64,
    pub heads: u64,
    pub lq: u64,
    pub lk: u64,
    pub d: u64,
}

/// Strides of one operand in elements: `(batch, head, row)`; the head dim is contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnStrides {
    pub batch: u64,
    pub head: u64,
    pub row: u64,
}

impl AttnStrides {
    /// Token layout `(B, L, C)` with head `h` at columns `h D..`: `(B, L, H, D)` inside rows of
    /// `row` elements (e.g. `row = C` of a projection output).
    pub fn tokens(len: u64, d: u64, row: u64) -> AttnStrides {
        AttnStrides {
            batch: len * row,
            head: d,
            row,
        }
    }
    /// Dense `(B, H, L, D)`.
    pub fn bhld(heads: u64, len: u64, d: u64) -> AttnStrides {
        AttnStrides {
            batch: heads * len * d,
            head: len * d,
            row: d,
        }
    }
    /// Dense `(B, L, H, D)` (a projection output before the head transpose).
    pub fn blhd(heads: u64, len: u64, d: u64) -> AttnStrides {
        AttnStrides {
            batch: len * heads * d,
            head: d,
            row: heads * d,
        }
    }
}

/// The `dtype` specialisation for head dim `d` (smallest padded dim that holds it; any `1..=160`,
/// the columns past `d` zero-filled).
pub fn traits_for(d: u64, dtype: DType) -> Result<AttnTraits> {
    ensure!(d > 0, "attention: head dim 0");
    match TRAITS.iter().find(|t| t.dtype == dtype && t.dp as u64 >= d) {
        Some(t) => Ok(*t),
        None => bail!("attention: head dim {d} > {MAX_HEAD_DIM}, the largest specialisation"),
    }
}

impl AttentionParams {
    /// Pointers `[q, k, v, o]`, strides in the same order.
    pub fn new(
        ptrs: [u64; 4],
        strides: [AttnStrides; 4],
        shape: AttentionShape,
        scale: f32,
    ) -> Result<Self> {
        traits_for(shape.d, DType::Bf16)?;
        ensure!(shape.lk >= 1, "attention: Lk = 0 (no keys) has no softmax");
        ensure!(
            scale.is_finite() && scale > 0.0,
            "attention: the kernel takes a finite scale > 0, got {scale}"
        );
        ensure!(
            (1..=65_535).contains(&shape.batch) && (1..=65_535).contains(&shape.heads),
            "attention: batch {} and heads {} must be in 1..=65535",
            shape.batch,
            shape.heads
        );
        let n = query_tiles(shape, MIN_BLOCK_ROWS);
        ensure!(
            n <= MAX_TILES,
            "attention: {n} tiles of {MIN_BLOCK_ROWS} query rows (B {} x H {} x ceil(Lq {} / \
             {MIN_BLOCK_ROWS})) exceed the kernels' 32-bit tile index ({MAX_TILES}); split the batch",
            shape.batch,
            shape.heads,
            shape.lq
        );
        for (s, what) in strides.iter().zip(["q", "k", "v", "o"]) {
            ensure!(
                s.row >= shape.d,
                "attention: {what} row stride {} < D {}",
                s.row,
                shape.d
            );
        }
        let loads = (0..3).all(|i| aligned16(ptrs[i], &strides[i]));
        let stores = aligned16(ptrs[3], &strides[3]);
        let aligned =
            if loads { ALIGNED_LOADS } else { 0 } | if stores { ALIGNED_STORES } else { 0 };
        Ok(AttentionParams {
            q: ptrs[0],
            k: ptrs[1],
            v: ptrs[2],
            o: ptrs[3],
            q_batch: strides[0].batch,
            q_head: strides[0].head,
            k_batch: strides[1].batch,
            k_head: strides[1].head,
            v_batch: strides[2].batch,
            v_head: strides[2].head,
            o_batch: strides[3].batch,
            o_head: strides[3].head,
            k2: ptrs[1],
            v2: ptrs[2],
            k2_batch: strides[1].batch,
            k2_head: strides[1].head,
            v2_batch: strides[2].batch,
            v2_head: strides[2].head,
            q_row: to_u32(strides[0].row, "attention q row stride")?,
            k_row: to_u32(strides[1].row, "attention k row stride")?,
            v_row: to_u32(strides[2].row, "attention v row stride")?,
            o_row: to_u32(strides[3].row, "attention o row stride")?,
            k2_row: to_u32(strides[1].row, "attention k row stride")?,
            v2_row: to_u32(strides[2].row, "attention v row stride")?,
            heads: to_u32(shape.heads, "attention heads")?,
            lq: to_u32(shape.lq, "attention Lq")?,
            lk: to_u32(shape.lk, "attention Lk")?,
            lk_own: to_u32(shape.lk, "attention Lk")?,
            d: to_u32(shape.d, "attention D")?,
            scale_log2: scale * std::f32::consts::LOG2_E,
            aligned,
            batch: to_u32(shape.batch, "attention batch")?,
        })
    }

    /// `lk_extra` more keys / values after the own ones, from `ptrs = [k2, v2]` with their strides
    /// (a batch stride 0 broadcasts one key set over the batch): `lk` grows by `lk_extra`.
    pub fn with_extra(
        mut self,
        ptrs: [u64; 2],
        strides: [AttnStrides; 2],
        lk_extra: u64,
    ) -> Result<Self> {
        for (s, what) in strides.iter().zip(["k2", "v2"]) {
            ensure!(
                s.row >= self.d as u64,
                "attention: {what} row stride {} < D {}",
                s.row,
                self.d
            );
        }
        self.k2 = ptrs[0];
        self.v2 = ptrs[1];
        self.k2_batch = strides[0].batch;
        self.k2_head = strides[0].head;
        self.v2_batch = strides[1].batch;
        self.v2_head = strides[1].head;
        self.k2_row = to_u32(strides[0].row, "attention k2 row stride")?;
        self.v2_row = to_u32(strides[1].row, "attention v2 row stride")?;
        self.lk = to_u32(self.lk_own as u64 + lk_extra, "attention Lk")?;
        if !(0..2).all(|i| aligned16(ptrs[i], &strides[i])) {
            self.aligned &= !ALIGNED_LOADS;
        }
        Ok(self)
    }

    /// Forces the plain-load, plain-store path.
    pub fn without_cp_async(mut self) -> Self {
        self.aligned = 0;
        self
    }
}

/// The fewest query rows per tile of any entry (both modules).
pub const MIN_BLOCK_ROWS: u32 = 64;
/// Most tiles a launch may have: the kernels index them in 32 bits (`t + gridDim.x` included)
/// and a one-tile-per-block grid is at most `2^31 - 1` blocks wide.
pub const MAX_TILES: u64 = (1 << 31) - 1;

/// Tiles of `bm` query rows: `ceil(Lq / bm) H B`, the persistent blocks' work list.
pub fn query_tiles(shape: AttentionShape, bm: u32) -> u64 {
    shape.lq.div_ceil(bm as u64) * shape.heads * shape.batch
}

/// Persistent grid of `ctas_per_sm` resident blocks on each of `sm_count` SMs, at most one per
/// tile (at least one block: Lq = 0 runs an empty loop).
pub fn persistent_grid(tiles: u64, ctas_per_sm: u32, sm_count: u32) -> [u32; 3] {
    let resident = ctas_per_sm.max(1) as u64 * sm_count.max(1) as u64;
    [tiles.clamp(1, resident) as u32, 1, 1]
}

/// Launch of `t` for `shape` on a GPU of `sm_count` SMs: persistent entries get grid =
/// `min(ceil(Lq / BM) H B, ctas_per_sm sm_count)` blocks walking the tiles head-major, the others
/// one block per tile, grid `(ceil(Lq / BM), H, B)`; `block = 2 BM`, static smem only.
pub fn launch_config(t: AttnTraits, shape: AttentionShape, sm_count: u32) -> LaunchConfig {
    if t.persistent {
        let tiles = query_tiles(shape, t.bm);
        let grid = persistent_grid(tiles, t.ctas_per_sm, sm_count);
        return LaunchConfig::blocks(grid, t.threads()).persistent_over(tiles);
    }
    let grid = [
        tiles(shape.lq, t.bm),
        shape.heads.max(1) as u32,
        shape.batch.max(1) as u32,
    ];
    LaunchConfig::blocks(grid, t.threads())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(AttentionParams, 200);

    #[test]
    fn smem_fits_and_matches_report() {
        let want = [
            28_672, 36_864, 33_792, 34_816, 43_008, // bf16
            28_672, 36_864, 45_056, 34_816, 43_008, // f32
        ];
        for (t, w) in TRAITS.iter().zip(want) {
            assert_eq!(t.smem_bytes(), w, "{}", t.entry);
            assert!(t.smem_bytes() <= 48 * 1024);
        }
        assert_eq!(TRAITS.len() + SHORT_TRAITS.len(), ENTRIES.len());
        for (t, e) in SHORT_TRAITS.iter().zip(&ENTRIES[TRAITS.len()..]) {
            assert_eq!((t.entry, DType::Bf16), (e.name, e.dtype));
        }
        for (t, e) in TRAITS.iter().zip(ENTRIES) {
            assert_eq!((t.entry, t.dtype), (e.name, e.dtype));
            // the launch rule picks the entry's block size from the unpadded head dim
            let shape = AttentionShape {
                batch: 1,
                heads: 1,
                lq: 1,
                lk: 1,
                d: t.dp as u64 - 7,
            };
            let picked = traits_for(shape.d, t.dtype).unwrap();
            assert_eq!(picked, *t);
            assert_eq!(
                launch_config(picked, shape, 108).block[0],
                t.threads(),
                "{}",
                t.entry
            );
        }
    }

    /// Registers (`kernels/reports/attention.txt`) and static shared memory give every entry
    /// `ctas_per_sm` resident blocks on A100 and H100 alike by the gpu-model's occupancy rule
    /// (the `__launch_bounds__` minimum is what ptxas met, and no more).
    #[test]
    fn ctas_per_sm_match_report() {
        let report = include_str!("../reports/attention.txt");
        for t in TRAITS {
            for (arch, gpu) in [("sm_80", "a100-sxm"), ("sm_90a", "h100-sxm")] {
                let by =
                    crate::resident_blocks(report, t.entry, arch, t.threads(), t.smem_bytes(), gpu);
                assert_eq!(by, t.ctas_per_sm, "{} {arch} on {gpu}", t.entry);
            }
        }
    }

    #[test]
    fn persistent_grid_is_resident_blocks() {
        let t = traits_for(80, DType::Bf16).unwrap();
        let s = |lq, heads, batch| AttentionShape {
            batch,
            heads,
            lq,
            lk: 1,
            d: 80,
        };
        // 16 query tiles x 8 heads x 16 = 2048 tiles on 108 SMs x 3
        assert_eq!(launch_config(t, s(1024, 8, 16), 108).grid, [324, 1, 1]);
        assert_eq!(launch_config(t, s(65, 2, 1), 108).grid, [4, 1, 1]);
        assert_eq!(launch_config(t, s(0, 2, 1), 108).grid, [1, 1, 1]);
        assert_eq!(query_tiles(s(129, 3, 5), 64), 45);
        // the 128-row entries: one block per tile
        let t48 = traits_for(40, DType::Bf16).unwrap();
        assert!(!t48.persistent && t.persistent);
        assert_eq!(launch_config(t48, s(4096, 8, 16), 108).grid, [32, 8, 16]);
        // the profiler's work split: persistent launches state their tiles, the others none
        assert_eq!(launch_config(t, s(1024, 8, 16), 108).persistent_tiles, 2048);
        assert_eq!(launch_config(t48, s(4096, 8, 16), 108).persistent_tiles, 0);
        let st = AttnStrides::bhld(65_535, 1 << 20, 80);
        let big = s(1 << 20, 65_535, 65_535);
        let e = AttentionParams::new([4096; 4], [st; 4], big, 0.5).unwrap_err();
        assert!(e.to_string().contains("split the batch"), "{e}");
    }

    #[test]
    fn head_dims_pick_padded_entries() {
        let pick = |d, dt| traits_for(d, dt).unwrap().entry;
        assert_eq!(pick(40, DType::Bf16), "attention_d48_v1_bf16");
        assert_eq!(pick(64, DType::Bf16), "attention_d64_v1_bf16");
        assert_eq!(pick(80, DType::Bf16), "attention_d80_v1_bf16");
        assert_eq!(pick(128, DType::Bf16), "attention_d128_v1_bf16");
        assert_eq!(pick(160, DType::Bf16), "attention_d160_v1_bf16");
        assert_eq!(pick(40, DType::F32), "attention_d48_v1_f32");
        assert_eq!(pick(36, DType::F32), "attention_d48_v1_f32");
        assert_eq!(pick(1, DType::Bf16), "attention_d48_v1_bf16");
        assert_eq!(pick(100, DType::F32), "attention_d128_v1_f32");
        assert_eq!(pick(160, DType::F32), "attention_d160_v1_f32");
        assert!(traits_for(0, DType::F32).is_err());
        assert!(traits_for(161, DType::Bf16).is_err());
        assert!(traits_for(168, DType::F32).is_err());
    }

    #[test]
    fn short_entries_take_short_sequences() {
        let st = AttnStrides::blhd(8, 16, 40);
        let shape = AttentionShape {
            batch: 5,
            heads: 8,
            lq: 16,
            lk: 16,
            d: 40,
        };
        let p = AttentionParams::new([4096; 4], [st; 4], shape, 0.5).unwrap();
        let t = short_traits(&p, DType::Bf16).unwrap();
        assert_eq!(t.entry, "attention_short_d40_v1_bf16");
        // 48 rows of 80 bytes per warp, 8 warps: 40 problems in 5 blocks
        let cfg = launch_config_short(t, &p);
        assert_eq!((cfg.grid, cfg.block[0]), ([5, 1, 1], 256));
        assert_eq!(cfg.dynamic_smem_bytes, 8 * 48 * 80);
        // d160 with 32 keys: 80 rows of 336 bytes, one warp per block
        let t160 = SHORT_TRAITS[6];
        assert_eq!((t160.lds(), t160.warps(32), t160.warps(16)), (168, 1, 3));
        for t in SHORT_TRAITS {
            assert!(t.warps(32) * t.warp_smem_bytes(32) <= 48 * 1024);
            assert_eq!((t.lds() * 2) % 32, 16, "{}", t.entry);
        }
        assert!(short_traits(&p, DType::F32).is_none());
        assert!(short_traits(&p.without_cp_async(), DType::Bf16).is_none());
        let long = |lq, lk| {
            let s = AttentionShape { lq, lk, ..shape };
            AttentionParams::new([4096; 4], [st; 4], s, 0.5).unwrap()
        };
        assert!(short_traits(&long(64, 32), DType::Bf16).is_some());
        assert!(short_traits(&long(65, 16), DType::Bf16).is_none());
        assert!(short_traits(&long(16, 33), DType::Bf16).is_none());
        // extra keys count: 16 own + 17 extra is past the limit
        let ext = p.with_extra([4096; 2], [st; 2], 17).unwrap();
        assert!(short_traits(&ext, DType::Bf16).is_none());
        let d36 = AttentionShape { d: 36, ..shape };
        let p36 = AttentionParams::new([4096; 4], [AttnStrides::blhd(8, 16, 36); 4], d36, 0.5);
        assert!(short_traits(&p36.unwrap(), DType::Bf16).is_none());
    }
}
