//! Floating-point ALU (correctly rounded in every mode) and conversions.

use super::*;

/// Float ALU on one element.
pub(super) fn falu(op: Alu, fmt: Fmt, f: AluFlags, a: u64, b: u64, c: u64) -> u64 {
    let ftz = f.ftz && fmt == Fmt::F32;
    let (a, b, c) = if ftz {
        (fmt.ftz(a), fmt.ftz(b), fmt.ftz(c))
    } else {
        (a, b, c)
    };
    let sign = 1u64 << (fmt.bits() - 1);
    let x = fmt.to_f64(a);
    let y = fmt.to_f64(b);
    let rnd = f.rnd;
    let r = match op {
        Alu::Add => {
            let (h, l) = float::two_sum(x, y);
            float::round(fmt, h, l, rnd)
        }
        Alu::Sub => {
            let (h, l) = float::two_sum(x, -y);
            float::round(fmt, h, l, rnd)
        }
        Alu::MulLo => {
            let (h, l) = float::two_prod(x, y);
            float::round(fmt, h, l, rnd)
        }
        Alu::Fma | Alu::MadLo => {
            let z = fmt.to_f64(c);
            let (h, l) = if fmt == Fmt::F64 {
                float::fma_f64(x, y, z)
            } else {
                float::fma_parts(x, y, z)
            };
            float::round(fmt, h, l, rnd)
        }
        Alu::Div => {
            if f.approx {
                float::round(fmt, x / y, 0.0, Rnd::Rn)
            } else {
                let (h, l) = float::div_parts(fmt == Fmt::F64, x, y);
                float::round(fmt, h, l, rnd)
            }
        }
        Alu::Min | Alu::Max => {
            if x.is_nan() && y.is_nan() {
                fmt.canonical_nan()
            } else if x.is_nan() {
                b
            } else if y.is_nan() {
                a
            } else {
                let pick_a = if op == Alu::Min {
                    x < y || (x == y && a & sign != 0)
                } else {
                    x > y || (x == y && a & sign == 0)
                };
                if pick_a {
                    a
                } else {
                    b
                }
            }
        }
        Alu::Neg => a ^ sign,
        Alu::Abs => a & !sign,
        Alu::Copysign => (b & !sign) | (a & sign),
        Alu::Sqrt => {
            if f.approx {
                float::round(fmt, x.sqrt(), 0.0, Rnd::Rn)
            } else {
                let (h, l) = float::sqrt_parts(x);
                float::round(fmt, h, l, rnd)
            }
        }
        Alu::Rcp => {
            if f.approx {
                float::round(fmt, 1.0 / x, 0.0, Rnd::Rn)
            } else {
                let (h, l) = float::div_parts(fmt == Fmt::F64, 1.0, x);
                float::round(fmt, h, l, rnd)
            }
        }
        Alu::Rsqrt => float::round(fmt, 1.0 / x.sqrt(), 0.0, Rnd::Rn),
        Alu::Ex2 => float::round(fmt, x.exp2(), 0.0, Rnd::Rn),
        Alu::Lg2 => float::round(
            fmt,
            if x == 0.0 {
                f64::NEG_INFINITY
            } else {
                x.log2()
            },
            0.0,
            Rnd::Rn,
        ),
        Alu::Sin => float::round(fmt, x.sin(), 0.0, Rnd::Rn),
        Alu::Cos => float::round(fmt, x.cos(), 0.0, Rnd::Rn),
        Alu::Tanh => float::round(fmt, x.tanh(), 0.0, Rnd::Rn),
        _ => return fmt.canonical_nan(),
    };
    result_modifiers(fmt, &f, r)
}

/// The result modifiers of a float op or `cvt`, in this order: `.sat` (clamp to [0, 1], NaN to
/// 0), `.relu` (negative values and -0 to +0, NaN to the canonical NaN), `.satfinite`, then
/// `.ftz` (f32 only).
#[inline]
fn result_modifiers(fmt: Fmt, f: &AluFlags, mut r: u64) -> u64 {
    if f.sat {
        r = sat01(fmt, r);
    }
    if f.relu {
        let v = fmt.to_f64(r);
        if v.is_nan() {
            r = fmt.canonical_nan();
        } else if v < 0.0 || r == 1 << (fmt.bits() - 1) {
            r = 0;
        }
    }
    if f.satfinite {
        r = satfinite(fmt, r);
    }
    if f.ftz && fmt == Fmt::F32 {
        r = fmt.ftz(r);
    }
    r
}

/// `.sat`: clamp to [0, 1], NaN to 0.
#[inline]
fn sat01(fmt: Fmt, r: u64) -> u64 {
    let v = fmt.to_f64(r);
    if v.is_nan() || v <= 0.0 {
        0
    } else if v > 1.0 {
        float::round(fmt, 1.0, 0.0, Rnd::Rn)
    } else {
        r
    }
}

