//! `kernels/cuda/group_norm_sm90.cu` (sm_90a only): single-pass GroupNorm (+ SiLU) over `(N, C, S)`
//! bf16 planes, one thread-block cluster of [`GnSm90Plan::cluster`] blocks per (sample, group),
//! the group held in the cluster's shared memory and its statistics merged through DSMEM. x is
//! read from DRAM once (`group_norm.cu`'s v2 reads it twice over two launches). Shapes [`plan`]
//! declines run on `group_norm.cu`.

use crate::group_norm::{GroupNormParams, GroupNormShape};
use crate::{DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Threads per block (`GN90_THREADS`).
pub const GN90_THREADS: u32 = 256;
/// Elements of one 16-byte bf16 vector (`GN90_VEC`).
pub const GN90_VEC: u64 = 8;
/// Cluster sizes with an entry (`__cluster_dims__` is compile-time), smallest first.
pub const CLUSTERS: [u32; 4] = [1, 2, 4, 8];
/// Shared bytes per block the launcher aims at: the smallest cluster whose slices fit this many
/// bytes runs (4 blocks of 256 threads per SM stay resident for latency hiding).
pub const GN90_TARGET_SMEM: u64 = 48 * 1024;
/// The most dynamic shared memory a block may take (an H100 block's opt-in 227 KiB less the
/// kernel's 80 static bytes, rounded down to 16): larger groups than 8 blocks of this run v2.
pub const GN90_MAX_SMEM: u64 = 227 * 1024 - 128;

const LAUNCH: &str =
    "grid = (CL, groups, N), cluster = (CL, 1, 1), block = 256, dynamic smem = vpc * 16";

const fn entry(name: &'static str, op: &'static str) -> Entry {
    Entry::v1(name, op, DType::Bf16, ("GnSm90Params", 56), LAUNCH)
}

pub const ENTRIES: &[Entry] = &[
    entry("group_norm_sm90_c1_v1_bf16", "group_norm_sm90_c1"),
    entry("group_norm_silu_sm90_c1_v1_bf16", "group_norm_silu_sm90_c1"),
    entry("group_norm_sm90_c2_v1_bf16", "group_norm_sm90_c2"),
    entry("group_norm_silu_sm90_c2_v1_bf16", "group_norm_silu_sm90_c2"),
    entry("group_norm_sm90_c4_v1_bf16", "group_norm_sm90_c4"),
    entry("group_norm_silu_sm90_c4_v1_bf16", "group_norm_silu_sm90_c4"),
    entry("group_norm_sm90_c8_v1_bf16", "group_norm_sm90_c8"),
    entry("group_norm_silu_sm90_c8_v1_bf16", "group_norm_silu_sm90_c8"),
    tokens_entry(
        "group_norm_tokens_sm90_c1_v1_bf16",
        "group_norm_tokens_sm90_c1",
    ),
    tokens_entry(
        "group_norm_tokens_sm90_c2_v1_bf16",
        "group_norm_tokens_sm90_c2",
    ),
    tokens_entry(
        "group_norm_tokens_sm90_c4_v1_bf16",
        "group_norm_tokens_sm90_c4",
    ),
    tokens_entry(
        "group_norm_tokens_sm90_c8_v1_bf16",
        "group_norm_tokens_sm90_c8",
    ),
];

const LAUNCH_TOKENS: &str = "grid = (CL, groups / bundle, N), cluster = (CL, 1, 1), block = 256, \
     dynamic smem = upb * BCP * 16";

const fn tokens_entry(name: &'static str, op: &'static str) -> Entry {
    Entry::v1(name, op, DType::Bf16, ("GnTok90Params", 64), LAUNCH_TOKENS)
}

/// Index in [`ENTRIES`] of the first token-layout entry (`group_norm_tokens_sm90_c1`).
const TOKENS_FIRST: usize = 2 * CLUSTERS.len();

/// How one shape runs: `cluster` blocks per (sample, group), each holding `vpc` 16-byte vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GnSm90Plan {
    pub cluster: u32,
    pub vpc: u32,
}

impl GnSm90Plan {
    /// Dynamic shared bytes per block: its slice.
    pub fn smem_bytes(self) -> u32 {
        self.vpc * 16
    }

