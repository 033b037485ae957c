//! `kernels/cuda/group_norm.cu`: GroupNorm over `(N, C, S)` with optional fused SiLU.

use crate::{to_u32, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Threads per block, one block per (group, sample) (`GN_THREADS` in the `.cu`).
pub const GN_THREADS: u32 = 256;
/// Static shared memory per block: `GN_THREADS / 32` partials + one total, f32.
pub const GN_STATIC_SMEM_BYTES: u32 = (GN_THREADS / 32 + 1) * 4;

const LAUNCH: &str = "grid = (groups, N), block = 256";

const LAUNCH_V2: &str = "grid = (chunks, groups, N), block = 256; stats then apply, same grid";

const fn v2(name: &'static str, op: &'static str, dtype: DType) -> Entry {
    Entry {
        name,
        op,
        version: 2,
        dtype,
        params: "GroupNorm2Params",
        params_size: 64,
        launch: LAUNCH_V2,
    }
}

pub const ENTRIES: &[Entry] = crate::f32_bf16_entries!(
    ("GroupNormParams", 56), LAUNCH; "group_norm", "group_norm_silu";
    v2("group_norm_stats_v2_f32", "group_norm_stats", DType::F32),
    v2("group_norm_v2_f32", "group_norm", DType::F32),
    v2("group_norm_silu_v2_f32", "group_norm_silu", DType::F32),
    v2("group_norm_stats_v2_bf16", "group_norm_stats", DType::Bf16),
    v2("group_norm_v2_bf16", "group_norm", DType::Bf16),
    v2("group_norm_silu_v2_bf16", "group_norm_silu", DType::Bf16),
    tokens("group_norm_tokens_v2_f32", "group_norm_tokens", DType::F32),
    tokens("group_norm_tokens_v2_bf16", "group_norm_tokens", DType::Bf16),
    tokens("tokens_planes_add_v2_f32", "tokens_planes_add", DType::F32),
    tokens("tokens_planes_add_v2_bf16", "tokens_planes_add", DType::Bf16),
    nhwc("group_norm_stats_nhwc_v1_f32", "group_norm_stats_nhwc", DType::F32),
    nhwc("group_norm_nhwc_v1_f32", "group_norm_nhwc", DType::F32),
    nhwc("group_norm_silu_nhwc_v1_f32", "group_norm_silu_nhwc", DType::F32),
    nhwc("group_norm_stats_nhwc_v1_bf16", "group_norm_stats_nhwc", DType::Bf16),
    nhwc("group_norm_nhwc_v1_bf16", "group_norm_nhwc", DType::Bf16),
    nhwc("group_norm_silu_nhwc_v1_bf16", "group_norm_silu_nhwc", DType::Bf16),
    nhwc_tokens("group_norm_tokens_nhwc_v1_f32", "group_norm_tokens_nhwc", DType::F32, LAUNCH_NHWC),
    nhwc_tokens("group_norm_tokens_nhwc_v1_bf16", "group_norm_tokens_nhwc", DType::Bf16, LAUNCH_NHWC),
    nhwc_tokens("tokens_planes_add_nhwc_v1_f32", "tokens_planes_add_nhwc", DType::F32, LAUNCH_ROWS),
    nhwc_tokens("tokens_planes_add_nhwc_v1_bf16", "tokens_planes_add_nhwc", DType::Bf16, LAUNCH_ROWS)
);

const LAUNCH_ROWS: &str =
    "grid = clamp(ceil(N * F * S * ceil(C / VEC) / 256), 1, 65535), block = 256, grid-stride loop";

/// A channels-last token-layout entry (version 1) taking [`GnTokensParams`]: the motion module's
/// entry (`group_norm_tokens_nhwc`, after `group_norm_stats_nhwc`) and exit
/// (`tokens_planes_add_nhwc`).
const fn nhwc_tokens(
    name: &'static str,
    op: &'static str,
    dtype: DType,
    launch: &'static str,
) -> Entry {
    Entry {
        name,
        op,
        version: 1,
        dtype,
        params: "GnTokensParams",
        params_size: 80,
        launch,
    }
}

const LAUNCH_NHWC: &str =
    "grid = (ceil(S / 512), ceil(C / TC), N), TC = 64 (bf16) / 32 (f32), block = 256; stats then apply";

/// A channels-last entry (version 1) taking [`GroupNorm2Params`] over `(N, S, C)` rows.
const fn nhwc(name: &'static str, op: &'static str, dtype: DType) -> Entry {
    Entry {
        name,
        op,
        version: 1,
        dtype,
        params: "GroupNorm2Params",
        params_size: 64,
        launch: LAUNCH_NHWC,
    }
}

const LAUNCH_TOKENS: &str =
    "grid = (ceil(S / 32), ceil(C / TC), N * F), TC = 64 (bf16) / 32 (f32), block = 256";

/// A token-layout entry (version 2) taking [`GnTokensParams`].
const fn tokens(name: &'static str, op: &'static str, dtype: DType) -> Entry {
    Entry {
        name,
        op,
        version: 2,
        dtype,
        params: "GnTokensParams",
        params_size: 80,
        launch: LAUNCH_TOKENS,
    }
}

/// Mirrors `struct GroupNormParams` in `group_norm.cu` (56 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GroupNormParams {
    /// `(N, C, S)` input.
    pub x: u64,
    /// `(C)` scale.
    pub gamma: u64,
    /// `(C)` shift.
    pub beta: u64,
    /// `(N, C, S)` output; may equal `x`.
    pub y: u64,
    pub n: u32,
    pub c: u32,
    /// Elements per channel: `H*W` (image) or `F*H*W` (video).
    pub s: u32,
    pub groups: u32,
    pub eps: f32,
    pub _pad: u32,
}

