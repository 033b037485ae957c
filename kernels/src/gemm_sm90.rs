//! `kernels/cuda/gemm_sm90.cu` (Hopper only, `.target sm_90a`): `linear_sm90_v1_bf16`, the
//! persistent warp-specialised TMA + wgmma bf16 GEMM for `linear` (B `(N, K)`) with gemm.cu's
//! fused epilogue `scale * (acc + bias [GEGLU] + residual)`. The operands reach the kernel as two
//! TMA tensor maps ([`TmaTile`], encoded by the caller with `cuTensorMapEncodeTiled`) inside the
//! 64-byte-aligned params struct.

use crate::gemm::{GemmEpilogue, GemmLayout, GemmPlan, GemmPtrs, GemmShape, GemmTile};
use crate::{ceil_div, to_u32, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// CTA tile rows (two consumer warpgroups of 64).
pub const BM: u32 = 128;
/// CTA tile columns of B at the widest (GEGLU: 128 value + 128 gate rows -> 128 output columns).
pub const BN: u32 = 256;
/// The CTA tile widths (output columns) the kernel instantiates without GEGLU, widest first
/// ([`tile_n`] picks one per launch; GEGLU always runs [`BN`]).
pub const TILE_NS: [u32; 3] = [256, 160, 128];
/// k per pipeline stage (one 128-byte swizzle row of bf16).
pub const BK: u32 = 64;
/// Producer warpgroup + two consumer warpgroups.
pub const THREADS: u32 = 384;
/// Dynamic shared memory: 4 stages of (128 + 256) x 64 bf16, 8 warp epilogue buffers of 16 x 40
/// f32, 8 mbarriers, 1 KiB alignment slack (`static_assert` in the `.cu`).
pub const SMEM_BYTES: u32 = 4 * (BM + BN) * BK * 2 + 8 * 16 * 40 * 4 + 8 * 8 + 1024;

/// `CU_TENSOR_MAP_DATA_TYPE_BFLOAT16`.
pub const TMA_DTYPE_BF16: u32 = 9;
/// `CU_TENSOR_MAP_SWIZZLE_128B`: the pattern the kernel's wgmma descriptors read.
pub const TMA_SWIZZLE_128B: u32 = 3;
/// `CU_TENSOR_MAP_L2_PROMOTION_L2_128B`.
pub const TMA_L2_PROMOTION_128B: u32 = 2;

const LAUNCH: &str =
    "persistent: grid = min(ceil(M / 128) * ceil(N / (tile_n | GEGLU 128)) * batch, SMs) over the \
                      rastered tiles (tile_n 256, 160 or 128 and the raster group: gemm_sm90::schedule), block = 384, dynamic smem 218176";

pub const ENTRIES: &[Entry] = &[Entry {
    name: "linear_sm90_v1_bf16",
    op: "linear_sm90",
    version: 1,
    dtype: DType::Bf16,
    params: "GemmSm90Params",
    params_size: 384,
    launch: LAUNCH,
}];

/// The entry name.
pub const ENTRY: &str = "linear_sm90_v1_bf16";

/// One bf16 tile-mode tensor map of `rank` (3 or 4) for `cuTensorMapEncodeTiled`: dims
/// `(K, rows, d2 [, d3])` (dim 0 contiguous), byte strides of dims 1.., box `(64, box_rows, 1 [, 1])`,
/// element strides 1, no interleave, [`TMA_SWIZZLE_128B`], [`TMA_L2_PROMOTION_128B`], OOB fill
/// none (zeros). Entries past `rank` are unused (dims and box 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmaTile {
    pub base: u64,
    pub rank: u32,
    pub dims: [u64; 4],
    pub strides: [u64; 3],
    pub box_dim: [u32; 4],
}

impl TmaTile {
    /// A rank-3 map (`(K, rows, batch)`; strides of dims 1, 2; box `(k, rows, 1)`).
    pub fn rank3(base: u64, dims: [u64; 3], strides: [u64; 2], box_dim: [u32; 3]) -> Self {
        TmaTile {
            base,
            rank: 3,
            dims: [dims[0], dims[1], dims[2], 1],
            strides: [strides[0], strides[1], strides[1]],
            box_dim: [box_dim[0], box_dim[1], box_dim[2], 1],
        }
    }

