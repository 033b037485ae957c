//! `kernels/cuda/softmax.cu`: row softmax over the last dim of `(rows, cols)`, with a pre-scale.

use crate::{warp_per_row, Entry, LaunchConfig, RowsShape};
use anyhow::{ensure, Result};

/// Rows (one warp each) per block (`SOFTMAX_WARPS` in the `.cu`).
pub const SOFTMAX_WARPS: u32 = 4;
pub const SOFTMAX_THREADS: u32 = SOFTMAX_WARPS * 32;

const LAUNCH: &str = "grid = ceil(rows / 4), block = 128 (one warp per row)";

pub const ENTRIES: &[Entry] = crate::f32_bf16_entries!(("SoftmaxParams", 32), LAUNCH; "softmax");

/// Mirrors `struct SoftmaxParams` in `softmax.cu` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SoftmaxParams {
    /// `(rows, cols)` input.
    pub x: u64,
    /// `(rows, cols)` output; may equal `x`.
    pub y: u64,
    pub rows: u32,
    pub cols: u32,
    /// Multiplies x before the softmax, e.g. `1 / sqrt(head_dim)`.
    pub scale: f32,
    pub _pad: u32,
}

/// `(rows, cols)`, e.g. `(batch * heads * q_len, k_len)`.
pub type SoftmaxShape = RowsShape;

impl SoftmaxParams {
    pub fn new(x: u64, y: u64, shape: SoftmaxShape, scale: f32) -> Result<Self> {
        ensure!(scale.is_finite(), "softmax: scale {scale} must be finite");
        let [rows, cols] = shape.dims("softmax")?;
        Ok(SoftmaxParams {
            x,
            y,
            rows,
            cols,
            scale,
            _pad: 0,
        })
    }
}

/// `grid = ceil(rows / 4)`, `block = 128`, no dynamic smem.
pub fn launch_config(shape: SoftmaxShape) -> LaunchConfig {
    warp_per_row(shape.rows, SOFTMAX_WARPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(SoftmaxParams, 32);
}
