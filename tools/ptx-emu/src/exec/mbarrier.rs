//! sm_90 `mbarrier` (phases, arrival counts, transaction counts), the parking of lanes on a
//! failed `test_wait`/`try_wait`, deadlock detection, `elect.sync` and `setmaxnreg`.
//!
//! An mbarrier lives at an 8-byte aligned shared-memory offset; its state is kept beside the
//! shared memory (keyed by the offset) rather than in the 8 bytes, which PTX declares opaque.
//! A wait whose phase has not completed parks its lanes (as if the warp were descheduled); any
//! phase completion wakes every parked lane, which re-executes its wait. When no warp can run,
//! in-flight bulk copies land first; if lanes are still parked they are woken once with the
//! wait's `false` result (the suspend time limit ran out), and if a second such round finds
//! nothing changed (no mbarrier operation, no barrier, no exit) the block is deadlocked: a
//! `FaultKind::Deadlock` (or `TxCountMismatch` when only transaction bytes are missing) names
//! the waiting thread and the barrier's state.

use super::tma::Inflight;
use super::*;
use std::collections::HashMap;

/// One initialised mbarrier.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mbar {
    pub expected: u32,
    pub pending: u32,
    /// Transaction count: expect_tx adds, complete_tx (and bulk copies landing) subtract.
    pub tx: i64,
    /// Completed phases so far (the current phase's parity is `phase & 1`).
    pub phase: u64,
    /// Where and by whom tx was last changed (reports).
    pub tx_pc: u32,
    pub tx_tid: u32,
    /// Bytes bulk copies delivered in the current phase, and in the last completed one
    /// (profiler: what a wait that the phase completion released waited for).
    pub phase_bytes: u64,
    pub done_bytes: u64,
}

/// The sm_90 state of one block.
#[derive(Default)]
pub(crate) struct HopState {
    pub mbars: HashMap<u32, Mbar>,
    /// Per warp: lanes parked on an mbarrier wait.
    pub parked: Vec<u32>,
    /// Per warp: lanes whose next wait returns its result without parking (timed out).
    pub timeout: Vec<u32>,
    /// Per warp: lanes woken from a parked wait that have not re-executed it yet (profiler).
    pub woken: Vec<u32>,
    /// Bumped by every mbarrier state change and every copy landing.
    pub progress: u64,
    stall_sig: Option<(u64, u32, u32)>,
    stall_rounds: u32,
    /// Asynchronous copies issued and not yet landed.
    pub inflight: Vec<Inflight>,
    /// Shared regions a bulk copy writes: (offset, len, mbarrier, phase at landing or None
    /// while in flight, issuing pc, issuing thread). Accesses before the phase completes are
    /// `AsyncProxyRace` hazards.
    pub guards: Vec<(u32, u32, u32, Option<u64>, u32, u32)>,
    /// Per thread: committed bulk groups.
    pub bulk_committed: HashMap<u32, u32>,
    /// Per warpgroup: its register count after `setmaxnreg` (empty until the first one).
    pub wg_regs: Vec<u32>,
    /// Bytes moved by bulk / tensor copies (global → shared, shared → global).
    pub bytes_g2s: u64,
    pub bytes_s2g: u64,
    /// Generic-proxy shared writes not yet fenced for the async proxy (`exec/proxy.rs`).
    pub proxy: super::proxy::ProxyState,
}

impl<'a, 'b> Block<'a, 'b> {
    /// The shared offset of `lane`'s mbarrier operand `o` (8-byte aligned, inside shared).
    pub(super) fn mbar_off(&self, w: &Warp, o: &Opnd, space: Space, lane: usize) -> R<u32> {
        let a = self.addr(w, o, lane);
        let (sp, a2) = self.resolve(space, a);
        if sp != Space::Shared {
            return Err(e(
                FaultKind::OutOfBounds,
                lane as u32,
                Some(a),
                "an mbarrier must be in shared memory (this address is not)",
            ));
        }
        Ok(self.shared_off(lane, a2, 8, true)? as u32)
    }

