//! CPU references for the compute kernels (`gemm.cu`, `conv2d.cu`, `attention.cu`), f32 in and out,
//! f64 accumulation. Plain loops: they are the specification.

/// GELU, exact (erf) form.
pub fn gelu_erf(v: f64) -> f64 {
    0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))
}

/// erf to ~1e-15 (Abramowitz-Stegun 7.1.26 is too coarse; use the series / continued fraction).
fn erf(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 3.0 {
        // Maclaurin series: erf x = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        let mut sum = 0.0f64;
        let mut term = ax;
        let mut n = 0.0f64;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 3.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -ax * ax / n;
            if n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc continued fraction (Lentz) for large |x|.
        let mut f = ax;
        for k in (1..60).rev() {
            f = ax + (k as f64 / 2.0) / f;
        }
        1.0 - (-ax * ax).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// `C[z] = scale * (A[z] . op(B[z]) + bias [GEGLU] + R[z])` over dense operands.
/// `b_kn`: B is `(K, N)` (matmul), else `(N | 2N, K)` (linear). `b_batched`: B has `batch` copies.
/// GEGLU (linear only): B and bias have `2 n` rows; value rows `[0, n)`, gate rows `[n, 2n)`.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    b_kn: bool,
    b_batched: bool,
    scale: f32,
    geglu: bool,
) -> Vec<f32> {
    let b_rows = if geglu { 2 * n } else { n };
    let b_size = b_rows * k;
    let mut c = vec![0.0f32; batch * m * n];
    let dot = |z: usize, i: usize, col: usize| -> f64 {
        let bz = if b_batched { &b[z * b_size..] } else { b };
        let mut acc = bias.map_or(0.0, |bias| bias[col] as f64);
        for p in 0..k {
            let bv = if b_kn {
                bz[p * n + col]
            } else {
                bz[col * k + p]
            };
            acc += a[(z * m + i) * k + p] as f64 * bv as f64;
        }
        acc
    };
    for z in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut v = dot(z, i, j);
                if geglu {
                    v *= gelu_erf(dot(z, i, n + j));
                }
                if let Some(r) = residual {
                    v += r[(z * m + i) * n + j] as f64;
                }
                c[(z * m + i) * n + j] = (scale as f64 * v) as f32;
            }
        }
    }
    c
}

/// Convolution geometry (NCHW, groups 1), e.g. SD1.5 `conv1`: `c_in 320, c_out 320, 3x3, pad 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    pub fn h_out(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    pub fn w_out(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
}

/// `y[n, o, p] = scale * (conv(x, w)[n, o, p] + bias[o] + temb[n, o] + R[n, o, p])`, NCHW.
/// x `(N, C_in, H, W)`, w `(C_out, C_in, kh, kw)`, temb `(N, C_out)`, R and y `(N, C_out, Ho, Wo)`.
pub fn conv2d(
    x: &[f32],
    w: &[f32],
    g: ConvGeom,
    bias: Option<&[f32]>,
    temb: Option<&[f32]>,
    residual: Option<&[f32]>,
    scale: f32,
) -> Vec<f32> {
    let (ho, wo) = (g.h_out(), g.w_out());
    let mut y = vec![0.0f32; g.n * g.c_out * ho * wo];
    for n in 0..g.n {
        for o in 0..g.c_out {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias.map_or(0.0, |b| b[o] as f64);
                    for c in 0..g.c_in {
                        for ky in 0..g.kh {
                            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                            if iy < 0 || iy >= g.h as isize {
                                continue;
                            }
                            for kx in 0..g.kw {
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                if ix < 0 || ix >= g.w as isize {
                                    continue;
                                }
                                let xv =
                                    x[((n * g.c_in + c) * g.h + iy as usize) * g.w + ix as usize];
                                let wv = w[((o * g.c_in + c) * g.kh + ky) * g.kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    if let Some(t) = temb {
                        acc += t[n * g.c_out + o] as f64;
                    }
                    let i = ((n * g.c_out + o) * ho + oy) * wo + ox;
                    if let Some(r) = residual {
                        acc += r[i] as f64;
                    }
                    y[i] = (scale as f64 * acc) as f32;
                }
            }
        }
    }
    y
}

/// `o[z] = softmax(scale * q[z] k[z]^T) v[z]` for `z` over `bh` heads; q `(bh, lq, d)`,
/// k / v `(bh, lk, d)`, o `(bh, lq, d)`.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bh: usize,
    lq: usize,
    lk: usize,
    d: usize,
    scale: f32,
) -> Vec<f32> {
    let mut o = vec![0.0f32; bh * lq * d];
    let mut s = vec![0.0f64; lk];
    for z in 0..bh {
        for i in 0..lq {
            let qi = &q[(z * lq + i) * d..(z * lq + i + 1) * d];
            let mut mx = f64::NEG_INFINITY;
            for (j, sj) in s.iter_mut().enumerate() {
                let kj = &k[(z * lk + j) * d..(z * lk + j + 1) * d];
                let dot: f64 = qi.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum();
                *sj = dot * scale as f64;
                mx = mx.max(*sj);
            }
            let mut sum = 0.0;
            for sj in s.iter_mut() {
                *sj = (*sj - mx).exp();
                sum += *sj;
            }
            for c in 0..d {
                let mut acc = 0.0;
                for (j, sj) in s.iter().enumerate() {
                    acc += sj * v[(z * lk + j) * d + c] as f64;
                }
                o[(z * lq + i) * d + c] = (acc / sum) as f32;
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.5, 0.999_593_047_982_555),
            (3.5, 0.999_999_256_901_627_7),
        ] {
            assert!((erf(x) - want).abs() < 1e-12, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-12);
        }
    }

    #[test]
    fn conv_1x1_is_a_gemm() {
        let g = ConvGeom {
            n: 1,
            c_in: 2,
            h: 1,
            w: 2,
            c_out: 1,
            kh: 1,
            kw: 1,
            stride: 1,
            pad: 0,
        };
        let y = conv2d(
            &[1.0, 2.0, 3.0, 4.0],
            &[10.0, 100.0],
            g,
            Some(&[0.5]),
            None,
            None,
            2.0,
        );
        assert_eq!(
            y,
            vec![2.0 * (10.0 + 300.0 + 0.5), 2.0 * (20.0 + 400.0 + 0.5)]
        );
    }
}
