//! `kernels/cuda/gemm.cu`: batched bf16 tensor-core GEMM for `linear` (B `(N, K)`) and `matmul`
//! (B `(K, N)`) with a fused epilogue `C = scale * (A.B + bias [GEGLU] + residual)`, bf16 out;
//! and the f32 entries (`linear_v1_f32`, `linear_wbf16_v1_f32`, `matmul_v1_f32`): f32 A (and f32 or
//! bf16 B) split into bf16 hi + lo parts in registers, f32 epilogue operands and f32 C.

use crate::{ceil_div, tiles, to_u32, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Block tile (`GEMM_BM`, `GEMM_BN`, `GEMM_BK` in the `.cu`).
pub const GEMM_BM: u32 = 64;
pub const GEMM_BN: u32 = 64;
pub const GEMM_BK: u32 = 32;
/// Output columns per block with the GEGLU epilogue (value and gate tiles share the 64 B rows).
pub const GEMM_BN_GEGLU: u32 = GEMM_BN / 2;
/// 2 x 2 warps, each a 32 x 32 warp tile.
pub const GEMM_THREADS: u32 = 128;
pub const GEMM_STAGES: u32 = 2;
/// Padded shared rows, bf16 elements: `[row][k]` tiles and `(K, N)` B tiles `[k][n]`.
pub const GEMM_LDS: u32 = GEMM_BK + 8;
pub const GEMM_LDS_KN: u32 = GEMM_BN + 8;
/// Static shared memory per block of `linear_v1_bf16` / `matmul_v1_bf16`.
pub const LINEAR_STATIC_SMEM_BYTES: u32 = GEMM_STAGES * (GEMM_BM + GEMM_BN) * GEMM_LDS * 2;
pub const MATMUL_STATIC_SMEM_BYTES: u32 =
    GEMM_STAGES * (GEMM_BM * GEMM_LDS + GEMM_BK * GEMM_LDS_KN) * 2;

/// Static shared memory of the f32 entries: hi and lo tiles of A, of an f32 B (one bf16 B tile for
/// `linear_wbf16_v1_f32`).
pub const LINEAR_F32_STATIC_SMEM_BYTES: u32 = 2 * LINEAR_STATIC_SMEM_BYTES;
pub const LINEAR_WBF16_STATIC_SMEM_BYTES: u32 =
    GEMM_STAGES * (2 * GEMM_BM + GEMM_BN) * GEMM_LDS * 2;
pub const MATMUL_F32_STATIC_SMEM_BYTES: u32 = 2 * MATMUL_STATIC_SMEM_BYTES;

const _: () = assert!(LINEAR_STATIC_SMEM_BYTES <= 48 * 1024);
const _: () = assert!(LINEAR_F32_STATIC_SMEM_BYTES <= 48 * 1024);
const _: () = assert!(MATMUL_F32_STATIC_SMEM_BYTES <= 48 * 1024);
const _: () = assert!(MATMUL_STATIC_SMEM_BYTES <= 48 * 1024);
const _: () = assert!((GEMM_LDS * 2) % 16 == 0 && (GEMM_LDS_KN * 2) % 16 == 0);

const LAUNCH: &str =
    "grid = (ceil(N / 64) | GEGLU ceil(N / 32), ceil(M / 64), batch), block = 128, static smem";

pub const ENTRIES: &[Entry] = &[
    Entry::v1(
        "linear_v1_bf16",
        "linear",
        DType::Bf16,
        ("GemmParams", 112),
        LAUNCH,
    ),
    Entry::v1(
        "matmul_v1_bf16",
        "matmul",
        DType::Bf16,
        ("GemmParams", 112),
        LAUNCH,
    ),
    Entry::v1(
        "linear_v1_f32",
        "linear",
        DType::F32,
        ("GemmParams", 112),
        LAUNCH,
    ),
    Entry::v1(
        "linear_wbf16_v1_f32",
        "linear_wbf16",
        DType::F32,
        ("GemmParams", 112),
        LAUNCH,
    ),
    Entry::v1(
        "matmul_v1_f32",
        "matmul",
        DType::F32,
        ("GemmParams", 112),
        LAUNCH,
    ),
    v2("linear_128x256_v2_bf16", "linear_128x256", LAUNCH_V2),
    v2("linear_128x128_v2_bf16", "linear_128x128", LAUNCH_V2),
    v2("linear_64x64_v2_bf16", "linear_64x64", LAUNCH_V2),
    v2("matmul_128x256_v2_bf16", "matmul_128x256", LAUNCH_V2),
    v2("matmul_128x128_v2_bf16", "matmul_128x128", LAUNCH_V2),
    v2("matmul_64x64_v2_bf16", "matmul_64x64", LAUNCH_V2),
    v2("gemm_splitk_v2_bf16", "gemm_splitk", LAUNCH_SPLITK),
    v2("linear_256x128_v2_bf16", "linear_256x128", LAUNCH_V2),
    v2("matmul_256x128_v2_bf16", "matmul_256x128", LAUNCH_V2),
];

const LAUNCH_V2: &str =
    "persistent grid = (GemmPlan::ctas <= CTAs per SM * SMs, 1, 1) over the rastered tiles; \
     split-K: grid = (ceil(N / BN) | GEGLU ceil(N / (BN / 2)), ceil(M / BM), batch * splits); \
     block = 32 * warps, dynamic smem GemmTile::smem_bytes (plan: GemmPlan::choose)";
const LAUNCH_SPLITK: &str = "grid = (ceil(M * ceil(N / 8) / 256), batch), block = 256, no smem";

/// A v2 entry (`op` names the tile config) taking [`GemmV2Params`].
const fn v2(name: &'static str, op: &'static str, launch: &'static str) -> Entry {
    Entry {
        name,
        op,
        version: 2,
        dtype: DType::Bf16,
        params: "GemmV2Params",
        params_size: 152,
        launch,
    }
}

/// Which entry: how B is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmOp {
    /// B `(N, K)` (nn.Linear weight `(out, in)`), entry `linear_v1_bf16`; GEGLU allowed.
    Linear,
    /// B `(K, N)`, entry `matmul_v1_bf16`.
    Matmul,
}

