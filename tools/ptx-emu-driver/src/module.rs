//! Modules (PTX text, parsed and decoded once per load) and functions.

use crate::*;

// ------------------------------------------------------------------------------------------------
// Modules and functions

pub(crate) fn ptx_version(ptx: &str) -> i32 {
    // `.version 8.4` -> 84
    ptx.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(".version"))
        .and_then(|v| {
            let mut it = v.trim().split('.');
            let major: i32 = it.next()?.trim().parse().ok()?;
            let minor: i32 = it.next()?.trim().parse().ok()?;
            Some(major * 10 + minor)
        })
        .unwrap_or(0)
}

pub(crate) fn load_module(pmod: *mut Ptr, image: *const u8, name: &str) -> Result<(), CUresult> {
    let ctx_cell = current_ctx()?;
    if image.is_null() || pmod.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: the image is read only up to its first 4 bytes before we know it is text.
    let head = unsafe { std::slice::from_raw_parts(image, 4) };
    if head == b"\x7fELF" || head == [0x50, 0xed, 0x55, 0xba] || head == [0x46, 0x62, 0x43, 0x46] {
        eprintln!("ptx-emu-driver: {name}: cubin/fatbin images are not supported; load PTX text");
        return Err(CUDA_ERROR_NO_BINARY_FOR_GPU);
    }
    // SAFETY: a PTX image is a NUL-terminated string (CUDA API contract).
    let text = unsafe { CStr::from_ptr(image as *const c_char) };
    let text = text.to_str().map_err(|_| {
        eprintln!("ptx-emu-driver: {name}: PTX image is not UTF-8");
        CUDA_ERROR_INVALID_PTX
    })?;
    load_module_text(&ctx_cell, pmod, text, name)
}

pub(crate) fn load_module_text(
    ctx_cell: &Arc<Mutex<Ctx>>,
    pmod: *mut Ptr,
    text: &str,
    name: &str,
) -> Result<(), CUresult> {
    lock(ctx_cell).check()?;
    let module = Module::parse(text).map_err(|e| {
        eprintln!("ptx-emu-driver: {name}: PTX parse error: {e}");
        CUDA_ERROR_INVALID_PTX
    })?;
    // As the real driver's PTX JIT (ptxas: "SM version specified by .target is higher than
    // default SM version assumed"): PTX the device cannot run fails with CUDA_ERROR_INVALID_PTX.
    module.check_arch(device::arch()).map_err(|why| {
        eprintln!("ptx-emu-driver: {name}: {why}");
        CUDA_ERROR_INVALID_PTX
    })?;
    bump(&counters().module_loads);
    profile::note_module(&module, text);
    let ctx_handle = lock(ctx_cell).handle;
    let mh = registry().new_handle(Kind::Module, ctx_handle);
    let mut ctx = lock(ctx_cell);
    let globals = bind_globals(&mut ctx, &module)?;
    ctx.modules.insert(
        mh,
        ModuleState {
            module: Arc::new(module),
            ptx_version: ptx_version(text),
            globals,
        },
    );
    unsafe { out(pmod, ptr(mh)) }
}

/// Module-scope `.global`/`.const` variables: allocate and initialise them in this context's
/// memory now (so `cuModuleGetGlobal` can hand out their addresses); name -> (address, size).
pub(crate) fn bind_globals(
    ctx: &mut Ctx,
    module: &Module,
) -> Result<std::collections::HashMap<String, (u64, usize)>, CUresult> {
    let sizes: std::collections::HashMap<String, usize> = module
        .globals()
        .into_iter()
        .map(|g| (g.name, g.size))
        .collect();
    let placed = ctx.mem.load_module_globals(module).map_err(|e| {
        eprintln!("ptx-emu-driver: cannot allocate module globals: {e}");
        CUDA_ERROR_OUT_OF_MEMORY
    })?;
    Ok(placed
        .into_iter()
        .map(|(name, addr)| {
            let size = sizes.get(&name).copied().unwrap_or(0);
            (name, (addr, size))
        })
        .collect())
}