    /// The space of an mbarrier instruction's barrier operand (the decoder's last source).
    fn mbar_space(ins: &Instr) -> Space {
        match ins.s.last() {
            Some(Opnd::Imm(1)) => Space::Shared,
            _ => Space::Generic,
        }
    }

    /// The mbarrier at `off` (fault when it was never initialised or was invalidated).
    pub(super) fn mbar_get(&mut self, lane: usize, off: u32) -> R<&mut Mbar> {
        self.hop.mbars.get_mut(&off).ok_or_else(|| {
            e(
                FaultKind::Trap,
                lane as u32,
                Some(off as u64),
                format!("mbarrier at shared offset {off:#x} used before mbarrier.init (or after mbarrier.inval)"),
            )
        })
    }

    /// Complete the barrier's phase when all arrivals and all transaction bytes are in.
    pub(super) fn mbar_check_complete(&mut self, off: u32, w: Option<&mut Warp>) {
        let Some(b) = self.hop.mbars.get_mut(&off) else {
            return;
        };
        if b.pending == 0 && b.tx == 0 {
            b.phase += 1;
            b.pending = b.expected;
            b.done_bytes = std::mem::take(&mut b.phase_bytes);
            // The shared-race detector orders everything before a phase completion before
            // everything after it (as a bar.sync does): the waiters acquire what the arrivers
            // released. Coarse: it also orders threads that never touch this barrier.
            self.epoch += 1;
            self.wake_all(w);
        }
    }

    /// Every parked lane of every warp (and of `w`, the warp running now) re-executes its wait.
    pub(super) fn wake_all(&mut self, w: Option<&mut Warp>) {
        self.hop.progress += 1;
        if let Some(w) = w {
            self.wake_warp(w);
        }
        for i in 0..self.warps.len() {
            let mut w = std::mem::take(&mut self.warps[i]);
            self.wake_warp(&mut w);
            self.warps[i] = w;
        }
    }

    fn wake_warp(&mut self, w: &mut Warp) {
        let i = w.idx as usize;
        if let Some(p) = self.hop.parked.get_mut(i) {
            if *p != 0 {
                w.running |= *p;
                self.hop.woken[i] |= *p;
                *p = 0;
                w.dirty = true;
            }
        }
    }

