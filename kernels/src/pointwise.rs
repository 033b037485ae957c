//! `kernels/cuda/pointwise.cu`: unary activations, broadcast binary ops, affine, f32 <-> bf16 casts.

use crate::{grid_stride, DType, Entry, LaunchConfig};

/// Threads per block (`POINTWISE_THREADS` in the `.cu`).
pub const POINTWISE_THREADS: u32 = 256;
/// Elements per thread the launch rule aims for before the grid is capped.
pub const POINTWISE_ITEMS_PER_THREAD: u64 = 4;
/// Grid cap; the kernels' grid-stride loops cover the rest.
pub const POINTWISE_MAX_BLOCKS: u64 = crate::MAX_GRID_STRIDE_BLOCKS;
/// Dims of the binary broadcast index (`POINTWISE_MAX_RANK`); leading dims are padded with 1.
pub const POINTWISE_MAX_RANK: usize = 6;

const LAUNCH: &str = "grid = clamp(ceil(n / 1024), 1, 65535), block = 256, grid-stride loop";

const LAUNCH_BINARY: &str =
    "16-byte vectors: grid = clamp(ceil(n / vec / 512), 1, 65535), else as \
                             the v1 entries; block = 256, grid-stride loop";

const PARAMS: (&str, usize) = ("PointwiseParams", 168);

pub const ENTRIES: &[Entry] = crate::f32_bf16_entries!(
    PARAMS, LAUNCH; "unary", "affine";
    Entry::versioned(2, "binary_v2_f32", "binary", DType::F32, PARAMS, LAUNCH_BINARY),
    Entry::versioned(2, "binary_v2_bf16", "binary", DType::Bf16, PARAMS, LAUNCH_BINARY),
    // suffix = input dtype, op = output dtype
    Entry::v1("cast_bf16_v1_f32", "cast_bf16", DType::F32, PARAMS, LAUNCH),
    Entry::v1("cast_f32_v1_bf16", "cast_f32", DType::Bf16, PARAMS, LAUNCH)
);

/// `op` codes of the unary entries (`enum UnaryOp` in the `.cu`).
pub mod unary_op {
    pub const SILU: u32 = 0;
    pub const GELU: u32 = 1;
    pub const GELU_TANH: u32 = 2;
    pub const RELU: u32 = 3;
    pub const SIGMOID: u32 = 4;
    pub const TANH: u32 = 5;
    pub const EXP: u32 = 6;
    pub const NEG: u32 = 7;
    pub const SQRT: u32 = 8;
}

/// `op` codes of the binary entries (`enum BinaryOp` in the `.cu`).
pub mod binary_op {
    pub const ADD: u32 = 0;
    pub const SUB: u32 = 1;
    pub const MUL: u32 = 2;
    pub const DIV: u32 = 3;
}

/// Mirrors `struct PointwiseParams` in `pointwise.cu` field for field (168 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PointwiseParams {
    /// `(n)` input (binary: lhs read through `a_strides`).
    pub a: u64,
    /// Binary rhs read through `b_strides`; 0 for the other entries.
    pub b: u64,
    /// `(n)` contiguous output.
    pub y: u64,
    /// Output elements.
    pub n: u64,
    /// Binary: element strides of `a` per output dim, 0 on broadcast dims.
    pub a_strides: [u64; POINTWISE_MAX_RANK],
    pub b_strides: [u64; POINTWISE_MAX_RANK],
    /// Binary: output shape, leading dims padded with 1, e.g. `[1, 1, 2, 320, 64, 64]`.
    pub shape: [u32; POINTWISE_MAX_RANK],
    /// Unary: [`unary_op`], binary: [`binary_op`].
    pub op: u32,
    /// Affine: `y = a * mul + add`.
    pub mul: f32,
    pub add: f32,
    pub _pad: u32,
}

impl PointwiseParams {
    /// Params for a flat (non-broadcast) entry over `n` elements: unary, affine or cast.
    pub fn flat(a: u64, y: u64, n: u64) -> Self {
        PointwiseParams {
            a,
            b: 0,
            y,
            n,
            a_strides: [0; POINTWISE_MAX_RANK],
            b_strides: [0; POINTWISE_MAX_RANK],
            shape: [1; POINTWISE_MAX_RANK],
            op: 0,
            mul: 1.0,
            add: 0.0,
            _pad: 0,
        }
    }
}

/// `grid = clamp(ceil(n / (256 * 4)), 1, 65535)`, `block = 256`, no dynamic smem.
pub fn launch_config(n: u64) -> LaunchConfig {
    grid_stride(n, POINTWISE_THREADS, POINTWISE_ITEMS_PER_THREAD)
}

/// The binary entry's launch: over 16-byte vectors when the output's last dim is a whole number of
/// them and `a`, `b`, `y` take them (`binary_v2`'s own test, [`crate::vec16_operand`]), else
/// [`launch_config`].
pub fn launch_config_binary(p: &PointwiseParams, dtype: DType) -> LaunchConfig {
    let vec = 16 / dtype.size_in_bytes() as u64;
    let vectors = p.shape[POINTWISE_MAX_RANK - 1] as u64 % vec == 0
        && p.y % 16 == 0
        && crate::vec16_operand(p.a, 0, &p.a_strides, vec, true)
        && crate::vec16_operand(p.b, 0, &p.b_strides, vec, true);
    crate::grid_stride_vec16(
        p.n,
        vec,
        vectors,
        POINTWISE_THREADS,
        POINTWISE_ITEMS_PER_THREAD,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(PointwiseParams, 168, align 8);

    #[test]
    fn launch_caps_grid() {
        assert_eq!(launch_config(0).grid, [1, 1, 1]);
        assert_eq!(launch_config(1025).grid, [2, 1, 1]);
        assert_eq!(launch_config(1 << 40).grid, [65_535, 1, 1]);
    }
}
