//! Launcher for `kernels/cuda/group_norm_sm90.cu` (sm_90a only: `group_norm[_silu]_sm90_c<CL>_v1_bf16`):
//! single-pass GroupNorm (+ SiLU) on thread-block clusters, and `group_norm_tokens_sm90_c<CL>_v1_bf16`
//! (the token-layout GroupNorm writing `(N, S, F, C)` tokens in the same single pass).
//! [`super::group_norm`]'s launchers check the shape and call [`launch`] / [`launch_tokens`] when
//! [`takes`] / [`takes_tokens`] say so.

use anyhow::{Context, Result};
use cyberhost_kernels::group_norm::GroupNormShape;
use cyberhost_kernels::group_norm_sm90::{
    self as gn90, GnSm90Params, GnSm90Plan, GnTok90Params, GnTok90Plan,
};
use cyberhost_kernels::{Arch, DType, KernelModule};

use super::CudaDevice;

/// The plan when `dev` runs GroupNorm of `shape` (in `dtype`, x at `x_ptr`, y at `y_ptr`) on the
/// Hopper kernel: an sm_90a device, bf16, x and y 16-byte aligned and a group that fits a
/// cluster's shared memory ([`gn90::plan`]).
pub(crate) fn takes(
    dev: &CudaDevice,
    shape: GroupNormShape,
    dtype: DType,
    x_ptr: u64,
    y_ptr: u64,
) -> Option<GnSm90Plan> {
    if dev.arch() != Arch::Sm90a || x_ptr % 16 != 0 || y_ptr % 16 != 0 {
        return None;
    }
    gn90::plan(shape, dtype)
}

/// Launches the entry of `plan` (with SiLU when `silu`) on x, gamma, beta, y (`ptrs`).
///
/// # Safety
/// `ptrs` must point at live bf16 buffers of `dev`: x and y `(N, C, S)` of `shape`, gamma and
/// beta `(C)`; `plan` from [`takes`] for this shape and these pointers.
pub(crate) unsafe fn launch(
    dev: &CudaDevice,
    shape: GroupNormShape,
    ptrs: [u64; 4],
    eps: f32,
    plan: GnSm90Plan,
    silu: bool,
) -> Result<()> {
    let p = GnSm90Params::new(ptrs, shape, eps, plan)?;
    let entry = plan.entry(silu);
    // SAFETY: the caller's contract; `GnSm90Params` mirrors group_norm_sm90.cu's struct (56
    // bytes, checked against the PTX's .param size in cyberhost-kernels); the grid's x is the
    // entry's compile-time cluster size.
    unsafe {
        dev.launch(
            KernelModule::GroupNormSm90,
            entry,
            gn90::launch_config(shape, plan),
            &p,
        )
    }
    .with_context(|| format!("{entry} {shape:?}"))
}

/// The plan when `dev` runs `group_norm_tokens` of planes `shape` (`shape.n` = N·F, `frames` F;
/// in `dtype`, x at `x_ptr`, tokens y at `y_ptr`) on the Hopper single pass: an sm_90a device,
/// x and y 16-byte aligned and distinct, and [`gn90::plan_tokens`]'s shape rules.
pub(crate) fn takes_tokens(
    dev: &CudaDevice,
    shape: GroupNormShape,
    frames: usize,
    dtype: DType,
    x_ptr: u64,
    y_ptr: u64,
) -> Option<GnTok90Plan> {
    if dev.arch() != Arch::Sm90a || x_ptr % 16 != 0 || y_ptr % 16 != 0 || x_ptr == y_ptr {
        return None;
    }
    gn90::plan_tokens(shape, frames as u64, dtype)
}

/// Launches `group_norm_tokens_sm90_c<CL>` of `plan` on x planes, gamma, beta and y tokens
/// (`ptrs`).
///
/// # Safety
/// `ptrs` must point at live bf16 buffers of `dev`: x `(N·F, C, S)` planes of `shape`, gamma and
/// beta `(C)`, y `(N, S, F, C)` tokens not overlapping x; `plan` from [`takes_tokens`] for this
/// shape, these frames and pointers.
pub(crate) unsafe fn launch_tokens(
    dev: &CudaDevice,
    shape: GroupNormShape,
    frames: u32,
    ptrs: [u64; 4],
    eps: f32,
    plan: GnTok90Plan,
) -> Result<()> {
    let p = GnTok90Params::new(ptrs, shape, frames, eps, plan)?;
    let entry = plan.entry();
    // SAFETY: the caller's contract; `GnTok90Params` mirrors group_norm_sm90.cu's struct (64
    // bytes, checked against the PTX's .param size in cyberhost-kernels); the grid's x is the
    // entry's compile-time cluster size.
    unsafe {
        dev.launch(
            KernelModule::GroupNormSm90,
            entry,
            gn90::launch_config_tokens(shape, u64::from(frames), plan),
            &p,
        )
    }
    .with_context(|| format!("{entry} {shape:?}, {frames} frames"))
}
