//! Running the register-only fast forms (ALU, `setp`, `selp`, `mov`, `cvt`) over all 32 lanes.

use super::*;
use crate::exec::alu::{canon32, fin, fminmax, ftz32};
use std::mem::MaybeUninit;

/// f32 result bits (flushed with `.ftz`).
#[inline(always)]
fn fout(r: u64, ftz: bool) -> u64 {
    if ftz {
        ftz32(r)
    } else {
        r
    }
}

#[inline(always)]
fn fv(b: u64, ftz: bool) -> f32 {
    f32::from_bits(fin(b, ftz) as u32)
}

/// `cvt.rn.<half>.f32` with `from_f32` the conversion to the half type's bits: the f32 input is
/// exact, so its round-to-nearest-even conversion is `cvt`'s result; NaN gives the canonical NaN.
#[inline(always)]
fn half_of(x: u64, from_f32: impl Fn(f32) -> u16) -> u64 {
    let x = f32::from_bits(x as u32);
    if x.is_nan() {
        0x7fff
    } else {
        from_f32(x) as u64
    }
}

/// `cvt.rn.bf16.f32`.
#[inline(always)]
fn bf16_of(x: u64) -> u64 {
    half_of(x, |v| half::bf16::from_f32(v).to_bits())
}

/// `cvt.rn.f16.f32`.
#[inline(always)]
fn f16_of(x: u64) -> u64 {
    half_of(x, |v| half::f16::from_f32(v).to_bits())
}

/// The 32 lane values of `s`: a pointer to its register row, or to `tmp` filled with the
/// immediate.
#[inline(always)]
fn row_ptr(base: *const u64, s: Src, tmp: &mut MaybeUninit<Row>) -> *const Row {
    match s {
        // SAFETY (of the pointer arithmetic): `decode_fast` only emits `R(r)` with r < nregs,
        // and the register file of every warp holds nregs * 32 slots (`run_block`).
        Src::R(r) => unsafe { base.add(r as usize * 32) as *const Row },
        Src::I(v) => tmp.write([v; 32]) as *const Row,
    }
}

/// Write the lanes of `exec` of `r` to row `d`.
///
/// # Safety
/// `d` < nregs of the program whose register file `base` points to (nregs * 32 slots), and no
/// live reference points into row `d`.
#[inline(always)]
unsafe fn put(base: *mut u64, d: u32, r: &Row, exec: u32) {
    // SAFETY: as documented above, the destination row lies inside the register file and
    // nothing else borrows it while this exclusive reference lives.
    let dst = unsafe { &mut *(base.add(d as usize * 32) as *mut Row) };
    if exec == u32::MAX {
        *dst = *r;
    } else {
        // a bit blend with per-lane masks (vectorises; a per-lane select does not)
        let mut m: Row = [0; 32];
        for (l, m) in m.iter_mut().enumerate() {
            *m = 0u64.wrapping_sub((exec >> l) as u64 & 1);
        }
        for l in 0..32 {
            dst[l] = (r[l] & m[l]) | (dst[l] & !m[l]);
        }
    }
}

