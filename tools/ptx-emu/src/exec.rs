//! The interpreter: blocks run one after another; inside a block, warps are interleaved by a
//! seeded scheduler. A warp executes one instruction for its current group of converged lanes
//! (min-PC reconvergence); lanes blocked at `bar.sync` or at a `.sync` collective wait.

use crate::float::{self, Fmt, Rnd};
use crate::memory::{Memory, Overlay};
use crate::program::*;
use crate::{Fault, FaultKind, LaunchConfig, LaunchOptions, LaunchStats, Module};
use half::f16;

pub(crate) const SHARED_WINDOW: u64 = 0x0000_7a00_0000_0000;
pub(crate) const LOCAL_WINDOW: u64 = 0x0000_7b00_0000_0000;
pub(crate) const PARAM_WINDOW: u64 = 0x0000_7c00_0000_0000;
const WINDOW_SIZE: u64 = 1 << 32;

/// Max shared memory per block (sm_80 opt-in limit).
const MAX_SHARED: usize = 163 * 1024;

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

/// One shared access to a 4-byte word, packed: bits 0..11 thread index + 1 (0 = none), bit 11
/// atomic, bits 12..16 byte mask within the word, bits 16..40 block barrier epoch, bits 40..64
/// warp-sync epoch of the accessing warp (epochs modulo 2^24).
type Acc = u64;
const NO_ACC: Acc = 0;
const EPOCH_MASK: u32 = (1 << 24) - 1;

#[inline(always)]
fn acc(tid: u32, epoch: u32, wepoch: u32, atomic: bool, bytes: u32) -> Acc {
    (tid as u64 + 1)
        | ((atomic as u64) << 11)
        | ((bytes as u64 & 0xf) << 12)
        | (((epoch & EPOCH_MASK) as u64) << 16)
        | (((wepoch & EPOCH_MASK) as u64) << 40)
}
#[inline(always)]
fn acc_tid(a: Acc) -> u32 {
    ((a & 0x7ff) as u32).wrapping_sub(1)
}
#[inline(always)]
fn acc_atomic(a: Acc) -> bool {
    a & (1 << 11) != 0
}
#[inline(always)]
fn acc_bytes(a: Acc) -> u32 {
    ((a >> 12) & 0xf) as u32
}
#[inline(always)]
fn acc_epoch(a: Acc) -> u32 {
    ((a >> 16) as u32) & EPOCH_MASK
}
#[inline(always)]
fn acc_wepoch(a: Acc) -> u32 {
    (a >> 40) as u32 & EPOCH_MASK
}

enum Hazard {
    Pending,
    Uninit,
    Race(&'static str),
}

/// Shadow state of one 4-byte word of shared memory.
#[derive(Clone, Copy)]
struct Shadow {
    /// Last write.
    w: Acc,
    /// Up to two reads since (kept preferring readers of different warps).
    r1: Acc,
    r2: Acc,
    /// Bytes of the word ever written in this block (uninitialised-read detection).
    init: u8,
    /// Outstanding cp.async copies into the word.
    pending: u8,
}

const NO_SHADOW: Shadow = Shadow {
    w: NO_ACC,
    r1: NO_ACC,
    r2: NO_ACC,
    init: 0,
    pending: 0,
};

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
    others_min: u32,
    dirty: bool,
    wepoch: u32,
    local: Vec<u8>,
    pending: Vec<Pending>,
    committed: [u32; 32],
    clock: u64,
}

impl Warp {
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
}

