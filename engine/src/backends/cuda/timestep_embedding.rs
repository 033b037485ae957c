//! Launcher of `kernels/cuda/timestep_embedding.cu`: the sinusoidal timestep embedding from device
//! timesteps.
//!
//! It reads every step-dependent value from device tensors and passes only shapes in the
//! kernel's params, and uploads nothing from the host: a step captured in a CUDA graph replays
//! for every step.

use anyhow::{bail, Result};
use cyberhost_kernels::timestep_embedding::{self, TimestepEmbeddingParams};
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::tensor::CudaTensor;
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
