//! Initialisation, version and error strings, the device, contexts (primary and created).

use crate::*;

// ------------------------------------------------------------------------------------------------
// Initialisation, version, errors

#[no_mangle]
pub extern "C" fn cuInit(_flags: c_uint) -> CUresult {
    entry("cuInit", || {
        INITIALIZED.store(true, Ordering::Release);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(version: *mut c_int) -> CUresult {
    entry("cuDriverGetVersion", || unsafe {
        out(version, device::DRIVER_VERSION)
    })
}

/// `cuGetErrorName` (`string` false) or `cuGetErrorString` (true): the text of `error` into `p`,
/// null and `CUDA_ERROR_INVALID_VALUE` for an unknown code.
unsafe fn error_text(call: &str, string: bool, error: CUresult, p: *mut *const c_char) -> CUresult {
    match errors::describe(error) {
        Some((name, s)) => entry(call, || unsafe { out(p, if string { s } else { name }) }),
        None => {
            let _ = unsafe { out(p, std::ptr::null()) };
            CUDA_ERROR_INVALID_VALUE
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorName(error: CUresult, p: *mut *const c_char) -> CUresult {
    unsafe { error_text("cuGetErrorName", false, error, p) }
}

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorString(error: CUresult, p: *mut *const c_char) -> CUresult {
    unsafe { error_text("cuGetErrorString", true, error, p) }
}

// ------------------------------------------------------------------------------------------------
// Device

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    entry("cuDeviceGetCount", || {
        need_init()?;
        unsafe { out(count, 1) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(dev: *mut CUdevice, ordinal: c_int) -> CUresult {
    entry("cuDeviceGet", || {
        check_device(ordinal)?;
        unsafe { out(dev, 0) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    entry("cuDeviceGetName", || {
        check_device(dev)?;
        if name.is_null() || len <= 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let name_s = device::name();
        let bytes = name_s.as_bytes();
        let n = bytes.len().min(len as usize - 1);
        // SAFETY: `name` has room for `len` bytes per the API contract; we write n + 1 <= len.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), name as *mut u8, n);
            *name.add(n) = 0;
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    entry("cuDeviceTotalMem_v2", || {
        check_device(dev)?;
        unsafe { out(bytes, device::TOTAL_MEM) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    pi: *mut c_int,
    attrib: c_int,
    dev: CUdevice,
) -> CUresult {
    entry("cuDeviceGetAttribute", || {
        check_device(dev)?;
        let v = device::attribute(attrib).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        unsafe { out(pi, v) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceComputeCapability(
    major: *mut c_int,
    minor: *mut c_int,
    dev: CUdevice,
) -> CUresult {
    entry("cuDeviceComputeCapability", || {
        check_device(dev)?;
        unsafe {
            out(major, 9)?;
            out(minor, 0)
        }
    })
}

/// A fixed UUID whose text spells "ptx-emu-stand-in".
const UUID: [u8; 16] = *b"ptx-emu-stand-in";

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    entry("cuDeviceGetUuid", || {
        check_device(dev)?;
        unsafe { out(uuid, UUID) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    unsafe { cuDeviceGetUuid(uuid, dev) }
}

// ------------------------------------------------------------------------------------------------
// Contexts

pub(crate) fn push_current(ctx: Handle) {
    CURRENT.with(|c| c.borrow_mut().push(ctx));
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut Ptr, dev: CUdevice) -> CUresult {
    entry("cuDevicePrimaryCtxRetain", || {
        check_device(dev)?;
        let mut reg = registry();
        let ctx = match reg.primary {
            Some((ctx, n)) => {
                reg.primary = Some((ctx, n + 1));
                ctx
            }
            None => {
                let ctx = reg.new_context();
                reg.primary = Some((ctx, 1));
                ctx
            }
        };
        unsafe { out(pctx, ptr(ctx)) }
    })
}

pub(crate) fn primary_release(dev: CUdevice) -> Result<(), CUresult> {
    check_device(dev)?;
    let mut reg = registry();
    match reg.primary {
        Some((ctx, 1)) => {
            reg.primary = None;
            reg.destroy_context(ctx);
            Ok(())
        }
        Some((ctx, n)) => {
            reg.primary = Some((ctx, n - 1));
            Ok(())
        }
        None => Err(CUDA_ERROR_INVALID_CONTEXT),
    }
}

aliases! {
    [cuDevicePrimaryCtxRelease_v2, cuDevicePrimaryCtxRelease](dev: CUdevice) => primary_release(dev);
}

pub(crate) fn primary_reset(dev: CUdevice) -> Result<(), CUresult> {
    check_device(dev)?;
    let reg = registry();
    if let Some((ctx, _)) = reg.primary {
        // Keep the handle (it stays retained) but drop every resource and the sticky error.
        let cell = reg
            .contexts
            .get(&ctx)
            .cloned()
            .ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
        drop(reg);
        *lock(&cell) = Ctx::new(ctx);
        let mut reg = registry();
        reg.owner
            .retain(|&k, &mut (kind, owner)| owner != ctx || kind == Kind::Context || k == ctx);
    }
    Ok(())
}

aliases! {
    [cuDevicePrimaryCtxReset_v2, cuDevicePrimaryCtxReset](dev: CUdevice) => primary_reset(dev);
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxGetState(
    dev: CUdevice,
    flags: *mut c_uint,
    active: *mut c_int,
) -> CUresult {
    entry("cuDevicePrimaryCtxGetState", || {
        check_device(dev)?;
        let active_now = registry().primary.is_some();
        unsafe {
            out(flags, 0)?;
            out(active, active_now as c_int)
        }
    })
}

#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxSetFlags_v2(dev: CUdevice, _flags: c_uint) -> CUresult {
    entry("cuDevicePrimaryCtxSetFlags_v2", || check_device(dev))
}

pub(crate) fn ctx_create(pctx: *mut Ptr, flags: c_uint, dev: CUdevice) -> Result<(), CUresult> {
    check_device(dev)?;
    if pctx.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let ctx = registry().new_context();
    if let Some(c) = registry().contexts.get(&ctx).cloned() {
        lock(&c).flags = flags;
    }
    push_current(ctx);
    unsafe { out(pctx, ptr(ctx)) }
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v2(pctx: *mut Ptr, flags: c_uint, dev: CUdevice) -> CUresult {
    entry("cuCtxCreate_v2", || ctx_create(pctx, flags, dev))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v3(
    pctx: *mut Ptr,
    _params: Ptr,
    _n: c_int,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    entry("cuCtxCreate_v3", || ctx_create(pctx, flags, dev))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v4(
    pctx: *mut Ptr,
    params: Ptr,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    if !params.is_null() {
        return unsupported("cuCtxCreate_v4 (with CUctxCreateParams)");
    }
    entry("cuCtxCreate_v4", || ctx_create(pctx, flags, dev))
}

#[no_mangle]
pub extern "C" fn cuCtxDestroy_v2(ctx: Ptr) -> CUresult {
    entry("cuCtxDestroy_v2", || {
        need_init()?;
        let mut reg = registry();
        reg.owner_of(h(ctx), Kind::Context)?;
        if matches!(reg.primary, Some((p, _)) if p == h(ctx)) {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        reg.destroy_context(h(ctx));
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCurrent(pctx: *mut Ptr) -> CUresult {
    entry("cuCtxGetCurrent", || {
        need_init()?;
        unsafe { out(pctx, ptr(current().unwrap_or(0))) }
    })
}

#[no_mangle]
pub extern "C" fn cuCtxSetCurrent(ctx: Ptr) -> CUresult {
    entry("cuCtxSetCurrent", || {
        need_init()?;
        if ctx.is_null() {
            CURRENT.with(|c| c.borrow_mut().pop());
            return Ok(());
        }
        registry().owner_of(h(ctx), Kind::Context)?;
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            c.pop();
            c.push(h(ctx));
        });
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn cuCtxPushCurrent_v2(ctx: Ptr) -> CUresult {
    entry("cuCtxPushCurrent_v2", || {
        owner(ctx, Kind::Context)?;
        push_current(h(ctx));
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(pctx: *mut Ptr) -> CUresult {
    entry("cuCtxPopCurrent_v2", || {
        need_init()?;
        let top = CURRENT
            .with(|c| c.borrow_mut().pop())
            .ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
        if !pctx.is_null() {
            unsafe { out(pctx, ptr(top))? };
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice(dev: *mut CUdevice) -> CUresult {
    entry("cuCtxGetDevice", || {
        current_ctx()?;
        unsafe { out(dev, 0) }
    })
}

#[no_mangle]
pub extern "C" fn cuCtxSynchronize() -> CUresult {
    entry("cuCtxSynchronize", || {
        profile::flush();
        let ctx = current_ctx()?;
        let mut ctx = lock(&ctx);
        ctx.check()?;
        ctx.forbid_unsafe_call()
    })
}

#[no_mangle]
pub extern "C" fn cuCtxSetFlags(flags: c_uint) -> CUresult {
    entry("cuCtxSetFlags", || with_current(|c| c.flags = flags))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetFlags(flags: *mut c_uint) -> CUresult {
    unsafe { current_out("cuCtxGetFlags", flags, |c| c.flags) }
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetLimit(value: *mut usize, limit: c_int) -> CUresult {
    entry("cuCtxGetLimit", || {
        let v = with_current(|c| c.limits.get(&limit).copied())?;
        // Defaults: stack 1 KiB, printf FIFO 1 MiB, malloc heap 8 MiB, others 0.
        let v = v.unwrap_or(match limit {
            0 => 1024,
            1 => 1 << 20,
            2 => 8 << 20,
            _ => 0,
        });
        unsafe { out(value, v) }
    })
}

#[no_mangle]
pub extern "C" fn cuCtxSetLimit(limit: c_int, value: usize) -> CUresult {
    entry("cuCtxSetLimit", || {
        with_current(|c| {
            c.limits.insert(limit, value);
        })
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCacheConfig(config: *mut c_int) -> CUresult {
    unsafe { current_out("cuCtxGetCacheConfig", config, |c| c.cache_config) }
}

/// Driver call `name`: `*p = get(the current context)`.
unsafe fn current_out<T>(name: &str, p: *mut T, get: impl FnOnce(&mut Ctx) -> T) -> CUresult {
    entry(name, || {
        let v = with_current(get)?;
        unsafe { out(p, v) }
    })
}

#[no_mangle]
pub extern "C" fn cuCtxSetCacheConfig(config: c_int) -> CUresult {
    entry("cuCtxSetCacheConfig", || {
        with_current(|c| c.cache_config = config)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetStreamPriorityRange(
    least: *mut c_int,
    greatest: *mut c_int,
) -> CUresult {
    entry("cuCtxGetStreamPriorityRange", || {
        current_ctx()?;
        unsafe {
            out_opt(least, 0)?;
            out_opt(greatest, -5)?;
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetApiVersion(ctx: Ptr, version: *mut c_uint) -> CUresult {
    entry("cuCtxGetApiVersion", || {
        need_init()?;
        if !ctx.is_null() {
            registry().owner_of(h(ctx), Kind::Context)?;
        }
        unsafe { out(version, 12040) }
    })
}