/// `(N, C, S)` with `groups` groups, e.g. `N = 2, C = 320, S = 64*64, groups = 32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupNormShape {
    pub n: u64,
    pub c: u64,
    pub s: u64,
    pub groups: u64,
}

/// The shape checks of every GroupNorm launch (v1's params; v2 and `group_norm_sm90.cu` add
/// [`check_shape_v2`]): groups dividing C, at most 65535 samples (a grid dim), a group of at most
/// `u32::MAX` elements, C and S u32.
pub fn check_shape(shape: GroupNormShape) -> Result<()> {
    ensure!(
        shape.groups >= 1 && shape.c % shape.groups == 0,
        "group_norm: channels {} not divisible by groups {}",
        shape.c,
        shape.groups
    );
    ensure!(
        shape.n <= 65_535,
        "group_norm: batch {} exceeds gridDim.y 65535",
        shape.n
    );
    ensure!(
        (shape.c / shape.groups) * shape.s <= u32::MAX as u64,
        "group_norm: group of {} x {} elements exceeds u32",
        shape.c / shape.groups,
        shape.s
    );
    for (v, what) in [(shape.c, "group_norm C"), (shape.s, "group_norm S")] {
        to_u32(v, what)?;
    }
    Ok(())
}

/// [`check_shape`] plus the launches whose grid has the groups along y: at most 65535 groups.
pub fn check_shape_v2(shape: GroupNormShape) -> Result<()> {
    check_shape(shape)?;
    ensure!(
        shape.groups <= 65_535,
        "group_norm v2: {} groups exceed gridDim.y 65535",
        shape.groups
    );
    Ok(())
}

impl GroupNormParams {
    pub fn new(
        x: u64,
        gamma: u64,
        beta: u64,
        y: u64,
        shape: GroupNormShape,
        eps: f32,
    ) -> Result<Self> {
        check_shape(shape)?;
        ensure!(
            eps > 0.0 && eps.is_finite(),
            "group_norm: eps {eps} must be > 0"
        );
        Ok(GroupNormParams {
            x,
            gamma,
            beta,
            y,
            n: to_u32(shape.n, "group_norm N")?,
            c: to_u32(shape.c, "group_norm C")?,
            s: to_u32(shape.s, "group_norm S")?,
            groups: to_u32(shape.groups, "group_norm groups")?,
            eps,
            _pad: 0,
        })
    }
}

impl GroupNormParams {
    /// The shape these params were made for.
    pub fn shape(&self) -> GroupNormShape {
        GroupNormShape {
            n: self.n as u64,
            c: self.c as u64,
            s: self.s as u64,
            groups: self.groups as u64,
        }
    }
}

/// `grid = (groups, N)`, `block = 256`, static smem only.
pub fn launch_config(shape: GroupNormShape) -> LaunchConfig {
    LaunchConfig::blocks(
        [shape.groups.max(1) as u32, shape.n.max(1) as u32, 1],
        GN_THREADS,
    )
}

// ------------------------------------------------------------------------------------------------
// v2: split reduction (stats launch + apply launch over the same grid)
// ------------------------------------------------------------------------------------------------

/// Threads per v2 block (`GN2_THREADS`).
pub const GN2_THREADS: u32 = 256;
/// Elements of one v2 chunk (`GN2_CHUNK` = 256 threads x 32 elements).
pub const GN2_CHUNK: u64 = 8192;

