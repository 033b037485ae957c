//! Loads and stores per space (global, shared, local, param, generic), bounds and alignment
//! checks, cp.async landing.

use super::*;
use std::ops::Range;

/// A `len`-byte access at `addr` must be `len`-byte aligned.
#[inline(always)]
fn aligned(lane: usize, addr: u64, len: usize) -> R<()> {
    if addr.is_multiple_of(len as u64) {
        Ok(())
    } else {
        Err(e(
            FaultKind::Misaligned,
            lane as u32,
            Some(addr),
            format!("{len}-byte access must be {len}-byte aligned"),
        ))
    }
}

/// The fault of `lane`'s `space` access `[a, end)` past the end of its `region` (`addr`: the
/// address the fault names).
#[cold]
fn outside(
    lane: usize,
    addr: u64,
    space: &str,
    Range { start: a, end }: Range<u64>,
    region: std::fmt::Arguments<'_>,
) -> Err1 {
    e(
        FaultKind::OutOfBounds,
        lane as u32,
        Some(addr),
        format!("{space} access [{a}, {end}) outside the {region}"),
    )
}

impl<'a, 'b> Block<'a, 'b> {
    /// Data of a finished cp.async lands in shared memory (a write by the issuing thread now).
    pub(super) fn land(&mut self, w: &mut Warp, p: Pending) -> R<()> {
        let off = p.dst as usize;
        if !self.shadow.is_empty() {
            for i in (0..p.len as usize).step_by(4) {
                self.shadow[(off + i) / 4].pending -= 1;
            }
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

    /// The fault of `lane`'s global access [addr, addr + len) outside every live allocation.
    #[cold]
    fn oob(&self, lane: usize, addr: u64, len: usize) -> Err1 {
        e(
            FaultKind::OutOfBounds,
            lane as u32,
            Some(addr),
            self.mem.base().describe(addr, len),
        )
    }

    pub(super) fn global_read(&self, lane: usize, addr: u64, out: &mut [u8]) -> R<()> {
        if self.mem.read(addr, out) {
            Ok(())
        } else {
            Err(self.oob(lane, addr, out.len()))
        }
    }

    pub(super) fn global_write(&mut self, lane: usize, addr: u64, data: &[u8]) -> R<()> {
        if self.mem.write(addr, data) {
            Ok(())
        } else {
            Err(self.oob(lane, addr, data.len()))
        }
    }

    /// [`Self::resolve`] of `lane`'s `len`-byte access at `addr`, which must be `len`-byte aligned.
    #[inline(always)]
    fn resolve_aligned(&self, lane: usize, space: Space, addr: u64, len: usize) -> R<(Space, u64)> {
        aligned(lane, addr, len)?;
        Ok(self.resolve(space, addr))
    }

    pub(super) fn resolve(&self, space: Space, addr: u64) -> (Space, u64) {
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

    pub(super) fn read(
        &mut self,
        w: &mut Warp,
        lane: usize,
        space: Space,
        addr: u64,
        out: &mut [u8],
        atomic: bool,
    ) -> R<()> {
        let (sp, a) = self.resolve_aligned(lane, space, addr, out.len())?;
        match sp {
            Space::Global => self.global_read(lane, a, out),
            Space::Shared => self.shared_read(w, lane, a, out, atomic),
            Space::Local => {
                out.copy_from_slice(&w.local[self.local_range(lane, addr, a, out.len())?]);
                Ok(())
            }
            Space::Param => {
                let (ps, end) = (self.c.params.len() as u64, a + out.len() as u64);
                if end > ps {
                    let region = format_args!("{ps}-byte parameter buffer");
                    return Err(outside(lane, addr, "param", a..end, region));
                }
                out.copy_from_slice(&self.c.params[a as usize..end as usize]);
                Ok(())
            }
            _ => unreachable!(),
        }
    }

    pub(super) fn write(
        &mut self,
        w: &mut Warp,
        lane: usize,
        space: Space,
        addr: u64,
        data: &[u8],
        atomic: bool,
    ) -> R<()> {
        let len = data.len();
        let (sp, a) = self.resolve_aligned(lane, space, addr, len)?;
        match sp {
            Space::Global => self.global_write(lane, a, data),
            Space::Shared => {
                let off = self.shared_access(w, lane, a, len, atomic, Some(data))?;
                self.shared[off..off + len].copy_from_slice(data);
                Ok(())
            }
            Space::Local => {
                w.local[self.local_range(lane, addr, a, len)?].copy_from_slice(data);
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

    pub(super) fn shared_off(&self, lane: usize, a: u64, len: usize, align: bool) -> R<usize> {
        if align && !a.is_multiple_of(len as u64) {
            return Err(e(
                FaultKind::Misaligned,
                lane as u32,
                Some(a),
                format!("{len}-byte shared access must be {len}-byte aligned"),
            ));
        }
        let end = a + len as u64;
        if end > self.shared.len() as u64 {
            let region = format_args!(
                "block's {} bytes of shared memory ({} static + {} dynamic)",
                self.shared.len(),
                self.c.prog.static_shared,
                self.c.cfg.dynamic_smem_bytes
            );
            return Err(outside(lane, a, "shared", a..end, region));
        }
        Ok(a as usize)
    }

    pub(super) fn shared_read(
        &mut self,
        w: &mut Warp,
        lane: usize,
        a: u64,
        out: &mut [u8],
        atomic: bool,
    ) -> R<()> {
        let len = out.len();
        let off = self.shared_access(w, lane, a, len, atomic, None)?;
        out.copy_from_slice(&self.shared[off..off + len]);
        Ok(())
    }

    /// The offset of `lane`'s shared access [a, a + len), bounds- and hazard-checked (a write
    /// when it carries `data`).
    #[inline(always)]
    pub(super) fn shared_access(
        &mut self,
        w: &Warp,
        lane: usize,
        a: u64,
        len: usize,
        atomic: bool,
        data: Option<&[u8]>,
    ) -> R<usize> {
        let off = self.shared_off(lane, a, len, false)?;
        let tid = w.idx * 32 + lane as u32;
        self.shared_check(w, lane, tid, off, len, data.is_some(), atomic, data)?;
        Ok(off)
    }

    /// The bytes in the warp's local frames of `lane`'s local access [a, a + len) (`addr`: the
    /// address as the instruction gave it).
    #[inline(always)]
    fn local_range(&self, lane: usize, addr: u64, a: u64, len: usize) -> R<Range<usize>> {
        let (ls, end) = (self.c.prog.local_size as u64, a + len as u64);
        if end > ls {
            let region = format_args!("{ls}-byte local frame");
            return Err(outside(lane, addr, "local", a..end, region));
        }
        let o = lane * ls as usize + a as usize;
        Ok(o..o + len)
    }

    /// The 32 lane addresses of an address operand.
    #[inline(always)]
    pub(super) fn addrs32(&self, w: &Warp, o: &Opnd) -> [u64; 32] {
        match o {
            Opnd::Addr(Base::Reg(r), off) => {
                let i = *r as usize * 32;
                let row: &[u64; 32] = w.regs[i..i + 32].try_into().unwrap();
                let mut a = [0u64; 32];
                for l in 0..32 {
                    a[l] = row[l].wrapping_add(*off as u64);
                }
                a
            }
            o => [self.addr(w, o, 0); 32],
        }
    }

    /// `ld` of up to four elements of at most 8 bytes for the lanes of `exec`: one lookup per
    /// lane, results written back register row by register row. A uniform param address is read
    /// once.
    pub(super) fn ld_warp(&mut self, w: &mut Warp, ins: &Instr, exec: u32) -> R<()> {
        let (space, ty, n, eb, total) = mem_shape(ins);
        let sign = ty.signed();
        let addrs = self.addrs32(w, &ins.s[0]);
        let mut vals = [[0u64; 32]; 4];
        let uniform = space == Space::Param && !matches!(ins.s[0], Opnd::Addr(Base::Reg(_), _));
        let decode = |buf: &[u8], i: usize| widen(get_le(&buf[i * eb..], eb), eb, sign);
        if uniform {
            let l = exec.trailing_zeros() as usize;
            let mut buf = [0u8; 32];
            self.read(w, l, space, addrs[l], &mut buf[..total], false)?;
            for (i, v) in vals.iter_mut().enumerate().take(n) {
                *v = [decode(&buf, i); 32];
            }
        } else if let Some(i) = self.global_span(space, &addrs, exec, total, false) {
            // every lane inside one allocation, aligned, not written by this block's overlay
            let (start, data) = self.mem.base().alloc_bytes(i);
            for l in lanes(exec) {
                let o = (addrs[l] - start) as usize;
                for (k, v) in vals.iter_mut().enumerate().take(n) {
                    v[l] = decode(&data[o..], k);
                }
            }
        } else {
            for l in lanes(exec) {
                let a = addrs[l];
                if n == 1
                    && (space == Space::Global || (space == Space::Generic && a < GLOBAL_LIMIT))
                {
                    aligned(l, a, eb)?;
                    let Some(v) = self.mem.read_le(a, eb) else {
                        return Err(self.oob(l, a, eb));
                    };
                    vals[0][l] = widen(v, eb, sign);
                    continue;
                }
                if let Some(sa) = shared_addr(space, a) {
                    aligned(l, a, total)?;
                    let off = self.shared_access(w, l, sa, total, false, None)?;
                    for (i, v) in vals.iter_mut().enumerate().take(n) {
                        v[l] = decode(&self.shared[off..], i);
                    }
                    continue;
                }
                let mut buf = [0u8; 32];
                self.read(w, l, space, a, &mut buf[..total], false)?;
                for (i, v) in vals.iter_mut().enumerate().take(n) {
                    v[l] = decode(&buf, i);
                }
            }
        }
        match &ins.d[0] {
            Opnd::Vec(parts) => {
                for (p, v) in parts.iter().zip(&vals) {
                    if let Opnd::Reg(r) = *p {
                        store32(&mut w.regs, r, v, exec);
                    }
                }
            }
            Opnd::Reg(r) => store32(&mut w.regs, *r, &vals[0], exec),
            _ => {}
        }
        Ok(())
    }

    /// `st` of up to four elements of at most 8 bytes for the lanes of `exec`, lane by lane in
    /// order (a fault stops at the first faulting lane, as before).
    pub(super) fn st_warp(&mut self, w: &mut Warp, ins: &Instr, exec: u32) -> R<()> {
        let (space, _, n, eb, total) = mem_shape(ins);
        let addrs = self.addrs32(w, &ins.s[0]);
        let (g, clk) = (self.c.gsyms, w.clock);
        let mut vals = [[0u64; 32]; 4];
        match &ins.s[1] {
            Opnd::Vec(parts) => {
                for (v, p) in vals.iter_mut().zip(parts.iter()) {
                    let mut t = [0u64; 32];
                    *v = *src32(&w.regs, g, clk, p, &mut t);
                }
            }
            s => {
                let mut t = [0u64; 32];
                vals[0] = *src32(&w.regs, g, clk, s, &mut t);
            }
        }
        if let Some(i) = self.global_span(space, &addrs, exec, total, true) {
            // every lane inside one allocation and aligned: no per-lane lookup, lanes in order
            store_span(&mut self.mem, i, &addrs, exec, total, (n, eb), |k, l| {
                vals[k][l]
            });
            return Ok(());
        }
        for l in lanes(exec) {
            let a = addrs[l];
            if n == 1 && (space == Space::Global || (space == Space::Generic && a < GLOBAL_LIMIT)) {
                aligned(l, a, eb)?;
                if !self.mem.write_le(a, vals[0][l], eb) {
                    return Err(self.oob(l, a, eb));
                }
                continue;
            }
            let mut buf = [0u8; 32];
            for (i, v) in vals.iter().enumerate().take(n) {
                put_le_at(&mut buf, i * eb, v[l], eb);
            }
            if let Some(sa) = shared_addr(space, a) {
                aligned(l, a, total)?;
                let off = self.shared_access(w, l, sa, total, false, Some(&buf[..total]))?;
                self.shared[off..off + total].copy_from_slice(&buf[..total]);
                continue;
            }
            self.write(w, l, space, a, &buf[..total], false)?;
        }
        Ok(())
    }

    /// `ld` of any element size and count (past [`Self::ld_warp`]'s): lane by lane through a byte
    /// buffer, elements wider than 8 bytes keep their low 8 bytes in the register.
    pub(super) fn ld_wide(&mut self, w: &mut Warp, ins: &Instr, exec: u32) -> R<()> {
        let (space, ty, _, eb, total) = mem_shape(ins);
        let sign = ty.signed();
        for l in lanes(exec) {
            let a = self.addr(w, &ins.s[0], l);
            let mut buf = [0u8; 64];
            self.read(w, l, space, a, &mut buf[..total], false)?;
            let get = |i: usize| widen(get_le(&buf[i * eb..], eb), eb, sign);
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
        Ok(())
    }

    /// `st` of any element size and count (past [`Self::st_warp`]'s), lane by lane through a
    /// byte buffer.
    pub(super) fn st_wide(&mut self, w: &mut Warp, ins: &Instr, exec: u32) -> R<()> {
        let (space, _, _, eb, total) = mem_shape(ins);
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
            self.write(w, l, space, a, &buf[..total], false)?;
        }
        Ok(())
    }
}

impl<'a, 'b> Block<'a, 'b> {
    /// The allocation that holds the `total`-byte global accesses at `addrs` of every lane of
    /// `exec` when they are all aligned and inside that one allocation (and, for reads, none of
    /// them may be patched by this block's overlay); None otherwise (the caller then goes lane by
    /// lane, which also finds the first faulting lane).
    #[inline(always)]
    fn global_span(
        &self,
        space: Space,
        addrs: &[u64; 32],
        exec: u32,
        total: usize,
        write: bool,
    ) -> Option<usize> {
        if !matches!(space, Space::Global | Space::Const | Space::Generic)
            || exec == 0
            || !total.is_power_of_two()
        {
            return None;
        }
        let (lo, hi, bits) = lane_span(addrs, exec);
        if bits & (total as u64 - 1) != 0 || (space == Space::Generic && hi >= GLOBAL_LIMIT) {
            return None;
        }
        let len = (hi - lo) as usize + total;
        match &self.mem {
            GMem::Seq(m) => m.find(lo, len),
            GMem::Par(m, ov) => {
                let i = m.find_from(lo, len, ov.hint.get())?;
                ov.hint.set(i);
                if !write && ov.may_hold(lo, len) {
                    return None;
                }
                Some(i)
            }
        }
    }
}

/// Space, element type, element count, element bytes and bytes per lane of an `ld`/`st`.
#[inline(always)]
fn mem_shape(ins: &Instr) -> (Space, Ty, usize, usize, usize) {
    match ins.op {
        Op::Ld { space, ty, n } | Op::St { space, ty, n } => {
            let eb = ty.bytes();
            (space, ty, n as usize, eb, eb * n as usize)
        }
        _ => unreachable!("ld/st only"),
    }
}

/// The lowest and highest address of the lanes of `exec`, and the OR of their addresses (for
/// one alignment test of them all); branch-free.
#[inline(always)]
pub(super) fn lane_span(addrs: &[u64; 32], exec: u32) -> (u64, u64, u64) {
    let (mut lo, mut hi, mut bits) = (u64::MAX, 0u64, 0u64);
    for (l, &a) in addrs.iter().enumerate() {
        let on = (exec >> l) & 1 != 0;
        lo = if on { lo.min(a) } else { lo };
        hi = if on { hi.max(a) } else { hi };
        bits |= if on { a } else { 0 };
    }
    (lo, hi, bits)
}

/// The shared-memory offset of an access in `space` at `a` (a `.shared` address, or a generic
/// one in the shared window); None for other spaces.
#[inline(always)]
fn shared_addr(space: Space, a: u64) -> Option<u64> {
    match space {
        Space::Shared => Some(a),
        Space::Generic if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&a) => {
            Some(a - SHARED_WINDOW)
        }
        _ => None,
    }
}

/// An `eb`-byte loaded value `v` as its 64-bit register value: sign-extended for signed types.
#[inline(always)]
fn widen(v: u64, eb: usize, sign: bool) -> u64 {
    if sign {
        sext(v, eb as u32 * 8) as u64
    } else {
        v
    }
}

/// The `eb`-byte little-endian value at the start of `b` (eb ≤ 8; wider: its low 8 bytes).
#[inline(always)]
fn get_le(b: &[u8], eb: usize) -> u64 {
    match eb {
        1 => b[0] as u64,
        2 => u16::from_le_bytes([b[0], b[1]]) as u64,
        4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64,
        _ => u64::from_le_bytes(b[..8].try_into().unwrap()),
    }
}

/// Store the low `eb` (1, 2, 4 or 8) bytes of `v` little-endian at `data[o..]`.
#[inline(always)]
pub(super) fn put_le_at(data: &mut [u8], o: usize, v: u64, eb: usize) {
    match eb {
        1 => data[o] = v as u8,
        2 => data[o..o + 2].copy_from_slice(&(v as u16).to_le_bytes()),
        4 => data[o..o + 4].copy_from_slice(&(v as u32).to_le_bytes()),
        _ => data[o..o + 8].copy_from_slice(&v.to_le_bytes()),
    }
}

/// Store `n` elements of `eb` bytes per lane of `exec` (element k of lane l is `val(k, l)`) at
/// `addrs[l]` in global allocation `i`, lanes in order, journaled where the memory journals.
/// The caller has checked (`global_span`) that every lane's `total` bytes lie inside allocation
/// `i`, aligned. Used by `st_warp` and the decoded fast path alike.
#[inline(always)]
pub(super) fn store_span(
    mem: &mut GMem,
    i: usize,
    addrs: &[u64; 32],
    exec: u32,
    total: usize,
    (n, eb): (usize, usize),
    val: impl Fn(usize, usize) -> u64,
) {
    match mem {
        GMem::Seq(m) => {
            let journal = m.journaling();
            for l in lanes(exec) {
                let a = addrs[l];
                if journal {
                    m.journal(i, a, total);
                }
                let (start, data) = m.alloc_bytes_mut(i);
                let o = (a - start) as usize;
                for k in 0..n {
                    put_le_at(data, o + k * eb, val(k, l), eb);
                }
            }
        }
        GMem::Par(_, ov) => {
            for l in lanes(exec) {
                let mut buf = [0u8; 32];
                for k in 0..n {
                    put_le_at(&mut buf, k * eb, val(k, l), eb);
                }
                ov.write(addrs[l], &buf[..total]);
            }
        }
    }
}
