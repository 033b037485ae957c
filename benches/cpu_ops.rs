//! Criterion benches for the CPU reference backend's heavy ops.
//! Throughput is reported in elements/s where one element is one FLOP, so
//! "Gelem/s" reads as GFLOP/s (a multiply-add counts 2).
//!
//! Run: `cargo bench --bench cpu_ops` (about two minutes on 2 cores);
//! filter with e.g. `cargo bench --bench cpu_ops -- attention`.

use std::time::Duration;

#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use cyberhost_engine::backends::cpu::{CpuBackend, CpuTensor};
use cyberhost_engine::backends::{Backend, Conv2dParams};

/// Seeded values in [-1, 1) (`common::random`, the suite's one generator).
fn rand_t(shape: &[usize], seed: u64) -> CpuTensor {
    let n: usize = shape.iter().product();
    CpuBackend
        .from_f32(shape, &common::random(n, seed))
        .unwrap()
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g
}

fn gemm(c: &mut Criterion) {
    let cpu = CpuBackend;
    let mut g = configure(c, "cpu_linear");
    for (m, k, n) in [(4096, 320, 320), (1024, 1280, 1280)] {
        let x = rand_t(&[m, k], 1);
        let w = rand_t(&[n, k], 2);
        let b = rand_t(&[n], 3);
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        g.bench_function(format!("{m}x{k}x{n}"), |bch| {
            bch.iter(|| cpu.linear(&x, &w, Some(&b)).unwrap())
        });
    }
    g.finish();
}

fn conv(c: &mut Criterion) {
    let cpu = CpuBackend;
    let mut g = configure(c, "cpu_conv2d_3x3");
    for (n, ci, h, co) in [(2, 320, 64, 320), (8, 64, 32, 64)] {
        let x = rand_t(&[n, ci, h, h], 4);
        let w = rand_t(&[co, ci, 3, 3], 5);
        let b = rand_t(&[co], 6);
        g.throughput(Throughput::Elements((2 * n * co * h * h * ci * 9) as u64));
        g.bench_function(format!("{n}x{ci}x{h}x{h}->{co}"), |bch| {
            bch.iter(|| {
                cpu.conv2d(&x, &w, Some(&b), Conv2dParams::new(1, 1))
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn attention(c: &mut Criterion) {
    let cpu = CpuBackend;
    let mut g = configure(c, "cpu_attention");
    for (h, lq, lk, d) in [(8, 4096, 4096, 40), (8, 1024, 1024, 80)] {
        let q = rand_t(&[1, h, lq, d], 7);
        let k = rand_t(&[1, h, lk, d], 8);
        let v = rand_t(&[1, h, lk, d], 9);
        let scale = 1.0 / (d as f32).sqrt();
        // q·kᵀ and p·v
        g.throughput(Throughput::Elements((4 * h * lq * lk * d) as u64));
        g.bench_function(format!("h{h}_{lq}x{lk}_d{d}"), |bch| {
            bch.iter(|| cpu.attention(&q, &k, &v, scale).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, gemm, conv, attention);
criterion_main!(benches);
