//! `ldmatrix` and `mma.sync`: fragment layouts of the ISA tables.

use super::*;

/// The shared-memory offset of one 16-byte row of an `ldmatrix` / `stmatrix` matrix, given by
/// lane `l` (a generic address must lie in the shared window; rows are 16-byte aligned).
pub(super) fn matrix_row_address(addr: u64, l: usize, generic: bool, what: &str) -> R<u64> {
    let mut a = addr;
    if generic {
        if !(SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&a) {
            return Err(e(
                FaultKind::OutOfBounds,
                l as u32,
                Some(a),
                format!("{what} generic address is not in the shared window"),
            ));
        }
        a -= SHARED_WINDOW;
    }
    if !a.is_multiple_of(16) {
        return Err(e(
            FaultKind::Misaligned,
            l as u32,
            Some(a),
            format!("{what} row address must be 16-byte aligned"),
        ));
    }
    Ok(a)
}

impl<'a, 'b> Block<'a, 'b> {
    pub(super) fn ldmatrix(&mut self, w: &mut Warp, ins: &Instr, num: usize, trans: bool) -> R<()> {
        // rows[m][r]: the 16 bytes (8 b16 columns) of matrix m, row r (from lane 8m+r)
        let mut rows = [[[0u8; 16]; 8]; 4];
        let generic = matches!(ins.s[1], Opnd::Imm(x) if x == Space::Generic as u64);
        let addrs = self.addrs32(w, &ins.s[0]);
        for (m, mat) in rows.iter_mut().enumerate().take(num) {
            for (r, row) in mat.iter_mut().enumerate() {
                let l = m * 8 + r;
                let a = matrix_row_address(addrs[l], l, generic, "ldmatrix")?;
                // `shared_read` with a fixed-size copy
                let off = self.shared_off(l, a, 16, false)?;
                if !self.shadow.is_empty() {
                    let tid = w.idx * 32 + l as u32;
                    self.shared_check(w, l, tid, off, 16, false, false, None)?;
                }
                *row = self.shared[off..off + 16].try_into().unwrap();
            }
        }
        let Opnd::Vec(d) = &ins.d[0] else {
            unreachable!()
        };
        let b16 =
            |row: &[u8; 16], c: usize| u16::from_le_bytes([row[2 * c], row[2 * c + 1]]) as u64;
        for (m, dm) in d.iter().enumerate().take(num) {
            let Opnd::Reg(dr) = *dm else { continue };
            // every lane takes part (.aligned): straight into the destination row
            let i = dr as usize * 32;
            let row: &mut [u64; 32] = (&mut w.regs[i..i + 32]).try_into().unwrap();
            let mat = &rows[m];
            for (l, v) in row.iter_mut().enumerate() {
                let (g, t) = (l / 4, l % 4);
                *v = if trans {
                    b16(&mat[2 * t], g) | (b16(&mat[2 * t + 1], g) << 16)
                } else {
                    // columns 2t, 2t + 1 of row g: bytes 4t..4t + 4
                    u32::from_le_bytes(mat[g][4 * t..4 * t + 4].try_into().unwrap()) as u64
                };
            }
        }
        Ok(())
    }