    /// The entry of this cluster size, with SiLU or without.
    pub fn entry(self, silu: bool) -> &'static str {
        let i = CLUSTERS
            .iter()
            .position(|&c| c == self.cluster)
            .unwrap_or(0);
        ENTRIES[2 * i + silu as usize].name
    }
}

/// The plan for a bf16 `shape` on the sm_90a kernels: the smallest cluster whose per-block slice
/// (`ceil(vectors / cluster)` of a group's 16-byte vectors: `len / VEC`, or `ceil((len + VEC - 1) /
/// VEC)` when len is not whole vectors, the most any group's span then touches) fits [`GN90_TARGET_SMEM`], else 8 blocks if their slices fit
/// [`GN90_MAX_SMEM`]; `None` (run `group_norm.cu`) for larger groups, f32, or a shape
/// [`crate::group_norm::check_shape_v2`] refuses (groups not dividing C, a grid past 65535 groups or
/// samples).
pub fn plan(shape: GroupNormShape, dtype: DType) -> Option<GnSm90Plan> {
    if dtype != DType::Bf16 || crate::group_norm::check_shape_v2(shape).is_err() {
        return None;
    }
    let bytes = |cl| u64::from(with_cluster(shape, cl).smem_bytes());
    let cluster = CLUSTERS
        .into_iter()
        .find(|&cl| bytes(cl) <= GN90_TARGET_SMEM)
        .or_else(|| (bytes(8) <= GN90_MAX_SMEM).then_some(8))?;
    Some(with_cluster(shape, cluster))
}

/// The plan of `shape` on clusters of `cluster` blocks (one of [`CLUSTERS`]; [`plan`] picks it,
/// tests force each): each block `ceil(vectors / cluster)` of the group's 16-byte vectors,
/// `len / VEC` when `len = C / groups * S` is whole vectors (groups start on 16 bytes), else
/// `ceil((len + VEC - 1) / VEC)` (the most a group starting off 16 bytes touches).
pub fn with_cluster(shape: GroupNormShape, cluster: u32) -> GnSm90Plan {
    let len = (shape.c / shape.groups.max(1)) * shape.s;
    let skew = if len % GN90_VEC == 0 { 0 } else { GN90_VEC - 1 };
    let vectors = (len + skew).div_ceil(GN90_VEC).max(1);
    let vpc = vectors.div_ceil(u64::from(cluster.max(1)));
    GnSm90Plan {
        cluster,
        vpc: u32::try_from(vpc).unwrap_or(u32::MAX),
    }
}

/// The `group_norm_tokens_sm90` entries' static shared bytes (reduction slots, per-group
/// partials and totals, per-channel scale and shift: 2352 in the ptxas report), rounded up.
pub const GNT90_STATIC_SMEM: u64 = 2560;
/// Most groups one token-layout cluster takes (`GNT90_MAX_BUNDLE`).
pub const GNT90_MAX_BUNDLE: u64 = 8;
/// Most channels of one token-layout bundle (`GNT90_MAX_BC`).
pub const GNT90_MAX_BC: u64 = 256;

/// How one token-layout GroupNorm runs on `group_norm_tokens_sm90_c<cluster>`: `bundle`
/// consecutive groups per cluster (their channels whole 16-byte vectors of a token row), each of
/// the `cluster` blocks holding `upb` units (8 positions of one frame, all bundle channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GnTok90Plan {
    pub cluster: u32,
    pub bundle: u32,
    pub upb: u32,
    /// Shared row stride in 16-byte vectors: `BC + NCV % 8` (`bcp` in the `.cu`).
    pub row_vectors: u32,
}

impl GnTok90Plan {
    /// Dynamic shared bytes per block: `upb` rows of `row_vectors` 16-byte vectors.
    pub fn smem_bytes(self) -> u32 {
        self.upb.saturating_mul(self.row_vectors).saturating_mul(16)
    }

    /// The entry of this cluster size.
    pub fn entry(self) -> &'static str {
        let i = CLUSTERS
            .iter()
            .position(|&c| c == self.cluster)
            .unwrap_or(0);
        ENTRIES[TOKENS_FIRST + i].name
    }
}

