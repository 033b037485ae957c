//! Launcher for `kernels/cuda/attention_sm90.cu` (`attention_sm90_d*_v1_bf16`, sm_90a only): the
//! wgmma attention on the same [`AttentionParams`] as the sm_80 flash kernel. The backend's
//! `attention_heads` (`cuda/attention.rs`) calls [`try_launch`] first on a Hopper-set device and
//! runs the sm_80 entry when it declines.

use anyhow::{Context, Result};
use cyberhost_kernels::attention::{AttentionParams, AttentionShape};
use cyberhost_kernels::attention_sm90::{launch_config, supports};
use cyberhost_kernels::{Arch, DType, KernelModule};

use super::CudaDevice;

/// Launches `p` (built for `shape`, operands of `dtype`) on the sm_90a kernel when the device
/// runs the Hopper kernel set, Lq > 64 and the module takes it (bf16, a head dim with an entry,
/// 16-byte aligned operands): `Ok(true)`; else launches nothing and returns `Ok(false)`.
///
/// # Safety
/// `p` must describe live device buffers of this device holding `dtype` elements, with every
/// row, head and batch offset that `shape` and the strides of `p` reach inside them (the contract
/// of the sm_80 attention entries, whose params these are).
pub(crate) unsafe fn try_launch(
    dev: &CudaDevice,
    p: &AttentionParams,
    shape: AttentionShape,
    dtype: DType,
) -> Result<bool> {
    // Lq <= 64 (temporal attention over the frames): one 64-row warpgroup of the 128-row block
    // (256 for d40) has work, and the fixed per-tile cost of a 128-key tile dominates; the
    // short-sequence entry (Lk <= 32, tried first by the caller) or the sm_80 v1 kernel runs it.
    if dev.arch() != Arch::Sm90a || shape.lq <= 64 {
        return Ok(false);
    }
    let Some(t) = supports(p, dtype) else {
        return Ok(false);
    };
    // SAFETY: the caller's contract; `AttentionParams` is the struct both attention modules read.
    unsafe {
        dev.launch(
            KernelModule::AttentionSm90,
            t.entry,
            launch_config(t, shape, dev.sm_count()),
            p,
        )
    }
    .with_context(|| format!("{} {shape:?}", t.entry))?;
    Ok(true)
}
