//! Integer and bit ALU, comparisons; the specialised warp-wide loops of the hot integer ops.

use super::*;

/// Sources `a`, `b`, `c` of a warp-wide loop.
macro_rules! srcs {
    ($regs:expr, $g:expr, $clk:expr, $s:expr; $($n:ident = $i:expr),*) => {
        $(
            let mut $n = [0u64; 32];
            let $n = src32($regs, $g, $clk, &$s[$i], &mut $n);
        )*
    };
}

/// `r[l] = f(a[l], b[l])` for all lanes.
macro_rules! lanes2 {
    ($r:expr, $a:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {
        for l in 0..32 {
            let $x = $a[l];
            let $y = $b[l];
            $r[l] = $e;
        }
    };
}

impl<'a, 'b> Block<'a, 'b> {
    /// Warp-wide loops for the common ALU ops: every lane is computed (the ops are pure and
    /// cannot fault), then the lanes of `exec` are written back. Returns false when the
    /// operation has no such loop (the caller then runs `alu` lane by lane). Results are bit for
    /// bit those of `alu`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fast_alu(
        &self,
        w: &mut Warp,
        op: Alu,
        ty: Ty,
        f: AluFlags,
        d: &Opnd,
        s: &[Opnd],
        exec: u32,
    ) -> bool {
        let Opnd::Reg(dr) = *d else { return false };
        let mut r = [0u64; 32];
        let ok = if op == Alu::Selp && ty.is_float() && !ty.packed() {
            // float selp moves the register bits unmasked
            srcs!(&w.regs, self.c.gsyms, w.clock, s; a = 0, b = 1, c = 2);
            for l in 0..32 {
                r[l] = if c[l] & 1 != 0 { a[l] } else { b[l] };
            }
            true
        } else if ty == Ty::F32 {
            f32_alu(&w.regs, self.c.gsyms, w.clock, op, f, s, &mut r)
        } else if ty == Ty::Pred && matches!(op, Alu::And | Alu::Or | Alu::Xor | Alu::Not) {
            srcs!(&w.regs, self.c.gsyms, w.clock, s; a = 0);
            if op == Alu::Not {
                for l in 0..32 {
                    r[l] = !a[l] & 1;
                }
            } else {
                srcs!(&w.regs, self.c.gsyms, w.clock, s; b = 1);
                match op {
                    Alu::And => lanes2!(r, a, b, |x, y| x & y & 1),
                    Alu::Or => lanes2!(r, a, b, |x, y| (x | y) & 1),
                    _ => lanes2!(r, a, b, |x, y| (x ^ y) & 1),
                }
            }
            true
        } else if ty.is_float() || f.sat || ty == Ty::Pred {
            false
        } else {
            int_alu(&w.regs, self.c.gsyms, w.clock, op, ty, s, &mut r)
        };
        if ok {
            store32(&mut w.regs, dr, &r, exec);
        }
        ok
    }
}

