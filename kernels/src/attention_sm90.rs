//! `kernels/cuda/attention_sm90.cu` (sm_90a only): fused attention forward on wgmma (S = Q K^T
//! and O += P V, P from registers), 128B-swizzled shared tiles, a double-buffered cp.async ring.
//! bf16 only, head dim `D % 8 == 0` (one entry per D the presets use); it takes the sm_80
//! module's params struct ([`AttentionParams`]) unchanged.

use crate::attention::{
    persistent_grid, query_tiles, AttentionParams, AttentionShape, ALIGNED_LOADS,
};
use crate::{DType, Entry, LaunchConfig};

/// Query rows per consumer warpgroup (one wgmma M).
pub const WG_ROWS: u32 = 64;
/// K / V ring stages.
pub const STAGES: u32 = 2;
/// Consumer warpgroups per block (64 query rows each, sharing the K / V tiles) of every entry
/// but d40's ([`WGS_D40`]).
pub const WGS: u32 = 2;
/// Consumer warpgroups of the d40 entry: 256 query rows per K / V pass.
pub const WGS_D40: u32 = 4;

/// One head-dim specialisation: `Sm90Traits<D, WGS>` in the `.cu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sm90Traits {
    /// Head dim (exact: the PV wgmma's N).
    pub d: u32,
    /// Keys per tile: 128 up to D = 80, else 64.
    pub bn: u32,
    /// Consumer warpgroups per block ([`WGS`], or [`WGS_D40`] for D = 40).
    pub wgs: u32,
    /// Resident blocks per SM on an H100: the entry's `__launch_bounds__` minimum, what its
    /// ptxas registers and dynamic shared memory give (checked against
    /// `kernels/reports/attention_sm90.txt`): 2 for D = 16 / 32, else 1. The persistent grid is
    /// this times the SMs.
    pub ctas_per_sm: u32,
    pub entry: &'static str,
}

impl Sm90Traits {
    /// QK^T reduction length: `d` rounded up to 16 (zero columns in shared memory only).
    pub const fn dp(self) -> u32 {
        self.d.div_ceil(16) * 16
    }
    /// 128B swizzle atom columns (64 bf16) per tile row.
    pub const fn atom_cols(self) -> u32 {
        self.dp().div_ceil(64)
    }
    /// Query rows per block.
    pub const fn bm(self) -> u32 {
        self.wgs * WG_ROWS
    }
    pub const fn threads(self) -> u32 {
        self.wgs * 128
    }
    /// Dynamic shared memory of a launch: Q tile + `STAGES` K and V tiles (128-byte rows of
    /// swizzle atoms) + 1024 bytes of alignment slack.
    pub const fn smem_bytes(self) -> u32 {
        let row = self.atom_cols() * 128;
        row * (self.bm() + 2 * STAGES * self.bn) + 1024
    }
}

const fn tr(d: u32, entry: &'static str) -> Sm90Traits {
    Sm90Traits {
        d,
        bn: if d <= 80 { 128 } else { 64 },
        wgs: if d == 40 { WGS_D40 } else { WGS },
        ctas_per_sm: if d <= 32 { 2 } else { 1 },
        entry,
    }
}

/// Every specialisation, smallest head dim first.
pub const TRAITS: [Sm90Traits; 7] = [
    tr(16, "attention_sm90_d16_v1_bf16"),
    tr(32, "attention_sm90_d32_v1_bf16"),
    tr(40, "attention_sm90_d40_v1_bf16"),
    tr(64, "attention_sm90_d64_v1_bf16"),
    tr(80, "attention_sm90_d80_v1_bf16"),
    tr(128, "attention_sm90_d128_v1_bf16"),
    tr(160, "attention_sm90_d160_v1_bf16"),
];

const LAUNCH: &str = "persistent: grid = min(ceil(Lq / BM) H B, ctas_per_sm SMs) walking the \
                      tiles head-major, BM = 64 WGS, block = 128 WGS (WGS warpgroups: 4 for D = \
                      40, else 2), dynamic smem Sm90Traits::smem_bytes (sm_90a only)";

macro_rules! entry {
    ($name:literal, $op:literal) => {
        Entry::v1($name, $op, DType::Bf16, ("AttentionParams", 200), LAUNCH)
    };
}

