//! `CudaDevice`: one CUDA context + one stream, the embedded PTX modules (loaded lazily, once
//! each) and a launch helper for kernels that take a single `#[repr(C)]` params struct.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaModule, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};
use cyberhost_kernels::{Arch, KernelModule};

/// Names a driver library to load by path before cudarc looks for `libcuda.so` (e.g. the stand-in
/// driver `target/debug/libptx_emu_driver.so`). Read by [`CudaDevice::new`] / [`driver_present`].
pub const DRIVER_ENV: &str = "CYBERHOST_CUDA_DRIVER";

/// The error [`CudaDevice::new`] returns when no CUDA driver library can be loaded.
pub const NO_DRIVER_MSG: &str = "no CUDA driver found: install an NVIDIA driver >= 550, or set \
     CYBERHOST_CUDA_DRIVER (or LD_LIBRARY_PATH) to the stand-in driver, see docs/stand-in-driver.md";

/// Oldest driver API the backend accepts (cudarc is built for CUDA 12.4 = driver 550).
const MIN_DRIVER_VERSION: i32 = 12040;

/// Load a CUDA driver library by path and keep it loaded for the life of the process.
///
/// cudarc opens `libcuda.so` by name; the dynamic loader matches that name against the SONAME of
/// libraries already loaded, so a library whose SONAME is `libcuda.so` (the stand-in driver's is)
/// becomes the one cudarc uses. Call this before the first cudarc call: cudarc keeps the first
/// library it opens. Loading the same path twice is a no-op.
pub fn load_driver_library(path: &Path) -> Result<()> {
    static LOADED: OnceLock<Mutex<Vec<std::path::PathBuf>>> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| Mutex::new(Vec::new()));
    let mut loaded = loaded.lock().unwrap_or_else(|e| e.into_inner());
    // Absolute, so that dlopen never searches the library path for a bare file name.
    let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if loaded.iter().any(|p| p == path) {
        return Ok(());
    }
    // SAFETY: loading a shared library runs its initialisers; the stand-in driver (a Rust cdylib)
    // and NVIDIA's libcuda have no initialisers with preconditions on the caller.
    let lib = unsafe { libloading::Library::new(path) }.with_context(|| {
        format!(
            "cannot load the CUDA driver library {} (from {DRIVER_ENV} or the caller); build the \
             stand-in with `cargo build -p ptx-emu-driver`, see docs/stand-in-driver.md",
            path.display()
        )
    })?;
    // SAFETY: only the presence of the symbol is checked; it is not called through this handle.
    let has_init = unsafe { lib.get::<unsafe extern "C" fn(u32) -> u32>(b"cuInit\0") }.is_ok();
    if !has_init {
        bail!(
            "{} does not export cuInit: not a CUDA driver library",
            path.display()
        );
    }
    // Never unload: cudarc keeps raw function pointers into the library for the process lifetime.
    std::mem::forget(lib);
    loaded.push(path.to_path_buf());
    Ok(())
}

/// File name of the stand-in driver cdylib (`tools/ptx-emu-driver`).
pub const STAND_IN_FILE: &str = "libptx_emu_driver.so";

/// Where the stand-in driver is: `$CYBERHOST_CUDA_DRIVER`, else next to the running executable
/// (`target/<profile>/deps/` for tests and benches, `target/<profile>/` for binaries) or one
/// directory up. `None` when it has not been built.
pub fn find_stand_in_driver() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(DRIVER_ENV) {
        return Some(p.into());
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let candidates = [Some(dir), dir.parent()];
    // A named binding: the iterator borrows `exe`, which must outlive it.
    #[allow(clippy::let_and_return)]
    let found = candidates
        .into_iter()
        .flatten()
        .map(|d| d.join(STAND_IN_FILE))
        .find(|p| p.exists());
    found
}

