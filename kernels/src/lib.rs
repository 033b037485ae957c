//! Embedded PTX modules, one constant per `.cu` file.
//!
//! `kernels/cuda/<name>.cu` is compiled by `tools/kernels/build_ptx.py` (pinned NVRTC, never at
//! `cargo build` time) into the committed `kernels/ptx/<name>.ptx`, embedded here as the constant
//! `<NAME>` and listed in [`KernelModule::ALL`]. Each module has a Rust file mirroring its `.cu`:
//! the `#[repr(C)]` params struct passed as the kernel's single argument, the geometry constants,
//! a typed `launch_config(shape)` and the entry list. The CPU reference of every kernel is the
//! engine's CPU backend (`engine/src/backends/cpu`; docs/kernels.md).
//!
//! Loading a module (cudarc on a GPU, `ptx-emu` in tests) is the caller's job: this crate only
//! provides PTX text, entry names, params structs and launch rules.

// `u64::is_multiple_of` is newer than the workspace's rust-version (1.80).
#![allow(unknown_lints, clippy::manual_is_multiple_of)]

pub mod attention;
pub mod attention_sm90;
pub mod cfg_ddim;
pub mod conv2d;
pub mod conv2d_nhwc;
pub mod conv2d_sm90;
pub mod gemm;
pub mod gemm_bf16;
pub mod gemm_fp8_sm90;
pub mod gemm_sm90;
pub mod group_norm;
pub mod group_norm_sm90;
pub mod layer_norm;
pub mod layout;
pub mod mean_dim;
pub mod pointwise;
pub mod pool;
pub mod rca;
pub mod softmax;
pub mod timestep_embedding;
pub mod upsample;

/// `kernels/ptx/attention.ptx` (from `kernels/cuda/attention.cu`).
pub const ATTENTION: &str = include_str!("../ptx/attention.ptx");
/// `kernels/ptx/attention_sm90.ptx` (from `kernels/cuda/attention_sm90.cu`; `.target sm_90a`).
pub const ATTENTION_SM90: &str = include_str!("../ptx/attention_sm90.ptx");
/// `kernels/ptx/conv2d.ptx` (from `kernels/cuda/conv2d.cu`).
pub const CONV2D: &str = include_str!("../ptx/conv2d.ptx");
/// `kernels/ptx/conv2d_nhwc.ptx` (from `kernels/cuda/conv2d_nhwc.cu`).
pub const CONV2D_NHWC: &str = include_str!("../ptx/conv2d_nhwc.ptx");
/// `kernels/ptx/conv2d_sm90.ptx` (from `kernels/cuda/conv2d_sm90.cu`, sm_90a only).
pub const CONV2D_SM90: &str = include_str!("../ptx/conv2d_sm90.ptx");
/// `kernels/ptx/gemm.ptx` (from `kernels/cuda/gemm.cu`).
pub const GEMM: &str = include_str!("../ptx/gemm.ptx");
/// `kernels/ptx/gemm_bf16.ptx` (from `kernels/cuda/gemm_bf16.cu`).
pub const GEMM_BF16: &str = include_str!("../ptx/gemm_bf16.ptx");
/// `kernels/ptx/gemm_sm90.ptx` (from `kernels/cuda/gemm_sm90.cu`, `.target sm_90a`).
pub const GEMM_SM90: &str = include_str!("../ptx/gemm_sm90.ptx");
/// `kernels/ptx/gemm_fp8_sm90.ptx` (from `kernels/cuda/gemm_fp8_sm90.cu`, `.target sm_90a`).
pub const GEMM_FP8_SM90: &str = include_str!("../ptx/gemm_fp8_sm90.ptx");
/// `kernels/ptx/group_norm.ptx` (from `kernels/cuda/group_norm.cu`).
pub const GROUP_NORM: &str = include_str!("../ptx/group_norm.ptx");
/// `kernels/ptx/group_norm_sm90.ptx` (from `kernels/cuda/group_norm_sm90.cu`, `.target sm_90a`).
pub const GROUP_NORM_SM90: &str = include_str!("../ptx/group_norm_sm90.ptx");
/// `kernels/ptx/layer_norm.ptx` (from `kernels/cuda/layer_norm.cu`).
pub const LAYER_NORM: &str = include_str!("../ptx/layer_norm.ptx");
/// `kernels/ptx/layout.ptx` (from `kernels/cuda/layout.cu`).
pub const LAYOUT: &str = include_str!("../ptx/layout.ptx");
/// `kernels/ptx/mean_dim.ptx` (from `kernels/cuda/mean_dim.cu`).
pub const MEAN_DIM: &str = include_str!("../ptx/mean_dim.ptx");
/// `kernels/ptx/upsample.ptx` (from `kernels/cuda/upsample.cu`).
pub const UPSAMPLE: &str = include_str!("../ptx/upsample.ptx");
/// `kernels/ptx/pointwise.ptx` (from `kernels/cuda/pointwise.cu`).
pub const POINTWISE: &str = include_str!("../ptx/pointwise.ptx");
/// `kernels/ptx/pool.ptx` (from `kernels/cuda/pool.cu`).
pub const POOL: &str = include_str!("../ptx/pool.ptx");
/// `kernels/ptx/rca.ptx` (from `kernels/cuda/rca.cu`).
pub const RCA: &str = include_str!("../ptx/rca.ptx");
/// `kernels/ptx/softmax.ptx` (from `kernels/cuda/softmax.cu`).
pub const SOFTMAX: &str = include_str!("../ptx/softmax.ptx");
/// `kernels/ptx/timestep_embedding.ptx` (from `kernels/cuda/timestep_embedding.cu`).
pub const TIMESTEP_EMBEDDING: &str = include_str!("../ptx/timestep_embedding.ptx");
/// `kernels/ptx/cfg_ddim.ptx` (from `kernels/cuda/cfg_ddim.cu`).
pub const CFG_DDIM: &str = include_str!("../ptx/cfg_ddim.ptx");

