//! `wgmma.mma_async` and its fence / commit_group / wait_group, and `stmatrix` (sm_90).
//!
//! A wgmma is a warpgroup collective (4 consecutive warps, the first a multiple of 4), but the
//! result of warp `r` of the group (rows 16r..16r+15 of D) depends only on its own A rows (from
//! its registers or from the descriptor) and on all of B: each warp's part is computed on its
//! own, when that warp completes the op. The asynchrony is real: at issue the emulator records
//! the op (descriptors, scale-d, the shared bytes it will read) and changes nothing; the A
//! registers and shared operands are read and the accumulators written when the warp's
//! `wgmma.wait_group N` completes the op's group, in issue order (so chained wgmmas on the same
//! accumulators see each other's results). Hazards (`FaultKind::AsyncHazard`):
//! * any non-wgmma instruction of the warp touching an accumulator or A-fragment register of a
//!   wgmma it has not yet waited for (read or write);
//! * a write into shared bytes an outstanding wgmma reads (with race detection on: shadow word
//!   counter `Shadow::wg`);
//! * a `wgmma.mma_async` with no `wgmma.fence` by the warp since its last `wait_group` (or since
//!   the start).

use super::tensor_core::matrix_row_address;
use super::*;

/// Per-warp wgmma state.
#[derive(Default)]
pub(crate) struct WgState {
    pending: Vec<WgPend>,
    /// Groups committed so far.
    committed: u32,
    /// A `wgmma.fence` since the last `wait_group` (or the start).
    fenced: bool,
    /// Bitset over register slots: the accumulator and A registers of `pending`.
    locked: Vec<u64>,
    /// `wgmma.mma_async` instructions issued by the warp so far.
    issued: u32,
}

impl WgState {
    #[inline(always)]
    pub(super) fn busy(&self) -> bool {
        !self.pending.is_empty()
    }
}

struct WgPend {
    pc: u32,
    /// Index among the warp's issued wgmmas (the warpgroup's op is the `seq`-th of each warp).
    seq: u32,
    group: u32,
    scale_d: bool,
    /// Shared offsets of this warp's A rows (16 × K, row-major; empty when A is in registers)
    /// and of B (N × K, row n = column n of B).
    a_off: Vec<u32>,
    b_off: Vec<u32>,
    /// Shadow words counted in `Shadow::wg` (released at completion).
    words: Vec<u32>,
    /// Executed (by a wait of some warp of the warpgroup); still locked until this warp waits.
    landed: bool,
}

/// Which instructions name a wgmma accumulator / A register (`Program::wg_touch`).
pub(crate) fn wgmma_touch_map(instrs: &[Instr]) -> Vec<bool> {
    let mut regs = std::collections::HashSet::new();
    for i in instrs {
        if let Op::Wgmma(_) = i.op {
            collect_regs(&i.d[0], &mut regs);
            if let Opnd::Vec(_) = &i.s[0] {
                collect_regs(&i.s[0], &mut regs);
            }
        }
    }
    if regs.is_empty() {
        return Vec::new();
    }
    instrs
        .iter()
        .map(|i| {
            !matches!(i.op, Op::Wgmma(_)) && {
                let mut r = std::collections::HashSet::new();
                i.d.iter().chain(&i.s).for_each(|o| collect_regs(o, &mut r));
                if let Some((g, _)) = i.guard {
                    r.insert(g);
                }
                r.iter().any(|x| regs.contains(x))
            }
        })
        .collect()
}

fn collect_regs(o: &Opnd, out: &mut std::collections::HashSet<u32>) {
    match o {
        Opnd::Reg(r) | Opnd::NotReg(r) | Opnd::Addr(Base::Reg(r), _) => {
            out.insert(*r);
        }
        Opnd::Vec(v) => v.iter().for_each(|p| collect_regs(p, out)),
        _ => {}
    }
}

fn regs_of(o: &Opnd) -> Vec<u32> {
    let mut s = std::collections::HashSet::new();
    collect_regs(o, &mut s);
    s.into_iter().collect()
}

fn hz(lane: u32, detail: String) -> Err1 {
    e(FaultKind::AsyncHazard, lane, None, detail)
}