/// Whether cudarc can load a CUDA driver (after loading `$CYBERHOST_CUDA_DRIVER`, if set).
pub fn driver_present() -> Result<bool> {
    if let Some(path) = std::env::var_os(DRIVER_ENV) {
        load_driver_library(Path::new(&path))?;
    }
    // SAFETY: `is_culib_present` only tries to dlopen the candidate library names.
    Ok(unsafe { sys::is_culib_present() })
}

/// Counters of the stand-in driver (`ptxemu_stats`), mirroring `PtxEmuStats` in
/// `tools/ptx-emu-driver/src/lib.rs` field for field.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DriverStats {
    pub struct_size: u64,
    /// Device allocations (`cuMemAlloc` + non-empty `cuMemAllocAsync`) since process start.
    pub alloc_calls: u64,
    pub free_calls: u64,
    pub bytes_in_use: u64,
    /// Kernels executed (direct launches and graph replays).
    pub kernel_launches: u64,
    pub graph_launches: u64,
    pub memcpy_calls: u64,
    pub memset_calls: u64,
    pub faults: u64,
    pub module_loads: u64,
}

/// `ptxemu_set_launch_work(runs, nruns)` of the stand-in driver (`tools/ptx-emu-driver`):
/// `(blocks, units per block)` pairs for the calling thread's next launch.
type WorkFn = unsafe extern "C" fn(*const u64, u64) -> u32;

/// Watches every kernel launch of a [`CudaDevice`] (per-kernel CUDA-event timing, NVTX ranges):
/// `before_launch` runs right before the launch is enqueued, `after_launch` right after.
pub trait LaunchObserver: Send + Sync {
    fn before_launch(&self, stream: &Arc<CudaStream>, module: KernelModule, entry: &str);
    fn after_launch(&self, stream: &Arc<CudaStream>, module: KernelModule, entry: &str);
}

/// Passes a plain-old-data params struct (`cyberhost_kernels::*Params`) by value as one kernel
/// argument.
#[repr(transparent)]
#[derive(Debug, Clone, Copy)]
pub struct PodArg<P>(pub P);

// SAFETY: `P: Pod` is `#[repr(C)]`-compatible plain data with no padding-dependent invariants and
// `PodArg` is `repr(transparent)`, so its bytes are exactly what the kernel's params struct reads.
unsafe impl<P: bytemuck::Pod> DeviceRepr for PodArg<P> {}

/// One CUDA context on one device, one stream for all work, and the embedded PTX modules.
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: Mutex<HashMap<KernelModule, Arc<CudaModule>>>,
    /// Set when the driver is the stand-in (exports `ptxemu_stats`).
    stats_fn: Option<unsafe extern "C" fn(*mut DriverStats) -> u32>,
    /// The stand-in's `ptxemu_set_launch_work`: tells its profiler how a persistent launch's
    /// blocks share the tiles (see [`Self::launch`]).
    work_fn: Option<WorkFn>,
    observer: Mutex<Option<Arc<dyn LaunchObserver>>>,
    /// Dry run: launches are checked and dropped (allocation recording, see `arena.rs`).
    dry: std::sync::atomic::AtomicBool,
    /// Streaming multiprocessors, read once at open (launch heuristics size grids by it).
    sm_count: u32,
    /// L2 cache bytes, read once at open (the GEMM's raster groups are sized by it).
    l2_bytes: u64,
    /// Compute capability (major, minor), read once at open.
    compute_capability: (u32, u32),
    /// The kernel set this device runs ([`Arch::for_compute_capability`], or
    /// `CYBERHOST_CUDA_ARCH`).
    arch: Arch,
}

/// Overrides the kernel set: `sm_80` runs the sm_80 kernels on a Hopper (to compare them);
/// `sm_90a` is refused on a device that is not CC 9.0.
pub const ARCH_ENV: &str = "CYBERHOST_CUDA_ARCH";

