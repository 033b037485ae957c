//! The interpreter: blocks run one after another; inside a block, warps are interleaved by a
//! seeded scheduler. A warp executes one instruction for its current group of converged lanes
//! (min-PC reconvergence); lanes blocked at `bar.sync` or at a `.sync` collective wait.

use crate::float::{self, Fmt, Rnd};
use crate::memory::{Memory, Overlay, GLOBAL_LIMIT};
use crate::program::*;
use crate::{Fault, FaultKind, KernelCall, LaunchConfig, LaunchOptions, LaunchStats};
use half::f16;

mod alu;
mod atomics;
mod cluster;
mod control;
mod dispatch;
mod fast;
mod float_ops;
mod fp8;
mod hazards;
mod mbarrier;
mod memory;
mod proxy;
mod stats;
mod tensor_core;
mod tma;
mod wgmma;

use self::alu::{alu, compare, setp_int, setp_pair};
use atomics::*;
pub(crate) use fast::{decode_fast, FOp};
use float_ops::*;
use hazards::*;
pub(crate) use stats::Profiling;
pub(crate) use wgmma::wgmma_touch_map;

pub(crate) const SHARED_WINDOW: u64 = 0x0000_7a00_0000_0000;
pub(crate) const LOCAL_WINDOW: u64 = 0x0000_7b00_0000_0000;
pub(crate) const PARAM_WINDOW: u64 = 0x0000_7c00_0000_0000;
const WINDOW_SIZE: u64 = 1 << 32;

pub(crate) struct Err1 {
    kind: FaultKind,
    lane: u32,
    addr: Option<u64>,
    detail: String,
}

type R<T> = Result<T, Err1>;

fn e(kind: FaultKind, lane: u32, addr: Option<u64>, detail: impl Into<String>) -> Err1 {
    Err1 {
        kind,
        lane,
        addr,
        detail: detail.into(),
    }
}

struct Pending {
    lane: u8,
    len: u8,
    group: u32,
    dst: u32,
    data: [u8; 16],
    pc: u32,
}

#[derive(Default)]
struct Warp {
    idx: u32,
    regs: Vec<u64>,
    pc: u32,
    mask: u32,
    lane_pc: [u32; 32],
    running: u32,
    at_bar: u32,
    at_coll: u32,
    exited: u32,
    /// Lanes that are threads of the block (the last warp of a block can be partial).
    valid: u32,
    others_min: u32,
    dirty: bool,
    wepoch: u32,
    local: Vec<u8>,
    pending: Vec<Pending>,
    committed: [u32; 32],
    clock: u64,
    /// Outstanding `wgmma.mma_async` ops, commit groups, fence state (exec/wgmma.rs).
    wg: wgmma::WgState,
}

impl Warp {
    /// The group at `pc` splits: the lanes of `taken` go on at `to`, the other lanes of `mask`
    /// at `pc + 1`; the next group is picked afresh.
    #[inline(always)]
    fn split(&mut self, taken: u32, mask: u32, to: u32, pc: u32) {
        for l in lanes(taken) {
            self.lane_pc[l] = to;
        }
        for l in lanes(mask & !taken) {
            self.lane_pc[l] = pc + 1;
        }
        self.mask = 0;
        self.dirty = true;
    }

    /// The lanes of `exec` stop running at `pc` (waiting, or exited), the other lanes of `mask`
    /// go on at `pc + 1`.
    #[inline(always)]
    fn park(&mut self, exec: u32, mask: u32, pc: u32) {
        self.running &= !exec;
        self.split(exec, mask, pc, pc);
    }