/// Byte offset in shared memory of element (mn, k) of a wgmma operand described by `desc`
/// (`eb`-byte elements; `mn_major`: the transposed, M/N-major layout). The canonical layouts of
/// the PTX ISA ("Shared Memory Matrix Layout"), in 16-byte units (T = 16 / eb elements):
/// K-major  none: ((8,m),(T,2k)):((1,SBO),(1,LBO)); 32/64/128B: ((8,m),(T,2k)):((W,SBO),(1,1))
/// MN-major none: ((T,1,m),(8,k)):((1,_,SBO),(1,LBO)); swizzled: ((T,W,m),(8,k)):((1,1,LBO),(W,SBO))
/// with W = 2/4/8 for 32/64/128B; the swizzle XORs address bits [4, 4+log2 W) with bits
/// [7, 7+log2 W) of the absolute shared address.
pub(crate) fn desc_offset(desc: u64, mn: u32, k: u32, eb: u32, mn_major: bool) -> u64 {
    let start = (desc & 0x3fff) << 4;
    let lbo = ((desc >> 16) & 0x3fff) << 4;
    let sbo = ((desc >> 32) & 0x3fff) << 4;
    let mode = desc >> 62;
    let w: u64 = match mode {
        0 => 1,
        1 => 8,
        2 => 4,
        _ => 2,
    };
    let (mn, k) = (mn as u64, k as u64);
    let off = if !mn_major {
        let t = 16 / eb as u64;
        let (kc, kb) = (k / t, (k % t) * eb as u64);
        let (r, g) = (mn % 8, mn / 8);
        if mode == 0 {
            r * 16 + g * sbo + kc * lbo + kb
        } else {
            r * 16 * w + g * sbo + kc * 16 + kb
        }
    } else {
        let t = 16 / eb as u64;
        let (c, cb) = (mn / t, (mn % t) * eb as u64);
        let (kr, kg) = (k % 8, k / 8);
        if mode == 0 {
            cb + c * sbo + kr * 16 + kg * lbo
        } else {
            cb + (c % w) * 16 + (c / w) * lbo + kr * 16 * w + kg * sbo
        }
    };
    let a = start + off;
    if mode == 0 {
        a
    } else {
        a ^ (((a >> 7) & (w - 1)) << 4)
    }
}

/// An element of a wgmma operand as f64 (exact).
fn elem(t: MmaTy, bits: u32) -> f64 {
    match t {
        MmaTy::BF16 => f32::from_bits(bits << 16) as f64,
        MmaTy::F16 => f16::from_bits(bits as u16).to_f64(),
        MmaTy::E4M3 => super::fp8::e4m3_to_f64(bits as u8),
        MmaTy::E5M2 => super::fp8::e5m2_to_f64(bits as u8),
    }
}

/// (row, column) within the warp's 16 × N slice of D of accumulator element `i` (f32 index:
/// register i, or half i % 2 of f16x2 register i / 2) of lane `l`.
#[inline(always)]
fn acc_pos(l: usize, i: usize) -> (usize, usize) {
    let (g, t) = (l / 4, l % 4);
    (g + 8 * ((i >> 1) & 1), 8 * (i >> 2) + 2 * t + (i & 1))
}

impl<'a, 'b> Block<'a, 'b> {
    /// The wgmma-family collectives (all 32 lanes of the warp converged).
    pub(super) fn wgmma_collective(&mut self, w: &mut Warp, ins: &Instr) -> R<()> {
        match &ins.op {
            Op::WgFence => {
                w.wg.fenced = true;
                Ok(())
            }
            Op::WgCommit => {
                w.wg.committed += 1;
                Ok(())
            }
            Op::WgWait(n) => {
                let n = *n;
                w.wg.fenced = false;
                // the warpgroup's ops up to the last one this wait completes execute now, for
                // all four warps (each warp's part lands in its registers; the other warps keep
                // them locked until their own wait)
                let last =
                    w.wg.pending
                        .iter()
                        .filter(|p| p.group + n < w.wg.committed)
                        .map(|p| p.seq)
                        .max();
                if let Some(last) = last {
                    let base = (w.idx / 4 * 4) as usize;
                    for j in base..(base + 4).min(self.warps.len()) {
                        if j == w.idx as usize {
                            self.wgmma_land_upto(w, last)?;
                        } else {
                            let mut o = std::mem::take(&mut self.warps[j]);
                            let r = self.wgmma_land_upto(&mut o, last);
                            self.warps[j] = o;
                            r?;
                        }
                    }
                }
                w.wg.pending.retain(|p| p.group + n >= w.wg.committed);
                // rebuild the locked set from what is still outstanding
                let prog = self.c.prog;
                for x in w.wg.locked.iter_mut() {
                    *x = 0;
                }
                let pcs: Vec<u32> = w.wg.pending.iter().map(|p| p.pc).collect();
                for pc in pcs {
                    lock(&mut w.wg.locked, &prog.instrs[pc as usize], prog.nregs);
                }
                Ok(())
            }
            Op::Wgmma(spec) => self.wgmma_issue(w, ins, spec),
            Op::Stmatrix { num, trans } => self.stmatrix(w, ins, *num as usize, *trans),
            _ => unreachable!(),
        }
    }