/// Execute the fast form `f` (not `Slow`) for the lanes of `exec` of a warp's register file.
///
/// Direct row access: the sources are read in place through their rows (no copies). When every
/// lane executes and no source is the destination, the result is computed straight into the
/// destination row; otherwise into a local row whose `exec` lanes are then written back.
#[inline(always)]
pub(in crate::exec) fn exec_fast(regs: &mut [u64], f: &FOp, exec: u32) {
    let base = regs.as_mut_ptr();
    let cbase = base as *const u64;
    let (mut ta, mut tb, mut tc) = (
        MaybeUninit::<Row>::uninit(),
        MaybeUninit::<Row>::uninit(),
        MaybeUninit::<Row>::uninit(),
    );
    // The loop `out[l] = e` over sources `srcs`, into row `d`.
    macro_rules! lanes {
        ($d:expr, [$($s:expr),*], |$l:ident, $out:ident| $body:block) => {{
            let d: u32 = $d;
            let direct = exec == u32::MAX $(&& $s != Src::R(d))*;
            let mut local: Row;
            let $out: &mut Row = if direct {
                // SAFETY: row d is inside the register file (decode_fast checked d < nregs,
                // the file has nregs * 32 slots) and no source reference points into it (no
                // source is row d; immediates live in locals), so this exclusive reference is
                // the only one to that row while it lives.
                unsafe { &mut *(base.add(d as usize * 32) as *mut Row) }
            } else {
                local = [0; 32];
                &mut local
            };
            for $l in 0..32 $body
            if !direct {
                // SAFETY: d < nregs; the source references are dead (the loop is done) and
                // `out` is the local row.
                unsafe { put(base, d, $out, exec) };
            }
        }};
    }
    macro_rules! un {
        ($d:expr, $a:expr, |$x:ident| $e:expr) => {{
            // SAFETY: `row_ptr` points at a whole row of the register file (decode_fast checked
            // the index) or at a local; only shared reads happen through it.
            let a = unsafe { &*row_ptr(cbase, $a, &mut ta) };
            lanes!($d, [$a], |l, out| {
                let $x = a[l];
                out[l] = $e;
            })
        }};
    }
    macro_rules! bin {
        ($d:expr, $a:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {{
            // SAFETY: as in `un!`.
            let (a, b) = unsafe { (&*row_ptr(cbase, $a, &mut ta), &*row_ptr(cbase, $b, &mut tb)) };
            lanes!($d, [$a, $b], |l, out| {
                let $x = a[l];
                let $y = b[l];
                out[l] = $e;
            })
        }};
    }
    macro_rules! tri {
        ($d:expr, $a:expr, $b:expr, $c:expr, |$x:ident, $y:ident, $z:ident| $e:expr) => {{
            // SAFETY: as in `un!`.
            let (a, b, c) = unsafe {
                (
                    &*row_ptr(cbase, $a, &mut ta),
                    &*row_ptr(cbase, $b, &mut tb),
                    &*row_ptr(cbase, $c, &mut tc),
                )
            };
            lanes!($d, [$a, $b, $c], |l, out| {
                let $x = a[l];
                let $y = b[l];
                let $z = c[l];
                out[l] = $e;
            })
        }};
    }
    match *f {
        FOp::Slow | FOp::Ld { .. } | FOp::St { .. } => {}
        FOp::Un(k, d, a) => match k {
            Un::Mask(m) => un!(d, a, |x| x & m),
            Un::Sext(sb, m) => un!(d, a, |x| sext(x, sb) as u64 & m),
            Un::Not(m) => un!(d, a, |x| !x & m),
            Un::Neg(bits, m) => un!(d, a, |x| (sext(x, bits).wrapping_neg() as u64) & m),
            Un::PNot => un!(d, a, |x| !x & 1),
            Un::FNeg(z) => un!(d, a, |x| fout(fin(x, z) ^ 0x8000_0000, z)),
            Un::FAbs(z) => un!(d, a, |x| fout(fin(x, z) & 0x7fff_ffff, z)),
            Un::FEx2(z) => un!(d, a, |x| fout(canon32((fv(x, z) as f64).exp2() as f32), z)),
            Un::CvtBf16F32 => un!(d, a, |x| bf16_of(x)),
            Un::CvtF16F32 => un!(d, a, |x| f16_of(x)),
            Un::CvtF32Bf16 => un!(d, a, |x| {
                let v = f32::from_bits((x as u32 & 0xffff) << 16);
                canon32(v)
            }),
            Un::CvtF32F16 => un!(d, a, |x| canon32(half::f16::from_bits(x as u16).to_f32())),
            Un::CvtF32U32 => un!(d, a, |x| ((x as u32) as f32).to_bits() as u64),
            Un::CvtF32S32 => un!(d, a, |x| ((x as u32 as i32) as f32).to_bits() as u64),
        },
        FOp::Bin(k, d, a, b) => match k {
            Bin::Add(m) => bin!(d, a, b, |x, y| x.wrapping_add(y) & m),
            Bin::Sub(m) => bin!(d, a, b, |x, y| x.wrapping_sub(y) & m),
            Bin::Mul(m) => bin!(d, a, b, |x, y| x.wrapping_mul(y) & m),
            Bin::And(m) => bin!(d, a, b, |x, y| x & y & m),
            Bin::Or(m) => bin!(d, a, b, |x, y| (x | y) & m),
            Bin::Xor(m) => bin!(d, a, b, |x, y| (x ^ y) & m),
            Bin::Shl(bits, m) => bin!(d, a, b, |x, y| {
                let sh = y & 0xffff_ffff;
                if sh >= bits as u64 {
                    0
                } else {
                    (x << sh) & m
                }
            }),
            Bin::ShrU(bits, m) => bin!(d, a, b, |x, y| {
                let sh = y & 0xffff_ffff;
                if sh >= bits as u64 {
                    0
                } else {
                    (x & m) >> sh
                }
            }),
            Bin::ShrS(bits, m) => bin!(d, a, b, |x, y| {
                let sh = (y & 0xffff_ffff).min(bits as u64 - 1);
                (sext(x, bits) >> sh.min(63)) as u64 & m
            }),
            Bin::MinU(m) => bin!(d, a, b, |x, y| (x & m).min(y & m)),
            Bin::MaxU(m) => bin!(d, a, b, |x, y| (x & m).max(y & m)),
            Bin::MinS(bits, m) => {
                bin!(d, a, b, |x, y| sext(x, bits).min(sext(y, bits)) as u64 & m)
            }
            Bin::MaxS(bits, m) => {
                bin!(d, a, b, |x, y| sext(x, bits).max(sext(y, bits)) as u64 & m)
            }
            Bin::MulWideU32 => bin!(d, a, b, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff)),
            Bin::MulWideS32 => {
                bin!(
                    d,
                    a,
                    b,
                    |x, y| (x as i32 as i64).wrapping_mul(y as i32 as i64) as u64
                )
            }
            Bin::MulWideU16 => bin!(d, a, b, |x, y| (x & 0xffff) * (y & 0xffff)),
            Bin::MulWideS16 => {
                bin!(
                    d,
                    a,
                    b,
                    |x, y| ((x as i16 as i32) * (y as i16 as i32)) as u32 as u64
                )
            }
            Bin::PAnd => bin!(d, a, b, |x, y| x & y & 1),
            Bin::POr => bin!(d, a, b, |x, y| (x | y) & 1),
            Bin::PXor => bin!(d, a, b, |x, y| (x ^ y) & 1),
            Bin::FAdd(z) => bin!(d, a, b, |x, y| fout(canon32(fv(x, z) + fv(y, z)), z)),
            Bin::FSub(z) => bin!(d, a, b, |x, y| fout(canon32(fv(x, z) - fv(y, z)), z)),
            Bin::FMul(z) => bin!(d, a, b, |x, y| fout(canon32(fv(x, z) * fv(y, z)), z)),
            Bin::FMin(z) => bin!(d, a, b, |x, y| fout(fminmax(x, y, z, true), z)),
            Bin::FMax(z) => bin!(d, a, b, |x, y| fout(fminmax(x, y, z, false), z)),
            Bin::FDiv(z) => bin!(d, a, b, |x, y| fout(canon32(fv(x, z) / fv(y, z)), z)),
            Bin::DivU(m) => bin!(d, a, b, |x, y| (x & m).checked_div(y & m).unwrap_or(m)),
            Bin::RemU(m) => bin!(d, a, b, |x, y| (x & m).checked_rem(y & m).unwrap_or(x & m)),
            Bin::DivS(bits, m) => bin!(d, a, b, |x, y| if y & m == 0 {
                m
            } else {
                sext(x, bits).wrapping_div(sext(y, bits)) as u64 & m
            }),
            Bin::RemS(bits, m) => bin!(d, a, b, |x, y| if y & m == 0 {
                x & m
            } else {
                sext(x, bits).wrapping_rem(sext(y, bits)) as u64 & m
            }),
            Bin::Pack16 => bin!(d, a, b, |x, y| (x & 0xffff) | ((y & 0xffff) << 16)),
            Bin::CvtBf16x2 => bin!(d, a, b, |x, y| (bf16_of(x) << 16) | bf16_of(y)),
        },
        FOp::Tri(k, d, a, b, c) => match k {
            Tri::MadLo(m) => tri!(d, a, b, c, |x, y, w| (x & m)
                .wrapping_mul(y & m)
                .wrapping_add(w)
                & m),
            Tri::Selp(m) => tri!(d, a, b, c, |x, y, w| if w & 1 != 0 { x & m } else { y & m }),
            Tri::SelpRaw => tri!(d, a, b, c, |x, y, w| if w & 1 != 0 { x } else { y }),
            Tri::Fma(z) => tri!(d, a, b, c, |x, y, w| fout(
                canon32(fv(x, z).mul_add(fv(y, z), fv(w, z))),
                z
            )),
        },
        FOp::Setp {
            cmp,
            kind,
            p,
            q,
            a,
            b,
            comb,
        } => {
            // SAFETY: as in `un!`.
            let (a, b) = unsafe { (&*row_ptr(cbase, a, &mut ta), &*row_ptr(cbase, b, &mut tb)) };
            let mut r: Row = [0; 32];
            match kind {
                SetpKind::Int(ty) => {
                    setp_int(cmp, ty, a, b, &mut r);
                }
                SetpKind::F32(z) => setp_f32(cmp, z, a, b, &mut r),
            }
            // SAFETY: as in `un!`.
            let comb = comb.map(|(bop, c)| (bop, unsafe { &*row_ptr(cbase, c, &mut tc) }));
            let qv = setp_pair(&mut r, comb);
            // SAFETY: p, q < nregs (decode_fast); the source references are dead.
            // (p first, then q, as the general path writes them)
            unsafe {
                put(base, p, &r, exec);
                if q != u32::MAX {
                    put(base, q, &qv, exec);
                }
            }
        }
    }
}

