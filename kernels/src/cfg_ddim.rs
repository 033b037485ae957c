//! `kernels/cuda/cfg_ddim.cu`: classifier-free guidance fused with one DDIM step (eta 0), the step
//! scalars read from an `(8,)` f32 device vector.

use crate::{grid_stride, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Threads per block (`CFG_DDIM_THREADS` in the `.cu`).
pub const CFG_DDIM_THREADS: u32 = 256;
/// Elements per thread per step on the vector path (`CFG_DDIM_VEC`).
pub const CFG_DDIM_VEC: u64 = 4;
/// Length of the coefficient vector (`CFG_DDIM_COEFFS`; the engine's `composed::CFG_DDIM_COEFFS`).
pub const CFG_DDIM_COEFFS: usize = 8;
/// Grid cap; the kernel's grid-stride loop covers the rest.
pub const CFG_DDIM_MAX_BLOCKS: u64 = crate::MAX_GRID_STRIDE_BLOCKS;

const LAUNCH: &str =
    "items = vec ? n / 4 : n, grid = clamp(ceil(items / 256), 1, 65535), block = 256, grid-stride";

/// `op` = `cfg_ddim_<sample dtype>`, entry suffix = model-output dtype.
pub const ENTRIES: &[Entry] =
    crate::f32_bf16_entries!(("CfgDdimParams", 80), LAUNCH; "cfg_ddim_f32", "cfg_ddim_bf16");

/// The op name of the entry for sample dtype `z` (pass it with the model-output dtype to
/// [`crate::kernel_name`]): `cfg_ddim_f32` / `cfg_ddim_bf16`.
pub fn op_for_sample(z: DType) -> &'static str {
    match z {
        DType::F32 => "cfg_ddim_f32",
        DType::Bf16 => "cfg_ddim_bf16",
    }
}

/// Shape of one launch: model output `(2, channels, frames_total, inner)`, sample
/// `(1, channels, frames, inner)` = frames `frame_offset..frame_offset + frames` of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CfgDdimShape {
    /// C, e.g. 4 latent channels.
    pub channels: usize,
    /// S, frames of the model output, e.g. 16 (4 motion + 12 generated).
    pub frames_total: usize,
    /// F, frames of the sample, e.g. 12.
    pub frames: usize,
    /// First output frame of the sample, e.g. 4.
    pub frame_offset: usize,
    /// Product of the trailing dims, e.g. 64 * 64.
    pub inner: usize,
}

impl CfgDdimShape {
    /// Elements of the sample `z`.
    pub fn sample_len(&self) -> usize {
        self.channels * self.frames * self.inner
    }
    /// Elements of the model output.
    pub fn output_len(&self) -> usize {
        2 * self.channels * self.frames_total * self.inner
    }
}

/// Mirrors `struct CfgDdimParams` in `cfg_ddim.cu` field for field (80 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CfgDdimParams {
    /// `(2, C, S, inner)` model output (cond row, uncond row), device address.
    pub out: u64,
    /// `(1, C, F, inner)` sample.
    pub z: u64,
    /// `(1, C, F, inner)` new sample; may equal `z`.
    pub y: u64,
    /// `(8,)` f32 coefficients (`DdimStepCoeffs::device_coeffs`).
    pub coeffs: u64,
    /// `C * F * inner`.
    pub n: u64,
    /// `F * inner`.
    pub plane: u64,
    /// `(S - F) * inner`.
    pub gap: u64,
    /// `frame_offset * inner`.
    pub base: u64,
    /// `C * S * inner`.
    pub uncond: u64,
    /// 1: vector path (see [`CfgDdimParams::new`]).
    pub vec: u32,
    pub _pad: u32,
}

impl CfgDdimParams {
    /// Checks the shape (`frame_offset + frames <= frames_total`, non-null addresses) and picks
    /// the vector path when every offset is a multiple of 4 elements and `out` / `z` / `y` are
    /// aligned to 4 of their elements.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        out: u64,
        z: u64,
        y: u64,
        coeffs: u64,
        shape: CfgDdimShape,
        out_dtype: DType,
        z_dtype: DType,
    ) -> Result<Self> {
        let CfgDdimShape {
            channels,
            frames_total,
            frames,
            frame_offset,
            inner,
        } = shape;
        ensure!(
            frame_offset + frames <= frames_total,
            "cfg_ddim: frames {frame_offset}..{} exceed the model output's {frames_total}",
            frame_offset + frames
        );
        let n = shape.sample_len() as u64;
        ensure!(
            n == 0 || (out != 0 && z != 0 && y != 0 && coeffs != 0),
            "cfg_ddim: out, z, y and coeffs must be device addresses"
        );
        let (plane, gap, base, uncond) = (
            (frames * inner) as u64,
            ((frames_total - frames) * inner) as u64,
            (frame_offset * inner) as u64,
            (channels * frames_total * inner) as u64,
        );
        let v = CFG_DDIM_VEC;
        let aligned = |addr: u64, dt: DType| addr % (v * dt.size_in_bytes() as u64) == 0;
        let vec = [plane, gap, base, uncond].iter().all(|x| x % v == 0)
            && aligned(out, out_dtype)
            && aligned(z, z_dtype)
            && aligned(y, z_dtype);
        Ok(CfgDdimParams {
            out,
            z,
            y,
            coeffs,
            n,
            plane: plane.max(1),
            gap,
            base,
            uncond,
            vec: vec as u32,
            _pad: 0,
        })
    }
}

/// `items = vec ? n / 4 : n`, `grid = clamp(ceil(items / 256), 1, 65535)`, `block = 256`.
pub fn launch_config(p: &CfgDdimParams) -> LaunchConfig {
    let items = if p.vec != 0 { p.n / CFG_DDIM_VEC } else { p.n };
    grid_stride(items, CFG_DDIM_THREADS, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(CfgDdimParams, 80, align 8);

    #[test]
    fn vector_path_and_launch() {
        let paper = CfgDdimShape {
            channels: 4,
            frames_total: 16,
            frames: 12,
            frame_offset: 4,
            inner: 64 * 64,
        };
        let p = CfgDdimParams::new(256, 512, 512, 1024, paper, DType::Bf16, DType::F32).unwrap();
        assert_eq!(p.vec, 1);
        assert_eq!(p.n, 4 * 12 * 4096);
        assert_eq!(launch_config(&p).grid, [192, 1, 1]);
        // a ragged inner size or a misaligned pointer falls back to the scalar path
        let ragged = CfgDdimShape {
            frames_total: 7,
            frames: 3,
            frame_offset: 2,
            inner: 15,
            ..paper
        };
        let p = CfgDdimParams::new(256, 512, 512, 1024, ragged, DType::F32, DType::F32).unwrap();
        assert_eq!(p.vec, 0);
        let p = CfgDdimParams::new(258, 512, 512, 1024, paper, DType::Bf16, DType::F32).unwrap();
        assert_eq!(p.vec, 0);
        let bad = CfgDdimShape {
            frame_offset: 5,
            ..paper
        };
        assert!(CfgDdimParams::new(256, 512, 512, 1024, bad, DType::F32, DType::F32).is_err());
        assert_eq!(
            crate::kernel_name(op_for_sample(DType::F32), 1, DType::Bf16),
            "cfg_ddim_f32_v1_bf16"
        );
    }
}