/// One PTX module per `.cu` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelModule {
    Attention,
    AttentionSm90,
    Conv2d,
    Conv2dNhwc,
    Conv2dSm90,
    Gemm,
    GemmBf16,
    GemmSm90,
    GemmFp8Sm90,
    GroupNorm,
    GroupNormSm90,
    LayerNorm,
    Layout,
    MeanDim,
    Pointwise,
    Pool,
    Rca,
    Softmax,
    TimestepEmbedding,
    CfgDdim,
    Upsample,
}

/// Short alias (candle's `Id`).
pub use KernelModule as Id;

/// The PTX target a module is compiled for, and the kernel set a device runs.
///
/// Every module's PTX is `.target sm_80` (runs on CC 8.0 and newer through the driver's JIT) unless
/// its `.cu` has the line `// arch: sm_90a only` (wgmma, TMA, `setmaxnreg`, clusters): then it is
/// `.target sm_90a`, which loads only on CC 9.0 (H100/H200; the `a` features do not carry forward
/// to later architectures). The CUDA backend picks the Hopper kernels where
/// [`Arch::for_compute_capability`] says `Sm90a`, else the sm_80 ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    Sm80,
    Sm90a,
}

impl Arch {
    /// The kernel set for a device of compute capability `major.minor`: CC 9.0 gets `Sm90a`,
    /// every other CC ≥ 8.0 `Sm80` (sm_90a PTX does not run on CC 10.x / 12.x); `None` below 8.0.
    pub fn for_compute_capability(major: u32, minor: u32) -> Option<Arch> {
        match (major, minor) {
            (9, 0) => Some(Arch::Sm90a),
            (m, _) if m >= 8 => Some(Arch::Sm80),
            _ => None,
        }
    }