/// Integer ops (not `.sat`, not predicates) over all 32 lanes; false when not covered.
#[inline(always)]
pub(super) fn int_alu(
    regs: &[u64],
    g: &[u64],
    clk: u64,
    op: Alu,
    ty: Ty,
    s: &[Opnd],
    r: &mut [u64; 32],
) -> bool {
    let bits = ty.bits();
    let m = mask_bits(bits);
    let signed = ty.signed();
    match op {
        Alu::Add
        | Alu::Sub
        | Alu::MulLo
        | Alu::And
        | Alu::Or
        | Alu::Xor
        | Alu::Min
        | Alu::Max
        | Alu::MulWide
        | Alu::Shl
        | Alu::Shr => {
            if s.len() < 2 {
                return false;
            }
            srcs!(regs, g, clk, s; a = 0, b = 1);
            match op {
                Alu::Add => lanes2!(r, a, b, |x, y| x.wrapping_add(y) & m),
                Alu::Sub => lanes2!(r, a, b, |x, y| x.wrapping_sub(y) & m),
                Alu::MulLo => lanes2!(r, a, b, |x, y| x.wrapping_mul(y) & m),
                Alu::And => lanes2!(r, a, b, |x, y| x & y & m),
                Alu::Or => lanes2!(r, a, b, |x, y| (x | y) & m),
                Alu::Xor => lanes2!(r, a, b, |x, y| (x ^ y) & m),
                Alu::Min if signed => {
                    lanes2!(r, a, b, |x, y| sext(x, bits).min(sext(y, bits)) as u64 & m)
                }
                Alu::Max if signed => {
                    lanes2!(r, a, b, |x, y| sext(x, bits).max(sext(y, bits)) as u64 & m)
                }
                Alu::Min => lanes2!(r, a, b, |x, y| (x & m).min(y & m)),
                Alu::Max => lanes2!(r, a, b, |x, y| (x & m).max(y & m)),
                Alu::MulWide if bits == 32 && signed => lanes2!(r, a, b, |x, y| (x as i32 as i64)
                    .wrapping_mul(y as i32 as i64)
                    as u64),
                Alu::MulWide if bits == 32 => {
                    lanes2!(r, a, b, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff))
                }
                Alu::Shl => lanes2!(r, a, b, |x, y| {
                    let sh = y & 0xffff_ffff;
                    if sh >= bits as u64 {
                        0
                    } else {
                        (x << sh) & m
                    }
                }),
                Alu::Shr if signed => lanes2!(r, a, b, |x, y| {
                    let sh = (y & 0xffff_ffff).min(bits as u64 - 1);
                    (sext(x, bits) >> sh.min(63)) as u64 & m
                }),
                Alu::Shr => lanes2!(r, a, b, |x, y| {
                    let sh = y & 0xffff_ffff;
                    if sh >= bits as u64 {
                        0
                    } else {
                        (x & m) >> sh
                    }
                }),
                _ => return false,
            }
            true
        }
        Alu::MadLo => {
            srcs!(regs, g, clk, s; a = 0, b = 1, c = 2);
            for l in 0..32 {
                r[l] = (a[l] & m).wrapping_mul(b[l] & m).wrapping_add(c[l]) & m;
            }
            true
        }
        Alu::Selp => {
            srcs!(regs, g, clk, s; a = 0, b = 1, c = 2);
            for l in 0..32 {
                r[l] = if c[l] & 1 != 0 { a[l] & m } else { b[l] & m };
            }
            true
        }
        Alu::Neg if s.len() == 1 => {
            srcs!(regs, g, clk, s; a = 0);
            for l in 0..32 {
                r[l] = (sext(a[l], bits).wrapping_neg() as u64) & m;
            }
            true
        }
        Alu::Not if s.len() == 1 => {
            srcs!(regs, g, clk, s; a = 0);
            for l in 0..32 {
                r[l] = !a[l] & m;
            }
            true
        }
        _ => false,
    }
}

/// f32 flush-to-zero of a subnormal (keeps the sign), on register bits.
#[inline(always)]
pub(super) fn ftz32(b: u64) -> u64 {
    if b & 0x7f80_0000 == 0 {
        b & 0x8000_0000
    } else {
        b & 0xffff_ffff
    }
}

/// The canonical NaN for a NaN result.
#[inline(always)]
pub(super) fn canon32(v: f32) -> u64 {
    if v.is_nan() {
        0x7fff_ffff
    } else {
        v.to_bits() as u64
    }
}

