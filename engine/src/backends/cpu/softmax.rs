//! Softmax over the last dimension: exp(x − max) / Σ exp(x − max).
//!
//! The exponential is `exp_nonpos`, a Cephes-style polynomial that vectorises
//! (libm's scalar `expf` dominated attention time); its error is ≤ 2 ulp on the
//! softmax domain (−∞, 0], checked against f64 `exp` in the unit test below.

use anyhow::Result;
use rayon::prelude::*;

use super::CpuTensor;
use crate::backends::shape::last_dim;
use crate::backends::TensorLike;

/// e^x for x ≤ 0 (returns 0 below −87, where e^x is under f32's normal range;
/// NaN stays NaN). Written with adds, multiplies and bit casts only so loops
/// over it vectorise on baseline x86-64.
#[inline(always)]
pub(crate) fn exp_nonpos(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // 0.693359375, exact in 9 bits
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2²³ rounds to the nearest integer, which lands in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.max(-87.0);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let er = p * r * r + r + 1.0;
    // 2^n from the integer held in t's mantissa (n ∈ [−126, 0] after the clamp).
    let ni = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let scale = f32::from_bits(((ni + 127) as u32) << 23);
    let y = er * scale;
    if x < -87.0 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y
    }
}

/// In-place softmax of one row.
#[inline]
pub(crate) fn softmax_row(row: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l { v } else { *l };
        }
    }
    let mut max = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for l in lanes {
        max = if l > max { l } else { max };
    }
    // NaN inputs, and rows of only −∞, come out NaN as in PyTorch (NaN − max, −∞ − −∞).
    for v in row.iter_mut() {
        *v = exp_nonpos(*v - max);
    }
    let mut acc = [0.0f64; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v as f64;
        }
    }
    let sum: f64 =
        acc.iter().sum::<f64>() + chunks.remainder().iter().map(|&v| v as f64).sum::<f64>();
    let inv = (1.0 / sum) as f32;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

pub(crate) fn softmax_last(t: &CpuTensor) -> Result<CpuTensor> {
    let last = last_dim("softmax_last", t.shape())?;
    let mut out = t.data().to_vec();
    if last > 0 {
        out.par_chunks_mut(last)
            .with_min_len(1.max(4096 / last))
            .for_each(softmax_row);
    }
    Ok(CpuTensor::new_unchecked(t.shape().to_vec(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_nonpos_is_within_2_ulp() {
        let mut worst = 0.0f64;
        let n = 2_000_000;
        for i in 0..=n {
            let x = -87.0f32 * i as f32 / n as f32;
            let want = (x as f64).exp();
            let got = exp_nonpos(x) as f64;
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2.5e-7, "max relative error {worst:e}");
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert_eq!(exp_nonpos(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpos(f32::NAN).is_nan());
    }
}