    /// `"sm_80"` / `"sm_90a"`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Sm80 => "sm_80",
            Arch::Sm90a => "sm_90a",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl KernelModule {
    pub const ALL: [KernelModule; 21] = [
        KernelModule::Attention,
        KernelModule::AttentionSm90,
        KernelModule::Conv2d,
        KernelModule::Conv2dNhwc,
        KernelModule::Conv2dSm90,
        KernelModule::Gemm,
        KernelModule::GemmBf16,
        KernelModule::GemmSm90,
        KernelModule::GemmFp8Sm90,
        KernelModule::GroupNorm,
        KernelModule::GroupNormSm90,
        KernelModule::LayerNorm,
        KernelModule::Layout,
        KernelModule::MeanDim,
        KernelModule::Pointwise,
        KernelModule::Pool,
        KernelModule::Rca,
        KernelModule::Softmax,
        KernelModule::TimestepEmbedding,
        KernelModule::CfgDdim,
        KernelModule::Upsample,
    ];

    /// File stem: `kernels/cuda/<name>.cu`, `kernels/ptx/<name>.ptx`.
    pub fn name(self) -> &'static str {
        match self {
            KernelModule::Attention => "attention",
            KernelModule::AttentionSm90 => "attention_sm90",
            KernelModule::Conv2d => "conv2d",
            KernelModule::Conv2dNhwc => "conv2d_nhwc",
            KernelModule::Conv2dSm90 => "conv2d_sm90",
            KernelModule::Gemm => "gemm",
            KernelModule::GemmBf16 => "gemm_bf16",
            KernelModule::GemmSm90 => "gemm_sm90",
            KernelModule::GemmFp8Sm90 => "gemm_fp8_sm90",
            KernelModule::GroupNorm => "group_norm",
            KernelModule::GroupNormSm90 => "group_norm_sm90",
            KernelModule::LayerNorm => "layer_norm",
            KernelModule::Layout => "layout",
            KernelModule::MeanDim => "mean_dim",
            KernelModule::Upsample => "upsample",
            KernelModule::Pointwise => "pointwise",
            KernelModule::Pool => "pool",
            KernelModule::Rca => "rca",
            KernelModule::Softmax => "softmax",
            KernelModule::TimestepEmbedding => "timestep_embedding",
            KernelModule::CfgDdim => "cfg_ddim",
        }
    }

    /// The committed PTX text.
    pub fn ptx(self) -> &'static str {
        match self {
            KernelModule::Attention => ATTENTION,
            KernelModule::AttentionSm90 => ATTENTION_SM90,
            KernelModule::Conv2d => CONV2D,
            KernelModule::Conv2dNhwc => CONV2D_NHWC,
            KernelModule::Conv2dSm90 => CONV2D_SM90,
            KernelModule::Gemm => GEMM,
            KernelModule::GemmBf16 => GEMM_BF16,
            KernelModule::GemmSm90 => GEMM_SM90,
            KernelModule::GemmFp8Sm90 => GEMM_FP8_SM90,
            KernelModule::GroupNorm => GROUP_NORM,
            KernelModule::GroupNormSm90 => GROUP_NORM_SM90,
            KernelModule::LayerNorm => LAYER_NORM,
            KernelModule::Layout => LAYOUT,
            KernelModule::MeanDim => MEAN_DIM,
            KernelModule::Upsample => UPSAMPLE,
            KernelModule::Pointwise => POINTWISE,
            KernelModule::Pool => POOL,
            KernelModule::Rca => RCA,
            KernelModule::Softmax => SOFTMAX,
            KernelModule::TimestepEmbedding => TIMESTEP_EMBEDDING,
            KernelModule::CfgDdim => CFG_DDIM,
        }
    }

    /// Every `extern "C"` entry of the module.
    /// The arch the module's PTX targets (its `.target` line): [`Arch::Sm90a`] for Hopper-only
    /// modules, else [`Arch::Sm80`]. A device runs a module only when its own kernel set
    /// ([`Arch::for_compute_capability`]) is at least this.
    pub fn arch(self) -> Arch {
        let target = self
            .ptx()
            .lines()
            .find_map(|l| l.trim().strip_prefix(".target "))
            .unwrap_or("sm_80");
        if target.trim().starts_with("sm_90a") {
            Arch::Sm90a
        } else {
            Arch::Sm80
        }
    }

    pub fn entries(self) -> &'static [Entry] {
        match self {
            KernelModule::Attention => attention::ENTRIES,
            KernelModule::AttentionSm90 => attention_sm90::ENTRIES,
            KernelModule::Conv2d => conv2d::ENTRIES,
            KernelModule::Conv2dNhwc => conv2d_nhwc::ENTRIES,
            KernelModule::Conv2dSm90 => conv2d_sm90::ALL_ENTRIES,
            KernelModule::Gemm => gemm::ENTRIES,
            KernelModule::GemmBf16 => gemm_bf16::ENTRIES,
            KernelModule::GemmSm90 => gemm_sm90::ENTRIES,
            KernelModule::GemmFp8Sm90 => gemm_fp8_sm90::ENTRIES,
            KernelModule::GroupNorm => group_norm::ENTRIES,
            KernelModule::GroupNormSm90 => group_norm_sm90::ENTRIES,
            KernelModule::LayerNorm => layer_norm::ENTRIES,
            KernelModule::Layout => layout::ENTRIES,
            KernelModule::MeanDim => mean_dim::ENTRIES,
            KernelModule::Upsample => upsample::ENTRIES,
            KernelModule::Pointwise => pointwise::ENTRIES,
            KernelModule::Pool => pool::ENTRIES,
            KernelModule::Rca => rca::ENTRIES,
            KernelModule::Softmax => softmax::ENTRIES,
            KernelModule::TimestepEmbedding => timestep_embedding::ENTRIES,
            KernelModule::CfgDdim => cfg_ddim::ENTRIES,
        }
    }
}

