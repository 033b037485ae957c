//! Driver state: a registry of contexts (each behind its own `Mutex`) and of handles.
//!
//! Every CUDA handle (`CUcontext`, `CUmodule`, `CUfunction`, `CUstream`, `CUevent`, `CUgraph`,
//! `CUgraphExec`) is an opaque non-zero integer cast to a pointer. The registry maps it to the
//! context that owns it; the object itself lives inside that context. Kernels run on the calling
//! thread while the owning context is locked, so two contexts can run kernels in parallel.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;

use ptx_emu::{Memory, Module};

use crate::errors::*;

pub type Handle = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Context,
    Module,
    Function,
    Stream,
    Event,
    Graph,
    GraphExec,
}

/// Process-wide counters exposed through `ptxemu_stats`.
#[derive(Default)]
pub struct Counters {
    pub alloc_calls: AtomicU64,
    pub free_calls: AtomicU64,
    pub kernel_launches: AtomicU64,
    pub graph_launches: AtomicU64,
    pub memcpy_calls: AtomicU64,
    pub memset_calls: AtomicU64,
    pub faults: AtomicU64,
    pub module_loads: AtomicU64,
    /// Instructions executed by kernels (one schedule per launch), see `ptxemu_instruction_counts`.
    pub thread_instructions: AtomicU64,
    pub warp_instructions: AtomicU64,
}

pub static COUNTERS: OnceLock<Counters> = OnceLock::new();
pub fn counters() -> &'static Counters {
    COUNTERS.get_or_init(Counters::default)
}
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub static INITIALIZED: AtomicBool = AtomicBool::new(false);

pub struct Registry {
    next: Handle,
    pub owner: HashMap<Handle, (Kind, Handle)>,
    pub contexts: HashMap<Handle, Arc<Mutex<Ctx>>>,
    /// The device's primary context and its retain count.
    pub primary: Option<(Handle, u32)>,
    next_capture_id: u64,
}

impl Registry {
    pub fn new_handle(&mut self, kind: Kind, ctx: Handle) -> Handle {
        self.next += 0x10;
        let h = self.next;
        self.owner
            .insert(h, (kind, if kind == Kind::Context { h } else { ctx }));
        h
    }
    pub fn capture_id(&mut self) -> u64 {
        self.next_capture_id += 1;
        self.next_capture_id
    }
    /// The context owning `h`, checking its kind.
    pub fn owner_of(&self, h: Handle, kind: Kind) -> Result<Arc<Mutex<Ctx>>, CUresult> {
        match self.owner.get(&h) {
            Some(&(k, ctx)) if k == kind => self
                .contexts
                .get(&ctx)
                .cloned()
                .ok_or(CUDA_ERROR_INVALID_CONTEXT),
            _ => Err(if kind == Kind::Context {
                CUDA_ERROR_INVALID_CONTEXT
            } else {
                CUDA_ERROR_INVALID_HANDLE
            }),
        }
    }
    pub fn new_context(&mut self) -> Handle {
        let h = self.new_handle(Kind::Context, 0);
        self.contexts.insert(h, Arc::new(Mutex::new(Ctx::new(h))));
        h
    }
    /// Drop a context and every handle it owns.
    pub fn destroy_context(&mut self, h: Handle) {
        // Context teardown synchronises: write pending profiling rows.
        crate::profile::flush();
        self.contexts.remove(&h);
        self.owner.retain(|_, &mut (_, ctx)| ctx != h);
        CURRENT.with(|c| c.borrow_mut().retain(|&x| x != h));
    }
}

pub fn registry() -> MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| {
        Mutex::new(Registry {
            next: 0x1000,
            owner: HashMap::new(),
            contexts: HashMap::new(),
            primary: None,
            next_capture_id: 0,
        })
    })
    .lock()
    .unwrap_or_else(|e| e.into_inner())
}

pub fn lock(ctx: &Arc<Mutex<Ctx>>) -> MutexGuard<'_, Ctx> {
    ctx.lock().unwrap_or_else(|e| e.into_inner())
}

thread_local! {
    /// The per-thread context stack; the top is the current context.
    pub static CURRENT: RefCell<Vec<Handle>> = const { RefCell::new(Vec::new()) };
}

pub fn current() -> Option<Handle> {
    CURRENT.with(|c| c.borrow().last().copied())
}

/// A host pointer kept by a captured memcpy (read or written at replay, like CUDA's graph nodes).
#[derive(Clone, Copy, Debug)]
pub struct HostPtr(pub *mut u8);
// SAFETY: the pointer is only dereferenced by the thread that launches the graph, under the
// caller's CUDA contract that the host buffer outlives the graph.
unsafe impl Send for HostPtr {}
// SAFETY: as above; a `HostPtr` is never dereferenced concurrently (replay holds the context lock).
unsafe impl Sync for HostPtr {}