/// A NUL-terminated name argument (`CUDA_ERROR_INVALID_VALUE` when null).
fn name_arg(name: *const c_char) -> Result<String, CUresult> {
    if name.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: NUL-terminated name per the API contract.
    Ok(unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned())
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadData(pmod: *mut Ptr, image: *const c_void) -> CUresult {
    entry("cuModuleLoadData", || {
        load_module(pmod, image as *const u8, "cuModuleLoadData")
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadDataEx(
    pmod: *mut Ptr,
    image: *const c_void,
    _num_options: c_uint,
    _options: Ptr,
    _values: *mut Ptr,
) -> CUresult {
    entry("cuModuleLoadDataEx", || {
        load_module(pmod, image as *const u8, "cuModuleLoadDataEx")
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoad(pmod: *mut Ptr, fname: *const c_char) -> CUresult {
    entry("cuModuleLoad", || {
        let ctx = current_ctx()?;
        if fname.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: NUL-terminated path per the API contract.
        let path = unsafe { CStr::from_ptr(fname) }
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            eprintln!("ptx-emu-driver: cuModuleLoad: cannot read {path}: {e}");
            CUDA_ERROR_FILE_NOT_FOUND
        })?;
        load_module_text(&ctx, pmod, &text, "cuModuleLoad")
    })
}

#[no_mangle]
pub extern "C" fn cuModuleUnload(module: Ptr) -> CUresult {
    entry("cuModuleUnload", || {
        let cell = owner(module, Kind::Module)?;
        let mut ctx = lock(&cell);
        let m = ctx
            .modules
            .remove(&h(module))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        for (addr, _) in m.globals.values() {
            let _ = ctx.mem.free(*addr);
        }
        let dead: Vec<Handle> = ctx
            .functions
            .iter()
            .filter(|(_, f)| f.module == h(module))
            .map(|(&k, _)| k)
            .collect();
        for f in &dead {
            ctx.functions.remove(f);
        }
        drop(ctx);
        let mut reg = registry();
        reg.owner.remove(&h(module));
        for f in dead {
            reg.owner.remove(&f);
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunction(
    pfunc: *mut Ptr,
    module: Ptr,
    name: *const c_char,
) -> CUresult {
    entry("cuModuleGetFunction", || {
        need_init()?;
        if pfunc.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let name = name_arg(name)?;
        let cell = registry().owner_of(h(module), Kind::Module)?;
        let ctx_handle = {
            let ctx = lock(&cell);
            ctx.check()?;
            let m = ctx.module(h(module))?;
            if !m.module.kernel_names().contains(&name) {
                return Err(CUDA_ERROR_NOT_FOUND);
            }
            ctx.handle
        };
        let fh = registry().new_handle(Kind::Function, ctx_handle);
        let mut ctx = lock(&cell);
        let static_smem = ctx
            .modules
            .get(&h(module))
            .and_then(|m| m.module.static_shared_bytes(&name))
            .unwrap_or(0) as u32;
        // As on hardware: without opt-in, static + dynamic shared memory must fit in 48 KiB.
        let max_dynamic_smem = device::SMEM_PER_BLOCK.saturating_sub(static_smem);
        ctx.functions.insert(
            fh,
            FunctionState {
                module: h(module),
                kernel: name,
                max_dynamic_smem,
                non_portable_cluster: false,
            },
        );
        unsafe { out(pfunc, ptr(fh)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleGetGlobal_v2(
    dptr: *mut CUdeviceptr,
    bytes: *mut usize,
    module: Ptr,
    name: *const c_char,
) -> CUresult {
    entry("cuModuleGetGlobal_v2", || {
        need_init()?;
        let name = name_arg(name)?;
        let cell = registry().owner_of(h(module), Kind::Module)?;
        let ctx = lock(&cell);
        ctx.check()?;
        let m = ctx.module(h(module))?;
        let &(addr, size) = m.globals.get(&name).ok_or(CUDA_ERROR_NOT_FOUND)?;
        unsafe {
            out_opt(dptr, addr)?;
            out_opt(bytes, size)?;
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncGetAttribute(pi: *mut c_int, attrib: c_int, func: Ptr) -> CUresult {
    entry("cuFuncGetAttribute", || {
        let cell = owner(func, Kind::Function)?;
        let ctx = lock(&cell);
        ctx.check()?;
        let (f, m) = ctx.function_module(h(func))?;
        let static_smem = m.module.static_shared_bytes(&f.kernel).unwrap_or(0) as c_int;
        let local = m.module.local_bytes(&f.kernel).unwrap_or(0) as c_int;
        let v = match attrib {
            0 => device::MAX_THREADS_PER_BLOCK as c_int, // MAX_THREADS_PER_BLOCK
            1 => static_smem,                            // SHARED_SIZE_BYTES
            2 => 0,                                      // CONST_SIZE_BYTES
            3 => local,                                  // LOCAL_SIZE_BYTES
            4 => 0, // NUM_REGS: no register allocation in an interpreter (documented)
            5 => m.ptx_version, // PTX_VERSION
            6 => {
                let (a, b) = device::arch().limits().cc;
                (a * 10 + b) as c_int
            } // BINARY_VERSION
            7 => 0, // CACHE_MODE_CA
            8 => f.max_dynamic_smem as c_int, // MAX_DYNAMIC_SHARED_SIZE_BYTES
            9 => -1, // PREFERRED_SHARED_MEMORY_CARVEOUT
            10..=16 => 0, // cluster attributes: none
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        };
        unsafe { out(pi, v) }
    })
}

#[no_mangle]
pub extern "C" fn cuFuncSetAttribute(func: Ptr, attrib: c_int, value: c_int) -> CUresult {
    entry("cuFuncSetAttribute", || {
        let cell = owner(func, Kind::Function)?;
        let mut ctx = lock(&cell);
        ctx.check()?;
        let static_smem = {
            let (f, m) = ctx.function_module(h(func))?;
            m.module.static_shared_bytes(&f.kernel).unwrap_or(0) as u32
        };
        let f = ctx
            .functions
            .get_mut(&h(func))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        match attrib {
            8 => {
                if value < 0 || value as u32 + static_smem > device::smem_per_block_optin() {
                    return Err(CUDA_ERROR_INVALID_VALUE);
                }
                f.max_dynamic_smem = value as u32;
                Ok(())
            }
            9 => Ok(()), // carveout preference: accepted, no effect
            14 => {
                // NON_PORTABLE_CLUSTER_SIZE_ALLOWED
                f.non_portable_cluster = value != 0;
                Ok(())
            }
            15 => Ok(()), // cluster scheduling policy: accepted, no effect
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    })
}

#[no_mangle]
pub extern "C" fn cuFuncSetCacheConfig(func: Ptr, _config: c_int) -> CUresult {
    entry("cuFuncSetCacheConfig", || {
        owner(func, Kind::Function)?;
        Ok(())
    })
}