    /// The lane-by-lane mbarrier, elect and setmaxnreg operations (waits: [`Self::mbar_wait`]).
    pub(super) fn exec_hopper(
        &mut self,
        w: &mut Warp,
        ins: &Instr,
        op: &HopOp,
        exec: u32,
    ) -> R<()> {
        let sp = Self::mbar_space(ins);
        match op {
            HopOp::MbarInit => {
                for l in lanes(exec) {
                    let off = self.mbar_off(w, &ins.s[0], sp, l)?;
                    let count = self.val(w, &ins.s[1], l) as u32;
                    if count == 0 || count >= 1 << 20 {
                        return Err(e(
                            FaultKind::Trap,
                            l as u32,
                            Some(off as u64),
                            format!("mbarrier.init count {count} is outside 1..2^20-1"),
                        ));
                    }
                    let tid = w.idx * 32 + l as u32;
                    self.hop.mbars.insert(
                        off,
                        Mbar {
                            expected: count,
                            pending: count,
                            tx: 0,
                            phase: 0,
                            tx_pc: w.pc,
                            tx_tid: tid,
                            phase_bytes: 0,
                            done_bytes: 0,
                        },
                    );
                    self.hop.progress += 1;
                }
            }
            HopOp::MbarInval => {
                for l in lanes(exec) {
                    let off = self.mbar_off(w, &ins.s[0], sp, l)?;
                    self.mbar_get(l, off)?;
                    self.hop.mbars.remove(&off);
                    self.hop.progress += 1;
                }
            }
            HopOp::MbarArrive {
                expect_tx,
                drop,
                has_arg,
            } => {
                for l in lanes(exec) {
                    let arg = if *has_arg {
                        self.val(w, &ins.s[1], l) as u32
                    } else {
                        1
                    };
                    let (count, tx) = if *expect_tx { (1, arg) } else { (arg, 0) };
                    let a = self.addr(w, &ins.s[0], l);
                    if sp == Space::Shared && self.dsmem_target(a).is_some() {
                        // a .shared::cluster address naming a rank (exec/cluster.rs)
                        self.remote_arrive(w, l, a, count, tx)?;
                        continue;
                    }
                    let off = self.mbar_off(w, &ins.s[0], sp, l)?;
                    let tid = w.idx * 32 + l as u32;
                    let pc = w.pc;
                    let b = self.mbar_get(l, off)?;
                    let state = b.phase;
                    if tx > 0 {
                        b.tx += tx as i64;
                        b.tx_pc = pc;
                        b.tx_tid = tid;
                    }
                    if count == 0 || count > b.pending {
                        let detail = format!(
                            "mbarrier at shared offset {off:#x}: arrive with count {count} but only {} of {} arrivals are pending in phase {} (more arrivals than mbarrier.init's count)",
                            b.pending, b.expected, b.phase
                        );
                        return Err(e(FaultKind::Trap, l as u32, Some(off as u64), detail));
                    }
                    b.pending -= count;
                    if *drop {
                        b.expected -= count.min(b.expected);
                    }
                    self.hop.progress += 1;
                    Self::set(w, &ins.d[0], l, state);
                    self.mbar_check_complete(off, Some(w));
                }
            }
            HopOp::MbarTx { complete } => {
                for l in lanes(exec) {
                    let off = self.mbar_off(w, &ins.s[0], sp, l)?;
                    let n = self.val(w, &ins.s[1], l) as u32 as i64;
                    let tid = w.idx * 32 + l as u32;
                    let pc = w.pc;
                    let b = self.mbar_get(l, off)?;
                    b.tx += if *complete { -n } else { n };
                    b.tx_pc = pc;
                    b.tx_tid = tid;
                    self.hop.progress += 1;
                    if *complete {
                        self.mbar_check_complete(off, Some(w));
                    }
                }
            }
            HopOp::Elect => {
                let member = self.val(w, &ins.s[0], exec.trailing_zeros() as usize) as u32;
                if exec & !member != 0 {
                    return Err(e(
                        FaultKind::BarrierDivergence,
                        (exec & !member).trailing_zeros(),
                        None,
                        format!("elect.sync: executing lane is not in membermask {member:#010x}"),
                    ));
                }
                let leader = exec.trailing_zeros() as u64;
                for l in lanes(exec) {
                    Self::set(w, &ins.d[0], l, leader);
                    Self::set(w, &ins.d[1], l, (l as u64 == leader) as u64);
                }
            }
            HopOp::Setmaxnreg { inc, n } => {
                self.setmaxnreg(w, *inc, *n, exec, true)?;
            }
            HopOp::Mapa => self.exec_mapa(w, ins, exec)?,
            HopOp::ClusterArrive => self.cluster_arrive(w, exec)?,
            HopOp::ProxyFence => self.proxy_fence(w, exec),
            HopOp::Dsmem(d) => self.exec_dsmem(w, ins, *d, exec)?,
            HopOp::MbarWait { .. } => unreachable!("waits run in mbar_wait"),
            _ => self.exec_tma(w, ins, op, exec)?,
        }
        Ok(())
    }

    fn hop_size(&mut self, wi: usize) {
        if self.hop.parked.len() < self.warps.len().max(wi + 1) {
            let n = self.warps.len().max(wi + 1);
            self.hop.parked.resize(n, 0);
            self.hop.timeout.resize(n, 0);
            self.hop.woken.resize(n, 0);
        }
    }

    /// The lanes `exec` of `w` wait at `pc` (a `wgmma.wait_group` held by a warp of its group
    /// whose lanes are parked on an mbarrier wait) like an mbarrier wait: parked until the next
    /// phase completion (or the stall time-out) makes them re-execute it, so a block whose only
    /// runnable work is such a wait still reaches the deadlock check.
    pub(super) fn park_like_wait(&mut self, w: &mut Warp, exec: u32, mask: u32, pc: u32) {
        let wi = w.idx as usize;
        self.hop_size(wi);
        self.hop.parked[wi] |= exec;
        w.park(exec, mask, pc);
    }