    /// Pick the next group of lanes: the running lanes with the minimum PC.
    fn regroup(&mut self) -> bool {
        let mut m = self.mask & self.running;
        while m != 0 {
            let l = m.trailing_zeros();
            m &= m - 1;
            self.lane_pc[l as usize] = self.pc;
        }
        self.dirty = false;
        if self.running == 0 {
            self.mask = 0;
            return false;
        }
        let mut min = u32::MAX;
        let mut m = self.running;
        while m != 0 {
            let l = m.trailing_zeros();
            m &= m - 1;
            min = min.min(self.lane_pc[l as usize]);
        }
        let mut mask = 0;
        let mut omin = u32::MAX;
        let mut m = self.running;
        while m != 0 {
            let l = m.trailing_zeros();
            m &= m - 1;
            let p = self.lane_pc[l as usize];
            if p == min {
                mask |= 1 << l;
            } else {
                omin = omin.min(p);
            }
        }
        self.pc = min;
        self.mask = mask;
        self.others_min = omin;
        true
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Ctx<'a> {
    prog: &'a Program,
    kernel: &'a str,
    cfg: &'a LaunchConfig,
    opts: &'a LaunchOptions,
    params: &'a [u8],
    gsyms: &'a [u64],
    shared_size: usize,
    nthreads: u32,
    stats: LaunchStats,
    pool: Vec<Warp>,
    shared_buf: Vec<u8>,
    shadow_buf: Vec<Shadow>,
    max_steps: u64,
    /// Profiling (`PTX_EMU_STATS`): where blocks' counters go, which blocks run.
    prof: Option<&'a Profiling<'a>>,
    /// Thread-block cluster shape and the blocks of the cluster being run (`exec/cluster.rs`).
    cluster: cluster::Cluster,
}

/// Global memory as a block sees it: the memory itself (blocks one after another), or a shared
/// read-only view plus the block's own writes (blocks of one launch on several threads).
enum GMem<'b> {
    Seq(&'b mut Memory),
    Par(&'b Memory, &'b mut Overlay),
}

impl GMem<'_> {
    fn base(&self) -> &Memory {
        match self {
            GMem::Seq(m) => m,
            GMem::Par(m, _) => m,
        }
    }

    /// Read `out.len()` bytes at `addr`; false when outside every live allocation.
    #[inline]
    fn read(&self, addr: u64, out: &mut [u8]) -> bool {
        match self {
            GMem::Seq(m) => match m.find(addr, out.len()) {
                Some(i) => {
                    out.copy_from_slice(m.slice(i, addr, out.len()));
                    true
                }
                None => false,
            },
            GMem::Par(m, ov) => match m.find_from(addr, out.len(), ov.hint.get()) {
                Some(i) => {
                    ov.hint.set(i);
                    out.copy_from_slice(m.slice(i, addr, out.len()));
                    ov.patch(addr, out);
                    true
                }
                None => false,
            },
        }
    }

    /// The `eb`-byte (1, 2, 4 or 8) little-endian value at `addr`; None when outside every live
    /// allocation.
    #[inline(always)]
    fn read_le(&self, addr: u64, eb: usize) -> Option<u64> {
        let (m, i) = match self {
            GMem::Seq(m) => (&**m, m.find(addr, eb)?),
            GMem::Par(m, ov) => {
                let i = m.find_from(addr, eb, ov.hint.get())?;
                ov.hint.set(i);
                (&**m, i)
            }
        };
        let b = m.slice(i, addr, eb);
        let v = match eb {
            1 => b[0] as u64,
            2 => u16::from_le_bytes([b[0], b[1]]) as u64,
            4 => u32::from_le_bytes(b.try_into().unwrap()) as u64,
            _ => u64::from_le_bytes(b.try_into().unwrap()),
        };
        if let GMem::Par(_, ov) = self {
            if ov.may_hold(addr, eb) {
                let mut t = v.to_le_bytes();
                ov.patch(addr, &mut t[..eb]);
                return Some(u64::from_le_bytes(t));
            }
        }
        Some(v)
    }

    /// Write the low `eb` (1, 2, 4 or 8) bytes of `v` at `addr`; false when outside every live
    /// allocation.
    #[inline(always)]
    fn write_le(&mut self, addr: u64, v: u64, eb: usize) -> bool {
        match self {
            GMem::Seq(m) => match m.find(addr, eb) {
                Some(i) => {
                    let b = m.slice_mut(i, addr, eb);
                    match eb {
                        1 => b[0] = v as u8,
                        2 => b.copy_from_slice(&(v as u16).to_le_bytes()),
                        4 => b.copy_from_slice(&(v as u32).to_le_bytes()),
                        _ => b.copy_from_slice(&v.to_le_bytes()),
                    }
                    true
                }
                None => false,
            },
            GMem::Par(m, ov) => match m.find_from(addr, eb, ov.hint.get()) {
                Some(i) => {
                    ov.hint.set(i);
                    ov.write(addr, &v.to_le_bytes()[..eb]);
                    true
                }
                None => false,
            },
        }
    }