impl GemmOp {
    pub fn entry(self) -> &'static str {
        match self {
            GemmOp::Linear => ENTRIES[0].name,
            GemmOp::Matmul => ENTRIES[1].name,
        }
    }

    /// The f32 entry (f32 A, epilogue operands and C) for a B of dtype `b`: `linear_v1_f32`
    /// (f32 B), `linear_wbf16_v1_f32` (bf16 weight), `matmul_v1_f32` (f32 B only).
    pub fn entry_f32(self, b: DType) -> Result<&'static str> {
        Ok(match (self, b) {
            (GemmOp::Linear, DType::F32) => ENTRIES[2].name,
            (GemmOp::Linear, DType::Bf16) => ENTRIES[3].name,
            (GemmOp::Matmul, DType::F32) => ENTRIES[4].name,
            (GemmOp::Matmul, DType::Bf16) => anyhow::bail!("matmul_v1_f32 takes an f32 B only"),
        })
    }
}

/// Mirrors `struct GemmOperandParams` in `gemm_mainloop.cuh` (56 bytes): the operands the shared
/// mainloop reads, the first field of both GEMM modules' params.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmOperandParams {
    /// `(batch, M, lda)` bf16.
    pub a: u64,
    /// `(batch, N | 2N, ldb)` bf16 K contiguous, or matmul `(batch, K, ldb)` N contiguous.
    pub b: u64,
    /// Elements between batches (0 = broadcast).
    pub stride_a: u64,
    pub stride_b: u64,
    pub m: u32,
    /// Output columns (GEGLU: B has `2 n` rows).
    pub n: u32,
    pub k: u32,
    pub lda: u32,
    pub ldb: u32,
    /// bf16 entries: 1 = cp.async path (set by [`GemmOperandParams::new`] from the addresses and
    /// strides). f32 entries: bit 0 ([`F32_A_VEC`]) float4 loads of A, bit 1 ([`F32_B_VEC`])
    /// float4 loads of an f32 B or cp.async of a bf16 B (set by [`GemmParams::new_f32`]).
    pub aligned: u32,
}

/// `aligned` bits of the f32 entries (`GEMM_F32_A_VEC`, `GEMM_F32_B_VEC` in `gemm_mainloop.cuh`).
pub const F32_A_VEC: u32 = 1;
pub const F32_B_VEC: u32 = 2;

/// Mirrors `struct GemmParams` in `gemm.cu` (112 bytes). The f32 entries take the same struct with
/// f32 A (B f32, or bf16 for `linear_wbf16_v1_f32`), f32 bias, residual and C.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmParams {
    /// A and B.
    pub ops: GemmOperandParams,
    /// `(N | 2N)` bf16, or 0.
    pub bias: u64,
    /// `(batch, M, ldr)` bf16, or 0 (may equal `c`).
    pub residual: u64,
    /// `(batch, M, ldc)` bf16.
    pub c: u64,
    pub stride_r: u64,
    pub stride_c: u64,
    pub ldr: u32,
    pub ldc: u32,
    pub scale: f32,
    pub geglu: u32,
}

/// `batch` products `(M, K) x B -> (M, N)`, e.g. `batch = 1, M = 32 * 4096, N = 1280, K = 320`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmShape {
    pub batch: u64,
    pub m: u64,
    /// Output columns.
    pub n: u64,
    pub k: u64,
}

impl GemmShape {
    pub fn new(batch: usize, m: usize, n: usize, k: usize) -> GemmShape {
        GemmShape {
            batch: batch as u64,
            m: m as u64,
            n: n as u64,
            k: k as u64,
        }
    }

    /// One past the last element a `(batch, rows, cols)` operand with row stride `ld` and batch
    /// stride `stride` (elements) addresses; 0 when it is empty.
    pub fn extent(&self, ld: u64, stride: u64, rows: u64, cols: u64) -> u64 {
        if rows == 0 || cols == 0 || self.batch == 0 {
            0
        } else {
            (self.batch - 1) * stride + (rows - 1) * ld + cols
        }
    }

    /// Rows of B (`N`, `2N` with GEGLU: value and gate rows) and its `(rows, cols)` as stored:
    /// `linear` B is `(rows, K)`, `matmul` B is `(K, N)`.
    pub fn b_dims(&self, op: GemmOp, geglu: bool) -> (u64, (u64, u64)) {
        let b_rows = if geglu { 2 * self.n } else { self.n };
        let dims = match op {
            GemmOp::Linear => (b_rows, self.k),
            GemmOp::Matmul => (self.k, self.n),
        };
        (b_rows, dims)
    }
}

/// Device addresses (bias / residual 0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmPtrs {
    pub a: u64,
    pub b: u64,
    pub bias: u64,
    pub residual: u64,
    pub c: u64,
}

/// Row strides and batch strides, in elements (a batch stride of 0 broadcasts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmLayout {
    pub lda: u64,
    pub ldb: u64,
    pub ldr: u64,
    pub ldc: u64,
    pub stride_a: u64,
    pub stride_b: u64,
    pub stride_r: u64,
    pub stride_c: u64,
}

/// What the epilogue adds: `C = scale * (acc + bias [, GEGLU] + residual)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmEpilogue {
    pub scale: f32,
    /// Linear only: B has `2 N` rows, `C = (A.B[n] + bias[n]) * gelu(A.B[N + n] + bias[N + n])`.
    pub geglu: bool,
}

