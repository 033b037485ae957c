//! Synthetic checkpoints: deterministic, well-scaled random tensors by name.
//!
//! Every value is a pure function of `(seed, tensor name, index)` through a
//! counter-based generator (SplitMix64 → Box–Muller), so a tensor does not depend
//! on which other tensors exist or in which order they are drawn, and any thread
//! count gives the same bits. Init rules (by the tensor's name and shape), chosen
//! so activations stay O(1) through deep stacks while every layer is non-zero:
//!
//! | tensor | values |
//! |---|---|
//! | `*.weight` of rank ≥ 2 (linear, conv) | N(0, 1) · gain / √fan_in, gain 1 (0.5 for zero-init layers) |
//! | norm / BatchNorm `weight` (rank 1, under a `norm`/`bn`/`layer_norm` name) | 1 + 0.1·N(0,1) |
//! | `*.bias`, other rank-1 tensors | 0.02·N(0,1) |
//! | `running_mean` | 0.05·N(0,1);  `running_var`: 1 + 0.1·|N(0,1)| |
//! | `*_bank` (RCA codebooks) | N(0, 1) |
//! | `weight_g` (weight norm) | 1 + 0.1·N(0,1) |
//!
//! "Zero-init" layers of the spec (pose encoder `conv_out`, clarity `linear_2`,
//! RCA `to_out`, motion `proj_out`) are drawn non-zero too, at half gain, so a
//! dropped op changes the output; a freshly initialised module's identity
//! property is tested separately.

/// SplitMix64: a bijective 64-bit mixer.
#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a name: the stream id of a tensor.
pub fn name_hash(name: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Counter-based standard normal: element `i` of stream `(seed, stream)`.
#[inline]
pub fn normal_at(seed: u64, stream: u64, i: u64) -> f32 {
    let key = splitmix64(seed ^ splitmix64(stream));
    let a = splitmix64(key ^ (2 * i));
    let b = splitmix64(key ^ (2 * i + 1));
    // (0, 1] uniforms from the top 53 bits.
    let u1 = ((a >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let u2 = (b >> 11) as f64 / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Fill `out` with N(0,1) values of stream `(seed, stream)` starting at element 0.
pub fn fill_normal(seed: u64, stream: u64, out: &mut [f32]) {
    for (i, v) in out.iter_mut().enumerate() {
        *v = normal_at(seed, stream, i as u64);
    }
}

/// Is this one of the spec's zero-initialised layers?
pub fn is_zero_init_layer(name: &str) -> bool {
    name.starts_with("pose_encoder.conv_out.")
        || name.starts_with("clarity_embedding.linear_2.")
        || (name.starts_with("rca.") && name.contains(".to_out."))
        || (name.contains("motion_modules") && name.contains(".proj_out."))
}

/// The synthetic value rule for one tensor (see the module docs).
pub fn init_tensor(seed: u64, name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut v = vec![0f32; n];
    fill_normal(seed, name_hash(name), &mut v);
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let parent = name.rsplit('.').nth(1).unwrap_or("");
    let is_norm = ["norm", "bn", "layer_norm", "ln"]
        .iter()
        .any(|k| parent.contains(k))
        || parent.starts_with("downsample") && shape.len() == 1;
    let (scale, offset, abs) = match leaf {
        "running_mean" => (0.05, 0.0, false),
        "running_var" => (0.1, 1.0, true),
        "weight_g" | "original0" => (0.1, 1.0, false),
        l if l.ends_with("_bank") => (1.0, 0.0, false),
        "weight" | "weight_v" | "original1" if shape.len() >= 2 => {
            let fan_in: usize = shape[1..].iter().product();
            let gain = if is_zero_init_layer(name) { 0.5 } else { 1.0 };
            (gain / (fan_in.max(1) as f64).sqrt(), 0.0, false)
        }
        "weight" if is_norm => (0.1, 1.0, false),
        "weight" if shape.len() == 1 => (0.1, 1.0, false),
        _ => (0.02, 0.0, false),
    };
    for x in v.iter_mut() {
        let z = if abs { x.abs() } else { *x };
        *x = (offset + scale * z as f64) as f32;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_are_standard_and_deterministic() {
        let mut a = vec![0f32; 100_000];
        fill_normal(7, 3, &mut a);
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        let mut b = vec![0f32; 100_000];
        fill_normal(7, 3, &mut b);
        assert_eq!(a, b);
        fill_normal(8, 3, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn init_rules_by_name() {
        let w = init_tensor(1, "down.0.conv.weight", &[8, 16, 3, 3]);
        let rms = (w.iter().map(|x| x * x).sum::<f32>() / w.len() as f32).sqrt();
        assert!((rms - (1.0 / 144f32).sqrt()).abs() < 0.03, "{rms}");
        let g = init_tensor(1, "mid.norm1.weight", &[64]);
        assert!(g.iter().all(|&x| (x - 1.0).abs() < 0.6));
        assert!(init_tensor(1, "rca.face.1.to_out.weight", &[4, 4])
            .iter()
            .any(|&x| x != 0.0));
    }
}
