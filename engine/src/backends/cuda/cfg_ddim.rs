//! Launcher of `kernels/cuda/cfg_ddim.cu`: the fused classifier-free guidance + DDIM step
//! `cfg_ddim_step`.
//!
//! It reads every step-dependent value from device tensors and passes only shapes in the
//! kernel's params, and uploads nothing from the host: a step captured in a CUDA graph replays
//! for every step.

use anyhow::{bail, Result};
use cyberhost_kernels::cfg_ddim::{self, CfgDdimParams, CfgDdimShape};
use cyberhost_kernels::{DType, KernelModule};

use super::context::CudaBackend;
use super::tensor::CudaTensor;
use crate::backends::composed::check_cfg_ddim;
use crate::backends::TensorLike;

/// `out (2, C, S, ..)` (cond, uncond), `z (1, C, F, ..)`, frames `frame_offset..frame_offset + F`
/// of `out` read in place, `coeffs (8,)` f32 -> the new `z` in `z`'s dtype (f32 in the pipeline).
pub(crate) fn cfg_ddim_step(
    be: &CudaBackend,
    out: &CudaTensor,
    z: &CudaTensor,
    frame_offset: usize,
    coeffs: &CudaTensor,
) -> Result<CudaTensor> {
    let (channels, frames_total, frames, inner) =
        check_cfg_ddim(out.shape(), z.shape(), frame_offset, coeffs.shape())?;
    if coeffs.dtype() != DType::F32 {
        bail!(
            "cfg_ddim_step: coeffs must be f32 (DdimStepCoeffs::device_coeffs uploaded with \
             from_f32_as(.., DType::F32)), got {:?}",
            coeffs.dtype()
        );
    }
    let y = be.alloc(z.shape(), z.dtype())?;
    if z.elem_count() == 0 {
        return Ok(y);
    }
    let shape = CfgDdimShape {
        channels,
        frames_total,
        frames,
        frame_offset,
        inner,
    };
    let p = CfgDdimParams::new(
        be.ptr(out),
        be.ptr(z),
        be.ptr(&y),
        be.ptr(coeffs),
        shape,
        out.dtype(),
        z.dtype(),
    )?;
    // SAFETY: cfg_ddim_<z>_v1_<out>(CfgDdimParams): out holds 2 * C * S * inner elements of its
    // dtype (checked by check_cfg_ddim), z and y C * F * inner of z's dtype, coeffs 8 f32; the
    // vector path is only set for 4-element-aligned addresses and offsets (CfgDdimParams::new).
    unsafe {
        be.launch(
            KernelModule::CfgDdim,
            cfg_ddim::op_for_sample(z.dtype()),
            out.dtype(),
            cfg_ddim::launch_config(&p),
            &p,
        )
    }?;
    Ok(y)
}