/// Groups per token-layout cluster for `cpg` channels per group: the fewest consecutive groups
/// whose channels fill whole runs of `run` channels, `run / gcd(cpg, run)` (`run` 8: whole 16-byte
/// vectors of a token row; 16: whole 32-byte sectors).
pub fn tokens_bundle(cpg: u64, run: u64) -> u64 {
    let mut a = cpg.max(1);
    let mut b = run.max(1);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    run.max(1) / a
}

/// The plan for `group_norm_tokens` of bf16 planes `shape` (`shape.n` = N * F planes, F =
/// `frames`) on the sm_90a single pass, for C and S multiples of 8. The bundle: sector-aligned
/// token rows (`tokens_bundle(cpg, 16)` groups, C a multiple of 16) when some cluster's block
/// slice fits [`GN90_TARGET_SMEM`]; else 16-byte rows (`tokens_bundle(cpg, 8)` groups: token
/// rows whose first and last sectors the neighbouring bundles share) on the smallest cluster
/// whose slice fits [`GN90_TARGET_SMEM`], else 8 blocks within [`GN90_MAX_SMEM`] less the
/// static bytes. A bundle takes at most [`GNT90_MAX_BUNDLE`] groups and [`GNT90_MAX_BC`]
/// channels. `None` (run `group_norm.cu`'s stats + tokens pair) otherwise, for f32, or for a
/// shape [`crate::group_norm::check_shape_v2`] refuses.
pub fn plan_tokens(shape: GroupNormShape, frames: u64, dtype: DType) -> Option<GnTok90Plan> {
    if dtype != DType::Bf16
        || crate::group_norm::check_shape_v2(shape).is_err()
        || frames == 0
        || shape.n % frames != 0
        || shape.c % GN90_VEC != 0
        || shape.s % GN90_VEC != 0
        || shape.s == 0
    {
        return None;
    }
    let cpg = shape.c / shape.groups;
    let fits = |bundle: u64| {
        shape.groups % bundle == 0 && bundle <= GNT90_MAX_BUNDLE && bundle * cpg <= GNT90_MAX_BC
    };
    let bytes = |bundle, cl| u64::from(with_cluster_tokens(shape, frames, bundle, cl).smem_bytes());
    let target = |bundle| {
        CLUSTERS
            .into_iter()
            .find(|&cl| bytes(bundle, cl) <= GN90_TARGET_SMEM)
    };
    let b16 = tokens_bundle(cpg, 2 * GN90_VEC);
    if fits(b16) {
        if let Some(cl) = target(b16) {
            return Some(with_cluster_tokens(shape, frames, b16, cl));
        }
    }
    let b8 = tokens_bundle(cpg, GN90_VEC);
    if !fits(b8) {
        return None;
    }
    let cluster =
        target(b8).or_else(|| (bytes(b8, 8) <= GN90_MAX_SMEM - GNT90_STATIC_SMEM).then_some(8))?;
    Some(with_cluster_tokens(shape, frames, b8, cluster))
}

/// The token-layout plan of `shape` with `bundle` groups per cluster (channels a multiple of 8)
/// on clusters of `cluster` blocks ([`plan_tokens`] picks both, tests force them):
/// `upb = ceil(F * S / 8 / cluster)` units per block.
pub fn with_cluster_tokens(
    shape: GroupNormShape,
    frames: u64,
    bundle: u64,
    cluster: u32,
) -> GnTok90Plan {
    let cpg = shape.c / shape.groups.max(1);
    let bc = bundle * cpg;
    let ncv = bc / GN90_VEC;
    let units = frames.max(1) * (shape.s / GN90_VEC);
    let upb = units.div_ceil(u64::from(cluster.max(1))).max(1);
    GnTok90Plan {
        cluster,
        bundle: bundle as u32,
        upb: u32::try_from(upb).unwrap_or(u32::MAX),
        row_vectors: u32::try_from(bc + ncv % GN90_VEC).unwrap_or(u32::MAX),
    }
}

/// Mirrors `struct GnTok90Params` in `group_norm_sm90.cu` (64 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GnTok90Params {
    /// `(N * F, C, S)` planes.
    pub x: u64,
    pub gamma: u64,
    pub beta: u64,
    /// `(N, S, F, C)` tokens; must not alias x.
    pub y: u64,
    /// Batch items N (planes / F).
    pub n: u32,
    pub c: u32,
    pub s: u32,
    pub groups: u32,
    pub eps: f32,
    pub frames: u32,
    /// Units per block ([`GnTok90Plan::upb`]).
    pub upb: u32,
    /// Groups per cluster ([`GnTok90Plan::bundle`]).
    pub bundle: u32,
}