/// Storage dtype of a kernel entry (the `_dtype` suffix of its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    Bf16,
}

impl DType {
    pub fn suffix(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
        }
    }
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::Bf16 => 2,
        }
    }
}

/// Builds an entry name `op_vN_dtype`, e.g. `kernel_name("group_norm", 1, DType::F32)` is
/// `group_norm_v1_f32`. The one place Rust spells entry names.
pub fn kernel_name(op: &str, version: u32, dtype: DType) -> String {
    format!("{op}_v{version}_{}", dtype.suffix())
}

/// One `extern "C"` entry of a module: its name, the op it belongs to, the params struct it takes
/// as its single argument and the rule that shapes its launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub name: &'static str,
    pub op: &'static str,
    pub version: u32,
    pub dtype: DType,
    /// Rust name of the `#[repr(C)]` params struct.
    pub params: &'static str,
    /// `size_of` the params struct: the size of the kernel's single `.param`.
    pub params_size: usize,
    /// The launch rule in words (the typed one is the module's `launch_config`).
    pub launch: &'static str,
}

impl Entry {
    /// Entry `name` of `op` at `version` (`op_v<version>_dtype`), otherwise as [`Entry::v1`].
    pub const fn versioned(
        version: u32,
        name: &'static str,
        op: &'static str,
        dtype: DType,
        params: (&'static str, usize),
        launch: &'static str,
    ) -> Entry {
        let mut e = Entry::v1(name, op, dtype, params, launch);
        e.version = version;
        e
    }

    /// A version-1 entry (`group_norm`'s v2 entries are the only others): `op_v1_dtype` taking the `params` struct of
    /// `params_size` bytes, launched by the rule `launch`.
    pub const fn v1(
        name: &'static str,
        op: &'static str,
        dtype: DType,
        (params, params_size): (&'static str, usize),
        launch: &'static str,
    ) -> Entry {
        Entry {
            name,
            op,
            version: 1,
            dtype,
            params,
            params_size,
            launch,
        }
    }
}

/// The `ENTRIES` of a module whose ops each ship an f32 and a bf16 entry: `<op>_v1_f32` then
/// `<op>_v1_bf16` for every op, in order, each taking the `(params, params_size)` struct and
/// launched by the rule `launch`; further entries may follow after a second `;`.
macro_rules! f32_bf16_entries {
    ($params:expr, $launch:expr; $($op:literal),+ $(; $($more:expr),+)? $(,)?) => {
        &[
            $(
                $crate::Entry::v1(concat!($op, "_v1_f32"), $op, $crate::DType::F32, $params, $launch),
                $crate::Entry::v1(concat!($op, "_v1_bf16"), $op, $crate::DType::Bf16, $params, $launch),
            )+
            $($($more),+)?
        ]
    };
}
pub(crate) use f32_bf16_entries;

/// Grid, block and dynamic shared memory of one launch (cudarc's `LaunchConfig` and
/// `ptx_emu::LaunchConfig` carry the same three fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dynamic_smem_bytes: u32,
    /// Persistent launches: every row of blocks (one `y`, `z`) walks this many tiles, block `x`
    /// the tiles `x, x + grid.x, ..`; 0: not persistent (no block loops over tiles). Not a
    /// kernel argument: the stand-in driver's profiler weights sampled blocks by it
    /// ([`LaunchConfig::work_runs`], `docs/profiling.md`).
    pub persistent_tiles: u64,
    /// The work units of one tile of a persistent launch, per row of blocks
    /// ([`LaunchConfig::work_runs`]).
    pub tile_work: TileWork,
}

/// The work units one tile of a persistent launch carries ([`LaunchConfig::tile_work`]): what the
/// stand-in's profiler weights sampled blocks by (`docs/profiling.md` section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileWork {
    /// Every tile one unit.
    Equal,
    /// Output rows tiled by grid `y`: the tiles of block row `y` cover rows
    /// `y * tile_rows .. min(rows, (y + 1) * tile_rows)` and cost one unit per `slice_rows`-row
    /// slice holding any of them (a tail row tile computes fewer slices: `conv2d_sm90`'s m64
    /// wgmma halves past C_out are skipped); a row tile past `rows` costs 0.
    RowSlices {
        rows: u32,
        tile_rows: u32,
        slice_rows: u32,
    },
}

