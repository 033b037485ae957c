//! Emulator throughput on the tiny model's real kernels at their real shapes, in warp-instructions
//! per second per core, at both checking levels (`full`: every hazard detector and the extra
//! schedule; `fast`: bounds and alignment only, one schedule). See the table in
//! `docs/emulator.md`.
//!
//! Shapes (tiny preset: 128² frames → 16² latents, 8 + 2 motion frames, classifier-free guidance
//! doubles the batch to 20; UNet level 0 has 32 channels, 2 heads, 8 groups):
//! - `linear_v1_bf16`: the level-0 feed-forward input projection, M = 20·256 tokens, N = 128,
//!   K = 32;
//! - `conv2d_v1_bf16`: the level-0 3×3 conv, N = 20, 32 → 32 channels, 16×16;
//! - `attention_d48_v1_bf16`: level-0 spatial self-attention, B = 20, H = 2, L = 256, D = 16;
//! - `group_norm_silu_v1_bf16`: level-0 norm, N = 20, C = 32, S = 256, 8 groups.
//!
//! Blocks run on one thread (`threads: 1`), so the figure is per core. The first lines printed
//! give warp-instructions per CPU-second of the benchmark thread (the meaningful number on a loaded
//! machine); criterion's `elem/s` is warp-instructions per wall-clock second.
//!
//! Run: `cargo bench --bench emulator`. Knobs: `EMU_BENCH_TABLE_ONLY=1` prints the table only;
//! `EMU_BENCH_FILTER=gemm` keeps the cases whose name contains the string; `EMU_BENCH_LEVEL=fast`
//! (or `full`) keeps one level; `EMU_BENCH_CHECKSUM=1` prints a hash of the device memory after
//! the first launch of each case and level (equal across levels and versions when the results are
//! bit-identical).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use cyberhost_kernels::{attention, conv2d, gemm, group_norm};
use ptx_emu::{launch, LaunchConfig, LaunchOptions, Memory, Module};
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tools/ptx-emu/tests/common/mod.rs"]
mod emu_common;
use emu_common::cpu_seconds;

struct Case {
    name: &'static str,
    module: Module,
    entry: &'static str,
    cfg: LaunchConfig,
    params: Vec<u8>,
    mem: Memory,
}

impl Case {
    /// `entry` of `kernels/ptx/{module}.ptx` over a fresh memory that `setup` fills, giving the
    /// launch configuration and the kernel parameters.
    fn build<P: bytemuck::Pod>(
        name: &'static str,
        module: &str,
        entry: &'static str,
        setup: impl FnOnce(&mut Memory) -> (cyberhost_kernels::LaunchConfig, P),
    ) -> Case {
        let mut mem = Memory::new();
        let (launch, params) = setup(&mut mem);
        Case {
            name,
            module: Module::parse(&ptx(module)).unwrap(),
            entry,
            cfg: cfg(launch),
            params: bytemuck::bytes_of(&params).to_vec(),
            mem,
        }
    }
}