impl Default for GemmEpilogue {
    fn default() -> Self {
        GemmEpilogue {
            scale: 1.0,
            geglu: false,
        }
    }
}

impl GemmLayout {
    /// Dense operands; `broadcast_b` shares one B (a weight) across the batch.
    pub fn contiguous(op: GemmOp, shape: GemmShape, geglu: bool, broadcast_b: bool) -> GemmLayout {
        let b_rows = if geglu { 2 * shape.n } else { shape.n };
        let (ldb, b_size) = match op {
            GemmOp::Linear => (shape.k, b_rows * shape.k),
            GemmOp::Matmul => (shape.n, shape.k * shape.n),
        };
        GemmLayout {
            lda: shape.k,
            ldb,
            ldr: shape.n,
            ldc: shape.n,
            stride_a: shape.m * shape.k,
            stride_b: if broadcast_b { 0 } else { b_size },
            stride_r: shape.m * shape.n,
            stride_c: shape.m * shape.n,
        }
    }
}

impl GemmParams {
    pub fn new(
        op: GemmOp,
        ptrs: GemmPtrs,
        shape: GemmShape,
        layout: GemmLayout,
        epi: GemmEpilogue,
    ) -> Result<Self> {
        let b_cols = match op {
            GemmOp::Linear => shape.k,
            GemmOp::Matmul => shape.n,
        };
        ensure!(
            layout.lda >= shape.k && layout.ldb >= b_cols && layout.ldc >= shape.n,
            "{}: row strides lda {} ldb {} ldc {} too small for K {} / N {}",
            op.entry(),
            layout.lda,
            layout.ldb,
            layout.ldc,
            shape.k,
            shape.n
        );
        ensure!(
            ptrs.residual == 0 || layout.ldr >= shape.n,
            "{}: residual row stride {} < N {}",
            op.entry(),
            layout.ldr,
            shape.n
        );
        ensure!(
            !epi.geglu || op == GemmOp::Linear,
            "GEGLU epilogue needs the linear layout (B (2N, K)); matmul_v1_bf16 has none"
        );
        let what = op.entry();
        let ops = GemmOperandParams::new(what, ptrs.a, ptrs.b, shape, &layout.operands())?;
        Ok(GemmParams {
            ops,
            bias: ptrs.bias,
            residual: ptrs.residual,
            c: ptrs.c,
            stride_r: layout.stride_r,
            stride_c: layout.stride_c,
            ldr: to_u32(layout.ldr, &format!("{what} ldr"))?,
            ldc: to_u32(layout.ldc, &format!("{what} ldc"))?,
            scale: epi.scale,
            geglu: epi.geglu as u32,
        })
    }

    /// Params of the f32 entry [`GemmOp::entry_f32`]`(b)`: A, bias, residual and C f32, B of
    /// dtype `b`; the same shape checks as [`GemmParams::new`]. `aligned` bit 0: A 16-byte
    /// aligned with `lda`, `stride_a` multiples of 4; bit 1: B 16-byte aligned with `ldb`,
    /// `stride_b` multiples of 4 f32 (8 bf16).
    pub fn new_f32(
        op: GemmOp,
        b: DType,
        ptrs: GemmPtrs,
        shape: GemmShape,
        layout: GemmLayout,
        epi: GemmEpilogue,
    ) -> Result<Self> {
        op.entry_f32(b)?;
        let mut p = GemmParams::new(op, ptrs, shape, layout, epi)?;
        let b_mult = 16 / b.size_in_bytes() as u64;
        let a_vec = ptrs.a % 16 == 0 && layout.lda % 4 == 0 && layout.stride_a % 4 == 0;
        let b_vec = ptrs.b % 16 == 0 && layout.ldb % b_mult == 0 && layout.stride_b % b_mult == 0;
        p.ops.aligned = (a_vec as u32 * F32_A_VEC) | (b_vec as u32 * F32_B_VEC);
        Ok(p)
    }

    /// Forces the plain-load path (tests exercise both loaders on the same shapes).
    pub fn without_cp_async(mut self) -> Self {
        self.ops.aligned = 0;
        self
    }
}

/// A's and B's row and batch strides, `[lda, ldb, stride_a, stride_b]` in elements.
pub(crate) type OperandStrides = [u64; 4];

impl GemmLayout {
    fn operands(&self) -> OperandStrides {
        [self.lda, self.ldb, self.stride_a, self.stride_b]
    }
}

impl GemmOperandParams {
    /// The operands of a GEMM entry (`what` names it in errors): the grid limits (`batch` in
    /// 1..=65535 (gridDim.z), at most 65535 row blocks of 64), dimensions and row strides as the
    /// u32 fields, and the cp.async path when A and B are 16-byte aligned and their row and batch
    /// strides are multiples of 8 bf16.
    pub(crate) fn new(
        what: &str,
        a: u64,
        b: u64,
        shape: GemmShape,
        strides: &OperandStrides,
    ) -> Result<Self> {
        ensure!(
            (1..=65_535).contains(&shape.batch),
            "{what}: batch {} must be in 1..=65535 (gridDim.z)",
            shape.batch
        );
        ensure!(
            ceil_div(shape.m, GEMM_BM as u64) <= 65_535,
            "{what}: M {} needs more than 65535 row blocks",
            shape.m
        );
        let aligned = a % 16 == 0 && b % 16 == 0 && strides.iter().all(|s| s % 8 == 0);
        let &[lda, ldb, stride_a, stride_b] = strides;
        let values = [shape.m, shape.n, shape.k, lda, ldb];
        let names = ["M", "N", "K", "lda", "ldb"];
        let mut dims = [0; 5];
        for ((d, v), name) in dims.iter_mut().zip(values).zip(names) {
            *d = to_u32(v, &format!("{what} {name}"))?;
        }
        let [m, n, k, lda, ldb] = dims;
        Ok(GemmOperandParams {
            a,
            b,
            stride_a,
            stride_b,
            m,
            n,
            k,
            lda,
            ldb,
            aligned: aligned as u32,
        })
    }
}

