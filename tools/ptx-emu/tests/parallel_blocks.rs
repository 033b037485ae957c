//! Blocks of one launch on several threads (`LaunchOptions::threads`) give the same memory,
//! statistics and faults as blocks one after another.
mod common;
use common::*;
use ptx_emu::*;

fn opts(threads: u32) -> LaunchOptions {
    LaunchOptions {
        schedules: 2,
        threads,
        ..LaunchOptions::default()
    }
}

/// The bf16 GEMM tile (cp.async, ldmatrix, mma, 12 blocks) with `threads` threads: C and stats.
fn gemm(threads: u32) -> (Vec<u8>, LaunchStats) {
    let (m, n) = (96usize, 128usize);
    let (mut e, _, _, p) = gemm_setup(m, n, 64, 5);
    let st = e.launch_with(p.kernel, p.cfg, &p.params, &opts(threads));
    (e.bytes(p.out, m * n * 4), st.unwrap())
}

#[test]
fn parallel_blocks_match_blocks_in_order() {
    let (c1, s1) = gemm(1);
    for threads in [2, 3, 8] {
        let (c, s) = gemm(threads);
        assert!(c == c1, "{threads} threads: C differs from one thread");
        assert_eq!(s, s1, "{threads} threads: stats");
    }
    assert_eq!(s1.blocks, 12);
}

/// Neighbouring bytes of one 16-byte chunk written by different blocks (the elementwise add
/// writes 4-byte floats, blocks of 3 threads), and a block reading its own global writes back
/// (softmax writes y, then reads it to normalise).
#[test]
fn parallel_blocks_partial_chunks_and_read_back() {
    let n = 1000usize;
    let a = rand_f32(n, 1);
    let b = rand_f32(n, 2);
    let run_add = |threads: u32| {
        let mut e = Emu::new("add.ptx");
        let pa = e.up_f32(&a);
        let pb = e.up_f32(&b);
        let pc = e.up_f32(&vec![7.0; n + 5]);
        let p = params(&[pa, pb, pc], &[n as i32]);
        let st = e.launch_with("add_f32", lin(334, 3), &p, &opts(threads));
        (e.f32s(pc, n + 5), st.unwrap())
    };
    let (out, st) = run_add(4);
    for i in 0..n {
        assert_eq!(out[i], a[i] + b[i], "index {i}");
    }
    assert_eq!(&out[n..], &[7.0; 5], "bytes past n untouched");
    assert_eq!(st, run_add(1).1);

    let (rows, cols) = (7usize, 333usize);
    let run_sm = |threads: u32| {
        let (mut e, _, p) = softmax_setup(rows, cols);
        e.launch_with(p.kernel, p.cfg, &p.params, &opts(threads))
            .unwrap();
        e.bytes(p.out, rows * cols * 4)
    };
    assert!(run_sm(3) == run_sm(1), "softmax differs with 3 threads");
}

/// Global atomics make blocks communicate: such kernels keep blocks in order and stay exact.
#[test]
fn parallel_blocks_keep_global_atomics_exact() {
    let mut e = Emu::new("features.ptx");
    let nb = 5usize;
    let input: Vec<i32> = rand_f32(nb * 128, 21)
        .iter()
        .map(|v| (v * 100_000.0) as i32)
        .collect();
    let pin = e.up_i32(&input);
    let pf = e.upload(&0f32.to_le_bytes());
    let pm = e.upload(&i32::MIN.to_le_bytes());
    let ph = e.upload(&[0u8; 32]);
    let pc = e.upload(&[0u8; 4]);
    let p = params(&[pin, pf, pm, ph, pc], &[]);
    e.launch_with("atomics", lin(nb as u32, 128), &p, &opts(4))
        .unwrap();
    let hist = e.u32s(ph, 8);
    assert_eq!(hist.iter().sum::<u32>() as usize, input.len());
    let ctr = e.i32s(pc, 1)[0];
    assert_eq!(ctr, 2 * input.len() as i32);
}

/// An out-of-bounds store in some blocks: the fault named is the first faulting block in launch
/// order, whatever the threads (with one schedule).
#[test]
fn parallel_blocks_report_the_first_fault_in_launch_order() {
    let n = 1000usize;
    let fault = |threads: u32| {
        let mut e = Emu::new("add.ptx");
        let pa = e.up_f32(&rand_f32(n, 1));
        let pb = e.up_f32(&rand_f32(n, 2));
        // C holds 600 elements: blocks 2.. of 256 threads run past it.
        let pc = e.alloc(600 * 4);
        let p = params(&[pa, pb, pc], &[n as i32]);
        // One schedule: the extra ones visit the blocks in a shuffled order one after another.
        let o = LaunchOptions {
            schedules: 1,
            ..opts(threads)
        };
        e.launch_with("add_f32", lin(4, 256), &p, &o).unwrap_err()
    };
    let f1 = fault(1);
    let f4 = fault(4);
    assert_eq!(f1.kind, FaultKind::OutOfBounds);
    assert_eq!(f4.kind, f1.kind);
    assert_eq!(f4.block, f1.block);
    assert_eq!(f4.thread, f1.thread);
    assert_eq!(f1.block, [2, 0, 0]);
}