impl TileWork {
    /// Units of one tile of block row `y`.
    pub fn units(self, y: u32) -> u64 {
        match self {
            TileWork::Equal => 1,
            TileWork::RowSlices {
                rows,
                tile_rows,
                slice_rows,
            } => {
                let first = u64::from(y) * u64::from(tile_rows);
                let live = u64::from(rows)
                    .saturating_sub(first)
                    .min(u64::from(tile_rows));
                ceil_div(live, u64::from(slice_rows.max(1)))
            }
        }
    }
}

impl LaunchConfig {
    /// `grid` blocks of `threads` threads, static shared memory only (no dynamic smem).
    pub const fn blocks(grid: [u32; 3], threads: u32) -> LaunchConfig {
        LaunchConfig {
            grid,
            block: [threads, 1, 1],
            dynamic_smem_bytes: 0,
            persistent_tiles: 0,
            tile_work: TileWork::Equal,
        }
    }

    /// This launch, persistent over `tiles` tiles per row of blocks
    /// ([`LaunchConfig::persistent_tiles`]).
    pub const fn persistent_over(mut self, tiles: u64) -> LaunchConfig {
        self.persistent_tiles = tiles;
        self
    }

    /// This launch, its tiles weighted by `work` ([`LaunchConfig::tile_work`]).
    pub const fn tile_work(mut self, work: TileWork) -> LaunchConfig {
        self.tile_work = work;
        self
    }

    /// The work units of each block of a persistent launch, as runs `(blocks, units per block)`
    /// in linear block order (x fastest): per row of blocks, the first `tiles mod grid.x` run
    /// `tiles / grid.x + 1` tiles and the others `tiles / grid.x`, each tile of block row `y`
    /// worth [`TileWork::units`]`(y)`. `None` when not persistent. What the engine states to the
    /// stand-in driver before the launch (`ptxemu_set_launch_work`).
    pub fn work_runs(&self) -> Option<Vec<(u64, u64)>> {
        if self.persistent_tiles == 0 {
            return None;
        }
        let gx = u64::from(self.grid[0].max(1));
        let gy = self.grid[1].max(1);
        let rows = u64::from(gy) * u64::from(self.grid[2].max(1));
        let (n, r) = (self.persistent_tiles / gx, self.persistent_tiles % gx);
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for row_index in 0..rows {
            let per_tile = self.tile_work.units((row_index % u64::from(gy)) as u32);
            let row = [(r, (n + 1) * per_tile), (gx - r, n * per_tile)];
            for &(blocks, units) in row.iter().filter(|r| r.0 > 0) {
                match runs.last_mut() {
                    Some(last) if last.1 == units => last.0 += blocks,
                    _ => runs.push((blocks, units)),
                }
            }
        }
        Some(runs)
    }
}

/// Largest grid of the grid-stride kernels; their loops cover the rest.
pub const MAX_GRID_STRIDE_BLOCKS: u64 = 65_535;

/// The launch rule of the grid-stride kernels (layout, pointwise, pool, rca, cfg_ddim,
/// timestep_embedding): `grid = clamp(ceil(items / (threads * per_thread)), 1, 65535)`,
/// `block = threads`, no dynamic shared memory.
pub fn grid_stride(items: u64, threads: u32, per_thread: u64) -> LaunchConfig {
    let blocks = ceil_div(items, threads as u64 * per_thread).clamp(1, MAX_GRID_STRIDE_BLOCKS);
    LaunchConfig::blocks([blocks as u32, 1, 1], threads)
}

/// Mirrors `vec16_operand` in `common.cuh`: whether an operand at byte address `addr` plus
/// `offset` elements, read through `strides` over a shape whose last dim is a whole number of
/// `vec`-element 16-byte vectors, starts every vector on 16 bytes with its elements contiguous
/// (last stride 1, the other strides and the offset multiples of `vec`, `addr` 16-byte aligned),
/// or repeats one element along the vector (last stride 0, when `bcast`).
pub fn vec16_operand(addr: u64, offset: u64, strides: &[u64], vec: u64, bcast: bool) -> bool {
    match strides.split_last() {
        Some((0, _)) => bcast,
        Some((1, outer)) => {
            offset % vec == 0 && addr % 16 == 0 && outer.iter().all(|s| s % vec == 0)
        }
        _ => false,
    }
}

