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
        // rows[m][r][c]: matrix m, row r (from lane 8m+r), 8 b16 columns
        let mut rows = [[[0u16; 8]; 8]; 4];
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
                let buf: [u8; 16] = self.shared[off..off + 16].try_into().unwrap();
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
            // every lane takes part (.aligned): straight into the destination row
            let i = dr as usize * 32;
            let row: &mut [u64; 32] = (&mut w.regs[i..i + 32]).try_into().unwrap();
            for (l, v) in row.iter_mut().enumerate() {
                let (g, t) = (l / 4, l % 4);
                let (x0, x1) = if trans {
                    (rows[m][2 * t][g], rows[m][2 * t + 1][g])
                } else {
                    (rows[m][g][2 * t], rows[m][g][2 * t + 1])
                };
                *v = x0 as u64 | ((x1 as u64) << 16);
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
        let bf = ab == Ty::BF16;
        // a: 16 × k (row-major, stride 16), b: k × 8, c/d: 16 × 8, first as f32 bit patterns
        // (bf16 → f32 and f16 → f32 are exact), placed through the fragment tables (every element
        // is written by exactly one (register, lane, half)), then widened to f64 in straight loops
        let mut a32 = [0u32; 256];
        let mut b32 = [0u32; 128];
        let mut c32 = [0u32; 128];
        let (Opnd::Vec(da), Opnd::Vec(db), Opnd::Vec(dc), Opnd::Vec(dd)) =
            (&ins.s[0], &ins.s[1], &ins.s[2], &ins.d[0])
        else {
            unreachable!()
        };
        let to_f32 = |h: u64| -> u32 {
            if bf {
                // bf16 is the top half of an f32
                (h as u32) << 16
            } else {
                f16::from_bits(h as u16).to_f32().to_bits()
            }
        };
        let t = if k == 16 { &MMA_K16 } else { &MMA_K8 };
        let (g, clk) = (self.c.gsyms, w.clock);
        let mut tmp = [0u64; 32];
        for (ri, r) in da.iter().enumerate().take(4) {
            let v = src32(&w.regs, g, clk, r, &mut tmp);
            let pos = &t.a[ri];
            for (l, &v) in v.iter().enumerate() {
                a32[pos[2 * l] as usize] = to_f32(v & 0xffff);
                a32[pos[2 * l + 1] as usize] = to_f32((v >> 16) & 0xffff);
            }
        }
        for (ri, r) in db.iter().enumerate().take(2) {
            let v = src32(&w.regs, g, clk, r, &mut tmp);
            let pos = &t.b[ri];
            for (l, &v) in v.iter().enumerate() {
                b32[pos[2 * l] as usize & 127] = to_f32(v & 0xffff);
                b32[pos[2 * l + 1] as usize & 127] = to_f32((v >> 16) & 0xffff);
            }
        }
        for (i, r) in dc.iter().enumerate().take(4) {
            let v = src32(&w.regs, g, clk, r, &mut tmp);
            for (&p, &v) in MMA_C[i].iter().zip(v.iter()) {
                c32[p as usize & 127] = v as u32;
            }
        }
        let widen = |x: &u32| f32::from_bits(*x) as f64;
        let a: [f64; 256] = std::array::from_fn(|i| widen(&a32[i]));
        let b: [f64; 128] = std::array::from_fn(|i| widen(&b32[i]));
        let mut c: [f64; 128] = std::array::from_fn(|i| widen(&c32[i]));
        // D = A·B + C: products are exact in f64, the sum runs over k in order in f64 and is
        // rounded once to f32 (see docs/emulator.md for the error model).
        ksum(&a, &b, &mut c, k);
        for (i, r) in dd.iter().enumerate().take(4) {
            if let Opnd::Reg(r) = *r {
                let pos = &MMA_C[i];
                let mut v = [0u64; 32];
                for (l, v) in v.iter_mut().enumerate() {
                    *v = (c[pos[l] as usize & 127] as f32).to_bits() as u64;
                }
                store32(&mut w.regs, r, &v, u32::MAX);
            }
        }
    }
}

/// Where each (register, lane, half) of the A and B fragments goes in the row-major A (stride 16)
/// and B (stride 8) matrices of one `mma` shape: `a[reg][2 * lane + half]`.
struct MmaTables {
    a: [[u8; 64]; 4],
    b: [[u8; 64]; 2],
}

const fn mma_tables(k: usize) -> MmaTables {
    let mut t = MmaTables {
        a: [[0; 64]; 4],
        b: [[0; 64]; 2],
    };
    let mut l = 0;
    while l < 32 {
        let (g, tt) = (l / 4, l % 4);
        let mut i = 0;
        while i < 8 {
            // A element i of the lane: register i / 2, half i % 2
            let (row, col) = mma_a_pos(k, g, tt, i);
            // (k = 8 has 2 A registers and 1 B register; the rest of the table is unused)
            if k == 16 || i < 4 {
                t.a[i / 2][2 * l + i % 2] = (row * 16 + col) as u8;
            }
            if (k == 16 && i < 4) || i < 2 {
                let (row, col) = mma_b_pos(k, g, tt, i);
                t.b[i / 2][2 * l + i % 2] = (row * 8 + col) as u8;
            }
            i += 1;
        }
        l += 1;
    }
    t
}

const fn mma_c_table() -> [[u8; 32]; 4] {
    let mut t = [[0; 32]; 4];
    let mut i = 0;
    while i < 4 {
        let mut l = 0;
        while l < 32 {
            let (row, col) = mma_c_pos(l / 4, l % 4, i);
            t[i][l] = (row * 8 + col) as u8;
            l += 1;
        }
        i += 1;
    }
    t
}

static MMA_K16: MmaTables = mma_tables(16);
static MMA_K8: MmaTables = mma_tables(8);
/// Where lane `l` of accumulator register `i` sits in the row-major 16 × 8 C/D matrix.
static MMA_C: [[u8; 32]; 4] = mma_c_table();

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

pub(crate) const fn mma_a_pos(k: usize, g: usize, t: usize, i: usize) -> (usize, usize) {
    if k == 16 {
        (g + 8 * ((i >> 1) & 1), t * 2 + (i & 1) + 8 * (i >> 2))
    } else {
        (g + 8 * (i >> 1), t * 2 + (i & 1))
    }
}
pub(crate) const fn mma_b_pos(k: usize, g: usize, t: usize, i: usize) -> (usize, usize) {
    if k == 16 {
        (t * 2 + (i & 1) + 8 * (i >> 1), g)
    } else {
        (t * 2 + i, g)
    }
}
pub(crate) const fn mma_c_pos(g: usize, t: usize, i: usize) -> (usize, usize) {
    (g + 8 * (i >> 1), t * 2 + (i & 1))
}
