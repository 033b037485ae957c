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
];

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
/// [`GN90_MAX_SMEM`]; `None` (run `group_norm.cu`) for larger groups, f32, or a grid past
/// 65535 groups or samples.
pub fn plan(shape: GroupNormShape, dtype: DType) -> Option<GnSm90Plan> {
    if dtype != DType::Bf16
        || shape.groups == 0
        || shape.c % shape.groups != 0
        || shape.groups > 65_535
        || shape.n > 65_535
    {
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