/// f32 ops in round-to-nearest without `.sat/.relu/.satfinite` over all 32 lanes (native f32
/// arithmetic is correctly rounded to nearest even, like PTX `.rn`; `fma`/`mad` use the fused
/// `mul_add`); false when not covered.
#[inline(always)]
pub(super) fn f32_alu(
    regs: &[u64],
    g: &[u64],
    clk: u64,
    op: Alu,
    f: AluFlags,
    s: &[Opnd],
    r: &mut [u64; 32],
) -> bool {
    if f.rnd != Rnd::Rn || f.sat || f.relu || f.satfinite {
        return false;
    }
    let ftz = f.ftz;
    let fl = |b: u64| if ftz { ftz32(b) } else { b & 0xffff_ffff };
    let v = |b: u64| f32::from_bits(fl(b) as u32);
    match op {
        Alu::Add | Alu::Sub | Alu::MulLo | Alu::Min | Alu::Max => {
            srcs!(regs, g, clk, s; a = 0, b = 1);
            match op {
                Alu::Add => lanes2!(r, a, b, |x, y| canon32(v(x) + v(y))),
                Alu::Sub => lanes2!(r, a, b, |x, y| canon32(v(x) - v(y))),
                Alu::MulLo => lanes2!(r, a, b, |x, y| canon32(v(x) * v(y))),
                Alu::Min | Alu::Max => {
                    let min = op == Alu::Min;
                    lanes2!(r, a, b, |x, y| fminmax(x, y, ftz, min))
                }
                _ => unreachable!(),
            }
        }
        Alu::Fma | Alu::MadLo => {
            srcs!(regs, g, clk, s; a = 0, b = 1, c = 2);
            for l in 0..32 {
                r[l] = canon32(v(a[l]).mul_add(v(b[l]), v(c[l])));
            }
        }
        Alu::Neg | Alu::Abs if s.len() == 1 => {
            srcs!(regs, g, clk, s; a = 0);
            for l in 0..32 {
                let x = fl(a[l]);
                r[l] = if op == Alu::Neg {
                    x ^ 0x8000_0000
                } else {
                    x & 0x7fff_ffff
                };
            }
        }
        Alu::Ex2 if f.approx => {
            srcs!(regs, g, clk, s; a = 0);
            for l in 0..32 {
                r[l] = canon32((v(a[l]) as f64).exp2() as f32);
            }
        }
        _ => return false,
    }
    if ftz {
        for x in r.iter_mut() {
            *x = ftz32(*x);
        }
    }
    true
}

pub(super) fn compare(cmp: Cmp, ty: Ty, ftz: bool, a: u64, b: u64) -> bool {
    if let Some(fmt) = ty.fmt() {
        if ty.packed() {
            // setp on f16x2 writes two predicates; only the scalar form is supported here
        }
        let (a, b) = if ftz {
            (fmt.ftz(a), fmt.ftz(b))
        } else {
            (a, b)
        };
        let x = fmt.to_f64(a);
        let y = fmt.to_f64(b);
        let nan = x.is_nan() || y.is_nan();
        return match cmp {
            Cmp::Eq => !nan && x == y,
            Cmp::Ne => !nan && x != y,
            Cmp::Lt | Cmp::Lo => !nan && x < y,
            Cmp::Le | Cmp::Ls => !nan && x <= y,
            Cmp::Gt | Cmp::Hi => !nan && x > y,
            Cmp::Ge | Cmp::Hs => !nan && x >= y,
            Cmp::Equ => nan || x == y,
            Cmp::Neu => nan || x != y,
            Cmp::Ltu => nan || x < y,
            Cmp::Leu => nan || x <= y,
            Cmp::Gtu => nan || x > y,
            Cmp::Geu => nan || x >= y,
            Cmp::Num => !nan,
            Cmp::Nan => nan,
        };
    }
    let bits = ty.bits();
    let m = mask_bits(bits);
    let (ua, ub) = (a & m, b & m);
    let (sa, sb) = (sext(a, bits), sext(b, bits));
    let signed = ty.signed();
    match cmp {
        Cmp::Eq => ua == ub,
        Cmp::Ne => ua != ub,
        Cmp::Lt => {
            if signed {
                sa < sb
            } else {
                ua < ub
            }
        }
        Cmp::Le => {
            if signed {
                sa <= sb
            } else {
                ua <= ub
            }
        }
        Cmp::Gt => {
            if signed {
                sa > sb
            } else {
                ua > ub
            }
        }
        Cmp::Ge => {
            if signed {
                sa >= sb
            } else {
                ua >= ub
            }
        }
        Cmp::Lo => ua < ub,
        Cmp::Ls => ua <= ub,
        Cmp::Hi => ua > ub,
        Cmp::Hs => ua >= ub,
        _ => false,
    }
}