/// One recorded stream operation (the body of a captured graph).
#[derive(Clone)]
pub enum Op {
    Launch {
        module: Arc<Module>,
        kernel: String,
        grid: [u32; 3],
        block: [u32; 3],
        dynamic_smem_bytes: u32,
        params: Vec<Vec<u8>>,
        /// Thread-block cluster shape (`[1, 1, 1]`: no clusters).
        cluster: [u32; 3],
        /// The work of each block, when the launcher stated it (`ptxemu_set_launch_work`):
        /// what a sampled profile weights the blocks by.
        work: Option<Arc<gpu_model::sampling::WorkSplit>>,
    },
    HtoD {
        dst: u64,
        src: HostPtr,
        bytes: usize,
    },
    DtoH {
        dst: HostPtr,
        src: u64,
        bytes: usize,
    },
    DtoD {
        dst: u64,
        src: u64,
        bytes: usize,
    },
    MemsetD8 {
        dst: u64,
        value: u8,
        count: usize,
    },
    MemsetD32 {
        dst: u64,
        value: u32,
        count: usize,
    },
}

pub struct Capture {
    pub id: u64,
    pub mode: u32,
    pub thread: ThreadId,
    pub ops: Vec<Op>,
    /// Allocations made by `cuMemAllocAsync` on the capturing stream (owned by the graph).
    pub allocs: Vec<u64>,
    pub invalidated: Option<CUresult>,
}

#[derive(Default)]
pub struct StreamState {
    pub capture: Option<Capture>,
}

#[derive(Default, Clone, Copy)]
pub struct EventState {
    pub flags: u32,
    pub recorded: bool,
    /// Capture id of the capture the event was last recorded in.
    pub captured_in: Option<u64>,
}

pub struct ModuleState {
    pub module: Arc<Module>,
    pub ptx_version: i32,
    /// Backing allocations of module-scope `.global`/`.const` variables: name -> (addr, size).
    pub globals: HashMap<String, (u64, usize)>,
}

pub struct FunctionState {
    pub module: Handle,
    pub kernel: String,
    pub max_dynamic_smem: u32,
    /// `CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED`: clusters of up to 16 blocks.
    pub non_portable_cluster: bool,
}

/// Graph memory owned by a graph and its executables; freed when the last of them is destroyed.
pub type GraphAllocs = Arc<Vec<u64>>;

pub struct GraphState {
    pub ops: Arc<Vec<Op>>,
    pub allocs: GraphAllocs,
}

pub struct Ctx {
    pub handle: Handle,
    pub mem: Memory,
    /// A sticky error (kernel fault): every later call on this context returns it.
    pub sticky: Option<CUresult>,
    pub flags: u32,
    pub modules: HashMap<Handle, ModuleState>,
    pub functions: HashMap<Handle, FunctionState>,
    pub streams: HashMap<Handle, StreamState>,
    pub events: HashMap<Handle, EventState>,
    pub graphs: HashMap<Handle, GraphState>,
    pub execs: HashMap<Handle, GraphState>,
    pub limits: HashMap<i32, usize>,
    pub cache_config: i32,
}

impl Ctx {
    pub fn new(handle: Handle) -> Ctx {
        Ctx {
            handle,
            mem: Memory::new(),
            sticky: None,
            flags: 0,
            modules: HashMap::new(),
            functions: HashMap::new(),
            streams: HashMap::new(),
            events: HashMap::new(),
            graphs: HashMap::new(),
            execs: HashMap::new(),
            limits: HashMap::new(),
            cache_config: 0,
        }
    }

    /// The function behind handle `f`.
    pub fn function(&self, f: Handle) -> Result<&FunctionState, CUresult> {
        self.functions.get(&f).ok_or(CUDA_ERROR_INVALID_HANDLE)
    }

    /// The module behind handle `m`.
    pub fn module(&self, m: Handle) -> Result<&ModuleState, CUresult> {
        self.modules.get(&m).ok_or(CUDA_ERROR_INVALID_HANDLE)
    }

    /// The function behind handle `f` and its module.
    pub fn function_module(&self, f: Handle) -> Result<(&FunctionState, &ModuleState), CUresult> {
        let func = self.function(f)?;
        Ok((func, self.module(func.module)?))
    }

    pub fn check(&self) -> Result<(), CUresult> {
        match self.sticky {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Is any stream of this context capturing in a mode that forbids "unsafe" calls
    /// (`cuMemAlloc`, `cuCtxSynchronize`, ...) from this thread? Invalidates those captures.
    pub fn forbid_unsafe_call(&mut self) -> Result<(), CUresult> {
        let me = std::thread::current().id();
        let mut hit = false;
        for s in self.streams.values_mut() {
            if let Some(c) = s.capture.as_mut() {
                // 0 = GLOBAL (any thread), 1 = THREAD_LOCAL (this thread), 2 = RELAXED (never).
                if c.mode == 0 || (c.mode == 1 && c.thread == me) {
                    c.invalidated
                        .get_or_insert(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
                    hit = true;
                }
            }
        }
        if hit {
            Err(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)
        } else {
            Ok(())
        }
    }

    /// The capture a stream operation goes into, or `None` to execute it now.
    /// Errors when the capture was invalidated.
    pub fn capture_of(&mut self, stream: Handle) -> Result<Option<&mut Capture>, CUresult> {
        match self
            .streams
            .get_mut(&stream)
            .and_then(|s| s.capture.as_mut())
        {
            Some(c) if c.invalidated.is_some() => Err(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED),
            Some(c) => Ok(Some(c)),
            None => Ok(None),
        }
    }

    /// Free graph-owned memory once nothing references it any more.
    pub fn release_graph_allocs(&mut self, allocs: GraphAllocs) {
        if let Ok(list) = Arc::try_unwrap(allocs) {
            for a in list {
                let _ = self.mem.free(a);
            }
        }
    }
}
