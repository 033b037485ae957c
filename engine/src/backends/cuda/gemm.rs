//! Launchers for `kernels/cuda/gemm.cu` (`linear_v1_bf16`, `matmul_v1_bf16`): bf16 tensor-core
//! GEMM with a fused `scale * (acc + bias [GEGLU] + residual)` epilogue.

use anyhow::{Context, Result};
use cudarc::driver::DeviceRepr;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use cyberhost_kernels::gemm::{
    launch_config, GemmEpilogue, GemmLayout, GemmOp, GemmParams, GemmPtrs, GemmShape,
};
use cyberhost_kernels::KernelModule;

use super::util::check_len;
use super::CudaDevice;

/// Optional epilogue operands of [`linear`] / [`matmul`]:
/// `out = scale * (acc + bias [, GEGLU] + residual)`.
#[derive(Debug)]
pub struct GemmExtras<'a, T: DeviceRepr> {
    /// `(N)` (GEGLU: `(2N)`, value then gate).
    pub bias: Option<&'a CudaSlice<T>>,
    /// Same shape as the output.
    pub residual: Option<&'a CudaSlice<T>>,
    /// Output scale, 1.0 = none (diffusers' `1 / rescale_output_factor`).
    pub scale: f32,
    /// FeedForward GEGLU: `w` has `2N` rows, `out = (x.w[n] + b[n]) * gelu(x.w[N + n] + b[N + n])`.
    pub geglu: bool,
}

copy_with_defaults!(GemmExtras<T: DeviceRepr> {
    bias: None,
    residual: None,
    scale: 1.0,
    geglu: false,
});

/// `out (M, N) = x (M, K) . w^T + ...` with `w (N, K)` (nn.Linear `(out, in)`; GEGLU `(2N, K)`);
/// `M` = all leading dims of `x` flattened, e.g. `M = 32 * 4096, K = 320, N = 1280`.
pub fn linear<T: DeviceRepr>(
    dev: &CudaDevice,
    x: &CudaSlice<T>,
    w: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
    m: usize,
    n: usize,
    k: usize,
    extras: GemmExtras<'_, T>,
) -> Result<()> {
    let shape = GemmShape::new(1, m, n, k);
    let layout = GemmLayout::contiguous(GemmOp::Linear, shape, extras.geglu, true);
    launch(dev, GemmOp::Linear, x, w, out, shape, layout, extras)
}

/// `out (batch, M, N) = a (batch, M, K) . b (batch | 1, K, N) + ...`; `broadcast_b` shares one `b`
/// (e.g. a weight) across the batch.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: DeviceRepr>(
    dev: &CudaDevice,
    a: &CudaSlice<T>,
    b: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    broadcast_b: bool,
    extras: GemmExtras<'_, T>,
) -> Result<()> {
    let shape = GemmShape::new(batch, m, n, k);
    let layout = GemmLayout::contiguous(GemmOp::Matmul, shape, false, broadcast_b);
    launch(dev, GemmOp::Matmul, a, b, out, shape, layout, extras)
}

/// Strided form of [`linear`] / [`matmul`]: any row strides and batch strides (0 broadcasts).
#[allow(clippy::too_many_arguments)]
pub fn launch<T: DeviceRepr>(
    dev: &CudaDevice,
    op: GemmOp,
    a: &CudaSlice<T>,
    b: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
    shape: GemmShape,
    layout: GemmLayout,
    extras: GemmExtras<'_, T>,
) -> Result<()> {
    let entry = op.entry();
    let last = |ld: u64, stride: u64, rows: u64, cols: u64| -> u64 {
        if rows == 0 || cols == 0 {
            0
        } else {
            (shape.batch - 1) * stride + (rows - 1) * ld + cols
        }
    };
    let b_rows = if extras.geglu { 2 * shape.n } else { shape.n };
    let (br, bc) = match op {
        GemmOp::Linear => (b_rows, shape.k),
        GemmOp::Matmul => (shape.k, shape.n),
    };
    check_len(
        &format!("{entry} a"),
        a,
        last(layout.lda, layout.stride_a, shape.m, shape.k),
    )?;
    check_len(
        &format!("{entry} b"),
        b,
        last(layout.ldb, layout.stride_b, br, bc),
    )?;
    check_len(
        &format!("{entry} out"),
        out,
        last(layout.ldc, layout.stride_c, shape.m, shape.n),
    )?;
    if let Some(bias) = extras.bias {
        check_len(&format!("{entry} bias"), bias, b_rows)?;
    }
    if let Some(r) = extras.residual {
        check_len(
            &format!("{entry} residual"),
            r,
            last(layout.ldr, layout.stride_r, shape.m, shape.n),
        )?;
    }
    let stream = dev.stream();
    let (pa, _ga) = a.device_ptr(stream);
    let (pb, _gb) = b.device_ptr(stream);
    let pbias = extras.bias.map(|s| s.device_ptr(stream));
    let pres = extras.residual.map(|s| s.device_ptr(stream));
    let (pc, _gc) = out.device_ptr_mut(stream);
    let ptrs = GemmPtrs {
        a: pa,
        b: pb,
        bias: pbias.as_ref().map_or(0, |p| p.0),
        residual: pres.as_ref().map_or(0, |p| p.0),
        c: pc,
    };
    let epi = GemmEpilogue {
        scale: extras.scale,
        geglu: extras.geglu,
    };
    let params = GemmParams::new(op, ptrs, shape, layout, epi)?;
    let cfg = launch_config(shape, extras.geglu);
    // SAFETY: `GemmParams` mirrors `struct GemmParams` of gemm.cu (size asserted in
    // cyberhost-kernels); every pointer comes from a live `CudaSlice` of this device whose length
    // was checked above against the last element the shape and strides address.
    unsafe { dev.launch(KernelModule::Gemm, entry, cfg, &params) }
        .with_context(|| format!("{entry} M {} N {} K {}", shape.m, shape.n, shape.k))
}