    fn wgmma_issue(&mut self, w: &mut Warp, ins: &Instr, spec: &WgmmaSpec) -> R<()> {
        let nwarps = self.c.nthreads.div_ceil(32);
        let base = w.idx / 4 * 4;
        if self.c.nthreads < (base + 4) * 32 {
            return Err(e(
                FaultKind::BarrierDivergence,
                0,
                None,
                format!(
                    "wgmma.mma_async needs the 4 full warps of warpgroup {} (warps {}..{}); the block has {} threads ({nwarps} warps)",
                    base / 4,
                    base,
                    base + 3,
                    self.c.nthreads
                ),
            ));
        }
        if !w.wg.fenced {
            return Err(hz(
                0,
                "wgmma.mma_async without a wgmma.fence by this warp since its last wgmma.wait_group (or since the start): the ISA requires the fence before the first wgmma.mma_async and between register accesses and the wgmma that uses those registers".into(),
            ));
        }
        let wr = w.idx % 4;
        let k = spec.k;
        let n = spec.n;
        let scale_d = self.val(w, &ins.s[2], 0) & 1 != 0;
        let limit = self.shared.len() as u64;
        let operand = |desc: u64,
                       rows: std::ops::Range<u32>,
                       eb: u32,
                       mn_major: bool,
                       what: &str|
         -> R<Vec<u32>> {
            if (desc >> 49) & 7 != 0 {
                return Err(e(
                    FaultKind::Unsupported,
                    0,
                    None,
                    format!("wgmma {what} descriptor {desc:#018x}: a non-zero matrix base offset (bits 49..51) is not emulated"),
                ));
            }
            let mut v = Vec::with_capacity(rows.len() * k as usize);
            for mn in rows {
                for kk in 0..k {
                    let o = desc_offset(desc, mn, kk, eb, mn_major);
                    if o + eb as u64 > limit {
                        return Err(e(
                            FaultKind::OutOfBounds,
                            0,
                            Some(o),
                            format!(
                                "wgmma {what} descriptor {desc:#018x}: element ({mn}, k {kk}) at shared offset {o} is outside the block's {limit} bytes of shared memory"
                            ),
                        ));
                    }
                    v.push(o as u32);
                }
            }
            Ok(v)
        };
        let a_off = if spec.a_desc {
            let d = self.val(w, &ins.s[0], 0);
            operand(
                d,
                16 * wr..16 * wr + 16,
                spec.ta.bytes() as u32,
                spec.trans_a,
                "A",
            )?
        } else {
            Vec::new()
        };
        let bd = self.val(w, &ins.s[1], 0);
        let b_off = operand(bd, 0..n, spec.tb.bytes() as u32, spec.trans_b, "B")?;
        let mut words = Vec::new();
        if !self.shadow.is_empty() {
            let (ea, eb) = (spec.ta.bytes() as u32, spec.tb.bytes() as u32);
            words.extend(a_off.iter().map(|&o| o / 4));
            words.extend(a_off.iter().map(|&o| (o + ea - 1) / 4));
            words.extend(b_off.iter().map(|&o| o / 4));
            words.extend(b_off.iter().map(|&o| (o + eb - 1) / 4));
            words.sort_unstable();
            words.dedup();
            for &wd in &words {
                let c = &mut self.shadow[wd as usize].wg;
                *c = c.saturating_add(1);
            }
        }
        let prog = self.c.prog;
        lock(&mut w.wg.locked, ins, prog.nregs);
        w.wg.issued += 1;
        w.wg.pending.push(WgPend {
            seq: w.wg.issued - 1,
            pc: w.pc,
            group: w.wg.committed,
            scale_d,
            a_off,
            b_off,
            words,
            landed: false,
        });
        Ok(())
    }