/// The grid-stride rule of the strided ops with a 16-byte vector path (`binary_v2`, `copy_v2`):
/// over `n / vec` vectors, 2 per thread, when `vectors` (the kernel takes the path by the same
/// test), else over the `n` elements, `per_thread` each.
pub fn grid_stride_vec16(
    n: u64,
    vec: u64,
    vectors: bool,
    threads: u32,
    per_thread: u64,
) -> LaunchConfig {
    if vectors {
        grid_stride(n / vec, threads, 2)
    } else {
        grid_stride(n, threads, per_thread)
    }
}

/// The launch rule of the row kernels (layer_norm, softmax): one warp per row, `warps` rows per
/// block: `grid = ceil(rows / warps)`, `block = 32 * warps`, no dynamic shared memory.
pub fn warp_per_row(rows: u64, warps: u32) -> LaunchConfig {
    let blocks = ceil_div(rows, warps as u64).max(1) as u32;
    LaunchConfig::blocks([blocks, 1, 1], warps * 32)
}

/// The `(rows, cols)` a row kernel (layer_norm, softmax) works on, one row per warp, e.g.
/// `(batch * tokens, 1024)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowsShape {
    pub rows: u64,
    pub cols: u64,
}

impl RowsShape {
    /// A contiguous tensor of `elems` elements as rows of its last dim `cols` (no rows when
    /// `cols` is 0).
    pub fn of(elems: usize, cols: usize) -> RowsShape {
        RowsShape {
            rows: elems.checked_div(cols).unwrap_or(0) as u64,
            cols: cols as u64,
        }
    }

    /// `[rows, cols]` as the kernels' u32 fields, an error naming `op` otherwise.
    pub(crate) fn dims(self, op: &str) -> anyhow::Result<[u32; 2]> {
        Ok([
            to_u32(self.rows, &format!("{op} rows"))?,
            to_u32(self.cols, &format!("{op} cols"))?,
        ])
    }
}

/// `ceil(extent / tile)` blocks along one grid axis, at least 1 (an empty launch still runs one
/// block that exits).
pub(crate) fn tiles(extent: u64, tile: u32) -> u32 {
    ceil_div(extent, tile as u64).max(1) as u32
}

/// `ceil(a / b)` for launch rules.
pub const fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// Converts a size to the `u32` a params field holds, naming the field in the error.
pub(crate) fn to_u32(value: u64, what: &str) -> anyhow::Result<u32> {
    u32::try_from(value)
        .map_err(|_| anyhow::anyhow!("{what} = {value} does not fit the kernel's u32 field"))
}

/// The `params_layout_matches_cu` test of a module: `size_of` (and optionally `align_of`) of its
/// params struct equal the `.cu` struct's, plus any further checks of the module's constants.
#[cfg(test)]
macro_rules! params_layout_test {
    ($params:ty, $size:expr $(, align $align:expr)? $(; $($extra:tt)*)?) => {
        #[test]
        fn params_layout_matches_cu() {
            assert_eq!(std::mem::size_of::<$params>(), $size);
            $(assert_eq!(std::mem::align_of::<$params>(), $align);)?
            $($($extra)*)?
        }
    };
}
#[cfg(test)]
pub(crate) use params_layout_test;