/// One ALU operation on register bits.
#[inline]
pub(crate) fn alu(op: Alu, ty: Ty, f: AluFlags, a: u64, b: u64, c: u64, x: u64) -> u64 {
    if ty == Ty::F32 && f.rnd == Rnd::Rn && !f.ftz && !f.sat && !f.relu && !f.satfinite {
        // Native f32 add/sub/mul are correctly rounded to nearest even, like PTX `.rn`.
        let (fa, fb) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
        let r = match op {
            Alu::Add => Some(fa + fb),
            Alu::Sub => Some(fa - fb),
            Alu::MulLo => Some(fa * fb),
            _ => None,
        };
        if let Some(r) = r {
            // PTX returns the canonical NaN
            return if r.is_nan() {
                0x7fff_ffff
            } else {
                r.to_bits() as u64
            };
        }
    }
    if let Some(fmt) = ty.fmt() {
        if ty.packed() {
            let lo = falu(op, fmt, f, a & 0xffff, b & 0xffff, c & 0xffff);
            let hi = falu(
                op,
                fmt,
                f,
                (a >> 16) & 0xffff,
                (b >> 16) & 0xffff,
                (c >> 16) & 0xffff,
            );
            return (hi << 16) | lo;
        }
        if matches!(op, Alu::Selp) {
            return if c & 1 != 0 { a } else { b };
        }
        if op == Alu::Testp {
            let v = fmt.to_f64(a);
            return match b {
                0 => v.is_finite(),
                1 => v.is_infinite(),
                2 => !v.is_nan(),
                3 => v.is_nan(),
                4 => v.is_normal(),
                _ => v.is_subnormal() || (fmt != Fmt::F64 && v != 0.0 && fmt.ftz(a) != a),
            } as u64;
        }
        if matches!(
            op,
            Alu::And | Alu::Or | Alu::Xor | Alu::Not | Alu::Shl | Alu::Shr
        ) {
            // bit ops typed as float are not valid PTX
        }
        return falu(op, fmt, f, a, b, c);
    }
    let bits = ty.bits();
    let m = mask_bits(bits);
    let signed = ty.signed();
    let (sa, sb) = (sext(a, bits), sext(b, bits));
    let (ua, ub) = (a & m, b & m);
    match op {
        Alu::Add => {
            if f.sat && signed {
                (sa as i128 + sb as i128).clamp(i32::MIN as i128, i32::MAX as i128) as u64 & m
            } else {
                ua.wrapping_add(ub) & m
            }
        }
        Alu::Sub => {
            if f.sat && signed {
                (sa as i128 - sb as i128).clamp(i32::MIN as i128, i32::MAX as i128) as u64 & m
            } else {
                ua.wrapping_sub(ub) & m
            }
        }
        Alu::MulLo => ua.wrapping_mul(ub) & m,
        Alu::MulHi => {
            if signed {
                ((sa as i128 * sb as i128) >> bits) as u64 & m
            } else {
                ((ua as u128 * ub as u128) >> bits) as u64 & m
            }
        }
        Alu::MulWide => {
            let m2 = mask_bits(bits * 2);
            if signed {
                (sa as i128 * sb as i128) as u64 & m2
            } else {
                (ua as u128 * ub as u128) as u64 & m2
            }
        }
        Alu::MadLo => ua.wrapping_mul(ub).wrapping_add(c) & m,
        Alu::MadHi => {
            let p = if signed {
                ((sa as i128 * sb as i128) >> bits) as u64
            } else {
                ((ua as u128 * ub as u128) >> bits) as u64
            };
            p.wrapping_add(c) & m
        }
        Alu::MadWide => {
            let m2 = mask_bits(bits * 2);
            let p = if signed {
                (sa as i128 * sb as i128) as u64
            } else {
                (ua as u128 * ub as u128) as u64
            };
            p.wrapping_add(c) & m2
        }
        Alu::Div => {
            if ub == 0 {
                m
            } else if signed {
                sa.wrapping_div(sb) as u64 & m
            } else {
                ua / ub
            }
        }
        Alu::Rem => {
            if ub == 0 {
                ua
            } else if signed {
                sa.wrapping_rem(sb) as u64 & m
            } else {
                ua % ub
            }
        }
        Alu::Min => {
            if signed {
                sa.min(sb) as u64 & m
            } else {
                ua.min(ub)
            }
        }
        Alu::Max => {
            if signed {
                sa.max(sb) as u64 & m
            } else {
                ua.max(ub)
            }
        }
        Alu::And => {
            if ty == Ty::Pred {
                a & b & 1
            } else {
                ua & ub
            }
        }
        Alu::Or => (ua | ub) & if ty == Ty::Pred { 1 } else { m },
        Alu::Xor => (ua ^ ub) & if ty == Ty::Pred { 1 } else { m },
        Alu::Not => {
            if ty == Ty::Pred {
                (!a) & 1
            } else {
                (!a) & m
            }
        }
        Alu::Cnot => (ua == 0) as u64,
        Alu::Shl => {
            let s = b & 0xffff_ffff;
            if s >= bits as u64 {
                0
            } else {
                (ua << s) & m
            }
        }
        Alu::Shr => {
            let s = (b & 0xffff_ffff).min(bits as u64 - 1 + (!signed) as u64);
            if signed {
                (sa >> s.min(63)) as u64 & m
            } else if s >= bits as u64 {
                0
            } else {
                ua >> s
            }
        }
        Alu::Neg => (sa.wrapping_neg() as u64) & m,
        Alu::Abs => (sa.wrapping_abs() as u64) & m,
        Alu::Popc => ua.count_ones() as u64,
        Alu::Clz => (ua.leading_zeros() - (64 - bits)) as u64,
        Alu::Brev => ua.reverse_bits() >> (64 - bits),
        Alu::Bfind => {
            let v = if signed && sa < 0 { !ua & m } else { ua };
            if v == 0 {
                0xffff_ffff
            } else {
                63 - v.leading_zeros() as u64
            }
        }
        Alu::Selp => {
            if c & 1 != 0 {
                ua
            } else {
                ub
            }
        }
        Alu::Bfe => {
            let pos = (b & 0xff) as u32;
            let len = (c & 0xff) as u32;
            let msb = bits - 1;
            let sbit = if !signed || len == 0 {
                0
            } else {
                let p = (pos + len - 1).min(msb);
                (ua >> p) & 1
            };
            let mut d = 0u64;
            for i in 0..bits {
                let bit = if i < len && pos + i <= msb {
                    (ua >> (pos + i)) & 1
                } else {
                    sbit
                };
                d |= bit << i;
            }
            d
        }
        Alu::Bfi => {
            let pos = (c & 0xff) as u32;
            let len = (x & 0xff) as u32;
            let mut d = ub;
            for i in 0..len {
                if pos + i >= bits {
                    break;
                }
                let bit = (ua >> i) & 1;
                d = (d & !(1 << (pos + i))) | (bit << (pos + i));
            }
            d
        }
        Alu::Prmt => {
            let bytes = ((ub & 0xffff_ffff) << 32) | (ua & 0xffff_ffff);
            let mut d = 0u64;
            for i in 0..4 {
                let sel = (c >> (4 * i)) & 0xf;
                let byte = (bytes >> (8 * (sel & 7))) & 0xff;
                let v = if sel & 8 != 0 {
                    if byte & 0x80 != 0 {
                        0xff
                    } else {
                        0
                    }
                } else {
                    byte
                };
                d |= v << (8 * i);
            }
            d
        }
        Alu::Lop3 => {
            let lut = x & 0xff;
            let mut d = 0u64;
            for k in 0..8u64 {
                if (lut >> k) & 1 != 0 {
                    let ta = if k & 4 != 0 { a } else { !a };
                    let tb = if k & 2 != 0 { b } else { !b };
                    let tc = if k & 1 != 0 { c } else { !c };
                    d |= ta & tb & tc;
                }
            }
            d & m
        }
        Alu::ShfL | Alu::ShfR => {
            let n = if f.clamp {
                (c & 0xffff_ffff).min(32)
            } else {
                c & 31
            };
            let v = ((ub & 0xffff_ffff) << 32) | (ua & 0xffff_ffff);
            if op == Alu::ShfL {
                ((v << n) >> 32) & 0xffff_ffff
            } else {
                (v >> n) & 0xffff_ffff
            }
        }
        Alu::Sad => {
            let d = if signed {
                (sa - sb).unsigned_abs()
            } else {
                ua.abs_diff(ub)
            };
            d.wrapping_add(c) & m
        }
        Alu::Dp4a => {
            let (sa_, sb_) = (x & 1 != 0, x & 2 != 0);
            let mut acc = c as u32 as i64;
            for i in 0..4 {
                let ba = (a >> (8 * i)) & 0xff;
                let bb = (b >> (8 * i)) & 0xff;
                let va = if sa_ { ba as i8 as i64 } else { ba as i64 };
                let vb = if sb_ { bb as i8 as i64 } else { bb as i64 };
                acc += va * vb;
            }
            acc as u64 & 0xffff_ffff
        }
        Alu::Copysign
        | Alu::Sqrt
        | Alu::Rsqrt
        | Alu::Rcp
        | Alu::Ex2
        | Alu::Lg2
        | Alu::Sin
        | Alu::Cos
        | Alu::Tanh
        | Alu::Fma
        | Alu::Testp => 0,
    }
}

