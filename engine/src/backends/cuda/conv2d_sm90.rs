//! Launcher for `kernels/cuda/conv2d_sm90.cu` (sm_90a only: `conv2d_sm90_v1_bf16`,
//! `conv2d_sm90_v1_f32`): `conv2d.cu`'s v2 implicit GEMM on Hopper `wgmma`. [`super::conv2d`]'s
//! launcher builds and checks the [`Conv2dParams`] and calls [`launch`] when [`takes`] says so.

use anyhow::{Context, Result};
use cyberhost_kernels::conv2d::{Conv2dParams, Conv2dShape};
use cyberhost_kernels::{conv2d_sm90, Arch, KernelModule};

use super::CudaDevice;

/// Whether `dev` runs the convolution `s` with `params` on the Hopper kernel: an sm_90a device,
/// a shape the kernel supports ([`conv2d_sm90::supports`]: v2's shapes with `K % 8 == 0` and a
/// 16-byte aligned W) and params that allow cp.async W tiles.
pub(crate) fn takes(dev: &CudaDevice, s: Conv2dShape, params: &Conv2dParams) -> bool {
    dev.arch() == Arch::Sm90a && params.aligned == 1 && conv2d_sm90::supports(s, params.ptrs.w)
}

/// Launches the bf16-y (or f32-y when `out_f32`) entry on `params`.
///
/// # Safety
/// `params` must describe `s` and point at live buffers of `dev` holding the NCHW extents `s`
/// implies (as checked by `conv2d.rs`'s launcher), and [`takes`] must hold.
pub(crate) unsafe fn launch(
    dev: &CudaDevice,
    s: Conv2dShape,
    params: &Conv2dParams,
    out_f32: bool,
) -> Result<()> {
    let entry = conv2d_sm90::entry(out_f32);
    // SAFETY: the caller's contract; `Conv2dParams` mirrors conv2d_sm90.cu's struct (144 bytes,
    // checked against the PTX's .param size in cyberhost-kernels).
    unsafe {
        dev.launch(
            KernelModule::Conv2dSm90,
            entry,
            conv2d_sm90::launch_config(s, dev.sm_count()),
            params,
        )
    }
    .with_context(|| format!("{entry} {s:?}"))
}
