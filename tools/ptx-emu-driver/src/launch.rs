//! `cuLaunchKernel`.

use crate::*;

// ------------------------------------------------------------------------------------------------
// Launch

pub(crate) fn check_dims(grid: [u32; 3], block: [u32; 3]) -> Result<(), CUresult> {
    let threads = block.iter().map(|&b| b as u64).product::<u64>();
    let ok = threads >= 1
        && threads <= device::MAX_THREADS_PER_BLOCK as u64
        && (0..3).all(|i| block[i] >= 1 && block[i] <= device::MAX_BLOCK_DIM[i])
        && (0..3).all(|i| grid[i] >= 1 && grid[i] <= device::MAX_GRID_DIM[i]);
    if ok {
        Ok(())
    } else {
        eprintln!("ptx-emu-driver: cuLaunchKernel: invalid launch dimensions grid {grid:?} block {block:?}");
        Err(CUDA_ERROR_INVALID_VALUE)
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernel(
    func: Ptr,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shared_mem_bytes: c_uint,
    stream: Ptr,
    kernel_params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    // SAFETY: the caller's cuLaunchKernel contract.
    unsafe {
        launch_with_cluster(
            func,
            [gx, gy, gz],
            [bx, by, bz],
            shared_mem_bytes,
            stream,
            kernel_params,
            extra,
            [1, 1, 1],
        )
    }
}

/// `cuLaunchKernel` with thread-block clusters of `cluster` blocks (`cuLaunchKernelEx`): the
/// cluster must divide the grid and hold at most 8 blocks (16 when the function allows
/// non-portable cluster sizes).
///
/// # Safety
/// The arguments follow `cuLaunchKernel`'s contract.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn launch_with_cluster(
    func: Ptr,
    [gx, gy, gz]: [c_uint; 3],
    [bx, by, bz]: [c_uint; 3],
    shared_mem_bytes: c_uint,
    stream: Ptr,
    kernel_params: *mut *mut c_void,
    extra: *mut *mut c_void,
    cluster: [u32; 3],
) -> CUresult {
    entry("cuLaunchKernel", || {
        // taken first: a launch that fails leaves no split for the next one
        let pending_work = crate::extras::take_launch_work();
        need_init()?;
        if !extra.is_null() {
            return Err(unsupported(
                "cuLaunchKernel with `extra` (use kernelParams)",
            ));
        }
        let grid = [gx, gy, gz];
        let block = [bx, by, bz];
        check_dims(grid, block)?;
        let cell = registry().owner_of(h(func), Kind::Function)?;
        let (stream_cell, s) = stream_ctx(stream)?;
        if !Arc::ptr_eq(&cell, &stream_cell) {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        let mut ctx = lock(&cell);
        ctx.check()?;
        let f = ctx.function(h(func))?;
        let kernel = f.kernel.clone();
        let size: u64 = cluster.iter().map(|&c| c as u64).product();
        let limit = if f.non_portable_cluster { 16 } else { 8 };
        if cluster.contains(&0)
            || (0..3).any(|i| !grid[i].is_multiple_of(cluster[i]))
            || size > limit
        {
            eprintln!(
                "ptx-emu-driver: cuLaunchKernelEx {kernel}: cluster {cluster:?} must divide the grid {grid:?} and hold at most {limit} blocks (16 with CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED)"
            );
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if shared_mem_bytes > f.max_dynamic_smem {
            eprintln!(
                "ptx-emu-driver: cuLaunchKernel {kernel}: {shared_mem_bytes} B dynamic shared memory > \
                 limit {} B (raise it with cuFuncSetAttribute MAX_DYNAMIC_SHARED_SIZE_BYTES)",
                f.max_dynamic_smem
            );
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let module = ctx.module(f.module)?.module.clone();
        let infos = module.kernel_params(&kernel).ok_or(CUDA_ERROR_NOT_FOUND)?;
        if !infos.is_empty() && kernel_params.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut params = Vec::with_capacity(infos.len());
        for (i, p) in infos.iter().enumerate() {
            // SAFETY: kernelParams holds one pointer per kernel parameter, each to `size` bytes
            // (CUDA API contract, sizes from the PTX signature).
            let bytes = unsafe {
                let arg = *kernel_params.add(i) as *const u8;
                if arg.is_null() {
                    return Err(CUDA_ERROR_INVALID_VALUE);
                }
                std::slice::from_raw_parts(arg, p.size).to_vec()
            };
            params.push(bytes);
        }
        let total = grid.iter().map(|&g| u64::from(g)).product();
        let work = match pending_work {
            None => None,
            Some(runs) => Some(Arc::new(
                gpu_model::sampling::WorkSplit::from_runs(&runs, total).map_err(|e| {
                    eprintln!(
                        "ptx-emu-driver: cuLaunchKernel {kernel} grid {grid:?}: \
                         ptxemu_set_launch_work: {e}"
                    );
                    CUDA_ERROR_INVALID_VALUE
                })?,
            )),
        };
        let op = Op::Launch {
            module,
            kernel,
            grid,
            block,
            dynamic_smem_bytes: shared_mem_bytes,
            params,
            cluster,
            work,
        };
        if let Some(cap) = ctx.capture_of(s)? {
            cap.ops.push(op);
            return Ok(());
        }
        exec_op(&mut ctx, &op)
    })
}