/// Integer `setp` over all 32 lanes (`compare`'s integer rules); false for float types.
#[inline(always)]
pub(super) fn setp_int(cmp: Cmp, ty: Ty, a: &[u64; 32], b: &[u64; 32], r: &mut [u64; 32]) -> bool {
    if ty.fmt().is_some() {
        return false;
    }
    let bits = ty.bits();
    let m = mask_bits(bits);
    let signed = ty.signed();
    macro_rules! lp {
        (|$x:ident, $y:ident| $e:expr) => {
            for l in 0..32 {
                let $x = a[l];
                let $y = b[l];
                r[l] = ($e) as u64;
            }
        };
    }
    match cmp {
        Cmp::Eq => lp!(|x, y| x & m == y & m),
        Cmp::Ne => lp!(|x, y| x & m != y & m),
        Cmp::Lt if signed => lp!(|x, y| sext(x, bits) < sext(y, bits)),
        Cmp::Le if signed => lp!(|x, y| sext(x, bits) <= sext(y, bits)),
        Cmp::Gt if signed => lp!(|x, y| sext(x, bits) > sext(y, bits)),
        Cmp::Ge if signed => lp!(|x, y| sext(x, bits) >= sext(y, bits)),
        Cmp::Lt | Cmp::Lo => lp!(|x, y| x & m < y & m),
        Cmp::Le | Cmp::Ls => lp!(|x, y| x & m <= y & m),
        Cmp::Gt | Cmp::Hi => lp!(|x, y| x & m > y & m),
        Cmp::Ge | Cmp::Hs => lp!(|x, y| x & m >= y & m),
        _ => lp!(|_x, _y| false),
    }
    true
}

