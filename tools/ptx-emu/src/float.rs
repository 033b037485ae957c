//! Floating-point formats and IEEE rounding helpers.
//!
//! Every float op computes an exact (or `hi + lo` exact) result in f64 and rounds it once to the
//! destination format with the requested rounding mode, so `.rn/.rz/.rm/.rp` are correctly rounded
//! for add/sub/mul/fma/div/sqrt on f16/bf16/f32 (and f64 via error-free transforms).

use half::{bf16, f16};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fmt {
    F16,
    BF16,
    F32,
    F64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rnd {
    Rn,
    Rz,
    Rm,
    Rp,
}

impl Fmt {
    pub fn bits(self) -> u32 {
        match self {
            Fmt::F16 | Fmt::BF16 => 16,
            Fmt::F32 => 32,
            Fmt::F64 => 64,
        }
    }
    #[inline]
    pub fn to_f64(self, b: u64) -> f64 {
        match self {
            Fmt::F16 => f16::from_bits(b as u16).to_f64(),
            Fmt::BF16 => bf16::from_bits(b as u16).to_f64(),
            Fmt::F32 => f32::from_bits(b as u32) as f64,
            Fmt::F64 => f64::from_bits(b),
        }
    }
    #[inline]
    fn rn(self, x: f64) -> u64 {
        match self {
            Fmt::F16 => f16_rn(x) as u64,
            Fmt::BF16 => bf16_rn(x) as u64,
            Fmt::F32 => (x as f32).to_bits() as u64,
            Fmt::F64 => x.to_bits(),
        }
    }
    pub fn canonical_nan(self) -> u64 {
        match self {
            Fmt::F16 => 0x7fff,
            Fmt::BF16 => 0x7fff,
            Fmt::F32 => 0x7fff_ffff,
            Fmt::F64 => 0x7fff_ffff_ffff_ffff,
        }
    }
    fn sign_bit(self) -> u64 {
        1u64 << (self.bits() - 1)
    }
    /// Sign-magnitude bits → ordered integer.
    fn ord(self, b: u64) -> i128 {
        let s = self.sign_bit();
        if b & s != 0 {
            -((b & (s - 1)) as i128)
        } else {
            b as i128
        }
    }
    fn bits_of_ord(self, o: i128, neg_zero: bool) -> u64 {
        if o < 0 {
            self.sign_bit() | (-o) as u64
        } else if o == 0 && neg_zero {
            self.sign_bit()
        } else {
            o as u64
        }
    }
    fn step(self, b: u64, up: bool) -> u64 {
        let o = self.ord(b);
        let n = if up { o + 1 } else { o - 1 };
        self.bits_of_ord(n, false)
    }
    /// Flush a subnormal to a zero of the same sign.
    pub fn ftz(self, b: u64) -> u64 {
        let x = self.to_f64(b);
        let min_normal = match self {
            Fmt::F16 => 6.103515625e-05,
            Fmt::BF16 | Fmt::F32 => f32::MIN_POSITIVE as f64,
            Fmt::F64 => f64::MIN_POSITIVE,
        };
        if x != 0.0 && x.abs() < min_normal {
            b & self.sign_bit()
        } else {
            b
        }
    }
}

/// f64 → f32 rounded to odd: truncated toward zero, then the last bit set when inexact. A
/// following round-to-nearest to a format of at most 22 significant bits is then correctly
/// rounded (no double rounding).
#[inline]
fn f32_round_odd(x: f64) -> f32 {
    let f = x as f32;
    if !x.is_finite() || f as f64 == x {
        return f;
    }
    let mut b = f.to_bits();
    if (f as f64).abs() > x.abs() {
        b -= 1; // one step toward zero (the magnitude is the bit order)
    }
    f32::from_bits(b | 1)
}

/// f64 → f16 bits, round to nearest even. (`half::f16::from_f64` drops the low 32 bits of the
/// f64 before rounding, so a value just above a tie can round down.)
pub(crate) fn f16_rn(x: f64) -> u16 {
    f16::from_f32(f32_round_odd(x)).to_bits()
}

/// f64 → bf16 bits, round to nearest even (`half::bf16::from_f64` double-rounds like f16).
pub(crate) fn bf16_rn(x: f64) -> u16 {
    bf16::from_f32(f32_round_odd(x)).to_bits()
}

#[inline]
fn sgn(x: f64) -> i32 {
    if x > 0.0 {
        1
    } else if x < 0.0 {
        -1
    } else {
        0
    }
}

/// Round the exact value `hi + lo` (|lo| ≤ ulp_f64(hi)/2, `hi` = RN(exact) in f64) to `fmt`.
pub(crate) fn round(fmt: Fmt, hi: f64, lo: f64, rnd: Rnd) -> u64 {
    if hi.is_nan() {
        return fmt.canonical_nan();
    }
    let r = fmt.rn(hi);
    let rv = fmt.to_f64(r);
    let d = hi - rv;
    // sign of (exact - r)
    let s = if d != 0.0 && !d.is_nan() {
        sgn(d)
    } else {
        sgn(lo)
    };
    if s == 0 || hi.is_infinite() {
        return r;
    }
    match rnd {
        Rnd::Rn => {
            if d != 0.0 && lo != 0.0 && fmt != Fmt::F64 && rv.is_finite() {
                // hi exactly halfway between two representable values: lo decides.
                let n = fmt.step(r, d > 0.0);
                let nv = fmt.to_f64(n);
                if nv.is_finite() && (rv + nv) / 2.0 == hi {
                    return if sgn(lo) == sgn(d) { n } else { r };
                }
            }
            r
        }
        Rnd::Rz => {
            if rv == 0.0 {
                return r;
            }
            if (rv > 0.0 && s < 0) || (rv < 0.0 && s > 0) {
                fmt.step(r, rv < 0.0)
            } else {
                r
            }
        }
        Rnd::Rm => {
            if s < 0 {
                fmt.step(r, false)
            } else {
                r
            }
        }
        Rnd::Rp => {
            if s > 0 {
                fmt.step(r, true)
            } else {
                r
            }
        }
    }
}

/// Error-free sum: a + b = s + e exactly.
#[inline]
pub(crate) fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    if !s.is_finite() {
        return (s, 0.0);
    }
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

#[inline]
pub(crate) fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    if !p.is_finite() {
        return (p, 0.0);
    }
    (p, a.mul_add(b, -p))
}

