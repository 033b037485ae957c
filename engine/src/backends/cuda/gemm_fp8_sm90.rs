//! Launcher for `kernels/cuda/gemm_fp8_sm90.cu` (Hopper only): [`quantize_rows`] (bf16 rows ->
//! e4m3 codes + f32 row scales) and [`launch`] (`linear_fp8_sm90_v1_bf16`, the TMA + wgmma e4m3
//! GEMM with the scales and gemm_sm90's epilogue fused). The uint8 TMA maps are encoded with the
//! driver's `cuTensorMapEncodeTiled`. With `--weights-dtype fp8` ([`CudaBackend::set_weights_fp8`])
//! [`quantize_weight`] makes each linear weight's e4m3 copy at load (the same quantiser: one row =
//! one output channel) and [`linear`] runs the backend's bf16 linears on those weights.

use anyhow::{Context, Result};
use cudarc::driver::sys;
use cyberhost_kernels::gemm_fp8_sm90::{
    self, Fp8Epilogue, Fp8Ptrs, Fp8Shape, GemmFp8Params, QuantizeRowsParams, ENTRY, QUANTIZE_ENTRY,
};
use cyberhost_kernels::gemm_sm90::TmaTile;
use cyberhost_kernels::KernelModule;

use super::context::{CudaBackend, Fp8Weight};
use super::tensor::CudaTensor;
use super::CudaDevice;
use crate::backends::TensorLike;
use cyberhost_kernels::DType;

/// `t` as a uint8 (e4m3 codes) tensor map: [`super::gemm_sm90::encode_tensor_map`]'s settings.
pub fn encode_tensor_map_u8(t: &TmaTile) -> Result<[u64; 16]> {
    super::gemm_sm90::encode_tensor_map_as(
        t,
        sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_UINT8,
    )
}

/// `rows` bf16 rows of `k` at `x` (stride `ldx`) -> e4m3 rows at `q` (stride
/// [`gemm_fp8_sm90::ldq`]`(k)`) and f32 scales at `sa`. The caller allocated `q` and `sa`.
pub fn quantize_rows(
    dev: &CudaDevice,
    x: u64,
    q: u64,
    sa: u64,
    rows: u64,
    k: u64,
    ldx: u64,
) -> Result<()> {
    if rows == 0 {
        return Ok(());
    }
    let p = QuantizeRowsParams::new(x, q, sa, rows, k, ldx)?;
    let cfg = gemm_fp8_sm90::quantize_launch_config(rows, k);
    // SAFETY: `QuantizeRowsParams` mirrors the .cu struct; the caller sized x (rows x ldx bf16),
    // q (rows x ldq bytes) and sa (rows f32).
    unsafe { dev.launch(KernelModule::GemmFp8Sm90, QUANTIZE_ENTRY, cfg, &p) }
        .with_context(|| format!("{QUANTIZE_ENTRY} rows {rows} K {k}"))
}

/// `C = scale * (sa sb (QA . QB^T) + bias [GEGLU] + residual)` through `linear_fp8_sm90_v1_bf16`
/// for operands the caller sized to `s`.
pub fn launch(dev: &CudaDevice, p: Fp8Ptrs, s: Fp8Shape, epi: Fp8Epilogue) -> Result<()> {
    let [ta, tb] = gemm_fp8_sm90::tensor_maps(p, s, epi.geglu);
    let maps = [encode_tensor_map_u8(&ta)?, encode_tensor_map_u8(&tb)?];
    let params = GemmFp8Params::new(p, s, epi, maps)?;
    let cfg = gemm_fp8_sm90::launch_config(s, epi.geglu, dev.sm_count());
    // SAFETY: `GemmFp8Params` mirrors gemm_fp8_sm90.cu's struct (size and alignment asserted in
    // cyberhost-kernels); the caller sized every buffer to `s`, and the tensor maps cover exactly
    // those extents.
    unsafe { dev.launch(KernelModule::GemmFp8Sm90, ENTRY, cfg, &params) }
        .with_context(|| format!("{ENTRY} M {} N {} K {}", s.m, s.n, s.k))
}

/// An f32 tensor holding `bytes` bytes (e4m3 codes: the backend's tensors are f32 or bf16).
fn byte_buffer(be: &CudaBackend, bytes: usize) -> Result<CudaTensor> {
    be.alloc(&[bytes.div_ceil(4)], DType::F32)
}

/// Whether a `(.., k)` bf16 tensor feeds [`quantize_rows`]: 16-byte aligned rows of whole 16 bytes.
fn quantizable(be: &CudaBackend, t: &CudaTensor, k: usize) -> bool {
    t.dtype() == DType::Bf16 && k > 0 && k % 8 == 0 && be.ptr(t) % 16 == 0
}

