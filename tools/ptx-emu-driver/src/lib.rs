//! A stand-in CUDA driver: the subset of the `libcuda` C ABI that `cudarc` 0.19 calls, executing
//! PTX on the `ptx-emu` interpreter. See `docs/stand-in-driver.md`.
//!
//! - One device (ordinal 0), sm_90-like (`device.rs`).
//! - Everything runs synchronously on the calling thread: a launch returns after the kernel has
//!   run, and its fault (if any) is returned by the launch itself (real CUDA reports it later, at
//!   the next synchronising call). Stream and event "waits" are therefore no-ops.
//! - Stream capture records operations into a graph instead of running them; `cuGraphLaunch`
//!   replays them in order (captured host pointers are read/written at replay, as in CUDA).
//! - A kernel fault prints the fault to stderr and makes the context sticky-errored: every later
//!   call on it returns the same code until the context is destroyed (or the primary context is
//!   released/reset).
//! - Entry points this driver resolves but does not implement print their name and return
//!   `CUDA_ERROR_NOT_SUPPORTED` (801).
//! - `ptxemu_stats` (extra symbol) exposes call counters (allocations, launches, ...);
//!   `ptxemu_instruction_counts` the instructions kernels executed.
#![allow(
    non_snake_case,
    clippy::missing_safety_doc,
    clippy::not_unsafe_ptr_arg_deref
)]

pub mod device;
pub mod errors;
mod state;
pub mod unsupported;

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use ptx_emu::{LaunchConfig, LaunchOptions, Module};

use errors::*;
use state::*;

type CUdeviceptr = u64;
type CUdevice = c_int;
type Ptr = *mut c_void;

// ------------------------------------------------------------------------------------------------
// Plumbing

/// Run an entry point: map `Err` to its code, turn a panic into `CUDA_ERROR_UNKNOWN` (a panic must
/// never unwind into C).
fn entry(name: &str, f: impl FnOnce() -> Result<(), CUresult>) -> CUresult {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CUDA_SUCCESS,
        Ok(Err(e)) => {
            trace_err(name, e);
            e
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("<non-string panic>");
            eprintln!("ptx-emu-driver: {name}: internal panic: {msg}");
            CUDA_ERROR_UNKNOWN
        }
    }
}

fn trace_err(name: &str, e: CUresult) {
    if std::env::var_os("PTX_EMU_DRIVER_TRACE").is_some() {
        eprintln!("ptx-emu-driver: {name} -> {e} ({})", errors::name(e));
    }
}

fn unsupported(name: &str) -> CUresult {
    eprintln!(
        "ptx-emu-driver: {name} is not supported by the stand-in driver (CUDA_ERROR_NOT_SUPPORTED)"
    );
    CUDA_ERROR_NOT_SUPPORTED
}

fn need_init() -> Result<(), CUresult> {
    if INITIALIZED.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(CUDA_ERROR_NOT_INITIALIZED)
    }
}

fn check_device(dev: CUdevice) -> Result<(), CUresult> {
    need_init()?;
    if dev == 0 {
        Ok(())
    } else {
        Err(CUDA_ERROR_INVALID_DEVICE)
    }
}

unsafe fn out<T>(p: *mut T, v: T) -> Result<(), CUresult> {
    if p.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: non-null out-pointer supplied by the caller per the CUDA API contract.
    unsafe { p.write(v) };
    Ok(())
}

fn h(p: *mut c_void) -> Handle {
    p as Handle
}
fn ptr(h: Handle) -> Ptr {
    h as Ptr
}

fn current_ctx() -> Result<Arc<Mutex<Ctx>>, CUresult> {
    need_init()?;
    let cur = current().ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
    registry().owner_of(cur, Kind::Context)
}

/// The context and stream handle (0 for the null/legacy/per-thread streams) of a stream argument.
fn stream_ctx(stream: Ptr) -> Result<(Arc<Mutex<Ctx>>, Handle), CUresult> {
    need_init()?;
    let s = h(stream);
    if s <= 2 {
        Ok((current_ctx()?, 0))
    } else {
        Ok((registry().owner_of(s, Kind::Stream)?, s))
    }
}

fn mem_err(what: &str, e: impl std::fmt::Display) -> CUresult {
    eprintln!("ptx-emu-driver: {what}: {e}");
    CUDA_ERROR_INVALID_VALUE
}

