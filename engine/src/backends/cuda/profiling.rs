//! Profiling tools for the CUDA backend, all driven by [`CudaDevice::set_launch_observer`]:
//!
//! - [`KernelTimer`]: a CUDA event pair around every launch, aggregated per kernel entry
//!   (launches, total/mean/min/max ms) once the stream is synchronised. On the stand-in driver
//!   (PTX emulator) events time nothing (`cuEventElapsedTime` is always 0 ms there), so the timer
//!   only counts launches and the instructions each kernel executed; times are `None`, never 0.
//! - [`Nvtx`] / [`NvtxLaunchRanges`]: NVTX push/pop ranges (`libnvToolsExt.so.1`, loaded at run
//!   time) around steps, ops and every kernel launch, so Nsight Systems / Compute show op names.
//! - [`Telemetry`]: clocks, power, temperature and memory from NVML (`nvml-wrapper`, cargo
//!   feature `nvml`; libnvidia-ml is loaded at run time). Unavailable → a reason, never an error.
//! - [`ObserverChain`]: several observers on one device.
//!
//! Used by `cyberhost bench` and `cyberhost profile` (docs/performance.md).

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CString};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use cudarc::driver::{sys, CudaContext, CudaEvent, CudaStream};
use cyberhost_kernels::KernelModule;
use serde::Serialize;

use super::device::{CudaDevice, LaunchObserver};

// ------------------------------------------------------------------------------------------------
// Stand-in instruction counters

/// Mirrors `PtxEmuInstructionCounts` in `tools/ptx-emu-driver/src/lib.rs` field for field.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct InstructionCounts {
    struct_size: u64,
    thread_instructions: u64,
    warp_instructions: u64,
}

type InstructionCountsFn = unsafe extern "C" fn(*mut InstructionCounts) -> u32;

/// `ptxemu_instruction_counts` of the loaded driver; `None` on a real driver (or an older stand-in).
fn instruction_counts_fn() -> Option<InstructionCountsFn> {
    // SAFETY: only looks the symbol up; its signature is fixed by tools/ptx-emu-driver. `culib`
    // is the library cudarc already loaded (a device exists, so it is loadable).
    unsafe {
        sys::culib()
            .get::<InstructionCountsFn>(b"ptxemu_instruction_counts\0")
            .ok()
            .map(|s| *s)
    }
}

fn read_instructions(f: InstructionCountsFn) -> Option<u64> {
    let mut c = InstructionCounts::default();
    // SAFETY: the driver writes one `PtxEmuInstructionCounts` (same layout) to the out-pointer.
    let rc = unsafe { f(&mut c) };
    (rc == 0 && c.struct_size == std::mem::size_of::<InstructionCounts>() as u64)
        .then_some(c.thread_instructions)
}

// ------------------------------------------------------------------------------------------------
// Per-kernel timer

/// Aggregate of one kernel entry over the launches a [`KernelTimer`] saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelStat {
    /// PTX module, e.g. "gemm".
    pub module: &'static str,
    /// Kernel entry, e.g. "gemm_bf16_128x128".
    pub entry: String,
    pub launches: u64,
    /// Sum of the CUDA-event times; `None` where events do not time (the stand-in driver).
    pub total_ms: Option<f64>,
    pub min_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Thread-instructions executed (stand-in driver only: the emulator counts them).
    pub thread_instructions: Option<u64>,
}

impl KernelStat {
    pub fn mean_ms(&self) -> Option<f64> {
        self.total_ms.map(|t| t / self.launches.max(1) as f64)
    }
}

/// One launch waiting for its events to be read.
struct Pending {
    key: (KernelModule, String),
    events: Option<(CudaEvent, CudaEvent)>,
    instructions: Option<u64>,
}

#[derive(Default)]
struct TimerState {
    /// Start event (GPU) or instruction count (stand-in) of the launch in flight.
    start: Option<CudaEvent>,
    start_instructions: Option<u64>,
    pending: Vec<Pending>,
    stats: HashMap<(KernelModule, String), KernelStat>,
    /// First failure (event creation or record); reported by [`KernelTimer::resolve`].
    error: Option<String>,
    /// The launch in flight is being captured into a graph (not timed, not counted).
    capturing: bool,
    /// Launches seen while the stream was capturing.
    captured: u64,
}

