//! Reductions on CUDA (`kernels/cuda/pool.cu`): `mean_dim`, `max_pool2d`.

use anyhow::{bail, Result};
use cyberhost_kernels::pool::{launch_config, PoolParams};
use cyberhost_kernels::KernelModule;

use super::context::CudaBackend;
use super::tensor::CudaTensor;
use super::util::u32_of;
use crate::backends::TensorLike;

pub(crate) fn mean_dim(be: &CudaBackend, t: &CudaTensor, dim: usize) -> Result<CudaTensor> {
    if dim >= t.rank() {
        bail!("mean_dim: dim {dim} out of range for shape {:?}", t.shape());
    }
    let d = t.shape()[dim];
    let outer: usize = t.shape()[..dim].iter().product();
    let inner: usize = t.shape()[dim + 1..].iter().product();
    let mut shape = t.shape().to_vec();
    shape[dim] = 1;
    let out = be.alloc(&shape, t.dtype())?;
    if outer * inner == 0 {
        return Ok(out);
    }
    let mut p: PoolParams = bytemuck::Zeroable::zeroed();
    p.x = be.ptr(t);
    p.y = be.ptr(&out);
    p.n_out = (outer * inner) as u64;
    p.d = u32_of(d, "mean_dim size")?;
    p.inner = u32_of(inner, "mean_dim inner")?;
    // SAFETY: mean_dim_v1_<dtype>(PoolParams): x is (outer, d, inner), y (outer, inner), both
    // contiguous in t's dtype.
    unsafe {
        be.launch(
            KernelModule::Pool,
            "mean_dim",
            t.dtype(),
            launch_config(p.n_out),
            &p,
        )
    }?;
    Ok(out)
}

pub(crate) fn max_pool2d(
    be: &CudaBackend,
    x: &CudaTensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<CudaTensor> {
    if x.rank() != 4 {
        bail!("max_pool2d: expected x (N, C, H, W), got {:?}", x.shape());
    }
    if kernel == 0 || stride == 0 || 2 * padding > kernel {
        bail!(
            "max_pool2d: kernel {kernel}, stride {stride}, padding {padding} is invalid (PyTorch \
             needs kernel, stride > 0 and padding ≤ kernel/2)"
        );
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    if h + 2 * padding < kernel || w + 2 * padding < kernel {
        bail!(
            "max_pool2d: input {:?} is smaller than the {kernel}×{kernel} kernel",
            x.shape()
        );
    }
    let ho = (h + 2 * padding - kernel) / stride + 1;
    let wo = (w + 2 * padding - kernel) / stride + 1;
    let out = be.alloc(&[n, c, ho, wo], x.dtype())?;
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
    let mut p: PoolParams = bytemuck::Zeroable::zeroed();
    p.x = be.ptr(x);
    p.y = be.ptr(&out);
    p.n_out = out.elem_count() as u64;
    p.h = u32_of(h, "max_pool2d h")?;
    p.w = u32_of(w, "max_pool2d w")?;
    p.ho = u32_of(ho, "max_pool2d ho")?;
    p.wo = u32_of(wo, "max_pool2d wo")?;
    p.kernel = u32_of(kernel, "max_pool2d kernel")?;
    p.stride = u32_of(stride, "max_pool2d stride")?;
    p.padding = u32_of(padding, "max_pool2d padding")?;
    // SAFETY: max_pool2d_v1_<dtype>(PoolParams): x is (n*c, h, w), y (n*c, ho, wo), both
    // contiguous in x's dtype; windows are clipped to the image in the kernel.
    unsafe {
        be.launch(
            KernelModule::Pool,
            "max_pool2d",
            x.dtype(),
            launch_config(p.n_out),
            &p,
        )
    }?;
    Ok(out)
}