/// Resident blocks per SM of `entry` (`threads` per block, `smem` bytes of shared memory) on
/// the gpu-model's `gpu` by its occupancy rule, with the registers of the committed ptxas
/// `report` at `arch` ("sm_80" / "sm_90a").
#[cfg(test)]
pub(crate) fn resident_blocks(
    report: &str,
    entry: &str,
    arch: &str,
    threads: u32,
    smem: u32,
    gpu: &str,
) -> u32 {
    let regs = gpu_model::counters::registers_from_report(report, entry, arch);
    assert!(regs.is_some(), "{entry} {arch}: not in the ptxas report");
    let c = gpu_model::counters::Counters {
        block_size: threads as u64,
        smem_static: smem as u64,
        registers_per_thread: regs,
        ..Default::default()
    };
    gpu_model::model::occupancy(&c, gpu_model::gpu::GpuSpec::by_name(gpu).unwrap()).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_kernels_round_rows_up() {
        let shape = RowsShape::of(63, 7);
        assert_eq!(shape, RowsShape { rows: 9, cols: 7 });
        assert_eq!(layer_norm::launch_config(shape).grid, [3, 1, 1]);
        assert_eq!(softmax::launch_config(shape).grid, [3, 1, 1]);
        assert_eq!(RowsShape::of(0, 0).rows, 0);
    }

    #[test]
    fn every_entry_is_in_its_ptx() {
        for m in KernelModule::ALL {
            for e in m.entries() {
                let decl = format!(".visible .entry {}(", e.name);
                assert!(
                    m.ptx().contains(&decl),
                    "{} missing from kernels/ptx/{}.ptx",
                    e.name,
                    m.name()
                );
                assert_eq!(e.name, kernel_name(e.op, e.version, e.dtype));
                let param = format!("{}_param_0[{}]", e.name, e.params_size);
                assert!(
                    m.ptx().contains(&param),
                    "{}: expected one .param of {} bytes",
                    e.name,
                    e.params_size
                );
            }
            let target = format!(".target {}", m.arch());
            assert!(
                m.ptx().lines().any(|l| l.trim() == target),
                "kernels/ptx/{}.ptx: KernelModule::arch() says {} but the PTX has no `{target}` line",
                m.name(),
                m.arch()
            );
            let listed = m.ptx().matches(".visible .entry ").count();
            assert_eq!(
                listed,
                m.entries().len(),
                "kernels/ptx/{}.ptx entry count",
                m.name()
            );
        }
    }

    #[test]
    fn arch_for_compute_capability() {
        assert_eq!(Arch::for_compute_capability(9, 0), Some(Arch::Sm90a));
        for (major, minor) in [(8, 0), (8, 6), (8, 9), (10, 0), (12, 0)] {
            assert_eq!(
                Arch::for_compute_capability(major, minor),
                Some(Arch::Sm80),
                "CC {major}.{minor}"
            );
        }
        assert_eq!(Arch::for_compute_capability(7, 5), None);
        assert!(Arch::Sm80 < Arch::Sm90a);
    }
}

#[cfg(test)]
mod launch_config_tests {
    use super::LaunchConfig;

    #[test]
    fn persistent_work_runs() {
        assert_eq!(LaunchConfig::blocks([6, 2, 1], 32).work_runs(), None);
        // per row of 6 blocks over 10 tiles: 4 blocks of 2 tiles, 2 of 1
        let c = LaunchConfig::blocks([6, 2, 1], 32).persistent_over(10);
        assert_eq!(c.work_runs(), Some(vec![(4, 2), (2, 1), (4, 2), (2, 1)]));
        // tiles a multiple of the grid (and fewer tiles than blocks): equal neighbours merged
        let c = LaunchConfig::blocks([5, 1, 3], 32).persistent_over(15);
        assert_eq!(c.work_runs(), Some(vec![(15, 3)]));
        let c = LaunchConfig::blocks([8, 1, 1], 32).persistent_over(3);
        assert_eq!(c.work_runs(), Some(vec![(3, 1), (5, 0)]));
    }

    #[test]
    fn row_slice_work_runs() {
        use super::TileWork;
        // 320 rows in tiles of 256, slices of 64: row tile 0 computes 4 slices, row tile 1 one
        let w = TileWork::RowSlices {
            rows: 320,
            tile_rows: 256,
            slice_rows: 64,
        };
        assert_eq!((w.units(0), w.units(1), w.units(2)), (4, 1, 0));
        assert_eq!(TileWork::Equal.units(7), 1);
        // 3 blocks per row tile over 7 tiles (3, 2, 2), two groups (grid z): classes 12, 8, 3, 2
        let c = LaunchConfig::blocks([3, 2, 2], 32)
            .persistent_over(7)
            .tile_work(w);
        let row = [(1, 12), (2, 8), (1, 3), (2, 2)];
        assert_eq!(c.work_runs(), Some([row, row].concat()));
        // whole row tiles only: the tile counts' classes, units 4 per tile
        let full = TileWork::RowSlices {
            rows: 512,
            tile_rows: 256,
            slice_rows: 64,
        };
        let c = LaunchConfig::blocks([4, 2, 1], 32)
            .persistent_over(8)
            .tile_work(full);
        assert_eq!(c.work_runs(), Some(vec![(8, 8)]));
    }
}
