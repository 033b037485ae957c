//! Launcher of `kernels/cuda/mean_dim.cu`: `mean_dim` (kept with size 1, f32 accumulation).

use anyhow::Result;
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::pool::{launch_pool, pool_params};
use super::tensor::CudaTensor;
use super::util::u32_of;
use crate::backends::shape::mean_dim_shape;
use crate::backends::TensorLike;

pub(crate) fn mean_dim(be: &CudaBackend, t: &CudaTensor, dim: usize) -> Result<CudaTensor> {
    let shape = mean_dim_shape(t.shape(), dim)?;
    let d = t.shape()[dim];
    let outer: usize = t.shape()[..dim].iter().product();
    let inner: usize = t.shape()[dim + 1..].iter().product();
    let out = be.alloc(&shape, t.dtype())?;
    if outer * inner == 0 {
        return Ok(out);
    }
    let mut p = pool_params(be, t, &out);
    p.d = u32_of(d, "mean_dim size")?;
    p.inner = u32_of(inner, "mean_dim inner")?;
    // SAFETY: mean_dim_v1_<dtype>(PoolParams): x is (outer, d, inner), y (outer, inner), both
    // contiguous in t's dtype.
    unsafe { launch_pool(be, KernelModule::MeanDim, "mean_dim", &p, out) }
}
