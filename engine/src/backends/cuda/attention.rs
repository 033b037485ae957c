//! Launcher for `kernels/cuda/attention.cu` (`attention_d{48,64,80,128,160}_v1_{bf16,f32}`): fused
//! flash-style attention forward, `o = softmax(scale * q k^T) v` per (batch, head).

use anyhow::{Context, Result};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr};
use cyberhost_kernels::attention::{
    launch_config, traits_for, AttentionParams, AttentionShape, AttnStrides,
};
use cyberhost_kernels::{DType, KernelModule};

use super::util::check_bytes;
use super::CudaDevice;

/// Operand layout of [`attention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnLayout {
    /// `(B, H, L, D)`.
    Bhld,
    /// `(B, L, H, D)` = `(B, L, H * D)`: projection outputs, no head transpose needed.
    Blhd,
}

/// `o = softmax(scale * q k^T) v` with q `(B, H, Lq, D)`, k / v `(B, H, Lk, D)`, o like q (or all
/// four `(B, L, H, D)` with [`AttnLayout::Blhd`]). Any D in `1..=160` (the model's 40, 64, 80, 128,
/// 160 at full speed; other D take the padded entry above). All four buffers hold `dtype` elements
/// (bf16, or f32 run as bf16 hi + lo tensor-core operands); they may be typed `u8`, `u16`,
/// `half::bf16` or `f32` (sizes checked in bytes).
#[allow(clippy::too_many_arguments)]
pub fn attention<T: DeviceRepr>(
    dev: &CudaDevice,
    q: &CudaSlice<T>,
    k: &CudaSlice<T>,
    v: &CudaSlice<T>,
    o: &mut CudaSlice<T>,
    shape: AttentionShape,
    layout: AttnLayout,
    scale: f32,
    dtype: DType,
) -> Result<()> {
    let s = shape;
    let traits = traits_for(s.d, dtype)?;
    let st = |len: u64| match layout {
        AttnLayout::Bhld => AttnStrides::bhld(s.heads, len, s.d),
        AttnLayout::Blhd => AttnStrides::blhd(s.heads, len, s.d),
    };
    check_bytes("attention q", q, s.batch * s.heads * s.lq * s.d, dtype)?;
    check_bytes("attention k", k, s.batch * s.heads * s.lk * s.d, dtype)?;
    check_bytes("attention v", v, s.batch * s.heads * s.lk * s.d, dtype)?;
    check_bytes("attention o", o, s.batch * s.heads * s.lq * s.d, dtype)?;
    let stream = dev.stream();
    let (pq, _gq) = q.device_ptr(stream);
    let (pk, _gk) = k.device_ptr(stream);
    let (pv, _gv) = v.device_ptr(stream);
    let (po, _go) = o.device_ptr_mut(stream);
    let params = AttentionParams::new(
        [pq, pk, pv, po],
        [st(s.lq), st(s.lk), st(s.lk), st(s.lq)],
        s,
        scale,
    )?;
    // SAFETY: `AttentionParams` mirrors `struct AttentionParams` of attention.cu (size asserted in
    // cyberhost-kernels); q/k/v/o are live `CudaSlice`s of this device whose byte lengths were
    // checked above against B * H * L * D `dtype` elements for the dense layout the strides describe;
    // the entry is the `dtype` one.
    unsafe {
        dev.launch(
            KernelModule::Attention,
            traits.entry,
            launch_config(s),
            &params,
        )
    }
    .with_context(|| format!("{} {s:?}", traits.entry))
}