/// Execute one operation now.
fn exec_op(ctx: &mut Ctx, op: &Op) -> Result<(), CUresult> {
    ctx.check()?;
    let c = counters();
    match op {
        Op::Launch {
            module,
            kernel,
            grid,
            block,
            dynamic_smem_bytes,
            params,
        } => {
            bump(&c.kernel_launches);
            let cfg = LaunchConfig {
                grid: *grid,
                block: *block,
                dynamic_smem_bytes: *dynamic_smem_bytes,
            };
            let slices: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
            let opts = LaunchOptions::default();
            match ptx_emu::launch(module, kernel, &cfg, &slices, &mut ctx.mem, &opts) {
                Ok(stats) => {
                    c.thread_instructions
                        .fetch_add(stats.thread_instructions, Ordering::Relaxed);
                    c.warp_instructions
                        .fetch_add(stats.warp_instructions, Ordering::Relaxed);
                    Ok(())
                }
                Err(fault) => {
                    bump(&c.faults);
                    let code = fault.kind.cuda_error_code() as CUresult;
                    eprintln!(
                        "ptx-emu-driver: kernel fault ({}): {fault}",
                        errors::name(code)
                    );
                    if is_sticky(code) {
                        ctx.sticky = Some(code);
                    }
                    Err(code)
                }
            }
        }
        Op::HtoD { dst, src, bytes } => {
            bump(&c.memcpy_calls);
            // SAFETY: the caller guarantees `src` points to `bytes` readable bytes.
            let data = unsafe { std::slice::from_raw_parts(src.0 as *const u8, *bytes) };
            ctx.mem
                .write(*dst, data)
                .map_err(|e| mem_err("memcpy HtoD", e))
        }
        Op::DtoH { dst, src, bytes } => {
            bump(&c.memcpy_calls);
            // SAFETY: the caller guarantees `dst` points to `bytes` writable bytes.
            let data = unsafe { std::slice::from_raw_parts_mut(dst.0, *bytes) };
            ctx.mem
                .read(*src, data)
                .map_err(|e| mem_err("memcpy DtoH", e))
        }
        Op::DtoD { dst, src, bytes } => {
            bump(&c.memcpy_calls);
            let mut tmp = vec![0u8; *bytes];
            ctx.mem
                .read(*src, &mut tmp)
                .map_err(|e| mem_err("memcpy DtoD (source)", e))?;
            ctx.mem
                .write(*dst, &tmp)
                .map_err(|e| mem_err("memcpy DtoD (destination)", e))
        }
        Op::MemsetD8 { dst, value, count } => {
            bump(&c.memset_calls);
            ctx.mem
                .memset_d8(*dst, *value, *count)
                .map_err(|e| mem_err("memset D8", e))
        }
        Op::MemsetD32 { dst, value, count } => {
            bump(&c.memset_calls);
            ctx.mem
                .memset_d32(*dst, *value, *count)
                .map_err(|e| mem_err("memset D32", e))
        }
    }
}

/// Record `op` into the stream's capture, or run it now.
fn submit(stream: Ptr, op: Op) -> Result<(), CUresult> {
    let (ctx, s) = stream_ctx(stream)?;
    let mut ctx = lock(&ctx);
    ctx.check()?;
    if let Some(cap) = ctx.capture_of(s)? {
        cap.ops.push(op);
        return Ok(());
    }
    exec_op(&mut ctx, &op)
}