/// `grid = (ceil(N / 64) | GEGLU ceil(N / 32), ceil(M / 64), batch)`, `block = 128`.
pub fn launch_config(shape: GemmShape, geglu: bool) -> LaunchConfig {
    let bn = if geglu { GEMM_BN_GEGLU } else { GEMM_BN };
    let grid = [
        tiles(shape.n, bn),
        tiles(shape.m, GEMM_BM),
        shape.batch.max(1) as u32,
    ];
    LaunchConfig::blocks(grid, GEMM_THREADS)
}

// ------------------------------------------------------------------------------------------------
// v2: the templated mainloop (gemm_tiles.cuh), three tile configs, split-K
// ------------------------------------------------------------------------------------------------

/// A v2 CTA tile config (`GemmTileConfig` in `gemm_tiles.cuh`, the `GemmCfg*` of `gemm.cu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmTile {
    /// 128 x 256, 8 warps (2 x 4) of 64 x 64, 3 stages, 1 CTA / SM.
    T128x256,
    /// 256 x 128, 8 warps (4 x 2) of 64 x 64, 3 stages, 1 CTA / SM.
    T256x128,
    /// 128 x 128, 8 warps of 64 x 32, 4 stages, 2 CTAs / SM.
    T128x128,
    /// 64 x 64, 4 warps of 32 x 32, 4 stages (small M or N).
    T64x64,
}

/// k tile depth of every v2 config.
pub const GEMM_V2_BK: u32 = 32;

impl GemmTile {
    pub const ALL: [GemmTile; 4] = [
        GemmTile::T128x256,
        GemmTile::T256x128,
        GemmTile::T128x128,
        GemmTile::T64x64,
    ];

    /// `(BM, BN, warps, stages)`.
    pub const fn geometry(self) -> (u32, u32, u32, u32) {
        match self {
            GemmTile::T128x256 => (128, 256, 8, 3),
            GemmTile::T256x128 => (256, 128, 8, 3),
            GemmTile::T128x128 => (128, 128, 8, 4),
            GemmTile::T64x64 => (64, 64, 4, 4),
        }
    }

    /// Warp tile columns `WN` (`BN / WARPS_N`).
    pub const fn warp_n(self) -> u32 {
        match self {
            GemmTile::T128x256 | GemmTile::T256x128 => 64,
            GemmTile::T128x128 | GemmTile::T64x64 => 32,
        }
    }

    pub const fn threads(self) -> u32 {
        self.geometry().2 * 32
    }

    /// CTAs per SM the launch bounds and shared memory allow (`__launch_bounds__` min blocks).
    pub const fn ctas_per_sm(self) -> u32 {
        match self {
            GemmTile::T128x256 | GemmTile::T256x128 => 1,
            GemmTile::T128x128 => 2,
            GemmTile::T64x64 => 4,
        }
    }

    /// Dynamic shared memory: the pipeline (`STAGES * (BM + BN) * 32 * 2` bytes), which also
    /// holds the epilogue's staging slabs (`warps * 16 * (WN + 8) * 4` bytes).
    pub const fn smem_bytes(self) -> u32 {
        let (bm, bn, warps, stages) = self.geometry();
        let pipe = stages * (bm + bn) * GEMM_V2_BK * 2;
        let epi = warps * 16 * (self.warp_n() + 8) * 4;
        if pipe > epi {
            pipe
        } else {
            epi
        }
    }

    /// Output columns per CTA (GEGLU: half of BN, value and gate rows share the B tile).
    pub const fn bn_out(self, geglu: bool) -> u32 {
        let bn = self.geometry().1;
        if geglu {
            bn / 2
        } else {
            bn
        }
    }

    /// CTA tiles of `shape` (all batch entries, one split).
    pub fn tiles(self, shape: GemmShape, geglu: bool) -> u64 {
        let (tm, tn) = self.tile_grid(shape, geglu);
        tm * tn * shape.batch
    }

    /// CTA tiles of one batch entry: `(ceil(M / BM), ceil(N / BN_out))`.
    pub fn tile_grid(self, shape: GemmShape, geglu: bool) -> (u64, u64) {
        let (bm, ..) = self.geometry();
        (
            ceil_div(shape.m, bm as u64),
            ceil_div(shape.n, self.bn_out(geglu) as u64),
        )
    }

    pub fn entry(self, op: GemmOp) -> &'static str {
        let matmul = op == GemmOp::Matmul;
        let i = match self {
            GemmTile::T128x256 => 5,
            GemmTile::T128x128 => 6,
            GemmTile::T64x64 => 7,
            GemmTile::T256x128 => return ENTRIES[12 + matmul as usize].name,
        };
        ENTRIES[i + if matmul { 3 } else { 0 }].name
    }
}

/// The split-K reduction + epilogue entry.
pub const SPLITK_ENTRY: &str = "gemm_splitk_v2_bf16";

/// Tile config, k split and tile schedule of one v2 launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmPlan {
    pub tile: GemmTile,
    /// k splits (1 = no split-K).
    pub splits: u32,
    /// 32-deep k tiles per split.
    pub ktiles_per_split: u32,
    /// Persistent CTAs (`splits == 1`; grid `(ctas, 1, 1)`): CTA b runs the tiles b, b + ctas, ..
    /// of the rastered order. Unused with split-K (one CTA per tile and split).
    pub ctas: u32,
    /// Tile rows per raster group of the persistent schedule (`gemm_tiles.cuh` `raster_tile`).
    pub raster: u32,
}

