//! Launcher of `kernels/cuda/pool.cu`: `max_pool2d`.

use anyhow::{bail, Result};
use cyberhost_kernels::pool::{launch_config, PoolParams};
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::tensor::CudaTensor;
use super::util::u32_of;
use crate::backends::shape::max_pool2d_shape;
use crate::backends::TensorLike;

/// `PoolParams` (shared by `pool.cu` and `mean_dim.cu`) reading `x` and writing every element of
/// `out`; the op's own fields are left zero.
pub(crate) fn pool_params(be: &CudaBackend, x: &CudaTensor, out: &CudaTensor) -> PoolParams {
    let mut p: PoolParams = bytemuck::Zeroable::zeroed();
    p.x = be.ptr(x);
    p.y = be.ptr(out);
    p.n_out = out.elem_count() as u64;
    p
}

/// Launches `op` of `module` (`pool.cu`'s `max_pool2d`, `mean_dim.cu`'s `mean_dim`) on `p`, one
/// thread per output element; returns `out`.
///
/// # Safety
/// `p` comes from [`pool_params`] for `out` and its op fields describe `p.x` as the entry reads it.
pub(crate) unsafe fn launch_pool(
    be: &CudaBackend,
    module: KernelModule,
    op: &str,
    p: &PoolParams,
    out: CudaTensor,
) -> Result<CudaTensor> {
    // SAFETY: forwarded to the caller.
    unsafe { be.launch_to(module, op, launch_config(p.n_out), p, out) }
}

pub(crate) fn max_pool2d(
    be: &CudaBackend,
    x: &CudaTensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<CudaTensor> {
    let out_shape = max_pool2d_shape(x.shape(), kernel, stride, padding)?;
    let (h, w, ho, wo) = (x.shape()[2], x.shape()[3], out_shape[2], out_shape[3]);
    let out = be.alloc(&out_shape, x.dtype())?;
    if out.elem_count() == 0 {
        return Ok(out);
    }
    // The kernel does window arithmetic in i32.
    u32_of(
        h.max(w) + kernel + ho.max(wo) * stride,
        "max_pool2d window extent",
    )
    .and_then(|v| {
        if v <= i32::MAX as u32 {
            Ok(v)
        } else {
            bail!("max_pool2d: image too large")
        }
    })?;
    let mut p = pool_params(be, x, &out);
    p.h = u32_of(h, "max_pool2d h")?;
    p.w = u32_of(w, "max_pool2d w")?;
    p.ho = u32_of(ho, "max_pool2d ho")?;
    p.wo = u32_of(wo, "max_pool2d wo")?;
    p.kernel = u32_of(kernel, "max_pool2d kernel")?;
    p.stride = u32_of(stride, "max_pool2d stride")?;
    p.padding = u32_of(padding, "max_pool2d padding")?;
    // SAFETY: max_pool2d_v1_<dtype>(PoolParams): x is (n*c, h, w), y (n*c, ho, wo), both
    // contiguous in x's dtype; windows are clipped to the image in the kernel.
    unsafe { launch_pool(be, KernelModule::Pool, "max_pool2d", &p, out) }
}