pub(crate) fn launch(
    module: &Module,
    kernel: &str,
    cfg: &LaunchConfig,
    params: &[&[u8]],
    mem: &mut Memory,
    opts: &LaunchOptions,
) -> Result<LaunchStats, Fault> {
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
    if let Some((i, ins)) = prog
        .instrs
        .iter()
        .enumerate()
        .find(|(_, i)| matches!(i.op, Op::Unsupported(_)))
    {
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
    let shared_size = prog.dyn_shared_offset() + cfg.dynamic_smem_bytes as usize;
    let shared_size = if cfg.dynamic_smem_bytes == 0 {
        prog.static_shared
    } else {
        shared_size
    };
    if shared_size > MAX_SHARED {
        return Err(bad(format!(
            "kernel needs {shared_size} bytes of shared memory; the limit is {MAX_SHARED}"
        )));
    }
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
    };
    let nblocks = cfg.grid[0] as u64 * cfg.grid[1] as u64 * cfg.grid[2] as u64;
    let ctaid_of = |b: u64| {
        [
            (b % cfg.grid[0] as u64) as u32,
            ((b / cfg.grid[0] as u64) % cfg.grid[1] as u64) as u32,
            (b / (cfg.grid[0] as u64 * cfg.grid[1] as u64)) as u32,
        ]
    };
    let threads = launch_threads(nblocks, &prog, opts);
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
        if s != 0 {
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
    let global_atomics = prog
        .instrs
        .iter()
        .any(|i| matches!(i.op, Op::Atom { space, .. } if space != Space::Shared));
    if global_atomics || nblocks < 2 {
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
            let t = [
                tid % cfg.block[0],
                (tid / cfg.block[0]) % cfg.block[1],
                tid / (cfg.block[0] * cfg.block[1]),
            ];
            let vals: [u64; 26] = [
                t[0] as u64,
                t[1] as u64,
                t[2] as u64,
                cfg.block[0] as u64,
                cfg.block[1] as u64,
                cfg.block[2] as u64,
                ctaid[0] as u64,
                ctaid[1] as u64,
                ctaid[2] as u64,
                cfg.grid[0] as u64,
                cfg.grid[1] as u64,
                cfg.grid[2] as u64,
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
            for (k, v) in vals.iter().enumerate() {
                w.regs[k * 32 + li] = *v;
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
    shadow.resize(ctx.shared_size.div_ceil(4), NO_SHADOW);
    let mut blk = Block {
        shared,
        shadow,
        c: ctx,
        mem,
        ctaid,
        epoch: 0,
        warps,
        steps: 0,
    };
    let r = blk.schedule(sched, rng);
    // return the buffers to the pools
    blk.c.shared_buf = std::mem::take(&mut blk.shared);
    blk.c.shadow_buf = std::mem::take(&mut blk.shadow);
    let warps = std::mem::take(&mut blk.warps);
    blk.c.pool.extend(warps);
    r
}

impl<'a, 'b> Block<'a, 'b> {
    fn schedule(&mut self, sched: u32, rng: &mut Rng) -> Result<(), Fault> {
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
                if !self.resolve_barrier()? {
                    return Ok(());
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
    fn tid_of(&self, warp: usize, lane: u32) -> [u32; 3] {
        let b = self.c.cfg.block;
        let t = warp as u32 * 32 + lane;
        [t % b[0], (t / b[0]) % b[1], t / (b[0] * b[1])]
    }

    fn fault(&self, warp: usize, pc: usize, er: Err1) -> Fault {
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

    fn describe_tid(&self, tid: u32) -> String {
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

    /// All warps are blocked: release a barrier, detect divergence/deadlock, or report done.
    fn resolve_barrier(&mut self) -> Result<bool, Fault> {
        let mut bar_pc: Option<(u32, usize, u32)> = None;
        let mut any_waiting = false;
        for (wi, w) in self.warps.iter().enumerate() {
            if w.at_coll != 0 {
                let l = w.at_coll.trailing_zeros();
                let pc = w.lane_pc[l as usize] as usize;
                let missing = !w.at_coll & !w.exited;
                return Err(self.fault(
                    wi,
                    pc,
                    e(
                        FaultKind::BarrierDivergence,
                        l,
                        None,
                        format!(
                            "deadlock: lanes {:#010x} wait at this warp-synchronous instruction for lanes {:#010x} of their membermask, which never arrive (they wait at a barrier elsewhere or exited)",
                            w.at_coll, missing
                        ),
                    ),
                ));
            }
            for l in lanes(w.at_bar) {
                any_waiting = true;
                let pc = w.lane_pc[l];
                match bar_pc {
                    None => bar_pc = Some((pc, wi, l as u32)),
                    Some((p0, w0, l0)) if p0 != pc => {
                        let other = self.tid_of(w0, l0);
                        let line0 = self.c.prog.instrs[p0 as usize].line;
                        return Err(self.fault(
                            wi,
                            pc as usize,
                            e(
                                FaultKind::BarrierDivergence,
                                l as u32,
                                None,
                                format!(
                                    "threads wait at different barriers: this one and PTX line {line0} `{}` (thread ({},{},{}))",
                                    self.c.prog.texts[p0 as usize], other[0], other[1], other[2]
                                ),
                            ),
                        ));
                    }
                    _ => {}
                }
            }
        }
        if !any_waiting {
            return Ok(false);
        }
        // all non-exited threads wait at the same barrier: release
        self.epoch += 1;
        let kind_red = matches!(
            self.c.prog.instrs[bar_pc.unwrap().0 as usize].op,
            Op::BarRed(..)
        );
        if kind_red {
            self.finish_bar_red(bar_pc.unwrap().0 as usize);
        }
        for w in self.warps.iter_mut() {
            for l in lanes(w.at_bar) {
                w.lane_pc[l] += 1;
            }
            w.running |= w.at_bar;
            w.at_bar = 0;
            w.mask = 0;
            w.wepoch += 1;
            w.dirty = true;
        }
        Ok(true)
    }

    fn finish_bar_red(&mut self, pc: usize) {
        let ins = &self.c.prog.instrs[pc];
        let Op::BarRed(bop, popc) = ins.op else {
            return;
        };
        let (Opnd::Reg(pr), Some(d)) = (&ins.s[0], ins.d.first()) else {
            return;
        };
        let pr = *pr as usize;
        let mut count = 0u64;
        let mut all = true;
        let mut any = false;
        for w in &self.warps {
            for l in lanes(w.at_bar) {
                let v = w.regs[pr * 32 + l] & 1 != 0;
                count += v as u64;
                all &= v;
                any |= v;
            }
        }
        let res = if popc {
            count
        } else {
            match bop {
                BoolOp::And => all as u64,
                _ => any as u64,
            }
        };
        let Opnd::Reg(dr) = d else { return };
        for w in self.warps.iter_mut() {
            for l in lanes(w.at_bar) {
                w.regs[*dr as usize * 32 + l] = res;
            }
        }
    }

    #[inline(always)]
    fn val(&self, w: &Warp, o: &Opnd, lane: usize) -> u64 {
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
    fn set(w: &mut Warp, o: &Opnd, lane: usize, v: u64) {
        if let Opnd::Reg(r) = o {
            let i = *r as usize * 32 + (lane & 31);
            debug_assert!(i < w.regs.len());
            // SAFETY: as in `val`: r < nregs by construction and the file has nregs * 32 slots.
            unsafe { *w.regs.get_unchecked_mut(i) = v }
        }
    }

    fn addr(&self, w: &Warp, o: &Opnd, lane: usize) -> u64 {
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

    fn run_warp(&mut self, w: &mut Warp, budget: u32) -> R<()> {
        let prog = self.c.prog;
        for _ in 0..budget {
            if w.dirty && !w.regroup() {
                return Ok(());
            }
            let pc = w.pc;
            let ins = &prog.instrs[pc as usize];
            let mask = w.mask;
            let exec = match ins.guard {
                None => mask,
                Some((p, neg)) => {
                    let mut ex = 0u32;
                    let base = p as usize * 32;
                    for l in lanes(mask) {
                        if ((w.regs[base + l] & 1) != 0) != neg {
                            ex |= 1 << l;
                        }
                    }
                    ex
                }
            };
            self.c.stats.thread_instructions += mask.count_ones() as u64;
            self.c.stats.warp_instructions += 1;
            self.steps += 1;
            if self.steps > self.c.max_steps {
                return Err(e(
                    FaultKind::Trap,
                    mask.trailing_zeros(),
                    None,
                    format!(
                        "watchdog: the block executed more than {} warp-instructions (endless loop or spin-wait on another block?); raise PTX_EMU_MAX_WARP_INSTRUCTIONS if the kernel is just long",
                        self.c.max_steps
                    ),
                ));
            }
            w.clock += 1;
            match &ins.op {
                Op::Bra(t) => {
                    let t = *t;
                    if exec == mask {
                        w.pc = t;
                    } else if exec == 0 {
                        w.pc = pc + 1;
                    } else {
                        for l in lanes(exec) {
                            w.lane_pc[l] = t;
                        }
                        for l in lanes(mask & !exec) {
                            w.lane_pc[l] = pc + 1;
                        }
                        w.mask = 0;
                        w.dirty = true;
                        continue;
                    }
                    if w.pc >= w.others_min {
                        w.dirty = true;
                    }
                    continue;
                }
                Op::Exit => {
                    if exec != 0 {
                        w.exited |= exec;
                        w.running &= !exec;
                        // pending cp.async of exited lanes are dropped
                        if !w.pending.is_empty() {
                            let sh = &mut self.shadow;
                            w.pending.retain(|p| {
                                if exec & (1 << p.lane) != 0 {
                                    for i in (0..p.len as usize).step_by(4) {
                                        sh[(p.dst as usize + i) / 4].pending -= 1;
                                    }
                                    false
                                } else {
                                    true
                                }
                            });
                        }
                        for l in lanes(mask & !exec) {
                            w.lane_pc[l] = pc + 1;
                        }
                        // lanes waiting at a collective re-check their membermask now that
                        // some lanes have exited
                        w.running |= w.at_coll;
                        w.at_coll = 0;
                        w.mask = 0;
                        w.dirty = true;
                        continue;
                    }
                }
                Op::BarSync | Op::BarRed(..) => {
                    if exec != 0 {
                        w.at_bar |= exec;
                        w.running &= !exec;
                        for l in lanes(exec) {
                            w.lane_pc[l] = pc;
                        }
                        for l in lanes(mask & !exec) {
                            w.lane_pc[l] = pc + 1;
                        }
                        w.mask = 0;
                        w.dirty = true;
                        // cp.async groups are not waited for by bar.sync
                        continue;
                    }
                }
                Op::WarpSync
                | Op::Shfl(_)
                | Op::Vote(_)
                | Op::Redux(..)
                | Op::Ldmatrix { .. }
                | Op::Mma { .. } => {
                    if exec != 0 {
                        let member = match &ins.op {
                            Op::WarpSync => {
                                self.val(w, &ins.s[0], exec.trailing_zeros() as usize) as u32
                            }
                            Op::Shfl(_) => {
                                self.val(w, &ins.s[3], exec.trailing_zeros() as usize) as u32
                            }
                            Op::Vote(_) | Op::Redux(..) => {
                                self.val(w, &ins.s[1], exec.trailing_zeros() as usize) as u32
                            }
                            _ => u32::MAX,
                        };
                        let aligned = matches!(ins.op, Op::Ldmatrix { .. } | Op::Mma { .. });
                        if aligned && w.exited != 0 {
                            return Err(e(
                                FaultKind::BarrierDivergence,
                                exec.trailing_zeros(),
                                None,
                                format!(
                                    "lanes {:#010x} of the warp have exited: .sync.aligned ldmatrix/mma need all 32 lanes",
                                    w.exited
                                ),
                            ));
                        }
                        if exec & !member != 0 {
                            return Err(e(
                                FaultKind::BarrierDivergence,
                                (exec & !member).trailing_zeros(),
                                None,
                                format!("executing lane is not in membermask {member:#010x}"),
                            ));
                        }
                        // .sync collectives wait only for the non-exited lanes of the membermask
                        let member = member & !w.exited;
                        let mut here = 0u32;
                        for l in lanes(w.at_coll) {
                            if w.lane_pc[l] == pc {
                                here |= 1 << l;
                            }
                        }
                        let full = exec | here;
                        if member & !full != 0 {
                            // wait for the rest of the membermask
                            w.at_coll |= exec;
                            w.running &= !exec;
                            for l in lanes(exec) {
                                w.lane_pc[l] = pc;
                            }
                            for l in lanes(mask & !exec) {
                                w.lane_pc[l] = pc + 1;
                            }
                            w.mask = 0;
                            w.dirty = true;
                            continue;
                        }
                        if here != 0 {
                            w.at_coll &= !here;
                            w.running |= here;
                            w.mask |= here;
                        }
                        self.collective(w, ins, full)?;
                    }
                }
                _ => {
                    if exec != 0 {
                        self.exec(w, ins, exec)?;
                    }
                }
            }
            w.pc = pc + 1;
            if w.pc >= w.others_min {
                w.dirty = true;
            }
        }
        Ok(())
    }

    fn exec(&mut self, w: &mut Warp, ins: &Instr, exec: u32) -> R<()> {
        match &ins.op {
            Op::Alu(op, ty, f) => {
                let (op, ty, f) = (*op, *ty, *f);
                let d = &ins.d[0];
                let s = &ins.s;
                if self.fast_int(w, op, ty, f, d, s, exec) {
                    return Ok(());
                }
                let av = self.gather(w, &s[0]);
                let bv = if s.len() > 1 {
                    self.gather(w, &s[1])
                } else {
                    [0; 32]
                };
                let cv = if s.len() > 2 {
                    self.gather(w, &s[2])
                } else {
                    [0; 32]
                };
                let xv = if s.len() > 3 {
                    self.gather(w, &s[3])
                } else {
                    [0; 32]
                };
                for l in lanes(exec) {
                    Self::set(w, d, l, alu(op, ty, f, av[l], bv[l], cv[l], xv[l]));
                }
            }
            Op::Mov(ty) => {
                let ty = *ty;
                match (&ins.d[0], &ins.s[0]) {
                    (Opnd::Vec(parts), src) => {
                        // unpack
                        let n = parts.len() as u32;
                        let eb = ty.bits() / n;
                        for l in lanes(exec) {
                            let v = self.val(w, src, l);
                            for (i, p) in parts.iter().enumerate() {
                                Self::set(w, p, l, (v >> (eb * i as u32)) & mask_bits(eb));
                            }
                        }
                    }
                    (d, Opnd::Vec(parts)) => {
                        let n = parts.len() as u32;
                        let eb = ty.bits() / n;
                        for l in lanes(exec) {
                            let mut v = 0u64;
                            for (i, p) in parts.iter().enumerate() {
                                v |= (self.val(w, p, l) & mask_bits(eb)) << (eb * i as u32);
                            }
                            Self::set(w, d, l, v);
                        }
                    }
                    (d, s) => {
                        let m = mask_bits(ty.bits());
                        let sv = self.gather(w, s);
                        for l in lanes(exec) {
                            Self::set(w, d, l, sv[l] & m);
                        }
                    }
                }
            }
            Op::Setp { cmp, ty, bop, ftz } => {
                for l in lanes(exec) {
                    let a = self.val(w, &ins.s[0], l);
                    let b = self.val(w, &ins.s[1], l);
                    let mut r = compare(*cmp, *ty, *ftz, a, b);
                    let mut q = !r;
                    if let Some(bop) = bop {
                        let c = self.val(w, &ins.s[2], l) & 1 != 0;
                        let f = |x: bool| match bop {
                            BoolOp::And => x & c,
                            BoolOp::Or => x | c,
                            BoolOp::Xor => x ^ c,
                        };
                        r = f(r);
                        q = f(q);
                    }
                    Self::set(w, &ins.d[0], l, r as u64);
                    if let Some(d2) = ins.d.get(1) {
                        Self::set(w, d2, l, q as u64);
                    }
                }
            }
            Op::Cvt { d, s, f } if !d.is_float() && !s.is_float() && !f.sat => {
                // integer ↔ integer without saturation: truncate / sign- or zero-extend
                let (sb, db) = (s.bits(), d.bits());
                let (ss, ds) = (s.signed(), d.signed());
                for l in lanes(exec) {
                    let a = self.val(w, &ins.s[0], l);
                    let v = if ss {
                        sext(a, sb) as u64
                    } else {
                        a & mask_bits(sb)
                    };
                    let v = if ds {
                        sext(v, db) as u64 & mask_bits(db)
                    } else {
                        v & mask_bits(db)
                    };
                    Self::set(w, &ins.d[0], l, v);
                }
            }
            Op::Cvt { d, s, f } => {
                for l in lanes(exec) {
                    let a = self.val(w, &ins.s[0], l);
                    let v = if d.packed() {
                        let b = self.val(w, &ins.s[1], l);
                        (cvt(*d, *s, *f, a) << 16) | cvt(*d, *s, *f, b)
                    } else {
                        cvt(*d, *s, *f, a)
                    };
                    Self::set(w, &ins.d[0], l, v);
                }
            }
            Op::Cvta { to, space } => {
                let win = match space {
                    Space::Shared => SHARED_WINDOW,
                    Space::Local => LOCAL_WINDOW,
                    Space::Param => PARAM_WINDOW,
                    _ => 0,
                };
                for l in lanes(exec) {
                    let a = self.val(w, &ins.s[0], l);
                    let v = if win == 0 {
                        a
                    } else if *to {
                        a.wrapping_sub(win) & 0xffff_ffff
                    } else {
                        (a & 0xffff_ffff) + win
                    };
                    Self::set(w, &ins.d[0], l, v);
                }
            }
            Op::Ld {
                space: Space::Global,
                ty,
                n: 1,
            } if ty.bytes() <= 8 && !ty.signed() => {
                let eb = ty.bytes();
                let d = &ins.d[0];
                for l in lanes(exec) {
                    let a = self.addr(w, &ins.s[0], l);
                    if !a.is_multiple_of(eb as u64) {
                        return Err(e(
                            FaultKind::Misaligned,
                            l as u32,
                            Some(a),
                            format!("{eb}-byte access must be {eb}-byte aligned"),
                        ));
                    }
                    let mut b8 = [0u8; 8];
                    if !self.mem.read(a, &mut b8[..eb]) {
                        return Err(e(
                            FaultKind::OutOfBounds,
                            l as u32,
                            Some(a),
                            self.mem.base().describe(a, eb),
                        ));
                    }
                    Self::set(w, d, l, u64::from_le_bytes(b8));
                }
            }
            Op::Ld { space, ty, n } => {
                let eb = ty.bytes();
                let total = eb * *n as usize;
                for l in lanes(exec) {
                    let a = self.addr(w, &ins.s[0], l);
                    let mut buf = [0u8; 64];
                    self.read(w, l, *space, a, &mut buf[..total], false)?;
                    let sign = ty.signed();
                    let get = |i: usize| {
                        let mut b8 = [0u8; 8];
                        b8[..eb.min(8)].copy_from_slice(&buf[i * eb..i * eb + eb.min(8)]);
                        let v = u64::from_le_bytes(b8);
                        if sign {
                            sext(v, eb as u32 * 8) as u64
                        } else {
                            v
                        }
                    };
                    match &ins.d[0] {
                        Opnd::Vec(parts) => {
                            for (i, p) in parts.iter().enumerate() {
                                let v = get(i);
                                Self::set(w, p, l, v);
                            }
                        }
                        d => {
                            let v = get(0);
                            Self::set(w, d, l, v);
                        }
                    }
                }
            }
            Op::St { space, ty, n } => {
                let eb = ty.bytes();
                let total = eb * *n as usize;
                for l in lanes(exec) {
                    let a = self.addr(w, &ins.s[0], l);
                    let mut buf = [0u8; 64];
                    match &ins.s[1] {
                        Opnd::Vec(parts) => {
                            for (i, p) in parts.iter().enumerate() {
                                let v = self.val(w, p, l);
                                buf[i * eb..i * eb + eb].copy_from_slice(&v.to_le_bytes()[..eb]);
                            }
                        }
                        s => {
                            let v = self.val(w, s, l);
                            buf[..eb].copy_from_slice(&v.to_le_bytes()[..eb]);
                        }
                    }
                    self.write(w, l, *space, a, &buf[..total], false)?;
                }
            }
            Op::Atom { space, op, ty, red } => {
                let eb = ty.bytes();
                for l in lanes(exec) {
                    let a = self.addr(w, &ins.s[0], l);
                    let b = self.val(w, &ins.s[1], l);
                    let c = if *op == AtomOp::Cas {
                        self.val(w, &ins.s[2], l)
                    } else {
                        0
                    };
                    let mut buf = [0u8; 8];
                    self.read(w, l, *space, a, &mut buf[..eb], true)?;
                    let old = u64::from_le_bytes(buf);
                    let new = atom_op(*op, *ty, old, b, c);
                    self.write(w, l, *space, a, &new.to_le_bytes()[..eb], true)?;
                    if !*red {
                        Self::set(w, &ins.d[0], l, old);
                    }
                }
            }
            Op::LocalCopy { dst, src, size } => {
                let ls = self.c.prog.local_size;
                for l in lanes(exec) {
                    let base = l * ls;
                    w.local.copy_within(
                        base + *src as usize..base + (*src + *size) as usize,
                        base + *dst as usize,
                    );
                }
            }
            Op::Activemask => {
                let m = w.mask;
                for l in lanes(exec) {
                    Self::set(w, &ins.d[0], l, m as u64);
                }
            }
            Op::CpAsync { size, src_size } => {
                let size = *size as usize;
                for l in lanes(exec) {
                    let dst = self.addr(w, &ins.s[0], l);
                    let src = self.addr(w, &ins.s[1], l);
                    let n = if *src_size {
                        (self.val(w, &ins.s[2], l) as usize).min(size)
                    } else {
                        size
                    };
                    let mut data = [0u8; 16];
                    if n > 0 {
                        if !src.is_multiple_of(size as u64) {
                            return Err(e(
                                FaultKind::Misaligned,
                                l as u32,
                                Some(src),
                                format!("cp.async source must be {size}-byte aligned"),
                            ));
                        }
                        self.global_read(l, src, &mut data[..n])?;
                    }
                    let off = self.shared_off(l, dst, size, true)?;
                    for i in (0..size).step_by(4) {
                        let sh = &mut self.shadow[(off + i) / 4];
                        if sh.pending != 0 && self.c.opts.detect_races {
                            return Err(e(
                                FaultKind::SharedRace,
                                l as u32,
                                Some(dst),
                                "cp.async to shared bytes that already have an outstanding cp.async (no wait in between)",
                            ));
                        }
                        sh.pending += 1;
                    }
                    let group = w.committed[l];
                    w.pending.push(Pending {
                        lane: l as u8,
                        len: size as u8,
                        group,
                        dst: off as u32,
                        data,
                        pc: w.pc,
                    });
                }
            }
            Op::CpCommit => {
                for l in lanes(exec) {
                    w.committed[l] += 1;
                }
            }
            Op::CpWait(n) => {
                if *n == u32::MAX {
                    for l in lanes(exec) {
                        w.committed[l] += 1;
                    }
                }
                let keep = if *n == u32::MAX { 0 } else { *n };
                let mut i = 0;
                while i < w.pending.len() {
                    let p = &w.pending[i];
                    let l = p.lane as usize;
                    if exec & (1 << l) != 0 && p.group + keep < w.committed[l] {
                        let p = w.pending.swap_remove(i);
                        self.land(w, p)?;
                    } else {
                        i += 1;
                    }
                }
            }
            Op::Membar | Op::Nop => {}
            Op::Trap => {
                return Err(e(
                    FaultKind::Trap,
                    exec.trailing_zeros(),
                    None,
                    "trap instruction executed",
                ));
            }
            Op::Unsupported(msg) => {
                return Err(e(
                    FaultKind::Unsupported,
                    exec.trailing_zeros(),
                    None,
                    msg.clone(),
                ));
            }
            other => {
                return Err(e(
                    FaultKind::Unsupported,
                    exec.trailing_zeros(),
                    None,
                    format!("internal: {other:?} not executable here"),
                ));
            }
        }
        Ok(())
    }

    /// The 32 lane values of a source operand (inactive lanes included; callers mask).
    #[inline(always)]
    fn gather(&self, w: &Warp, o: &Opnd) -> [u64; 32] {
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

    /// Specialised lane loops for the integer ops that dominate address arithmetic.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn fast_int(
        &self,
        w: &mut Warp,
        op: Alu,
        ty: Ty,
        f: AluFlags,
        d: &Opnd,
        s: &[Opnd],
        exec: u32,
    ) -> bool {
        if ty.is_float() || f.sat || ty == Ty::Pred {
            return false;
        }
        let Opnd::Reg(dr) = d else { return false };
        let dr = *dr as usize * 32;
        macro_rules! bin {
            ($m:expr, |$a:ident, $b:ident| $e:expr) => {{
                let m: u64 = $m;
                let av = self.gather(w, &s[0]);
                let bv = self.gather(w, &s[1]);
                let dst = &mut w.regs[dr..dr + 32];
                if exec == u32::MAX {
                    for l in 0..32 {
                        let $a = av[l];
                        let $b = bv[l];
                        dst[l] = ($e) & m;
                    }
                } else {
                    for l in lanes(exec) {
                        let $a = av[l];
                        let $b = bv[l];
                        dst[l] = ($e) & m;
                    }
                }
                true
            }};
        }
        let bits = ty.bits();
        let m = mask_bits(bits);
        match (op, bits) {
            (Alu::Add, 32 | 64) => bin!(m, |a, b| a.wrapping_add(b)),
            (Alu::Sub, 32 | 64) => bin!(m, |a, b| a.wrapping_sub(b)),
            (Alu::MulLo, 32 | 64) => bin!(m, |a, b| a.wrapping_mul(b)),
            (Alu::And, _) => bin!(m, |a, b| a & b),
            (Alu::Or, _) => bin!(m, |a, b| a | b),
            (Alu::Xor, _) => bin!(m, |a, b| a ^ b),
            (Alu::Shl, 32 | 64) => bin!(m, |a, b| {
                let sh = b & 0xffff_ffff;
                if sh >= bits as u64 {
                    0
                } else {
                    a << sh
                }
            }),
            (Alu::Shr, 32 | 64) if !ty.signed() => bin!(m, |a, b| {
                let sh = b & 0xffff_ffff;
                if sh >= bits as u64 {
                    0
                } else {
                    (a & m) >> sh
                }
            }),
            (Alu::MulWide, 32) if ty.signed() => bin!(u64::MAX, |a, b| (a as i32 as i64)
                .wrapping_mul(b as i32 as i64)
                as u64),
            (Alu::MulWide, 32) => bin!(u64::MAX, |a, b| (a & 0xffff_ffff) * (b & 0xffff_ffff)),
            (Alu::MadLo, 32 | 64) => {
                let (av, bv, cv) = (
                    self.gather(w, &s[0]),
                    self.gather(w, &s[1]),
                    self.gather(w, &s[2]),
                );
                let dst = &mut w.regs[dr..dr + 32];
                for l in lanes(exec) {
                    dst[l] = av[l].wrapping_mul(bv[l]).wrapping_add(cv[l]) & m;
                }
                true
            }
            _ => false,
        }
    }

    /// Data of a finished cp.async lands in shared memory (a write by the issuing thread now).
    fn land(&mut self, w: &mut Warp, p: Pending) -> R<()> {
        let off = p.dst as usize;
        for i in (0..p.len as usize).step_by(4) {
            self.shadow[(off + i) / 4].pending -= 1;
        }
        let tid = w.idx * 32 + p.lane as u32;
        self.shared_check(
            w,
            p.lane as usize,
            tid,
            off,
            p.len as usize,
            true,
            false,
            Some(&p.data[..p.len as usize]),
        )
        .map_err(|mut er| {
            er.detail += &format!(
                " (data of the cp.async at PTX line {} landing at cp.async.wait)",
                self.c.prog.instrs[p.pc as usize].line
            );
            er
        })?;
        self.shared[off..off + p.len as usize].copy_from_slice(&p.data[..p.len as usize]);
        Ok(())
    }

    fn collective(&mut self, w: &mut Warp, ins: &Instr, full: u32) -> R<()> {
        match &ins.op {
            Op::WarpSync => {
                w.wepoch += 1;
            }
            Op::Shfl(mode) => {
                let mut src = [0u64; 32];
                for l in lanes(full) {
                    src[l] = self.val(w, &ins.s[0], l);
                }
                for l in lanes(full) {
                    let b = self.val(w, &ins.s[1], l) as u32 & 31;
                    let c = self.val(w, &ins.s[2], l) as u32;
                    let cval = c & 0x1f;
                    let segmask = (c >> 8) & 0x1f;
                    let lane = l as u32;
                    let max_lane = (lane & segmask) | (cval & !segmask);
                    let min_lane = lane & segmask;
                    let (j, pval) = match mode {
                        ShflMode::Up => {
                            let j = lane as i32 - b as i32;
                            (j, j >= max_lane as i32)
                        }
                        ShflMode::Down => {
                            let j = lane + b;
                            (j as i32, j <= max_lane)
                        }
                        ShflMode::Bfly => {
                            let j = lane ^ b;
                            (j as i32, j <= max_lane)
                        }
                        ShflMode::Idx => {
                            let j = min_lane | (b & !segmask);
                            (j as i32, j <= max_lane)
                        }
                    };
                    let j = if pval { j as usize } else { l };
                    if full & (1 << j) == 0 {
                        return Err(e(
                            FaultKind::BarrierDivergence,
                            l as u32,
                            None,
                            format!("shfl.sync reads lane {j}, which does not execute this shfl (undefined value)"),
                        ));
                    }
                    Self::set(w, &ins.d[0], l, src[j]);
                    if let Some(p) = ins.d.get(1) {
                        Self::set(w, p, l, pval as u64);
                    }
                }
            }
            Op::Vote(mode) => {
                let mut ballot = 0u32;
                for l in lanes(full) {
                    if self.val(w, &ins.s[0], l) & 1 != 0 {
                        ballot |= 1 << l;
                    }
                }
                for l in lanes(full) {
                    let member = self.val(w, &ins.s[1], l) as u32 & full;
                    let b = ballot & member;
                    let r = match mode {
                        VoteMode::Ballot => b as u64,
                        VoteMode::All => (b == member) as u64,
                        VoteMode::Any => (b != 0) as u64,
                        VoteMode::Uni => (b == 0 || b == member) as u64,
                    };
                    Self::set(w, &ins.d[0], l, r);
                }
            }
            Op::Redux(op, ty) => {
                let mut acc: Option<u64> = None;
                for l in lanes(full) {
                    let v = self.val(w, &ins.s[0], l) & 0xffff_ffff;
                    acc = Some(match acc {
                        None => v,
                        Some(a) => alu(*op, *ty, AluFlags::default(), a, v, 0, 0) & 0xffff_ffff,
                    });
                }
                let r = acc.unwrap_or(0);
                for l in lanes(full) {
                    Self::set(w, &ins.d[0], l, r);
                }
            }
            Op::Ldmatrix { num, trans } => self.ldmatrix(w, ins, *num as usize, *trans)?,
            Op::Mma { k, ab } => self.mma(w, ins, *k as usize, *ab),
            _ => unreachable!(),
        }
        Ok(())
    }

    fn ldmatrix(&mut self, w: &mut Warp, ins: &Instr, num: usize, trans: bool) -> R<()> {
        // rows[m][r][c]: matrix m, row r (from lane 8m+r), 8 b16 columns
        let mut rows = [[[0u16; 8]; 8]; 4];
        let generic = matches!(ins.s[1], Opnd::Imm(x) if x == Space::Generic as u64);
        for (m, mat) in rows.iter_mut().enumerate().take(num) {
            for (r, row) in mat.iter_mut().enumerate() {
                let l = m * 8 + r;
                let mut a = self.addr(w, &ins.s[0], l);
                if generic {
                    if !(SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&a) {
                        return Err(e(
                            FaultKind::OutOfBounds,
                            l as u32,
                            Some(a),
                            "ldmatrix generic address is not in the shared window",
                        ));
                    }
                    a -= SHARED_WINDOW;
                }
                if !a.is_multiple_of(16) {
                    return Err(e(
                        FaultKind::Misaligned,
                        l as u32,
                        Some(a),
                        "ldmatrix row address must be 16-byte aligned",
                    ));
                }
                let mut buf = [0u8; 16];
                self.shared_read(w, l, a, &mut buf, false)?;
                for c in 0..8 {
                    row[c] = u16::from_le_bytes([buf[2 * c], buf[2 * c + 1]]);
                }
            }
        }
        let Opnd::Vec(d) = &ins.d[0] else {
            unreachable!()
        };
        for l in 0..32usize {
            let (g, t) = (l / 4, l % 4);
            for (m, dm) in d.iter().enumerate().take(num) {
                let (x0, x1) = if trans {
                    (rows[m][2 * t][g], rows[m][2 * t + 1][g])
                } else {
                    (rows[m][g][2 * t], rows[m][g][2 * t + 1])
                };
                Self::set(w, dm, l, x0 as u64 | ((x1 as u64) << 16));
            }
        }
        Ok(())
    }

    fn mma(&mut self, w: &mut Warp, ins: &Instr, k: usize, ab: Ty) {
        let fmt = if ab == Ty::BF16 { Fmt::BF16 } else { Fmt::F16 };
        let mut a = [[0f64; 16]; 16];
        let mut b = [[0f64; 8]; 16];
        let mut c = [[0f64; 8]; 16];
        let (Opnd::Vec(da), Opnd::Vec(db), Opnd::Vec(dc), Opnd::Vec(dd)) =
            (&ins.s[0], &ins.s[1], &ins.s[2], &ins.d[0])
        else {
            unreachable!()
        };
        let to_f64 = |h: u64| -> f64 {
            if fmt == Fmt::BF16 {
                // bf16 is the top half of an f32: exact widening
                f32::from_bits((h as u32) << 16) as f64
            } else {
                f16::from_bits(h as u16).to_f64()
            }
        };
        for l in 0..32usize {
            let (g, t) = (l / 4, l % 4);
            for (ri, r) in da.iter().enumerate() {
                let v = self.val(w, r, l);
                for h in 0..2 {
                    let (row, col) = mma_a_pos(k, g, t, ri * 2 + h);
                    a[row][col] = to_f64((v >> (16 * h)) & 0xffff);
                }
            }
            for (ri, r) in db.iter().enumerate() {
                let v = self.val(w, r, l);
                for h in 0..2 {
                    let (row, col) = mma_b_pos(k, g, t, ri * 2 + h);
                    b[row][col] = to_f64((v >> (16 * h)) & 0xffff);
                }
            }
            for (i, r) in dc.iter().enumerate() {
                let v = self.val(w, r, l);
                let (row, col) = mma_c_pos(g, t, i);
                c[row][col] = f32::from_bits(v as u32) as f64;
            }
        }
        // D = A·B + C: products are exact in f64, the sum runs over k in order in f64 and is
        // rounded once to f32 (see docs/emulator.md for the error model).
        let mut out = [[0u32; 8]; 16];
        for m in 0..16 {
            let mut acc = c[m];
            for kk in 0..k {
                let am = a[m][kk];
                for n in 0..8 {
                    acc[n] += am * b[kk][n];
                }
            }
            for n in 0..8 {
                out[m][n] = (acc[n] as f32).to_bits();
            }
        }
        for l in 0..32usize {
            let (g, t) = (l / 4, l % 4);
            for (i, r) in dd.iter().enumerate() {
                let (row, col) = mma_c_pos(g, t, i);
                Self::set(w, r, l, out[row][col] as u64);
            }
        }
    }

    // ---- memory ----

    fn global_read(&self, lane: usize, addr: u64, out: &mut [u8]) -> R<()> {
        if self.mem.read(addr, out) {
            Ok(())
        } else {
            Err(e(
                FaultKind::OutOfBounds,
                lane as u32,
                Some(addr),
                self.mem.base().describe(addr, out.len()),
            ))
        }
    }

    fn global_write(&mut self, lane: usize, addr: u64, data: &[u8]) -> R<()> {
        if self.mem.write(addr, data) {
            Ok(())
        } else {
            Err(e(
                FaultKind::OutOfBounds,
                lane as u32,
                Some(addr),
                self.mem.base().describe(addr, data.len()),
            ))
        }
    }

    fn resolve(&self, space: Space, addr: u64) -> (Space, u64) {
        match space {
            Space::Generic => {
                if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&addr) {
                    (Space::Shared, addr - SHARED_WINDOW)
                } else if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&addr) {
                    (Space::Local, addr - LOCAL_WINDOW)
                } else if (PARAM_WINDOW..PARAM_WINDOW + WINDOW_SIZE).contains(&addr) {
                    (Space::Param, addr - PARAM_WINDOW)
                } else {
                    (Space::Global, addr)
                }
            }
            Space::Const => (Space::Global, addr),
            s => (s, addr),
        }
    }

    fn read(
        &mut self,
        w: &mut Warp,
        lane: usize,
        space: Space,
        addr: u64,
        out: &mut [u8],
        atomic: bool,
    ) -> R<()> {
        let len = out.len();
        if !addr.is_multiple_of(len as u64) {
            return Err(e(
                FaultKind::Misaligned,
                lane as u32,
                Some(addr),
                format!("{len}-byte access must be {len}-byte aligned"),
            ));
        }
        let (sp, a) = self.resolve(space, addr);
        match sp {
            Space::Global => self.global_read(lane, a, out),
            Space::Shared => self.shared_read(w, lane, a, out, atomic),
            Space::Local => {
                let ls = self.c.prog.local_size as u64;
                if a + len as u64 > ls {
                    return Err(e(
                        FaultKind::OutOfBounds,
                        lane as u32,
                        Some(addr),
                        format!(
                            "local access [{a}, {}) outside the {ls}-byte local frame",
                            a + len as u64
                        ),
                    ));
                }
                let o = lane * ls as usize + a as usize;
                out.copy_from_slice(&w.local[o..o + len]);
                Ok(())
            }
            Space::Param => {
                let ps = self.c.params.len() as u64;
                if a + len as u64 > ps {
                    return Err(e(
                        FaultKind::OutOfBounds,
                        lane as u32,
                        Some(addr),
                        format!(
                            "param access [{a}, {}) outside the {ps}-byte parameter buffer",
                            a + len as u64
                        ),
                    ));
                }
                out.copy_from_slice(&self.c.params[a as usize..a as usize + len]);
                Ok(())
            }
            _ => unreachable!(),
        }
    }

    fn write(
        &mut self,
        w: &mut Warp,
        lane: usize,
        space: Space,
        addr: u64,
        data: &[u8],
        atomic: bool,
    ) -> R<()> {
        let len = data.len();
        if !addr.is_multiple_of(len as u64) {
            return Err(e(
                FaultKind::Misaligned,
                lane as u32,
                Some(addr),
                format!("{len}-byte access must be {len}-byte aligned"),
            ));
        }
        let (sp, a) = self.resolve(space, addr);
        match sp {
            Space::Global => self.global_write(lane, a, data),
            Space::Shared => {
                let off = self.shared_off(lane, a, len, false)?;
                let tid = w.idx * 32 + lane as u32;
                self.shared_check(w, lane, tid, off, len, true, atomic, Some(data))?;
                self.shared[off..off + len].copy_from_slice(data);
                Ok(())
            }
            Space::Local => {
                let ls = self.c.prog.local_size as u64;
                if a + len as u64 > ls {
                    return Err(e(
                        FaultKind::OutOfBounds,
                        lane as u32,
                        Some(addr),
                        format!(
                            "local access [{a}, {}) outside the {ls}-byte local frame",
                            a + len as u64
                        ),
                    ));
                }
                let o = lane * ls as usize + a as usize;
                w.local[o..o + len].copy_from_slice(data);
                Ok(())
            }
            Space::Param => Err(e(
                FaultKind::Unsupported,
                lane as u32,
                Some(addr),
                "store to the kernel parameter space",
            )),
            _ => unreachable!(),
        }
    }

    fn shared_off(&self, lane: usize, a: u64, len: usize, align: bool) -> R<usize> {
        if align && !a.is_multiple_of(len as u64) {
            return Err(e(
                FaultKind::Misaligned,
                lane as u32,
                Some(a),
                format!("{len}-byte shared access must be {len}-byte aligned"),
            ));
        }
        if a + len as u64 > self.shared.len() as u64 {
            return Err(e(
                FaultKind::OutOfBounds,
                lane as u32,
                Some(a),
                format!(
                    "shared access [{a}, {}) outside the block's {} bytes of shared memory ({} static + {} dynamic)",
                    a + len as u64,
                    self.shared.len(),
                    self.c.prog.static_shared,
                    self.c.cfg.dynamic_smem_bytes
                ),
            ));
        }
        Ok(a as usize)
    }

    fn shared_read(
        &mut self,
        w: &mut Warp,
        lane: usize,
        a: u64,
        out: &mut [u8],
        atomic: bool,
    ) -> R<()> {
        let len = out.len();
        let off = self.shared_off(lane, a, len, false)?;
        let tid = w.idx * 32 + lane as u32;
        self.shared_check(w, lane, tid, off, len, false, atomic, None)?;
        out.copy_from_slice(&self.shared[off..off + len]);
        Ok(())
    }

    /// Hazard checks and shadow update for one shared access by thread `tid`.
    #[allow(clippy::too_many_arguments)]
    fn shared_check(
        &mut self,
        w: &Warp,
        lane: usize,
        tid: u32,
        off: usize,
        len: usize,
        write: bool,
        atomic: bool,
        data: Option<&[u8]>,
    ) -> R<()> {
        let races = self.c.opts.detect_races;
        let uninit = self.c.opts.detect_uninit_shared;
        let ep = self.epoch & EPOCH_MASK;
        let wep = w.wepoch & EPOCH_MASK;
        let end = off + len;
        let first = off / 4;
        let last = end.div_ceil(4);
        let shadow = &mut self.shadow[first..last];
        let mut hazard = None;
        let whole = off.is_multiple_of(4) && len.is_multiple_of(4);
        let me_whole = acc(tid, ep, wep, atomic, 0xf);
        for (k, sh) in shadow.iter_mut().enumerate() {
            let wb = (first + k) * 4;
            let (lo, hi, bytes, me) = if whole {
                (0, 4, 0xf, me_whole)
            } else {
                let lo = off.max(wb) - wb;
                let hi = end.min(wb + 4) - wb;
                let bytes = ((1u32 << hi) - 1) & !((1u32 << lo) - 1);
                (lo, hi, bytes, acc(tid, ep, wep, atomic, bytes))
            };
            // Is the earlier access `p` unordered with this one (a potential race)?
            let unordered = |p: Acc| -> bool {
                p != NO_ACC
                    && acc_epoch(p) == ep
                    && p != me
                    && acc_tid(p) != tid
                    && acc_bytes(p) & bytes != 0
                    && !(acc_tid(p) / 32 == tid / 32 && acc_wepoch(p) != wep)
                    && !(acc_atomic(p) && atomic)
            };
            if sh.pending != 0 && races {
                hazard = Some((Hazard::Pending, wb + lo, 0));
                break;
            }
            if write {
                if races {
                    if unordered(sh.w) {
                        // Same-value writes (e.g. every lane storing one flag) are benign.
                        let same = !atomic
                            && !acc_atomic(sh.w)
                            && data.is_some_and(|d| {
                                (lo..hi).all(|b| d[wb + b - off] == self.shared[wb + b])
                            });
                        if !same {
                            hazard =
                                Some((Hazard::Race("write-after-write"), wb + lo, acc_tid(sh.w)));
                            break;
                        }
                    }
                    if unordered(sh.r1) {
                        hazard = Some((Hazard::Race("write-after-read"), wb + lo, acc_tid(sh.r1)));
                        break;
                    }
                    if unordered(sh.r2) {
                        hazard = Some((Hazard::Race("write-after-read"), wb + lo, acc_tid(sh.r2)));
                        break;
                    }
                }
                sh.w = me;
                sh.init |= bytes as u8;
            } else {
                if uninit && (sh.init as u32 & bytes) != bytes {
                    let b = (0..4)
                        .find(|b| bytes & (1 << b) != 0 && sh.init & (1 << b) == 0)
                        .unwrap_or(0);
                    hazard = Some((Hazard::Uninit, wb + b, 0));
                    break;
                }
                if races {
                    if unordered(sh.w) {
                        hazard = Some((Hazard::Race("read-after-write"), wb + lo, acc_tid(sh.w)));
                        break;
                    }
                    if sh.r1 == me {
                        continue;
                    }
                    let r1t = acc_tid(sh.r1);
                    if sh.r1 == NO_ACC
                        || acc_epoch(sh.r1) != ep
                        || (r1t == tid && acc_bytes(sh.r1) & !bytes == 0)
                    {
                        sh.r1 = me;
                    } else if sh.r2 == NO_ACC
                        || acc_epoch(sh.r2) != ep
                        || (acc_tid(sh.r2) == tid && acc_bytes(sh.r2) & !bytes == 0)
                        || (acc_tid(sh.r2) / 32 == r1t / 32 && tid / 32 != r1t / 32)
                    {
                        sh.r2 = me;
                    }
                }
            }
        }
        match hazard {
            None => Ok(()),
            Some((Hazard::Pending, at, _)) => Err(e(
                FaultKind::SharedRace,
                lane as u32,
                Some(at as u64),
                format!(
                    "{} of shared bytes [{off}, {end}) while a cp.async into them is outstanding: its data lands only at cp.async.wait_group/wait_all",
                    if write { "write" } else { "read" },
                ),
            )),
            Some((Hazard::Uninit, at, _)) => Err(e(
                FaultKind::UninitSharedRead,
                lane as u32,
                Some(at as u64),
                format!("shared byte {at} (offset in the block's shared memory) was never written in this block"),
            )),
            Some((Hazard::Race(what), at, other)) => Err(self.race(lane, at, what, other)),
        }
    }

    fn race(&self, lane: usize, off: usize, what: &str, other: u32) -> Err1 {
        e(
            FaultKind::SharedRace,
            lane as u32,
            Some(off as u64),
            format!(
                "{what} race on shared byte {off} with {} with no bar.sync (or bar.warp.sync within a warp) in between",
                self.describe_tid(other)
            ),
        )
    }
}

pub(crate) fn mma_a_pos(k: usize, g: usize, t: usize, i: usize) -> (usize, usize) {
    if k == 16 {
        (g + 8 * ((i >> 1) & 1), t * 2 + (i & 1) + 8 * (i >> 2))
    } else {
        (g + 8 * (i >> 1), t * 2 + (i & 1))
    }
}
pub(crate) fn mma_b_pos(k: usize, g: usize, t: usize, i: usize) -> (usize, usize) {
    if k == 16 {
        (t * 2 + (i & 1) + 8 * (i >> 1), g)
    } else {
        (t * 2 + i, g)
    }
}
pub(crate) fn mma_c_pos(g: usize, t: usize, i: usize) -> (usize, usize) {
    (g + 8 * (i >> 1), t * 2 + (i & 1))
}

fn atom_op(op: AtomOp, ty: Ty, old: u64, b: u64, c: u64) -> u64 {
    let bits = ty.bits();
    let m = mask_bits(bits);
    if ty.is_float() {
        let fmt = ty.fmt().unwrap();
        return match op {
            AtomOp::Add => {
                let (hi, lo) = float::two_sum(fmt.to_f64(old), fmt.to_f64(b));
                float::round(fmt, hi, lo, Rnd::Rn)
            }
            AtomOp::Exch => b & m,
            AtomOp::Cas => {
                if old == b & m {
                    c & m
                } else {
                    old
                }
            }
            AtomOp::Min | AtomOp::Max => {
                let x = fmt.to_f64(old);
                let y = fmt.to_f64(b);
                let r = if op == AtomOp::Min {
                    x.min(y)
                } else {
                    x.max(y)
                };
                if r == x {
                    old
                } else {
                    b & m
                }
            }
            _ => old,
        };
    }
    let signed = ty.signed();
    match op {
        AtomOp::Add => old.wrapping_add(b) & m,
        AtomOp::Exch => b & m,
        AtomOp::Cas => {
            if old == b & m {
                c & m
            } else {
                old
            }
        }
        AtomOp::And => old & b & m,
        AtomOp::Or => (old | b) & m,
        AtomOp::Xor => (old ^ b) & m,
        AtomOp::Min | AtomOp::Max => {
            let less = if signed {
                sext(b, bits) < sext(old, bits)
            } else {
                (b & m) < old
            };
            if (op == AtomOp::Min) == less {
                b & m
            } else {
                old
            }
        }
        AtomOp::Inc => {
            if old >= b & m {
                0
            } else {
                old + 1
            }
        }
        AtomOp::Dec => {
            if old == 0 || old > b & m {
                b & m
            } else {
                old - 1
            }
        }
    }
}

fn compare(cmp: Cmp, ty: Ty, ftz: bool, a: u64, b: u64) -> bool {
    if let Some(fmt) = ty.fmt() {
        if ty.packed() {
            // setp on f16x2 writes two predicates; only the scalar form is supported here
        }
        let (a, b) = if ftz {
            (fmt.ftz(a), fmt.ftz(b))
        } else {
            (a, b)
        };
        let x = fmt.to_f64(a);
        let y = fmt.to_f64(b);
        let nan = x.is_nan() || y.is_nan();
        return match cmp {
            Cmp::Eq => !nan && x == y,
            Cmp::Ne => !nan && x != y,
            Cmp::Lt | Cmp::Lo => !nan && x < y,
            Cmp::Le | Cmp::Ls => !nan && x <= y,
            Cmp::Gt | Cmp::Hi => !nan && x > y,
            Cmp::Ge | Cmp::Hs => !nan && x >= y,
            Cmp::Equ => nan || x == y,
            Cmp::Neu => nan || x != y,
            Cmp::Ltu => nan || x < y,
            Cmp::Leu => nan || x <= y,
            Cmp::Gtu => nan || x > y,
            Cmp::Geu => nan || x >= y,
            Cmp::Num => !nan,
            Cmp::Nan => nan,
        };
    }
    let bits = ty.bits();
    let m = mask_bits(bits);
    let (ua, ub) = (a & m, b & m);
    let (sa, sb) = (sext(a, bits), sext(b, bits));
    let signed = ty.signed();
    match cmp {
        Cmp::Eq => ua == ub,
        Cmp::Ne => ua != ub,
        Cmp::Lt => {
            if signed {
                sa < sb
            } else {
                ua < ub
            }
        }
        Cmp::Le => {
            if signed {
                sa <= sb
            } else {
                ua <= ub
            }
        }
        Cmp::Gt => {
            if signed {
                sa > sb
            } else {
                ua > ub
            }
        }
        Cmp::Ge => {
            if signed {
                sa >= sb
            } else {
                ua >= ub
            }
        }
        Cmp::Lo => ua < ub,
        Cmp::Ls => ua <= ub,
        Cmp::Hi => ua > ub,
        Cmp::Hs => ua >= ub,
        _ => false,
    }
}

/// One ALU operation on register bits.
#[inline]
pub(crate) fn alu(op: Alu, ty: Ty, f: AluFlags, a: u64, b: u64, c: u64, x: u64) -> u64 {
    if ty == Ty::F32 && f.rnd == Rnd::Rn && !f.ftz && !f.sat && !f.relu && !f.satfinite {
        // Native f32 add/sub/mul are correctly rounded to nearest even, like PTX `.rn`.
        let (fa, fb) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
        let r = match op {
            Alu::Add => Some(fa + fb),
            Alu::Sub => Some(fa - fb),
            Alu::MulLo => Some(fa * fb),
            _ => None,
        };
        if let Some(r) = r {
            // PTX returns the canonical NaN
            return if r.is_nan() {
                0x7fff_ffff
            } else {
                r.to_bits() as u64
            };
        }
    }
    if let Some(fmt) = ty.fmt() {
        if ty.packed() {
            let lo = falu(op, fmt, f, a & 0xffff, b & 0xffff, c & 0xffff);
            let hi = falu(
                op,
                fmt,
                f,
                (a >> 16) & 0xffff,
                (b >> 16) & 0xffff,
                (c >> 16) & 0xffff,
            );
            return (hi << 16) | lo;
        }
        if matches!(op, Alu::Selp) {
            return if c & 1 != 0 { a } else { b };
        }
        if op == Alu::Testp {
            let v = fmt.to_f64(a);
            return match b {
                0 => v.is_finite(),
                1 => v.is_infinite(),
                2 => !v.is_nan(),
                3 => v.is_nan(),
                4 => v.is_normal(),
                _ => v.is_subnormal() || (fmt != Fmt::F64 && v != 0.0 && fmt.ftz(a) != a),
            } as u64;
        }
        if matches!(
            op,
            Alu::And | Alu::Or | Alu::Xor | Alu::Not | Alu::Shl | Alu::Shr
        ) {
            // bit ops typed as float are not valid PTX
        }
        return falu(op, fmt, f, a, b, c);
    }
    let bits = ty.bits();
    let m = mask_bits(bits);
    let signed = ty.signed();
    let (sa, sb) = (sext(a, bits), sext(b, bits));
    let (ua, ub) = (a & m, b & m);
    match op {
        Alu::Add => {
            if f.sat && signed {
                (sa as i128 + sb as i128).clamp(i32::MIN as i128, i32::MAX as i128) as u64 & m
            } else {
                ua.wrapping_add(ub) & m
            }
        }
        Alu::Sub => {
            if f.sat && signed {
                (sa as i128 - sb as i128).clamp(i32::MIN as i128, i32::MAX as i128) as u64 & m
            } else {
                ua.wrapping_sub(ub) & m
            }
        }
        Alu::MulLo => ua.wrapping_mul(ub) & m,
        Alu::MulHi => {
            if signed {
                ((sa as i128 * sb as i128) >> bits) as u64 & m
            } else {
                ((ua as u128 * ub as u128) >> bits) as u64 & m
            }
        }
        Alu::MulWide => {
            let m2 = mask_bits(bits * 2);
            if signed {
                (sa as i128 * sb as i128) as u64 & m2
            } else {
                (ua as u128 * ub as u128) as u64 & m2
            }
        }
        Alu::MadLo => ua.wrapping_mul(ub).wrapping_add(c) & m,
        Alu::MadHi => {
            let p = if signed {
                ((sa as i128 * sb as i128) >> bits) as u64
            } else {
                ((ua as u128 * ub as u128) >> bits) as u64
            };
            p.wrapping_add(c) & m
        }
        Alu::MadWide => {
            let m2 = mask_bits(bits * 2);
            let p = if signed {
                (sa as i128 * sb as i128) as u64
            } else {
                (ua as u128 * ub as u128) as u64
            };
            p.wrapping_add(c) & m2
        }
        Alu::Div => {
            if ub == 0 {
                m
            } else if signed {
                sa.wrapping_div(sb) as u64 & m
            } else {
                ua / ub
            }
        }
        Alu::Rem => {
            if ub == 0 {
                ua
            } else if signed {
                sa.wrapping_rem(sb) as u64 & m
            } else {
                ua % ub
            }
        }
        Alu::Min => {
            if signed {
                sa.min(sb) as u64 & m
            } else {
                ua.min(ub)
            }
        }
        Alu::Max => {
            if signed {
                sa.max(sb) as u64 & m
            } else {
                ua.max(ub)
            }
        }
        Alu::And => {
            if ty == Ty::Pred {
                a & b & 1
            } else {
                ua & ub
            }
        }
        Alu::Or => (ua | ub) & if ty == Ty::Pred { 1 } else { m },
        Alu::Xor => (ua ^ ub) & if ty == Ty::Pred { 1 } else { m },
        Alu::Not => {
            if ty == Ty::Pred {
                (!a) & 1
            } else {
                (!a) & m
            }
        }
        Alu::Cnot => (ua == 0) as u64,
        Alu::Shl => {
            let s = b & 0xffff_ffff;
            if s >= bits as u64 {
                0
            } else {
                (ua << s) & m
            }
        }
        Alu::Shr => {
            let s = (b & 0xffff_ffff).min(bits as u64 - 1 + (!signed) as u64);
            if signed {
                (sa >> s.min(63)) as u64 & m
            } else if s >= bits as u64 {
                0
            } else {
                ua >> s
            }
        }
        Alu::Neg => (sa.wrapping_neg() as u64) & m,
        Alu::Abs => (sa.wrapping_abs() as u64) & m,
        Alu::Popc => ua.count_ones() as u64,
        Alu::Clz => (ua.leading_zeros() - (64 - bits)) as u64,
        Alu::Brev => ua.reverse_bits() >> (64 - bits),
        Alu::Bfind => {
            let v = if signed && sa < 0 { !ua & m } else { ua };
            if v == 0 {
                0xffff_ffff
            } else {
                63 - v.leading_zeros() as u64
            }
        }
        Alu::Selp => {
            if c & 1 != 0 {
                ua
            } else {
                ub
            }
        }
        Alu::Bfe => {
            let pos = (b & 0xff) as u32;
            let len = (c & 0xff) as u32;
            let msb = bits - 1;
            let sbit = if !signed || len == 0 {
                0
            } else {
                let p = (pos + len - 1).min(msb);
                (ua >> p) & 1
            };
            let mut d = 0u64;
            for i in 0..bits {
                let bit = if i < len && pos + i <= msb {
                    (ua >> (pos + i)) & 1
                } else {
                    sbit
                };
                d |= bit << i;
            }
            d
        }
        Alu::Bfi => {
            let pos = (c & 0xff) as u32;
            let len = (x & 0xff) as u32;
            let mut d = ub;
            for i in 0..len {
                if pos + i >= bits {
                    break;
                }
                let bit = (ua >> i) & 1;
                d = (d & !(1 << (pos + i))) | (bit << (pos + i));
            }
            d
        }
        Alu::Prmt => {
            let bytes = ((ub & 0xffff_ffff) << 32) | (ua & 0xffff_ffff);
            let mut d = 0u64;
            for i in 0..4 {
                let sel = (c >> (4 * i)) & 0xf;
                let byte = (bytes >> (8 * (sel & 7))) & 0xff;
                let v = if sel & 8 != 0 {
                    if byte & 0x80 != 0 {
                        0xff
                    } else {
                        0
                    }
                } else {
                    byte
                };
                d |= v << (8 * i);
            }
            d
        }
        Alu::Lop3 => {
            let lut = x & 0xff;
            let mut d = 0u64;
            for k in 0..8u64 {
                if (lut >> k) & 1 != 0 {
                    let ta = if k & 4 != 0 { a } else { !a };
                    let tb = if k & 2 != 0 { b } else { !b };
                    let tc = if k & 1 != 0 { c } else { !c };
                    d |= ta & tb & tc;
                }
            }
            d & m
        }
        Alu::ShfL | Alu::ShfR => {
            let n = if f.clamp {
                (c & 0xffff_ffff).min(32)
            } else {
                c & 31
            };
            let v = ((ub & 0xffff_ffff) << 32) | (ua & 0xffff_ffff);
            if op == Alu::ShfL {
                ((v << n) >> 32) & 0xffff_ffff
            } else {
                (v >> n) & 0xffff_ffff
            }
        }
        Alu::Sad => {
            let d = if signed {
                (sa - sb).unsigned_abs()
            } else {
                ua.abs_diff(ub)
            };
            d.wrapping_add(c) & m
        }
        Alu::Dp4a => {
            let (sa_, sb_) = (x & 1 != 0, x & 2 != 0);
            let mut acc = c as u32 as i64;
            for i in 0..4 {
                let ba = (a >> (8 * i)) & 0xff;
                let bb = (b >> (8 * i)) & 0xff;
                let va = if sa_ { ba as i8 as i64 } else { ba as i64 };
                let vb = if sb_ { bb as i8 as i64 } else { bb as i64 };
                acc += va * vb;
            }
            acc as u64 & 0xffff_ffff
        }
        Alu::Copysign
        | Alu::Sqrt
        | Alu::Rsqrt
        | Alu::Rcp
        | Alu::Ex2
        | Alu::Lg2
        | Alu::Sin
        | Alu::Cos
        | Alu::Tanh
        | Alu::Fma
        | Alu::Testp => 0,
    }
}

/// Float ALU on one element.
fn falu(op: Alu, fmt: Fmt, f: AluFlags, a: u64, b: u64, c: u64) -> u64 {
    let ftz = f.ftz && fmt == Fmt::F32;
    let (a, b, c) = if ftz {
        (fmt.ftz(a), fmt.ftz(b), fmt.ftz(c))
    } else {
        (a, b, c)
    };
    let sign = 1u64 << (fmt.bits() - 1);
    let x = fmt.to_f64(a);
    let y = fmt.to_f64(b);
    let rnd = f.rnd;
    let r = match op {
        Alu::Add => {
            let (h, l) = float::two_sum(x, y);
            float::round(fmt, h, l, rnd)
        }
        Alu::Sub => {
            let (h, l) = float::two_sum(x, -y);
            float::round(fmt, h, l, rnd)
        }
        Alu::MulLo => {
            let (h, l) = float::two_prod(x, y);
            float::round(fmt, h, l, rnd)
        }
        Alu::Fma | Alu::MadLo => {
            let z = fmt.to_f64(c);
            let (h, l) = if fmt == Fmt::F64 {
                float::fma_f64(x, y, z)
            } else {
                float::fma_parts(x, y, z)
            };
            float::round(fmt, h, l, rnd)
        }
        Alu::Div => {
            if f.approx {
                float::round(fmt, x / y, 0.0, Rnd::Rn)
            } else {
                let (h, l) = float::div_parts(fmt == Fmt::F64, x, y);
                float::round(fmt, h, l, rnd)
            }
        }
        Alu::Min | Alu::Max => {
            if x.is_nan() && y.is_nan() {
                fmt.canonical_nan()
            } else if x.is_nan() {
                b
            } else if y.is_nan() {
                a
            } else {
                let pick_a = if op == Alu::Min {
                    x < y || (x == y && a & sign != 0)
                } else {
                    x > y || (x == y && a & sign == 0)
                };
                if pick_a {
                    a
                } else {
                    b
                }
            }
        }
        Alu::Neg => a ^ sign,
        Alu::Abs => a & !sign,
        Alu::Copysign => (b & !sign) | (a & sign),
        Alu::Sqrt => {
            if f.approx {
                float::round(fmt, x.sqrt(), 0.0, Rnd::Rn)
            } else {
                let (h, l) = float::sqrt_parts(x);
                float::round(fmt, h, l, rnd)
            }
        }
        Alu::Rcp => {
            if f.approx {
                float::round(fmt, 1.0 / x, 0.0, Rnd::Rn)
            } else {
                let (h, l) = float::div_parts(fmt == Fmt::F64, 1.0, x);
                float::round(fmt, h, l, rnd)
            }
        }
        Alu::Rsqrt => float::round(fmt, 1.0 / x.sqrt(), 0.0, Rnd::Rn),
        Alu::Ex2 => float::round(fmt, x.exp2(), 0.0, Rnd::Rn),
        Alu::Lg2 => float::round(
            fmt,
            if x == 0.0 {
                f64::NEG_INFINITY
            } else {
                x.log2()
            },
            0.0,
            Rnd::Rn,
        ),
        Alu::Sin => float::round(fmt, x.sin(), 0.0, Rnd::Rn),
        Alu::Cos => float::round(fmt, x.cos(), 0.0, Rnd::Rn),
        Alu::Tanh => float::round(fmt, x.tanh(), 0.0, Rnd::Rn),
        _ => return fmt.canonical_nan(),
    };
    let mut r = r;
    if f.sat {
        let v = fmt.to_f64(r);
        r = if v.is_nan() || v <= 0.0 {
            0
        } else if v > 1.0 {
            float::round(fmt, 1.0, 0.0, Rnd::Rn)
        } else {
            r
        };
    }
    if f.relu {
        let v = fmt.to_f64(r);
        if v.is_nan() {
            r = fmt.canonical_nan();
        } else if v < 0.0 || r == sign {
            r = 0;
        }
    }
    if f.satfinite {
        r = satfinite(fmt, r);
    }
    if ftz {
        r = fmt.ftz(r);
    }
    r
}

/// `.satfinite`: clamp ±inf to the largest finite value of the format.
fn satfinite(fmt: Fmt, r: u64) -> u64 {
    let v = fmt.to_f64(r);
    if v.is_infinite() {
        let max = match fmt {
            Fmt::F16 => 65504.0,
            Fmt::BF16 => half::bf16::MAX.to_f64(),
            Fmt::F32 => f32::MAX as f64,
            Fmt::F64 => f64::MAX,
        };
        float::round(fmt, if v > 0.0 { max } else { -max }, 0.0, Rnd::Rn)
    } else {
        r
    }
}

pub(crate) fn cvt(d: Ty, s: Ty, f: AluFlags, a: u64) -> u64 {
    let rnd = f.rnd;
    match (s.fmt(), d.fmt()) {
        (Some(sf), Some(df)) => {
            let a = if f.ftz && sf == Fmt::F32 {
                sf.ftz(a)
            } else {
                a
            };
            let x = sf.to_f64(a);
            let mut r = if f.int_rnd {
                if x.is_nan() {
                    df.canonical_nan()
                } else {
                    float::round(df, float::round_int(x, rnd), 0.0, Rnd::Rn)
                }
            } else {
                float::round(df, x, 0.0, rnd)
            };
            if f.sat {
                let v = df.to_f64(r);
                r = if v.is_nan() || v <= 0.0 {
                    0
                } else if v > 1.0 {
                    float::round(df, 1.0, 0.0, Rnd::Rn)
                } else {
                    r
                };
            }
            if f.relu {
                let v = df.to_f64(r);
                if v.is_nan() {
                    r = df.canonical_nan();
                } else if v <= 0.0 {
                    r = 0;
                }
            }
            if f.satfinite {
                r = satfinite(df, r);
            }
            if f.ftz && df == Fmt::F32 {
                r = df.ftz(r);
            }
            r
        }
        (Some(sf), None) => {
            let a = if f.ftz && sf == Fmt::F32 {
                sf.ftz(a)
            } else {
                a
            };
            let x = sf.to_f64(a);
            if x.is_nan() {
                return 0;
            }
            let r = float::round_int(x, rnd);
            let bits = d.bits();
            let (lo, hi) = if d.signed() {
                (
                    -(2f64.powi(bits as i32 - 1)),
                    2f64.powi(bits as i32 - 1) - 1.0,
                )
            } else {
                (0.0, 2f64.powi(bits as i32) - 1.0)
            };
            let r = r.clamp(lo, hi);
            let v = if d.signed() {
                r as i64 as u64
            } else {
                r as u64
            };
            v & mask_bits(bits)
        }
        (None, Some(df)) => {
            let bits = s.bits();
            let v: i128 = if s.signed() {
                sext(a, bits) as i128
            } else {
                (a & mask_bits(bits)) as i128
            };
            let hi = v as f64;
            let lo = (v - hi as i128) as f64;
            float::round(df, hi, lo, rnd)
        }
        (None, None) => {
            let sb = s.bits();
            let db = d.bits();
            let v: i128 = if s.signed() {
                sext(a, sb) as i128
            } else {
                (a & mask_bits(sb)) as i128
            };
            if f.sat {
                let (lo, hi): (i128, i128) = if d.signed() {
                    (-(1i128 << (db - 1)), (1i128 << (db - 1)) - 1)
                } else {
                    (0, (1i128 << db) - 1)
                };
                (v.clamp(lo, hi) as u64) & mask_bits(db)
            } else if d.signed() && db < 64 {
                // cvt to a signed type sign-extends the truncated value into the register
                (sext(v as u64, db) as u64) & mask_bits(db)
            } else {
                v as u64 & mask_bits(db)
            }
        }
    }
}