/// Share of the L2 the A row panels of one raster group may take (1 / `RASTER_L2_SHARE`).
pub const RASTER_L2_SHARE: u64 = 4;
/// Least mean tiles per persistent CTA, as a fraction of the most any CTA runs.
pub const PERSISTENT_BALANCE: f64 = 0.97;

/// Fewest k tiles a split gets (128 of K): shorter splits cost more in workspace traffic than
/// they win in parallelism.
pub const SPLITK_MIN_KTILES: u64 = 4;
/// Most k splits.
pub const SPLITK_MAX: u64 = 8;

impl GemmPlan {
    /// The launcher heuristic (docs/kernels.md): on a GPU of `sms` SMs, the first of 128 x 256,
    /// 256 x 128, 128 x 128 whose grid fills at least one wave (`sms * ctas_per_sm` CTAs) and
    /// wastes at most a quarter of its rows / columns on the M / N edges, else the 64 x 64 tile; split-K (`allow_split`) when even the
    /// 64 x 64 grid leaves SMs idle (fewer CTAs than `sms`) and K has at least
    /// 2 * SPLITK_MIN_KTILES k tiles: splits = min(ceil(sms / tiles), ktiles / SPLITK_MIN_KTILES,
    /// SPLITK_MAX).
    ///
    /// Launches without split-K of the one-CTA-per-SM tiles (128 x 256, 256 x 128) are persistent
    /// ([`GemmPlan::persistent`], `l2_bytes`: the GPU's L2); 128 x 128 and 64 x 64 run one CTA per
    /// tile in the rastered order.
    pub fn choose(
        shape: GemmShape,
        geglu: bool,
        sms: u32,
        l2_bytes: u64,
        allow_split: bool,
    ) -> GemmPlan {
        let ktiles = ceil_div(shape.k, GEMM_V2_BK as u64).max(1);
        // Persistent for the one-CTA-per-SM tiles; the others keep a CTA per tile (a resident
        // count as large as the grid): with several CTAs per SM a persistent grid balances
        // tiles per CTA, not per SM, and was not faster (docs/performance.md).
        let whole = |tile: GemmTile| {
            let resident = match tile.ctas_per_sm() {
                1 => sms,
                _ => u32::MAX,
            };
            GemmPlan::persistent(tile, shape, geglu, resident, l2_bytes)
        };
        let fill = |x: u64, t: u64| x as f64 / (ceil_div(x, t) * t) as f64;
        for tile in [GemmTile::T128x256, GemmTile::T256x128, GemmTile::T128x128] {
            let (bm, ..) = tile.geometry();
            let filled = fill(shape.n, tile.bn_out(geglu) as u64) >= 0.75
                && fill(shape.m, bm as u64) >= 0.75;
            if filled && tile.tiles(shape, geglu) >= (sms * tile.ctas_per_sm()) as u64 {
                return whole(tile);
            }
        }
        let small = GemmTile::T64x64;
        let tiles = small.tiles(shape, geglu).max(1);
        if !allow_split || tiles >= sms as u64 || ktiles < 2 * SPLITK_MIN_KTILES {
            return whole(small);
        }
        let splits = ceil_div(sms as u64, tiles)
            .min(ktiles / SPLITK_MIN_KTILES)
            .min(SPLITK_MAX);
        let per = ceil_div(ktiles, splits);
        GemmPlan::split_k(small, ktiles, per)
    }

    /// `tile` with `ktiles` k tiles split into runs of `per` (`per >= ktiles`: one split, one CTA
    /// per tile, as [`GemmPlan::persistent`] with a CTA for every tile).
    pub fn split_k(tile: GemmTile, ktiles: u64, per: u64) -> GemmPlan {
        GemmPlan {
            tile,
            splits: ceil_div(ktiles, per.max(1)) as u32,
            ktiles_per_split: per as u32,
            ctas: 0,
            raster: 1,
        }
    }

    /// The persistent schedule of `tile` over `shape` (no split-K) with `resident` CTAs at a time
    /// (CTAs per SM x SMs) and an L2 of `l2_bytes`:
    /// * `waves = ceil(tiles / resident)` tiles per CTA at most, on `ctas` from
    ///   `ceil(tiles / waves)` up to `resident`, but no more than keep the mean tiles per CTA
    ///   within [`PERSISTENT_BALANCE`] of `waves`: every CTA runs `waves` or fewer tiles, so the
    ///   launch takes the time of `waves` tiles, as a grid of one CTA per tile would, and CTAs
    ///   are not left short of tiles (the gpu-model spreads a launch's work evenly over its CTAs:
    ///   with balanced CTAs that is also what the busiest one does, within 3 %);
    /// * `raster` tile rows per group: at most the rows whose A panels (`BM x K` bf16) fit in a
    ///   quarter of the L2 (the rest holds the B panels of the tiles in flight, the output and
    ///   residual streams, and the A100's second L2 partition's copies), and a divisor of `ctas`,
    ///   so that CTA b stays on tile row `b mod raster` of every group and its consecutive tiles
    ///   reuse one A panel; among the admissible `ctas` the one with the largest such divisor
    ///   (fewest CTAs on ties). When no divisor reaches half the L2 bound, `raster` is the bound
    ///   and `ctas` the fewest.
    pub fn persistent(
        tile: GemmTile,
        shape: GemmShape,
        geglu: bool,
        resident: u32,
        l2_bytes: u64,
    ) -> GemmPlan {
        let ktiles = ceil_div(shape.k, GEMM_V2_BK as u64).max(1);
        let tiles = tile.tiles(shape, geglu).max(1);
        let waves = ceil_div(tiles, resident.max(1) as u64);
        let fewest = ceil_div(tiles, waves);
        let balanced = (tiles as f64 / (PERSISTENT_BALANCE * waves as f64)) as u64;
        let most = tiles.min(resident.max(1) as u64).min(balanced).max(fewest);
        let bound = raster_bound(tile, shape, geglu, l2_bytes);
        let mut best = (0, fewest);
        for ctas in fewest..=most {
            let g = largest_divisor_at_most(ctas, bound);
            if g > best.0 {
                best = (g, ctas);
            }
        }
        let (raster, ctas) = if 2 * best.0 >= bound {
            best
        } else {
            (bound, fewest)
        };
        GemmPlan {
            tile,
            splits: 1,
            ktiles_per_split: ktiles as u32,
            ctas: ctas as u32,
            raster: raster as u32,
        }
    }

