//! Launcher for `kernels/cuda/conv2d_sm90.cu` (sm_90a only: `conv2d_sm90_v1_bf16`,
//! `conv2d_sm90_v1_f32`): `conv2d.cu`'s v2 implicit GEMM on Hopper `wgmma`. [`super::conv2d`]'s
//! launcher builds and checks the [`Conv2dParams`] and calls [`launch`] when [`takes`] says so.

use anyhow::{ensure, Context, Result};
use cyberhost_kernels::conv2d::{Conv2dParams, Conv2dShape};
use cyberhost_kernels::conv2d_sm90::{C90Split, C90SplitParams};
use cyberhost_kernels::{conv2d_sm90, Arch, KernelModule};

use super::CudaDevice;

/// Whether `dev` runs the convolution `s` with `params` on the Hopper kernel: an sm_90a device,
/// a shape the kernel supports ([`conv2d_sm90::supports`]: v2's shapes with `K % 8 == 0` and a
/// 16-byte aligned W) and params that allow cp.async W tiles.
pub(crate) fn takes(dev: &CudaDevice, s: Conv2dShape, params: &Conv2dParams) -> bool {
    dev.arch() == Arch::Sm90a && params.aligned == 1 && conv2d_sm90::supports(s, params.ptrs.w)
}

/// The split-K plan of `s` on `dev` ([`conv2d_sm90::plan_split`] on its SM count), or none where
/// the kernel does not run.
pub(crate) fn split_plan(dev: &CudaDevice, s: Conv2dShape, w_ptr: u64) -> C90Split {
    if dev.arch() == Arch::Sm90a && conv2d_sm90::supports(s, w_ptr) {
        conv2d_sm90::plan_split(s, dev.sm_count())
    } else {
        C90Split::NONE
    }
}

/// f32 elements of the split-K workspace of `s` (W at `w_ptr`) on `dev`; 0: no split.
pub(crate) fn workspace_len(dev: &CudaDevice, s: Conv2dShape, w_ptr: u64) -> usize {
    split_plan(dev, s, w_ptr).workspace_len(s) as usize
}

/// Launches the bf16-y (or f32-y when `out_f32`) entry on `params`; with a workspace `ws`
/// (device address, bytes) and a split plan ([`split_plan`]), the split-K entry and its reduce
/// pass (an error when `ws` is smaller than the plan needs).
///
/// # Safety
/// `params` must describe `s` and point at live buffers of `dev` holding the NCHW extents `s`
/// implies (as checked by `conv2d.rs`'s launcher), `ws` a live buffer of `dev` of that many
/// bytes, and [`takes`] must hold.
pub(crate) unsafe fn launch(
    dev: &CudaDevice,
    s: Conv2dShape,
    params: &Conv2dParams,
    out_f32: bool,
    ws: Option<(u64, u64)>,
) -> Result<()> {
    let split = split_plan(dev, s, params.ptrs.w);
    if let (true, Some((ws_ptr, ws_bytes))) = (split.is_split(), ws) {
        let need = split.workspace_len(s) * 4;
        ensure!(
            ws_bytes >= need,
            "conv2d_sm90 split-K workspace: {ws_bytes} bytes, the plan needs {need} (size it with conv2d::sm90_workspace_len)"
        );
        let q = C90SplitParams::new(*params, s, split, ws_ptr);
        let (entry, reduce) = conv2d_sm90::split_entries(out_f32);
        // SAFETY: the caller's contract; `C90SplitParams` mirrors conv2d_sm90.cu's struct (168
        // bytes, checked against the PTX's .param size in cyberhost-kernels); the workspace holds
        // the plan's `workspace_len` f32; the reduce pass reads what the split pass wrote (same
        // stream).
        unsafe {
            dev.launch(
                KernelModule::Conv2dSm90,
                entry,
                conv2d_sm90::split_launch_config(s, dev.sm_count(), split),
                &q,
            )
        }
        .with_context(|| format!("{entry} {s:?} {split:?}"))?;
        return unsafe {
            dev.launch(
                KernelModule::Conv2dSm90,
                reduce,
                conv2d_sm90::reduce_launch_config(s, &q),
                &q,
            )
        }
        .with_context(|| format!("{reduce} {s:?} {split:?}"));
    }
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