/// Run `op` on the legacy stream of the current context (the synchronous API variants).
fn submit_sync(op: Op) -> Result<(), CUresult> {
    let ctx = current_ctx()?;
    let mut ctx = lock(&ctx);
    exec_op(&mut ctx, &op)
}

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

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorName(error: CUresult, p: *mut *const c_char) -> CUresult {
    match errors::describe(error) {
        Some((name, _)) => entry("cuGetErrorName", || unsafe { out(p, name) }),
        None => {
            let _ = unsafe { out(p, std::ptr::null()) };
            CUDA_ERROR_INVALID_VALUE
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuGetErrorString(error: CUresult, p: *mut *const c_char) -> CUresult {
    match errors::describe(error) {
        Some((_, s)) => entry("cuGetErrorString", || unsafe { out(p, s) }),
        None => {
            let _ = unsafe { out(p, std::ptr::null()) };
            CUDA_ERROR_INVALID_VALUE
        }
    }
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
        let bytes = device::NAME.as_bytes();
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

fn push_current(ctx: Handle) {
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

fn primary_release(dev: CUdevice) -> Result<(), CUresult> {
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

#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    entry("cuDevicePrimaryCtxRelease_v2", || primary_release(dev))
}

#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxRelease(dev: CUdevice) -> CUresult {
    entry("cuDevicePrimaryCtxRelease", || primary_release(dev))
}

fn primary_reset(dev: CUdevice) -> Result<(), CUresult> {
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

#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> CUresult {
    entry("cuDevicePrimaryCtxReset_v2", || primary_reset(dev))
}

#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxReset(dev: CUdevice) -> CUresult {
    entry("cuDevicePrimaryCtxReset", || primary_reset(dev))
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

fn ctx_create(pctx: *mut Ptr, flags: c_uint, dev: CUdevice) -> Result<(), CUresult> {
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
        need_init()?;
        registry().owner_of(h(ctx), Kind::Context)?;
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
        let ctx = current_ctx()?;
        let mut ctx = lock(&ctx);
        ctx.check()?;
        ctx.forbid_unsafe_call()
    })
}

#[no_mangle]
pub extern "C" fn cuCtxSetFlags(flags: c_uint) -> CUresult {
    entry("cuCtxSetFlags", || {
        let ctx = current_ctx()?;
        lock(&ctx).flags = flags;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetFlags(flags: *mut c_uint) -> CUresult {
    entry("cuCtxGetFlags", || {
        let ctx = current_ctx()?;
        let f = lock(&ctx).flags;
        unsafe { out(flags, f) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetLimit(value: *mut usize, limit: c_int) -> CUresult {
    entry("cuCtxGetLimit", || {
        let ctx = current_ctx()?;
        let v = lock(&ctx).limits.get(&limit).copied();
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
        let ctx = current_ctx()?;
        lock(&ctx).limits.insert(limit, value);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCacheConfig(config: *mut c_int) -> CUresult {
    entry("cuCtxGetCacheConfig", || {
        let ctx = current_ctx()?;
        let v = lock(&ctx).cache_config;
        unsafe { out(config, v) }
    })
}

#[no_mangle]
pub extern "C" fn cuCtxSetCacheConfig(config: c_int) -> CUresult {
    entry("cuCtxSetCacheConfig", || {
        let ctx = current_ctx()?;
        lock(&ctx).cache_config = config;
        Ok(())
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
            if !least.is_null() {
                out(least, 0)?;
            }
            if !greatest.is_null() {
                out(greatest, -5)?;
            }
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

// ------------------------------------------------------------------------------------------------
// Modules and functions

fn ptx_version(ptx: &str) -> i32 {
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

fn load_module(pmod: *mut Ptr, image: *const u8, name: &str) -> Result<(), CUresult> {
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

fn load_module_text(
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
    bump(&counters().module_loads);
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
fn bind_globals(
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
        need_init()?;
        let cell = registry().owner_of(h(module), Kind::Module)?;
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
        if name.is_null() || pfunc.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: NUL-terminated name per the API contract.
        let name = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        let cell = registry().owner_of(h(module), Kind::Module)?;
        let ctx_handle = {
            let ctx = lock(&cell);
            ctx.check()?;
            let m = ctx
                .modules
                .get(&h(module))
                .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
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
        if name.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: NUL-terminated name per the API contract.
        let name = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        let cell = registry().owner_of(h(module), Kind::Module)?;
        let ctx = lock(&cell);
        ctx.check()?;
        let m = ctx
            .modules
            .get(&h(module))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let &(addr, size) = m.globals.get(&name).ok_or(CUDA_ERROR_NOT_FOUND)?;
        unsafe {
            if !dptr.is_null() {
                out(dptr, addr)?;
            }
            if !bytes.is_null() {
                out(bytes, size)?;
            }
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncGetAttribute(pi: *mut c_int, attrib: c_int, func: Ptr) -> CUresult {
    entry("cuFuncGetAttribute", || {
        need_init()?;
        let cell = registry().owner_of(h(func), Kind::Function)?;
        let ctx = lock(&cell);
        ctx.check()?;
        let f = ctx
            .functions
            .get(&h(func))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let m = ctx
            .modules
            .get(&f.module)
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let static_smem = m.module.static_shared_bytes(&f.kernel).unwrap_or(0) as c_int;
        let local = m.module.local_bytes(&f.kernel).unwrap_or(0) as c_int;
        let v = match attrib {
            0 => device::MAX_THREADS_PER_BLOCK as c_int, // MAX_THREADS_PER_BLOCK
            1 => static_smem,                            // SHARED_SIZE_BYTES
            2 => 0,                                      // CONST_SIZE_BYTES
            3 => local,                                  // LOCAL_SIZE_BYTES
            4 => 0, // NUM_REGS: no register allocation in an interpreter (documented)
            5 => m.ptx_version, // PTX_VERSION
            6 => 90, // BINARY_VERSION
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
        need_init()?;
        let cell = registry().owner_of(h(func), Kind::Function)?;
        let mut ctx = lock(&cell);
        ctx.check()?;
        let f = ctx
            .functions
            .get(&h(func))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let static_smem = ctx
            .modules
            .get(&f.module)
            .and_then(|m| m.module.static_shared_bytes(&f.kernel))
            .unwrap_or(0) as u32;
        let f = ctx
            .functions
            .get_mut(&h(func))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        match attrib {
            8 => {
                if value < 0 || value as u32 + static_smem > device::SMEM_PER_BLOCK_OPTIN {
                    return Err(CUDA_ERROR_INVALID_VALUE);
                }
                f.max_dynamic_smem = value as u32;
                Ok(())
            }
            9 => Ok(()), // carveout preference: accepted, no effect
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    })
}

#[no_mangle]
pub extern "C" fn cuFuncSetCacheConfig(func: Ptr, _config: c_int) -> CUresult {
    entry("cuFuncSetCacheConfig", || {
        need_init()?;
        registry().owner_of(h(func), Kind::Function)?;
        Ok(())
    })
}

// ------------------------------------------------------------------------------------------------
// Launch

fn check_dims(grid: [u32; 3], block: [u32; 3]) -> Result<(), CUresult> {
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
    entry("cuLaunchKernel", || {
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
        let f = ctx
            .functions
            .get(&h(func))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let kernel = f.kernel.clone();
        if shared_mem_bytes > f.max_dynamic_smem {
            eprintln!(
                "ptx-emu-driver: cuLaunchKernel {kernel}: {shared_mem_bytes} B dynamic shared memory > \
                 limit {} B (raise it with cuFuncSetAttribute MAX_DYNAMIC_SHARED_SIZE_BYTES)",
                f.max_dynamic_smem
            );
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let module = ctx
            .modules
            .get(&f.module)
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?
            .module
            .clone();
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
        let op = Op::Launch {
            module,
            kernel,
            grid,
            block,
            dynamic_smem_bytes: shared_mem_bytes,
            params,
        };
        if let Some(cap) = ctx.capture_of(s)? {
            cap.ops.push(op);
            return Ok(());
        }
        exec_op(&mut ctx, &op)
    })
}

// ------------------------------------------------------------------------------------------------
// Memory

fn alloc_in(ctx: &mut Ctx, bytes: usize) -> Result<u64, CUresult> {
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

// ------------------------------------------------------------------------------------------------
// Streams

fn stream_create(pstream: *mut Ptr) -> Result<(), CUresult> {
    let cell = current_ctx()?;
    let ctx_handle = {
        let ctx = lock(&cell);
        ctx.check()?;
        ctx.handle
    };
    let sh = registry().new_handle(Kind::Stream, ctx_handle);
    lock(&cell).streams.insert(sh, StreamState::default());
    unsafe { out(pstream, ptr(sh)) }
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(pstream: *mut Ptr, _flags: c_uint) -> CUresult {
    entry("cuStreamCreate", || stream_create(pstream))
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreateWithPriority(
    pstream: *mut Ptr,
    _flags: c_uint,
    _priority: c_int,
) -> CUresult {
    entry("cuStreamCreateWithPriority", || stream_create(pstream))
}

fn stream_destroy(stream: Ptr) -> Result<(), CUresult> {
    need_init()?;
    let cell = registry().owner_of(h(stream), Kind::Stream)?;
    let mut ctx = lock(&cell);
    if let Some(st) = ctx.streams.remove(&h(stream)) {
        if let Some(cap) = st.capture {
            ctx.release_graph_allocs(Arc::new(cap.allocs));
        }
    }
    drop(ctx);
    registry().owner.remove(&h(stream));
    Ok(())
}

#[no_mangle]
pub extern "C" fn cuStreamDestroy_v2(stream: Ptr) -> CUresult {
    entry("cuStreamDestroy_v2", || stream_destroy(stream))
}

#[no_mangle]
pub extern "C" fn cuStreamDestroy(stream: Ptr) -> CUresult {
    entry("cuStreamDestroy", || stream_destroy(stream))
}

/// Synchronize/query: work is already done; illegal on a capturing stream.
fn stream_sync(stream: Ptr) -> Result<(), CUresult> {
    let (cell, s) = stream_ctx(stream)?;
    let mut ctx = lock(&cell);
    ctx.check()?;
    if s == 0 {
        return ctx.forbid_unsafe_call();
    }
    if let Some(Some(cap)) = ctx.streams.get_mut(&s).map(|st| st.capture.as_mut()) {
        cap.invalidated
            .get_or_insert(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        return Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    }
    Ok(())
}

#[no_mangle]
pub extern "C" fn cuStreamSynchronize(stream: Ptr) -> CUresult {
    entry("cuStreamSynchronize", || stream_sync(stream))
}

#[no_mangle]
pub extern "C" fn cuStreamQuery(stream: Ptr) -> CUresult {
    entry("cuStreamQuery", || stream_sync(stream))
}

#[no_mangle]
pub extern "C" fn cuStreamWaitEvent(stream: Ptr, event: Ptr, _flags: c_uint) -> CUresult {
    entry("cuStreamWaitEvent", || {
        let (cell, s) = stream_ctx(stream)?;
        let ev_cell = registry().owner_of(h(event), Kind::Event)?;
        if !Arc::ptr_eq(&cell, &ev_cell) {
            // Cross-context waits are fine on hardware; here contexts never share work, and all
            // work is already complete, so the wait is a no-op.
            return lock(&cell).check();
        }
        let mut ctx = lock(&cell);
        ctx.check()?;
        let ev = *ctx.events.get(&h(event)).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let capturing = match ctx.streams.get_mut(&s).and_then(|st| st.capture.as_mut()) {
            Some(cap) => {
                if cap.invalidated.is_some() {
                    return Err(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
                }
                if ev.recorded && ev.captured_in != Some(cap.id) {
                    // CUDA: a capturing stream may not depend on work outside its capture.
                    cap.invalidated
                        .get_or_insert(CUDA_ERROR_STREAM_CAPTURE_ISOLATION);
                    eprintln!(
                        "ptx-emu-driver: cuStreamWaitEvent: capturing stream waits on an event recorded \
                         outside the capture (CUDA_ERROR_STREAM_CAPTURE_ISOLATION); with cudarc, call \
                         `ctx.disable_event_tracking()` before capturing"
                    );
                    return Err(CUDA_ERROR_STREAM_CAPTURE_ISOLATION);
                }
                true
            }
            None => false,
        };
        if !capturing {
            if let Some(id) = ev.captured_in {
                let live = ctx
                    .streams
                    .values()
                    .any(|st| st.capture.as_ref().is_some_and(|c| c.id == id));
                if live {
                    return Err(unsupported(
                        "cuStreamWaitEvent joining another stream into a capture",
                    ));
                }
                return Err(CUDA_ERROR_CAPTURED_EVENT);
            }
        }
        Ok(())
    })
}

fn begin_capture(stream: Ptr, mode: u32) -> Result<(), CUresult> {
    let (cell, s) = stream_ctx(stream)?;
    if s == 0 {
        eprintln!("ptx-emu-driver: cuStreamBeginCapture: the legacy/null stream cannot be captured; use a created stream");
        return Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    }
    if mode > 2 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let id = registry().capture_id();
    let mut ctx = lock(&cell);
    ctx.check()?;
    let st = ctx.streams.get_mut(&s).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    if st.capture.is_some() {
        return Err(401); // CUDA_ERROR_ILLEGAL_STATE
    }
    st.capture = Some(Capture {
        id,
        mode,
        thread: std::thread::current().id(),
        ops: Vec::new(),
        allocs: Vec::new(),
        invalidated: None,
    });
    Ok(())
}

#[no_mangle]
pub extern "C" fn cuStreamBeginCapture_v2(stream: Ptr, mode: c_uint) -> CUresult {
    entry("cuStreamBeginCapture_v2", || begin_capture(stream, mode))
}

/// The pre-10.1 entry point (no mode argument): global mode.
#[no_mangle]
pub extern "C" fn cuStreamBeginCapture(stream: Ptr) -> CUresult {
    entry("cuStreamBeginCapture", || begin_capture(stream, 0))
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamEndCapture(stream: Ptr, pgraph: *mut Ptr) -> CUresult {
    entry("cuStreamEndCapture", || {
        let (cell, s) = stream_ctx(stream)?;
        if pgraph.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let ctx_handle = lock(&cell).handle;
        // Reserve the graph handle before taking the context lock (lock order: registry, context).
        let gh = registry().new_handle(Kind::Graph, ctx_handle);
        let mut ctx = lock(&cell);
        let st = ctx.streams.get_mut(&s);
        let cap = match st.and_then(|st| st.capture.take()) {
            Some(cap) => cap,
            None => {
                drop(ctx);
                registry().owner.remove(&gh);
                return Err(if s == 0 {
                    CUDA_ERROR_STREAM_CAPTURE_UNMATCHED
                } else {
                    401
                });
            }
        };
        if cap.mode == 1 && cap.thread != std::thread::current().id() {
            if let Some(st) = ctx.streams.get_mut(&s) {
                st.capture = Some(cap);
            }
            drop(ctx);
            registry().owner.remove(&gh);
            return Err(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD);
        }
        if cap.invalidated.is_some() {
            ctx.release_graph_allocs(Arc::new(cap.allocs));
            drop(ctx);
            registry().owner.remove(&gh);
            unsafe { out(pgraph, std::ptr::null_mut())? };
            return Err(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
        }
        ctx.graphs.insert(
            gh,
            GraphState {
                ops: Arc::new(cap.ops),
                allocs: Arc::new(cap.allocs),
            },
        );
        unsafe { out(pgraph, ptr(gh)) }
    })
}

fn capture_status(stream: Ptr) -> Result<(u32, u64, Handle), CUresult> {
    let (cell, s) = stream_ctx(stream)?;
    let ctx = lock(&cell);
    Ok(
        match ctx.streams.get(&s).and_then(|st| st.capture.as_ref()) {
            Some(c) if c.invalidated.is_some() => (2, c.id, 0),
            Some(c) => (1, c.id, 0),
            None => (0, 0, 0),
        },
    )
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamIsCapturing(stream: Ptr, status: *mut c_uint) -> CUresult {
    entry("cuStreamIsCapturing", || {
        let (st, _, _) = capture_status(stream)?;
        unsafe { out(status, st) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamGetCaptureInfo(
    stream: Ptr,
    status: *mut c_uint,
    id: *mut u64,
) -> CUresult {
    entry("cuStreamGetCaptureInfo", || {
        let (st, cid, _) = capture_status(stream)?;
        unsafe {
            out(status, st)?;
            if !id.is_null() {
                out(id, cid)?;
            }
        }
        Ok(())
    })
}

/// Graph and dependency outputs are null/0: the recorded graph is linear and has no node handles.
#[no_mangle]
pub unsafe extern "C" fn cuStreamGetCaptureInfo_v2(
    stream: Ptr,
    status: *mut c_uint,
    id: *mut u64,
    graph: *mut Ptr,
    deps: *mut *const Ptr,
    num_deps: *mut usize,
) -> CUresult {
    entry("cuStreamGetCaptureInfo_v2", || {
        let (st, cid, _) = capture_status(stream)?;
        unsafe {
            out(status, st)?;
            if !id.is_null() {
                out(id, cid)?;
            }
            if !graph.is_null() {
                out(graph, std::ptr::null_mut())?;
            }
            if !deps.is_null() {
                out(deps, std::ptr::null())?;
            }
            if !num_deps.is_null() {
                out(num_deps, 0)?;
            }
        }
        Ok(())
    })
}

// ------------------------------------------------------------------------------------------------
// Events

#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(pevent: *mut Ptr, flags: c_uint) -> CUresult {
    entry("cuEventCreate", || {
        let cell = current_ctx()?;
        let ctx_handle = {
            let ctx = lock(&cell);
            ctx.check()?;
            ctx.handle
        };
        let eh = registry().new_handle(Kind::Event, ctx_handle);
        lock(&cell).events.insert(
            eh,
            EventState {
                flags,
                ..Default::default()
            },
        );
        unsafe { out(pevent, ptr(eh)) }
    })
}

fn event_destroy(event: Ptr) -> Result<(), CUresult> {
    need_init()?;
    let cell = registry().owner_of(h(event), Kind::Event)?;
    lock(&cell).events.remove(&h(event));
    registry().owner.remove(&h(event));
    Ok(())
}

#[no_mangle]
pub extern "C" fn cuEventDestroy_v2(event: Ptr) -> CUresult {
    entry("cuEventDestroy_v2", || event_destroy(event))
}

#[no_mangle]
pub extern "C" fn cuEventDestroy(event: Ptr) -> CUresult {
    entry("cuEventDestroy", || event_destroy(event))
}

fn event_record(event: Ptr, stream: Ptr) -> Result<(), CUresult> {
    let (cell, s) = stream_ctx(stream)?;
    let ev_cell = registry().owner_of(h(event), Kind::Event)?;
    if !Arc::ptr_eq(&cell, &ev_cell) {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    let mut ctx = lock(&cell);
    ctx.check()?;
    let captured_in = ctx.capture_of(s)?.map(|c| c.id);
    let ev = ctx
        .events
        .get_mut(&h(event))
        .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    ev.recorded = true;
    ev.captured_in = captured_in;
    Ok(())
}

#[no_mangle]
pub extern "C" fn cuEventRecord(event: Ptr, stream: Ptr) -> CUresult {
    entry("cuEventRecord", || event_record(event, stream))
}

#[no_mangle]
pub extern "C" fn cuEventRecordWithFlags(event: Ptr, stream: Ptr, _flags: c_uint) -> CUresult {
    entry("cuEventRecordWithFlags", || event_record(event, stream))
}

fn event_wait(event: Ptr) -> Result<(), CUresult> {
    need_init()?;
    let cell = registry().owner_of(h(event), Kind::Event)?;
    let ctx = lock(&cell);
    ctx.check()?;
    let ev = ctx.events.get(&h(event)).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    if ev.captured_in.is_some() {
        return Err(CUDA_ERROR_CAPTURED_EVENT);
    }
    Ok(())
}

#[no_mangle]
pub extern "C" fn cuEventSynchronize(event: Ptr) -> CUresult {
    entry("cuEventSynchronize", || event_wait(event))
}

#[no_mangle]
pub extern "C" fn cuEventQuery(event: Ptr) -> CUresult {
    entry("cuEventQuery", || event_wait(event))
}

/// Work runs synchronously at submission, so no device time passes between two records: the
/// elapsed time is always 0 ms (documented in docs/stand-in-driver.md).
fn event_elapsed(ms: *mut f32, start: Ptr, end: Ptr) -> Result<(), CUresult> {
    need_init()?;
    let cell = registry().owner_of(h(start), Kind::Event)?;
    let end_cell = registry().owner_of(h(end), Kind::Event)?;
    if !Arc::ptr_eq(&cell, &end_cell) {
        return Err(CUDA_ERROR_INVALID_HANDLE);
    }
    let ctx = lock(&cell);
    ctx.check()?;
    for e in [start, end] {
        let ev = ctx.events.get(&h(e)).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        if !ev.recorded || ev.flags & 0x2 != 0 {
            // never recorded, or CU_EVENT_DISABLE_TIMING
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        if ev.captured_in.is_some() {
            return Err(CUDA_ERROR_CAPTURED_EVENT);
        }
    }
    unsafe { out(ms, 0.0) }
}

#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime(ms: *mut f32, start: Ptr, end: Ptr) -> CUresult {
    entry("cuEventElapsedTime", || event_elapsed(ms, start, end))
}

#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime_v2(ms: *mut f32, start: Ptr, end: Ptr) -> CUresult {
    entry("cuEventElapsedTime_v2", || event_elapsed(ms, start, end))
}

// ------------------------------------------------------------------------------------------------
// Graphs

fn instantiate(pexec: *mut Ptr, graph: Ptr, flags: u64) -> Result<(), CUresult> {
    need_init()?;
    const AUTO_FREE: u64 = 1;
    const UPLOAD: u64 = 2;
    const DEVICE_LAUNCH: u64 = 4;
    const NODE_PRIORITY: u64 = 8;
    if flags & !(AUTO_FREE | UPLOAD | DEVICE_LAUNCH | NODE_PRIORITY) != 0
        || flags & (AUTO_FREE | DEVICE_LAUNCH) == (AUTO_FREE | DEVICE_LAUNCH)
    {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    if flags & DEVICE_LAUNCH != 0 {
        return Err(unsupported(
            "cuGraphInstantiateWithFlags(CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH)",
        ));
    }
    let cell = registry().owner_of(h(graph), Kind::Graph)?;
    let ctx_handle = lock(&cell).handle;
    let eh = registry().new_handle(Kind::GraphExec, ctx_handle);
    let mut ctx = lock(&cell);
    ctx.check()?;
    let g = ctx.graphs.get(&h(graph)).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    let exec = GraphState {
        ops: g.ops.clone(),
        allocs: g.allocs.clone(),
    };
    ctx.execs.insert(eh, exec);
    unsafe { out(pexec, ptr(eh)) }
}

#[no_mangle]
pub unsafe extern "C" fn cuGraphInstantiateWithFlags(
    pexec: *mut Ptr,
    graph: Ptr,
    flags: u64,
) -> CUresult {
    entry("cuGraphInstantiateWithFlags", || {
        instantiate(pexec, graph, flags)
    })
}

/// The 11.x five-argument form (error node and log buffer are left untouched).
#[no_mangle]
pub unsafe extern "C" fn cuGraphInstantiate_v2(
    pexec: *mut Ptr,
    graph: Ptr,
    _err_node: *mut Ptr,
    _log: *mut c_char,
    _size: usize,
) -> CUresult {
    entry("cuGraphInstantiate_v2", || instantiate(pexec, graph, 0))
}

#[no_mangle]
pub extern "C" fn cuGraphLaunch(exec: Ptr, stream: Ptr) -> CUresult {
    entry("cuGraphLaunch", || {
        need_init()?;
        let cell = registry().owner_of(h(exec), Kind::GraphExec)?;
        let (stream_cell, s) = stream_ctx(stream)?;
        if !Arc::ptr_eq(&cell, &stream_cell) {
            return Err(CUDA_ERROR_INVALID_HANDLE);
        }
        let mut ctx = lock(&cell);
        ctx.check()?;
        let ops = ctx
            .execs
            .get(&h(exec))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?
            .ops
            .clone();
        bump(&counters().graph_launches);
        if let Some(cap) = ctx.capture_of(s)? {
            // A graph launched into a capturing stream becomes part of that capture.
            cap.ops.extend(ops.iter().cloned());
            return Ok(());
        }
        for op in ops.iter() {
            exec_op(&mut ctx, op)?;
        }
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn cuGraphUpload(exec: Ptr, stream: Ptr) -> CUresult {
    entry("cuGraphUpload", || {
        need_init()?;
        let cell = registry().owner_of(h(exec), Kind::GraphExec)?;
        stream_ctx(stream)?;
        let r = lock(&cell).check();
        r
    })
}

#[no_mangle]
pub extern "C" fn cuGraphDestroy(graph: Ptr) -> CUresult {
    entry("cuGraphDestroy", || {
        need_init()?;
        let cell = registry().owner_of(h(graph), Kind::Graph)?;
        let mut ctx = lock(&cell);
        if let Some(g) = ctx.graphs.remove(&h(graph)) {
            ctx.release_graph_allocs(g.allocs);
        }
        drop(ctx);
        registry().owner.remove(&h(graph));
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn cuGraphExecDestroy(exec: Ptr) -> CUresult {
    entry("cuGraphExecDestroy", || {
        need_init()?;
        let cell = registry().owner_of(h(exec), Kind::GraphExec)?;
        let mut ctx = lock(&cell);
        if let Some(g) = ctx.execs.remove(&h(exec)) {
            ctx.release_graph_allocs(g.allocs);
        }
        drop(ctx);
        registry().owner.remove(&h(exec));
        Ok(())
    })
}

// ------------------------------------------------------------------------------------------------
// Stand-in extras

/// Counters since process start (all contexts). `bytes_in_use` sums the live contexts.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PtxEmuStats {
    /// `size_of::<PtxEmuStats>()`; lets a caller detect layout changes.
    pub struct_size: u64,
    /// Successful `cuMemAlloc_v2` + non-empty `cuMemAllocAsync` calls.
    pub alloc_calls: u64,
    /// `cuMemFree_v2` + `cuMemFreeAsync` calls on non-null pointers.
    pub free_calls: u64,
    pub bytes_in_use: u64,
    /// Kernels executed (direct launches and kernels replayed by graphs; not captured ones).
    pub kernel_launches: u64,
    pub graph_launches: u64,
    /// Memcpys / memsets executed (direct or replayed).
    pub memcpy_calls: u64,
    pub memset_calls: u64,
    /// Kernel faults (launches that returned 700/719/...).
    pub faults: u64,
    pub module_loads: u64,
}

/// Fill `*out` with the driver's counters. Resolve it with `dlsym(handle, "ptxemu_stats")`; its
/// presence also tells a program it is running on the stand-in driver.
#[no_mangle]
pub unsafe extern "C" fn ptxemu_stats(stats: *mut PtxEmuStats) -> CUresult {
    entry("ptxemu_stats", || {
        let c = counters();
        let cells: Vec<_> = registry().contexts.values().cloned().collect();
        let bytes_in_use: usize = cells.iter().map(|c| lock(c).mem.bytes_in_use()).sum();
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let s = PtxEmuStats {
            struct_size: std::mem::size_of::<PtxEmuStats>() as u64,
            alloc_calls: l(&c.alloc_calls),
            free_calls: l(&c.free_calls),
            bytes_in_use: bytes_in_use as u64,
            kernel_launches: l(&c.kernel_launches),
            graph_launches: l(&c.graph_launches),
            memcpy_calls: l(&c.memcpy_calls),
            memset_calls: l(&c.memset_calls),
            faults: l(&c.faults),
            module_loads: l(&c.module_loads),
        };
        unsafe { out(stats, s) }
    })
}

/// Instructions executed by kernels since process start (all contexts), counted on the one warp
/// schedule whose results a launch keeps (`PTX_EMU_SCHEDULES` extra schedules are not counted).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PtxEmuInstructionCounts {
    /// `size_of::<PtxEmuInstructionCounts>()`.
    pub struct_size: u64,
    /// Sum over instructions of the active threads.
    pub thread_instructions: u64,
    /// Instructions issued per warp.
    pub warp_instructions: u64,
}

/// Fill `*out` with the instruction counters (a separate symbol so that `PtxEmuStats` keeps its
/// layout). Work runs at submission, so the difference around a launch is that kernel's count.
#[no_mangle]
pub unsafe extern "C" fn ptxemu_instruction_counts(
    counts: *mut PtxEmuInstructionCounts,
) -> CUresult {
    entry("ptxemu_instruction_counts", || {
        let c = counters();
        let s = PtxEmuInstructionCounts {
            struct_size: std::mem::size_of::<PtxEmuInstructionCounts>() as u64,
            thread_instructions: c.thread_instructions.load(Ordering::Relaxed),
            warp_instructions: c.warp_instructions.load(Ordering::Relaxed),
        };
        unsafe { out(counts, s) }
    })
}

// ------------------------------------------------------------------------------------------------
// Resolved but not implemented: print the name, return CUDA_ERROR_NOT_SUPPORTED. On the C ABI a
// callee that ignores its arguments is valid for any argument list (the caller cleans up).

macro_rules! not_supported {
    ($($name:ident),* $(,)?) => {$(
        #[no_mangle]
        pub extern "C" fn $name() -> CUresult {
            unsupported(stringify!($name))
        }
    )*};
}

not_supported!(
    cuGetProcAddress,
    cuGetProcAddress_v2,
    cuMemAllocManaged,
    cuMemAllocHost_v2,
    cuMemHostAlloc,
    cuMemFreeHost,
    cuMemHostRegister_v2,
    cuMemHostUnregister,
    cuMemAllocPitch_v2,
    cuMemAllocFromPoolAsync,
    cuMemPoolCreate,
    cuMemPoolDestroy,
    cuMemPoolGetAttribute,
    cuMemPoolSetAttribute,
    cuMemPoolTrimTo,
    cuDeviceGetMemPool,
    cuDeviceGetDefaultMemPool,
    cuDeviceSetMemPool,
    cuDeviceGetPCIBusId,
    cuDeviceCanAccessPeer,
    cuCtxEnablePeerAccess,
    cuLaunchCooperativeKernel,
    cuLaunchKernelEx,
    cuLaunchHostFunc,
    cuMemcpy,
    cuMemcpyAsync,
    cuMemcpyPeer,
    cuMemcpyPeerAsync,
    cuMemcpy2D_v2,
    cuMemcpy2DAsync_v2,
    cuMemcpy3D_v2,
    cuMemcpy3DAsync_v2,
    cuMemsetD16_v2,
    cuMemsetD16Async,
    cuMemsetD2D8_v2,
    cuMemsetD2D32_v2,
    cuMemGetAddressRange_v2,
    cuPointerGetAttribute,
    cuPointerGetAttributes,
    cuOccupancyMaxActiveBlocksPerMultiprocessor,
    cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags,
    cuOccupancyMaxPotentialBlockSize,
    cuOccupancyMaxPotentialBlockSizeWithFlags,
    cuOccupancyAvailableDynamicSMemPerBlock,
    cuOccupancyMaxActiveClusters,
    cuOccupancyMaxPotentialClusterSize,
    cuMemPrefetchAsync,
    cuMemPrefetchAsync_v2,
    cuMemAdvise,
    cuMemAdvise_v2,
    cuStreamAttachMemAsync,
    cuStreamGetCtx,
    cuStreamGetPriority,
    cuStreamGetFlags,
    cuStreamAddCallback,
    cuStreamGetCaptureInfo_v3,
    cuStreamUpdateCaptureDependencies,
    cuThreadExchangeStreamCaptureMode,
    cuImportExternalMemory,
    cuExternalMemoryGetMappedBuffer,
    cuDestroyExternalMemory,
    cuSignalExternalSemaphoresAsync,
    cuWaitExternalSemaphoresAsync,
    cuProfilerStart,
    cuProfilerStop,
    cuGraphCreate,
    cuGraphAddKernelNode_v2,
    cuGraphAddMemcpyNode,
    cuGraphAddMemsetNode,
    cuGraphGetNodes,
    cuGraphExecUpdate_v2,
    cuGraphExecKernelNodeSetParams_v2,
    cuGraphInstantiateWithParams,
    cuModuleLoadFatBinary,
    cuModuleGetLoadingMode,
    cuLibraryLoadData,
    cuLinkCreate_v2,
    cuLinkAddData_v2,
    cuLinkAddFile_v2,
    cuLinkComplete,
    cuLinkDestroy,
    cuFuncGetModule,
    cuFuncGetName,
    cuCtxGetSharedMemConfig,
    cuCtxSetSharedMemConfig,
    cuCtxResetPersistingL2Cache,
    cuIpcGetMemHandle,
    cuIpcOpenMemHandle_v2,
);
