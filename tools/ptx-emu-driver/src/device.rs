//! The one emulated device, of the architecture `PTX_EMU_ARCH` selects (`sm_80`, `sm_86`,
//! `sm_89`, `sm_90a`; default `sm_90a`, an H100 SXM-like GPU: see `ptx_emu::Arch`).
//!
//! Limits match the selected card so launch checks fail where the real card would; capabilities
//! the emulator lacks (managed memory, cooperative launch) are reported as absent.

use ptx_emu::Arch;

/// The emulated architecture (`PTX_EMU_ARCH`, read once per process).
pub fn arch() -> Arch {
    static ARCH: std::sync::OnceLock<Arch> = std::sync::OnceLock::new();
    *ARCH.get_or_init(Arch::from_env)
}

/// Device name returned by `cuDeviceGetName`; says it is the emulator.
pub fn name() -> String {
    let a = arch();
    format!("ptx-emu stand-in ({a}, {})", a.card())
}
/// `cuDeviceTotalMem` (80 GiB; the backing store is host memory, allocated on demand).
pub const TOTAL_MEM: usize = 80 << 30;
pub const DRIVER_VERSION: i32 = 12040;

pub const MAX_THREADS_PER_BLOCK: u32 = 1024;
pub const MAX_BLOCK_DIM: [u32; 3] = [1024, 1024, 64];
pub const MAX_GRID_DIM: [u32; 3] = [2_147_483_647, 65535, 65535];
/// Default per-block shared memory limit (static + dynamic) without opt-in.
pub const SMEM_PER_BLOCK: u32 = 48 * 1024;
/// `cudaFuncAttributeMaxDynamicSharedMemorySize` may raise the limit up to this (227 KiB on
/// sm_90a, 163 KiB on sm_80, 99 KiB on sm_86/sm_89).
pub fn smem_per_block_optin() -> u32 {
    arch().limits().smem_per_block_optin
}
pub const WARP_SIZE: i32 = 32;

/// `cuDeviceGetAttribute`; `None` for an attribute id outside the 12.4 enum.
pub fn attribute(attrib: i32) -> Option<i32> {
    let lim = arch().limits();
    let v = match attrib {
        1 => MAX_THREADS_PER_BLOCK as i32,         // MAX_THREADS_PER_BLOCK
        2 => MAX_BLOCK_DIM[0] as i32,              // MAX_BLOCK_DIM_X
        3 => MAX_BLOCK_DIM[1] as i32,              // MAX_BLOCK_DIM_Y
        4 => MAX_BLOCK_DIM[2] as i32,              // MAX_BLOCK_DIM_Z
        5 => MAX_GRID_DIM[0] as i32,               // MAX_GRID_DIM_X
        6 => MAX_GRID_DIM[1] as i32,               // MAX_GRID_DIM_Y
        7 => MAX_GRID_DIM[2] as i32,               // MAX_GRID_DIM_Z
        8 => SMEM_PER_BLOCK as i32,                // MAX_SHARED_MEMORY_PER_BLOCK
        9 => 65536,                                // TOTAL_CONSTANT_MEMORY
        10 => WARP_SIZE,                           // WARP_SIZE
        11 => 2_147_483_647,                       // MAX_PITCH
        12 => 65536,                               // MAX_REGISTERS_PER_BLOCK
        13 => 1_980_000,                           // CLOCK_RATE (kHz)
        14 => 512,                                 // TEXTURE_ALIGNMENT
        15 => 1,                                   // GPU_OVERLAP
        16 => lim.sm_count as i32,                 // MULTIPROCESSOR_COUNT
        17 => 0,                                   // KERNEL_EXEC_TIMEOUT
        18 => 0,                                   // INTEGRATED
        19 => 0,                                   // CAN_MAP_HOST_MEMORY (no pinned memory)
        20 => 0,                                   // COMPUTE_MODE default
        30 => 512,                                 // SURFACE_ALIGNMENT
        31 => 1,                                   // CONCURRENT_KERNELS
        32 => 0,                                   // ECC_ENABLED
        33..=35 => 0,                              // PCI_BUS_ID, PCI_DEVICE_ID, TCC_DRIVER
        36 => 2_619_000,                           // MEMORY_CLOCK_RATE (kHz)
        37 => 5120,                                // GLOBAL_MEMORY_BUS_WIDTH
        38 => lim.l2_bytes as i32,                 // L2_CACHE_SIZE
        39 => lim.max_threads_per_sm as i32,       // MAX_THREADS_PER_MULTIPROCESSOR
        40 => 2,                                   // ASYNC_ENGINE_COUNT
        41 => 1,                                   // UNIFIED_ADDRESSING
        50 => 0,                                   // PCI_DOMAIN_ID
        75 => lim.cc.0 as i32,                     // COMPUTE_CAPABILITY_MAJOR
        76 => lim.cc.1 as i32,                     // COMPUTE_CAPABILITY_MINOR
        78 => 1,                                   // STREAM_PRIORITIES_SUPPORTED
        79 => 1,                                   // GLOBAL_L1_CACHE_SUPPORTED
        80 => 1,                                   // LOCAL_L1_CACHE_SUPPORTED
        81 => lim.smem_per_sm as i32,              // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
        82 => lim.regs_per_sm as i32,              // MAX_REGISTERS_PER_MULTIPROCESSOR
        83 => 0,                                   // MANAGED_MEMORY (not emulated)
        84 | 85 => 0,                              // MULTI_GPU_BOARD(_GROUP_ID)
        86 => 0,                                   // HOST_NATIVE_ATOMIC_SUPPORTED
        87 => 2,                                   // SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO
        88 | 89 => 0, // PAGEABLE_MEMORY_ACCESS, CONCURRENT_MANAGED_ACCESS
        90 => 1,      // COMPUTE_PREEMPTION_SUPPORTED
        95 | 96 => 0, // COOPERATIVE_(MULTI_DEVICE_)LAUNCH (not emulated)
        97 => lim.smem_per_block_optin as i32, // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        106 => lim.max_blocks_per_sm as i32, // MAX_BLOCKS_PER_MULTIPROCESSOR
        111 => lim.smem_reserved_per_block as i32, // RESERVED_SHARED_MEMORY_PER_BLOCK
        115 => 1,     // MEMORY_POOLS_SUPPORTED (cuMemAllocAsync works)
        120 => lim.hopper as i32, // CLUSTER_LAUNCH (thread-block clusters on sm_90a)
        a if (1..135).contains(&a) => 0, // everything else in the 12.4 enum: absent
        _ => return None,
    };
    Some(v)
}
