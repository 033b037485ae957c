//! `kernels/cuda/timestep_embedding.cu`: diffusers `get_timestep_embedding` from device
//! timesteps, `t (n,) -> (n, dim)`.

use crate::{grid_stride, to_u32, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Threads per block (`TEMB_THREADS` in the `.cu`).
pub const TEMB_THREADS: u32 = 256;
/// Grid cap; the kernel's grid-stride loop covers the rest.
pub const TEMB_MAX_BLOCKS: u64 = crate::MAX_GRID_STRIDE_BLOCKS;

const LAUNCH: &str = "grid = clamp(ceil(n * dim / 256), 1, 65535), block = 256, grid-stride loop";

/// `op` = `timestep_embedding_<output dtype>`, entry suffix = timestep dtype.
pub const ENTRIES: &[Entry] = crate::f32_bf16_entries!(("TimestepEmbeddingParams", 32), LAUNCH; "timestep_embedding_f32", "timestep_embedding_bf16");

/// The op name of the entry writing `out` (pass it with the timestep dtype to
/// [`crate::kernel_name`]): `timestep_embedding_f32` / `timestep_embedding_bf16`.
pub fn op_for_output(out: DType) -> &'static str {
    match out {
        DType::F32 => "timestep_embedding_f32",
        DType::Bf16 => "timestep_embedding_bf16",
    }
}

/// Mirrors `struct TimestepEmbeddingParams` in `timestep_embedding.cu` field for field (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TimestepEmbeddingParams {
    /// `(n)` timesteps, device address.
    pub t: u64,
    /// `(n, dim)` output, device address.
    pub y: u64,
    /// Timesteps, e.g. 2 (cond + uncond).
    pub n: u32,
    /// Embedding width, e.g. 320; odd leaves the last column 0.
    pub dim: u32,
    /// `downscale_freq_shift`, e.g. 1.0 (SD UNet) or 0.0.
    pub shift: f32,
    /// `flip_sin_to_cos`: 1 = `[cos, sin]`, 0 = `[sin, cos]`.
    pub flip: u32,
}

impl TimestepEmbeddingParams {
    /// Host-side checks: sizes fit the u32 fields, non-null addresses when there is output.
    pub fn new(t: u64, y: u64, n: usize, dim: usize, flip: bool, shift: f32) -> Result<Self> {
        ensure!(
            (t != 0 && y != 0) || n * dim == 0,
            "timestep_embedding: t and y must be device addresses"
        );
        Ok(TimestepEmbeddingParams {
            t,
            y,
            n: to_u32(n as u64, "timestep_embedding n")?,
            dim: to_u32(dim as u64, "timestep_embedding dim")?,
            shift,
            flip: flip as u32,
        })
    }
}

/// `grid = clamp(ceil(n * dim / 256), 1, 65535)`, `block = 256`, no dynamic smem.
pub fn launch_config(p: &TimestepEmbeddingParams) -> LaunchConfig {
    grid_stride(p.n as u64 * p.dim as u64, TEMB_THREADS, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(TimestepEmbeddingParams, 32, align 8);

    #[test]
    fn launch_and_names() {
        let p = TimestepEmbeddingParams::new(8, 16, 2, 320, true, 1.0).unwrap();
        assert_eq!(launch_config(&p).grid, [3, 1, 1]);
        let p0 = TimestepEmbeddingParams::new(0, 0, 0, 320, true, 1.0).unwrap();
        assert_eq!(launch_config(&p0).grid, [1, 1, 1]);
        assert!(TimestepEmbeddingParams::new(0, 16, 2, 320, true, 1.0).is_err());
        assert_eq!(
            crate::kernel_name(op_for_output(DType::Bf16), 1, DType::F32),
            "timestep_embedding_bf16_v1_f32"
        );
    }
}
