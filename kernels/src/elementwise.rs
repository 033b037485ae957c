//! `kernels/cuda/elementwise.cu`: `y = alpha * act(x + bias[(i / inner) % channels]) + beta * residual`.

use crate::{ceil_div, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Threads per block (`BIAS_ACT_THREADS` in the `.cu`).
pub const BIAS_ACT_THREADS: u32 = 256;
/// Elements per thread the launch rule aims for before the grid is capped.
pub const BIAS_ACT_ITEMS_PER_THREAD: u64 = 4;
/// Grid cap; the kernel's grid-stride loop covers the rest.
pub const BIAS_ACT_MAX_BLOCKS: u64 = 65_535;

const LAUNCH: &str = "grid = min(ceil(n / 1024), 65535), block = 256, grid-stride loop";

pub const ENTRIES: &[Entry] = &[
    Entry {
        name: "bias_act_v1_f32",
        op: "bias_act",
        version: 1,
        dtype: DType::F32,
        params: "ElementwiseParams",
        params_size: 56,
        launch: LAUNCH,
    },
    Entry {
        name: "bias_act_v1_bf16",
        op: "bias_act",
        version: 1,
        dtype: DType::Bf16,
        params: "ElementwiseParams",
        params_size: 56,
        launch: LAUNCH,
    },
    Entry {
        name: "bias_silu_v1_f32",
        op: "bias_silu",
        version: 1,
        dtype: DType::F32,
        params: "ElementwiseParams",
        params_size: 56,
        launch: LAUNCH,
    },
    Entry {
        name: "bias_silu_v1_bf16",
        op: "bias_silu",
        version: 1,
        dtype: DType::Bf16,
        params: "ElementwiseParams",
        params_size: 56,
        launch: LAUNCH,
    },
];

/// Mirrors `struct ElementwiseParams` in `elementwise.cu` field for field (56 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ElementwiseParams {
    /// `(n)` input, device address.
    pub x: u64,
    /// `(channels)` or 0 for no bias.
    pub bias: u64,
    /// `(n)` or 0 for no residual.
    pub residual: u64,
    /// `(n)` output; may equal `x` or `residual`.
    pub y: u64,
    pub n: u64,
    /// Bias period, e.g. 320 for a per-channel bias.
    pub channels: u32,
    /// Elements per bias value: 1 for a last-dim bias on `(rows, C)`, `H*W` on NCHW.
    pub inner: u32,
    pub alpha: f32,
    pub beta: f32,
}

/// Shape of a bias-act launch: `n` elements, bias of `channels` values each covering `inner`
/// consecutive elements (`channels = 1, inner = 1` when there is no bias).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BiasActShape {
    pub n: u64,
    pub channels: u32,
    pub inner: u32,
}

impl ElementwiseParams {
    /// Host-side checks for the kernel's assumptions (`channels, inner >= 1`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        x: u64,
        bias: u64,
        residual: u64,
        y: u64,
        shape: BiasActShape,
        alpha: f32,
        beta: f32,
    ) -> Result<Self> {
        ensure!(
            shape.channels >= 1 && shape.inner >= 1,
            "bias_act: channels ({}) and inner ({}) must be >= 1",
            shape.channels,
            shape.inner
        );
        ensure!(
            x != 0 && y != 0 || shape.n == 0,
            "bias_act: x and y must be device addresses"
        );
        Ok(ElementwiseParams {
            x,
            bias,
            residual,
            y,
            n: shape.n,
            channels: shape.channels,
            inner: shape.inner,
            alpha,
            beta,
        })
    }
}

/// `grid = min(ceil(n / (256 * 4)), 65535)`, `block = 256`, no dynamic smem (at least one block).
pub fn launch_config(shape: BiasActShape) -> LaunchConfig {
    let per_block = BIAS_ACT_THREADS as u64 * BIAS_ACT_ITEMS_PER_THREAD;
    let blocks = ceil_div(shape.n, per_block).clamp(1, BIAS_ACT_MAX_BLOCKS) as u32;
    LaunchConfig {
        grid: [blocks, 1, 1],
        block: [BIAS_ACT_THREADS, 1, 1],
        dynamic_smem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_layout_matches_cu() {
        assert_eq!(std::mem::size_of::<ElementwiseParams>(), 56);
        assert_eq!(std::mem::align_of::<ElementwiseParams>(), 8);
    }

    #[test]
    fn launch_caps_grid() {
        let s = |n| BiasActShape {
            n,
            channels: 1,
            inner: 1,
        };
        assert_eq!(launch_config(s(0)).grid, [1, 1, 1]);
        assert_eq!(launch_config(s(1025)).grid, [2, 1, 1]);
        assert_eq!(launch_config(s(1 << 40)).grid, [65_535, 1, 1]);
    }
}
