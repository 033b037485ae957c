//! Device memory: allocation, copies, memsets.

use crate::*;

// ------------------------------------------------------------------------------------------------
// Memory

pub(crate) fn alloc_in(ctx: &mut Ctx, bytes: usize) -> Result<u64, CUresult> {
    if ctx.mem.bytes_in_use().saturating_add(bytes) > device::TOTAL_MEM {
        return Err(CUDA_ERROR_OUT_OF_MEMORY);
    }
    bump(&counters().alloc_calls);
    ctx.mem.alloc(bytes).map_err(|e| {
        eprintln!("ptx-emu-driver: allocation of {bytes} B failed: {e}");
        CUDA_ERROR_OUT_OF_MEMORY
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytes: usize) -> CUresult {
    entry("cuMemAlloc_v2", || {
        let cell = current_ctx()?;
        let mut ctx = lock(&cell);
        ctx.check()?;
        ctx.forbid_unsafe_call()?;
        if bytes == 0 || dptr.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let a = alloc_in(&mut ctx, bytes)?;
        unsafe { out(dptr, a) }
    })
}

#[no_mangle]
pub extern "C" fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    entry("cuMemFree_v2", || {
        let cell = current_ctx()?;
        let mut ctx = lock(&cell);
        ctx.check()?;
        ctx.forbid_unsafe_call()?;
        if dptr == 0 {
            return Ok(());
        }
        bump(&counters().free_calls);
        ctx.mem.free(dptr).map_err(|e| mem_err("cuMemFree", e))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    bytes: usize,
    stream: Ptr,
) -> CUresult {
    entry("cuMemAllocAsync", || {
        let (cell, s) = stream_ctx(stream)?;
        let mut ctx = lock(&cell);
        ctx.check()?;
        if bytes == 0 {
            // cudarc's `CudaStream::null()` allocates 0 bytes; hand out the null pointer.
            return unsafe { out(dptr, 0) };
        }
        ctx.capture_of(s)?;
        let a = alloc_in(&mut ctx, bytes)?;
        if let Some(cap) = ctx.capture_of(s)? {
            // A graph allocation node: the memory belongs to the graph (freed when it is destroyed).
            cap.allocs.push(a);
        }
        unsafe { out(dptr, a) }
    })
}

#[no_mangle]
pub extern "C" fn cuMemFreeAsync(dptr: CUdeviceptr, stream: Ptr) -> CUresult {
    entry("cuMemFreeAsync", || {
        let (cell, s) = stream_ctx(stream)?;
        let mut ctx = lock(&cell);
        ctx.check()?;
        if dptr == 0 {
            return Ok(());
        }
        bump(&counters().free_calls);
        if let Some(cap) = ctx.capture_of(s)? {
            if cap.allocs.contains(&dptr) {
                // Freed inside the graph: stays reserved until the graph is destroyed.
                return Ok(());
            }
            cap.invalidated.get_or_insert(CUDA_ERROR_NOT_SUPPORTED);
            return Err(unsupported(
                "cuMemFreeAsync (in capture) of memory not allocated in the capture",
            ));
        }
        ctx.mem.free(dptr).map_err(|e| mem_err("cuMemFreeAsync", e))
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    entry("cuMemGetInfo_v2", || {
        let cell = current_ctx()?;
        let used = lock(&cell).mem.bytes_in_use();
        unsafe {
            out(free, device::TOTAL_MEM.saturating_sub(used))?;
            out(total, device::TOTAL_MEM)
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(
    dst: CUdeviceptr,
    src: *const c_void,
    bytes: usize,
) -> CUresult {
    entry("cuMemcpyHtoD_v2", || {
        submit_sync(Op::HtoD {
            dst,
            src: HostPtr(src as *mut u8),
            bytes,
        })
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(
    dst: *mut c_void,
    src: CUdeviceptr,
    bytes: usize,
) -> CUresult {
    entry("cuMemcpyDtoH_v2", || {
        submit_sync(Op::DtoH {
            dst: HostPtr(dst as *mut u8),
            src,
            bytes,
        })
    })
}

#[no_mangle]
pub extern "C" fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize) -> CUresult {
    entry("cuMemcpyDtoD_v2", || {
        submit_sync(Op::DtoD { dst, src, bytes })
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(
    dst: CUdeviceptr,
    src: *const c_void,
    bytes: usize,
    stream: Ptr,
) -> CUresult {
    entry("cuMemcpyHtoDAsync_v2", || {
        submit(
            stream,
            Op::HtoD {
                dst,
                src: HostPtr(src as *mut u8),
                bytes,
            },
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(
    dst: *mut c_void,
    src: CUdeviceptr,
    bytes: usize,
    stream: Ptr,
) -> CUresult {
    entry("cuMemcpyDtoHAsync_v2", || {
        submit(
            stream,
            Op::DtoH {
                dst: HostPtr(dst as *mut u8),
                src,
                bytes,
            },
        )
    })
}

#[no_mangle]
pub extern "C" fn cuMemcpyDtoDAsync_v2(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    bytes: usize,
    stream: Ptr,
) -> CUresult {
    entry("cuMemcpyDtoDAsync_v2", || {
        submit(stream, Op::DtoD { dst, src, bytes })
    })
}

#[no_mangle]
pub extern "C" fn cuMemsetD8_v2(dst: CUdeviceptr, value: u8, count: usize) -> CUresult {
    entry("cuMemsetD8_v2", || {
        submit_sync(Op::MemsetD8 { dst, value, count })
    })
}

#[no_mangle]
pub extern "C" fn cuMemsetD32_v2(dst: CUdeviceptr, value: c_uint, count: usize) -> CUresult {
    entry("cuMemsetD32_v2", || {
        submit_sync(Op::MemsetD32 { dst, value, count })
    })
}

#[no_mangle]
pub extern "C" fn cuMemsetD8Async(
    dst: CUdeviceptr,
    value: u8,
    count: usize,
    stream: Ptr,
) -> CUresult {
    entry("cuMemsetD8Async", || {
        submit(stream, Op::MemsetD8 { dst, value, count })
    })
}

#[no_mangle]
pub extern "C" fn cuMemsetD32Async(
    dst: CUdeviceptr,
    value: c_uint,
    count: usize,
    stream: Ptr,
) -> CUresult {
    entry("cuMemsetD32Async", || {
        submit(stream, Op::MemsetD32 { dst, value, count })
    })
}
