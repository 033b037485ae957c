//! Helpers shared by the integration tests (`mod common;` in each test file that uses them).

#![allow(dead_code)]

/// `n` seeded uniform values in [−half_width, half_width) (a 64-bit LCG; stable across runs).
pub fn random_span(n: usize, seed: u64, half_width: f32) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * (2.0 * half_width) - half_width
        })
        .collect()
}

/// `n` seeded uniform values in [−1, 1).
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    random_span(n, seed, 1.0)
}

/// Relative L2 error ‖got − want‖ / ‖want‖ in f64.
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

pub mod numerics;