fn is_capturing(stream: &CudaStream) -> bool {
    matches!(
        stream.capture_status(),
        Ok(sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE)
    )
}

/// A [`LaunchObserver`] that times every kernel launch with a CUDA event pair and aggregates the
/// times per kernel entry. Install it with [`CudaDevice::set_launch_observer`], run the work,
/// synchronise the device, then call [`KernelTimer::resolve`] and [`KernelTimer::stats`].
///
/// The events add a few microseconds of enqueue cost per launch: time the wall clock of a step
/// without the timer, and the per-kernel split with it.
pub struct KernelTimer {
    ctx: Arc<CudaContext>,
    /// False on the stand-in driver: its events report 0 ms, which is no measurement.
    timed: bool,
    instructions: Option<InstructionCountsFn>,
    state: Mutex<TimerState>,
}

impl KernelTimer {
    pub fn new(device: &CudaDevice) -> Arc<Self> {
        let emulated = device.is_emulated();
        Arc::new(KernelTimer {
            ctx: device.context().clone(),
            timed: !emulated,
            instructions: if emulated {
                instruction_counts_fn()
            } else {
                None
            },
            state: Mutex::new(TimerState::default()),
        })
    }

    /// Whether launches get times (a real GPU) or only counts (the stand-in driver).
    pub fn is_timed(&self) -> bool {
        self.timed
    }

    /// Whether per-kernel instruction counts are available (the stand-in driver).
    pub fn counts_instructions(&self) -> bool {
        self.instructions.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn event(&self) -> Result<CudaEvent> {
        // Flags 0 = CU_EVENT_DEFAULT: timing enabled (cudarc's default disables it).
        self.ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .context("cuEventCreate for kernel timing")
    }

    /// Read the event pairs of every launch since the last call (the caller synchronised the
    /// stream) and add them to the per-kernel stats.
    pub fn resolve(&self) -> Result<()> {
        let mut st = self.lock();
        if let Some(e) = st.error.take() {
            return Err(anyhow!("kernel timer: {e}"));
        }
        let pending = std::mem::take(&mut st.pending);
        for p in pending {
            let ms = match &p.events {
                Some((a, b)) => Some(
                    a.elapsed_ms(b)
                        .with_context(|| format!("cuEventElapsedTime for {}", p.key.1))?
                        as f64,
                ),
                None => None,
            };
            let s = st.stats.entry(p.key.clone()).or_insert_with(|| KernelStat {
                module: p.key.0.name(),
                entry: p.key.1.clone(),
                launches: 0,
                total_ms: None,
                min_ms: None,
                max_ms: None,
                thread_instructions: None,
            });
            s.launches += 1;
            if let Some(ms) = ms {
                s.total_ms = Some(s.total_ms.unwrap_or(0.0) + ms);
                s.min_ms = Some(s.min_ms.map_or(ms, |m| m.min(ms)));
                s.max_ms = Some(s.max_ms.map_or(ms, |m| m.max(ms)));
            }
            if let Some(n) = p.instructions {
                s.thread_instructions = Some(s.thread_instructions.unwrap_or(0) + n);
            }
        }
        Ok(())
    }

    /// Per-kernel stats (after [`Self::resolve`]): by total time, else by instructions, else by
    /// launches, largest first; ties by name.
    pub fn stats(&self) -> Vec<KernelStat> {
        let mut v: Vec<KernelStat> = self.lock().stats.values().cloned().collect();
        v.sort_by(|a, b| {
            b.total_ms
                .unwrap_or(0.0)
                .total_cmp(&a.total_ms.unwrap_or(0.0))
                .then(
                    b.thread_instructions
                        .unwrap_or(0)
                        .cmp(&a.thread_instructions.unwrap_or(0)),
                )
                .then(b.launches.cmp(&a.launches))
                .then(a.entry.cmp(&b.entry))
        });
        v
    }

    /// Launches seen while the stream was capturing a graph: they run at replay, where no
    /// observer sees them, so they are in no [`KernelStat`]. Turn graphs off to time kernels.
    pub fn captured_launches(&self) -> u64 {
        self.lock().captured
    }

    /// Forget every launch seen so far.
    pub fn reset(&self) {
        let mut st = self.lock();
        *st = TimerState::default();
    }
}

impl LaunchObserver for KernelTimer {
    fn before_launch(&self, stream: &Arc<CudaStream>, _module: KernelModule, _entry: &str) {
        let mut st = self.lock();
        if st.error.is_some() {
            return;
        }
        // A launch being captured into a graph runs later, at replay: nothing to time or count.
        st.capturing = is_capturing(stream);
        if st.capturing {
            st.captured += 1;
            return;
        }
        if self.timed {
            match self.event().and_then(|e| {
                e.record(stream).context("cuEventRecord (kernel start)")?;
                Ok(e)
            }) {
                Ok(e) => st.start = Some(e),
                Err(e) => st.error = Some(format!("{e:#}")),
            }
        }
        st.start_instructions = self.instructions.and_then(read_instructions);
    }