/// f32 `setp` over all 32 lanes (`compare`'s rules: flushed with `.ftz`, ordered comparisons
/// false on NaN, unordered ones true).
#[inline(always)]
fn setp_f32(cmp: Cmp, z: bool, a: &Row, b: &Row, r: &mut Row) {
    macro_rules! lp {
        (|$x:ident, $y:ident, $nan:ident| $e:expr) => {
            for l in 0..32 {
                let $x = fv(a[l], z);
                let $y = fv(b[l], z);
                let $nan = $x.is_nan() || $y.is_nan();
                r[l] = ($e) as u64;
            }
        };
    }
    match cmp {
        Cmp::Eq => lp!(|x, y, nan| !nan && x == y),
        Cmp::Ne => lp!(|x, y, nan| !nan && x != y),
        Cmp::Lt | Cmp::Lo => lp!(|x, y, nan| !nan && x < y),
        Cmp::Le | Cmp::Ls => lp!(|x, y, nan| !nan && x <= y),
        Cmp::Gt | Cmp::Hi => lp!(|x, y, nan| !nan && x > y),
        Cmp::Ge | Cmp::Hs => lp!(|x, y, nan| !nan && x >= y),
        Cmp::Equ => lp!(|x, y, nan| nan || x == y),
        Cmp::Neu => lp!(|x, y, nan| nan || x != y),
        Cmp::Ltu => lp!(|x, y, nan| nan || x < y),
        Cmp::Leu => lp!(|x, y, nan| nan || x <= y),
        Cmp::Gtu => lp!(|x, y, nan| nan || x > y),
        Cmp::Geu => lp!(|x, y, nan| nan || x >= y),
        Cmp::Num => lp!(|_x, _y, nan| !nan),
        Cmp::Nan => lp!(|_x, _y, nan| nan),
    }
}
