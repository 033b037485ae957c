//! `kernels/cuda/pool.cu`: mean over one dim, 2-D max pooling.

use crate::{ceil_div, DType, Entry, LaunchConfig};

/// Threads per block (`POOL_THREADS` in the `.cu`).
pub const POOL_THREADS: u32 = 256;
pub const POOL_ITEMS_PER_THREAD: u64 = 4;
pub const POOL_MAX_BLOCKS: u64 = 65_535;

const LAUNCH: &str = "grid = clamp(ceil(n_out / 1024), 1, 65535), block = 256, grid-stride loop";

const fn entry(name: &'static str, op: &'static str, dtype: DType) -> Entry {
    Entry {
        name,
        op,
        version: 1,
        dtype,
        params: "PoolParams",
        params_size: 64,
        launch: LAUNCH,
    }
}

pub const ENTRIES: &[Entry] = &[
    entry("mean_dim_v1_f32", "mean_dim", DType::F32),
    entry("mean_dim_v1_bf16", "mean_dim", DType::Bf16),
    entry("max_pool2d_v1_f32", "max_pool2d", DType::F32),
    entry("max_pool2d_v1_bf16", "max_pool2d", DType::Bf16),
];

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
    let per_block = POOL_THREADS as u64 * POOL_ITEMS_PER_THREAD;
    LaunchConfig {
        grid: [
            ceil_div(n_out, per_block).clamp(1, POOL_MAX_BLOCKS) as u32,
            1,
            1,
        ],
        block: [POOL_THREADS, 1, 1],
        dynamic_smem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_layout_matches_cu() {
        assert_eq!(std::mem::size_of::<PoolParams>(), 64);
    }
}