    /// The persistent schedule of `tile` over `shape` on exactly `ctas` CTAs (`gemm_sm90`: one
    /// CTA per SM, `min(tiles, SMs)`): `raster` is the largest divisor of `ctas` within the L2
    /// bound of [`GemmPlan::persistent`] when it reaches half that bound, else the bound.
    pub fn on_grid(
        tile: GemmTile,
        shape: GemmShape,
        geglu: bool,
        ctas: u32,
        l2_bytes: u64,
    ) -> GemmPlan {
        let ktiles = ceil_div(shape.k, GEMM_V2_BK as u64).max(1);
        let bound = raster_bound(tile, shape, geglu, l2_bytes);
        let g = largest_divisor_at_most(ctas.max(1) as u64, bound);
        GemmPlan {
            tile,
            splits: 1,
            ktiles_per_split: ktiles as u32,
            ctas: ctas.max(1),
            raster: if 2 * g >= bound { g } else { bound } as u32,
        }
    }

    /// Row stride (f32) of the split-K workspace: every raw column of the grid.
    pub fn ws_ld(&self, shape: GemmShape, geglu: bool) -> u64 {
        let bn = self.tile.geometry().1 as u64;
        ceil_div(shape.n, self.tile.bn_out(geglu) as u64) * bn
    }

    /// f32 elements of the split-K workspace (0 without split-K).
    pub fn workspace_len(&self, shape: GemmShape, geglu: bool) -> u64 {
        if self.splits <= 1 {
            0
        } else {
            self.splits as u64 * shape.batch * shape.m * self.ws_ld(shape, geglu)
        }
    }

    /// The main launch: persistent `grid = (ctas, 1, 1)`, or with split-K
    /// `grid = (ceil(N / BN_out), ceil(M / BM), batch * splits)`.
    pub fn launch_config(&self, shape: GemmShape, geglu: bool) -> LaunchConfig {
        let (bm, ..) = self.tile.geometry();
        let grid = if self.splits > 1 {
            [
                tiles(shape.n, self.tile.bn_out(geglu)),
                tiles(shape.m, bm),
                (shape.batch.max(1) * self.splits as u64) as u32,
            ]
        } else {
            [self.ctas.max(1), 1, 1]
        };
        LaunchConfig {
            grid,
            block: [self.tile.threads(), 1, 1],
            dynamic_smem_bytes: self.tile.smem_bytes(),
            // persistent: CTA b runs tiles b, b + ctas, .. (split-K: one CTA per tile and split)
            persistent_tiles: if self.splits > 1 {
                0
            } else {
                self.tile.tiles(shape, geglu).max(1)
            },
            tile_work: crate::TileWork::Equal,
        }
    }

    /// The split-K pass: one thread per (row, 8 output columns).
    pub fn splitk_launch_config(shape: GemmShape) -> LaunchConfig {
        let items = shape.m * ceil_div(shape.n, 8);
        LaunchConfig::blocks(
            [
                ceil_div(items, 256).max(1) as u32,
                shape.batch.max(1) as u32,
                1,
            ],
            256,
        )
    }

    /// Whether `params` can take a v2 entry: the cp.async path (aligned operands), a grid within
    /// the limits (rows of BM, batch * splits <= 65535).
    pub fn fits(&self, params: &GemmParams, shape: GemmShape) -> bool {
        let (bm, ..) = self.tile.geometry();
        params.ops.aligned == 1
            && ceil_div(shape.m, bm as u64) <= 65_535
            && shape.batch * self.splits as u64 <= 65_535
    }
}

/// Most tile rows of a raster group: those whose A panels (`BM x K` bf16) fit in
/// 1 / [`RASTER_L2_SHARE`] of the L2, at least 1 and at most the tile rows.
fn raster_bound(tile: GemmTile, shape: GemmShape, geglu: bool, l2_bytes: u64) -> u64 {
    let ktiles = ceil_div(shape.k, GEMM_V2_BK as u64).max(1);
    let (bm, ..) = tile.geometry();
    let panel = bm as u64 * ktiles * GEMM_V2_BK as u64 * 2;
    let (tiles_m, _) = tile.tile_grid(shape, geglu);
    (l2_bytes / RASTER_L2_SHARE / panel).clamp(1, tiles_m.max(1))
}

/// The largest divisor of `n` (>= 1) that is at most `bound` (>= 1).
fn largest_divisor_at_most(n: u64, bound: u64) -> u64 {
    let mut best = 1;
    let mut d = 1;
    while d * d <= n {
        if n % d == 0 {
            for x in [d, n / d] {
                if x <= bound && x > best {
                    best = x;
                }
            }
        }
        d += 1;
    }
    best
}

/// Mirrors `struct GemmV2Params` in `gemm.cu` (152 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmV2Params {
    pub g: GemmParams,
    /// Split-K f32 partials `[splits][batch][M][ws_ld]`, or 0.
    pub workspace: u64,
    pub splits: u32,
    pub ktiles_per_split: u32,
    pub ws_ld: u32,
    pub batch: u32,
    /// CTA tiles per batch entry, `ceil(M / BM)` and `ceil(N / BN_out)`.
    pub tiles_m: u32,
    pub tiles_n: u32,
    /// Tile rows per raster group (persistent launches).
    pub raster: u32,
    pub pad: u32,
}

