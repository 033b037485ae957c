//! Profiling on the stand-in (`docs/profiling.md`): with `PTX_EMU_STATS=FILE` every launch is
//! run through `ptx_emu::launch_counted` and leaves one row of Nsight-Compute-named counters,
//! appended to FILE as JSON Lines at each synchronisation (`cuCtxSynchronize`,
//! `cuStreamSynchronize`, `cuEventSynchronize`, a synchronous device→host copy, context
//! teardown). `PTX_EMU_SAMPLE_BLOCKS=N` runs at most N blocks per launch (counters scaled, outputs
//! not valid: the next device→host copy warns; a launch whose launcher stated its blocks' work
//! with `ptxemu_set_launch_work` runs blocks of every work class, each class scaled by its size); `PTX_EMU_GPU=NAME` adds `predicted_us`, `bound`
//! and the modelled DRAM bytes. Unset `PTX_EMU_STATS`: nothing here runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use gpu_model::sampling::WorkSplit;
use gpu_model::{Counters, GpuSpec, LaunchInfo};
use ptx_emu::{Fault, KernelCall, LaunchOptions, LaunchStats, Memory, Module};

include!(concat!(env!("OUT_DIR"), "/reports.rs"));

/// Environment variable naming the stats file.
pub const STATS_ENV: &str = "PTX_EMU_STATS";

/// FNV-1a, 64 bit (as `build.rs` hashes the committed PTX).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What a profiled launch needs from the environment.
pub(crate) struct Profile {
    path: PathBuf,
    sample: Option<u64>,
    gpu: Option<&'static GpuSpec>,
}

impl Profile {
    /// `Ok(None)` when `PTX_EMU_STATS` is unset; an error naming the variable and the fix when a
    /// variable has a bad value.
    pub fn from_env() -> Result<Option<Profile>, String> {
        let path = match std::env::var_os(STATS_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => return Ok(None),
        };
        Ok(Some(Profile {
            path,
            sample: gpu_model::sampling::sample_blocks_from_env()?,
            gpu: GpuSpec::from_env()?,
        }))
    }
}

/// Rows of launches since the last synchronisation, per stats file.
static PENDING: Mutex<Vec<(PathBuf, Counters)>> = Mutex::new(Vec::new());
/// A sampled launch ran since the last device→host copy.
static SAMPLED: AtomicBool = AtomicBool::new(false);
/// Module id → (ptxas report text, target arch), for modules whose text is committed PTX.
fn reports() -> &'static Mutex<HashMap<u64, (&'static str, String)>> {
    static R: OnceLock<Mutex<HashMap<u64, (&'static str, String)>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// A module was loaded from `text`: remember its ptxas report if the text is committed PTX.
pub(crate) fn note_module(module: &Module, text: &str) {
    let hash = fnv1a(text.as_bytes());
    if let Some(&(_, rep)) = REPORTS.iter().find(|(h, _)| *h == hash) {
        let arch = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(".target "))
            .map(|t| t.split([',', ' ']).next().unwrap_or("").to_string())
            .unwrap_or_default();
        reports()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(module.id(), (rep, arch));
    }
}

fn registers(module: &Module, kernel: &str) -> Option<u32> {
    let r = reports().lock().unwrap_or_else(|e| e.into_inner());
    let (rep, arch) = r.get(&module.id())?;
    gpu_model::counters::registers_from_report(rep, kernel, arch)
}

/// Run a launch with counters (sampled blocks weighted by `work` when the launcher stated it);
/// its row waits for the next synchronisation.
// `Fault` is ptx-emu's launch error type (its size is its API).
#[allow(clippy::result_large_err)]
pub(crate) fn launch(
    p: &Profile,
    call: KernelCall<'_>,
    cluster: [u32; 3],
    work: Option<&WorkSplit>,
    mem: &mut Memory,
    opts: &LaunchOptions,
) -> Result<LaunchStats, Fault> {
    let (stats, acc) = ptx_emu::launch_counted_split(call, cluster, mem, opts, p.sample, work)?;
    let (module, kernel, cfg) = (call.module, call.kernel, call.cfg);
    // Read footprint bound: the allocations the parameters point into. Pointers are 8-byte
    // parameters or 8-byte-aligned fields of struct parameters (our kernels take one params
    // struct), so every aligned 8-byte word of every parameter is tried as an address.
    let mut allocs: Vec<(u64, usize)> = call
        .params
        .iter()
        .flat_map(|b| b.chunks_exact(8))
        .filter_map(|w| mem.allocation_containing(u64::from_le_bytes(w.try_into().unwrap())))
        .collect();
    allocs.sort_unstable();
    allocs.dedup();
    let info = LaunchInfo {
        kernel: kernel.to_string(),
        grid: cfg.grid,
        block: cfg.block,
        registers_per_thread: registers(module, kernel),
        smem_static: module.static_shared_bytes(kernel).unwrap_or(0) as u64,
        smem_dynamic: u64::from(cfg.dynamic_smem_bytes),
        // no pointer found: no bound (a zero cap would erase every extrapolated read)
        read_footprint_cap_bytes: (!allocs.is_empty())
            .then(|| allocs.iter().map(|a| a.1 as u64).sum()),
        read_allocations: allocs.iter().map(|&(s, l)| (s, l as u64)).collect(),
    };
    let mut c = acc.finish(&info);
    if let Some(g) = p.gpu {
        gpu_model::model::annotate(&mut c, g);
    }
    if c.sampled {
        SAMPLED.store(true, Ordering::Relaxed);
    }
    PENDING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((p.path.clone(), c));
    Ok(stats)
}

/// A synchronisation: append the pending rows to their stats files.
pub(crate) fn flush() {
    let rows = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    if rows.is_empty() {
        return;
    }
    let mut by_file: Vec<(PathBuf, Vec<Counters>)> = Vec::new();
    for (path, c) in rows {
        match by_file.iter_mut().find(|(p, _)| *p == path) {
            Some((_, v)) => v.push(c),
            None => by_file.push((path, vec![c])),
        }
    }
    for (path, rows) in by_file {
        if let Err(e) = gpu_model::report::append_jsonl(&path, &rows) {
            eprintln!("ptx-emu-driver: {STATS_ENV}: {e} (set {STATS_ENV} to a writable file)");
        }
    }
}

/// A device→host copy: flush, and say once per sampled run that the data is not valid.
pub(crate) fn on_device_to_host() {
    flush();
    static WARNED: AtomicBool = AtomicBool::new(false);
    if SAMPLED.swap(false, Ordering::Relaxed) && !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "ptx-emu-driver: warning: {}={} ran only some blocks of each launch: device memory \
             read back from now on is NOT valid (counters only; unset it for real results)",
            gpu_model::sampling::SAMPLE_ENV,
            std::env::var(gpu_model::sampling::SAMPLE_ENV).unwrap_or_default()
        );
    }
}
