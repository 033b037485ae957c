//! A warp-level PTX interpreter with hazard detection.
//!
//! `Module::parse` reads NVRTC-style PTX (ISA 8.x, `.target sm_80` … `sm_90a`; the emulated
//! architecture is `PTX_EMU_ARCH`, see [`Arch`]) and decodes every `.entry` once into a
//! compact instruction array (registers resolved to slot indices, `.func` calls inlined).
//! `launch` runs a grid block by block; inside a block the warps are interleaved by a seeded
//! scheduler, each warp executes one instruction for all its active lanes at a time and diverged
//! lanes reconverge by min-PC scheduling. See `docs/emulator.md` for what is and is not modelled.

// `Fault` is the contract error type of `launch` (EMU_API); boxing it would change the API.
#![allow(clippy::result_large_err)]

mod arch;
mod exec;
mod float;
mod memory;
mod parser;
mod program;
pub mod tensor_map;

pub use arch::{Arch, ArchLimits};
pub use memory::Memory;

use std::fmt;
use std::sync::Arc;

/// Errors from parsing PTX or from host-side memory operations.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EmuError {
    #[error("PTX parse error at line {line} near `{token}`: {msg}")]
    Parse {
        line: usize,
        token: String,
        msg: String,
    },
    #[error("memory error: {0}")]
    Memory(String),
}

/// Size and alignment of one kernel `.param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    pub name: String,
    pub size: usize,
    pub align: usize,
}

/// A module-scope `.global` or `.const` variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalInfo {
    pub name: String,
    pub size: usize,
    pub align: usize,
    /// `true` for `.const`, `false` for `.global`.
    pub is_const: bool,
    /// Initial contents (zero-filled where the PTX has no initializer).
    pub init: Vec<u8>,
}

/// A parsed and decoded PTX module.
pub struct Module {
    pub(crate) id: u64,
    pub(crate) globals: Vec<GlobalInfo>,
    pub(crate) kernels: Vec<Arc<program::Program>>,
    /// The `.target` architecture (`sm_80`, `sm_90a`, ...; empty when the PTX has none).
    pub(crate) target: String,
    /// The `.version` (PTX ISA) text, e.g. `8.4`.
    pub(crate) ptx_isa: String,
}

impl Module {
    /// Parse PTX text. Errors name the line and the token.
    pub fn parse(ptx: &str) -> Result<Module, EmuError> {
        program::build_module(ptx)
    }

    pub fn kernel_names(&self) -> Vec<String> {
        self.kernels.iter().map(|k| k.name.clone()).collect()
    }

    pub fn kernel_params(&self, kernel: &str) -> Option<Vec<ParamInfo>> {
        self.kernel(kernel).map(|k| k.params.clone())
    }

    /// Module-scope `.global`/`.const` variables (name, size) so a driver can back them.
    pub fn globals(&self) -> Vec<GlobalInfo> {
        self.globals.clone()
    }

    /// The architecture of the PTX's `.target` directive (e.g. `sm_90a`; empty when none).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The PTX ISA version of the `.version` directive (e.g. `8.4`).
    pub fn ptx_isa_version(&self) -> &str {
        &self.ptx_isa
    }

    /// Whether a device of architecture `arch` runs this module (see [`Arch::can_run`]).
    pub fn check_arch(&self, arch: Arch) -> Result<(), String> {
        if self.target.is_empty() {
            return Ok(());
        }
        arch.can_run(&self.target)
    }

    /// Unique id of this module (keys its globals in a `Memory`).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Static shared memory (bytes) the kernel declares (dynamic shared comes from the launch).
    pub fn static_shared_bytes(&self, kernel: &str) -> Option<usize> {
        self.kernel(kernel).map(|k| k.static_shared)
    }

    /// Per-thread local memory (bytes) of the kernel, including inlined `.func` frames.
    pub fn local_bytes(&self, kernel: &str) -> Option<usize> {
        self.kernel(kernel).map(|k| k.local_size)
    }

    /// Number of decoded instructions of the kernel (after `.func` inlining).
    pub fn instruction_count(&self, kernel: &str) -> Option<usize> {
        self.kernel(kernel).map(|k| k.instrs.len())
    }

