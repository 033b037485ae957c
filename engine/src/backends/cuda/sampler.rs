//! Sampler ops on CUDA: `timestep_embedding` (`kernels/cuda/timestep_embedding.cu`) and the fused
//! classifier-free guidance + DDIM step `cfg_ddim_step` (`kernels/cuda/cfg_ddim.cu`).
//!
//! Both read every step-dependent value (timesteps, step coefficients) from device tensors and
//! pass only shapes in the kernel's params, and neither uploads anything from the host: a step
//! captured in a CUDA graph replays for every step.

use anyhow::{bail, Result};
use cyberhost_kernels::cfg_ddim::{CfgDdimParams, CfgDdimShape};
use cyberhost_kernels::timestep_embedding::TimestepEmbeddingParams;
use cyberhost_kernels::{cfg_ddim, timestep_embedding, DType, KernelModule};

use super::backend::{CudaBackend, CudaTensor};
use crate::backends::composed::check_cfg_ddim;
use crate::backends::TensorLike;

/// `t (N,)` f32 or bf16 -> `(N, dim)` in the backend's storage dtype (what the host default's
/// `from_f32` makes), f32 math (see `timestep_embedding.cu`).
pub(crate) fn timestep_embedding(
    be: &CudaBackend,
    t: &CudaTensor,
    dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f32,
) -> Result<CudaTensor> {
    if t.rank() != 1 {
        bail!("timestep_embedding: t {:?} must be (N,)", t.shape());
    }
    let n = t.shape()[0];
    let out_dtype = be.storage();
    let y = be.alloc(&[n, dim], out_dtype)?;
    if n * dim == 0 {
        return Ok(y);
    }
    let p = TimestepEmbeddingParams::new(
        be.ptr(t),
        be.ptr(&y),
        n,
        dim,
        flip_sin_to_cos,
        downscale_freq_shift,
    )?;
    // SAFETY: timestep_embedding_<out>_v1_<t>(TimestepEmbeddingParams): t holds n elements of
    // t's dtype, y n * dim elements of `out_dtype`.
    unsafe {
        be.launch(
            KernelModule::TimestepEmbedding,
            timestep_embedding::op_for_output(out_dtype),
            t.dtype(),
            timestep_embedding::launch_config(&p),
            &p,
        )
    }?;
    Ok(y)
}

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