    /// The first `rank` dims, `rank - 1` strides and `rank` box sizes.
    pub fn used(&self) -> (&[u64], &[u64], &[u32]) {
        let r = self.rank as usize;
        (&self.dims[..r], &self.strides[..r - 1], &self.box_dim[..r])
    }
}

/// Mirrors `struct GemmSm90Params` in `gemm_sm90.cu` (384 bytes, 64-byte aligned: the tensor maps
/// are `__grid_constant__` params the TMA reads in place).
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmSm90Params {
    /// A's `CUtensorMap` (128 bytes).
    pub tma_a: [u64; 16],
    /// B's `CUtensorMap`.
    pub tma_b: [u64; 16],
    pub bias: u64,
    pub residual: u64,
    pub c: u64,
    pub stride_r: u64,
    pub stride_c: u64,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub ldr: u32,
    pub ldc: u32,
    pub scale: f32,
    pub geglu: u32,
    pub batch: u32,
    pub a_batched: u32,
    pub b_batched: u32,
    pub tiles_m: u32,
    pub tiles_n: u32,
    /// Tile rows per raster group ([`schedule`]).
    pub raster: u32,
    /// CTA tile columns without GEGLU ([`tile_n`]; GEGLU: [`BN`]).
    pub tile_n: u32,
    /// Frames per batch item of A's map: batch g reads frame `g % frames` of item `g / frames`.
    pub frames: u32,
    /// 1: the planes epilogue ([`PlanesExit`]).
    pub planes: u32,
    /// Planes: H·W of one channel plane.
    pub plane_hw: u32,
    pub _pad: [u32; 5],
}

/// Whether `linear_sm90_v1_bf16` runs this linear: K > 0, non-empty output, A and B 16-byte
/// aligned with row and batch strides multiples of 8 elements (TMA: 16-byte global strides),
/// dims within the tensor map's 2^32 and the row strides covering the rows (`ld >= K`).
pub fn supports(ptrs: GemmPtrs, shape: GemmShape, layout: GemmLayout) -> bool {
    let aligned = ptrs.a % 16 == 0
        && ptrs.b % 16 == 0
        && [layout.lda, layout.ldb, layout.stride_a, layout.stride_b]
            .iter()
            .all(|s| s % 8 == 0);
    let small = [shape.m, 2 * shape.n, shape.k, shape.batch]
        .iter()
        .all(|&d| d < 1 << 31);
    aligned
        && small
        && shape.k > 0
        && shape.m > 0
        && shape.n > 0
        && shape.batch > 0
        && layout.lda >= shape.k
        && layout.ldb >= shape.k
        && layout.ldc >= shape.n
}

/// Whether `linear_sm90_v1_bf16` is the better kernel for a linear it [`supports`] on a GPU of
/// `sm_count` SMs: not when M is at most half a tile row (most of each 128-row wgmma tile is
/// padding) and the tiles fill under a quarter of the SMs (one CTA per tile row streams the
/// weights through a few SMs, K tile after K tile): gemm.cu's v2 64 x 64 tiles spread such a
/// launch over more CTAs (docs/performance.md, "linear_sm90: raster groups that divide the grid").
pub fn prefers(shape: GemmShape, geglu: bool, sm_count: u32) -> bool {
    shape.m > (BM / 2) as u64 || 4 * tiles(shape, geglu) >= sm_count as u64
}

/// Output columns of one CTA tile.
pub fn bn_out(geglu: bool) -> u32 {
    if geglu {
        BN / 2
    } else {
        BN
    }
}

/// Output tiles of the problem on the widest tile ([`BN`], GEGLU 128 output columns).
pub fn tiles(shape: GemmShape, geglu: bool) -> u64 {
    tiles_of(shape, bn_out(geglu))
}

/// Output tiles of the problem on CTA tiles of `cols` output columns.
pub fn tiles_of(shape: GemmShape, cols: u32) -> u64 {
    ceil_div(shape.m, BM as u64) * ceil_div(shape.n, cols.max(1) as u64) * shape.batch
}