    /// Whether warp `j` has lanes parked on an mbarrier wait (they run again at the next phase
    /// completion).
    pub(super) fn has_parked(&self, j: usize) -> bool {
        self.hop.parked.get(j).is_some_and(|&p| p != 0)
    }

    /// `mbarrier.test_wait` / `try_wait`: the lanes whose phase completed (or whose wait timed
    /// out) get their predicate; the others park at `pc`. Returns whether any lane parked
    /// (the warp's lane groups were then rearranged).
    pub(super) fn mbar_wait(
        &mut self,
        w: &mut Warp,
        ins: &Instr,
        exec: u32,
        mask: u32,
        pc: u32,
    ) -> R<bool> {
        let wi = w.idx as usize;
        self.hop_size(wi);
        let parity = match &ins.op {
            Op::Hopper(HopOp::MbarWait { parity, .. }) => parity,
            Op::Hopper(HopOp::ClusterWait) => return self.cluster_wait(w, exec, mask, pc),
            Op::Hopper(HopOp::Setmaxnreg { inc, n }) => {
                let timed_out = self.hop.timeout[wi] & exec != 0;
                self.hop.timeout[wi] &= !exec;
                if self.setmaxnreg(w, *inc, *n, exec, timed_out)? {
                    return Ok(false);
                }
                self.hop.parked[wi] |= exec;
                w.park(exec, mask, pc);
                return Ok(true);
            }
            _ => unreachable!(),
        };
        let sp = Self::mbar_space(ins);
        let mut unready = 0u32;
        // profiler: a warp released by a phase that bulk copies completed waited for memory
        let mut waited_bytes = None;
        let woken = std::mem::take(&mut self.hop.woken[wi]) & exec;
        for l in lanes(exec) {
            let off = self.mbar_off(w, &ins.s[0], sp, l)?;
            let arg = self.val(w, &ins.s[1], l);
            let b = *self.mbar_get(l, off)?;
            let done = if *parity {
                (b.phase & 1) != (arg & 1)
            } else {
                b.phase > arg
            };
            if done && woken & (1 << l) != 0 && waited_bytes.is_none() && b.done_bytes > 0 {
                waited_bytes = Some(b.done_bytes);
            }
            let timed_out = self.hop.timeout[wi] & (1 << l) != 0;
            self.hop.timeout[wi] &= !(1 << l);
            if done || timed_out {
                Self::set(w, &ins.d[0], l, done as u64);
            } else {
                unready |= 1 << l;
            }
        }
        if let (Some(bytes), Some(p)) = (waited_bytes, self.prof.as_mut()) {
            p.on_mem_wait(w.idx, bytes);
        }
        if unready == 0 {
            return Ok(false);
        }
        self.hop.parked[wi] |= unready;
        w.park(unready, mask, pc);
        Ok(true)
    }