    /// Write `data` at `addr`; false when outside every live allocation.
    #[inline]
    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        match self {
            GMem::Seq(m) => match m.find(addr, data.len()) {
                Some(i) => {
                    m.slice_mut(i, addr, data.len()).copy_from_slice(data);
                    true
                }
                None => false,
            },
            GMem::Par(m, ov) => match m.find_from(addr, data.len(), ov.hint.get()) {
                Some(i) => {
                    ov.hint.set(i);
                    ov.write(addr, data);
                    true
                }
                None => false,
            },
        }
    }
}

struct Block<'a, 'b> {
    c: &'b mut Ctx<'a>,
    mem: GMem<'b>,
    ctaid: [u32; 3],
    shared: Vec<u8>,
    shadow: Vec<Shadow>,
    epoch: u32,
    warps: Vec<Warp>,
    /// Warp-instructions executed by this block (watchdog).
    steps: u64,
    /// This block's counters when the launch is profiled (schedule 0 only).
    prof: Option<Box<stats::BlockStats>>,
    /// sm_90 mbarriers, bulk copies in flight, setmaxnreg budgets (`exec/mbarrier.rs`).
    hop: mbarrier::HopState,
}

/// The largest emulated register file of one block: 1 GiB (e.g. 4096 registers per thread at
/// 1024 threads is 32 MiB; real kernels stay far below).
const MAX_BLOCK_REGISTER_BYTES: u64 = 1 << 30;

/// The cluster shape a launch of `call` asking for `dims` runs with (a kernel's
/// `.reqnctapercluster` applies to a launch without a shape); `dims` when the kernel is unknown
/// or the shape is refused (the launch itself reports that).
pub(crate) fn effective_cluster(call: &KernelCall<'_>, dims: [u32; 3]) -> [u32; 3] {
    call.module
        .kernel(call.kernel)
        .and_then(|p| cluster::launch_dims(p, dims).ok())
        .unwrap_or(dims)
}