/// `.satfinite`: clamp ±inf to the largest finite value of the format.
pub(super) fn satfinite(fmt: Fmt, r: u64) -> u64 {
    let v = fmt.to_f64(r);
    if v.is_infinite() {
        let max = match fmt {
            Fmt::F16 => 65504.0,
            Fmt::BF16 => half::bf16::MAX.to_f64(),
            Fmt::F32 => f32::MAX as f64,
            Fmt::F64 => f64::MAX,
        };
        float::round(fmt, if v > 0.0 { max } else { -max }, 0.0, Rnd::Rn)
    } else {
        r
    }
}

pub(crate) fn cvt(d: Ty, s: Ty, f: AluFlags, a: u64) -> u64 {
    let rnd = f.rnd;
    match (s.fmt(), d.fmt()) {
        (Some(sf), Some(df)) => {
            let a = if f.ftz && sf == Fmt::F32 {
                sf.ftz(a)
            } else {
                a
            };
            let x = sf.to_f64(a);
            let r = if f.int_rnd {
                if x.is_nan() {
                    df.canonical_nan()
                } else {
                    float::round(df, float::round_int(x, rnd), 0.0, Rnd::Rn)
                }
            } else {
                float::round(df, x, 0.0, rnd)
            };
            result_modifiers(df, &f, r)
        }
        (Some(sf), None) => {
            let a = if f.ftz && sf == Fmt::F32 {
                sf.ftz(a)
            } else {
                a
            };
            let x = sf.to_f64(a);
            if x.is_nan() {
                return 0;
            }
            let r = float::round_int(x, rnd);
            let bits = d.bits();
            let (lo, hi) = if d.signed() {
                (
                    -(2f64.powi(bits as i32 - 1)),
                    2f64.powi(bits as i32 - 1) - 1.0,
                )
            } else {
                (0.0, 2f64.powi(bits as i32) - 1.0)
            };
            let r = r.clamp(lo, hi);
            let v = if d.signed() {
                r as i64 as u64
            } else {
                r as u64
            };
            v & mask_bits(bits)
        }
        (None, Some(df)) => {
            let bits = s.bits();
            let v: i128 = if s.signed() {
                sext(a, bits) as i128
            } else {
                (a & mask_bits(bits)) as i128
            };
            let hi = v as f64;
            let lo = (v - hi as i128) as f64;
            float::round(df, hi, lo, rnd)
        }
        (None, None) => {
            let sb = s.bits();
            let db = d.bits();
            let v: i128 = if s.signed() {
                sext(a, sb) as i128
            } else {
                (a & mask_bits(sb)) as i128
            };
            if f.sat {
                let (lo, hi): (i128, i128) = if d.signed() {
                    (-(1i128 << (db - 1)), (1i128 << (db - 1)) - 1)
                } else {
                    (0, (1i128 << db) - 1)
                };
                (v.clamp(lo, hi) as u64) & mask_bits(db)
            } else if d.signed() && db < 64 {
                // cvt to a signed type sign-extends the truncated value into the register
                (sext(v as u64, db) as u64) & mask_bits(db)
            } else {
                v as u64 & mask_bits(db)
            }
        }
    }
}

/// `cvt.rn.bf16x2.f32 d, a, b` (a → upper half): the f32 inputs are exact, so rounding them with
/// `bf16::from_f32` (round to nearest even) is `cvt`'s result; NaN gives the canonical NaN.
#[inline(always)]
pub(super) fn cvt_rn_bf16x2_f32(a: u64, b: u64) -> u64 {
    let one = |x: u64| {
        let x = f32::from_bits(x as u32);
        if x.is_nan() {
            0x7fff
        } else {
            half::bf16::from_f32(x).to_bits() as u64
        }
    };
    (one(a) << 16) | one(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16x2_fast_path_matches_cvt() {
        let f = AluFlags::default();
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut vals = vec![
            0u64,
            0x8000_0000,
            1,
            0x007f_ffff,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0001,
            0x7f7f_ffff,
            0x3f80_8000,
            0x3f80_8001,
            0x3f81_8000,
            0xbf80_7fff,
        ];
        while vals.len() < 4096 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            vals.push(s >> 32);
        }
        for w in vals.windows(2) {
            let want =
                (cvt(Ty::BF16x2, Ty::F32, f, w[0]) << 16) | cvt(Ty::BF16x2, Ty::F32, f, w[1]);
            assert_eq!(
                cvt_rn_bf16x2_f32(w[0], w[1]),
                want,
                "{:#x} {:#x}",
                w[0],
                w[1]
            );
        }
    }
}
