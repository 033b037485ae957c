//! Emulator throughput (thread-instructions per second) on a GEMM-like kernel: the bf16
//! ldmatrix + mma.sync + cp.async GEMM tile of `tests/ptx/gemm_bf16.ptx` (128x128x256, 16 blocks
//! of 128 threads) and the row softmax of `tests/ptx/softmax.ptx`, one schedule, all detectors on.
//! Criterion's "elem/s" is thread-instructions/s.
//!
//! Run: `cargo bench -p ptx-emu --bench emu_throughput`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ptx_emu::*;
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{bf16_bytes, cpu_seconds, gemm_cfg, lin, module, params, slices};

fn bench(c: &mut Criterion) {
    let opts = LaunchOptions {
        schedules: 1,
        ..LaunchOptions::default()
    };
    // GEMM
    let m = module("gemm_bf16.ptx");
    let (mm, nn, kk) = (128usize, 128usize, 256usize);
    let mut mem = Memory::new();
    let pa = mem.alloc(mm * kk * 2).unwrap();
    let pb = mem.alloc(kk * nn * 2).unwrap();
    let pc = mem.alloc(mm * nn * 4).unwrap();
    let a: Vec<f32> = (0..mm * kk).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect();
    let b: Vec<f32> = (0..kk * nn)
        .map(|i| (i % 5) as f32 * 0.125 - 0.25)
        .collect();
    mem.write(pa, &bf16_bytes(&a)).unwrap();
    mem.write(pb, &bf16_bytes(&b)).unwrap();
    let cfg = gemm_cfg(mm, nn);
    let params1 = params(&[pa, pb, pc], &[mm as i32, nn as i32, kk as i32]);
    let p = slices(&params1);
    let st = launch(&m, "gemm_bf16_tile", &cfg, &p, &mut mem, &opts).unwrap();
    let t0 = std::time::Instant::now();
    let c0 = cpu_seconds();
    let reps = 20;
    for _ in 0..reps {
        launch(&m, "gemm_bf16_tile", &cfg, &p, &mut mem, &opts).unwrap();
    }
    let dt = t0.elapsed().as_secs_f64() / reps as f64;
    let dc = c0.map(|c0| (cpu_seconds().unwrap() - c0) / reps as f64);
    println!(
        "gemm_bf16_tile 128x128x256: {} thread-instructions, {} warp-instructions per launch; {:.1} M thread-instr/s wall-clock{}",
        st.thread_instructions,
        st.warp_instructions,
        st.thread_instructions as f64 / dt / 1e6,
        dc.map(|dc| format!(", {:.1} M thread-instr per CPU-second (this thread)", st.thread_instructions as f64 / dc / 1e6))
            .unwrap_or_default()
    );
    let mut g = c.benchmark_group("ptx_emu");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(st.thread_instructions));
    g.bench_function("gemm_bf16_tile_128x128x256", |bch| {
        bch.iter(|| launch(&m, "gemm_bf16_tile", &cfg, &p, &mut mem, &opts).unwrap())
    });
    // softmax
    let m2 = module("softmax.ptx");
    let (rows, cols) = (64usize, 1024usize);
    let px = mem.alloc(rows * cols * 4).unwrap();
    let py = mem.alloc(rows * cols * 4).unwrap();
    let x: Vec<u8> = (0..rows * cols)
        .flat_map(|i| ((i % 13) as f32 * 0.3).to_le_bytes())
        .collect();
    mem.write(px, &x).unwrap();
    let cfg2 = lin(rows as u32, 256);
    let params2 = params(&[px, py], &[cols as i32]);
    let p2 = slices(&params2);
    let st2 = launch(&m2, "softmax_rows", &cfg2, &p2, &mut mem, &opts).unwrap();
    g.throughput(Throughput::Elements(st2.thread_instructions));
    g.bench_function("softmax_rows_64x1024", |bch| {
        bch.iter(|| launch(&m2, "softmax_rows", &cfg2, &p2, &mut mem, &opts).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
