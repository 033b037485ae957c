//! `kernels/cuda/layer_norm.cu`: LayerNorm over the last dim of `(rows, cols)`, optional affine.

use crate::{warp_per_row, DType, Entry, LaunchConfig, RowsShape};
use anyhow::{ensure, Result};

/// Rows (one warp each) per block (`LN_WARPS` in the `.cu`).
pub const LN_WARPS: u32 = 4;
pub const LN_THREADS: u32 = LN_WARPS * 32;

/// The shipped entry version: `layer_norm_v2_{f32,bf16}` (16-byte vector accesses, row in
/// registers; v1's scalar path inside for unaligned rows).
pub const VERSION: u32 = 2;

const LAUNCH: &str = "grid = ceil(rows / 4), block = 128 (one warp per row)";

const fn v2(name: &'static str, dtype: DType) -> Entry {
    Entry {
        name,
        op: "layer_norm",
        version: VERSION,
        dtype,
        params: "LayerNormParams",
        params_size: 56,
        launch: LAUNCH,
    }
}

pub const ENTRIES: &[Entry] = &[
    v2("layer_norm_v2_f32", DType::F32),
    v2("layer_norm_v2_bf16", DType::Bf16),
];

/// Mirrors `struct LayerNormParams` in `layer_norm.cu` (56 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LayerNormParams {
    /// `(rows, cols)` input.
    pub x: u64,
    /// `(cols)` scale, or 0.
    pub gamma: u64,
    /// `(cols)` shift, or 0.
    pub beta: u64,
    /// `(rows, cols)` output; may equal `x`.
    pub y: u64,
    /// `(add_rows, cols)` row table added after the affine (row r gets table row
    /// `r % add_rows`), or 0.
    pub add: u64,
    pub rows: u32,
    pub cols: u32,
    pub eps: f32,
    /// Rows of `add` (1 when `add` is 0).
    pub add_rows: u32,
}

/// `(rows, cols)`, e.g. `(batch * tokens, 1024)`.
pub type LayerNormShape = RowsShape;

impl LayerNormParams {
    pub fn new(
        x: u64,
        gamma: u64,
        beta: u64,
        y: u64,
        shape: LayerNormShape,
        eps: f32,
    ) -> Result<Self> {
        ensure!(
            eps >= 0.0 && eps.is_finite(),
            "layer_norm: eps {eps} must be finite and >= 0"
        );
        let [rows, cols] = shape.dims("layer_norm")?;
        Ok(LayerNormParams {
            x,
            gamma,
            beta,
            y,
            add: 0,
            rows,
            cols,
            eps,
            add_rows: 1,
        })
    }

    /// Adds the row table `add` `(add_rows, cols)` to the output, row r taking table row
    /// `r % add_rows`.
    pub fn with_add(mut self, add: u64, add_rows: u32) -> Result<Self> {
        ensure!(
            add != 0 && add_rows >= 1,
            "layer_norm: the added row table needs a pointer and at least one row (got {add_rows})"
        );
        self.add = add;
        self.add_rows = add_rows;
        Ok(self)
    }
}

/// `grid = ceil(rows / 4)`, `block = 128`, no dynamic smem.
pub fn launch_config(shape: LayerNormShape) -> LaunchConfig {
    warp_per_row(shape.rows, LN_WARPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(LayerNormParams, 56);
}