    /// After a warp's time slice: copies in flight may land (all on schedule 0, each with
    /// probability 1/2 on the other schedules).
    pub(super) fn hop_tick(&mut self, sched: u32, rng: &mut Rng) -> Result<(), Fault> {
        if self.hop.inflight.is_empty() {
            return Ok(());
        }
        let mut i = 0;
        while i < self.hop.inflight.len() {
            if sched == 0 || rng.below(2) == 0 {
                let c = self.hop.inflight.remove(i);
                self.land_async(c)?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// No warp can run. Returns true when something became runnable (copies landed, parked
    /// lanes woken after a timeout); a deadlock is a fault.
    pub(super) fn hop_stalled(&mut self) -> Result<bool, Fault> {
        if !self.hop.inflight.is_empty() {
            let all = std::mem::take(&mut self.hop.inflight);
            for c in all {
                self.land_async(c)?;
            }
            return Ok(true);
        }
        if self.hop.parked.iter().all(|&p| p == 0) {
            return Ok(false);
        }
        let exited: u32 = self.warps.iter().map(|w| w.exited.count_ones()).sum();
        let sig = (self.hop.progress, self.epoch, exited);
        if self.hop.stall_sig == Some(sig) {
            self.hop.stall_rounds += 1;
        } else {
            self.hop.stall_rounds = 0;
            self.hop.stall_sig = Some(sig);
        }
        if self.hop.stall_rounds >= 2 {
            return Err(self.deadlock_fault());
        }
        // Time the parked waits out once: they return false and may do something else.
        for (i, w) in self.warps.iter_mut().enumerate() {
            let p = std::mem::take(&mut self.hop.parked[i]);
            if p != 0 {
                self.hop.timeout[i] |= p;
                w.running |= p;
                w.dirty = true;
            }
        }
        Ok(true)
    }

    /// The fault of a block whose parked waits can never complete.
    fn deadlock_fault(&self) -> Fault {
        let (wi, l) = self
            .hop
            .parked
            .iter()
            .enumerate()
            .find(|(_, &p)| p != 0)
            .map(|(i, &p)| (i, p.trailing_zeros() as usize))
            .unwrap();
        let w = &self.warps[wi];
        let pc = w.lane_pc[l] as usize;
        let ins = &self.c.prog.instrs[pc];
        if !matches!(ins.op, Op::Hopper(HopOp::MbarWait { .. })) {
            let er = e(
                FaultKind::Deadlock,
                l as u32,
                None,
                "deadlock: this thread waits and nothing can run".to_string(),
            );
            return self.fault(wi, pc, er);
        }
        let waiting: u32 = self.hop.parked.iter().map(|p| p.count_ones()).sum();
        let off = self.mbar_off(w, &ins.s[0], Self::mbar_space(ins), l).ok();
        let arg = self.val(w, &ins.s[1], l);
        let parity = matches!(ins.op, Op::Hopper(HopOp::MbarWait { parity: true, .. }));
        let want = if parity {
            format!("the phase of parity {}", arg & 1)
        } else {
            format!("phase {arg}")
        };
        let (kind, detail) = match off.and_then(|o| self.hop.mbars.get(&o).map(|b| (o, b))) {
            Some((o, b)) if b.pending == 0 && b.tx != 0 => {
                let who = self.describe_tid(b.tx_tid);
                let line = self.c.prog.instrs[b.tx_pc as usize].line;
                let what = if b.tx > 0 {
                    format!("{} expected transaction bytes never arrive", b.tx)
                } else {
                    format!("{} bytes more arrived than expect_tx announced", -b.tx)
                };
                (
                    FaultKind::TxCountMismatch,
                    format!(
                        "mbarrier at shared offset {o:#x}: all {} arrivals are in but its tx-count is {} ({what}; last expect_tx/complete_tx by {who} at PTX line {line}), so phase {} never completes; {waiting} thread(s) wait for {want}",
                        b.expected, b.tx, b.phase
                    ),
                )
            }
            Some((o, b)) => (
                FaultKind::Deadlock,
                format!(
                    "deadlock: this thread waits on the mbarrier at shared offset {o:#x} for {want}, but the barrier is in phase {} (parity {}) with {} of {} arrivals pending and tx-count {}, and no thread can arrive: {waiting} thread(s) wait on mbarriers, the others wait at a barrier or exited",
                    b.phase,
                    b.phase & 1,
                    b.pending,
                    b.expected,
                    b.tx
                ),
            ),
            None => (
                FaultKind::Deadlock,
                format!("deadlock: this thread waits on an mbarrier that is not initialised ({waiting} thread(s) wait)"),
            ),
        };
        self.fault(wi, pc, e(kind, l as u32, off.map(u64::from), detail))
    }

    /// At the end of the block: copies still in flight land; a barrier left with transaction
    /// bytes outstanding (expected but not delivered, or delivered but never expected) is a
    /// `TxCountMismatch`.
    pub(super) fn hop_finish(&mut self) -> Result<(), Fault> {
        let all = std::mem::take(&mut self.hop.inflight);
        for c in all {
            self.land_async(c)?;
        }
        if let Some(p) = self.prof.as_mut() {
            p.on_bulk_bytes(self.hop.bytes_g2s, self.hop.bytes_s2g);
        }
        let mut bad: Vec<(u32, Mbar)> = self
            .hop
            .mbars
            .iter()
            .filter(|(_, b)| b.tx != 0)
            .map(|(&o, &b)| (o, b))
            .collect();
        bad.sort_by_key(|x| x.0);
        if let Some((o, b)) = bad.first() {
            let what = if b.tx > 0 {
                format!("{} bytes announced by expect_tx were never delivered", b.tx)
            } else {
                format!(
                    "{} bytes were delivered beyond what expect_tx announced",
                    -b.tx
                )
            };
            let wi = (b.tx_tid / 32) as usize;
            return Err(self.fault(
                wi,
                b.tx_pc as usize,
                e(
                    FaultKind::TxCountMismatch,
                    b.tx_tid % 32,
                    Some(*o as u64),
                    format!(
                        "mbarrier at shared offset {o:#x} ends the block with tx-count {} in phase {}: {what} (last expect_tx/complete_tx: this instruction)",
                        b.tx, b.phase
                    ),
                ),
            ));
        }
        Ok(())
    }

    /// `setmaxnreg`: the executing warp's warpgroup (4 warps) changes its per-thread register
    /// count; the block's total (warpgroups × 128 threads × count) must stay within the
    /// architecture's 64K registers. An `.inc` beyond the free registers waits (returns false)
    /// until another warpgroup's `.dec` releases some; `last_try` (nothing else can run): the
    /// registers never come, a `RegisterBudget` fault.
    fn setmaxnreg(
        &mut self,
        w: &mut Warp,
        inc: bool,
        n: u32,
        exec: u32,
        last_try: bool,
    ) -> R<bool> {
        let lim = crate::Arch::from_env().limits();
        let lane = exec.trailing_zeros();
        if !lim.hopper {
            return Err(e(
                FaultKind::Unsupported,
                lane,
                None,
                format!(
                    "setmaxnreg needs sm_90a; the emulated architecture is {}",
                    crate::Arch::from_env()
                ),
            ));
        }
        if exec != w.valid || w.exited != 0 {
            return Err(e(
                FaultKind::BarrierDivergence,
                lane,
                None,
                format!("setmaxnreg.sync.aligned must be executed by all 32 lanes of the warp (lanes {exec:#010x} execute it)"),
            ));
        }
        let nwg = (self.c.nthreads as usize).div_ceil(128);
        if self.hop.wg_regs.is_empty() {
            // Before the first setmaxnreg every warpgroup has the launch's even share of the
            // register file (at most 255 per thread, rounded down to a multiple of 8).
            let share = (lim.regs_per_sm / (nwg as u32 * 128)).min(255) / 8 * 8;
            self.hop.wg_regs = vec![share; nwg];
        }
        let g = (w.idx / 4) as usize;
        let cur = self.hop.wg_regs[g];
        if (inc && n < cur) || (!inc && n > cur) {
            return Err(e(
                FaultKind::Trap,
                lane,
                None,
                format!(
                    "setmaxnreg.{} {n}: warpgroup {g} has {cur} registers per thread (.inc must not lower, .dec must not raise the count)",
                    if inc { "inc" } else { "dec" }
                ),
            ));
        }
        // All four warps of the warpgroup execute it; the count changes once (at the first).
        let total: u64 = self
            .hop
            .wg_regs
            .iter()
            .enumerate()
            .map(|(i, &r)| if i == g { n as u64 } else { r as u64 } * 128)
            .sum();
        if total <= lim.regs_per_sm as u64 {
            self.hop.wg_regs[g] = n;
            if n < cur {
                self.wake_all(None);
            }
            return Ok(true);
        }
        if !last_try {
            return Ok(false);
        }
        {
            let mut regs = self.hop.wg_regs.clone();
            regs[g] = n;
            let per: Vec<String> = regs.iter().map(|r| r.to_string()).collect();
            Err(e(
                FaultKind::RegisterBudget,
                lane,
                None,
                format!(
 "setmaxnreg.inc {n}: the block's warpgroups would hold {total} registers (per-thread counts [{}] × 128 threads), more than the {} registers of an SM, and no other warpgroup can release registers (setmaxnreg.dec)",
                    per.join(", "),
                    lim.regs_per_sm
                ),
            ))
        }
    }
}
