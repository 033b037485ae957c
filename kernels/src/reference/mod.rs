//! CPU references for every kernel, on f32 data with f64 accumulation. Tests round bf16 inputs to
//! bf16 first and feed the same values to both sides, so the reference sees exactly what the kernel
//! reads. Plain loops on purpose: they are the specification.

pub mod compute;
pub mod sampler;

pub use sampler::{cfg_ddim, timestep_embedding};

/// `y = alpha * act(x + bias[(i / inner) % channels]) + beta * residual` (see `elementwise.cu`).
#[allow(clippy::too_many_arguments)]
pub fn bias_act(
    x: &[f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    inner: usize,
    silu: bool,
    alpha: f32,
    beta: f32,
) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let mut v = v as f64;
            if let Some(b) = bias {
                v += b[(i / inner) % b.len()] as f64;
            }
            if silu {
                v = silu_f64(v);
            }
            v *= alpha as f64;
            if let Some(r) = residual {
                v += beta as f64 * r[i] as f64;
            }
            v as f32
        })
        .collect()
}

fn silu_f64(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// Row softmax of `scale * x` over `(rows, cols)`; a fully `-inf` row gives zeros.
pub fn softmax(x: &[f32], rows: usize, cols: usize, scale: f32) -> Vec<f32> {
    assert_eq!(x.len(), rows * cols);
    let mut y = vec![0.0f32; x.len()];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let m = row
            .iter()
            .map(|&v| scale as f64 * v as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let shift = if m == f64::NEG_INFINITY { 0.0 } else { m };
        let s: f64 = row
            .iter()
            .map(|&v| (scale as f64 * v as f64 - shift).exp())
            .sum();
        for (j, &v) in row.iter().enumerate() {
            y[r * cols + j] = if s > 0.0 {
                ((scale as f64 * v as f64 - shift).exp() / s) as f32
            } else {
                0.0
            };
        }
    }
    y
}

/// GroupNorm over `(n, c, s)` with `groups` groups, biased variance, optional SiLU.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    n: usize,
    c: usize,
    s: usize,
    groups: usize,
    eps: f32,
    silu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), n * c * s);
    let cpg = c / groups;
    let len = cpg * s;
    let mut y = vec![0.0f32; x.len()];
    for b in 0..n {
        for g in 0..groups {
            let base = (b * c + g * cpg) * s;
            let xs = &x[base..base + len];
            let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
            let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            let rstd = 1.0 / (var + eps as f64).sqrt();
            for (i, &v) in xs.iter().enumerate() {
                let ch = g * cpg + i / s;
                let mut o = (v as f64 - mean) * rstd * gamma[ch] as f64 + beta[ch] as f64;
                if silu {
                    o = silu_f64(o);
                }
                y[base + i] = o as f32;
            }
        }
    }
    y
}

/// `C[b] = A[b] (m, k) * B[b] (n, k)^T + bias (n)`, dense operands; `b_batched = false` shares B.
#[allow(clippy::too_many_arguments)]
pub fn gemm_nt(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    b_batched: bool,
) -> Vec<f32> {
    let mut c = vec![0.0f32; batch * m * n];
    for z in 0..batch {
        let a = &a[z * m * k..(z + 1) * m * k];
        let b = if b_batched {
            &b[z * n * k..(z + 1) * n * k]
        } else {
            &b[..n * k]
        };
        for i in 0..m {
            for j in 0..n {
                let mut acc = bias.map_or(0.0, |bias| bias[j] as f64);
                for p in 0..k {
                    acc += a[i * k + p] as f64 * b[j * k + p] as f64;
                }
                c[z * m * n + i * n + j] = acc as f32;
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one() {
        let x: Vec<f32> = (0..12).map(|i| (i as f32 * 0.7).sin() * 3.0).collect();
        let y = softmax(&x, 3, 4, 0.5);
        for r in 0..3 {
            let s: f32 = y[r * 4..r * 4 + 4].iter().sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
        let masked = softmax(&[f32::NEG_INFINITY; 3], 1, 3, 1.0);
        assert_eq!(masked, vec![0.0; 3]);
    }

    #[test]
    fn group_norm_normalises() {
        let x: Vec<f32> = (0..2 * 4 * 5)
            .map(|i| (i as f32 * 1.3).cos() + i as f32 * 0.1)
            .collect();
        let y = group_norm(&x, &[1.0; 4], &[0.0; 4], 2, 4, 5, 2, 1e-6, false);
        for g in 0..4 {
            let s = &y[g * 10..g * 10 + 10];
            let mean: f32 = s.iter().sum::<f32>() / 10.0;
            let var: f32 = s.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 10.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
                "group {g}: mean {mean} var {var}"
            );
        }
    }

    #[test]
    fn gemm_matches_hand_product() {
        // A (2x3) * B (2x3)^T
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, -1.0, 0.5, 0.5, 0.5];
        let c = gemm_nt(&a, &b, Some(&[10.0, 20.0]), 1, 2, 2, 3, false);
        assert_eq!(c, vec![8.0, 23.0, 8.0, 27.5]);
    }
}

/// `rca_temporal_query` (see `rca.cu`): `x + a_s + bank[n mod frames]` on `(n, l, c)` tokens.
pub fn rca_temporal_query(
    x: &[f32],
    a_s: &[f32],
    bank: &[f32],
    (n, l, c): (usize, usize, usize),
) -> Vec<f32> {
    let frames = bank.len() / c;
    (0..n * l * c)
        .map(|i| {
            let (row, ch) = (i / (l * c), i % c);
            (x[i] as f64 + a_s[i] as f64 + bank[(row % frames) * c + ch] as f64) as f32
        })
        .collect()
}

/// `rca_motion_sum`: `a_s + a_t`, plus `f_id[n - r0]` on rows `r0..r0 + f_id rows`.
pub fn rca_motion_sum(
    a_s: &[f32],
    a_t: &[f32],
    f_id: Option<(&[f32], usize)>,
    row_len: usize,
) -> Vec<f32> {
    (0..a_s.len())
        .map(|i| {
            let mut v = a_s[i] as f64 + a_t[i] as f64;
            if let Some((f, r0)) = f_id {
                let lo = r0 * row_len;
                if i >= lo && i < lo + f.len() {
                    v += f[i - lo] as f64;
                }
            }
            v as f32
        })
        .collect()
}

/// `rca_merge`: `f_in[n, c, p] + sigmoid(b2 + Σ_j w2[j] silu(hid[n, j, p])) · tok[n, p, c]`.
pub fn rca_merge(
    f_in: &[f32],
    tok: &[f32],
    hid: &[f32],
    w2: &[f32],
    b2: Option<f32>,
    (n, c, p): (usize, usize, usize),
) -> Vec<f32> {
    let c4 = w2.len();
    let mut out = vec![0f32; n * c * p];
    for img in 0..n {
        for px in 0..p {
            let mut m = b2.unwrap_or(0.0) as f64;
            for j in 0..c4 {
                m += w2[j] as f64 * silu_f64(hid[(img * c4 + j) * p + px] as f64);
            }
            let m = 1.0 / (1.0 + (-m).exp());
            for ch in 0..c {
                let idx = (img * c + ch) * p + px;
                out[idx] = (f_in[idx] as f64 + m * tok[(img * p + px) * c + ch] as f64) as f32;
            }
        }
    }
    out
}