    /// Whether `wgmma.wait_group n` of warp `w` can complete now. A warpgroup's wgmma executes
    /// once all four warps have issued it (the hardware reads its operands no earlier), so the
    /// wait of a warp that ran ahead holds (the warp yields without advancing) until the other
    /// warps of its group have issued as many wgmmas as it completes. A warp that can never
    /// issue them (exited, or blocked at a barrier the waiting warp would have to reach) is a
    /// deadlock: `BarrierDivergence`. A warp whose lanes are all stopped but some of them parked
    /// on an mbarrier wait can go on once that phase completes: the wait then parks too
    /// ([`WgWait::Park`]; CuTe's TMA mainloop: the producer lane waits for the consumers'
    /// barrier while the rest of its warp runs ahead to the next wgmma).
    pub(super) fn wgmma_wait_ready(&self, w: &Warp, n: u32) -> R<WgWait> {
        let Some(last) =
            w.wg.pending
                .iter()
                .filter(|p| p.group + n < w.wg.committed)
                .map(|p| p.seq)
                .max()
        else {
            return Ok(WgWait::Ready);
        };
        let base = (w.idx / 4 * 4) as usize;
        for j in base..(base + 4).min(self.warps.len()) {
            if j == w.idx as usize {
                continue;
            }
            let o = &self.warps[j];
            if o.wg.issued > last {
                continue;
            }
            if o.running == 0 && self.has_parked(j) {
                return Ok(WgWait::Park);
            }
            if o.running == 0 {
                return Err(e(
                    FaultKind::BarrierDivergence,
                    0,
                    None,
                    format!(
                        "wgmma.wait_group needs wgmma.mma_async #{} of warpgroup {} from every warp, but warp {j} has issued only {} and cannot go on (its threads exited or wait at a barrier): deadlock",
                        last + 1,
                        base / 4,
                        o.wg.issued
                    ),
                ));
            }
            return Ok(WgWait::Yield);
        }
        Ok(WgWait::Ready)
    }

    /// Execute warp `w`'s part of its not yet executed wgmmas up to number `last`, in order.
    fn wgmma_land_upto(&mut self, w: &mut Warp, last: u32) -> R<()> {
        for i in 0..w.wg.pending.len() {
            let p = &mut w.wg.pending[i];
            if p.landed || p.seq > last {
                continue;
            }
            p.landed = true;
            let p = WgPend {
                pc: p.pc,
                seq: p.seq,
                group: p.group,
                scale_d: p.scale_d,
                a_off: std::mem::take(&mut p.a_off),
                b_off: std::mem::take(&mut p.b_off),
                words: std::mem::take(&mut p.words),
                landed: true,
            };
            self.wgmma_land(w, p)?;
        }
        Ok(())
    }

