//! Helpers shared by the emulator self-tests.
#![allow(dead_code, clippy::result_large_err)]

use ptx_emu::*;

pub fn ptx(name: &str) -> String {
    let p = format!("{}/tests/ptx/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {p}: {e}"))
}

pub fn module(name: &str) -> Module {
    Module::parse(&ptx(name)).unwrap_or_else(|e| panic!("parse {name}: {e}"))
}

/// Deterministic pseudo-random f32 in [-1, 1).
pub fn rand_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
pub fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
pub fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
pub fn bytes_u32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn upload(mem: &mut Memory, data: &[u8]) -> u64 {
    let a = mem.alloc(data.len()).unwrap();
    mem.write(a, data).unwrap();
    a
}
pub fn download(mem: &Memory, addr: u64, bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes];
    mem.read(addr, &mut out).unwrap();
    out
}

pub fn cfg(grid: [u32; 3], block: [u32; 3], smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid,
        block,
        dynamic_smem_bytes: smem,
    }
}

/// Launch with `schedules` seeded schedules and all detectors on.
pub fn run(
    m: &Module,
    k: &str,
    c: LaunchConfig,
    params: &[Vec<u8>],
    mem: &mut Memory,
) -> Result<LaunchStats, Fault> {
    let p: Vec<&[u8]> = params.iter().map(|v| v.as_slice()).collect();
    let opts = LaunchOptions {
        schedules: 3,
        ..LaunchOptions::with_checks(Checks::Full)
    };
    // Every kernel also runs at `PTX_EMU_CHECKS=fast` on a copy of the memory: when the full
    // run passes, the fast one must pass with bit-identical memory.
    let mut fast_mem = mem.clone();
    let fast = launch(
        m,
        k,
        &c,
        &p,
        &mut fast_mem,
        &LaunchOptions::with_checks(Checks::Fast),
    );
    // ... and at `full` with the decoded fast path off (every instruction through the general
    // path): the same faults, statistics and bits.
    let mut general_mem = mem.clone();
    let general = launch(
        m,
        k,
        &c,
        &p,
        &mut general_mem,
        &LaunchOptions {
            decoded: false,
            ..opts
        },
    );
    let full = launch(m, k, &c, &p, mem, &opts);
    if let Ok(full_st) = &full {
        let st = fast.unwrap_or_else(|f| panic!("{k}: passes at full, faults at fast: {f}"));
        assert_eq!(st, *full_st, "{k}: statistics differ between levels");
        assert!(
            fast_mem == *mem,
            "{k}: results differ between PTX_EMU_CHECKS=full and fast"
        );
        let st = general.unwrap_or_else(|f| panic!("{k}: faults without the decoded path: {f}"));
        assert_eq!(
            st, *full_st,
            "{k}: statistics differ without the decoded path"
        );
        assert!(
            general_mem == *mem,
            "{k}: results differ with and without the decoded fast path"
        );
    } else {
        let (a, b) = (full.as_ref().unwrap_err(), general.as_ref().unwrap_err());
        assert_eq!(
            (a.kind, a.ptx_line, a.block, a.thread),
            (b.kind, b.ptx_line, b.block, b.thread),
            "{k}: a different fault without the decoded path"
        );
    }
    full
}

pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let mut num = 0f64;
    let mut den = 0f64;
    for (g, w) in got.iter().zip(want) {
        num += (*g as f64 - *w as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    (num / den.max(1e-300)).sqrt()
}

/// Line (1-based) of the first line of `src` containing `needle`.
pub fn line_of(src: &str, needle: &str) -> usize {
    src.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in PTX"))
        + 1
}
