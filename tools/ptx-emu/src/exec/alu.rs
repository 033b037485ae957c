//! Integer and bit ALU, comparisons; the specialised warp-wide loops of the hot integer ops.

use super::*;

impl<'a, 'b> Block<'a, 'b> {
    /// Specialised lane loops for the integer ops that dominate address arithmetic.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fast_int(
        &self,
        w: &mut Warp,
        op: Alu,
        ty: Ty,
        f: AluFlags,
        d: &Opnd,
        s: &[Opnd],
        exec: u32,
    ) -> bool {
        if ty.is_float() || f.sat || ty == Ty::Pred {
            return false;
        }
        let Opnd::Reg(dr) = d else { return false };
        let dr = *dr as usize * 32;
        macro_rules! bin {
            ($m:expr, |$a:ident, $b:ident| $e:expr) => {{
                let m: u64 = $m;
                let av = self.gather(w, &s[0]);
                let bv = self.gather(w, &s[1]);
                let dst = &mut w.regs[dr..dr + 32];
                if exec == u32::MAX {
                    for l in 0..32 {
                        let $a = av[l];
                        let $b = bv[l];
                        dst[l] = ($e) & m;
                    }
                } else {
                    for l in lanes(exec) {
                        let $a = av[l];
                        let $b = bv[l];
                        dst[l] = ($e) & m;
                    }
                }
                true
            }};
        }
        let bits = ty.bits();
        let m = mask_bits(bits);
        match (op, bits) {
            (Alu::Add, 32 | 64) => bin!(m, |a, b| a.wrapping_add(b)),
            (Alu::Sub, 32 | 64) => bin!(m, |a, b| a.wrapping_sub(b)),
            (Alu::MulLo, 32 | 64) => bin!(m, |a, b| a.wrapping_mul(b)),
            (Alu::And, _) => bin!(m, |a, b| a & b),
            (Alu::Or, _) => bin!(m, |a, b| a | b),
            (Alu::Xor, _) => bin!(m, |a, b| a ^ b),
            (Alu::Shl, 32 | 64) => bin!(m, |a, b| {
                let sh = b & 0xffff_ffff;
                if sh >= bits as u64 {
                    0
                } else {
                    a << sh
                }
            }),
            (Alu::Shr, 32 | 64) if !ty.signed() => bin!(m, |a, b| {
                let sh = b & 0xffff_ffff;
                if sh >= bits as u64 {
                    0
                } else {
                    (a & m) >> sh
                }
            }),
            (Alu::MulWide, 32) if ty.signed() => bin!(u64::MAX, |a, b| (a as i32 as i64)
                .wrapping_mul(b as i32 as i64)
                as u64),
            (Alu::MulWide, 32) => bin!(u64::MAX, |a, b| (a & 0xffff_ffff) * (b & 0xffff_ffff)),
            (Alu::MadLo, 32 | 64) => {
                let (av, bv, cv) = (
                    self.gather(w, &s[0]),
                    self.gather(w, &s[1]),
                    self.gather(w, &s[2]),
                );
                let dst = &mut w.regs[dr..dr + 32];
                for l in lanes(exec) {
                    dst[l] = av[l].wrapping_mul(bv[l]).wrapping_add(cv[l]) & m;
                }
                true
            }
            _ => false,
        }
    }
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
