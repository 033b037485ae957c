//! `kernels/cuda/gemm_bf16.cu`: `C[b] = A[b] * B[b]^T + bias`, bf16 in, f32 accumulate, f32 or bf16 out.

use crate::{to_u32, Entry, LaunchConfig};
use anyhow::{ensure, Result};

// One mainloop (`kernels/cuda/gemm_mainloop.cuh`), one geometry and launch rule with `gemm`.
pub use crate::gemm::{
    GemmOperandParams, GemmShape, GEMM_BK, GEMM_BM, GEMM_BN, GEMM_LDS, GEMM_STAGES, GEMM_THREADS,
    LINEAR_STATIC_SMEM_BYTES as GEMM_STATIC_SMEM_BYTES,
};

const LAUNCH: &str = "grid = (ceil(N / 64), ceil(M / 64), batch), block = 128, 20 KiB static smem";

pub const ENTRIES: &[Entry] = crate::f32_bf16_entries!(("GemmParams", 88), LAUNCH; "gemm_bf16");

/// Mirrors `struct GemmParams` in `gemm_bf16.cu` (88 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmParams {
    /// A `(batch, M, lda)` and B `(batch, N, ldb)` bf16 (nn.Linear weight layout `(out, in)`).
    pub ops: GemmOperandParams,
    /// `(N)` bf16, or 0.
    pub bias: u64,
    /// `(batch, M, ldc)` f32 or bf16 (the entry's dtype).
    pub c: u64,
    pub stride_c: u64,
    pub ldc: u32,
    pub _pad: u32,
}

/// Device addresses of the operands (bias 0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmPtrs {
    pub a: u64,
    pub b: u64,
    pub bias: u64,
    pub c: u64,
}

/// Row strides and batch strides, in elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmLayout {
    pub lda: u64,
    pub ldb: u64,
    pub ldc: u64,
    pub stride_a: u64,
    pub stride_b: u64,
    pub stride_c: u64,
}

impl GemmLayout {
    /// Dense operands; `broadcast_b` shares one B (a weight) across the batch.
    pub fn contiguous(shape: GemmShape, broadcast_b: bool) -> GemmLayout {
        GemmLayout {
            lda: shape.k,
            ldb: shape.k,
            ldc: shape.n,
            stride_a: shape.m * shape.k,
            stride_b: if broadcast_b { 0 } else { shape.n * shape.k },
            stride_c: shape.m * shape.n,
        }
    }
}

impl GemmParams {
    pub fn new(ptrs: GemmPtrs, shape: GemmShape, layout: GemmLayout) -> Result<Self> {
        ensure!(
            layout.lda >= shape.k && layout.ldb >= shape.k && layout.ldc >= shape.n,
            "gemm_bf16: row strides lda {} ldb {} ldc {} smaller than K {} / N {}",
            layout.lda,
            layout.ldb,
            layout.ldc,
            shape.k,
            shape.n
        );
        let GemmLayout {
            lda,
            ldb,
            ldc,
            stride_a,
            stride_b,
            stride_c,
        } = layout;
        let strides = [lda, ldb, stride_a, stride_b];
        Ok(GemmParams {
            ops: GemmOperandParams::new("gemm_bf16", ptrs.a, ptrs.b, shape, &strides)?,
            bias: ptrs.bias,
            c: ptrs.c,
            stride_c,
            ldc: to_u32(ldc, "gemm_bf16 ldc")?,
            _pad: 0,
        })
    }

    /// Forces the plain-load path (tests exercise both loaders on the same shapes).
    pub fn without_cp_async(mut self) -> Self {
        self.ops.aligned = 0;
        self
    }
}

/// `grid = (ceil(N / 64), ceil(M / 64), batch)`, `block = 128`, static smem only (`gemm`'s rule
/// without GEGLU).
pub fn launch_config(shape: GemmShape) -> LaunchConfig {
    crate::gemm::launch_config(shape, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(GemmParams, 88);

    #[test]
    fn smem_fits_static_limit() {
        assert_eq!(GEMM_STATIC_SMEM_BYTES, 20_480);
        // ldmatrix / cp.async rows must stay 16-byte aligned.
        assert_eq!((GEMM_LDS * 2) % 16, 0);
    }

    #[test]
    fn aligned_flag_follows_strides() {
        let shape = GemmShape::new(1, 5, 7, 24);
        let ptrs = GemmPtrs {
            a: 256,
            b: 512,
            bias: 0,
            c: 768,
        };
        assert_eq!(
            GemmParams::new(ptrs, shape, GemmLayout::contiguous(shape, true))
                .unwrap()
                .ops
                .aligned,
            1
        );
        let shape = GemmShape { k: 21, ..shape };
        assert_eq!(
            GemmParams::new(ptrs, shape, GemmLayout::contiguous(shape, true))
                .unwrap()
                .ops
                .aligned,
            0
        );
    }
}