/// The kernel set for a device of compute capability `cc`, honouring [`ARCH_ENV`].
fn pick_arch(cc: (u32, u32), name: &str) -> Result<Arch> {
    let native = Arch::for_compute_capability(cc.0, cc.1).ok_or_else(|| {
        anyhow!(
            "{name} has compute capability {}.{}; cyberhost's kernels need CC 8.0 or newer \
             (A100, Ada, H100/H200): use --backend cpu",
            cc.0,
            cc.1
        )
    })?;
    match std::env::var(ARCH_ENV) {
        Err(_) => Ok(native),
        Ok(v) => match v.trim() {
            "" => Ok(native),
            "sm_80" => Ok(Arch::Sm80),
            "sm_90a" if native == Arch::Sm90a => Ok(Arch::Sm90a),
            "sm_90a" => bail!(
                "{ARCH_ENV}=sm_90a but {name} is CC {}.{} (sm_90a kernels run only on CC 9.0, \
                 H100/H200): unset {ARCH_ENV} or set it to sm_80",
                cc.0,
                cc.1
            ),
            other => bail!("{ARCH_ENV}=`{other}` is not `sm_80` or `sm_90a`: unset it or pick one"),
        },
    }
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .field("name", &self.name)
            .field("emulated", &self.is_emulated())
            .field(
                "cc",
                &format_args!(
                    "{}.{}",
                    self.compute_capability.0, self.compute_capability.1
                ),
            )
            .field("kernels", &format_args!("{}", self.arch))
            .finish()
    }
}