pub(crate) fn launch(
    call: KernelCall<'_>,
    cluster_dims: [u32; 3],
    mem: &mut Memory,
    opts: &LaunchOptions,
    prof: Option<&Profiling>,
) -> Result<LaunchStats, Fault> {
    let KernelCall {
        module,
        kernel,
        cfg,
        params,
    } = call;
    let bad = |detail: String| Fault {
        kind: FaultKind::InvalidParams,
        kernel: kernel.to_string(),
        ptx_line: 0,
        instruction: String::new(),
        block: [0; 3],
        thread: [0; 3],
        address: None,
        detail,
    };
    let prog = module
        .kernel(kernel)
        .ok_or_else(|| {
            bad(format!(
                "no kernel `{kernel}` in module (have: {:?})",
                module.kernel_names()
            ))
        })?
        .clone();
    if let Some((i, ins)) = prog.first_unsupported.map(|i| (i, &prog.instrs[i])) {
        let Op::Unsupported(msg) = &ins.op else {
            unreachable!()
        };
        return Err(Fault {
            kind: FaultKind::Unsupported,
            kernel: kernel.to_string(),
            ptx_line: ins.line as usize,
            instruction: prog.texts[i].clone(),
            block: [0; 3],
            thread: [0; 3],
            address: None,
            detail: msg.clone(),
        });
    }
    if params.len() != prog.params.len() {
        return Err(bad(format!(
            "kernel takes {} parameters, launch passed {}",
            prog.params.len(),
            params.len()
        )));
    }
    let mut pbuf = vec![0u8; prog.param_size];
    for (i, (p, info)) in params.iter().zip(&prog.params).enumerate() {
        if p.len() != info.size {
            return Err(bad(format!(
                "parameter {i} (`{}`) is {} bytes, launch passed {}",
                info.name,
                info.size,
                p.len()
            )));
        }
        let o = prog.param_offsets[i];
        pbuf[o..o + p.len()].copy_from_slice(p);
    }
    let nthreads = cfg.block[0] as u64 * cfg.block[1] as u64 * cfg.block[2] as u64;
    if nthreads == 0 || nthreads > 1024 || cfg.block[2] > 64 {
        return Err(bad(format!(
            "block {:?} is invalid (1..=1024 threads, z ≤ 64)",
            cfg.block
        )));
    }
    if cfg.grid.contains(&0) || cfg.grid[1] > 65535 || cfg.grid[2] > 65535 {
        return Err(bad(format!("grid {:?} is invalid", cfg.grid)));
    }
    // PTX registers are virtual and the emulator gives each one a 32-lane row of 8 bytes, so a
    // kernel that declares millions of them (legal PTX; ptxas would spill) would need gigabytes
    // per block: refuse it with a message instead of allocating.
    let reg_bytes = (prog.nregs as u64)
        .saturating_mul(nthreads.div_ceil(32) * 32)
        .saturating_mul(8);
    if reg_bytes > MAX_BLOCK_REGISTER_BYTES {
        return Err(bad(format!(
            "kernel declares {} virtual registers; a block of {nthreads} threads would need \
             {reg_bytes} bytes of emulated register file, more than the emulator's \
             {MAX_BLOCK_REGISTER_BYTES}; launch smaller blocks or declare fewer registers",
            prog.nregs
        )));
    }
    let shared_size = prog.dyn_shared_offset() + cfg.dynamic_smem_bytes as usize;
    let shared_size = if cfg.dynamic_smem_bytes == 0 {
        prog.static_shared
    } else {
        shared_size
    };
    let arch = crate::Arch::from_env();
    // Max shared memory per block: the emulated arch's opt-in limit (PTX_EMU_ARCH).
    let max_shared = arch.limits().smem_per_block_optin as usize;
    if shared_size > max_shared {
        return Err(bad(format!(
            "kernel needs {shared_size} bytes of shared memory; the limit is {max_shared} on {arch}"
        )));
    }
    if let Err(why) = module.check_arch(arch) {
        return Err(Fault {
            kind: FaultKind::Unsupported,
            ..bad(format!(
                "{why} (PTX_EMU_ARCH selects the emulated architecture)"
            ))
        });
    }
    let cluster_dims = cluster::launch_dims(&prog, cluster_dims).map_err(bad)?;
    cluster::check_dims(cluster_dims, cfg.grid).map_err(bad)?;
    let clustered = cluster_dims != [1, 1, 1];
    let gsyms: Vec<u64> = mem
        .load_module_globals(module)
        .map_err(|er| bad(format!("cannot back module globals: {er}")))?
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    let max_steps = std::env::var("PTX_EMU_MAX_WARP_INSTRUCTIONS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1u64 << 31);
    let new_ctx = || Ctx {
        prog: &prog,
        kernel,
        cfg,
        opts,
        params: &pbuf,
        gsyms: &gsyms,
        shared_size,
        nthreads: nthreads as u32,
        stats: LaunchStats::default(),
        pool: Vec::new(),
        shared_buf: Vec::new(),
        shadow_buf: Vec::new(),
        max_steps,
        prof,
        cluster: cluster::Cluster::new(cluster_dims),
    };
    let grid_blocks = cfg.grid[0] as u64 * cfg.grid[1] as u64 * cfg.grid[2] as u64;
    // Sampled launches run the listed blocks only: block `b` below is the `b`-th of them. A
    // clustered launch runs whole clusters instead (its blocks wait for each other): as many
    // clusters as the list holds blocks, rounded up, spread over the grid as the list is
    // (`cluster::sampled_clusters`), counted cluster by cluster, rank by rank.
    let cluster_pick = prof
        .and_then(|p| p.blocks.as_deref())
        .filter(|_| clustered)
        .map(|v| cluster::sampled_clusters(v.len() as u64, cluster_dims, grid_blocks));
    let picked = match &cluster_pick {
        Some(v) => Some(v.as_slice()),
        None => prof.and_then(|p| p.blocks.as_deref()),
    };
    let nblocks = picked.map_or(grid_blocks, |v| v.len() as u64);
    let ctaid_of = |b: u64| {
        let b = picked.map_or(b, |v| v[b as usize]);
        // clusters: `b` counts the blocks cluster by cluster, rank by rank
        let b = cluster::block_index(b, cluster_dims, cfg.grid);
        [
            (b % cfg.grid[0] as u64) as u32,
            ((b / cfg.grid[0] as u64) % cfg.grid[1] as u64) as u32,
            (b / (cfg.grid[0] as u64 * cfg.grid[1] as u64)) as u32,
        ]
    };
    let threads = if clustered {
        1
    } else {
        launch_threads(nblocks, &prog, opts)
    };
    if threads > 1 {
        return launch_parallel(mem, opts, nblocks, threads, &new_ctx, &ctaid_of);
    }
    let mut ctx = new_ctx();
    // Extra schedules first (journaled, rolled back), then schedule 0 for the results.
    for s in (0..opts.schedules.max(1)).rev() {
        let journal = s != 0;
        if journal {
            mem.start_journal();
        }
        let mut rng = Rng(opts.seed ^ (s as u64).wrapping_mul(0x9e37_79b9));
        let mut order: Vec<u64> = (0..nblocks).collect();
        if s != 0 && clustered {
            cluster::shuffle_clusters(&mut order, cluster_dims, &mut rng);
        } else if s != 0 {
            for i in (1..order.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        let saved = ctx.stats;
        let mut res = Ok(());
        for &b in &order {
            res = run_block(&mut ctx, GMem::Seq(mem), ctaid_of(b), s, &mut rng);
            if res.is_err() {
                break;
            }
            ctx.stats.blocks += 1;
        }
        if journal {
            mem.rollback_journal();
            ctx.stats = saved;
        }
        res?;
    }
    Ok(ctx.stats)
}

/// Worker threads for the blocks of one launch: `LaunchOptions::threads`, capped by the number
/// of blocks; 1 (blocks in order on the calling thread) for kernels with atomics outside shared
/// memory, whose blocks may communicate through them.
fn launch_threads(nblocks: u64, prog: &Program, opts: &LaunchOptions) -> usize {
    let t = opts.threads.max(1) as usize;
    if prog.global_atomics || nblocks < 2 {
        1
    } else {
        t.min(nblocks as usize)
    }
}

/// The blocks of a launch on `threads` threads. Each block reads the global memory as it was
/// before the launch plus its own writes (an [`Overlay`]); after all blocks ran, the writes land
/// block by block in launch order, so the result equals running the blocks one after another
/// whenever no block reads what another block of the same launch writes (which CUDA does not
/// order either, short of atomics: kernels with global atomics never come here). Extra schedules
/// shuffle nothing (blocks are independent here) and discard their writes; each block's warp
/// schedule is seeded by (seed, schedule, block). Hazards are per block as before; the fault
/// reported is the one of the first faulting block in launch order.
fn launch_parallel<'a>(
    mem: &mut Memory,
    opts: &LaunchOptions,
    nblocks: u64,
    threads: usize,
    new_ctx: &(dyn Fn() -> Ctx<'a> + Sync),
    ctaid_of: &(dyn Fn(u64) -> [u32; 3] + Sync),
) -> Result<LaunchStats, Fault> {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let mut stats = LaunchStats::default();
    for s in (0..opts.schedules.max(1)).rev() {
        let next = AtomicU64::new(0);
        // Lowest faulting block so far: blocks after it need not run.
        let first_fault = AtomicU64::new(u64::MAX);
        let base: &Memory = mem;
        type Done = (u64, Result<(), Fault>, Overlay, LaunchStats);
        let mut done: Vec<Done> = std::thread::scope(|sc| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    sc.spawn(|| {
                        let mut ctx = new_ctx();
                        let mut out: Vec<Done> = Vec::new();
                        loop {
                            let b = next.fetch_add(1, Relaxed);
                            if b >= nblocks || b > first_fault.load(Relaxed) {
                                break;
                            }
                            let mut ov = Overlay::default();
                            let mut rng = Rng(opts.seed
                                ^ (s as u64).wrapping_mul(0x9e37_79b9)
                                ^ b.wrapping_mul(0x2545_f491_4f6c_dd1d));
                            ctx.stats = LaunchStats::default();
                            let r = run_block(
                                &mut ctx,
                                GMem::Par(base, &mut ov),
                                ctaid_of(b),
                                s,
                                &mut rng,
                            );
                            if r.is_err() {
                                first_fault.fetch_min(b, Relaxed);
                            } else {
                                ctx.stats.blocks = 1;
                            }
                            if s != 0 {
                                ov = Overlay::default();
                            }
                            out.push((b, r, ov, ctx.stats));
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("ptx-emu block worker panicked"))
                .collect()
        });
        done.sort_by_key(|d| d.0);
        for (_, r, ov, st) in done {
            r?;
            if s == 0 {
                mem.apply_overlay(&ov);
                stats.thread_instructions += st.thread_instructions;
                stats.warp_instructions += st.warp_instructions;
                stats.blocks += st.blocks;
            }
        }
    }
    Ok(stats)
}

fn run_block(
    ctx: &mut Ctx,
    mem: GMem,
    ctaid: [u32; 3],
    sched: u32,
    rng: &mut Rng,
) -> Result<(), Fault> {
    let prog = ctx.prog;
    let nwarps = ctx.nthreads.div_ceil(32);
    let cfg = *ctx.cfg;
    let mut warps = Vec::with_capacity(nwarps as usize);
    for wi in 0..nwarps {
        let mut w = ctx.pool.pop().unwrap_or_default();
        let mut regs = std::mem::take(&mut w.regs);
        let mut local = std::mem::take(&mut w.local);
        let mut pending = std::mem::take(&mut w.pending);
        // Registers keep whatever the previous block left (PTX registers start undefined);
        // only the special-register slots are (re)written below.
        regs.resize(prog.nregs * 32, 0);
        local.clear();
        local.resize(prog.local_size * 32, 0);
        pending.clear();
        let mut w = Warp {
            idx: wi,
            regs,
            local,
            pending,
            others_min: u32::MAX,
            ..Default::default()
        };
        for l in 0..32u32 {
            let tid = wi * 32 + l;
            let li = l as usize;
            if tid >= ctx.nthreads {
                w.exited |= 1 << l;
                continue;
            }
            w.running |= 1 << l;
            w.valid |= 1 << l;
            let t = [
                tid % cfg.block[0],
                (tid / cfg.block[0]) % cfg.block[1],
                tid / (cfg.block[0] * cfg.block[1]),
            ];
            // %tid, %ntid, %ctaid, %nctaid (x, y, z each), then the scalar registers
            let dims: [[u32; 3]; 4] = [t, cfg.block, ctaid, cfg.grid];
            let scalars: [u64; 14] = [
                l as u64,
                wi as u64,
                nwarps as u64,
                0,
                1,
                0,
                1u64 << l,
                ((2u64 << l) - 1) & 0xffff_ffff,
                (1u64 << l) - 1,
                (!((1u64 << l) - 1)) & 0xffff_ffff,
                (!((2u64 << l) - 1)) & 0xffff_ffff,
                cfg.dynamic_smem_bytes as u64,
                ctx.shared_size as u64,
                32,
            ];
            let dims = dims.into_iter().flatten().map(u64::from);
            let cluster = ctx.cluster.specials(ctaid, cfg.grid);
            for (k, v) in dims.chain(scalars).chain(cluster).enumerate() {
                w.regs[k * 32 + li] = v;
            }
        }
        w.mask = w.running;
        w.pc = 0;
        w.dirty = true;
        warps.push(w);
    }
    let mut shared = std::mem::take(&mut ctx.shared_buf);
    shared.clear();
    shared.resize(ctx.shared_size, 0);
    let mut shadow = std::mem::take(&mut ctx.shadow_buf);
    shadow.clear();
    if ctx.opts.detect_races || ctx.opts.detect_uninit_shared {
        shadow.resize(ctx.shared_size.div_ceil(4), NO_SHADOW);
    }
    let prof = ctx
        .prof
        .filter(|_| sched == 0)
        .map(|_| stats::BlockStats::new(nwarps));
    let mut blk = Block {
        shared,
        shadow,
        c: ctx,
        mem,
        ctaid,
        epoch: 0,
        warps,
        steps: 0,
        prof,
        hop: Default::default(),
    };
    let r = blk.schedule(sched, rng);
    if let (Ok(()), Some(p), Some(sink)) = (&r, blk.prof.take(), blk.c.prof) {
        p.finish(sink.sink, blk.ctaid, blk.c.cfg.grid);
    }
    // return the buffers to the pools
    blk.c.shared_buf = std::mem::take(&mut blk.shared);
    blk.c.shadow_buf = std::mem::take(&mut blk.shadow);
    let warps = std::mem::take(&mut blk.warps);
    blk.c.pool.extend(warps);
    r
}

impl<'a, 'b> Block<'a, 'b> {
    fn schedule(&mut self, sched: u32, rng: &mut Rng) -> Result<(), Fault> {
        if self.c.cluster.size() > 1 {
            return self.schedule_cluster(sched, rng);
        }
        let mut rr = 0usize;
        let mut runnable = [0usize; 32];
        loop {
            let mut n = 0;
            for (i, w) in self.warps.iter().enumerate() {
                if w.running != 0 {
                    runnable[n] = i;
                    n += 1;
                }
            }
            if n == 0 {
                if self.hop_stalled()? {
                    continue;
                }
                if !self.resolve_barrier()? {
                    return self.hop_finish();
                }
                continue;
            }
            let (wi, slice) = if sched == 0 {
                rr = (rr + 1) % n;
                (runnable[rr], 256)
            } else {
                (
                    runnable[rng.below(n as u64) as usize],
                    1 + rng.below(96) as u32,
                )
            };
            let mut w = std::mem::take(&mut self.warps[wi]);
            let r = self.run_warp(&mut w, slice);
            self.warps[wi] = w;
            if let Err(er) = r {
                let pc = self.warps[wi].pc as usize;
                return Err(self.fault(wi, pc, er));
            }
            self.hop_tick(sched, rng)?;
        }
    }
}

#[inline(always)]
fn mask_bits(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

#[inline(always)]
fn sext(v: u64, bits: u32) -> i64 {
    if bits >= 64 {
        v as i64
    } else {
        let s = 64 - bits;
        ((v << s) as i64) >> s
    }
}

fn lanes(mut m: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let l = m.trailing_zeros();
            m &= m - 1;
            Some(l as usize)
        }
    })
}

impl<'a, 'b> Block<'a, 'b> {
    pub(super) fn tid_of(&self, warp: usize, lane: u32) -> [u32; 3] {
        let b = self.c.cfg.block;
        let t = warp as u32 * 32 + lane;
        [t % b[0], (t / b[0]) % b[1], t / (b[0] * b[1])]
    }

    pub(super) fn fault(&self, warp: usize, pc: usize, er: Err1) -> Fault {
        let prog = self.c.prog;
        let (line, text) = match prog.instrs.get(pc) {
            Some(i) => (i.line as usize, prog.texts[pc].clone()),
            None => (0, String::new()),
        };
        Fault {
            kind: er.kind,
            kernel: self.c.kernel.to_string(),
            ptx_line: line,
            instruction: text,
            block: self.ctaid,
            thread: self.tid_of(warp, er.lane),
            address: er.addr,
            detail: er.detail,
        }
    }

    pub(super) fn describe_tid(&self, tid: u32) -> String {
        let t = self.tid_of((tid / 32) as usize, tid % 32);
        format!(
            "thread ({},{},{}) (warp {}, lane {})",
            t[0],
            t[1],
            t[2],
            tid / 32,
            tid % 32
        )
    }

    #[inline(always)]
    pub(super) fn val(&self, w: &Warp, o: &Opnd, lane: usize) -> u64 {
        match o {
            Opnd::Reg(r) => {
                let i = *r as usize * 32 + (lane & 31);
                debug_assert!(i < w.regs.len());
                // SAFETY: the decoder only creates `Reg(r)` with r < Program::nregs, and every
                // warp's register file holds nregs * 32 slots (run_block); lane is masked to 0..32.
                unsafe { *w.regs.get_unchecked(i) }
            }
            Opnd::Imm(v) => *v,
            Opnd::NotReg(r) => (!w.regs[*r as usize * 32 + lane]) & 1,
            Opnd::GSym(g, off) => self.c.gsyms[*g as usize].wrapping_add(*off as u64),
            Opnd::Clock => w.clock,
            _ => 0,
        }
    }

    #[inline(always)]
    pub(super) fn set(w: &mut Warp, o: &Opnd, lane: usize, v: u64) {
        if let Opnd::Reg(r) = o {
            let i = *r as usize * 32 + (lane & 31);
            debug_assert!(i < w.regs.len());
            // SAFETY: as in `val`: r < nregs by construction and the file has nregs * 32 slots.
            unsafe { *w.regs.get_unchecked_mut(i) = v }
        }
    }

    pub(super) fn addr(&self, w: &Warp, o: &Opnd, lane: usize) -> u64 {
        match o {
            Opnd::Addr(b, off) => {
                let base = match b {
                    Base::None => 0,
                    Base::Reg(r) => w.regs[*r as usize * 32 + lane],
                    Base::GSym(g) => self.c.gsyms[*g as usize],
                };
                base.wrapping_add(*off as u64)
            }
            _ => 0,
        }
    }

    /// The 32 lane values of a source operand (inactive lanes included; callers mask).
    #[inline(always)]
    pub(super) fn gather(&self, w: &Warp, o: &Opnd) -> [u64; 32] {
        match o {
            Opnd::Reg(r) => {
                let i = *r as usize * 32;
                let mut v = [0u64; 32];
                v.copy_from_slice(&w.regs[i..i + 32]);
                v
            }
            Opnd::NotReg(r) => {
                let i = *r as usize * 32;
                let mut v = [0u64; 32];
                for (l, x) in v.iter_mut().enumerate() {
                    *x = (!w.regs[i + l]) & 1;
                }
                v
            }
            o => [self.val(w, o, 0); 32],
        }
    }
}

/// The 32 lane values of a source operand without copying a register: a register's row of the
/// register file, or `tmp` filled with the operand's (lane-independent) value.
#[inline(always)]
pub(super) fn src32<'x>(
    regs: &'x [u64],
    gsyms: &[u64],
    clock: u64,
    o: &Opnd,
    tmp: &'x mut [u64; 32],
) -> &'x [u64; 32] {
    match o {
        Opnd::Reg(r) => {
            let i = *r as usize * 32;
            regs[i..i + 32].try_into().unwrap()
        }
        Opnd::NotReg(r) => {
            let i = *r as usize * 32;
            for (t, v) in tmp.iter_mut().zip(&regs[i..i + 32]) {
                *t = !*v & 1;
            }
            tmp
        }
        o => {
            let v = match o {
                Opnd::Imm(v) => *v,
                Opnd::GSym(g, off) => gsyms[*g as usize].wrapping_add(*off as u64),
                Opnd::Clock => clock,
                _ => 0,
            };
            *tmp = [v; 32];
            tmp
        }
    }
}