/// The CTA tile's output columns for a linear on `sm_count` SMs (the cost rule of the launch's
/// [`Sm90Schedule`]): GEGLU 128 (its 256 B rows); otherwise [`BN`] when the 256-wide grid fills
/// the SMs; when it leaves SMs idle (under one wave, e.g. 2048 x 1280: 80 tiles on 132 SMs), the
/// width `w` of [`TILE_NS`] whose busiest CTA multiplies the fewest columns,
/// `ceil(tiles_of(w) / SMs) * w` (ties: the wider, whose A tile is reused over more columns):
/// 2048 x 1280 on 132 SMs runs 128 tiles of 160 (one wave, 160 columns a CTA against 256).
pub fn tile_n(shape: GemmShape, geglu: bool, sm_count: u32) -> u32 {
    let sms = sm_count.max(1) as u64;
    if geglu || tiles(shape, false) >= sms {
        return bn_out(geglu);
    }
    TILE_NS
        .iter()
        .copied()
        .min_by_key(|&w| ceil_div(tiles_of(shape, w), sms) * w as u64)
        .unwrap_or(BN)
}

/// The tensor maps of A `(batch | 1, M, lda)` and B `(batch | 1, N | 2N, ldb)` (B's box: the
/// schedule's tile width, GEGLU 128 rows loaded twice): B's dim 2 is the batch when the batch stride
/// is non-zero, else 1 (the kernel then reads batch 0 for all). A's map has rank 4, dims
/// `(K, M, 1, batch | 1)` ([`tensor_maps_framed`] splits the batch into frames).
pub fn tensor_maps(
    ptrs: GemmPtrs,
    shape: GemmShape,
    layout: GemmLayout,
    geglu: bool,
    sched: Sm90Schedule,
) -> [TmaTile; 2] {
    tensor_maps_framed(ptrs, shape, layout, geglu, sched, 1)
}

/// [`tensor_maps`] with A's batch g = (item g / frames, frame g % frames): dims
/// `(K, M, frames, batch / frames)`, the frames `stride_a` apart, the items `M · lda` apart (the
/// tokens `(items, M, frames, K)` of a motion module, `lda = frames · K`, `stride_a = K`: a CTA tile
/// holds rows of one frame). `frames` 1: the batch `stride_a` apart (0: one A for all).
pub fn tensor_maps_framed(
    ptrs: GemmPtrs,
    shape: GemmShape,
    layout: GemmLayout,
    geglu: bool,
    sched: Sm90Schedule,
    frames: usize,
) -> [TmaTile; 2] {
    let frames = frames as u64;
    let batch_dims = |rows: u64, ld: u64, stride: u64| {
        if stride == 0 {
            (1, rows.max(1) * ld * 2)
        } else {
            (shape.batch, stride * 2)
        }
    };
    let (a_batches, a_stride) = batch_dims(shape.m, layout.lda, layout.stride_a);
    let a = if frames > 1 {
        TmaTile {
            base: ptrs.a,
            rank: 4,
            dims: [shape.k, shape.m, frames, shape.batch / frames],
            strides: [
                layout.lda * 2,
                layout.stride_a * 2,
                shape.m * layout.lda * 2,
            ],
            box_dim: [BK, BM, 1, 1],
        }
    } else {
        TmaTile {
            base: ptrs.a,
            rank: 4,
            dims: [shape.k, shape.m, 1, a_batches],
            strides: [layout.lda * 2, a_stride, a_stride],
            box_dim: [BK, BM, 1, 1],
        }
    };
    let b_rows = if geglu { 2 * shape.n } else { shape.n };
    let (b_batches, b_stride) = batch_dims(b_rows, layout.ldb, layout.stride_b);
    let b = TmaTile::rank3(
        ptrs.b,
        [shape.k, b_rows, b_batches],
        [layout.ldb * 2, b_stride],
        [BK, sched.tile_n, 1],
    );
    [a, b]
}

/// A transformer exit as one planes-epilogue GEMM: tokens `(items, hw, frames, K)` times the
/// weight `(C, K)` + bias, as planes `(items · frames, out_channels, hw)` (channels `[0, C)`;
/// `out_channels > C`: the first part of a concat) `+` the residual planes
/// `(items · frames, C, hw)`. One frame: one batch, token row r = image r / hw, pixel r % hw;
/// more frames: batch (item, frame) of hw rows (the A map's frames split), so a CTA tile's rows
/// are one frame's pixels and its stores run along the planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanesExit {
    pub items: usize,
    pub hw: usize,
    pub frames: usize,
    pub k: usize,
    pub c: usize,
    pub out_channels: usize,
}