    /// Execute one wgmma of warp `w`: read its operands now, write its accumulators.
    fn wgmma_land(&mut self, w: &mut Warp, p: WgPend) -> R<()> {
        let prog = self.c.prog;
        let ins = &prog.instrs[p.pc as usize];
        let Op::Wgmma(spec) = &ins.op else {
            unreachable!()
        };
        let (n, k) = (spec.n as usize, spec.k as usize);
        // release the shared words, then read them (hazard-checked as reads of lane 0)
        if !self.shadow.is_empty() {
            for &wd in &p.words {
                let c = &mut self.shadow[wd as usize].wg;
                *c = c.saturating_sub(1);
            }
            let tid = w.idx * 32;
            let mut last = u32::MAX;
            for &wd in &p.words {
                if wd != last {
                    self.shared_check(w, 0, tid, wd as usize * 4, 4, false, false, None)
                        .map_err(|mut er| {
                            er.detail = format!(
                                "wgmma.mma_async (PTX line {}) reading its shared operands when it executes (at the warpgroup's first wait_group covering it): {}",
                                ins.line, er.detail
                            );
                            er
                        })?;
                    last = wd;
                }
            }
        }
        let sa = if spec.neg_a { -1.0 } else { 1.0 };
        let sb = if spec.neg_b { -1.0 } else { 1.0 };
        let read = |sh: &[u8], o: u32, t: MmaTy| -> f64 {
            let o = o as usize;
            let bits = if t.bytes() == 2 {
                u16::from_le_bytes([sh[o], sh[o + 1]]) as u32
            } else {
                sh[o] as u32
            };
            elem(t, bits)
        };
        // a: 16 × k, b: n × k (row n = column n of B)
        let mut a = vec![0f64; 16 * k];
        if spec.a_desc {
            for (x, &o) in a.iter_mut().zip(&p.a_off) {
                *x = sa * read(&self.shared, o, spec.ta);
            }
        } else {
            let Opnd::Vec(ar) = &ins.s[0] else {
                unreachable!()
            };
            for (i, r) in ar.iter().enumerate() {
                let Opnd::Reg(r) = *r else { continue };
                for l in 0..32 {
                    let v = w.regs[r as usize * 32 + l];
                    let (g, t) = (l / 4, l % 4);
                    let row = g + 8 * (i & 1);
                    if spec.ta.bytes() == 2 {
                        for h in 0..2 {
                            let col = 2 * t + h + 8 * (i >> 1);
                            a[row * k + col] = sa * elem(spec.ta, (v >> (16 * h)) as u32 & 0xffff);
                        }
                    } else {
                        for h in 0..4 {
                            let col = 4 * t + h + 16 * (i >> 1);
                            a[row * k + col] = sa * elem(spec.ta, (v >> (8 * h)) as u32 & 0xff);
                        }
                    }
                }
            }
        }
        let mut b = vec![0f64; n * k];
        for (x, &o) in b.iter_mut().zip(&p.b_off) {
            *x = sb * read(&self.shared, o, spec.tb);
        }
        let Opnd::Vec(dr) = &ins.d[0] else {
            unreachable!()
        };
        let per = if spec.acc_f16 { 2 } else { 1 };
        for (ri, r) in dr.iter().enumerate() {
            let Opnd::Reg(r) = *r else { continue };
            let row = &mut w.regs[r as usize * 32..r as usize * 32 + 32];
            for (l, v) in row.iter_mut().enumerate() {
                let mut out = 0u64;
                for h in 0..per {
                    let i = ri * per + h;
                    let (m, c) = acc_pos(l, i);
                    let old = if spec.acc_f16 {
                        f16::from_bits((*v >> (16 * h)) as u16).to_f64()
                    } else {
                        f32::from_bits(*v as u32) as f64
                    };
                    // products exact in f64, summed over k in order, rounded once
                    let mut s = if p.scale_d { old } else { 0.0 };
                    let (ar, br) = (&a[m * k..m * k + k], &b[c * k..c * k + k]);
                    for kk in 0..k {
                        s += ar[kk] * br[kk];
                    }
                    if spec.acc_f16 {
                        out |= (f16::from_f64(s).to_bits() as u64) << (16 * h);
                    } else {
                        out = (s as f32).to_bits() as u64;
                    }
                }
                *v = out;
            }
        }
        Ok(())
    }

