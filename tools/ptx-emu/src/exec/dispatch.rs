//! The per-warp-instruction dispatch: `run_warp` picks the lane group, evaluates the guard and
//! counts the instruction (the one place per-instruction accounting hooks in), then control flow
//! and collectives are handled here and everything else goes to `exec`.

use super::*;

impl<'a, 'b> Block<'a, 'b> {
    /// Run up to `budget` warp-instructions of `w`. On x86-64 CPUs with AVX2 and FMA the loop
    /// (with the warp-wide lane loops inlined into it) runs as a copy compiled for those
    /// extensions: wider vectors, `fma` in one instruction instead of a libm call. The
    /// operations and their order are the same, so are the results (IEEE add/mul/fma are
    /// correctly rounded whichever instructions compute them; no contraction happens in Rust).
    pub(super) fn run_warp(&mut self, w: &mut Warp, budget: u32) -> R<()> {
        #[cfg(target_arch = "x86_64")]
        {
            if simd_ok() {
                // SAFETY: the CPU has every feature `run_warp_simd` is compiled for (checked).
                return unsafe { self.run_warp_simd(w, budget) };
            }
        }
        self.run_warp_body(w, budget)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
    unsafe fn run_warp_simd(&mut self, w: &mut Warp, budget: u32) -> R<()> {
        self.run_warp_body(w, budget)
    }

    #[inline(always)]
    fn run_warp_body(&mut self, w: &mut Warp, budget: u32) -> R<()> {
        let prog = self.c.prog;
        let fast_ops: &[FOp] = if self.c.opts.decoded { &prog.fast } else { &[] };
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
                    let base = p as usize * 32;
                    let row: &[u64; 32] = w.regs[base..base + 32].try_into().unwrap();
                    let mut bits = 0u32;
                    for (l, v) in row.iter().enumerate() {
                        bits |= ((v & 1) as u32) << l;
                    }
                    if neg {
                        !bits & mask
                    } else {
                        bits & mask
                    }
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
            if self.prof.is_some() {
                self.count_inst(w, ins, mask, exec);
            }
            if w.wg.busy() && exec != 0 && prog.wg_touch.get(pc as usize) == Some(&true) {
                self.wgmma_touch(w, ins, exec)?;
            }
            if let Some(f) = fast_ops
                .get(pc as usize)
                .filter(|f| !matches!(f, FOp::Slow))
            {
                if exec != 0 {
                    if let FOp::Ld { .. } | FOp::St { .. } = f {
                        if !self.ldst_fast(w, f, exec)? {
                            self.exec(w, ins, exec)?;
                        }
                    } else {
                        fast::exec_fast(&mut w.regs, f, exec);
                    }
                }
                w.pc = pc + 1;
                if w.pc >= w.others_min {
                    w.dirty = true;
                }
                continue;
            }
            match &ins.op {
                Op::Bra(t) => {
                    let t = *t;
                    if exec == mask {
                        w.pc = t;
                    } else if exec == 0 {
                        w.pc = pc + 1;
                    } else {
                        w.split(exec, mask, t, pc);
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
                        // lane_pc: where the lanes exited (divergent-barrier reports)
                        w.park(exec, mask, pc);
                        // pending cp.async of exited lanes are dropped
                        if !w.pending.is_empty() {
                            let sh = &mut self.shadow;
                            w.pending.retain(|p| {
                                if exec & (1 << p.lane) != 0 {
                                    for i in (0..p.len as usize).step_by(4) {
                                        if sh.is_empty() {
                                            break;
                                        }
                                        sh[(p.dst as usize + i) / 4].pending -= 1;
                                    }
                                    false
                                } else {
                                    true
                                }
                            });
                        }
                        // lanes waiting at a collective re-check their membermask now that
                        // some lanes have exited
                        w.running |= w.at_coll;
                        w.at_coll = 0;
                        continue;
                    }
                }
                Op::BarSync | Op::BarRed(..) => {
                    if exec != 0 {
                        w.at_bar |= exec;
                        w.park(exec, mask, pc);
                        // cp.async groups are not waited for by bar.sync
                        continue;
                    }
                }
                Op::WarpSync
                | Op::Shfl(_)
                | Op::Vote(_)
                | Op::Redux(..)
                | Op::Ldmatrix { .. }
                | Op::Mma { .. }
                | Op::Wgmma(_)
                | Op::WgFence
                | Op::WgCommit
                | Op::WgWait(_)
                | Op::Stmatrix { .. } => {
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
                        let aligned = !matches!(
                            ins.op,
                            Op::WarpSync | Op::Shfl(_) | Op::Vote(_) | Op::Redux(..)
                        );
                        if aligned && w.exited != 0 {
                            return Err(e(
                                FaultKind::BarrierDivergence,
                                exec.trailing_zeros(),
                                None,
                                format!(
                                    "lanes {:#010x} of the warp have exited: .sync.aligned ldmatrix/stmatrix/mma/wgmma need all 32 lanes",
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
                            w.park(exec, mask, pc);
                            continue;
                        }
                        if here != 0 {
                            w.at_coll &= !here;
                            w.running |= here;
                            w.mask |= here;
                        }
                        if let Op::WgWait(n) = ins.op {
                            match self.wgmma_wait_ready(w, n)? {
                                wgmma::WgWait::Ready => {}
                                wgmma::WgWait::Yield => {
                                    // not yet: yield without advancing (uncounted)
                                    self.c.stats.thread_instructions -= mask.count_ones() as u64;
                                    self.c.stats.warp_instructions -= 1;
                                    return Ok(());
                                }
                                wgmma::WgWait::Park => {
                                    self.c.stats.thread_instructions -= mask.count_ones() as u64;
                                    self.c.stats.warp_instructions -= 1;
                                    let m = w.mask;
                                    self.park_like_wait(w, full, m, pc);
                                    continue;
                                }
                            }
                        }
                        if self.prof.is_some() {
                            self.count_collective(w, ins);
                        }
                        self.collective(w, ins, full)?;
                    }
                }
                Op::Hopper(h) if h.waits() => {
                    if exec != 0 && self.mbar_wait(w, ins, exec, mask, pc)? {
                        continue;
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

    pub(super) fn exec(&mut self, w: &mut Warp, ins: &Instr, exec: u32) -> R<()> {
        match &ins.op {
            Op::Alu(op, ty, f) => {
                let (op, ty, f) = (*op, *ty, *f);
                let d = &ins.d[0];
                let s = &ins.s;
                if self.fast_alu(w, op, ty, f, d, s, exec) {
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
                        let mut tmp = [0u64; 32];
                        let v = *src32(&w.regs, self.c.gsyms, w.clock, src, &mut tmp);
                        for (i, p) in parts.iter().enumerate() {
                            if let Opnd::Reg(pr) = *p {
                                let mut r = [0u64; 32];
                                for l in 0..32 {
                                    r[l] = (v[l] >> (eb * i as u32)) & mask_bits(eb);
                                }
                                store32(&mut w.regs, pr, &r, exec);
                            }
                        }
                    }
                    (d, Opnd::Vec(parts)) => {
                        let n = parts.len() as u32;
                        let eb = ty.bits() / n;
                        let mut r = [0u64; 32];
                        for (i, p) in parts.iter().enumerate() {
                            let mut tmp = [0u64; 32];
                            let v = src32(&w.regs, self.c.gsyms, w.clock, p, &mut tmp);
                            for l in 0..32 {
                                r[l] |= (v[l] & mask_bits(eb)) << (eb * i as u32);
                            }
                        }
                        if let Opnd::Reg(dr) = *d {
                            store32(&mut w.regs, dr, &r, exec);
                        }
                    }
                    (d, s) => {
                        let m = mask_bits(ty.bits());
                        let mut tmp = [0u64; 32];
                        let v = src32(&w.regs, self.c.gsyms, w.clock, s, &mut tmp);
                        let mut r = [0u64; 32];
                        for l in 0..32 {
                            r[l] = v[l] & m;
                        }
                        if let Opnd::Reg(dr) = *d {
                            store32(&mut w.regs, dr, &r, exec);
                        }
                    }
                }
            }
            Op::Setp { cmp, ty, bop, ftz } => {
                let (g, clk) = (self.c.gsyms, w.clock);
                let mut r = [0u64; 32];
                {
                    let (mut ta, mut tb) = ([0u64; 32], [0u64; 32]);
                    let a = src32(&w.regs, g, clk, &ins.s[0], &mut ta);
                    let b = src32(&w.regs, g, clk, &ins.s[1], &mut tb);
                    if !setp_int(*cmp, *ty, a, b, &mut r) {
                        for l in 0..32 {
                            r[l] = compare(*cmp, *ty, *ftz, a[l], b[l]) as u64;
                        }
                    }
                }
                let mut tc = [0u64; 32];
                let comb = bop.map(|bop| (bop, src32(&w.regs, g, clk, &ins.s[2], &mut tc)));
                let q = setp_pair(&mut r, comb);
                if let Opnd::Reg(dr) = ins.d[0] {
                    store32(&mut w.regs, dr, &r, exec);
                }
                if let Some(&Opnd::Reg(dr)) = ins.d.get(1) {
                    store32(&mut w.regs, dr, &q, exec);
                }
            }
            Op::Cvt { d, s, f } if !d.is_float() && !s.is_float() && !f.sat => {
                // integer ↔ integer without saturation: truncate / sign- or zero-extend
                let (sb, db) = (s.bits(), d.bits());
                let (ss, ds) = (s.signed(), d.signed());
                let mut tmp = [0u64; 32];
                let a = src32(&w.regs, self.c.gsyms, w.clock, &ins.s[0], &mut tmp);
                let mut r = [0u64; 32];
                for l in 0..32 {
                    let v = if ss {
                        sext(a[l], sb) as u64
                    } else {
                        a[l] & mask_bits(sb)
                    };
                    r[l] = if ds {
                        sext(v, db) as u64 & mask_bits(db)
                    } else {
                        v & mask_bits(db)
                    };
                }
                if let Opnd::Reg(dr) = ins.d[0] {
                    store32(&mut w.regs, dr, &r, exec);
                }
            }
            Op::Cvt { d, s, f }
                if *d == Ty::BF16x2
                    && *s == Ty::F32
                    && f.rnd == Rnd::Rn
                    && !(f.sat || f.relu || f.satfinite || f.ftz || f.int_rnd) =>
            {
                let (g, clk) = (self.c.gsyms, w.clock);
                let (mut ta, mut tb) = ([0u64; 32], [0u64; 32]);
                let a = src32(&w.regs, g, clk, &ins.s[0], &mut ta);
                let b = src32(&w.regs, g, clk, &ins.s[1], &mut tb);
                let mut r = [0u64; 32];
                for l in 0..32 {
                    r[l] = cvt_rn_bf16x2_f32(a[l], b[l]);
                }
                if let Opnd::Reg(dr) = ins.d[0] {
                    store32(&mut w.regs, dr, &r, exec);
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
            Op::Ld { ty, n, .. } if ty.bytes() <= 8 && *n <= 4 => {
                self.ld_warp(w, ins, exec)?;
            }
            Op::Ld { .. } => {
                self.ld_wide(w, ins, exec)?;
            }
            Op::St { ty, n, .. } if ty.bytes() <= 8 && *n <= 4 => {
                self.st_warp(w, ins, exec)?;
            }
            Op::St { .. } => {
                self.st_wide(w, ins, exec)?;
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
                        if self.shadow.is_empty() {
                            break;
                        }
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
            Op::CvtF8(c) => self.exec_cvt_f8(w, ins, *c, exec),
            Op::Membar | Op::Nop => {}
            Op::Hopper(h) => self.exec_hopper(w, ins, h, exec)?,
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
}

/// Whether the CPU has the extensions `run_warp_simd` is compiled for (detected once).
#[cfg(target_arch = "x86_64")]
pub(super) fn simd_ok() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
    static OK: AtomicU8 = AtomicU8::new(0);
    match OK.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let ok = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("bmi1")
                && std::arch::is_x86_feature_detected!("bmi2")
                && std::arch::is_x86_feature_detected!("lzcnt")
                && std::arch::is_x86_feature_detected!("popcnt")
                && std::env::var("PTX_EMU_NO_SIMD").map_or(true, |v| v.trim() == "0");
            OK.store(if ok { 1 } else { 2 }, Relaxed);
            ok
        }
    }
}