fn ptx(name: &str) -> String {
    let p = format!("{}/kernels/ptx/{name}.ptx", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// `n` bf16 values in [-1, 1) (the integration tests' seeded generator), as bytes.
fn bf16_data(n: usize, seed: u64) -> Vec<u8> {
    emu_common::bf16_bytes(&common::random_span(n, seed, 1.0))
}

fn buf(mem: &mut Memory, elems: usize, seed: u64) -> u64 {
    let a = mem.alloc(elems * 2).unwrap();
    mem.write(a, &bf16_data(elems, seed)).unwrap();
    a
}

fn cfg(c: cyberhost_kernels::LaunchConfig) -> LaunchConfig {
    LaunchConfig {
        grid: c.grid,
        block: c.block,
        dynamic_smem_bytes: c.dynamic_smem_bytes,
    }
}

/// The cases whose name contains `EMU_BENCH_FILTER` (all when unset).
fn cases() -> Vec<Case> {
    let f = std::env::var("EMU_BENCH_FILTER").unwrap_or_default();
    all_cases()
        .into_iter()
        .filter(|c| c.name.contains(f.as_str()))
        .collect()
}

fn all_cases() -> Vec<Case> {
    let gemm = Case::build(
        "gemm linear 5120x128x32",
        "gemm",
        gemm::GemmOp::Linear.entry(),
        |mem| {
            let shape = gemm::GemmShape {
                batch: 1,
                m: 5120,
                n: 128,
                k: 32,
            };
            let a = buf(mem, 5120 * 32, 1);
            let b = buf(mem, 128 * 32, 2);
            let bias = buf(mem, 128, 3);
            let c = buf(mem, 5120 * 128, 4);
            let ptrs = gemm::GemmPtrs {
                a,
                b,
                bias,
                residual: 0,
                c,
            };
            let layout = gemm::GemmLayout::contiguous(gemm::GemmOp::Linear, shape, false, true);
            let p = gemm::GemmParams::new(
                gemm::GemmOp::Linear,
                ptrs,
                shape,
                layout,
                gemm::GemmEpilogue::default(),
            )
            .unwrap();
            (gemm::launch_config(shape, false), p)
        },
    );
    let conv = Case::build(
        "conv2d 20x32x16x16 3x3 ->32",
        "conv2d",
        "conv2d_v1_bf16",
        |mem| {
            let s = conv2d::Conv2dShape::square(20, 32, 16, 16, 32, 3, 1, 1);
            let x = buf(mem, 20 * 32 * 256, 5);
            let w = buf(mem, 32 * 32 * 9, 6);
            let bias = buf(mem, 32, 7);
            let y = buf(mem, 20 * 32 * 256, 8);
            let ptrs = conv2d::Conv2dPtrs {
                x,
                w,
                bias,
                temb: 0,
                residual: 0,
                y,
            };
            let p = conv2d::Conv2dParams::new(ptrs, s, 1.0).unwrap();
            (conv2d::launch_config(s), p)
        },
    );
    let attention = Case::build(
        "attention 20x2x256x256 d16",
        "attention",
        attention::traits_for(16, cyberhost_kernels::DType::Bf16)
            .unwrap()
            .entry,
        |mem| {
            let shape = attention::AttentionShape {
                batch: 20,
                heads: 2,
                lq: 256,
                lk: 256,
                d: 16,
            };
            let n = 20 * 2 * 256 * 16;
            let ptrs = [
                buf(mem, n, 9),
                buf(mem, n, 10),
                buf(mem, n, 11),
                buf(mem, n, 12),
            ];
            let st = attention::AttnStrides::blhd(2, 256, 16);
            let p = attention::AttentionParams::new(ptrs, [st; 4], shape, 0.25).unwrap();
            let t = attention::traits_for(shape.d, cyberhost_kernels::DType::Bf16).unwrap();
            (attention::launch_config(t, shape, 108), p)
        },
    );
    let group_norm = Case::build(
        "group_norm_silu 20x32x256 g8",
        "group_norm",
        "group_norm_silu_v1_bf16",
        |mem| {
            let shape = group_norm::GroupNormShape {
                n: 20,
                c: 32,
                s: 256,
                groups: 8,
            };
            let x = buf(mem, 20 * 32 * 256, 13);
            let g = buf(mem, 32, 14);
            let b = buf(mem, 32, 15);
            let y = buf(mem, 20 * 32 * 256, 16);
            let p = group_norm::GroupNormParams::new(x, g, b, y, shape, 1e-5).unwrap();
            (group_norm::launch_config(shape), p)
        },
    );
    vec![gemm, conv, attention, group_norm]
}

/// The two checking levels, one thread (per-core figures); `EMU_BENCH_LEVEL=full|fast` keeps
/// one of them.
fn levels() -> Vec<(&'static str, LaunchOptions)> {
    // `full`: every hazard detector and the extra schedule
    let level = |full: bool| LaunchOptions {
        schedules: if full { 2 } else { 1 },
        detect_races: full,
        detect_uninit_shared: full,
        threads: 1,
        ..LaunchOptions::default()
    };
    let keep = std::env::var("EMU_BENCH_LEVEL").ok();
    [("full", level(true)), ("fast", level(false))]
        .into_iter()
        .filter(|(l, _)| keep.as_deref().is_none_or(|k| k == *l))
        .collect()
}

/// FNV-1a over the bytes of every allocation the cases write (`EMU_BENCH_CHECKSUM=1` prints it
/// after the first launch of each level, so levels and versions can be compared bit for bit).
fn mem_checksum(mem: &Memory) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut a = 0x2_0000_0000u64;
    // allocations are handed out upward from this address; walk them in order
    while let Some((start, len)) = next_alloc(mem, a) {
        let mut buf = vec![0u8; len];
        mem.read(start, &mut buf).unwrap();
        for b in buf {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        a = start + len as u64 + 1;
    }
    h
}

fn next_alloc(mem: &Memory, from: u64) -> Option<(u64, usize)> {
    // allocations are 256-byte aligned; probe upward over a bounded range
    let mut a = from.div_ceil(256) * 256;
    for _ in 0..(1 << 16) {
        if let Some(r) = mem.allocation_containing(a) {
            return Some(r);
        }
        a += 256;
    }
    None
}

fn run(c: &mut Case, opts: &LaunchOptions) -> ptx_emu::LaunchStats {
    let p = [c.params.as_slice()];
    launch(&c.module, c.entry, &c.cfg, &p, &mut c.mem, opts)
        .unwrap_or_else(|f| panic!("{}: {f}", c.name))
}

/// Warp-instructions (of the launch's result schedule) per CPU-second of this thread, measured
/// over at least `min_cpu` seconds.
fn table(cases: &mut [Case], min_cpu: f64) {
    println!("| kernel | level | warp-instr / launch | launches | M warp-instr/s per core |");
    println!("|---|---|---|---|---|");
    let checksum = std::env::var_os("EMU_BENCH_CHECKSUM").is_some();
    for c in cases.iter_mut() {
        for (lvl, opts) in levels() {
            let st = run(c, &opts);
            if checksum {
                println!("checksum {} [{lvl}]: {:016x}", c.name, mem_checksum(&c.mem));
            }
            let c0 = cpu_seconds().unwrap_or(0.0);
            let t0 = std::time::Instant::now();
            let mut reps = 0u64;
            let dt = loop {
                run(c, &opts);
                reps += 1;
                let dc = cpu_seconds().map(|c1| c1 - c0).unwrap_or(0.0);
                let dt = if dc > 0.0 {
                    dc
                } else {
                    t0.elapsed().as_secs_f64()
                };
                if dt >= min_cpu && reps >= 2 {
                    break dt;
                }
            };
            println!(
                "| {} | {lvl} | {} | {reps} | {:.2} |",
                c.name,
                st.warp_instructions,
                st.warp_instructions as f64 * reps as f64 / dt / 1e6
            );
        }
    }
}

fn bench(cr: &mut Criterion) {
    let mut cases = cases();
    table(&mut cases, 2.0);
    if std::env::var_os("EMU_BENCH_TABLE_ONLY").is_some() {
        return;
    }
    let mut g = cr.benchmark_group("emulator");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for c in cases.iter_mut() {
        for (lvl, opts) in levels() {
            let st = run(c, &opts);
            g.throughput(Throughput::Elements(st.warp_instructions));
            g.bench_function(format!("{} [{lvl}]", c.name), |b| b.iter(|| run(c, &opts)));
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
