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