/// The predicate pair of a `setp` over all 32 lanes from its comparison row `r`: `r` becomes
/// `p = r ∘ c` and the returned row is `q = !r ∘ c`, with `∘` the `.and/.or/.xor` with the
/// predicate row `c` when the instruction has one.
#[inline(always)]
pub(super) fn setp_pair(r: &mut [u64; 32], comb: Option<(BoolOp, &[u64; 32])>) -> [u64; 32] {
    let mut q = [0u64; 32];
    for l in 0..32 {
        q[l] = r[l] ^ 1;
    }
    if let Some((bop, c)) = comb {
        for l in 0..32 {
            let c = c[l] & 1;
            let f = |x: u64| match bop {
                BoolOp::And => x & c,
                BoolOp::Or => x | c,
                BoolOp::Xor => x ^ c,
            };
            r[l] = f(r[l]);
            q[l] = f(q[l]);
        }
    }
    q
}

/// f32 input bits (flushed with `.ftz`).
#[inline(always)]
pub(super) fn fin(b: u64, ftz: bool) -> u64 {
    if ftz {
        ftz32(b)
    } else {
        b & 0xffff_ffff
    }
}

/// PTX f32 min/max: the non-NaN operand, −0 < +0, both NaN → canonical NaN.
#[inline(always)]
pub(super) fn fminmax(x: u64, y: u64, ftz: bool, min: bool) -> u64 {
    let (xb, yb) = (fin(x, ftz), fin(y, ftz));
    let (xv, yv) = (f32::from_bits(xb as u32), f32::from_bits(yb as u32));
    if xv.is_nan() && yv.is_nan() {
        0x7fff_ffff
    } else if xv.is_nan() {
        yb
    } else if yv.is_nan() {
        xb
    } else {
        let neg = xb & 0x8000_0000 != 0;
        let pick_a = if min {
            xv < yv || (xv == yv && neg)
        } else {
            xv > yv || (xv == yv && !neg)
        };
        if pick_a {
            xb
        } else {
            yb
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interesting register bit patterns: zeros, subnormals, NaNs, infinities, extremes, and
    /// pseudo-random values with garbage in the upper 32 bits.
    fn patterns(n: usize) -> Vec<u64> {
        let mut v = EDGE_BITS.to_vec();
        v.push(0xffc0_0001);
        let mut s = 0x1234_5678_9abc_def0u64;
        while v.len() < n {
            let s = lcg(&mut s);
            let x = s ^ (s >> 29);
            v.push(match v.len() % 4 {
                0 => x,
                1 => x & 0xffff_ffff,
                2 => (x & 0x807f_ffff) | 0x3f00_0000, // f32 near 1
                _ => x & 0xff,
            });
        }
        v
    }

    /// The warp-wide loops give exactly `alu`'s bits for every covered (op, type, flags).
    #[test]
    fn warp_loops_match_alu() {
        let pats = patterns(96);
        let more = [
            Alu::MadLo,
            Alu::Selp,
            Alu::Neg,
            Alu::Not,
            Alu::Fma,
            Alu::Abs,
            Alu::Ex2,
        ];
        let ops: Vec<Alu> = TWO_SOURCE_INT_OPS.into_iter().chain(more).collect();
        let tys: Vec<Ty> = INT_TYS.into_iter().chain([Ty::F32]).collect();
        let mut covered = 0;
        for &op in &ops {
            for &ty in &tys {
                for ftz in [false, true] {
                    for approx in [false, true] {
                        let f = AluFlags {
                            ftz,
                            approx,
                            ..AluFlags::default()
                        };
                        let nsrc = match op {
                            Alu::Neg | Alu::Not | Alu::Abs | Alu::Ex2 => 1,
                            Alu::MadLo | Alu::Selp | Alu::Fma => 3,
                            _ => 2,
                        };
                        let srcs: Vec<Opnd> = (0..nsrc).map(|i| Opnd::Reg(i as u32)).collect();
                        for rot in 0..pats.len() {
                            let mut regs = vec![0u64; 3 * 32];
                            for l in 0..32 {
                                for k in 0..3 {
                                    regs[k * 32 + l] =
                                        pats[(rot + l * (k + 1) * 7 + k) % pats.len()];
                                }
                            }
                            let mut r = [0u64; 32];
                            let ok = if ty == Ty::F32 {
                                f32_alu(&regs, &[], 0, op, f, &srcs, &mut r)
                            } else {
                                int_alu(&regs, &[], 0, op, ty, &srcs, &mut r)
                            };
                            if !ok {
                                break;
                            }
                            covered += 1;
                            for l in 0..32 {
                                let a = regs[l];
                                let b = if nsrc > 1 { regs[32 + l] } else { 0 };
                                let c = if nsrc > 2 { regs[64 + l] } else { 0 };
                                let want = alu(op, ty, f, a, b, c, 0);
                                let (got, want) = if ty == Ty::F32 {
                                    (r[l] & 0xffff_ffff, want & 0xffff_ffff)
                                } else {
                                    (r[l], want)
                                };
                                assert_eq!(
                                    got, want,
                                    "{op:?} {ty:?} ftz={ftz} approx={approx} a={a:#x} b={b:#x} c={c:#x}"
                                );
                            }
                        }
                    }
                }
            }
        }
        assert!(covered > 1000, "only {covered} cases covered");
    }
}