    fn after_launch(&self, stream: &Arc<CudaStream>, module: KernelModule, entry: &str) {
        let mut st = self.lock();
        if st.error.is_some() || st.capturing {
            return;
        }
        let events = if self.timed {
            let Some(start) = st.start.take() else {
                st.error = Some(format!("{entry}: launch ended without a start event"));
                return;
            };
            match self.event().and_then(|e| {
                e.record(stream).context("cuEventRecord (kernel end)")?;
                Ok(e)
            }) {
                Ok(end) => Some((start, end)),
                Err(e) => {
                    st.error = Some(format!("{e:#}"));
                    return;
                }
            }
        } else {
            None
        };
        let instructions = match (st.start_instructions.take(), self.instructions) {
            (Some(a), Some(f)) => read_instructions(f).map(|b| b.saturating_sub(a)),
            _ => None,
        };
        st.pending.push(Pending {
            key: (module, entry.to_string()),
            events,
            instructions,
        });
    }
}

// ------------------------------------------------------------------------------------------------
// Several observers

/// Runs several observers in order before a launch and in reverse order after it (so NVTX ranges
/// nest around timer events).
pub struct ObserverChain(pub Vec<Arc<dyn LaunchObserver>>);

impl LaunchObserver for ObserverChain {
    fn before_launch(&self, stream: &Arc<CudaStream>, module: KernelModule, entry: &str) {
        for o in &self.0 {
            o.before_launch(stream, module, entry);
        }
    }
    fn after_launch(&self, stream: &Arc<CudaStream>, module: KernelModule, entry: &str) {
        for o in self.0.iter().rev() {
            o.after_launch(stream, module, entry);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// NVTX

/// Environment variable naming the NVTX library to load instead of the default names.
pub const NVTX_LIB_ENV: &str = "CYBERHOST_NVTX_LIB";

/// Library names tried in order after `$CYBERHOST_NVTX_LIB`.
pub const NVTX_LIB_NAMES: [&str; 2] = ["libnvToolsExt.so.1", "libnvToolsExt.so"];

/// NVTX push/pop ranges through `libnvToolsExt` (NVTX v2 ABI, loaded at run time). Under Nsight
/// Systems / Compute the library forwards the ranges to the tool; outside a tool they cost a call.
pub struct Nvtx {
    push: unsafe extern "C" fn(*const c_char) -> c_int,
    pop: unsafe extern "C" fn() -> c_int,
    path: String,
    /// Keeps the function pointers valid.
    _lib: libloading::Library,
}

impl std::fmt::Debug for Nvtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nvtx").field("path", &self.path).finish()
    }
}

impl Nvtx {
    /// Load `$CYBERHOST_NVTX_LIB`, else `libnvToolsExt.so.1`, else `libnvToolsExt.so`. The error
    /// says where to get the library; it never panics.
    pub fn load() -> Result<Self> {
        let mut names: Vec<String> = Vec::new();
        if let Some(p) = std::env::var_os(NVTX_LIB_ENV) {
            names.push(p.to_string_lossy().into_owned());
        }
        names.extend(NVTX_LIB_NAMES.iter().map(|s| s.to_string()));
        let mut errors = Vec::new();
        for name in &names {
            // SAFETY: loading libnvToolsExt runs no initialiser with caller preconditions; the
            // NVTX v2 library initialises lazily on the first call.
            let lib = match unsafe { libloading::Library::new(name) } {
                Ok(l) => l,
                Err(e) => {
                    errors.push(format!("{name}: {e}"));
                    continue;
                }
            };
            // SAFETY: the NVTX v2 C ABI: `int nvtxRangePushA(const char*)`, `int nvtxRangePop()`.
            let syms = unsafe {
                lib.get::<unsafe extern "C" fn(*const c_char) -> c_int>(b"nvtxRangePushA\0")
                    .map(|s| *s)
                    .and_then(|push| {
                        lib.get::<unsafe extern "C" fn() -> c_int>(b"nvtxRangePop\0")
                            .map(|s| (push, *s))
                    })
            };
            match syms {
                Ok((push, pop)) => {
                    return Ok(Nvtx {
                        push,
                        pop,
                        path: name.clone(),
                        _lib: lib,
                    })
                }
                Err(e) => errors.push(format!("{name}: no nvtxRangePushA/nvtxRangePop ({e})")),
            }
        }
        Err(anyhow!(
            "NVTX unavailable ({}): install the CUDA toolkit's libnvToolsExt.so.1 (CUDA <= 12.8 \
             lib64, or `pip install nvidia-nvtx-cu12` and add its lib/ to LD_LIBRARY_PATH), or \
             point {NVTX_LIB_ENV} at it",
            errors.join("; ")
        ))
    }