    /// `mma.sync`; on x86-64 with AVX2 and FMA a copy compiled for those extensions (the same
    /// operations: exact widenings, then the k-sum of [`ksum`]).
    pub(super) fn mma(&mut self, w: &mut Warp, ins: &Instr, k: usize, ab: Ty) {
        #[cfg(target_arch = "x86_64")]
        {
            if super::dispatch::simd_ok() {
                // SAFETY: the CPU has the features `mma_simd` is compiled for (checked).
                unsafe { self.mma_simd(w, ins, k, ab) };
                return;
            }
        }
        self.mma_body(w, ins, k, ab);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
    unsafe fn mma_simd(&mut self, w: &mut Warp, ins: &Instr, k: usize, ab: Ty) {
        self.mma_body(w, ins, k, ab);
    }

    #[inline(always)]
    fn mma_body(&mut self, w: &mut Warp, ins: &Instr, k: usize, ab: Ty) {
        // a: 16 × k (row-major, stride 16), b: k × 8, c/d: 16 × 8, as f64 (bf16/f16 → f32 → f64
        // are exact). An A/B register row holds 8 groups of 4 lanes; the 8 halves of group g
        // (lane order, low half first) are 8 consecutive elements of one row of A (one column of
        // B), so each row is widened in one straight loop and placed block by block (the ISA's
        // fragment layout, `mma_a_pos`/`mma_b_pos`/`mma_c_pos`; `tests::mma_placement_matches_layout`
        // checks the placement against them).
        let (Opnd::Vec(da), Opnd::Vec(db), Opnd::Vec(dc), Opnd::Vec(dd)) =
            (&ins.s[0], &ins.s[1], &ins.s[2], &ins.d[0])
        else {
            unreachable!()
        };
        let bf = ab == Ty::BF16;
        let k16 = k == 16;
        let (g, clk) = (self.c.gsyms, w.clock);
        let mut tmp = [0u64; 32];
        let mut a = [0f64; 256];
        let mut b = [0f64; 128];
        let mut c = [0f64; 128];
        for (ri, r) in da.iter().enumerate().take(if k16 { 4 } else { 2 }) {
            let v = widen_halves(src32(&w.regs, g, clk, r, &mut tmp), bf);
            let (row0, col0) = mma_a_block(k16, ri);
            for gi in 0..8 {
                let o = (row0 + gi) * 16 + col0;
                a[o..o + 8].copy_from_slice(&v[8 * gi..8 * gi + 8]);
            }
        }
        for (ri, r) in db.iter().enumerate().take(if k16 { 2 } else { 1 }) {
            let v = widen_halves(src32(&w.regs, g, clk, r, &mut tmp), bf);
            for gi in 0..8 {
                for j in 0..8 {
                    b[(8 * ri + j) * 8 + gi] = v[8 * gi + j];
                }
            }
        }
        for (i, r) in dc.iter().enumerate().take(4) {
            let v = src32(&w.regs, g, clk, r, &mut tmp);
            for (l, &v) in v.iter().enumerate() {
                c[mma_c_index(i, l)] = f32::from_bits(v as u32) as f64;
            }
        }
        // D = A·B + C: products are exact in f64, the sum runs over k in order in f64 and is
        // rounded once to f32 (see docs/emulator.md for the error model).
        ksum(&a, &b, &mut c, k);
        for (i, r) in dd.iter().enumerate().take(4) {
            if let Opnd::Reg(r) = *r {
                let mut v = [0u64; 32];
                for (l, v) in v.iter_mut().enumerate() {
                    *v = (c[mma_c_index(i, l)] as f32).to_bits() as u64;
                }
                store32(&mut w.regs, r, &v, u32::MAX);
            }
        }
    }
}

/// The 64 halves of an `mma` A/B register row as f64, lane by lane, low half first (bf16 or f16;
/// both widen exactly).
#[inline(always)]
fn widen_halves(v: &[u64; 32], bf: bool) -> [f64; 64] {
    let mut o = [0f64; 64];
    if bf {
        // bf16 is the top half of an f32
        for (l, &x) in v.iter().enumerate() {
            o[2 * l] = f32::from_bits((x as u32) << 16) as f64;
            o[2 * l + 1] = f32::from_bits((x as u32) & 0xffff_0000) as f64;
        }
    } else {
        for (l, &x) in v.iter().enumerate() {
            o[2 * l] = f16::from_bits(x as u16).to_f32() as f64;
            o[2 * l + 1] = f16::from_bits((x >> 16) as u16).to_f32() as f64;
        }
    }
    o
}

/// Where the 8 × 8 block of A register `ri` starts (row, column) in the row-major A: group g of
/// the register's lanes fills row `row + g`, columns `col..col + 8`.
#[inline(always)]
fn mma_a_block(k16: bool, ri: usize) -> (usize, usize) {
    if k16 {
        (8 * (ri & 1), 8 * (ri >> 1))
    } else {
        (8 * ri, 0)
    }
}

/// Where lane `l` of accumulator register `i` sits in the row-major 16 × 8 C/D matrix.
#[inline(always)]
fn mma_c_index(i: usize, l: usize) -> usize {
    (8 * (i >> 1) + l / 4) * 8 + 2 * (l % 4) + (i & 1)
}

/// `c[m][n] += a[m][kk] · b[kk][n]` for kk = 0, 1, ... in order, in f64. Every product of two
/// f16/bf16 values is exact in f64 (at most 22 significant bits), so a fused multiply-add rounds
/// exactly like the separate multiply and add: the AVX2+FMA copy gives the same bits as the
/// portable one.
fn ksum(a: &[f64; 256], b: &[f64; 128], c: &mut [f64; 128], k: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::dispatch::simd_ok() {
            // SAFETY: the CPU supports AVX2 and FMA (checked by `simd_ok`).
            unsafe { ksum_fma(a, b, c, k) };
            return;
        }
    }
    ksum_body::<false, 2>(a, b, c, k);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn ksum_fma(a: &[f64; 256], b: &[f64; 128], c: &mut [f64; 128], k: usize) {
    ksum_body::<true, 4>(a, b, c, k);
}

/// Rows are done `MB` at a time so that `MB` independent accumulation chains overlap (each
/// element's sum still runs over k in order).
#[inline(always)]
fn ksum_body<const FMA: bool, const MB: usize>(
    a: &[f64; 256],
    b: &[f64; 128],
    c: &mut [f64; 128],
    k: usize,
) {
    let k = k.min(16);
    for m0 in (0..16).step_by(MB) {
        let mut acc = [[0f64; 8]; MB];
        for (mm, acc) in acc.iter_mut().enumerate() {
            acc.copy_from_slice(&c[(m0 + mm) * 8..(m0 + mm) * 8 + 8]);
        }
        for kk in 0..k {
            let bk: &[f64; 8] = b[kk * 8..kk * 8 + 8].try_into().unwrap();
            for (mm, acc) in acc.iter_mut().enumerate() {
                let am = a[(m0 + mm) * 16 + kk];
                for n in 0..8 {
                    acc[n] = if FMA {
                        am.mul_add(bk[n], acc[n])
                    } else {
                        acc[n] + am * bk[n]
                    };
                }
            }
        }
        for (mm, acc) in acc.iter().enumerate() {
            c[(m0 + mm) * 8..(m0 + mm) * 8 + 8].copy_from_slice(acc);
        }
    }
}

/// The ISA's fragment layouts (the reference `tests::mma_placement_matches_layout` checks the
/// block placement of `mma_body` against): (row, column) of element `i` of lane `4g + t`.
#[cfg(test)]
const fn mma_a_pos(k: usize, g: usize, t: usize, i: usize) -> (usize, usize) {
    if k == 16 {
        (g + 8 * ((i >> 1) & 1), t * 2 + (i & 1) + 8 * (i >> 2))
    } else {
        (g + 8 * (i >> 1), t * 2 + (i & 1))
    }
}
#[cfg(test)]
const fn mma_b_pos(k: usize, g: usize, t: usize, i: usize) -> (usize, usize) {
    if k == 16 {
        (t * 2 + (i & 1) + 8 * (i >> 1), g)
    } else {
        (t * 2 + i, g)
    }
}
#[cfg(test)]
const fn mma_c_pos(g: usize, t: usize, i: usize) -> (usize, usize) {
    (g + 8 * (i >> 1), t * 2 + (i & 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block placement of `mma_body` puts every (register, lane, half) of A, B and C where
    /// the ISA's fragment layout says.
    #[test]
    fn mma_placement_matches_layout() {
        for k in [8usize, 16] {
            let k16 = k == 16;
            for l in 0..32 {
                let (g, t) = (l / 4, l % 4);
                for i in 0..if k16 { 8 } else { 4 } {
                    // half h of lane l of register ri is element 8g + 2t + h of the row
                    let (ri, j) = (i / 2, 2 * t + i % 2);
                    let (row0, col0) = mma_a_block(k16, ri);
                    assert_eq!(
                        (row0 + g, col0 + j),
                        mma_a_pos(k, g, t, i),
                        "A k{k} l{l} i{i}"
                    );
                    if i < if k16 { 4 } else { 2 } {
                        assert_eq!((8 * ri + j, g), mma_b_pos(k, g, t, i), "B k{k} l{l} i{i}");
                    }
                }
                for i in 0..4 {
                    let (row, col) = mma_c_pos(g, t, i);
                    assert_eq!(mma_c_index(i, l), row * 8 + col, "C l{l} i{i}");
                }
            }
        }
    }
}
