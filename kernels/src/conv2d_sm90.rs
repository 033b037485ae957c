//! `kernels/cuda/conv2d_sm90.cu` (sm_90a only): `conv2d.cu`'s v2 implicit GEMM (NCHW, batch folded
//! into the pixel columns, table-driven X_col gather, fused `scale * (conv + bias + temb +
//! residual)` epilogue) on Hopper `wgmma`, two warpgroups per 256 x 128 x 128 block tile. Takes
//! `conv2d.rs`'s [`Conv2dParams`](crate::conv2d::Conv2dParams); the shapes it does not take
//! ([`supports`]) run on `conv2d.cu`.

use crate::conv2d::{self, Conv2dShape};
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

pub const ENTRIES: &[Entry] = &[
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
];

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
