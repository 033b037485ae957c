//! `cuTensorMapEncodeTiled` (TMA descriptors) and `cuLaunchKernelEx` (launch attributes).
//!
//! The 128-byte `CUtensorMap` is the emulator's own encoding (`ptx_emu::tensor_map`); the
//! argument checks are the ones the CUDA 12.4 driver API documents, failing with
//! `CUDA_ERROR_INVALID_VALUE`. `cuLaunchKernelEx` takes the `CUlaunchConfig` of CUDA 12 (the
//! layout of cudarc 0.19's `CUlaunchConfig_st` / `CUlaunchAttribute_st`).

use crate::*;
use ptx_emu::tensor_map::TensorMap;

/// `CUlaunchAttribute`: id, 4 bytes of padding, a 64-byte value union.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CUlaunchAttribute {
    pub id: u32,
    pub pad: [u8; 4],
    pub value: [u64; 8],
}

/// `CUlaunchConfig`.
#[repr(C)]
pub struct CUlaunchConfig {
    pub grid_dim: [c_uint; 3],
    pub block_dim: [c_uint; 3],
    pub shared_mem_bytes: c_uint,
    pub h_stream: Ptr,
    pub attrs: *mut CUlaunchAttribute,
    pub num_attrs: c_uint,
}

/// `CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION`.
pub const LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION: u32 = 4;

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn cuTensorMapEncodeTiled(
    tensor_map: *mut u8,
    dtype: c_uint,
    rank: c_uint,
    global_address: *mut c_void,
    global_dim: *const u64,
    global_strides: *const u64,
    box_dim: *const u32,
    element_strides: *const u32,
    interleave: c_uint,
    swizzle: c_uint,
    l2_promotion: c_uint,
    oob_fill: c_uint,
) -> CUresult {
    entry("cuTensorMapEncodeTiled", || {
        if tensor_map.is_null()
            || global_dim.is_null()
            || box_dim.is_null()
            || element_strides.is_null()
            || (rank > 1 && global_strides.is_null())
            || !(1..=5).contains(&rank)
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if !(tensor_map as usize).is_multiple_of(64) {
            eprintln!(
                "ptx-emu-driver: cuTensorMapEncodeTiled: the CUtensorMap must be 64-byte aligned"
            );
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let r = rank as usize;
        // SAFETY: arrays of `rank` (strides: rank - 1) entries per the API contract.
        let (gd, gs, bd, es) = unsafe {
            (
                std::slice::from_raw_parts(global_dim, r),
                if r > 1 {
                    std::slice::from_raw_parts(global_strides, r - 1)
                } else {
                    &[][..]
                },
                std::slice::from_raw_parts(box_dim, r),
                std::slice::from_raw_parts(element_strides, r),
            )
        };
        let m = TensorMap::encode_tiled(
            dtype,
            rank,
            global_address as u64,
            gd,
            gs,
            bd,
            es,
            interleave,
            swizzle,
            l2_promotion,
            oob_fill,
        )
        .map_err(|why| {
            eprintln!("ptx-emu-driver: cuTensorMapEncodeTiled: {why}");
            CUDA_ERROR_INVALID_VALUE
        })?;
        let bytes = m.to_bytes();
        // SAFETY: a CUtensorMap is 128 bytes (checked non-null and aligned above).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), tensor_map, 128) };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernelEx(
    config: *const CUlaunchConfig,
    func: Ptr,
    kernel_params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let r = (|| {
        if config.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: a valid CUlaunchConfig per the API contract.
        let c = unsafe { &*config };
        let attrs: &[CUlaunchAttribute] = if c.num_attrs == 0 {
            &[]
        } else if c.attrs.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        } else {
            // SAFETY: `numAttrs` attributes at `attrs` per the API contract.
            unsafe { std::slice::from_raw_parts(c.attrs, c.num_attrs as usize) }
        };
        let mut cluster = [1u32; 3];
        for a in attrs {
            if a.id == LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION {
                let v = a.value[0];
                cluster = [v as u32, (v >> 32) as u32, a.value[1] as u32];
            }
            // other attributes (priority, access policy, programmatic serialization, ...) only
            // tune scheduling: accepted without effect.
        }
        Ok((c, cluster))
    })();
    match r {
        Err(e) => entry("cuLaunchKernelEx", || Err(e)),
        // SAFETY: forwarded arguments, same contract as cuLaunchKernel.
        Ok((c, cluster)) => unsafe {
            crate::launch::launch_with_cluster(
                func,
                c.grid_dim,
                c.block_dim,
                c.shared_mem_bytes,
                c.h_stream,
                kernel_params,
                extra,
                cluster,
            )
        },
    }
}
