//! Block barriers (`bar.sync`, `bar.red`) and warp-synchronous collectives (`shfl`, `vote`,
//! `redux`).

use super::*;

impl<'a, 'b> Block<'a, 'b> {
    /// All warps are blocked: release a barrier, detect divergence/deadlock, or report done.
    pub(super) fn resolve_barrier(&mut self) -> Result<bool, Fault> {
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
        // A warp whose lanes are partly at the barrier and partly exited (they returned, or
        // branched around the barrier and then exited) is a divergent barrier (synccheck):
        // `__syncthreads()` must be reached by every thread of the block, or not at all by
        // whole warps that have exited.
        for (wi, w) in self.warps.iter().enumerate() {
            let gone = w.valid & w.exited;
            if w.at_bar != 0 && gone != 0 {
                let l = w.at_bar.trailing_zeros();
                let x = gone.trailing_zeros() as usize;
                let xpc = w.lane_pc[x] as usize;
                let other = self.tid_of(wi, x as u32);
                return Err(self.fault(
                    wi,
                    w.lane_pc[l as usize] as usize,
                    e(
                        FaultKind::BarrierDivergence,
                        l,
                        None,
                        format!(
                            "divergent barrier: lanes {:#010x} of warp {wi} wait at this barrier but lanes {gone:#010x} of the same warp exited without reaching it (e.g. thread ({},{},{}) at PTX line {} `{}`); every thread of the block must reach bar.sync (__syncthreads), or whole warps must exit before it",
                            w.at_bar,
                            other[0],
                            other[1],
                            other[2],
                            self.c.prog.instrs.get(xpc).map_or(0, |i| i.line),
                            self.c.prog.texts.get(xpc).map_or("", |t| t.as_str()),
                        ),
                    ),
                ));
            }
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

    pub(super) fn finish_bar_red(&mut self, pc: usize) {
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

    pub(super) fn collective(&mut self, w: &mut Warp, ins: &Instr, full: u32) -> R<()> {
        match &ins.op {
            Op::WarpSync => {
                w.wepoch += 1;
            }
            Op::Shfl(mode) if self.shfl_rows(w, ins, *mode, full)? => {}
            Op::Shfl(mode) => {
                let mut src = [0u64; 32];
                for l in lanes(full) {
                    src[l] = self.val(w, &ins.s[0], l);
                }
                for l in lanes(full) {
                    let (j, pval) = shfl_member(
                        *mode,
                        l,
                        self.val(w, &ins.s[1], l) as u32 & 31,
                        self.val(w, &ins.s[2], l) as u32,
                        full,
                    )?;
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
            Op::Wgmma(_) | Op::WgFence | Op::WgCommit | Op::WgWait(_) | Op::Stmatrix { .. } => {
                self.wgmma_collective(w, ins)?
            }
            _ => unreachable!(),
        }
        Ok(())
    }

    /// `shfl.sync` over whole register rows (sources read in place, results written with one
    /// select loop per destination) when no destination is also the lane or clamp operand (then
    /// the lane-by-lane loop above runs, which reads those per lane after earlier lanes wrote).
    /// Returns false when it did nothing.
    fn shfl_rows(&mut self, w: &mut Warp, ins: &Instr, mode: ShflMode, full: u32) -> R<bool> {
        let dr = match ins.d.first() {
            Some(Opnd::Reg(r)) => Some(*r),
            Some(Opnd::Sink) => None,
            _ => return Ok(false),
        };
        let pr = match ins.d.get(1) {
            Some(Opnd::Reg(r)) => Some(*r),
            None | Some(Opnd::Sink) => None,
            _ => return Ok(false),
        };
        let reads = |o: &Opnd, r: Option<u32>| matches!((o, r), (Opnd::Reg(x), Some(y)) if *x == y);
        if [dr, pr]
            .iter()
            .any(|&r| reads(&ins.s[1], r) || reads(&ins.s[2], r))
        {
            return Ok(false);
        }
        let (g, clk) = (self.c.gsyms, w.clock);
        let (mut ta, mut tb, mut tc) = ([0u64; 32], [0u64; 32], [0u64; 32]);
        let mut out = [0u64; 32];
        let mut pv = [0u64; 32];
        {
            let src = src32(&w.regs, g, clk, &ins.s[0], &mut ta);
            let bv = src32(&w.regs, g, clk, &ins.s[1], &mut tb);
            let cv = src32(&w.regs, g, clk, &ins.s[2], &mut tc);
            for l in lanes(full) {
                let (j, pval) = shfl_member(mode, l, bv[l] as u32 & 31, cv[l] as u32, full)?;
                out[l] = src[j];
                pv[l] = pval as u64;
            }
        }
        if let Some(r) = dr {
            store32(&mut w.regs, r, &out, full);
        }
        if let Some(p) = pr {
            store32(&mut w.regs, p, &pv, full);
        }
        Ok(true)
    }
}

/// The lane that lane `l` reads in `shfl.sync.MODE` with operands `b` (lane or offset, already
/// masked to 0..31) and `c` (clamp and segment mask), and the predicate result: whether the
/// source is inside the segment. Out of range, a lane reads its own value.
/// [`shfl_source`], which must be a lane of `full` (the lanes executing the shfl).
#[inline(always)]
fn shfl_member(mode: ShflMode, l: usize, b: u32, c: u32, full: u32) -> R<(usize, bool)> {
    let (j, pval) = shfl_source(mode, l, b, c);
    if full & (1 << j) == 0 {
        return Err(e(
            FaultKind::BarrierDivergence,
            l as u32,
            None,
            format!("shfl.sync reads lane {j}, which does not execute this shfl (undefined value)"),
        ));
    }
    Ok((j, pval))
}

#[inline(always)]
fn shfl_source(mode: ShflMode, l: usize, b: u32, c: u32) -> (usize, bool) {
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
    (if pval { j as usize } else { l }, pval)
}