impl CudaDevice {
    /// Open device `ordinal` (e.g. 0): checks a driver is present first (cudarc would panic
    /// otherwise), retains the primary context, creates the stream.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_present()? {
            bail!(NO_DRIVER_MSG);
        }
        // cudarc panics when a driver lacks a symbol it resolves; turn that into an error too.
        let opened = std::panic::catch_unwind(|| Self::open(ordinal)).map_err(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            anyhow!("the CUDA driver library is unusable ({msg}); {NO_DRIVER_MSG}")
        })??;
        Ok(opened)
    }

    /// Open device `ordinal` on the stand-in driver ([`find_stand_in_driver`]): kernels run on the
    /// `ptx-emu` interpreter with hazard detection. Errors if the stand-in is not built, or if
    /// cudarc already loaded another driver in this process.
    pub fn new_emulated(ordinal: usize) -> Result<Self> {
        let path = find_stand_in_driver().ok_or_else(|| {
            anyhow!(
                "stand-in CUDA driver {STAND_IN_FILE} not found next to the executable and \
                 {DRIVER_ENV} is not set: run `cargo build -p ptx-emu-driver`, see \
                 docs/stand-in-driver.md"
            )
        })?;
        load_driver_library(&path)?;
        let dev = Self::new(ordinal)?;
        if !dev.is_emulated() {
            bail!(
                "asked for the stand-in driver but cudarc had already loaded {} in this process",
                dev.name
            );
        }
        Ok(dev)
    }

    fn open(ordinal: usize) -> Result<Self> {
        let mut version = 0i32;
        // SAFETY: out-pointer to a live i32.
        unsafe { sys::cuDriverGetVersion(&mut version) }
            .result()
            .context("cuDriverGetVersion failed")?;
        if version < MIN_DRIVER_VERSION {
            bail!(
                "CUDA driver API {}.{} is too old: install an NVIDIA driver >= 550 (CUDA 12.4)",
                version / 1000,
                (version % 1000) / 10
            );
        }
        let count = CudaContext::device_count().context("cuDeviceGetCount failed")?;
        if ordinal >= count.max(0) as usize {
            bail!("CUDA device {ordinal} does not exist ({count} device(s) found)");
        }
        let ctx = CudaContext::new(ordinal)
            .with_context(|| format!("cannot create a CUDA context on device {ordinal}"))?;
        // SAFETY: all work of a CudaDevice goes to its single stream, so cudarc's per-buffer
        // event tracking is unnecessary; it must be off for stream capture (a capturing stream
        // may not wait on events recorded outside the capture).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().context("cannot create a CUDA stream")?;
        let name = ctx
            .name()
            .unwrap_or_else(|_| format!("CUDA device {ordinal}"));
        // SAFETY: only looks the symbol up; its signature is fixed by tools/ptx-emu-driver.
        let stats_fn = unsafe {
            sys::culib()
                .get::<unsafe extern "C" fn(*mut DriverStats) -> u32>(b"ptxemu_stats\0")
                .ok()
                .map(|s| *s)
        };
        // SAFETY: as above; the signature is fixed by tools/ptx-emu-driver (`extras.rs`).
        let work_fn = unsafe {
            sys::culib()
                .get::<WorkFn>(b"ptxemu_set_launch_work\0")
                .ok()
                .map(|s| *s)
        };
        // 132 (an H100 SXM) if the driver does not say.
        let sm_count = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(132);
        // 40 MB (an A100's, the smallest of the datacenter cards) if the driver does not say.
        let l2_bytes = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n > 0)
            .unwrap_or(40 << 20);
        let cc_attr = |a| {
            ctx.attribute(a)
                .with_context(|| format!("cannot read the compute capability of {name}"))
                .and_then(|v| u32::try_from(v).context("negative compute capability"))
        };
        let compute_capability = (
            cc_attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            cc_attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        );
        let arch = pick_arch(compute_capability, &name)?;
        Ok(CudaDevice {
            ordinal,
            name,
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
            stats_fn,
            work_fn,
            observer: Mutex::new(None),
            dry: std::sync::atomic::AtomicBool::new(false),
            sm_count,
            l2_bytes,
            compute_capability,
            arch,
        })
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// Device name, e.g. "NVIDIA H100 80GB HBM3" or "ptx-emu stand-in (sm_90, H100-like)".
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every launch and copy of this device goes to.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// True on the stand-in driver (kernels run on the `ptx-emu` interpreter).
    pub fn is_emulated(&self) -> bool {
        self.stats_fn.is_some()
    }

    /// Stand-in driver counters (allocations, launches, ...); `None` on a real driver.
    pub fn emulator_stats(&self) -> Option<DriverStats> {
        let f = self.stats_fn?;
        let mut s = DriverStats::default();
        // SAFETY: `ptxemu_stats` writes one `PtxEmuStats` (same layout) to the out-pointer.
        let rc = unsafe { f(&mut s) };
        (rc == 0 && s.struct_size == std::mem::size_of::<DriverStats>() as u64).then_some(s)
    }

    /// Install (or with `None` remove) the launch observer.
    pub fn set_launch_observer(&self, observer: Option<Arc<dyn LaunchObserver>>) {
        *self.observer.lock().unwrap_or_else(|e| e.into_inner()) = observer;
    }

    /// Dry mode: [`Self::launch`] resolves the kernel and returns without enqueueing it.
    pub(crate) fn set_dry(&self, on: bool) {
        self.dry.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn is_dry(&self) -> bool {
        self.dry.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The module's PTX loaded into this context (loaded on first use, then cached).
    pub fn module(&self, module: KernelModule) -> Result<Arc<CudaModule>> {
        let mut cache = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(&module) {
            return Ok(m.clone());
        }
        if module.arch() > self.arch {
            bail!(
                "kernels/ptx/{}.ptx is {} PTX but {} (CC {}.{}) runs the {} kernel set; \
                 this is a dispatch bug: Hopper modules are only for CC 9.0",
                module.name(),
                module.arch(),
                self.name,
                self.compute_capability.0,
                self.compute_capability.1,
                self.arch
            );
        }
        let ptx = cudarc::nvrtc::Ptx::from_src(module.ptx());
        let loaded = self.ctx.load_module(ptx).with_context(|| {
            format!("loading kernels/ptx/{}.ptx on {}", module.name(), self.name)
        })?;
        cache.insert(module, loaded.clone());
        Ok(loaded)
    }

    /// Entry `entry` (e.g. "group_norm_v1_f32") of `module`.
    pub fn function(&self, module: KernelModule, entry: &str) -> Result<CudaFunction> {
        self.module(module)?.load_function(entry).with_context(|| {
            format!(
                "kernel entry `{entry}` not found in kernels/ptx/{}.ptx",
                module.name()
            )
        })
    }

    /// Launch `entry` of `module` with its single params-struct argument on this device's stream.
    /// On the stand-in driver a persistent launch (`cfg.persistent_tiles > 0`) first states its
    /// blocks' tiles ([`cyberhost_kernels::LaunchConfig::work_runs`]) so that a sampled profile
    /// (`PTX_EMU_SAMPLE_BLOCKS`) weights its blocks by work class (`docs/profiling.md`).
    ///
    /// # Safety
    /// `params` must match the kernel's params struct field for field, and every device pointer
    /// in it must address a live allocation of this context large enough for the shape the
    /// params describe.
    pub unsafe fn launch<P: bytemuck::Pod>(
        &self,
        module: KernelModule,
        entry: &str,
        cfg: cyberhost_kernels::LaunchConfig,
        params: &P,
    ) -> Result<()> {
        let f = self.function(module, entry)?;
        if self.is_dry() {
            return Ok(());
        }
        let observer = self
            .observer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let cfg_work_runs = cfg.work_runs();
        let cfg = LaunchConfig {
            grid_dim: (cfg.grid[0], cfg.grid[1], cfg.grid[2]),
            block_dim: (cfg.block[0], cfg.block[1], cfg.block[2]),
            shared_mem_bytes: cfg.dynamic_smem_bytes,
        };
        if cfg.shared_mem_bytes > 48 * 1024 {
            // Dynamic shared memory above the default 48 KiB needs the function's opt-in.
            // SAFETY: `f` is a live function of this device's context.
            unsafe {
                cudarc::driver::result::function::set_function_attribute(
                    f.cu_function(),
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    cfg.shared_mem_bytes as i32,
                )
            }
            .with_context(|| {
                format!(
                    "{entry}: {} B of dynamic shared memory on {}",
                    cfg.shared_mem_bytes, self.name
                )
            })?;
        }
        let work = self.work_fn.zip(cfg_work_runs);
        let arg = PodArg(*params);
        let mut builder = self.stream.launch_builder(&f);
        builder.arg(&arg);
        if let Some(o) = &observer {
            o.before_launch(&self.stream, module, entry);
        }
        if let Some((set_work, runs)) = work {
            let flat: Vec<u64> = runs.iter().flat_map(|&(b, u)| [b, u]).collect();
            // SAFETY: `flat` holds `2 * runs.len()` values, alive for the call; the stand-in
            // copies them and applies them to this thread's next launch (the one below).
            let rc = unsafe { set_work(flat.as_ptr(), runs.len() as u64) };
            if rc != 0 {
                bail!("{entry}: the stand-in driver refused the work split {runs:?} (error {rc})");
            }
        }
        // SAFETY: forwarded to the caller (argument layout and buffer sizes).
        let launched = unsafe { builder.launch(cfg) }
            .map(|_| ())
            .with_context(|| format!("launching {entry} ({}) on {}", module.name(), self.name));
        if let Some(o) = &observer {
            o.after_launch(&self.stream, module, entry);
        }
        launched
    }

    /// Streaming multiprocessors of this device (launch heuristics size grids by it); 132 (an
    /// H100 SXM) if the driver does not say. Read once when the device is opened.
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }

    /// L2 cache bytes of this device; 40 MB (an A100) if the driver does not say. Read once when
    /// the device is opened.
    pub fn l2_bytes(&self) -> u64 {
        self.l2_bytes
    }

    /// Compute capability (major, minor), read once when the device is opened.
    pub fn compute_capability(&self) -> (u32, u32) {
        self.compute_capability
    }

    /// The kernel set this device runs: [`Arch::Sm90a`] on CC 9.0 (H100/H200, and the stand-in
    /// at its default `PTX_EMU_ARCH=sm_90a`), else [`Arch::Sm80`]; `CYBERHOST_CUDA_ARCH=sm_80`
    /// forces the sm_80 kernels. Ops with a Hopper kernel dispatch on this.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Wait for all work on the stream.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .with_context(|| format!("synchronizing {}", self.name))
    }
}
