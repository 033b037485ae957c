//! CPU reference of `kernels/cuda/gemm_fp8_sm90.cu`: the e4m3 codec (round to nearest even,
//! saturating to ±448, as PTX `cvt.rn.satfinite.e4m3x2.f32`), per-row quantisation with scale
//! `amax / 448` (the weights' per-output-channel scales at load, the activations' per-row scales
//! of `quantize_rows_e4m3`), and the dequantised linear the FP8 GEMM computes:
//! `C = scale * ((sa QA) . (sb QB)^T + bias [GEGLU] + R)`, the dequantised operands summed in f32
//! by the CPU backend's `linear_ext`.

use anyhow::{ensure, Result};

use super::CpuTensor;
use crate::backends::{Backend, LinearEpilogue, TensorLike};

/// The largest finite e4m3 magnitude.
pub const E4M3_MAX: f32 = 448.0;

/// `x` as e4m3 bits: round to nearest even, |x| > 448 (and ±inf) saturate to ±448, NaN to 0x7f.
pub fn e4m3_from_f32(x: f32) -> u8 {
    if x.is_nan() {
        return 0x7f;
    }
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    let a = x.abs() as f64;
    if a > E4M3_MAX as f64 {
        return sign | 0x7e;
    }
    // exponent of the quantum: 2^-9 for subnormals (a < 2^-6), else 2^(floor(log2 a) - 3)
    let mut e = if a < 2f64.powi(-6) {
        -6
    } else {
        a.log2().floor() as i32
    };
    // log2 rounding guards: 2^e <= a < 2^(e + 1) for normals
    if e > -6 && 2f64.powi(e) > a {
        e -= 1;
    }
    if a >= 2f64.powi(-6) && 2f64.powi(e + 1) <= a {
        e += 1;
    }
    // 0..=16 quanta of 2^(e - 3) (exact scaling by a power of two), rounded to nearest even;
    // codes are continuous across binades: subnormal q, normal (e + 6) * 8 + q
    let q = (a / 2f64.powi(e - 3)).round_ties_even() as i32;
    let code = ((e + 6) * 8 + q) as u8;
    sign | code.min(0x7e)
}

/// The value of e4m3 bits `b` (0x7f / 0xff: NaN).
pub fn e4m3_to_f32(b: u8) -> f32 {
    let (e, m) = (((b >> 3) & 15) as i32, (b & 7) as f32);
    let v = if e == 15 && b & 7 == 7 {
        f32::NAN
    } else if e == 0 {
        m * 2f32.powi(-9)
    } else {
        (8.0 + m) * 2f32.powi(e - 10)
    };
    if b & 0x80 != 0 {
        -v
    } else {
        v
    }
}

/// Dense `rows x k` row-major `x` quantised per row: e4m3 codes (dense, `rows x k`) and scales
/// `amax / 448` (1 for an all-zero row), `q = e4m3(x / s)`; the bytes and scales the GPU's
/// `quantize_rows_e4m3_v1_bf16` writes for the same (bf16-valued) rows.
pub fn quantize_rows(x: &[f32], rows: usize, k: usize) -> (Vec<u8>, Vec<f32>) {
    assert_eq!(
        x.len(),
        rows * k,
        "quantize_rows: {rows} x {k} != {}",
        x.len()
    );
    let mut q = Vec::with_capacity(rows * k);
    let mut s = Vec::with_capacity(rows);
    for row in x.chunks(k.max(1)).take(rows) {
        let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if amax > 0.0 { amax / E4M3_MAX } else { 1.0 };
        q.extend(row.iter().map(|&v| e4m3_from_f32(v / scale)));
        s.push(scale);
    }
    (q, s)
}

/// The values `s[r] * e4m3(q[r, c])` of dense `rows x k` codes.
pub fn dequantize_rows(q: &[u8], s: &[f32], rows: usize, k: usize) -> Vec<f32> {
    (0..rows * k)
        .map(|i| s[i / k.max(1)] * e4m3_to_f32(q[i]))
        .collect()
}

/// The FP8 linear on the CPU: A `(M, K)` quantised per row, W `(N | 2N, K)` per output channel,
/// both dequantised, then `linear_ext` with bias, residual, scale and GEGLU as given.
pub fn linear_fp8_ref(
    x: &CpuTensor,
    w: &CpuTensor,
    bias: Option<&CpuTensor>,
    epi: LinearEpilogue<'_, CpuTensor>,
) -> Result<CpuTensor> {
    ensure!(
        w.rank() == 2 && x.rank() >= 1 && x.shape()[x.rank() - 1] == w.shape()[1],
        "linear_fp8_ref: x {:?} and weight {:?} do not make a linear",
        x.shape(),
        w.shape()
    );
    let k = w.shape()[1];
    let m = x.data().len() / k.max(1);
    let (qa, sa) = quantize_rows(x.data(), m, k);
    let (qw, sw) = quantize_rows(w.data(), w.shape()[0], k);
    let xd = CpuTensor::from_vec(x.shape(), dequantize_rows(&qa, &sa, m, k))?;
    let wd = CpuTensor::from_vec(w.shape(), dequantize_rows(&qw, &sw, w.shape()[0], k))?;
    super::CpuBackend.linear_ext(&xd, &wd, bias, epi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_codec_round_trips_and_rounds() {
        for b in 0u8..=255 {
            if b & 0x7f == 0x7f {
                continue;
            }
            assert_eq!(
                e4m3_from_f32(e4m3_to_f32(b)),
                b,
                "{b:#x} = {}",
                e4m3_to_f32(b)
            );
        }
        assert_eq!(e4m3_from_f32(1.0625), 0x38); // tie -> even (1.0)
        assert_eq!(e4m3_from_f32(1.1875), 0x3a); // tie -> even (1.25)
        assert_eq!(e4m3_from_f32(470.0), 0x7e);
        assert_eq!(e4m3_from_f32(f32::NEG_INFINITY), 0xfe);
        assert_eq!(e4m3_from_f32(2f32.powi(-10)), 0x00); // tie -> even (0)
        assert_eq!(e4m3_from_f32(-1.5 * 2f32.powi(-10)), 0x81);
        assert_eq!(e4m3_to_f32(0x7e), 448.0);
    }

    #[test]
    fn rows_scale_to_448() {
        let x = [0.5f32, -2.0, 1.0, 0.0, 0.0, 0.0];
        let (q, s) = quantize_rows(&x, 2, 3);
        assert_eq!(s, vec![2.0 / 448.0, 1.0]);
        assert_eq!(q[1], 0xfe);
        assert_eq!(&q[3..], &[0, 0, 0]);
        let d = dequantize_rows(&q, &s, 2, 3);
        assert!((d[1] + 2.0).abs() < 1e-6 && (d[0] - 0.5).abs() <= 0.5 / 16.0);
    }
}