pub const ENTRIES: &[Entry] = &[
    entry!("attention_sm90_d16_v1_bf16", "attention_sm90_d16"),
    entry!("attention_sm90_d32_v1_bf16", "attention_sm90_d32"),
    entry!("attention_sm90_d40_v1_bf16", "attention_sm90_d40"),
    entry!("attention_sm90_d64_v1_bf16", "attention_sm90_d64"),
    entry!("attention_sm90_d80_v1_bf16", "attention_sm90_d80"),
    entry!("attention_sm90_d128_v1_bf16", "attention_sm90_d128"),
    entry!("attention_sm90_d160_v1_bf16", "attention_sm90_d160"),
];

/// The entry for exactly head dim `d`, if any.
pub fn traits_for(d: u64) -> Option<Sm90Traits> {
    TRAITS.iter().find(|t| t.d as u64 == d).copied()
}

/// The sm_90a kernel runs `p` when its dtype is bf16, its head dim has an entry and the operands
/// take 16-byte loads ([`ALIGNED_LOADS`]); else the caller runs the sm_80 kernel.
pub fn supports(p: &AttentionParams, dtype: DType) -> Option<Sm90Traits> {
    if dtype != DType::Bf16 || p.aligned & ALIGNED_LOADS == 0 {
        return None;
    }
    traits_for(p.d as u64)
}

/// Persistent launch on a GPU of `sm_count` SMs: grid = `min(ceil(Lq / BM) H B, ctas_per_sm
/// sm_count)` blocks walking the tiles head-major, [`Sm90Traits::wgs`] warpgroups, dynamic smem
/// [`Sm90Traits::smem_bytes`].
pub fn launch_config(t: Sm90Traits, shape: AttentionShape, sm_count: u32) -> LaunchConfig {
    let tiles = query_tiles(shape, t.bm());
    let grid = persistent_grid(tiles, t.ctas_per_sm, sm_count);
    let mut cfg = LaunchConfig::blocks(grid, t.threads()).persistent_over(tiles);
    cfg.dynamic_smem_bytes = t.smem_bytes();
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smem_and_entries() {
        let want = [82_944, 82_944, 99_328, 82_944, 164_864, 99_328, 148_480];
        for (t, w) in TRAITS.iter().zip(want) {
            assert_eq!(t.smem_bytes(), w, "{}", t.entry);
            assert!(t.smem_bytes() <= 227 * 1024);
        }
        assert_eq!(TRAITS.len(), ENTRIES.len());
        for (t, e) in TRAITS.iter().zip(ENTRIES) {
            assert_eq!(t.entry, e.name);
        }
        assert_eq!(traits_for(40).unwrap().dp(), 48);
        assert_eq!(
            (
                traits_for(40).unwrap().bm(),
                traits_for(40).unwrap().threads()
            ),
            (256, 512)
        );
        assert_eq!(
            (
                traits_for(80).unwrap().bm(),
                traits_for(80).unwrap().threads()
            ),
            (128, 256)
        );
        assert!(traits_for(48).is_none() && traits_for(8).is_none());
    }

    /// `ctas_per_sm` is what `kernels/reports/attention_sm90.txt`'s registers and the dynamic
    /// shared memory give on an H100 by the gpu-model's occupancy rule.
    #[test]
    fn ctas_per_sm_match_report() {
        let report = include_str!("../reports/attention_sm90.txt");
        for t in TRAITS {
            let (threads, smem) = (t.threads(), t.smem_bytes());
            let by = crate::resident_blocks(report, t.entry, "sm_90a", threads, smem, "h100-sxm");
            assert_eq!(by, t.ctas_per_sm, "{}", t.entry);
        }
        // d80: 4096 query rows = 32 tiles of 128 per head, 8 heads x 2: 512 tiles on 132 SMs
        let shape = AttentionShape {
            batch: 2,
            heads: 8,
            lq: 4096,
            lk: 1,
            d: 80,
        };
        let t = traits_for(80).unwrap();
        assert_eq!(launch_config(t, shape, 132).grid, [132, 1, 1]);
        assert_eq!(
            launch_config(t, AttentionShape { lq: 100, ..shape }, 132).grid,
            [16, 1, 1]
        );
    }
}
