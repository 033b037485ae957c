//! Profiling counters (`PTX_EMU_STATS`): the emulator's side of the `gpu-model` hook contract
//! (`docs/profiling.md` §2). A profiled launch gives every block of schedule 0 a
//! [`BlockStats`]; the dispatch point calls [`Block::count_inst`] once per warp-level
//! instruction and [`Block::count_collective`] when an `ldmatrix` / `mma` executes. Unprofiled
//! launches pay one `Option` check per instruction.

use super::*;
use gpu_model::{Access, BlockAccumulator, LaunchAccumulator, TensorDtype};
use std::collections::VecDeque;
use std::sync::Mutex;

/// What a profiled launch collects into: the launch's accumulator (blocks fold in as they finish,
/// from any worker thread) and the blocks to run (`None`: all).
pub(crate) struct Profiling<'a> {
    pub sink: &'a Mutex<LaunchAccumulator>,
    pub blocks: Option<Vec<u64>>,
}

/// Counters of one block being run, plus the per-warp state the memory-wait rule needs.
pub(crate) struct BlockStats {
    acc: BlockAccumulator,
    warps: Vec<WarpWaits>,
}

#[derive(Default)]
struct WarpWaits {
    /// Registers written by global loads (and returning atomics) not waited for yet.
    pending: Vec<u32>,
    /// Bytes (sectors × 32) of those loads.
    pending_bytes: u64,
    /// `cp.async` bytes of the group being built, and of the committed groups not waited for.
    cp_open: u64,
    cp_groups: VecDeque<u64>,
    /// PC of the warp's previous instruction: a jump or a barrier ends a straight-line stretch.
    last_pc: u32,
    /// Whether the warp already waited for memory in the current straight-line stretch.
    waited_in_stretch: bool,
}

impl BlockStats {
    pub fn new(warps: u32) -> Box<BlockStats> {
        Box::new(BlockStats {
            acc: BlockAccumulator::new(),
            warps: (0..warps).map(|_| WarpWaits::default()).collect(),
        })
    }

    /// Bytes the block's bulk / TMA copies moved (global → shared, shared → global).
    pub fn on_bulk_bytes(&mut self, load_bytes: u64, store_bytes: u64) {
        self.acc.on_bulk_bytes(load_bytes, store_bytes);
    }

    /// Warp `warp` waited on an mbarrier phase that `bytes` of bulk copies completed (one round
    /// trip, as a `cp.async.wait_group`).
    pub fn on_mem_wait(&mut self, warp: u32, bytes: u64) {
        self.acc.on_mem_wait(warp, bytes, 1);
    }

    /// One contiguous global run `[addr, addr + bytes)` a bulk / TMA load reads (sectors and
    /// requests as `cp.async`: `BlockAccumulator::on_bulk_copy`).
    pub fn on_bulk_read(&mut self, addr: u64, bytes: u64) {
        self.acc.on_bulk_copy(addr, bytes);
    }

    /// Fold the finished block `ctaid` of a launch of `grid` blocks into the launch.
    pub fn finish(
        self: Box<Self>,
        sink: &Mutex<LaunchAccumulator>,
        ctaid: [u32; 3],
        grid: [u32; 3],
    ) {
        let [x, y, z] = ctaid.map(u64::from);
        let linear = x + u64::from(grid[0]) * (y + u64::from(grid[1]) * z);
        sink.lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_block_at(linear, self.acc);
    }
}

/// Whether `o` reads one of `regs`.
fn reads(o: &Opnd, regs: &[u32]) -> bool {
    match o {
        Opnd::Reg(r) | Opnd::NotReg(r) | Opnd::Addr(Base::Reg(r), _) => regs.contains(r),
        Opnd::Vec(parts) => parts.iter().any(|p| reads(p, regs)),
        _ => false,
    }
}

/// Registers an instruction's destination operand writes.
fn dest_regs(o: &Opnd, out: &mut Vec<u32>) {
    match o {
        Opnd::Reg(r) => out.push(*r),
        Opnd::Vec(parts) => parts.iter().for_each(|p| dest_regs(p, out)),
        _ => {}
    }
}

/// FP32 FLOPs per active lane of an ALU op (`fma`/`mad` 2; `add`/`sub`/`mul`/`min`/`max` 1).
fn fp32_flops(op: Alu) -> u64 {
    match op {
        Alu::Fma | Alu::MadLo => 2,
        Alu::Add | Alu::Sub | Alu::MulLo | Alu::Min | Alu::Max => 1,
        _ => 0,
    }
}

