//! The whole-warp `ld`/`st` fast forms.

use super::*;
use crate::exec::memory::{lane_span, put_le_at, store_span};

/// Where the bytes of a fast `ld`/`st` live.
enum Region {
    /// Allocation index in global memory.
    Global(usize),
    Shared,
    Param,
}

impl<'a, 'b> Block<'a, 'b> {
    /// A fast `ld`/`st` (`FOp::Ld`/`FOp::St`) for the lanes of `exec`, when every lane's access is
    /// aligned and inside one region (one global allocation; the block's shared memory; the
    /// parameter buffer): no per-lane lookup, values straight from/to the register rows, lanes in
    /// order. Returns Ok(false) (nothing done) otherwise: the general path then runs the
    /// instruction, checks each lane and reports the first fault.
    ///
    /// Shared memory with shadow state (`PTX_EMU_CHECKS=full`): once every lane is known to be
    /// aligned and in bounds, the general path could only fault in the hazard check, so the
    /// lanes are hazard-checked here in the same order with the same arguments (a store checks
    /// and writes lane by lane, as the general path does; a load checks every lane before any
    /// register is written) and the first hazard is returned as the same fault.
    #[inline(always)]
    pub(in crate::exec) fn ldst_fast(&mut self, w: &mut Warp, f: &FOp, exec: u32) -> R<bool> {
        let (space, eb, n, base, off, store) = match *f {
            FOp::Ld {
                space,
                eb,
                n,
                base,
                off,
                ..
            } => (space, eb as usize, n as usize, base, off, false),
            FOp::St {
                space,
                eb,
                n,
                base,
                off,
                ..
            } => (space, eb as usize, n as usize, base, off, true),
            _ => return Ok(false),
        };
        let total = eb * n;
        if !total.is_power_of_two() {
            return Ok(false);
        }
        let mut addrs = [0u64; 32];
        match base {
            Src::R(r) => {
                let i = r as usize * 32;
                let row: &Row = w.regs[i..i + 32].try_into().unwrap();
                for l in 0..32 {
                    addrs[l] = row[l].wrapping_add(off);
                }
            }
            Src::I(v) => addrs = [v.wrapping_add(off); 32],
        }
        let (lo, hi, bits) = lane_span(&addrs, exec);
        if bits & (total as u64 - 1) != 0 || hi >= u64::MAX - 64 || lo > hi {
            return Ok(false);
        }
        let in_window = |start: u64| lo >= start && hi < start + WINDOW_SIZE;
        let (region, start) = match space {
            Space::Shared => (Region::Shared, 0),
            Space::Param => (Region::Param, 0),
            Space::Generic if in_window(SHARED_WINDOW) => (Region::Shared, SHARED_WINDOW),
            Space::Global | Space::Const => (Region::Global(0), 0),
            Space::Generic if hi < GLOBAL_LIMIT => (Region::Global(0), 0),
            _ => return Ok(false),
        };
        let end = hi - start + total as u64;
        let region = match region {
            Region::Shared => {
                if end > self.shared.len() as u64 {
                    return Ok(false);
                }
                Region::Shared
            }
            Region::Param => {
                if store || end > self.c.params.len() as u64 {
                    return Ok(false);
                }
                Region::Param
            }
            Region::Global(_) => {
                let len = (hi - lo) as usize + total;
                let i = match &self.mem {
                    GMem::Seq(m) => m.find(lo, len),
                    GMem::Par(m, ov) => {
                        let i = m.find_from(lo, len, ov.hint.get());
                        if let Some(i) = i {
                            ov.hint.set(i);
                        }
                        if !store && ov.may_hold(lo, len) {
                            return Ok(false);
                        }
                        i
                    }
                };
                match i {
                    Some(i) => Region::Global(i),
                    None => return Ok(false),
                }
            }
        };
        let checked = matches!(region, Region::Shared) && !self.shadow.is_empty();
        if let FOp::Ld { sign, d, .. } = *f {
            if checked {
                for l in lanes(exec) {
                    let off = (addrs[l] - start) as usize;
                    self.shared_check(w, l, w.idx * 32 + l as u32, off, total, false, false, None)?;
                }
            }
            let (data, start) = match region {
                Region::Shared => (&self.shared[..], start),
                Region::Param => (self.c.params, start),
                Region::Global(i) => {
                    let (s, d) = self.mem.base().alloc_bytes(i);
                    (d, s)
                }
            };
            for (k, &dr) in d.iter().enumerate().take(n) {
                if dr == u32::MAX {
                    continue;
                }
                let i = dr as usize * 32;
                let row: &mut Row = (&mut w.regs[i..i + 32]).try_into().unwrap();
                for l in lanes(exec) {
                    let o = (addrs[l] - start) as usize + k * eb;
                    let v = le_at(data, o, eb);
                    row[l] = if sign {
                        sext(v, eb as u32 * 8) as u64
                    } else {
                        v
                    };
                }
            }
            return Ok(true);
        }
        let FOp::St { v, .. } = *f else {
            return Ok(false);
        };
        static ZERO: Row = [0; 32];
        let mut rows: [&Row; 4] = [&ZERO; 4];
        let mut imm = [0u64; 4];
        let mut is_imm = [false; 4];
        for (k, s) in v.iter().enumerate().take(n) {
            match *s {
                Src::R(r) => {
                    let i = r as usize * 32;
                    rows[k] = w.regs[i..i + 32].try_into().unwrap();
                }
                Src::I(x) => {
                    imm[k] = x;
                    is_imm[k] = true;
                }
            }
        }
        let val = |k: usize, l: usize| if is_imm[k] { imm[k] } else { rows[k][l] };
        match region {
            Region::Shared if checked => {
                for l in lanes(exec) {
                    let o = (addrs[l] - start) as usize;
                    let mut buf = [0u8; 32];
                    for k in 0..n {
                        put_le_at(&mut buf, k * eb, val(k, l), eb);
                    }
                    let data = &buf[..total];
                    self.shared_check(
                        w,
                        l,
                        w.idx * 32 + l as u32,
                        o,
                        total,
                        true,
                        false,
                        Some(data),
                    )?;
                    self.shared[o..o + total].copy_from_slice(data);
                }
            }
            Region::Shared => {
                for l in lanes(exec) {
                    let o = (addrs[l] - start) as usize;
                    for k in 0..n {
                        put_le_at(&mut self.shared, o + k * eb, val(k, l), eb);
                    }
                }
            }
            Region::Param => return Ok(false),
            Region::Global(i) => store_span(&mut self.mem, i, &addrs, exec, total, (n, eb), val),
        }
        Ok(true)
    }
}

/// The `eb`-byte (1, 2, 4 or 8) little-endian value at `data[o..]`.
#[inline(always)]
fn le_at(data: &[u8], o: usize, eb: usize) -> u64 {
    match eb {
        1 => data[o] as u64,
        2 => u16::from_le_bytes([data[o], data[o + 1]]) as u64,
        4 => u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) as u64,
        _ => u64::from_le_bytes(data[o..o + 8].try_into().unwrap()),
    }
}