    /// Instructions of `kernel` that the emulator does not support, as (PTX line, text, reason).
    /// `launch` fails with `FaultKind::Unsupported` on the first of them.
    pub fn unsupported(&self, kernel: &str) -> Vec<(usize, String, String)> {
        let Some(k) = self.kernel(kernel) else {
            return Vec::new();
        };
        k.instrs
            .iter()
            .zip(&k.texts)
            .filter_map(|(i, t)| match &i.op {
                program::Op::Unsupported(m) => Some((i.line as usize, t.clone(), m.clone())),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn kernel(&self, name: &str) -> Option<&Arc<program::Program>> {
        self.kernels.iter().find(|k| k.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dynamic_smem_bytes: u32,
}

/// How much a launch checks: `PTX_EMU_CHECKS=full|fast` (default `full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checks {
    /// Every hazard detector (shared races, uninitialised shared reads, cp.async misuse,
    /// divergent barriers and collectives, bounds, alignment) and 2 schedules per launch.
    Full,
    /// Bounds, alignment, divergent barriers and collectives only: no shadow state for race and
    /// initialisation checks, one schedule. Results are bit-identical to `Full`.
    Fast,
}

impl Checks {
    /// The level named by `PTX_EMU_CHECKS` (unset: `Full`). An unknown value prints a warning
    /// naming the accepted values and uses `Full`.
    pub fn from_env() -> Checks {
        match std::env::var("PTX_EMU_CHECKS") {
            Err(_) => Checks::Full,
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "full" => Checks::Full,
                "fast" => Checks::Fast,
                other => {
                    static WARNED: std::sync::Once = std::sync::Once::new();
                    let other = other.to_string();
                    WARNED.call_once(|| {
                        eprintln!(
                            "ptx-emu: PTX_EMU_CHECKS=`{other}` is not `full` or `fast`; using `full` (set PTX_EMU_CHECKS=fast for speed)"
                        )
                    });
                    Checks::Full
                }
            },
        }
    }

    /// Schedules per launch at this level (`PTX_EMU_SCHEDULES` overrides).
    pub fn default_schedules(self) -> u32 {
        match self {
            Checks::Full => 2,
            Checks::Fast => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchOptions {
    /// Number of seeded warp schedules the launch is run with (hazard search); results come from
    /// the first; default from env `PTX_EMU_SCHEDULES`, else 2 at `Checks::Full` and 1 at `Fast`.
    pub schedules: u32,
    pub seed: u64,
    pub detect_races: bool,
    pub detect_uninit_shared: bool,
    /// Threads the blocks of one launch run on (each block sees global memory as before the
    /// launch plus its own writes; writes land in block order; kernels with global atomics run
    /// their blocks in order on the calling thread). Default from env `PTX_EMU_THREADS`, else the
    /// available parallelism; 1 = blocks one after another.
    pub threads: u32,
    /// Run the common register-only instructions through their pre-decoded warp-wide form
    /// (`exec/fast/`); false sends every instruction through the general path. The results are
    /// the same bits either way (`tests/fast_path.rs`); default true, env `PTX_EMU_DECODED=0`
    /// turns it off.
    pub decoded: bool,
}

impl LaunchOptions {
    /// The defaults (environment included) at checking level `checks`.
    pub fn with_checks(checks: Checks) -> LaunchOptions {
        let schedules = std::env::var("PTX_EMU_SCHEDULES")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&n| n >= 1)
            .unwrap_or(checks.default_schedules());
        let full = checks == Checks::Full;
        LaunchOptions {
            schedules,
            detect_races: full,
            detect_uninit_shared: full,
            ..LaunchOptions::default()
        }
    }

    /// `Fast` when both shadow-state detectors are off, else `Full`.
    pub fn checks(&self) -> Checks {
        if self.detect_races || self.detect_uninit_shared {
            Checks::Full
        } else {
            Checks::Fast
        }
    }
}

impl Default for LaunchOptions {
    /// From the environment: `PTX_EMU_CHECKS`, `PTX_EMU_SCHEDULES`, `PTX_EMU_SEED`,
    /// `PTX_EMU_THREADS`, `PTX_EMU_DECODED`.
    fn default() -> Self {
        let checks = Checks::from_env();
        let full = checks == Checks::Full;
        let schedules = std::env::var("PTX_EMU_SCHEDULES")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|&n| n >= 1)
            .unwrap_or(checks.default_schedules());
        let seed = std::env::var("PTX_EMU_SEED")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0x5eed);
        static THREADS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let threads = *THREADS.get_or_init(|| {
            std::env::var("PTX_EMU_THREADS")
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .filter(|&n| n >= 1)
                .unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
                })
        });
        let decoded = std::env::var("PTX_EMU_DECODED").map_or(true, |v| v.trim() != "0");
        LaunchOptions {
            schedules,
            seed,
            detect_races: full,
            detect_uninit_shared: full,
            threads,
            decoded,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaunchStats {
    pub thread_instructions: u64,
    pub warp_instructions: u64,
    pub blocks: u64,
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    pub kernel: String,
    /// 1-based line in the PTX source (0 when the fault is not tied to one instruction).
    pub ptx_line: usize,
    /// The PTX text of the faulting instruction.
    pub instruction: String,
    pub block: [u32; 3],
    pub thread: [u32; 3],
    pub address: Option<u64>,
    /// E.g. the other thread of a race, the allocation bounds.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    OutOfBounds,
    Misaligned,
    SharedRace,
    BarrierDivergence,
    UninitSharedRead,
    Unsupported,
    InvalidParams,
    Trap,
    /// An asynchronous operation's operands touched before it completed (wgmma accumulators
    /// or shared operands before `wgmma.wait_group`, a wgmma without `wgmma.fence`).
    AsyncHazard,
    /// Threads wait on mbarrier phases that can never complete (no thread can arrive).
    Deadlock,
    /// A thread accessed shared bytes a bulk/TMA copy writes before its mbarrier phase completed.
    AsyncProxyRace,
    /// An mbarrier's transaction bytes (expect_tx) do not match the bytes delivered.
    TxCountMismatch,
    /// `setmaxnreg` raised the block's registers beyond the SM's register file.
    RegisterBudget,
    /// Distributed shared memory misuse in a thread-block cluster: a block accessed the shared
    /// memory of a block of its cluster that may already have exited (no `barrier.cluster`
    /// between the access and that block's exit).
    ClusterHazard,
}

impl FaultKind {
    /// The CUDA driver error code a launch with this fault returns.
    pub fn cuda_error_code(self) -> u32 {
        match self {
            FaultKind::OutOfBounds | FaultKind::Misaligned => 700,
            FaultKind::SharedRace
            | FaultKind::BarrierDivergence
            | FaultKind::UninitSharedRead
            | FaultKind::Trap
            | FaultKind::Unsupported
            | FaultKind::AsyncHazard
            | FaultKind::Deadlock
            | FaultKind::AsyncProxyRace
            | FaultKind::TxCountMismatch
            | FaultKind::RegisterBudget
            | FaultKind::ClusterHazard => 719,
            FaultKind::InvalidParams => 1,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FaultKind::OutOfBounds => "out-of-bounds access",
            FaultKind::Misaligned => "misaligned access",
            FaultKind::SharedRace => "shared-memory race",
            FaultKind::BarrierDivergence => "barrier divergence",
            FaultKind::UninitSharedRead => "read of uninitialised shared memory",
            FaultKind::Unsupported => "unsupported instruction",
            FaultKind::InvalidParams => "invalid launch parameters",
            FaultKind::Trap => "trap",
            FaultKind::AsyncHazard => "asynchronous-operation hazard",
            FaultKind::Deadlock => "mbarrier deadlock",
            FaultKind::AsyncProxyRace => {
                "access to a bulk-copy destination before its mbarrier phase completed"
            }
            FaultKind::TxCountMismatch => "mbarrier transaction-count mismatch",
            FaultKind::RegisterBudget => "register budget exceeded",
            FaultKind::ClusterHazard => "distributed shared memory of an exited block",
        };
        f.write_str(s)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kernel {}, PTX line {} `{}`: {} at block ({},{},{}) thread ({},{},{})",
            self.kernel,
            self.ptx_line,
            self.instruction,
            self.kind,
            self.block[0],
            self.block[1],
            self.block[2],
            self.thread[0],
            self.thread[1],
            self.thread[2]
        )?;
        if let Some(a) = self.address {
            write!(f, ", address {a:#x}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for Fault {}

/// What one launch runs: a kernel of a module, its launch shape and its parameters.
/// `params[i]` are the raw little-endian bytes of parameter i (pointers are u64 device addresses
/// from `Memory`), exactly what cuLaunchKernel's kernelParams point to.
#[derive(Clone, Copy)]
pub struct KernelCall<'a> {
    pub module: &'a Module,
    pub kernel: &'a str,
    pub cfg: &'a LaunchConfig,
    pub params: &'a [&'a [u8]],
}

/// Run a kernel (see [`KernelCall`] for the parameters).
pub fn launch(
    module: &Module,
    kernel: &str,
    cfg: &LaunchConfig,
    params: &[&[u8]],
    mem: &mut Memory,
    opts: &LaunchOptions,
) -> Result<LaunchStats, Fault> {
    let call = KernelCall {
        module,
        kernel,
        cfg,
        params,
    };
    exec::launch(call, [1, 1, 1], mem, opts, None)
}

/// [`launch`] with thread-block clusters of `cluster` blocks (x, y, z): what `cuLaunchKernelEx`
/// with a cluster-dimension attribute runs. The cluster must divide the grid and hold at most
/// 16 blocks (the stand-in driver applies the portable limit of 8 unless the launch allows
/// non-portable sizes). The blocks of a cluster run co-scheduled (their warps interleaved), so
/// `barrier.cluster` and distributed shared memory work; clusters run one after another.
pub fn launch_cluster(
    call: KernelCall<'_>,
    cluster: [u32; 3],
    mem: &mut Memory,
    opts: &LaunchOptions,
) -> Result<LaunchStats, Fault> {
    exec::launch(call, cluster, mem, opts, None)
}

/// [`launch`], counting what Nsight Compute counts (see `docs/profiling.md`): every executed
/// block feeds a `gpu_model::BlockAccumulator` (schedule 0 only) and the blocks are summed in the
/// returned accumulator; finish it with the launch's `gpu_model::LaunchInfo`.
///
/// `sample_blocks = Some(n)`: at most `n` blocks run, chosen by `gpu_model::sampling::sample_blocks`
/// (first and last included, spread over the grid); the other blocks' outputs are **not
/// written**, so the launch's results are not valid. `None`: every block runs (exact counts).
pub fn launch_counted(
    call: KernelCall<'_>,
    mem: &mut Memory,
    opts: &LaunchOptions,
    sample_blocks: Option<u64>,
) -> Result<(LaunchStats, gpu_model::LaunchAccumulator), Fault> {
    launch_counted_cluster(call, [1, 1, 1], mem, opts, sample_blocks)
}

/// [`launch_counted`] with thread-block clusters (see [`launch_cluster`]); a sampled launch with
/// clusters of more than one block runs `ceil(sample_blocks / cluster size)` whole clusters
/// spread over the grid and scales its counters by blocks_total / blocks_executed.
pub fn launch_counted_cluster(
    call: KernelCall<'_>,
    cluster: [u32; 3],
    mem: &mut Memory,
    opts: &LaunchOptions,
    sample_blocks: Option<u64>,
) -> Result<(LaunchStats, gpu_model::LaunchAccumulator), Fault> {
    launch_counted_split(call, cluster, mem, opts, sample_blocks, None)
}

/// [`launch_counted_cluster`] for a launch whose blocks carry the work `split` states (a
/// persistent launch: `gpu_model::sampling::WorkSplit`, covering the grid): a sampled launch
/// runs blocks of every work class and scales each class by its size
/// (`gpu_model::sampling::plan`). `split = None`: the blocks of
/// `gpu_model::sampling::sample_blocks`, scaled uniformly.
pub fn launch_counted_split(
    call: KernelCall<'_>,
    cluster: [u32; 3],
    mem: &mut Memory,
    opts: &LaunchOptions,
    sample_blocks: Option<u64>,
    split: Option<&gpu_model::sampling::WorkSplit>,
) -> Result<(LaunchStats, gpu_model::LaunchAccumulator), Fault> {
    // Clusters of several blocks (asked for, or the kernel's `.reqnctapercluster`) are sampled
    // whole (`exec::launch`) and scaled uniformly: blocks_total / blocks_executed (a work split
    // names single blocks, which a cluster sample does not run one by one).
    let clustered = exec::effective_cluster(&call, cluster) != [1, 1, 1];
    let split = split.filter(|_| !clustered);
    let total = call.cfg.grid.iter().map(|&g| u64::from(g)).product::<u64>();
    let plan = sample_blocks
        .filter(|&n| n < total)
        .map(|n| gpu_model::sampling::plan(total, Some(n), split));
    let sink = std::sync::Mutex::new(match &plan {
        Some(p) => gpu_model::LaunchAccumulator::with_plan(p),
        None => gpu_model::LaunchAccumulator::new(),
    });
    let prof = exec::Profiling {
        sink: &sink,
        blocks: plan.map(|p| p.blocks),
    };
    let stats = exec::launch(call, cluster, mem, opts, Some(&prof))?;
    Ok((stats, sink.into_inner().unwrap_or_else(|e| e.into_inner())))
}