impl PlanesExit {
    /// The GEMM problem: frames 1 `(1, items · hw, C, K)`, else `(items · frames, hw, C, K)`.
    pub fn shape(&self) -> GemmShape {
        if self.frames > 1 {
            GemmShape::new(self.items * self.frames, self.hw, self.c, self.k)
        } else {
            GemmShape::new(1, self.items * self.hw, self.c, self.k)
        }
    }

    /// Its strides: A rows `frames · K` apart, frames `K` apart (frames 1: one batch); B shared;
    /// C and R images `out_channels · hw` / `C · hw` apart (ldc / ldr: C, unused: the planes
    /// epilogue steps the channels `hw` apart).
    pub fn layout(&self) -> GemmLayout {
        let u = |v: usize| v as u64;
        let (f, k, c, hw) = (u(self.frames.max(1)), u(self.k), u(self.c), u(self.hw));
        GemmLayout {
            lda: f * k,
            ldb: k,
            ldr: c,
            ldc: c,
            stride_a: if f > 1 { k } else { 0 },
            stride_b: 0,
            stride_r: c * hw,
            stride_c: u(self.out_channels) * hw,
        }
    }

    /// Elements of the output planes / the residual / the tokens.
    pub fn out_len(&self) -> usize {
        self.items * self.frames * self.out_channels * self.hw
    }
    pub fn residual_len(&self) -> usize {
        self.items * self.frames * self.c * self.hw
    }
    pub fn tokens_len(&self) -> usize {
        self.items * self.hw * self.frames * self.k
    }
}

impl GemmSm90Params {
    /// The params of a [`supports`]ed linear with the encoded maps `[a, b]` of [`tensor_maps`].
    pub fn new(
        ptrs: GemmPtrs,
        shape: GemmShape,
        layout: GemmLayout,
        epi: GemmEpilogue,
        maps: [[u64; 16]; 2],
        sched: Sm90Schedule,
    ) -> Result<Self> {
        ensure!(
            supports(ptrs, shape, layout),
            "{ENTRY}: unsupported operands (alignment, strides or empty shape): {shape:?} {layout:?}"
        );
        ensure!(
            ptrs.residual == 0 || layout.ldr >= shape.n,
            "{ENTRY}: residual row stride {} < N {}",
            layout.ldr,
            shape.n
        );
        let [tma_a, tma_b] = maps;
        Ok(GemmSm90Params {
            tma_a,
            tma_b,
            bias: ptrs.bias,
            residual: ptrs.residual,
            c: ptrs.c,
            stride_r: layout.stride_r,
            stride_c: layout.stride_c,
            m: to_u32(shape.m, "M")?,
            n: to_u32(shape.n, "N")?,
            k: to_u32(shape.k, "K")?,
            ldr: to_u32(layout.ldr, "ldr")?,
            ldc: to_u32(layout.ldc, "ldc")?,
            scale: epi.scale,
            geglu: epi.geglu as u32,
            batch: to_u32(shape.batch, "batch")?,
            a_batched: (layout.stride_a != 0) as u32,
            b_batched: (layout.stride_b != 0) as u32,
            tiles_m: to_u32(ceil_div(shape.m, BM as u64), "tiles_m")?,
            tiles_n: to_u32(ceil_div(shape.n, sched.tile_n as u64), "tiles_n")?,
            raster: sched.plan.raster.max(1),
            tile_n: if epi.geglu { BN } else { sched.tile_n },
            frames: 1,
            planes: 0,
            plane_hw: 0,
            _pad: [0; 5],
        })
    }