/// Write the lanes of `exec` of register row `dr` from `r` (a straight select loop).
#[inline(always)]
pub(super) fn store32(regs: &mut [u64], dr: u32, r: &[u64; 32], exec: u32) {
    let i = dr as usize * 32;
    let dst: &mut [u64; 32] = (&mut regs[i..i + 32]).try_into().unwrap();
    if exec == u32::MAX {
        *dst = *r;
    } else {
        for l in 0..32 {
            dst[l] = if (exec >> l) & 1 != 0 { r[l] } else { dst[l] };
        }
    }
}

/// Register bit patterns every bit-exactness test covers: zeros, subnormals, NaNs, infinities,
/// extremes, shift counts around the word sizes.
#[cfg(test)]
const EDGE_BITS: [u64; 21] = [
    0,
    1,
    0x8000_0000,
    0x8000_0001,
    0x007f_ffff,
    0x0080_0000,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0x7f7f_ffff,
    0x3f80_0000,
    0xbf80_0000,
    0xffff_ffff,
    0x7fff_ffff,
    u64::MAX,
    1 << 63,
    31,
    32,
    33,
    63,
    64,
];

/// One step of the tests' 64-bit LCG: the new state.
#[cfg(test)]
fn lcg(s: &mut u64) -> u64 {
    *s = s
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *s
}

/// Two-source integer ops whose warp-wide loops the bit-exactness tests compare with `alu`.
#[cfg(test)]
const TWO_SOURCE_INT_OPS: [Alu; 11] = [
    Alu::Add,
    Alu::Sub,
    Alu::MulLo,
    Alu::And,
    Alu::Or,
    Alu::Xor,
    Alu::Min,
    Alu::Max,
    Alu::MulWide,
    Alu::Shl,
    Alu::Shr,
];

/// The integer types of those tests.
#[cfg(test)]
const INT_TYS: [Ty; 8] = [
    Ty::U16,
    Ty::S16,
    Ty::U32,
    Ty::S32,
    Ty::B32,
    Ty::U64,
    Ty::S64,
    Ty::B64,
];
