//! Launcher for `kernels/cuda/gemm_sm90.cu` (`linear_sm90_v1_bf16`, Hopper only): the persistent
//! warp-specialised TMA + wgmma bf16 `linear`. [`launch`] encodes A's and B's TMA tensor maps with
//! the driver's `cuTensorMapEncodeTiled` (the stand-in implements it) into the params struct.
//! `gemm::launch` takes this path on [`Arch::Sm90a`](cyberhost_kernels::Arch) devices for the
//! linears [`gemm_sm90::supports`] accepts and keeps gemm.cu for everything else.

use anyhow::{ensure, Context, Result};
use cudarc::driver::sys;
use cyberhost_kernels::gemm::{GemmEpilogue, GemmLayout, GemmPtrs, GemmShape};
use cyberhost_kernels::gemm_sm90::{self, GemmSm90Params, PlanesExit, TmaTile, ENTRY};
use cyberhost_kernels::KernelModule;

use super::CudaDevice;

/// `t` encoded by the driver's `cuTensorMapEncodeTiled` (bf16, its rank, 128B swizzle, zero OOB
/// fill): the 128-byte `CUtensorMap` the kernel's TMA loads read.
pub fn encode_tensor_map(t: &TmaTile) -> Result<[u64; 16]> {
    encode_tensor_map_as(
        t,
        sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
    )
}

/// [`encode_tensor_map`] for elements of `dtype` (gemm_fp8_sm90: `UINT8` e4m3 bytes).
pub fn encode_tensor_map_as(t: &TmaTile, dtype: sys::CUtensorMapDataType) -> Result<[u64; 16]> {
    let mut map = sys::CUtensorMap { opaque: [0; 16] };
    let elem_strides = [1u32; 4];
    let (dims, strides, box_dim) = t.used();
    // SAFETY: `map` is a writable, 64-byte-aligned 128-byte CUtensorMap (cudarc declares it
    // `align(64)`); the arrays hold `rank` (strides: rank - 1) entries as the API requires. The
    // address is only recorded, not dereferenced.
    let r = unsafe {
        sys::cuTensorMapEncodeTiled(
            &mut map,
            dtype,
            t.rank,
            t.base as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            box_dim.as_ptr(),
            elem_strides.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
    };
    ensure!(
        r == sys::CUresult::CUDA_SUCCESS,
        "cuTensorMapEncodeTiled {t:?}: {r:?}"
    );
    Ok(map.opaque)
}

/// `C = scale * (A . B^T + bias [GEGLU] + residual)` through `linear_sm90_v1_bf16` for operands
/// the caller has checked against the shape and strides, and [`gemm_sm90::supports`].
pub fn launch(
    dev: &CudaDevice,
    ptrs: GemmPtrs,
    shape: GemmShape,
    layout: GemmLayout,
    epi: GemmEpilogue,
) -> Result<()> {
    let sched = gemm_sm90::schedule(shape, epi.geglu, dev.sm_count(), dev.l2_bytes());
    let [ta, tb] = gemm_sm90::tensor_maps(ptrs, shape, layout, epi.geglu, sched);
    let maps = [encode_tensor_map(&ta)?, encode_tensor_map(&tb)?];
    let p = GemmSm90Params::new(ptrs, shape, layout, epi, maps, sched)?;
    let cfg = gemm_sm90::launch_config(sched, shape);
    // SAFETY: `GemmSm90Params` mirrors gemm_sm90.cu's struct (size and alignment asserted in
    // cyberhost-kernels); the caller checked every buffer against the last element the shape and
    // strides address, and the tensor maps cover exactly those extents.
    unsafe { dev.launch(KernelModule::GemmSm90, ENTRY, cfg, &p) }
        .with_context(|| format!("{ENTRY} M {} N {} K {}", shape.m, shape.n, shape.k))
}

/// `exit` ([`PlanesExit`]: tokens `. W^T + bias` as planes `+` the residual planes) through
/// `linear_sm90_v1_bf16`'s planes epilogue, for operands the caller has checked against the
/// exit's extents and [`gemm_sm90::supports`] (of `exit.shape()`, `exit.layout()`).
pub fn launch_planes(
    dev: &CudaDevice,
    ptrs: GemmPtrs,
    exit: PlanesExit,
    epi: GemmEpilogue,
) -> Result<()> {
    let (shape, layout) = (exit.shape(), exit.layout());
    let sched = gemm_sm90::schedule(shape, false, dev.sm_count(), dev.l2_bytes());
    let [ta, tb] = gemm_sm90::tensor_maps_framed(ptrs, shape, layout, false, sched, exit.frames);
    let maps = [encode_tensor_map(&ta)?, encode_tensor_map(&tb)?];
    let p = GemmSm90Params::planes(ptrs, exit, epi, maps, sched)?;
    let cfg = gemm_sm90::launch_config(sched, shape);
    // SAFETY: as `launch`; the caller checked the tokens, weight, bias, residual and output
    // buffers against the exit's extents, which the tensor maps and the planes epilogue address.
    unsafe { dev.launch(KernelModule::GemmSm90, ENTRY, cfg, &p) }
        .with_context(|| format!("{ENTRY} planes {exit:?}"))
}
