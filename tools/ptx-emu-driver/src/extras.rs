//! Extra symbols of the stand-in: call counters and instruction counts.

use crate::*;

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

thread_local! {
    /// The work split `ptxemu_set_launch_work` stated for this thread's next launch.
    static LAUNCH_WORK: std::cell::RefCell<Option<Vec<(u64, u64)>>> =
        const { std::cell::RefCell::new(None) };
}

/// The work split stated for this thread's next launch, if any (taken: one launch only).
pub(crate) fn take_launch_work() -> Option<Vec<(u64, u64)>> {
    LAUNCH_WORK.with(|w| w.borrow_mut().take())
}

/// State how the next kernel launch of the calling thread (`cuLaunchKernel[Ex]`, direct or
/// captured into a graph) shares its work among its blocks: `runs` points at `2 * nruns` values,
/// pairs `(blocks, units per block)` in linear block order (x fastest) that must cover the grid
/// exactly, e.g. a persistent grid of `P` blocks walking `T` tiles by stride `P` is
/// `(T mod P, T / P + 1), (P - T mod P, T / P)`. A profiled launch with `PTX_EMU_SAMPLE_BLOCKS`
/// then runs blocks of every work class (blocks of equal units) and scales each class by its
/// size (`docs/profiling.md`); unprofiled launches ignore it. `nruns = 0` clears a pending split.
/// The launch fails with `CUDA_ERROR_INVALID_VALUE` when the runs do not cover its grid.
/// Resolve it with `dlsym(handle, "ptxemu_set_launch_work")`.
///
/// # Safety
/// `runs` must point at `2 * nruns` readable `u64` values (or be null with `nruns = 0`).
#[no_mangle]
pub unsafe extern "C" fn ptxemu_set_launch_work(runs: *const u64, nruns: u64) -> CUresult {
    entry("ptxemu_set_launch_work", || {
        let split = if nruns == 0 {
            None
        } else {
            if runs.is_null() {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
            let n = usize::try_from(nruns)
                .ok()
                .and_then(|n| n.checked_mul(2))
                .ok_or(CUDA_ERROR_INVALID_VALUE)?;
            // SAFETY: the caller's contract (`2 * nruns` readable values).
            let v = unsafe { std::slice::from_raw_parts(runs, n) };
            Some(v.chunks_exact(2).map(|p| (p[0], p[1])).collect())
        };
        LAUNCH_WORK.with(|w| *w.borrow_mut() = split);
        Ok(())
    })
}
