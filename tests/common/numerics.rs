//! Error bounds derived from the floating-point formats (docs/numerics.md), for tests that
//! compare a bf16-storage result with an f32 (or f64) reference by relative L2.
//!
//! Use from a test file that has `mod common;`:
//! `assert!(e <= common::numerics::bf16_bound(k), ...)`.

/// Unit roundoff of bf16 (8 significant bits, round to nearest even): 2^-8.
pub const U_BF16: f64 = 1.0 / 256.0;

/// Unit roundoff of f32 (24 significant bits): 2^-24.
pub const U_F32: f64 = 1.0 / 16_777_216.0;

/// Accumulation error of an f32 sum of `k` products, relative to the result: the probabilistic
/// bound λ·√k·u (Higham & Mary 2019) times the condition ‖|a||b|‖ / ‖a·b‖ ≈ √k of zero-mean
/// data, with λ = 4: 4·k·u_f32 (1.4e-3 at k = 5760, a 3×3 conv over 640 channels).
pub fn f32_accumulation(k: usize) -> f64 {
    4.0 * k as f64 * U_F32
}

/// An op whose inputs are already bf16 values (the reference reads the same values), that
/// accumulates `k` terms in f32 and stores its output in bf16: one output rounding (each element
/// off by at most u_bf16 relative, so at most u_bf16 in relative L2) plus the accumulation.
/// k = 1 for elementwise ops; the reduction length for GEMM / conv (C_in·kh·kw) / attention
/// (max(head dim, Lk)) / norms (group or row size).
pub fn bf16_bound(k: usize) -> f64 {
    U_BF16 + f32_accumulation(k)
}

/// As [`bf16_bound`] for a product whose `rounded` operands (1 or 2) are f32 values rounded to
/// bf16 on the way in: each rounding perturbs every term by a relative error ≤ u_bf16, and
/// independent errors add in quadrature over the k terms, so √rounded·u_bf16 more (the √2·u of
/// a GEMM with both operands rounded).
pub fn bf16_operands_bound(k: usize, rounded: usize) -> f64 {
    (rounded as f64).sqrt() * U_BF16 + bf16_bound(k)
}