    /// The library that was loaded.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Open a range named `name` (interior NULs are replaced).
    pub fn push(&self, name: &str) {
        let c = CString::new(name.replace('\0', " ")).unwrap_or_default();
        // SAFETY: `c` is a valid NUL-terminated string for the duration of the call (NVTX copies).
        unsafe { (self.push)(c.as_ptr()) };
    }

    /// Close the innermost open range.
    pub fn pop(&self) {
        // SAFETY: no arguments; popping with no open range is reported by NVTX, not UB.
        unsafe { (self.pop)() };
    }

    /// A range closed when the guard drops.
    pub fn range(&self, name: &str) -> NvtxRange<'_> {
        self.push(name);
        NvtxRange(self)
    }
}

/// Pops its NVTX range on drop.
pub struct NvtxRange<'a>(&'a Nvtx);

impl Drop for NvtxRange<'_> {
    fn drop(&mut self) {
        self.0.pop();
    }
}

/// A [`LaunchObserver`] that wraps every kernel launch in an NVTX range named after the kernel
/// (`module/entry`, e.g. `gemm/gemm_bf16_128x128`).
pub struct NvtxLaunchRanges(pub Arc<Nvtx>);

impl LaunchObserver for NvtxLaunchRanges {
    fn before_launch(&self, _stream: &Arc<CudaStream>, module: KernelModule, entry: &str) {
        self.0.push(&format!("{}/{entry}", module.name()));
    }
    fn after_launch(&self, _stream: &Arc<CudaStream>, _module: KernelModule, _entry: &str) {
        self.0.pop();
    }
}

// ------------------------------------------------------------------------------------------------
// NVML telemetry

/// One telemetry reading; a field the device or driver does not report is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TelemetrySample {
    pub sm_clock_mhz: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
    pub power_watts: Option<f64>,
    pub temperature_c: Option<u32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
}

/// NVML handle for the device a [`CudaDevice`] runs on.
pub struct Telemetry {
    #[cfg(feature = "nvml")]
    nvml: nvml_wrapper::Nvml,
    #[cfg(feature = "nvml")]
    uuid: Option<String>,
    #[cfg(feature = "nvml")]
    index: u32,
    /// NVML's name of the device, e.g. "NVIDIA H100 80GB HBM3".
    pub device_name: String,
}

/// The NVML form of a CUDA device UUID: `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn nvml_uuid(bytes: &[u8; 16]) -> String {
    let h: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

impl Telemetry {
    /// Open NVML for `device`. `Err` carries the reason telemetry is unavailable (no NVML
    /// library, the stand-in driver, feature `nvml` off, no matching device); callers report it
    /// as "telemetry unavailable: <reason>" and go on.
    pub fn open(device: &CudaDevice) -> std::result::Result<Self, String> {
        if device.is_emulated() {
            return Err("the stand-in driver (PTX emulator) has no NVML device".into());
        }
        Self::open_nvml(device)
    }

    #[cfg(not(feature = "nvml"))]
    fn open_nvml(_device: &CudaDevice) -> std::result::Result<Self, String> {
        Err("built without the `nvml` feature".into())
    }