    /// A non-wgmma instruction of `w` that names a wgmma accumulator / A register while the
    /// warp has wgmmas outstanding: a hazard when the register belongs to one of them.
    #[cold]
    pub(super) fn wgmma_touch(&mut self, w: &Warp, ins: &Instr, exec: u32) -> R<()> {
        let mut regs = std::collections::HashSet::new();
        ins.d.iter().for_each(|o| collect_regs(o, &mut regs));
        let nd = regs.len();
        let mut sregs = std::collections::HashSet::new();
        ins.s.iter().for_each(|o| collect_regs(o, &mut sregs));
        if let Some((g, _)) = ins.guard {
            sregs.insert(g);
        }
        let locked = |r: &u32| {
            w.wg.locked
                .get(*r as usize / 64)
                .is_some_and(|x| x >> (r % 64) & 1 != 0)
        };
        let hit_w = regs.iter().find(|r| locked(r)).copied();
        let hit_r = sregs.iter().find(|r| locked(r)).copied();
        let _ = nd;
        let Some((r, what)) = hit_r.map(|r| (r, "reads")).or(hit_w.map(|r| (r, "writes"))) else {
            return Ok(());
        };
        let prog = self.c.prog;
        let p =
            w.wg.pending
                .iter()
                .find(|p| {
                    let i = &prog.instrs[p.pc as usize];
                    regs_of(&i.d[0]).contains(&r) || regs_of(&i.s[0]).contains(&r)
                })
                .map(|p| prog.instrs[p.pc as usize].line)
                .unwrap_or(0);
        Err(hz(
            exec.trailing_zeros(),
            format!(
                "{what} a register that is an accumulator or A fragment of the wgmma.mma_async at PTX line {p}, which has not completed: only a wgmma.wait_group that covers its commit group makes its registers accessible"
            ),
        ))
    }

    /// `stmatrix.sync.aligned.m8n8.xN[.trans].shared.b16 [p], {r..}`: the inverse of ldmatrix.
    fn stmatrix(&mut self, w: &mut Warp, ins: &Instr, num: usize, trans: bool) -> R<()> {
        let generic = matches!(ins.s[1], Opnd::Imm(x) if x == Space::Generic as u64);
        let addrs = self.addrs32(w, &ins.s[0]);
        let Opnd::Vec(src) = &ins.s[2] else {
            unreachable!()
        };
        // rows[m][r][c]
        let mut rows = [[[0u16; 8]; 8]; 4];
        for (m, sr) in src.iter().enumerate().take(num) {
            let mut tmp = [0u64; 32];
            let v = *src32(&w.regs, self.c.gsyms, w.clock, sr, &mut tmp);
            for (l, &v) in v.iter().enumerate() {
                let (g, t) = (l / 4, l % 4);
                let (x0, x1) = (v as u16, (v >> 16) as u16);
                if trans {
                    rows[m][2 * t][g] = x0;
                    rows[m][2 * t + 1][g] = x1;
                } else {
                    rows[m][g][2 * t] = x0;
                    rows[m][g][2 * t + 1] = x1;
                }
            }
        }
        for (m, mat) in rows.iter().enumerate().take(num) {
            for (r, row) in mat.iter().enumerate() {
                let l = m * 8 + r;
                let a = matrix_row_address(addrs[l], l, generic, "stmatrix")?;
                let mut buf = [0u8; 16];
                for c in 0..8 {
                    buf[2 * c..2 * c + 2].copy_from_slice(&row[c].to_le_bytes());
                }
                let off = self.shared_off(l, a, 16, false)?;
                if !self.shadow.is_empty() {
                    let tid = w.idx * 32 + l as u32;
                    self.shared_check(w, l, tid, off, 16, true, false, Some(&buf))?;
                }
                self.shared[off..off + 16].copy_from_slice(&buf);
            }
        }
        Ok(())
    }
}

/// Add the accumulator and A registers of wgmma `ins` to the locked bitset.
fn lock(locked: &mut Vec<u64>, ins: &Instr, nregs: usize) {
    if locked.len() < nregs.div_ceil(64) {
        locked.resize(nregs.div_ceil(64), 0);
    }
    let mut s = std::collections::HashSet::new();
    collect_regs(&ins.d[0], &mut s);
    collect_regs(&ins.s[0], &mut s);
    if let Op::Wgmma(spec) = &ins.op {
        if spec.a_desc {
            // the descriptor register is read at issue, not locked
            s.clear();
            collect_regs(&ins.d[0], &mut s);
        }
    }
    for r in s {
        locked[r as usize / 64] |= 1 << (r % 64);
    }
}

/// What a `wgmma.wait_group` does now ([`Block::wgmma_wait_ready`]).
pub(super) enum WgWait {
    /// Its wgmmas can execute: complete the wait.
    Ready,
    /// Another warp of the group still has to issue them: yield without advancing.
    Yield,
    /// That warp's lanes are parked on an mbarrier wait: park until a phase completes.
    Park,
}
