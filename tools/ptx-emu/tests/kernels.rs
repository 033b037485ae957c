//! NVRTC-compiled kernels (sources next to the PTX in tests/ptx/) run against CPU references.
mod common;
use common::*;
use half::bf16;
use ptx_emu::*;

#[test]
fn elementwise_add_matches_cpu() {
    let m = module("add.ptx");
    let mut mem = Memory::new();
    let n = 1000usize;
    let a = rand_f32(n, 1);
    let b = rand_f32(n, 2);
    let pa = upload(&mut mem, &f32_bytes(&a));
    let pb = upload(&mut mem, &f32_bytes(&b));
    let pc = mem.alloc(n * 4).unwrap();
    let st = run(
        &m,
        "add_f32",
        cfg([4, 1, 1], [256, 1, 1], 0),
        &[
            pa.to_le_bytes().to_vec(),
            pb.to_le_bytes().to_vec(),
            pc.to_le_bytes().to_vec(),
            (n as i32).to_le_bytes().to_vec(),
        ],
        &mut mem,
    )
    .unwrap();
    let out = bytes_f32(&download(&mem, pc, n * 4));
    for i in 0..n {
        assert_eq!(out[i], a[i] + b[i], "index {i}");
    }
    assert_eq!(st.blocks, 4);
    assert!(st.thread_instructions > 0);
}

#[test]
fn softmax_rows_matches_cpu() {
    let m = module("softmax.ptx");
    let mut mem = Memory::new();
    let (rows, cols) = (5usize, 333usize);
    let x: Vec<f32> = rand_f32(rows * cols, 3).iter().map(|v| v * 4.0).collect();
    let px = upload(&mut mem, &f32_bytes(&x));
    let py = mem.alloc(rows * cols * 4).unwrap();
    run(
        &m,
        "softmax_rows",
        cfg([rows as u32, 1, 1], [128, 1, 1], 0),
        &[
            px.to_le_bytes().to_vec(),
            py.to_le_bytes().to_vec(),
            (cols as i32).to_le_bytes().to_vec(),
        ],
        &mut mem,
    )
    .unwrap();
    let y = bytes_f32(&download(&mem, py, rows * cols * 4));
    let mut want = vec![0f32; rows * cols];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let s: f64 = row.iter().map(|v| ((v - mx) as f64).exp()).sum();
        for c in 0..cols {
            want[r * cols + c] = (((row[c] - mx) as f64).exp() / s) as f32;
        }
    }
    let e = rel_l2(&y, &want);
    assert!(e < 1e-5, "rel L2 {e}");
}

pub fn gemm_bf16_run(
    m_: usize,
    n_: usize,
    k_: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>, LaunchStats) {
    let m = module("gemm_bf16.ptx");
    let mut mem = Memory::new();
    let a: Vec<bf16> = rand_f32(m_ * k_, seed)
        .iter()
        .map(|&v| bf16::from_f32(v))
        .collect();
    let b: Vec<bf16> = rand_f32(k_ * n_, seed + 1)
        .iter()
        .map(|&v| bf16::from_f32(v))
        .collect();
    let ab: Vec<u8> = a.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
    let bb: Vec<u8> = b.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
    let pa = upload(&mut mem, &ab);
    let pb = upload(&mut mem, &bb);
    let pc = mem.alloc(m_ * n_ * 4).unwrap();
    let st = run(
        &m,
        "gemm_bf16_tile",
        cfg([(n_ / 32) as u32, (m_ / 32) as u32, 1], [128, 1, 1], 0),
        &[
            pa.to_le_bytes().to_vec(),
            pb.to_le_bytes().to_vec(),
            pc.to_le_bytes().to_vec(),
            (m_ as i32).to_le_bytes().to_vec(),
            (n_ as i32).to_le_bytes().to_vec(),
            (k_ as i32).to_le_bytes().to_vec(),
        ],
        &mut mem,
    )
    .unwrap_or_else(|f| panic!("{f}"));
    let c = bytes_f32(&download(&mem, pc, m_ * n_ * 4));
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