/// Groups of at most this many elements (`C / groups * S`) run v1.
pub const GN_V1_MAX_GROUP: u64 = 1024;

/// Which version runs a shape: v2 (split reduction: 2 reads + 1 write of x over
/// `chunks x groups x N` blocks, 2 launches) once a group has more than [`GN_V1_MAX_GROUP`]
/// elements, v1 (one block per group, 1 launch, 3 reads + 1 write) below. From the gpu-model on
/// the stand-in's counters (docs/performance.md, "GroupNorm split reduction"; N 2, C 320,
/// 32 groups, bf16, h100-sxm): a group of 640 elements is 5.3 us on v1 and 7.0 us on v2 (two launch
/// costs), one of 2,560 is 12.1 us on v1 (latency-bound, growing with the group) and 7.1 us on
/// v2; v1's time interpolated linearly crosses v2's near 1,100 elements.
pub fn version(shape: GroupNormShape) -> u32 {
    if (shape.c / shape.groups.max(1)) * shape.s > GN_V1_MAX_GROUP {
        2
    } else {
        1
    }
}

/// Elements of one 16-byte vector of `dtype`.
fn vec_elems(dtype: DType) -> u64 {
    16 / dtype.size_in_bytes() as u64
}

/// v2 chunks per group: a group's chunks start at its first element rounded down to a 16-byte
/// vector (`VEC` elements), so with `len = C / groups * S` not a multiple of `VEC` (groups start
/// misaligned) they may reach `VEC - 1` elements further: `ceil((len + that) / 8192)`, the most any
/// group needs (its kernel block writes an empty partial when its chunk is past its group).
pub fn chunks(shape: GroupNormShape, dtype: DType) -> u64 {
    let len = (shape.c / shape.groups.max(1)) * shape.s;
    let vec = vec_elems(dtype);
    let skew = if len % vec == 0 { 0 } else { vec - 1 };
    (len + skew).div_ceil(GN2_CHUNK).max(1)
}

/// f32 words of the v2 workspace: one `{count, mean, M2, 0}` partial per (sample, group, chunk).
pub fn workspace_f32s(shape: GroupNormShape, dtype: DType) -> u64 {
    4 * shape.n * shape.groups * chunks(shape, dtype)
}

/// Mirrors `struct GroupNorm2Params` in `group_norm.cu` (64 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GroupNorm2Params {
    pub x: u64,
    pub gamma: u64,
    pub beta: u64,
    /// May equal `x`.
    pub y: u64,
    /// `workspace_f32s` f32s, 16-byte aligned.
    pub ws: u64,
    pub n: u32,
    pub c: u32,
    pub s: u32,
    pub groups: u32,
    pub eps: f32,
    pub chunks: u32,
}

impl GroupNorm2Params {
    /// The v2 params of `v1` (validated by [`GroupNormParams::new`]) with workspace `ws`.
    pub fn new(v1: GroupNormParams, ws: u64, dtype: DType) -> Result<Self> {
        let shape = v1.shape();
        check_shape_v2(shape)?;
        ensure!(ws % 16 == 0, "group_norm v2: workspace not 16-byte aligned");
        Ok(GroupNorm2Params {
            x: v1.x,
            gamma: v1.gamma,
            beta: v1.beta,
            y: v1.y,
            ws,
            n: v1.n,
            c: v1.c,
            s: v1.s,
            groups: v1.groups,
            eps: v1.eps,
            chunks: to_u32(chunks(shape, dtype), "group_norm chunks")?,
        })
    }
}

/// v2 (both launches): `grid = (chunks, groups, N)`, `block = 256`, static smem only.
pub fn launch_config_v2(shape: GroupNormShape, dtype: DType) -> LaunchConfig {
    LaunchConfig::blocks(
        [
            chunks(shape, dtype) as u32,
            shape.groups.max(1) as u32,
            shape.n.max(1) as u32,
        ],
        GN2_THREADS,
    )
}

// ------------------------------------------------------------------------------------------------
// token layout: `group_norm_tokens` (planes -> normalised tokens), `tokens_planes_add` (the inverse
// permutation with a residual add)
// ------------------------------------------------------------------------------------------------

/// Positions per token-layout tile (`GNT2_TS`).
pub const GNT2_TS: u32 = 32;
/// Threads per token-layout block (`GNT2_THREADS`, 8 warps).
pub const GNT2_THREADS: u32 = 256;

