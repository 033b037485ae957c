//! `kernels/cuda/pool.cu`: 2-D max pooling. The params struct and launch rule also serve
//! `mean_dim.cu` (`kernels/cuda/pool.cuh`).

use crate::{grid_stride, Entry, LaunchConfig};

/// Threads per block (`POOL_THREADS` in the `.cu`).
pub const POOL_THREADS: u32 = 256;
pub const POOL_ITEMS_PER_THREAD: u64 = 4;
pub const POOL_MAX_BLOCKS: u64 = crate::MAX_GRID_STRIDE_BLOCKS;

pub(crate) const LAUNCH: &str =
    "grid = clamp(ceil(n_out / 1024), 1, 65535), block = 256, grid-stride loop";

/// The params struct of max_pool2d's and mean_dim's entries.
pub(crate) const PARAMS: (&str, usize) = ("PoolParams", 64);

pub const ENTRIES: &[Entry] = crate::f32_bf16_entries!(PARAMS, LAUNCH; "max_pool2d");

/// Mirrors `struct PoolParams` in `pool.cu` field for field (64 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PoolParams {
    pub x: u64,
    /// Output; never equals `x`.
    pub y: u64,
    /// Output elements: `outer * inner` (mean_dim) or `planes * ho * wo` (max_pool2d).
    pub n_out: u64,
    /// mean_dim: size of the reduced dim.
    pub d: u32,
    /// mean_dim: product of the dims after it.
    pub inner: u32,
    /// max_pool2d: input plane.
    pub h: u32,
    pub w: u32,
    /// max_pool2d: output plane.
    pub ho: u32,
    pub wo: u32,
    pub kernel: u32,
    pub stride: u32,
    pub padding: u32,
    pub _pad: u32,
}

/// `grid = clamp(ceil(n_out / (256 * 4)), 1, 65535)`, `block = 256`, no dynamic smem.
pub fn launch_config(n_out: u64) -> LaunchConfig {
    grid_stride(n_out, POOL_THREADS, POOL_ITEMS_PER_THREAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(PoolParams, 64);
}
