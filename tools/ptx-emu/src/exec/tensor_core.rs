//! `ldmatrix` and `mma.sync`: fragment layouts of the ISA tables.

use super::*;

impl<'a, 'b> Block<'a, 'b> {
    pub(super) fn ldmatrix(&mut self, w: &mut Warp, ins: &Instr, num: usize, trans: bool) -> R<()> {
        // rows[m][r][c]: matrix m, row r (from lane 8m+r), 8 b16 columns
        let mut rows = [[[0u16; 8]; 8]; 4];
        let generic = matches!(ins.s[1], Opnd::Imm(x) if x == Space::Generic as u64);
        let addrs = self.addrs32(w, &ins.s[0]);
        for (m, mat) in rows.iter_mut().enumerate().take(num) {
            for (r, row) in mat.iter_mut().enumerate() {
                let l = m * 8 + r;
                let mut a = addrs[l];
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
        for (m, dm) in d.iter().enumerate().take(num) {
            let Opnd::Reg(dr) = *dm else { continue };
            let mut v = [0u64; 32];
            for (l, v) in v.iter_mut().enumerate() {
                let (g, t) = (l / 4, l % 4);
                let (x0, x1) = if trans {
                    (rows[m][2 * t][g], rows[m][2 * t + 1][g])
                } else {
                    (rows[m][g][2 * t], rows[m][g][2 * t + 1])
                };
                *v = x0 as u64 | ((x1 as u64) << 16);
            }
            store32(&mut w.regs, dr, &v, u32::MAX);
        }
        Ok(())
    }

    pub(super) fn mma(&mut self, w: &mut Warp, ins: &Instr, k: usize, ab: Ty) {
        let bf = ab == Ty::BF16;
        let mut a = [[0f64; 16]; 16];
        let mut b = [[0f64; 8]; 16];
        let mut c = [[0f64; 8]; 16];
        let (Opnd::Vec(da), Opnd::Vec(db), Opnd::Vec(dc), Opnd::Vec(dd)) =
            (&ins.s[0], &ins.s[1], &ins.s[2], &ins.d[0])
        else {
            unreachable!()
        };
        let to_f64 = |h: u64| -> f64 {
            if bf {
                // bf16 is the top half of an f32: exact widening
                f32::from_bits((h as u32) << 16) as f64
            } else {
                f16::from_bits(h as u16).to_f64()
            }
        };
        let (g, clk) = (self.c.gsyms, w.clock);
        let mut tmp = [0u64; 32];
        for (ri, r) in da.iter().enumerate() {
            let v = src32(&w.regs, g, clk, r, &mut tmp);
            for (l, &v) in v.iter().enumerate() {
                let (gr, t) = (l / 4, l % 4);
                for h in 0..2 {
                    let (row, col) = mma_a_pos(k, gr, t, ri * 2 + h);
                    a[row][col] = to_f64((v >> (16 * h)) & 0xffff);
                }
            }
        }
        for (ri, r) in db.iter().enumerate() {
            let v = src32(&w.regs, g, clk, r, &mut tmp);
            for (l, &v) in v.iter().enumerate() {
                let (gr, t) = (l / 4, l % 4);
                for h in 0..2 {
                    let (row, col) = mma_b_pos(k, gr, t, ri * 2 + h);
                    b[row][col] = to_f64((v >> (16 * h)) & 0xffff);
                }
            }
        }
        for (i, r) in dc.iter().enumerate() {
            let v = src32(&w.regs, g, clk, r, &mut tmp);
            for (l, &v) in v.iter().enumerate() {
                let (row, col) = mma_c_pos(l / 4, l % 4, i);
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
        for (i, r) in dd.iter().enumerate() {
            if let Opnd::Reg(r) = *r {
                let mut v = [0u64; 32];
                for (l, v) in v.iter_mut().enumerate() {
                    let (row, col) = mma_c_pos(l / 4, l % 4, i);
                    *v = out[row][col] as u64;
                }
                store32(&mut w.regs, r, &v, u32::MAX);
            }
        }
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