impl GemmV2Params {
    /// `g` (from [`GemmParams::new`]) launched by `plan`; `workspace` holds
    /// [`GemmPlan::workspace_len`] f32 when `plan.splits > 1`.
    pub fn new(
        g: GemmParams,
        plan: GemmPlan,
        shape: GemmShape,
        workspace: u64,
    ) -> Result<GemmV2Params> {
        let geglu = g.geglu != 0;
        ensure!(
            plan.splits <= 1 || workspace != 0,
            "split-K needs a workspace"
        );
        let (tiles_m, tiles_n) = plan.tile.tile_grid(shape, geglu);
        ensure!(
            plan.splits > 1 || plan.tile.tiles(shape, geglu) <= u32::MAX as u64,
            "gemm v2: {} tiles exceed the u32 tile index; split the batch",
            plan.tile.tiles(shape, geglu)
        );
        Ok(GemmV2Params {
            g,
            workspace,
            splits: plan.splits.max(1),
            ktiles_per_split: plan.ktiles_per_split,
            ws_ld: to_u32(plan.ws_ld(shape, geglu), "gemm v2 ws_ld")?,
            batch: to_u32(shape.batch, "gemm v2 batch")?,
            tiles_m: to_u32(tiles_m, "gemm v2 tile rows")?,
            tiles_n: to_u32(tiles_n, "gemm v2 tile columns")?,
            raster: plan.raster.max(1),
            pad: 0,
        })
    }
}

#[cfg(test)]
mod v2_tests {
    use super::*;

    crate::params_layout_test!(GemmV2Params, 152, align 8);

    #[test]
    fn smem_bytes() {
        assert_eq!(GemmTile::T128x256.smem_bytes(), 73_728);
        assert_eq!(GemmTile::T256x128.smem_bytes(), 73_728);
        assert_eq!(
            GemmTile::T256x128.entry(GemmOp::Matmul),
            "matmul_256x128_v2_bf16"
        );
        assert_eq!(GemmTile::T128x128.smem_bytes(), 65_536);
        assert_eq!(GemmTile::T64x64.smem_bytes(), 32_768);
        assert_eq!(
            GemmTile::T64x64.entry(GemmOp::Matmul),
            "matmul_64x64_v2_bf16"
        );
        assert_eq!(
            GemmTile::T128x256.entry(GemmOp::Linear),
            "linear_128x256_v2_bf16"
        );
    }

    /// An H100's L2 (the plans' raster bound).
    const L2: u64 = 50 << 20;

    #[test]
    fn persistent_schedule() {
        // GEGLU proj of the U-Net's 320-channel blocks on an A100 (108 SMs, 40 MB L2): 1024 x 10
        // tiles of 128 x 256, 95 per CTA on 108 CTAs; 80 KB A panels: 108 rows fit a quarter of
        // the L2, so one group of 108 rows (each CTA one row of each group).
        let s = GemmShape::new(1, 32 * 4096, 1280, 320);
        let p = GemmPlan::choose(s, true, 108, 40 << 20, true);
        assert_eq!((p.tile, p.splits), (GemmTile::T128x256, 1));
        assert_eq!((p.ctas, p.raster), (108, 108));
        assert_eq!(p.launch_config(s, true).grid, [108, 1, 1]);
        // the profiler's work split: 10240 tiles = 94 x 108 + 88
        assert_eq!(p.launch_config(s, true).persistent_tiles, 10_240);
        assert_eq!(
            p.launch_config(s, true).work_runs(),
            Some(vec![(88, 95), (20, 94)])
        );
        // K = 1280: 320 KB panels, at most 32 rows -> 27 (a divisor of 108).
        let s = GemmShape::new(1, 8 * 4096, 1280, 1280);
        let p = GemmPlan::choose(s, false, 108, 40 << 20, true);
        assert_eq!((p.ctas, p.raster), (108, 27));
        // 1536 tiles on 108 CTAs: 15 waves, 103..=105 CTAs (>= 14.55 tiles each); 256 x 128 at
        // K = 320 (160 KB panels, at most 64 rows): 104 CTAs and groups of 52 rows.
        let s = GemmShape::new(1, 32 * 4096, 320, 320);
        let p = GemmPlan::choose(s, false, 108, 40 << 20, true);
        assert_eq!(p.tile, GemmTile::T256x128);
        assert_eq!((p.ctas, p.raster), (104, 52));
        assert!(ceil_div(1536, p.ctas as u64) == 15);
        // 256 x 3 tiles: 8 waves on 96..=98 CTAs (108 would leave 7.1 tiles on average); 160 KB
        // panels, at most 64 rows: 98 CTAs in groups of 49 rows
        let s = GemmShape::new(1, 8 * 4096, 768, 640);
        let p = GemmPlan::choose(s, false, 108, 40 << 20, true);
        assert_eq!((p.tile, p.ctas, p.raster), (GemmTile::T128x256, 98, 49));
        // 64 x 64 from the heuristic: one CTA per tile, whatever the SMs
        let s = GemmShape::new(1, 300, 200, 64);
        let p = GemmPlan::choose(s, false, 4, 40 << 20, true);
        assert_eq!((p.tile, p.ctas), (GemmTile::T64x64, 20));
        // fewer tiles than resident CTAs: one CTA per tile
        let s = GemmShape::new(1, 300, 200, 64);
        let p = GemmPlan::persistent(GemmTile::T64x64, s, false, 432, 40 << 20);
        assert_eq!((p.ctas, p.raster), (20, 5));
        // the raster bound never exceeds the tile rows
        let p = GemmPlan::persistent(GemmTile::T64x64, s, false, 7, 40 << 20);
        assert!(p.raster <= 5 && p.ctas <= 7 && ceil_div(20, p.ctas as u64) == 3);
        assert_eq!(largest_divisor_at_most(108, 31), 27);
        assert_eq!(largest_divisor_at_most(107, 50), 1);
        assert_eq!(largest_divisor_at_most(1, 9), 1);
    }