    /// The params of `exit` ([`PlanesExit`]: its shape and layout, no GEGLU) with the maps of
    /// [`tensor_maps_framed`] (`exit.frames`).
    pub fn planes(
        ptrs: GemmPtrs,
        exit: PlanesExit,
        epi: GemmEpilogue,
        maps: [[u64; 16]; 2],
        sched: Sm90Schedule,
    ) -> Result<Self> {
        ensure!(!epi.geglu, "{ENTRY}: the planes epilogue takes no GEGLU");
        ensure!(
            exit.frames > 0 && exit.hw > 0 && exit.out_channels >= exit.c,
            "{ENTRY}: planes exit {exit:?}: frames and H·W must be > 0, out_channels >= C"
        );
        let mut p = Self::new(ptrs, exit.shape(), exit.layout(), epi, maps, sched)?;
        p.frames = to_u32(exit.frames as u64, "frames")?;
        p.planes = 1;
        p.plane_hw = to_u32(exit.hw as u64, "plane H·W")?;
        Ok(p)
    }
}

/// One launch's persistent schedule: the CTAs and raster group ([`GemmPlan`]) and the CTA tile's
/// output columns ([`tile_n`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sm90Schedule {
    pub plan: GemmPlan,
    /// Output columns of one CTA tile: [`TILE_NS`] (GEGLU: 128).
    pub tile_n: u32,
}

/// The persistent schedule on a GPU of `sm_count` SMs and `l2_bytes` of L2: the tile width of
/// [`tile_n`], `min(tiles, SMs)` CTAs (one per SM), and the raster group of the v2 GEMM's 128-row
/// tiles ([`GemmPlan::on_grid`]: its tile rows, GEGLU output columns and one CTA per SM are this
/// kernel's; the group counts tile rows, so it does not depend on the width): the group's A
/// panels fit in a quarter of the L2 and, where a divisor allows, the group divides the grid, so
/// CTA b stays on tile row `b mod raster` of every group and its consecutive tiles reuse one A
/// panel.
pub fn schedule(shape: GemmShape, geglu: bool, sm_count: u32, l2_bytes: u64) -> Sm90Schedule {
    debug_assert_eq!(GemmTile::T128x256.geometry().0, BM);
    debug_assert_eq!(GemmTile::T128x256.bn_out(geglu), bn_out(geglu));
    let tile_n = tile_n(shape, geglu, sm_count);
    let ctas = tiles_of(shape, tile_n).min(sm_count.max(1) as u64) as u32;
    Sm90Schedule {
        plan: GemmPlan::on_grid(GemmTile::T128x256, shape, geglu, ctas, l2_bytes),
        tile_n,
    }
}