impl<'a, 'b> Block<'a, 'b> {
    /// One warp-level instruction issued by `w` with converged lanes `mask`, guard-true lanes
    /// `exec` (called before it executes, so address registers still hold their values).
    pub(super) fn count_inst(&mut self, w: &Warp, ins: &Instr, mask: u32, exec: u32) {
        let wi = w.idx as usize;
        {
            let Some(p) = self.prof.as_mut() else { return };
            let ww = &mut p.warps[wi];
            if w.pc != ww.last_pc.wrapping_add(1) {
                ww.waited_in_stretch = false;
            }
            ww.last_pc = w.pc;
            let guard_reads = ins.guard.is_some_and(|(g, _)| ww.pending.contains(&g));
            if !ww.pending.is_empty()
                && (guard_reads || ins.s.iter().any(|o| reads(o, &ww.pending)))
            {
                // ptxas issues the independent loads of a straight-line stretch together: a
                // later first use in the same stretch waits for bytes, not for another round
                // trip, unless it is itself a global load (a dependent chain).
                let chained = matches!(ins.op, Op::Ld { .. } | Op::Atom { .. });
                if ww.waited_in_stretch && !chained {
                    p.acc.c.mem_wait_bytes += ww.pending_bytes as f64;
                } else {
                    p.acc.on_mem_wait(w.idx, ww.pending_bytes, 1);
                }
                ww.waited_in_stretch = true;
                ww.pending.clear();
                ww.pending_bytes = 0;
            }
            if matches!(ins.op, Op::BarSync | Op::BarRed(..)) {
                ww.waited_in_stretch = false;
            }
            p.acc.on_warp_inst(mask.count_ones());
        }
        if exec == 0 {
            return;
        }
        let (space, kind, width) = match &ins.op {
            Op::Alu(op, Ty::F32, _) => {
                let f = fp32_flops(*op) * u64::from(exec.count_ones());
                if let Some(p) = self.prof.as_mut() {
                    p.acc.on_fp32(f);
                }
                return;
            }
            Op::Ld { space, ty, n } => (*space, Access::Load, ty.bytes() as u32 * u32::from(*n)),
            Op::St { space, ty, n } => (*space, Access::Store, ty.bytes() as u32 * u32::from(*n)),
            Op::Atom { space, ty, .. } => (*space, Access::Atomic, ty.bytes() as u32),
            Op::CpAsync { size, .. } => {
                let src = self.addrs32(w, &ins.s[1]);
                let lanes_on = gpu_model::counters::masked(&src, exec);
                let Some(p) = self.prof.as_mut() else { return };
                let before = p.acc.c.global_ldgsts_sectors;
                p.acc.on_cp_async(*size, &lanes_on);
                p.warps[wi].cp_open += (p.acc.c.global_ldgsts_sectors - before) * 32;
                return;
            }
            Op::CpCommit => {
                let Some(p) = self.prof.as_mut() else { return };
                let ww = &mut p.warps[wi];
                ww.cp_groups.push_back(std::mem::take(&mut ww.cp_open));
                return;
            }
            Op::CpWait(n) => {
                let Some(p) = self.prof.as_mut() else { return };
                let ww = &mut p.warps[wi];
                if *n == u32::MAX {
                    ww.cp_groups.push_back(std::mem::take(&mut ww.cp_open));
                }
                let keep = if *n == u32::MAX { 0 } else { *n as usize };
                let outstanding = ww.cp_groups.len();
                if outstanding > keep {
                    let bytes: u64 = ww.cp_groups.drain(..outstanding - keep).sum();
                    p.acc.on_mem_wait(w.idx, bytes, outstanding as u32);
                }
                return;
            }
            _ => return,
        };
        if matches!(space, Space::Param | Space::Local | Space::Const) {
            return;
        }
        let addrs = self.addrs32(w, &ins.s[0]);
        let mut global = [None; 32];
        let mut shared = [None; 32];
        for l in lanes(exec) {
            match self.resolve(space, addrs[l]) {
                (Space::Global, a) => global[l] = Some(a),
                (Space::Shared, a) => shared[l] = Some(a),
                _ => {}
            }
        }
        let Some(p) = self.prof.as_mut() else { return };
        p.acc.on_shared_access(kind, width, &shared);
        let before = p.acc.c.global_ld_sectors + p.acc.c.global_atom_sectors;
        p.acc.on_global_access(kind, width, &global);
        let bytes = (p.acc.c.global_ld_sectors + p.acc.c.global_atom_sectors - before) * 32;
        if bytes > 0 {
            let ww = &mut p.warps[wi];
            ww.pending_bytes += bytes;
            if let Some(d) = ins.d.first() {
                dest_regs(d, &mut ww.pending);
            }
        }
    }

    /// An `ldmatrix` / `mma.sync` that executes for the warp's lanes `full`.
    pub(super) fn count_collective(&mut self, w: &Warp, ins: &Instr) {
        match &ins.op {
            Op::Ldmatrix { num, .. } => {
                let addrs = self.addrs32(w, &ins.s[0]);
                let rows: [Option<u64>; 32] = std::array::from_fn(|l| {
                    (l < 8 * *num as usize).then(|| {
                        let a = addrs[l];
                        if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&a) {
                            a - SHARED_WINDOW
                        } else {
                            a
                        }
                    })
                });
                if let Some(p) = self.prof.as_mut() {
                    p.acc.on_ldmatrix(&rows);
                }
            }
            Op::Mma { k, ab } => {
                let dtype = if *ab == Ty::BF16 {
                    TensorDtype::Bf16
                } else {
                    TensorDtype::F16
                };
                if let Some(p) = self.prof.as_mut() {
                    p.acc.on_mma(16, 8, u32::from(*k), dtype);
                }
            }
            Op::Wgmma(spec) => {
                let dtype = match spec.ta {
                    MmaTy::BF16 => TensorDtype::Bf16,
                    MmaTy::F16 => TensorDtype::F16,
                    MmaTy::E4M3 | MmaTy::E5M2 => TensorDtype::F8,
                };
                if let Some(p) = self.prof.as_mut() {
                    p.acc.on_wgmma_warp(64, spec.n, spec.k, dtype);
                }
            }
            _ => {}
        }
    }
}
