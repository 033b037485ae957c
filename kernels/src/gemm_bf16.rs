//! `kernels/cuda/gemm_bf16.cu`: `C[b] = A[b] * B[b]^T + bias`, bf16 in, f32 accumulate, f32 or bf16 out.

use crate::{ceil_div, to_u32, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Block tile (`GEMM_BM`, `GEMM_BN`, `GEMM_BK` in the `.cu`).
pub const GEMM_BM: u32 = 64;
pub const GEMM_BN: u32 = 64;
pub const GEMM_BK: u32 = 32;
/// 2 x 2 warps, each a 32 x 32 warp tile.
pub const GEMM_THREADS: u32 = 128;
pub const GEMM_STAGES: u32 = 2;
/// Padded shared row (`GEMM_LDS`), bf16 elements.
pub const GEMM_LDS: u32 = GEMM_BK + 8;
/// Static shared memory per block: A and B tiles, double-buffered.
pub const GEMM_STATIC_SMEM_BYTES: u32 = GEMM_STAGES * (GEMM_BM + GEMM_BN) * GEMM_LDS * 2;

// Static shared memory is capped at 48 KiB; ldmatrix / cp.async rows must stay 16-byte aligned.
const _: () = assert!(GEMM_STATIC_SMEM_BYTES <= 48 * 1024);
const _: () = assert!((GEMM_LDS * 2) % 16 == 0);

const LAUNCH: &str = "grid = (ceil(N / 64), ceil(M / 64), batch), block = 128, 20 KiB static smem";

pub const ENTRIES: &[Entry] = &[
    Entry {
        name: "gemm_bf16_v1_f32",
        op: "gemm_bf16",
        version: 1,
        dtype: DType::F32,
        params: "GemmParams",
        params_size: 88,
        launch: LAUNCH,
    },
    Entry {
        name: "gemm_bf16_v1_bf16",
        op: "gemm_bf16",
        version: 1,
        dtype: DType::Bf16,
        params: "GemmParams",
        params_size: 88,
        launch: LAUNCH,
    },
];

/// Mirrors `struct GemmParams` in `gemm_bf16.cu` (88 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmParams {
    /// `(batch, M, lda)` bf16.
    pub a: u64,
    /// `(batch, N, ldb)` bf16 (nn.Linear weight layout `(out, in)`).
    pub b: u64,
    /// `(N)` bf16, or 0.
    pub bias: u64,
    /// `(batch, M, ldc)` f32 or bf16 (the entry's dtype).
    pub c: u64,
    pub stride_a: u64,
    pub stride_b: u64,
    pub stride_c: u64,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub lda: u32,
    pub ldb: u32,
    pub ldc: u32,
    /// 1: cp.async path (set by [`GemmParams::new`] from the addresses and strides).
    pub aligned: u32,
    pub _pad: u32,
}

/// `batch` independent `(M, K) x (N, K)^T` products, e.g. `batch = 1, M = tokens, N = 1280, K = 320`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmShape {
    pub batch: u64,
    pub m: u64,
    pub n: u64,
    pub k: u64,
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
        ensure!(
            (1..=65_535).contains(&shape.batch),
            "gemm_bf16: batch {} must be in 1..=65535 (gridDim.z)",
            shape.batch
        );
        ensure!(
            ceil_div(shape.m, GEMM_BM as u64) <= 65_535,
            "gemm_bf16: M {} needs more than 65535 row blocks",
            shape.m
        );
        let aligned = ptrs.a % 16 == 0
            && ptrs.b % 16 == 0
            && layout.lda % 8 == 0
            && layout.ldb % 8 == 0
            && layout.stride_a % 8 == 0
            && layout.stride_b % 8 == 0;
        Ok(GemmParams {
            a: ptrs.a,
            b: ptrs.b,
            bias: ptrs.bias,
            c: ptrs.c,
            stride_a: layout.stride_a,
            stride_b: layout.stride_b,
            stride_c: layout.stride_c,
            m: to_u32(shape.m, "gemm_bf16 M")?,
            n: to_u32(shape.n, "gemm_bf16 N")?,
            k: to_u32(shape.k, "gemm_bf16 K")?,
            lda: to_u32(layout.lda, "gemm_bf16 lda")?,
            ldb: to_u32(layout.ldb, "gemm_bf16 ldb")?,
            ldc: to_u32(layout.ldc, "gemm_bf16 ldc")?,
            aligned: aligned as u32,
            _pad: 0,
        })
    }

    /// Forces the plain-load path (tests exercise both loaders on the same shapes).
    pub fn without_cp_async(mut self) -> Self {
        self.aligned = 0;
        self
    }
}

/// `grid = (ceil(N / 64), ceil(M / 64), batch)`, `block = 128`, static smem only.
pub fn launch_config(shape: GemmShape) -> LaunchConfig {
    LaunchConfig {
        grid: [
            ceil_div(shape.n, GEMM_BN as u64).max(1) as u32,
            ceil_div(shape.m, GEMM_BM as u64).max(1) as u32,
            shape.batch.max(1) as u32,
        ],
        block: [GEMM_THREADS, 1, 1],
        dynamic_smem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_layout_matches_cu() {
        assert_eq!(std::mem::size_of::<GemmParams>(), 88);
    }

    #[test]
    fn smem_fits_static_limit() {
        assert_eq!(GEMM_STATIC_SMEM_BYTES, 20_480);
        // ldmatrix / cp.async rows must stay 16-byte aligned.
        assert_eq!((GEMM_LDS * 2) % 16, 0);
    }

    #[test]
    fn aligned_flag_follows_strides() {
        let shape = GemmShape {
            batch: 1,
            m: 5,
            n: 7,
            k: 24,
        };
        let ptrs = GemmPtrs {
            a: 256,
            b: 512,
            bias: 0,
            c: 768,
        };
        assert_eq!(
            GemmParams::new(ptrs, shape, GemmLayout::contiguous(shape, true))
                .unwrap()
                .aligned,
            1
        );
        let shape = GemmShape { k: 21, ..shape };
        assert_eq!(
            GemmParams::new(ptrs, shape, GemmLayout::contiguous(shape, true))
                .unwrap()
                .aligned,
            0
        );
    }
}