/// The e4m3 copy of linear weight `w` `(rows, k)` (per-row = per-output-channel scales), recorded
/// for [`linear`]. A weight the quantiser cannot take (f32, K not a multiple of 8) stays bf16.
pub(crate) fn quantize_weight(be: &CudaBackend, w: &CudaTensor) -> Result<()> {
    let (rows, k) = match w.shape() {
        [rows, k] => (*rows, *k),
        s => anyhow::bail!("prepare_linear_weight: weight {s:?} is not (out, in)"),
    };
    if rows == 0 || !quantizable(be, w, k) {
        return Ok(());
    }
    let ldq = gemm_fp8_sm90::ldq(k as u64) as usize;
    let q = byte_buffer(be, rows * ldq)?;
    let s = be.alloc(&[rows], DType::F32)?;
    let dev = be.device();
    quantize_rows(
        dev,
        be.ptr(w),
        be.ptr(&q),
        be.ptr(&s),
        rows as u64,
        k as u64,
        k as u64,
    )?;
    be.insert_fp8_weight(Fp8Weight {
        _weight: w.clone(),
        q,
        s,
        rows,
        k,
    });
    Ok(())
}

/// The e4m3 rows of a bf16 activation: codes `(m, ldq(k))` and f32 row scales `(m)`.
struct RowsE4m3 {
    m: usize,
    k: usize,
    q: CudaTensor,
    s: CudaTensor,
}

/// `x (m, k)` quantised per row, once per buffer: the rows are kept in the buffer's memo (the
/// bytes cannot change while shared), so the q / k / v projections of the same tokens quantise
/// them once. A memo of another view (other `m`, `k`) is not used: those rows are made afresh.
fn quantized_rows(
    be: &CudaBackend,
    x: &CudaTensor,
    m: usize,
    k: usize,
) -> Result<std::sync::Arc<RowsE4m3>> {
    use std::sync::Arc;
    let memo = x.memo();
    if let Some(r) = memo.get().and_then(|b| b.downcast_ref::<Arc<RowsE4m3>>()) {
        if r.m == m && r.k == k {
            return Ok(r.clone());
        }
    }
    let ldq = gemm_fp8_sm90::ldq(k as u64);
    let rows = Arc::new(RowsE4m3 {
        m,
        k,
        q: byte_buffer(be, m * ldq as usize)?,
        s: be.alloc(&[m], DType::F32)?,
    });
    quantize_rows(
        be.device(),
        be.ptr(x),
        be.ptr(&rows.q),
        be.ptr(&rows.s),
        m as u64,
        k as u64,
        k as u64,
    )?;
    // first quantisation of this buffer wins the memo; a different view's rows are not kept
    let _ = memo.set(Box::new(rows.clone()));
    Ok(rows)
}

/// `scale * (x . w^T + bias [GEGLU] + residual)` for bf16 `x` `(.., k)` on `w`'s e4m3 copy `f`:
/// x quantised per row (once per buffer: [`quantized_rows`]), then `linear_fp8_sm90_v1_bf16`. `residual`: `(M, N)` or none. `None`
/// when x does not fit the quantiser (the caller runs the bf16 GEMM).
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear(
    be: &CudaBackend,
    x: &CudaTensor,
    f: &Fp8Weight,
    bias: Option<&CudaTensor>,
    residual: Option<&CudaTensor>,
    scale: f32,
    geglu: bool,
    out_shape: &[usize],
) -> Result<Option<CudaTensor>> {
    let (m, k) = (x.elem_count() / f.k.max(1), f.k);
    let n = if geglu { f.rows / 2 } else { f.rows };
    let bf16 = |t: Option<&CudaTensor>| !matches!(t, Some(t) if t.dtype() != DType::Bf16);
    if !quantizable(be, x, k) || !bf16(bias) || !bf16(residual) || m == 0 {
        return Ok(None);
    }
    let ldq = gemm_fp8_sm90::ldq(k as u64);
    let rows = quantized_rows(be, x, m, k)?;
    let (qa, sa) = (&rows.q, &rows.s);
    let out = be.alloc(out_shape, DType::Bf16)?;
    let p = Fp8Ptrs {
        qa: be.ptr(qa),
        sa: be.ptr(sa),
        qb: be.ptr(&f.q),
        sb: be.ptr(&f.s),
        bias: bias.map_or(0, |b| be.ptr(b)),
        residual: residual.map_or(0, |r| be.ptr(r)),
        c: be.ptr(&out),
    };
    let s = Fp8Shape {
        m: m as u64,
        n: n as u64,
        k: k as u64,
        ldq,
        ldr: n as u64,
        ldc: n as u64,
    };
    launch(be.device(), p, s, Fp8Epilogue { scale, geglu })?;
    Ok(Some(out))
}