/// Channels per token-layout tile (`GnTokens2<T>::TC`): each of the 8 warps covers as many
/// channel rows as a 16-byte vector holds elements (8 bf16, 4 f32).
pub fn tokens_tile_channels(dtype: DType) -> u32 {
    8 * vec_elems(dtype) as u32
}

/// Mirrors `struct GnTokensParams` in `group_norm.cu` (80 bytes). `gn` is the stats launch's
/// [`GroupNorm2Params`] over the planes `(N * F, C, S)` (`gn.n = N * F`); for
/// `group_norm_tokens` `gn.y` is the `(N, S, F, C)` tokens output, for `tokens_planes_add`
/// `gn.x` the tokens input and `gn.y` the planes output.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GnTokensParams {
    pub gn: GroupNorm2Params,
    /// `tokens_planes_add`: `(N * F, C, S)`; 0 for `group_norm_tokens`.
    pub residual: u64,
    /// Frames per batch item, >= 1, divides `gn.n`.
    pub frames: u32,
    /// `tokens_planes_add`: channels of one output plane, >= `gn.c` (0 reads as `gn.c`); larger,
    /// `gn.y` is the first `gn.c` channels of `(N * F, y_c, S)` planes (the h part of a channel
    /// concat). Unused by `group_norm_tokens`.
    pub y_c: u32,
}

impl GnTokensParams {
    pub fn new(gn: GroupNorm2Params, residual: u64, frames: u32) -> Result<Self> {
        ensure!(
            frames >= 1 && gn.n % frames == 0,
            "group_norm tokens: {} planes are not a multiple of {frames} frames",
            gn.n
        );
        ensure!(
            gn.n <= 65_535,
            "group_norm tokens: {} planes exceed gridDim.z 65535",
            gn.n
        );
        Ok(GnTokensParams {
            gn,
            residual,
            frames,
            y_c: gn.c,
        })
    }

    /// `tokens_planes_add`'s params: tokens `(N, S, F, C)` at `tokens`, residual and output
    /// `(N * F, C, S)` planes (`shape.n` = N * F; groups unused) at `residual` and `y`.
    pub fn tokens_planes_add(
        tokens: u64,
        residual: u64,
        y: u64,
        shape: GroupNormShape,
        frames: u32,
    ) -> Result<Self> {
        let gn = GroupNorm2Params {
            x: tokens,
            gamma: 0,
            beta: 0,
            y,
            ws: 0,
            n: to_u32(shape.n, "tokens_planes_add planes")?,
            c: to_u32(shape.c, "tokens_planes_add channels")?,
            s: to_u32(shape.s, "tokens_planes_add H·W")?,
            groups: 1,
            eps: 0.0,
            chunks: 0,
        };
        Self::new(gn, residual, frames)
    }

    /// `tokens_planes_add` writing the first `gn.c` channels of `(N * F, y_c, S)` planes.
    pub fn with_out_channels(self, y_c: u32) -> Result<Self> {
        ensure!(
            y_c >= self.gn.c,
            "tokens_planes_add: output planes of {y_c} channels cannot hold {} channels",
            self.gn.c
        );
        Ok(GnTokensParams { y_c, ..self })
    }
}

/// The token-layout entries: `grid = (ceil(S / 32), ceil(C / TC), N * F)` with
/// `TC = `[`tokens_tile_channels`], `block = 256`, static smem only (`shape.n` = N * F planes).
pub fn launch_config_tokens(shape: GroupNormShape, dtype: DType) -> LaunchConfig {
    LaunchConfig::blocks(
        [
            shape.s.div_ceil(GNT2_TS as u64).max(1) as u32,
            shape.c.div_ceil(tokens_tile_channels(dtype) as u64).max(1) as u32,
            shape.n.max(1) as u32,
        ],
        GNT2_THREADS,
    )
}

// ------------------------------------------------------------------------------------------------
// channels-last: `group_norm_stats_nhwc` + `group_norm[_silu]_nhwc` over `(N, S, C)` rows
// ------------------------------------------------------------------------------------------------

/// Rows of one channels-last chunk (`GNR_ROWS`: 8 warps x 4 rows x 16 rows per thread).
pub const GNR_ROWS: u64 = 512;
/// Threads per channels-last block (`GNR_THREADS`).
pub const GNR_THREADS: u32 = 256;

/// Channels of one channels-last tile (`GnRows<T>::TC`): 8 16-byte vectors, 64 bf16 / 32 f32.
pub fn nhwc_tile_channels(dtype: DType) -> u64 {
    8 * vec_elems(dtype)
}

