//! A stand-in CUDA driver: the subset of the `libcuda` C ABI that `cudarc` 0.19 calls, executing
//! PTX on the `ptx-emu` interpreter. See `docs/stand-in-driver.md`.
//!
//! - One device (ordinal 0) of the architecture `PTX_EMU_ARCH` selects, default sm_90a
//!   (H100-like; `device.rs`).
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
//!   `ptxemu_instruction_counts` the instructions kernels executed; `ptxemu_set_launch_work`
//!   states how the next launch's blocks share its work (the profiler's sampled blocks are
//!   weighted by it, docs/profiling.md).
#![allow(
    non_snake_case,
    clippy::missing_safety_doc,
    clippy::not_unsafe_ptr_arg_deref
)]

/// Entry points that share one implementation (CUDA's `_v2` and unversioned names, a query and
/// a synchronize that do the same here): each name is exported with the same arguments and
/// runs the implementation inside [`entry`] under its own name.
macro_rules! aliases {
    ([$($name:ident),+] $params:tt => $imp:expr $(;)?) => {$(
        #[no_mangle]
        pub extern "C" fn $name $params -> CUresult {
            entry(stringify!($name), || $imp)
        }
    )+};
    (unsafe [$($name:ident),+] $params:tt => $imp:expr $(;)?) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name $params -> CUresult {
            entry(stringify!($name), || $imp)
        }
    )+};
}

pub mod device;
pub mod errors;
mod state;
pub mod unsupported;

mod context;
mod extras;
mod graph;
mod launch;
mod memory;
mod module;
mod profile;
mod stream_event;
mod tensor_map;

pub use context::*;
pub use extras::*;
pub use graph::*;
pub use launch::*;
pub use memory::*;
pub use module::*;
pub use stream_event::*;
pub use tensor_map::*;

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

/// The context owning handle `p` of `kind`, once the driver is initialised.
fn owner(p: Ptr, kind: Kind) -> Result<Arc<Mutex<Ctx>>, CUresult> {
    need_init()?;
    registry().owner_of(h(p), kind)
}

fn check_device(dev: CUdevice) -> Result<(), CUresult> {
    need_init()?;
    if dev == 0 {
        Ok(())
    } else {
        Err(CUDA_ERROR_INVALID_DEVICE)
    }
}

/// [`out`] for an optional out-pointer: nothing when it is null.
unsafe fn out_opt<T>(p: *mut T, v: T) -> Result<(), CUresult> {
    if p.is_null() {
        Ok(())
    } else {
        unsafe { out(p, v) }
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
/// `f` on the current context (locked).
fn with_current<T>(f: impl FnOnce(&mut Ctx) -> T) -> Result<T, CUresult> {
    let ctx = current_ctx()?;
    let mut ctx = lock(&ctx);
    Ok(f(&mut ctx))
}

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
            cluster,
            work,
        } => {
            bump(&c.kernel_launches);
            let cfg = LaunchConfig {
                grid: *grid,
                block: *block,
                dynamic_smem_bytes: *dynamic_smem_bytes,
            };
            let slices: Vec<&[u8]> = params.iter().map(Vec::as_slice).collect();
            let opts = LaunchOptions::default();
            let prof = profile::Profile::from_env().map_err(|e| {
                eprintln!("ptx-emu-driver: cuLaunchKernel {kernel}: {e}");
                CUDA_ERROR_INVALID_VALUE
            })?;
            let run = match &prof {
                Some(p) => {
                    let call = ptx_emu::KernelCall {
                        module,
                        kernel,
                        cfg: &cfg,
                        params: &slices,
                    };
                    profile::launch(p, call, *cluster, work.as_deref(), &mut ctx.mem, &opts)
                }
                None => {
                    let call = ptx_emu::KernelCall {
                        module,
                        kernel,
                        cfg: &cfg,
                        params: &slices,
                    };
                    ptx_emu::launch_cluster(call, *cluster, &mut ctx.mem, &opts)
                }
            };
            match run {
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
            profile::on_device_to_host();
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
