//! OCP FP8 (E4M3, E5M2): the packed `cvt` forms of PTX 7.8+ (sm_89/sm_90) and the element
//! decoding of FP8 `wgmma` operands.
//!
//! E4M3: bias 7, 3 mantissa bits, subnormals m/8·2^-6, max finite 448 (0x7e), no infinity,
//! NaN 0x7f / 0xff. E5M2: bias 15, 2 mantissa bits, subnormals m/4·2^-14, max finite 57344
//! (0x7b), ±inf 0x7c / 0xfc, NaN exponent 31 with a non-zero mantissa. Conversions to FP8 round
//! to nearest even once from the exact input (f32 and f16 are exact in f64) and, `.satfinite`
//! being mandatory, clamp every finite or infinite out-of-range value to ±max finite; NaN gives
//! the canonical 0x7f. `.relu` turns negative results (and -0) into +0.

use super::*;

struct F8 {
    mant_bits: i32,
    bias: i32,
    max: f64,
}

const E4M3: F8 = F8 {
    mant_bits: 3,
    bias: 7,
    max: 448.0,
};
const E5M2: F8 = F8 {
    mant_bits: 2,
    bias: 15,
    max: 57344.0,
};

fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// The exponent of a positive normal f64.
fn exp_of(a: f64) -> i32 {
    ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023
}

fn to_f8(x: f64, fmt: &F8, relu: bool) -> u8 {
    if x.is_nan() {
        return 0x7f;
    }
    let x = if relu && x.is_sign_negative() { 0.0 } else { x };
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    let a = x.abs();
    let emin = 1 - fmt.bias;
    let r = if a.is_infinite() {
        fmt.max
    } else if a == 0.0 {
        0.0
    } else {
        let e = exp_of(a).max(emin);
        let q = pow2(e - fmt.mant_bits);
        let t = a / q; // exact: scaling by a power of two
        let f = t.floor();
        let d = t - f;
        let n = if d > 0.5 || (d == 0.5 && f % 2.0 == 1.0) {
            f + 1.0
        } else {
            f
        };
        (n * q).min(fmt.max)
    };
    if r == 0.0 {
        return sign;
    }
    let e = exp_of(r);
    let bits = if e < emin {
        (r / pow2(emin - fmt.mant_bits)) as u8
    } else {
        let m = (r / pow2(e - fmt.mant_bits)) as i32 - (1 << fmt.mant_bits);
        (((e + fmt.bias) << fmt.mant_bits) | m) as u8
    };
    sign | bits
}

pub(crate) fn f64_to_e4m3(x: f64, relu: bool) -> u8 {
    to_f8(x, &E4M3, relu)
}

pub(crate) fn f64_to_e5m2(x: f64, relu: bool) -> u8 {
    to_f8(x, &E5M2, relu)
}

pub(crate) fn e4m3_to_f64(b: u8) -> f64 {
    let s = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let (e, m) = (((b >> 3) & 0xf) as i32, (b & 7) as f64);
    if e == 15 && b & 7 == 7 {
        return f64::NAN;
    }
    s * if e == 0 {
        m / 8.0 * pow2(-6)
    } else {
        (1.0 + m / 8.0) * pow2(e - 7)
    }
}

pub(crate) fn e5m2_to_f64(b: u8) -> f64 {
    let s = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let (e, m) = (((b >> 2) & 0x1f) as i32, (b & 3) as f64);
    if e == 31 {
        return if b & 3 == 0 {
            s * f64::INFINITY
        } else {
            f64::NAN
        };
    }
    s * if e == 0 {
        m / 4.0 * pow2(-14)
    } else {
        (1.0 + m / 4.0) * pow2(e - 15)
    }
}

/// FP8 → f16 bits (exact; NaN → the canonical 0x7fff).
fn f8_to_f16(b: u8, e5m2: bool, relu: bool) -> u16 {
    let v = if e5m2 { e5m2_to_f64(b) } else { e4m3_to_f64(b) };
    if v.is_nan() {
        return 0x7fff;
    }
    let v = if relu && v.is_sign_negative() { 0.0 } else { v };
    f16::from_f64(v).to_bits()
}

/// One lane of an FP8 `cvt`: sources `a` (and `b`) as register bits.
pub(crate) fn cvt_f8(c: F8Cvt, a: u64, b: u64) -> u64 {
    let f8 = |x: f64, e5m2: bool, relu: bool| -> u64 {
        (if e5m2 {
            f64_to_e5m2(x, relu)
        } else {
            f64_to_e4m3(x, relu)
        }) as u64
    };
    match c {
        F8Cvt::FromF32 { e5m2, relu } => {
            let (x, y) = (
                f32::from_bits(a as u32) as f64,
                f32::from_bits(b as u32) as f64,
            );
            (f8(x, e5m2, relu) << 8) | f8(y, e5m2, relu)
        }
        F8Cvt::FromF16x2 { e5m2, relu } => {
            let hi = f16::from_bits((a >> 16) as u16).to_f64();
            let lo = f16::from_bits(a as u16).to_f64();
            (f8(hi, e5m2, relu) << 8) | f8(lo, e5m2, relu)
        }
        F8Cvt::ToF16x2 { e5m2, relu } => {
            let hi = f8_to_f16((a >> 8) as u8, e5m2, relu) as u64;
            let lo = f8_to_f16(a as u8, e5m2, relu) as u64;
            (hi << 16) | lo
        }
    }
}