impl GnTok90Params {
    /// The params of `plan` for planes `shape` (`shape.n` = N * F) and `frames`: x, gamma, beta,
    /// y bf16 device pointers (x and y 16-byte aligned, y not x).
    pub fn new(
        [x, gamma, beta, y]: [u64; 4],
        shape: GroupNormShape,
        frames: u32,
        eps: f32,
        plan: GnTok90Plan,
    ) -> Result<Self> {
        let p = GroupNormParams::new(x, gamma, beta, y, shape, eps)?;
        ensure!(
            frames >= 1 && p.n % frames == 0,
            "group_norm_tokens_sm90: {} planes are not a multiple of {frames} frames",
            p.n
        );
        ensure!(
            x % 16 == 0 && y % 16 == 0 && x != y,
            "group_norm_tokens_sm90: x and y must be distinct and 16-byte aligned (run \
             group_norm.cu's stats + tokens pair)"
        );
        Ok(GnTok90Params {
            x,
            gamma,
            beta,
            y,
            n: p.n / frames,
            c: p.c,
            s: p.s,
            groups: p.groups,
            eps,
            frames,
            upb: plan.upb,
            bundle: plan.bundle,
        })
    }
}

/// `grid = (cluster, groups / bundle, N)` (`shape.n` = N * F planes), `block = 256`,
/// [`GnTok90Plan::smem_bytes`] of dynamic shared memory.
pub fn launch_config_tokens(shape: GroupNormShape, frames: u64, plan: GnTok90Plan) -> LaunchConfig {
    LaunchConfig {
        dynamic_smem_bytes: plan.smem_bytes(),
        ..LaunchConfig::blocks(
            [
                plan.cluster,
                (shape.groups / u64::from(plan.bundle.max(1))).max(1) as u32,
                (shape.n / frames.max(1)).max(1) as u32,
            ],
            GN90_THREADS,
        )
    }
}

/// Mirrors `struct GnSm90Params` in `group_norm_sm90.cu` (56 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GnSm90Params {
    pub x: u64,
    pub gamma: u64,
    pub beta: u64,
    /// May equal `x`.
    pub y: u64,
    pub n: u32,
    pub c: u32,
    pub s: u32,
    pub groups: u32,
    pub eps: f32,
    /// 16-byte vectors per block ([`GnSm90Plan::vpc`]).
    pub vpc: u32,
}

impl GnSm90Params {
    /// The params of `plan` for `shape`: x, gamma, beta, y bf16 device pointers (x and y 16-byte
    /// aligned).
    pub fn new(
        [x, gamma, beta, y]: [u64; 4],
        shape: GroupNormShape,
        eps: f32,
        plan: GnSm90Plan,
    ) -> Result<Self> {
        // the shape and eps checks of group_norm.cu's params
        let p = GroupNormParams::new(x, gamma, beta, y, shape, eps)?;
        ensure!(
            x % 16 == 0 && y % 16 == 0,
            "group_norm_sm90: x and y must be 16-byte aligned (run group_norm.cu's v2)"
        );
        Ok(GnSm90Params {
            x,
            gamma,
            beta,
            y,
            n: p.n,
            c: p.c,
            s: p.s,
            groups: p.groups,
            eps,
            vpc: plan.vpc,
        })
    }
}