/// Persistent launch of `sched` ([`schedule`] of `shape`): `plan.ctas` CTAs of [`THREADS`],
/// [`SMEM_BYTES`] dynamic smem; CTA b runs tiles b, b + ctas, .. (stated to the profiler through
/// [`LaunchConfig::persistent_tiles`]).
pub fn launch_config(sched: Sm90Schedule, shape: GemmShape) -> LaunchConfig {
    LaunchConfig {
        grid: [sched.plan.ctas.max(1), 1, 1],
        block: [THREADS, 1, 1],
        dynamic_smem_bytes: SMEM_BYTES,
        persistent_tiles: tiles_of(shape, sched.tile_n),
        tile_work: crate::TileWork::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(GemmSm90Params, 384, align 64;
        assert_eq!(SMEM_BYTES, 218_176);
        assert_eq!(std::mem::offset_of!(GemmSm90Params, bias), 256);
        assert_eq!(std::mem::offset_of!(GemmSm90Params, tiles_n), 340);
        assert_eq!(std::mem::offset_of!(GemmSm90Params, raster), 344);
        assert_eq!(std::mem::offset_of!(GemmSm90Params, tile_n), 348);
        assert_eq!(std::mem::offset_of!(GemmSm90Params, plane_hw), 360);
    );

    #[test]
    fn persistent_grid_and_maps() {
        let shape = GemmShape::new(2, 300, 520, 72);
        assert_eq!(tiles(shape, false), 3 * 3 * 2);
        assert_eq!(tiles(shape, true), 3 * 5 * 2);
        // 30 tiles on 8 SMs: 8 CTAs; the largest divisor of 8 within the 3 tile rows is 2
        let sched = schedule(shape, true, 8, 50 << 20);
        assert_eq!(
            (sched.plan.ctas, sched.plan.raster, sched.tile_n),
            (8, 2, 128)
        );
        assert_eq!(launch_config(sched, shape).grid, [8, 1, 1]);
        assert_eq!(launch_config(sched, shape).persistent_tiles, 30);
        // the paper preset's 320-channel projection on an H100: 2048 tiles on 132 CTAs, raster
        // groups of 132 tile rows (A panels of 80 KiB: 10.3 MiB <= L2 / 4); K = 1280: 33 rows
        let l2 = 50 << 20;
        let paper = schedule(GemmShape::new(1, 131_072, 320, 320), false, 132, l2);
        assert_eq!(
            (paper.plan.ctas, paper.plan.raster, paper.tile_n),
            (132, 132, 256)
        );
        let long_k = schedule(GemmShape::new(1, 131_072, 320, 1280), false, 132, l2);
        assert_eq!((long_k.plan.ctas, long_k.plan.raster), (132, 33));
        // under one wave at 256 columns: 2048 x 1280 runs 16 x 8 tiles of 160 (80 of 256 would
        // leave 52 SMs idle; 128 columns: 160 tiles, two waves of 128 = 256 columns a CTA)
        let under = schedule(GemmShape::new(1, 2048, 1280, 1280), false, 132, l2);
        assert_eq!((under.plan.ctas, under.tile_n), (128, 160));
        assert_eq!(tile_n(GemmShape::new(1, 2048, 1280, 5120), false, 132), 160);
        // 1024 rows: 64 tiles of 160 or 80 of 128 (both one wave): 128
        assert_eq!(tile_n(GemmShape::new(1, 1024, 1280, 768), false, 132), 128);
        // a full wave at 256 (8192 x 1280: 320 tiles), and GEGLU: 256 B rows
        assert_eq!(tile_n(GemmShape::new(1, 8192, 1280, 1280), false, 132), 256);
        assert_eq!(tile_n(GemmShape::new(1, 2048, 1280, 1280), true, 132), 128);
        // fewer tiles than SMs: one CTA per tile (3 x 5 tiles of 128)
        let few = schedule(GemmShape::new(1, 300, 520, 72), false, 132, l2);
        assert_eq!((few.plan.ctas, few.tile_n), (15, 128));
        let layout = GemmLayout::contiguous(crate::gemm::GemmOp::Linear, shape, true, true);
        let ptrs = GemmPtrs {
            a: 0x1000,
            b: 0x8000,
            bias: 0,
            residual: 0,
            c: 0x20000,
        };
        assert!(supports(ptrs, shape, layout));
        assert!(!supports(GemmPtrs { a: 0x1008, ..ptrs }, shape, layout));
        assert!(!supports(ptrs, GemmShape { k: 0, ..shape }, layout));
        // M at most 64 on few tiles: gemm.cu; more rows, or tiles for a quarter of the SMs: here
        assert!(!prefers(GemmShape::new(1, 32, 1280, 1280), false, 132));
        assert!(prefers(GemmShape::new(1, 65, 1280, 1280), false, 132));
        assert!(prefers(GemmShape::new(1, 1, 33 * 256, 1280), false, 132));
        let [a, b] = tensor_maps(ptrs, shape, layout, true, sched);
        assert_eq!(a.dims, [72, 300, 1, 2]);
        assert_eq!(a.strides, [144, 300 * 144, 300 * 144]);
        assert_eq!(b.used().0, [72, 1040, 1]);
        assert_eq!(b.used().2, [64, 128, 1]);
        let [_, b] = tensor_maps(ptrs, shape, layout, false, under);
        assert_eq!(b.used().2, [64, 160, 1]);
        // a motion module's exit: 2 items of 8 x 8 pixels, 3 frames, 40 -> 24 channels
        let exit = PlanesExit {
            items: 2,
            hw: 64,
            frames: 3,
            k: 40,
            c: 24,
            out_channels: 30,
        };
        assert_eq!(exit.shape(), GemmShape::new(6, 64, 24, 40));
        let es = schedule(exit.shape(), false, 132, l2);
        let [a, _] = tensor_maps_framed(ptrs, exit.shape(), exit.layout(), false, es, 3);
        assert_eq!(a.dims, [40, 64, 3, 2]);
        assert_eq!(a.strides, [240, 80, 64 * 240]);
        assert_eq!(exit.layout().stride_c, 30 * 64);
    }
}