impl<'a, 'b> Block<'a, 'b> {
    pub(super) fn exec_cvt_f8(&mut self, w: &mut Warp, ins: &Instr, c: F8Cvt, exec: u32) {
        for l in lanes(exec) {
            let a = self.val(w, &ins.s[0], l);
            let b = ins.s.get(1).map_or(0, |o| self.val(w, o, l));
            Self::set(w, &ins.d[0], l, cvt_f8(c, a, b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_e4m3_and_e5m2_value_round_trips() {
        for b in 0..=255u8 {
            let x = e4m3_to_f64(b);
            if x.is_nan() {
                assert!(b & 0x7f == 0x7f);
                assert_eq!(f64_to_e4m3(x, false), 0x7f);
            } else {
                assert_eq!(f64_to_e4m3(x, false), b, "e4m3 {b:#x} = {x}");
            }
            let y = e5m2_to_f64(b);
            if y.is_nan() {
                assert_eq!(f64_to_e5m2(y, false), 0x7f);
            } else if y.is_infinite() {
                // satfinite: ±inf → ±57344
                assert_eq!(f64_to_e5m2(y, false), (b & 0x80) | 0x7b);
            } else {
                assert_eq!(f64_to_e5m2(y, false), b, "e5m2 {b:#x} = {y}");
            }
        }
    }

    #[test]
    fn rounding_and_saturation_hand_checked() {
        // e4m3 around 1: spacing 1/8; 1 + 1/16 is a tie → even (1.0 = 0x38)
        assert_eq!(f64_to_e4m3(1.0, false), 0x38);
        assert_eq!(f64_to_e4m3(1.0625, false), 0x38);
        assert_eq!(f64_to_e4m3(1.1875, false), 0x3a); // tie between 1.125 (0x39) and 1.25 → 0x3a
        assert_eq!(f64_to_e4m3(1.0626, false), 0x39);
        // max 448 = 0x7e; 464 is the tie with the (NaN) 480 pattern → 448 by satfinite
        assert_eq!(f64_to_e4m3(448.0, false), 0x7e);
        assert_eq!(f64_to_e4m3(470.0, false), 0x7e);
        assert_eq!(f64_to_e4m3(1e9, false), 0x7e);
        assert_eq!(f64_to_e4m3(f64::NEG_INFINITY, false), 0xfe);
        // smallest subnormal 2^-9 = 0x01; half of it ties to even (0)
        assert_eq!(f64_to_e4m3(pow2(-9), false), 0x01);
        assert_eq!(f64_to_e4m3(pow2(-10), false), 0x00);
        assert_eq!(f64_to_e4m3(-pow2(-10) * 1.5, false), 0x81);
        assert_eq!(f64_to_e4m3(-3.0, true), 0x00);
        // e5m2: 57344 = 0x7b, 1.0 = 0x3c, smallest subnormal 2^-16 = 0x01
        assert_eq!(f64_to_e5m2(57344.0, false), 0x7b);
        assert_eq!(f64_to_e5m2(61440.0, false), 0x7b);
        assert_eq!(f64_to_e5m2(1.0, false), 0x3c);
        assert_eq!(f64_to_e5m2(pow2(-16), false), 0x01);
        assert_eq!(f64_to_e5m2(1.125, false), 0x3c); // tie between 1.0 and 1.25 → even
        assert_eq!(f64_to_e5m2(1.126, false), 0x3d);
        // cvt packing: a → upper byte
        let p = cvt_f8(
            F8Cvt::FromF32 {
                e5m2: false,
                relu: false,
            },
            2.0f32.to_bits() as u64,
            (-0.5f32).to_bits() as u64,
        );
        assert_eq!(p, 0x40b0);
        let h = cvt_f8(
            F8Cvt::ToF16x2 {
                e5m2: false,
                relu: false,
            },
            0x40b0,
            0,
        );
        assert_eq!(h, (0x4000 << 16) | 0xb800);
        // e5m2 → f16 is the top byte of the f16
        let h = cvt_f8(
            F8Cvt::ToF16x2 {
                e5m2: true,
                relu: false,
            },
            0x7c3c,
            0,
        );
        assert_eq!(h, (0x7c00 << 16) | 0x3c00);
    }
}