    #[cfg(feature = "nvml")]
    fn open_nvml(device: &CudaDevice) -> std::result::Result<Self, String> {
        // nvml-wrapper dlopens libnvidia-ml.so.1 and returns an error when it is missing.
        let nvml = std::panic::catch_unwind(nvml_wrapper::Nvml::init)
            .map_err(|_| "NVML initialisation panicked".to_string())?
            .map_err(|e| format!("NVML: {e} (libnvidia-ml.so.1 from the NVIDIA driver)"))?;
        let uuid = device
            .context()
            .uuid()
            .ok()
            .map(|u| nvml_uuid(&u.bytes.map(|c| c as u8)));
        let index = device.ordinal() as u32;
        let t = Telemetry {
            nvml,
            uuid,
            index,
            device_name: String::new(),
        };
        let name = t
            .device()
            .and_then(|d| d.name().map_err(|e| format!("NVML device name: {e}")))?;
        Ok(Telemetry {
            device_name: name,
            ..t
        })
    }

    #[cfg(feature = "nvml")]
    fn device(&self) -> std::result::Result<nvml_wrapper::Device<'_>, String> {
        if let Some(u) = &self.uuid {
            if let Ok(d) = self.nvml.device_by_uuid(u.as_str()) {
                return Ok(d);
            }
        }
        // CUDA ordinals match NVML indices unless CUDA_VISIBLE_DEVICES reorders them.
        if std::env::var_os("CUDA_VISIBLE_DEVICES").is_some() {
            return Err(format!(
                "NVML has no device with the CUDA UUID {} (CUDA_VISIBLE_DEVICES is set, so the \
                 ordinal cannot be used)",
                self.uuid.as_deref().unwrap_or("?")
            ));
        }
        self.nvml
            .device_by_index(self.index)
            .map_err(|e| format!("NVML device {}: {e}", self.index))
    }

    /// Read clocks, power, temperature and memory now.
    pub fn sample(&self) -> Result<TelemetrySample> {
        self.sample_impl()
    }

    #[cfg(not(feature = "nvml"))]
    fn sample_impl(&self) -> Result<TelemetrySample> {
        Ok(TelemetrySample::default())
    }

    #[cfg(feature = "nvml")]
    fn sample_impl(&self) -> Result<TelemetrySample> {
        use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
        let d = self.device().map_err(|e| anyhow!(e))?;
        let mem = d.memory_info().ok();
        Ok(TelemetrySample {
            sm_clock_mhz: d.clock_info(Clock::SM).ok(),
            memory_clock_mhz: d.clock_info(Clock::Memory).ok(),
            power_watts: d.power_usage().ok().map(|mw| mw as f64 / 1e3),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
            memory_used_bytes: mem.as_ref().map(|m| m.used),
            memory_total_bytes: mem.as_ref().map(|m| m.total),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvml_uuid_groups_8_4_4_4_12() {
        let b: [u8; 16] = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba,
            0xdc, 0xfe,
        ];
        assert_eq!(nvml_uuid(&b), "GPU-01234567-89ab-cdef-1032-547698badcfe");
    }

    #[test]
    fn missing_nvtx_library_is_an_error_naming_the_fix() {
        // A path that cannot exist is tried first; the default names may or may not exist here.
        std::env::set_var(NVTX_LIB_ENV, "/nonexistent/libnvToolsExt.so.1");
        match Nvtx::load() {
            Ok(n) => assert_ne!(n.path(), "/nonexistent/libnvToolsExt.so.1"),
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(msg.contains("NVTX unavailable"), "{msg}");
                assert!(msg.contains(NVTX_LIB_ENV), "{msg}");
            }
        }
        std::env::remove_var(NVTX_LIB_ENV);
    }

    #[test]
    fn kernel_stat_mean_is_total_over_launches() {
        let s = KernelStat {
            module: "gemm",
            entry: "k".into(),
            launches: 4,
            total_ms: Some(2.0),
            min_ms: Some(0.25),
            max_ms: Some(1.0),
            thread_instructions: None,
        };
        assert_eq!(s.mean_ms(), Some(0.5));
        let untimed = KernelStat {
            total_ms: None,
            ..s
        };
        assert_eq!(untimed.mean_ms(), None);
    }
}