    #[test]
    fn plan_heuristic() {
        // U-Net linear, M = 2 * 4096 tokens: 128 x 256 tiles fill a wave of 132 SMs.
        let big = GemmShape::new(1, 8192, 1280, 320);
        assert_eq!(
            GemmPlan::choose(big, false, 132, L2, true).tile,
            GemmTile::T128x256
        );
        // N = 320: 128 x 256 would waste 37.5 % of its columns, 256 x 128 17 %.
        let n320 = GemmShape::new(1, 32768, 320, 320);
        assert_eq!(
            GemmPlan::choose(n320, false, 132, L2, true).tile,
            GemmTile::T256x128
        );
        // M = 320 as well: 256-row tiles would waste 37.5 % of their rows.
        let sq = GemmShape::new(64, 320, 320, 320);
        assert_eq!(
            GemmPlan::choose(sq, false, 132, L2, true).tile,
            GemmTile::T128x128
        );
        // small M, long K: 64 x 64 with split-K
        let small = GemmShape::new(1, 77, 320, 1024);
        let p = GemmPlan::choose(small, false, 132, L2, true);
        assert_eq!(
            (p.tile, p.splits, p.ktiles_per_split),
            (GemmTile::T64x64, 8, 4)
        );
        assert_eq!(GemmPlan::choose(small, false, 132, L2, false).splits, 1);
        // short K: no split
        let short = GemmShape::new(1, 77, 320, 96);
        assert_eq!(GemmPlan::choose(short, false, 132, L2, true).splits, 1);
        let p = GemmPlan::choose(GemmShape::new(2, 40, 48, 600), true, 132, L2, true);
        assert_eq!(
            p.launch_config(GemmShape::new(2, 40, 48, 600), true).grid[2],
            2 * p.splits
        );
        assert!(p.splits * p.ktiles_per_split >= 19 && (p.splits - 1) * p.ktiles_per_split < 19);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(GemmParams, 112, align 8;
        assert_eq!(std::mem::size_of::<GemmOperandParams>(), 56));

    #[test]
    fn smem_matches_report() {
        assert_eq!(LINEAR_STATIC_SMEM_BYTES, 20_480);
        assert_eq!(MATMUL_STATIC_SMEM_BYTES, 19_456);
        assert_eq!(LINEAR_F32_STATIC_SMEM_BYTES, 40_960);
        assert_eq!(LINEAR_WBF16_STATIC_SMEM_BYTES, 30_720);
        assert_eq!(MATMUL_F32_STATIC_SMEM_BYTES, 38_912);
    }

    #[test]
    fn geglu_grid_covers_half_tiles() {
        let s = GemmShape::new(1, 65, 33, 8);
        assert_eq!(launch_config(s, false).grid, [1, 2, 1]);
        assert_eq!(launch_config(s, true).grid, [2, 2, 1]);
    }

    /// Operand pointers a, b, c without bias or residual.
    fn no_epilogue_ptrs(a: u64, b: u64, c: u64) -> GemmPtrs {
        GemmPtrs {
            a,
            b,
            bias: 0,
            residual: 0,
            c,
        }
    }

    #[test]
    fn f32_entries_and_vector_bits() {
        assert_eq!(
            GemmOp::Linear.entry_f32(DType::F32).unwrap(),
            "linear_v1_f32"
        );
        assert_eq!(
            GemmOp::Linear.entry_f32(DType::Bf16).unwrap(),
            "linear_wbf16_v1_f32"
        );
        assert_eq!(
            GemmOp::Matmul.entry_f32(DType::F32).unwrap(),
            "matmul_v1_f32"
        );
        assert!(GemmOp::Matmul.entry_f32(DType::Bf16).is_err());
        let s = GemmShape::new(2, 5, 7, 12);
        let ptrs = no_epilogue_ptrs(256, 512, 768);
        let l = GemmLayout::contiguous(GemmOp::Linear, s, false, false);
        let new = |b, ptrs, l| {
            GemmParams::new_f32(GemmOp::Linear, b, ptrs, s, l, GemmEpilogue::default())
                .unwrap()
                .ops
                .aligned
        };
        // K 12: f32 rows of 48 bytes (float4 ok); bf16 B rows of 24 bytes (no cp.async)
        assert_eq!(new(DType::F32, ptrs, l), F32_A_VEC | F32_B_VEC);
        assert_eq!(new(DType::Bf16, ptrs, l), F32_A_VEC);
        let odd = GemmLayout { lda: 13, ..l };
        assert_eq!(new(DType::F32, ptrs, odd), F32_B_VEC);
        let moved = GemmPtrs { b: 520, ..ptrs };
        assert_eq!(new(DType::F32, moved, l), F32_A_VEC);
    }

    #[test]
    fn geglu_rejected_for_matmul() {
        let s = GemmShape::new(1, 4, 4, 4);
        let ptrs = no_epilogue_ptrs(0, 0, 0);
        let epi = GemmEpilogue {
            scale: 1.0,
            geglu: true,
        };
        let l = GemmLayout::contiguous(GemmOp::Matmul, s, false, false);
        assert!(GemmParams::new(GemmOp::Matmul, ptrs, s, l, epi).is_err());
        let l = GemmLayout::contiguous(GemmOp::Linear, s, true, true);
        assert!(GemmParams::new(GemmOp::Linear, ptrs, s, l, epi).is_ok());
    }
}
