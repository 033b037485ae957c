//! `kernels/cuda/conv2d.cu`: NCHW convolution (groups 1) as an implicit GEMM on tensor cores with a
//! fused `scale * (conv + bias + temb + residual)` epilogue, bf16 in/out.

use crate::{ceil_div, to_u32, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Block tile: `CONV_BM` output channels x `CONV_BN` output pixels x `CONV_BK` of `C_in * kh * kw`.
pub const CONV_BM: u32 = 64;
pub const CONV_BN: u32 = 64;
pub const CONV_BK: u32 = 32;
pub const CONV_THREADS: u32 = 128;
pub const CONV_STAGES: u32 = 2;
pub const CONV_LDA: u32 = CONV_BK + 8;
pub const CONV_LDB: u32 = CONV_BN + 8;
pub const CONV_STATIC_SMEM_BYTES: u32 = CONV_STAGES * (CONV_BM * CONV_LDA + CONV_BK * CONV_LDB) * 2;
const _: () = assert!(CONV_STATIC_SMEM_BYTES <= 48 * 1024);

pub const ENTRIES: &[Entry] = &[Entry {
    name: "conv2d_v1_bf16",
    op: "conv2d",
    version: 1,
    dtype: DType::Bf16,
    params: "Conv2dParams",
    params_size: 104,
    launch: "grid = (ceil(Ho * Wo / 64), ceil(C_out / 64), N), block = 128, static smem",
}];

/// Mirrors `struct Conv2dParams` in `conv2d.cu` (104 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Conv2dParams {
    /// `(N, C_in, H, W)` bf16.
    pub x: u64,
    /// `(C_out, C_in, kh, kw)` bf16.
    pub w: u64,
    /// `(C_out)` bf16, or 0.
    pub bias: u64,
    /// `(N, C_out)` bf16, or 0.
    pub temb: u64,
    /// `(N, C_out, Ho, Wo)` bf16, or 0.
    pub residual: u64,
    /// `(N, C_out, Ho, Wo)` bf16.
    pub y: u64,
    pub n: u32,
    pub c_in: u32,
    pub h: u32,
    pub w_in: u32,
    pub c_out: u32,
    pub h_out: u32,
    pub w_out: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad: u32,
    pub k: u32,
    pub scale: f32,
    pub aligned: u32,
}

/// Convolution geometry, e.g. SD1.5 ResNet `conv1`: `n 32, c_in 320, h 64, w 64, c_out 320,
/// kh 3, kw 3, stride 1, pad 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: u64,
    pub c_in: u64,
    pub h: u64,
    pub w: u64,
    pub c_out: u64,
    pub kh: u64,
    pub kw: u64,
    pub stride: u64,
    pub pad: u64,
}

impl Conv2dShape {
    pub fn h_out(&self) -> u64 {
        (self.h + 2 * self.pad).saturating_sub(self.kh) / self.stride.max(1) + 1
    }
    pub fn w_out(&self) -> u64 {
        (self.w + 2 * self.pad).saturating_sub(self.kw) / self.stride.max(1) + 1
    }
    pub fn k(&self) -> u64 {
        self.c_in * self.kh * self.kw
    }
}

/// Device addresses (bias / temb / residual 0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dPtrs {
    pub x: u64,
    pub w: u64,
    pub bias: u64,
    pub temb: u64,
    pub residual: u64,
    pub y: u64,
}

impl Conv2dParams {
    pub fn new(ptrs: Conv2dPtrs, s: Conv2dShape, scale: f32) -> Result<Self> {
        ensure!(s.stride >= 1, "conv2d: stride must be >= 1");
        ensure!(
            s.kh >= 1 && s.kw >= 1,
            "conv2d: empty kernel {}x{}",
            s.kh,
            s.kw
        );
        ensure!(
            s.h + 2 * s.pad >= s.kh && s.w + 2 * s.pad >= s.kw,
            "conv2d: kernel {}x{} larger than the padded input {}x{} (pad {})",
            s.kh,
            s.kw,
            s.h,
            s.w,
            s.pad
        );
        ensure!(
            (1..=65_535).contains(&s.n),
            "conv2d: batch {} must be in 1..=65535 (gridDim.z)",
            s.n
        );
        ensure!(
            ceil_div(s.c_out, CONV_BM as u64) <= 65_535,
            "conv2d: C_out {} needs more than 65535 blocks",
            s.c_out
        );
        // Pixel offsets within one image are 32-bit in the kernel.
        ensure!(
            s.c_in * s.h * s.w < 1 << 31 && s.c_out * s.h_out() * s.w_out() < 1 << 31,
            "conv2d: one image exceeds 2^31 elements"
        );
        let k = s.k();
        Ok(Conv2dParams {
            x: ptrs.x,
            w: ptrs.w,
            bias: ptrs.bias,
            temb: ptrs.temb,
            residual: ptrs.residual,
            y: ptrs.y,
            n: to_u32(s.n, "conv2d N")?,
            c_in: to_u32(s.c_in, "conv2d C_in")?,
            h: to_u32(s.h, "conv2d H")?,
            w_in: to_u32(s.w, "conv2d W")?,
            c_out: to_u32(s.c_out, "conv2d C_out")?,
            h_out: to_u32(s.h_out(), "conv2d Ho")?,
            w_out: to_u32(s.w_out(), "conv2d Wo")?,
            kh: to_u32(s.kh, "conv2d kh")?,
            kw: to_u32(s.kw, "conv2d kw")?,
            stride: to_u32(s.stride, "conv2d stride")?,
            pad: to_u32(s.pad, "conv2d pad")?,
            k: to_u32(k, "conv2d C_in * kh * kw")?,
            scale,
            aligned: (ptrs.w % 16 == 0 && k % 8 == 0) as u32,
        })
    }

    /// Forces the plain-load path for the weight tiles.
    pub fn without_cp_async(mut self) -> Self {
        self.aligned = 0;
        self
    }
}

/// `grid = (ceil(Ho * Wo / 64), ceil(C_out / 64), N)`, `block = 128`, static smem only.
pub fn launch_config(s: Conv2dShape) -> LaunchConfig {
    LaunchConfig {
        grid: [
            ceil_div(s.h_out() * s.w_out(), CONV_BN as u64).max(1) as u32,
            ceil_div(s.c_out, CONV_BM as u64).max(1) as u32,
            s.n.max(1) as u32,
        ],
        block: [CONV_THREADS, 1, 1],
        dynamic_smem_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_layout_matches_cu() {
        assert_eq!(std::mem::size_of::<Conv2dParams>(), 104);
        assert_eq!(CONV_STATIC_SMEM_BYTES, 19_456);
    }

    #[test]
    fn output_size_and_grid() {
        let s = Conv2dShape {
            n: 2,
            c_in: 3,
            h: 9,
            w: 7,
            c_out: 70,
            kh: 3,
            kw: 3,
            stride: 2,
            pad: 1,
        };
        assert_eq!((s.h_out(), s.w_out()), (5, 4));
        assert_eq!(launch_config(s).grid, [1, 2, 2]);
    }
}
