//! Blocks of one launch on several threads (`LaunchOptions::threads`) give the same memory,
//! statistics and faults as blocks one after another.
mod common;
use common::*;
use half::bf16;
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
    let m = module("gemm_bf16.ptx");
    let mut mem = Memory::new();
    let (m_, n_, k_) = (96usize, 128usize, 64usize);
    let a: Vec<u8> = rand_f32(m_ * k_, 5)
        .iter()
        .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
        .collect();
    let b: Vec<u8> = rand_f32(k_ * n_, 6)
        .iter()
        .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
        .collect();
    let pa = upload(&mut mem, &a);
    let pb = upload(&mut mem, &b);
    let pc = mem.alloc(m_ * n_ * 4).unwrap();
    let params: Vec<Vec<u8>> = vec![
        pa.to_le_bytes().to_vec(),
        pb.to_le_bytes().to_vec(),
        pc.to_le_bytes().to_vec(),
        (m_ as i32).to_le_bytes().to_vec(),
        (n_ as i32).to_le_bytes().to_vec(),
        (k_ as i32).to_le_bytes().to_vec(),
    ];
    let p: Vec<&[u8]> = params.iter().map(|v| v.as_slice()).collect();
    let c = cfg([(n_ / 32) as u32, (m_ / 32) as u32, 1], [128, 1, 1], 0);
    let st = launch(&m, "gemm_bf16_tile", &c, &p, &mut mem, &opts(threads)).unwrap();
    (download(&mem, pc, m_ * n_ * 4), st)
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
    let m = module("add.ptx");
    let n = 1000usize;
    let a = rand_f32(n, 1);
    let b = rand_f32(n, 2);
    let run_add = |threads: u32| {
        let mut mem = Memory::new();
        let pa = upload(&mut mem, &f32_bytes(&a));
        let pb = upload(&mut mem, &f32_bytes(&b));
        let pc = upload(&mut mem, &f32_bytes(&vec![7.0; n + 5]));
        let params: Vec<Vec<u8>> = vec![
            pa.to_le_bytes().to_vec(),
            pb.to_le_bytes().to_vec(),
            pc.to_le_bytes().to_vec(),
            (n as i32).to_le_bytes().to_vec(),
        ];
        let p: Vec<&[u8]> = params.iter().map(|v| v.as_slice()).collect();
        let c = cfg([334, 1, 1], [3, 1, 1], 0);
        let st = launch(&m, "add_f32", &c, &p, &mut mem, &opts(threads)).unwrap();
        (bytes_f32(&download(&mem, pc, (n + 5) * 4)), st)
    };
    let (out, st) = run_add(4);
    for i in 0..n {
        assert_eq!(out[i], a[i] + b[i], "index {i}");
    }
    assert_eq!(&out[n..], &[7.0; 5], "bytes past n untouched");
    assert_eq!(st, run_add(1).1);

    let m = module("softmax.ptx");
    let (rows, cols) = (7usize, 333usize);
    let x: Vec<f32> = rand_f32(rows * cols, 3).iter().map(|v| v * 4.0).collect();
    let run_sm = |threads: u32| {
        let mut mem = Memory::new();
        let px = upload(&mut mem, &f32_bytes(&x));
        let py = mem.alloc(rows * cols * 4).unwrap();
        let params: Vec<Vec<u8>> = vec![
            px.to_le_bytes().to_vec(),
            py.to_le_bytes().to_vec(),
            (cols as i32).to_le_bytes().to_vec(),
        ];
        let p: Vec<&[u8]> = params.iter().map(|v| v.as_slice()).collect();
        let c = cfg([rows as u32, 1, 1], [128, 1, 1], 0);
        launch(&m, "softmax_rows", &c, &p, &mut mem, &opts(threads)).unwrap();
        download(&mem, py, rows * cols * 4)
    };
    assert!(run_sm(3) == run_sm(1), "softmax differs with 3 threads");
}

/// Global atomics make blocks communicate: such kernels keep blocks in order and stay exact.
#[test]
fn parallel_blocks_keep_global_atomics_exact() {
    let m = module("features.ptx");
    let nb = 5usize;
    let input: Vec<i32> = rand_f32(nb * 128, 21)
        .iter()
        .map(|v| (v * 100_000.0) as i32)
        .collect();
    let mut mem = Memory::new();
    let pin = upload(
        &mut mem,
        &input
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<_>>(),
    );
    let pf = upload(&mut mem, &0f32.to_le_bytes());
    let pm = upload(&mut mem, &i32::MIN.to_le_bytes());
    let ph = upload(&mut mem, &[0u8; 32]);
    let pc = upload(&mut mem, &[0u8; 4]);
    let params: Vec<Vec<u8>> = [pin, pf, pm, ph, pc]
        .iter()
        .map(|a| a.to_le_bytes().to_vec())
        .collect();
    let p: Vec<&[u8]> = params.iter().map(|v| v.as_slice()).collect();
    let c = cfg([nb as u32, 1, 1], [128, 1, 1], 0);
    launch(&m, "atomics", &c, &p, &mut mem, &opts(4)).unwrap();
    let hist = bytes_u32(&download(&mem, ph, 32));
    assert_eq!(hist.iter().sum::<u32>() as usize, input.len());
    let ctr = i32::from_le_bytes(download(&mem, pc, 4).try_into().unwrap());
    assert_eq!(ctr, 2 * input.len() as i32);
}

/// An out-of-bounds store in some blocks: the fault named is the first faulting block in launch
/// order, whatever the threads (with one schedule).
#[test]
fn parallel_blocks_report_the_first_fault_in_launch_order() {
    let m = module("add.ptx");
    let n = 1000usize;
    let fault = |threads: u32| {
        let mut mem = Memory::new();
        let pa = upload(&mut mem, &f32_bytes(&rand_f32(n, 1)));
        let pb = upload(&mut mem, &f32_bytes(&rand_f32(n, 2)));
        // C holds 600 elements: blocks 2.. of 256 threads run past it.
        let pc = mem.alloc(600 * 4).unwrap();
        let params: Vec<Vec<u8>> = vec![
            pa.to_le_bytes().to_vec(),
            pb.to_le_bytes().to_vec(),
            pc.to_le_bytes().to_vec(),
            (n as i32).to_le_bytes().to_vec(),
        ];
        let p: Vec<&[u8]> = params.iter().map(|v| v.as_slice()).collect();
        let c = cfg([4, 1, 1], [256, 1, 1], 0);
        // One schedule: the extra ones visit the blocks in a shuffled order one after another.
        let o = LaunchOptions {
            schedules: 1,
            ..opts(threads)
        };
        launch(&m, "add_f32", &c, &p, &mut mem, &o).unwrap_err()
    };
    let f1 = fault(1);
    let f4 = fault(4);
    assert_eq!(f1.kind, FaultKind::OutOfBounds);
    assert_eq!(f4.kind, f1.kind);
    assert_eq!(f4.block, f1.block);
    assert_eq!(f4.thread, f1.thread);
    assert_eq!(f1.block, [2, 0, 0]);
}