/// `grid = (cluster, groups, N)` (clusters along x, from the entry's `__cluster_dims__`),
/// `block = 256`, [`GnSm90Plan::smem_bytes`] of dynamic shared memory.
pub fn launch_config(shape: GroupNormShape, plan: GnSm90Plan) -> LaunchConfig {
    LaunchConfig {
        dynamic_smem_bytes: plan.smem_bytes(),
        ..LaunchConfig::blocks(
            [
                plan.cluster,
                shape.groups.max(1) as u32,
                shape.n.max(1) as u32,
            ],
            GN90_THREADS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(GnSm90Params, 56);

    #[test]
    fn tokens_params_are_64_bytes() {
        assert_eq!(std::mem::size_of::<GnTok90Params>(), 64);
    }

    #[test]
    fn plan_tokens_rule() {
        let s = |n, c, s, groups| GroupNormShape { n, c, s, groups };
        let b = |run| [1, 2, 3, 4, 5, 8, 10, 20, 40].map(|cpg| tokens_bundle(cpg, run));
        assert_eq!(b(8), [8, 4, 8, 2, 8, 1, 4, 2, 1]);
        assert_eq!(b(16), [16, 8, 16, 4, 16, 2, 8, 4, 2]);
        // paper Transformer2D entries (32 images, F = 1): 320 channels at 64x64, 80-channel
        // bundles need 82 KiB per block at CL 8: bundles of 4 groups (40 channels, 45-vector
        // rows), 8 blocks of 64 units
        let p = plan_tokens(s(32, 320, 4096, 32), 1, DType::Bf16).unwrap();
        assert_eq!((p.cluster, p.bundle, p.upb, p.row_vectors), (8, 4, 64, 45));
        assert_eq!(p.entry(), "group_norm_tokens_sm90_c8_v1_bf16");
        assert_eq!(
            launch_config_tokens(s(32, 320, 4096, 32), 1, p).grid,
            [8, 8, 32]
        );
        // 640 at 32x32: sector-aligned bundles of 4 groups (80 channels, 82-vector rows), CL 4
        let p = plan_tokens(s(32, 640, 1024, 32), 1, DType::Bf16).unwrap();
        assert_eq!((p.cluster, p.bundle, p.upb, p.row_vectors), (4, 4, 32, 82));
        // motion module (2 items x 16 frames), 1280 channels at 16x16: one group per bundle
        let p = plan_tokens(s(32, 1280, 256, 32), 16, DType::Bf16).unwrap();
        assert_eq!((p.cluster, p.bundle, p.upb), (8, 1, 64));
        // 640 at 32x32 over 16 frames: 8 blocks of 180 KiB
        let p = plan_tokens(s(32, 640, 1024, 32), 16, DType::Bf16).unwrap();
        assert_eq!((p.cluster, p.smem_bytes()), (8, 256 * 45 * 16));
        // 320 at 64x64 over 16 frames (5.6 MiB per bundle), S % 8 != 0, C % 8 != 0, C / G = 33
        // (a bundle of 8 groups is 264 channels), f32: declined
        assert!(plan_tokens(s(32, 320, 4096, 32), 16, DType::Bf16).is_none());
        assert!(plan_tokens(s(2, 64, 12, 8), 1, DType::Bf16).is_none());
        assert!(plan_tokens(s(2, 60, 8, 6), 1, DType::Bf16).is_none());
        assert!(plan_tokens(s(2, 264, 8, 8), 1, DType::Bf16).is_none());
        assert!(plan_tokens(s(32, 320, 4096, 32), 1, DType::F32).is_none());
    }

    #[test]
    fn plan_rule() {
        let s = |n, c, s, groups| GroupNormShape { n, c, s, groups };
        // paper ResNet shapes: 10 channels x 256 pixels per group: one block of 5 KiB
        let p = plan(s(32, 320, 256, 32), DType::Bf16).unwrap();
        assert_eq!((p.cluster, p.vpc), (1, 320));
        assert_eq!(p.entry(true), "group_norm_silu_sm90_c1_v1_bf16");
        // 40 channels x 3072 pixels = 240 KiB per group: 8 blocks of 30 KiB
        let p = plan(s(32, 1280, 3072, 32), DType::Bf16).unwrap();
        assert_eq!((p.cluster, p.vpc), (8, 1920));
        assert_eq!(p.entry(false), "group_norm_sm90_c8_v1_bf16");
        // an odd group (len % 8 != 0): one more vector for the skew
        let p = plan(s(1, 3, 5, 1), DType::Bf16).unwrap();
        assert_eq!((p.cluster, p.vpc), (1, 3));
        // past 8 x GN90_MAX_SMEM, or f32: declined
        assert!(plan(s(1, 32, 1 << 20, 1), DType::Bf16).is_none());
        assert!(plan(s(32, 320, 256, 32), DType::F32).is_none());
    }
}