/// a*b + c as (hi, lo) with hi = RN(exact) for inputs of at most 26 significant bits
/// (f32/f16/bf16; the product is then exact in f64).
#[inline]
pub(crate) fn fma_parts(a: f64, b: f64, c: f64) -> (f64, f64) {
    two_sum(a * b, c)
}

/// f64 fma with directed rounding (hi = RN via hardware fma, lo sign from a compensated sum).
pub(crate) fn fma_f64(a: f64, b: f64, c: f64) -> (f64, f64) {
    let hi = a.mul_add(b, c);
    if !hi.is_finite() {
        return (hi, 0.0);
    }
    let (p, pe) = two_prod(a, b);
    let (s, se) = two_sum(p, c);
    // exact = s + se + pe ; residual relative to hi
    let (r1, r1e) = two_sum(s - hi, se);
    let lo = r1 + (r1e + pe);
    (hi, lo)
}

pub(crate) fn div_parts(fmt_in64: bool, a: f64, b: f64) -> (f64, f64) {
    let q = a / b;
    if !q.is_finite() || q == 0.0 {
        return (q, 0.0);
    }
    // remainder a - q*b (exact with fma); sign(lo) = sign(r / b)
    let r = (-q).mul_add(b, a);
    let _ = fmt_in64;
    (q, r / b)
}

pub(crate) fn sqrt_parts(a: f64) -> (f64, f64) {
    let s = a.sqrt();
    if !s.is_finite() || s == 0.0 {
        return (s, 0.0);
    }
    let r = (-s).mul_add(s, a);
    (s, r / (2.0 * s))
}

/// Float → integer rounding for `.rni/.rzi/.rmi/.rpi`.
pub(crate) fn round_int(x: f64, rnd: Rnd) -> f64 {
    match rnd {
        Rnd::Rn => x.round_ties_even(),
        Rnd::Rz => x.trunc(),
        Rnd::Rm => x.floor(),
        Rnd::Rp => x.ceil(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An f32 just above a bf16 (or f16) tie rounds up; exactly at the tie, to even.
    #[test]
    fn narrowing_is_correctly_rounded() {
        // bf16: ulp(1) = 2^-7, tie at 1 + 2^-8
        let tie = 1.0 + 2f64.powi(-8);
        let above = f32::from_bits((tie as f32).to_bits() + 1) as f64;
        assert_eq!(bf16_rn(above), 0x3f81);
        assert_eq!(bf16_rn(tie), 0x3f80);
        let below = f32::from_bits((tie as f32).to_bits() - 1) as f64;
        assert_eq!(bf16_rn(below), 0x3f80);
        assert_eq!(bf16_rn(-above), 0xbf81);
        // tie at 1 + 3·2^-8 (between odd 0x3f81 and even 0x3f82) goes to even
        assert_eq!(bf16_rn(1.0 + 3.0 * 2f64.powi(-8)), 0x3f82);
        // f16: ulp(1) = 2^-10, tie at 1 + 2^-11
        let tie16 = 1.0 + 2f64.powi(-11);
        let above16 = f32::from_bits((tie16 as f32).to_bits() + 1) as f64;
        assert_eq!(f16_rn(above16), 0x3c01);
        assert_eq!(f16_rn(tie16), 0x3c00);
        // an f64 above the tie only in its low 32 bits
        assert_eq!(bf16_rn(tie + 2f64.powi(-40)), 0x3f81);
        // overflow, underflow, specials
        assert_eq!(bf16_rn(1e39), 0x7f80);
        assert_eq!(bf16_rn(-1e39), 0xff80);
        assert_eq!(bf16_rn(1e-300), 0);
        assert_eq!(bf16_rn(-1e-300), 0x8000);
        assert_eq!(bf16_rn(f64::INFINITY), 0x7f80);
        assert!(bf16_rn(f64::NAN) & 0x7fff > 0x7f80);
        assert_eq!(f16_rn(65520.0), 0x7c00);
        assert_eq!(f16_rn(65519.0), 0x7bff);
        // every f32 in a sweep: bf16_rn agrees with half's (correct) f32 → bf16 rounding
        let mut b = 0x3f00_0000u32;
        while b < 0x4100_0000 {
            let f = f32::from_bits(b);
            assert_eq!(bf16_rn(f as f64), bf16::from_f32(f).to_bits(), "{f:e}");
            assert_eq!(f16_rn(f as f64), f16::from_f32(f).to_bits(), "{f:e}");
            b += 0x1_0001;
        }
    }
}
