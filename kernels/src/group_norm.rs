//! `kernels/cuda/group_norm.cu`: GroupNorm over `(N, C, S)` with optional fused SiLU.

use crate::{to_u32, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Threads per block, one block per (group, sample) (`GN_THREADS` in the `.cu`).
pub const GN_THREADS: u32 = 256;
/// Static shared memory per block: `GN_THREADS / 32` partials + one total, f32.
pub const GN_STATIC_SMEM_BYTES: u32 = (GN_THREADS / 32 + 1) * 4;

const LAUNCH: &str = "grid = (groups, N), block = 256";

pub const ENTRIES: &[Entry] =
    crate::f32_bf16_entries!(("GroupNormParams", 56), LAUNCH; "group_norm", "group_norm_silu");

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

impl GroupNormParams {
    pub fn new(
        x: u64,
        gamma: u64,
        beta: u64,
        y: u64,
        shape: GroupNormShape,
        eps: f32,
    ) -> Result<Self> {
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

/// `grid = (groups, N)`, `block = 256`, static smem only.
pub fn launch_config(shape: GroupNormShape) -> LaunchConfig {
    LaunchConfig::blocks(
        [shape.groups.max(1) as u32, shape.n.max(1) as u32, 1],
        GN_THREADS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(GroupNormParams, 56);

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