/// Row chunks of a channels-last launch: `ceil(S / 512)`.
pub fn nhwc_chunks(shape: GroupNormShape) -> u64 {
    shape.s.div_ceil(GNR_ROWS).max(1)
}

/// Channel tiles of a channels-last launch: `ceil(C / TC)`.
pub fn nhwc_tiles(shape: GroupNormShape, dtype: DType) -> u64 {
    shape.c.div_ceil(nhwc_tile_channels(dtype)).max(1)
}

/// f32 words of the channels-last workspace: one `{count, mean, M2, 0}` partial per (image,
/// group, chunk, tile); only the tiles holding channels of a group are written and read.
pub fn workspace_f32s_nhwc(shape: GroupNormShape, dtype: DType) -> u64 {
    4 * shape.n * shape.groups * nhwc_chunks(shape) * nhwc_tiles(shape, dtype)
}

impl GroupNorm2Params {
    /// The channels-last params of `v1` (validated by [`GroupNormParams::new`]; x and y are
    /// `(N, S, C)` rows) with workspace `ws` of [`workspace_f32s_nhwc`] f32s.
    pub fn nhwc(v1: GroupNormParams, ws: u64, dtype: DType) -> Result<Self> {
        let shape = v1.shape();
        ensure!(
            nhwc_tiles(shape, dtype) <= 65_535,
            "group_norm (channels-last): {} channels exceed 65535 tiles",
            shape.c
        );
        ensure!(
            shape.n * shape.s * shape.c <= (1u64 << 62),
            "group_norm (channels-last): tensor too large"
        );
        ensure!(
            ws % 16 == 0,
            "group_norm (channels-last): workspace not 16-byte aligned"
        );
        Ok(GroupNorm2Params {
            ws,
            chunks: to_u32(nhwc_chunks(shape), "group_norm channels-last chunks")?,
            ..GroupNorm2Params::new(v1, ws, dtype)?
        })
    }
}

/// Both channels-last launches: `grid = (ceil(S / 512), ceil(C / TC), N)`, `block = 256`,
/// static smem only.
pub fn launch_config_nhwc(shape: GroupNormShape, dtype: DType) -> LaunchConfig {
    LaunchConfig::blocks(
        [
            nhwc_chunks(shape) as u32,
            nhwc_tiles(shape, dtype) as u32,
            shape.n.max(1) as u32,
        ],
        GNR_THREADS,
    )
}

/// `tokens_planes_add_nhwc`'s launch over its `vectors` 16-byte vectors (N·F·S·ceil(C / VEC)):
/// one per thread, `block = 256`, grid-stride beyond 65535 blocks.
pub fn launch_config_rows(vectors: u64) -> LaunchConfig {
    crate::grid_stride(vectors, GNR_THREADS, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(GroupNormParams, 56);

    #[test]
    fn v2_params_are_64_bytes() {
        assert_eq!(std::mem::size_of::<GroupNorm2Params>(), 64);
        assert_eq!(std::mem::size_of::<GnTokensParams>(), 80);
    }

    #[test]
    fn version_rule() {
        let big = GroupNormShape {
            n: 2,
            c: 320,
            s: 65_536,
            groups: 32,
        };
        assert_eq!(version(big), 2);
        assert_eq!(chunks(big, DType::Bf16), 80);
        assert_eq!(chunks(GroupNormShape { s: 65_537, ..big }, DType::Bf16), 81);
        assert_eq!(version(GroupNormShape { s: 102, ..big }), 1);
        assert_eq!(version(GroupNormShape { s: 103, ..big }), 2);
    }

    #[test]
    fn nhwc_grid() {
        let shape = GroupNormShape {
            n: 2,
            c: 320,
            s: 4097,
            groups: 32,
        };
        assert_eq!(nhwc_chunks(shape), 9);
        assert_eq!(nhwc_tiles(shape, DType::Bf16), 5);
        assert_eq!(nhwc_tiles(shape, DType::F32), 10);
        assert_eq!(workspace_f32s_nhwc(shape, DType::Bf16), 4 * 2 * 32 * 9 * 5);
    }

    #[test]
    fn rejects_indivisible_groups() {
        let shape = GroupNormShape {
            n: 1,
            c: 30,
            s: 4,
            groups: 32,
        };
        let err = GroupNormParams::new(1, 1, 1, 1, shape, 1e-5).unwrap_err();
        assert!(err.to_string().contains("not divisible"), "{err}");
    }
}
