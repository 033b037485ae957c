//! NVRTC-compiled kernels (sources next to the PTX in tests/ptx/) run against CPU references.
mod common;
use common::*;
use half::bf16;
use ptx_emu::*;

#[test]
fn elementwise_add_matches_cpu() {
    let mut e = Emu::new("add.ptx");
    let n = 1000usize;
    let a = rand_f32(n, 1);
    let b = rand_f32(n, 2);
    let pa = e.up_f32(&a);
    let pb = e.up_f32(&b);
    let pc = e.alloc(n * 4);
    let st = e.ok("add_f32", lin(4, 256), &params(&[pa, pb, pc], &[n as i32]));
    let out = e.f32s(pc, n);
    for i in 0..n {
        assert_eq!(out[i], a[i] + b[i], "index {i}");
    }
    assert_eq!(st.blocks, 4);
    assert!(st.thread_instructions > 0);
}

#[test]
fn softmax_rows_matches_cpu() {
    let (rows, cols) = (5usize, 333usize);
    let (mut e, x, p) = softmax_setup(rows, cols);
    e.ok(p.kernel, p.cfg, &p.params);
    let y = e.f32s(p.out, rows * cols);
    let mut want = vec![0f32; rows * cols];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let s: f64 = row.iter().map(|v| ((v - mx) as f64).exp()).sum();
        for c in 0..cols {
            want[r * cols + c] = (((row[c] - mx) as f64).exp() / s) as f32;
        }
    }
    let err = rel_l2(&y, &want);
    assert!(err < 1e-5, "rel L2 {err}");
}

pub fn gemm_bf16_run(
    m_: usize,
    n_: usize,
    k_: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>, LaunchStats) {
    let (mut e, af, bf, p) = gemm_setup(m_, n_, k_, seed);
    let a: Vec<bf16> = af.iter().map(|&v| bf16::from_f32(v)).collect();
    let b: Vec<bf16> = bf.iter().map(|&v| bf16::from_f32(v)).collect();
    let st = e.ok(p.kernel, p.cfg, &p.params);
    let c = e.f32s(p.out, m_ * n_);
    let mut want = vec![0f32; m_ * n_];
    for i in 0..m_ {
        for j in 0..n_ {
            let mut s = 0f64;
            for kk in 0..k_ {
                s += a[i * k_ + kk].to_f64() * b[kk * n_ + j].to_f64();
            }
            want[i * n_ + j] = s as f32;
        }
    }
    (c, want, st)
}

#[test]
fn gemm_bf16_tile_ldmatrix_mma_cp_async_matches_cpu() {
    let (c, want, _) = gemm_bf16_run(64, 96, 128, 7);
    let e = rel_l2(&c, &want);
    assert!(e < 1e-6, "rel L2 {e}");
}
