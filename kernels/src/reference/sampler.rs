//! CPU references for the sampler kernels (`timestep_embedding.cu`, `cfg_ddim.cu`). Unlike the
//! other references these are f32 arithmetic in a fixed order, not f64: the op's specification is
//! that order (torch's for the embedding, `composed::cfg_ddim_one` in the engine for the step), and
//! the kernels reproduce it (cfg_ddim bit for bit).

/// `get_timestep_embedding(t, dim, flip_sin_to_cos, shift, scale = 1, max_period = 10000)`:
/// `freq[i] = exp(-ln(10000) * i / (dim / 2 - shift))` with the f32 operands torch uses and a
/// correctly rounded exp; `sin` / `cos` of the f32 argument `t * freq[i]`, rounded to f32.
/// Returns `(t.len(), dim)` row-major; an odd `dim` leaves the last column 0.
pub fn timestep_embedding(t: &[f32], dim: usize, flip_sin_to_cos: bool, shift: f32) -> Vec<f32> {
    let half = dim / 2;
    let neg_ln_max = -(10000f64.ln() as f32);
    let mut y = vec![0.0f32; t.len() * dim];
    for (r, &tr) in t.iter().enumerate() {
        for i in 0..half {
            let ex = neg_ln_max * i as f32 / (half as f32 - shift);
            let freq = (ex as f64).exp() as f32;
            let arg = (tr * freq) as f64;
            let (s, c) = (arg.sin() as f32, arg.cos() as f32);
            let (first, second) = if flip_sin_to_cos { (c, s) } else { (s, c) };
            y[r * dim + i] = first;
            y[r * dim + half + i] = second;
        }
    }
    y
}

/// Classifier-free guidance + one DDIM step (eta 0) on one element; `k` = `[guidance, sqrt(a_t),
/// sqrt(1 - a_t), sqrt(a_prev), direction, prediction (0 eps, 1 v, 2 sample), clip_lo, clip_hi]`.
pub fn cfg_ddim_one(cond: f32, uncond: f32, z: f32, k: &[f32; 8]) -> f32 {
    let m = uncond + k[0] * (cond - uncond);
    let (sa, sb) = (k[1], k[2]);
    let (mut x0, eps) = match k[5] as i32 {
        0 => ((z - sb * m) / sa, m),
        1 => (sa * z - sb * m, sa * m + sb * z),
        _ => (m, (z - sa * m) / sb),
    };
    if x0 < k[6] {
        x0 = k[6];
    }
    if x0 > k[7] {
        x0 = k[7];
    }
    k[3] * x0 + k[4] * eps
}

/// `cfg_ddim` over `out (2, c, s, inner)` and `z (1, c, f, inner)`, the sample being frames
/// `frame_offset..frame_offset + f` of the output. Returns the new `z`.
#[allow(clippy::too_many_arguments)]
pub fn cfg_ddim(
    out: &[f32],
    z: &[f32],
    k: &[f32; 8],
    c: usize,
    s: usize,
    f: usize,
    frame_offset: usize,
    inner: usize,
) -> Vec<f32> {
    assert_eq!(out.len(), 2 * c * s * inner);
    assert_eq!(z.len(), c * f * inner);
    assert!(frame_offset + f <= s);
    let mut y = vec![0.0f32; z.len()];
    for ch in 0..c {
        for fr in 0..f {
            for i in 0..inner {
                let zi = (ch * f + fr) * inner + i;
                let oi = (ch * s + frame_offset + fr) * inner + i;
                y[zi] = cfg_ddim_one(out[oi], out[c * s * inner + oi], z[zi], k);
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestep_embedding_known_values() {
        // t = 0: sin 0 = 0, cos 0 = 1; flip puts cos first; odd dim pads a zero column.
        let y = timestep_embedding(&[0.0, 1.0], 5, true, 1.0);
        assert_eq!(&y[..5], &[1.0, 1.0, 0.0, 0.0, 0.0]);
        // t = 1, i = 0: freq 1 -> cos 1, sin 1; i = 1: freq = exp(-ln 1e4 / 1) = 1e-4
        assert!((y[5] - 1f32.cos()).abs() < 1e-7 && (y[7] - 1f32.sin()).abs() < 1e-7);
        assert!((y[8] - 1e-4).abs() < 1e-10 && y[9] == 0.0);
    }

    #[test]
    fn cfg_ddim_epsilon_with_guidance_one_is_ddim() {
        // g = 1 -> m = cond; epsilon: x0 = (z - sb m) / sa, y = sa_prev x0 + dir m.
        let (sa, sb, sp, d) = (0.8f32, 0.6f32, 0.9f32, 0.43589f32);
        let k = [1.0, sa, sb, sp, d, 0.0, f32::NEG_INFINITY, f32::INFINITY];
        let y = cfg_ddim(&[0.5, 7.0], &[1.0], &k, 1, 1, 1, 0, 1);
        let want = sp * ((1.0 - sb * 0.5) / sa) + d * 0.5;
        assert!((y[0] - want).abs() < 1e-6);
        // clip to [-1, 1]
        let kc = [1.0, sa, sb, sp, d, 0.0, -1.0, 1.0];
        let y = cfg_ddim(&[-10.0, 0.0], &[1.0], &kc, 1, 1, 1, 0, 1);
        assert!((y[0] - (sp * 1.0 + d * -10.0)).abs() < 1e-5);
    }
}
