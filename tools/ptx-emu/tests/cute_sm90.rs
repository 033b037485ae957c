//! Independent sm_90a PTX: CUTLASS 4.2's CuTe Hopper tutorial GEMM (`wgmma_sm90.cu`: cp.async
//! into 128B-swizzled shared memory, `SM90_64x64x16_F32BF16BF16_SS` from shared-memory
//! descriptors built by CuTe, fence / commit / wait_group by `warpgroup_*`), compiled by the
//! pinned NVRTC 12.4 (tests/ptx/sm90/build_cute_sm90.py), run on the emulator against a CPU GEMM.
//! The descriptors, swizzle and fragment layouts come from CuTe's code, not ours: a mismatch in
//! the emulator's reading of any of them shows up as wrong C elements.
#![allow(clippy::type_complexity)]
mod common;
use common::*;
use half::bf16;
use ptx_emu::*;

/// `kernel` (TN: A M×K row-major, B N×K row-major; NT: A, B column-major) for an m × n × k
/// problem: C = alpha·A·Bᵀ + beta·C, C column-major. Checked per element against the f64 product
/// of the bf16 inputs with the bound of the emulator's wgmma arithmetic: each m64n64k16 sums 16
/// exact products in f64 and rounds once to f32 into the f32 accumulator (k/16 roundings of at
/// most one unit roundoff u = 2⁻²⁴ of a partial sum, each partial sum bounded by Σ|a·b|), then
/// axpby adds at most three more roundings (alpha·acc, beta·c, the sum).
fn gemm(kernel: &str, m: usize, n: usize, k: usize, alpha: f32, beta: f32) {
    let src = ptx("sm90/cute_wgmma_sm90.ptx");
    let module = Module::parse(&src).unwrap_or_else(|e| panic!("parse: {e}"));
    let mut e = Emu::from_module(module);
    let a: Vec<f32> = rand_f32(m * k, 11)
        .iter()
        .map(|&x| bf16::from_f32(x).to_f32())
        .collect();
    let b: Vec<f32> = rand_f32(n * k, 12)
        .iter()
        .map(|&x| bf16::from_f32(x).to_f32())
        .collect();
    let c0 = rand_f32(m * n, 13);
    let tn = kernel.ends_with("tn");
    // logical A(i, kk), B(j, kk)
    let (a_at, b_at): (
        Box<dyn Fn(usize, usize) -> usize>,
        Box<dyn Fn(usize, usize) -> usize>,
    ) = if tn {
        (
            Box::new(move |i, kk| i * k + kk),
            Box::new(move |j, kk| j * k + kk),
        )
    } else {
        (
            Box::new(move |i, kk| i + kk * m),
            Box::new(move |j, kk| j + kk * n),
        )
    };
    let pa = e.upload(&bf16_bytes(&a));
    let pb = e.upload(&bf16_bytes(&b));
    let pc = e.up_f32(&c0);
    let (lda, ldb) = if tn { (k, k) } else { (m, n) };
    let params = vec![
        p32(m as i32),
        p32(n as i32),
        p32(k as i32),
        p64(pa),
        p32(lda as i32),
        p64(pb),
        p32(ldb as i32),
        p64(pc),
        p32(m as i32),
        alpha.to_le_bytes().to_vec(),
        beta.to_le_bytes().to_vec(),
    ];
    // SharedStorage: A and B stages, 128 × 64 bf16 × 3 each
    let smem = 2 * 128 * 64 * 3 * 2;
    let grid = [(m / 128) as u32, (n / 128) as u32, 1];
    // The tutorial's mainloop has no barrier between each thread's `cp.async.wait_all` and the
    // wgmma that reads what the other threads' copies wrote (nor a `fence.proxy.async`): by the
    // PTX memory model a race, which the race detection reports (`tutorial_race_is_reported`
    // below: a cp.async landing in an operand of another warp's outstanding wgmma). On hardware it works because the warpgroup's wgmma starts only when all four
    // warps issued it, which the emulator models (a warp's wait_group holds until then). So the
    // results are checked with the race detector off (uninitialised-read checks on), under
    // three schedules.
    let opts = LaunchOptions {
        schedules: 3,
        detect_races: false,
        detect_uninit_shared: true,
        ..LaunchOptions::with_checks(Checks::Full)
    };
    let c = cfg(grid, [128, 1, 1], smem);
    launch(&e.m, kernel, &c, &slices(&params), &mut e.mem, &opts)
        .unwrap_or_else(|f| panic!("{kernel}: {f}"));
    let got = e.f32s(pc, m * n);
    let u = 2f64.powi(-24);
    let mut worst = 0f64;
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut mag) = (0f64, 0f64);
            for kk in 0..k {
                let p = a[a_at(i, kk)] as f64 * b[b_at(j, kk)] as f64;
                s += p;
                mag += p.abs();
            }
            let c = c0[i + j * m] as f64;
            let want = alpha as f64 * s + beta as f64 * c;
            let bound = ((k / 16) as f64 * alpha.abs() as f64 * mag
                + 3.0 * (alpha.abs() as f64 * mag + (beta as f64 * c).abs()))
                * u;
            let err = (got[i + j * m] as f64 - want).abs();
            assert!(
                err <= bound,
                "{kernel} C[{i}][{j}] = {} want {want} (err {err:e} > bound {bound:e})",
                got[i + j * m]
            );
            worst = worst.max(err / bound.max(f64::MIN_POSITIVE));
        }
    }
    println!("{kernel} {m}x{n}x{k}: worst error / bound = {worst:.3}");
}

#[test]
fn cute_wgmma_tn_128b_swizzle_k_major() {
    gemm("cute_wgmma_tn", 128, 128, 256, 1.0, 0.0);
    gemm("cute_wgmma_tn", 256, 128, 128, 0.5, 0.25);
}

#[test]
fn cute_wgmma_nt_128b_swizzle_mn_major() {
    gemm("cute_wgmma_nt", 128, 256, 192, 1.0, 0.5);
}

#[test]
fn tutorial_race_is_reported() {
    let src = ptx("sm90/cute_wgmma_sm90.ptx");
    let mut e = Emu::from_module(Module::parse(&src).unwrap());
    let (m, n, k) = (128usize, 128usize, 128usize);
    let pa = e.upload(&bf16_bytes(&rand_f32(m * k, 1)));
    let pb = e.upload(&bf16_bytes(&rand_f32(n * k, 2)));
    let pc = e.alloc(m * n * 4);
    let params = vec![
        p32(m as i32),
        p32(n as i32),
        p32(k as i32),
        p64(pa),
        p32(k as i32),
        p64(pb),
        p32(k as i32),
        p64(pc),
        p32(m as i32),
        1f32.to_le_bytes().to_vec(),
        0f32.to_le_bytes().to_vec(),
    ];
    let f = e
        .try_run(
            "cute_wgmma_tn",
            cfg([1, 1, 1], [128, 1, 1], 2 * 128 * 64 * 3 * 2),
            &params,
        )
        .expect_err("the missing barrier before the wgmma must be reported");
    println!("{f}");
    // Warp 0 issues the wgmma on stage 0 while warp 3's cp.async into that stage has not
    // completed (it lands at warp 3's own cp.async.wait_all): the late write into an operand of
    // an outstanding wgmma is the report.
    assert_eq!(f.kind, FaultKind::AsyncHazard, "{f}");
    assert!(f.detail.contains("outstanding wgmma.mma_async"), "{f}");
    assert!(f.instruction.starts_with("cp.async.wait_all"), "{f}");
}

/// Profiler counters of the CuTe GEMM: per 128×128 block and 64-deep k tile the warpgroup issues
/// 2 (M) × 2 (N) × 4 (K) m64n64k16 wgmmas, each counted once per warp (4 tensor instructions)
/// with 2·64·64·16 FLOPs in all.
#[test]
fn cute_wgmma_counters() {
    let (m, n, k) = (128usize, 128usize, 256usize);
    let module = Module::parse(&ptx("sm90/cute_wgmma_sm90.ptx")).unwrap();
    let mut mem = Memory::new();
    let pa = upload(&mut mem, &bf16_bytes(&rand_f32(m * k, 1)));
    let pb = upload(&mut mem, &bf16_bytes(&rand_f32(n * k, 2)));
    let pc = mem.alloc(m * n * 4).unwrap();
    let params = [
        p32(m as i32),
        p32(n as i32),
        p32(k as i32),
        p64(pa),
        p32(k as i32),
        p64(pb),
        p32(k as i32),
        p64(pc),
        p32(m as i32),
        1f32.to_le_bytes().to_vec(),
        0f32.to_le_bytes().to_vec(),
    ];
    let p = slices(&params);
    let c = cfg([1, 1, 1], [128, 1, 1], 2 * 128 * 64 * 3 * 2);
    let call = KernelCall {
        module: &module,
        kernel: "cute_wgmma_tn",
        cfg: &c,
        params: &p,
    };
    let opts = LaunchOptions {
        detect_races: false,
        ..LaunchOptions::with_checks(Checks::Full)
    };
    let (_, acc) = launch_counted(call, &mut mem, &opts, None).unwrap_or_else(|f| panic!("{f}"));
    let cn = acc.finish(&gpu_model::LaunchInfo::new(
        "cute_wgmma_tn",
        c.grid,
        c.block,
    ));
    let wgmmas = (k / 64) * 2 * 2 * 4;
    assert_eq!(cn.wgmma_inst, 4 * wgmmas as u64);
    assert_eq!(cn.flop_tensor_wgmma, (2 * m * n * k) as u64);
    assert_eq!(cn.tensor_inst, cn.wgmma_inst);
    assert_eq!(cn.flop_tensor, cn.flop_tensor_wgmma);
    assert_eq!(
        cn.flop_tensor_by_dtype.get("bf16"),
        Some(&((2 * m * n * k) as u64))
    );
}

/// CuTe's TMA tutorial GEMM (`wgmma_tma_sm90.cu`: `cp.async.bulk.tensor.2d` loads completing on
/// `mbarrier` transaction counts, `elect.sync`, the same wgmmas), compiled the same way: the whole
/// module parses and every instruction of the kernel decodes (TMA, mbarrier, elect and wgmma are
/// all emulated). Running it against a CPU GEMM needs the TMA atoms as kernel parameters (each a
/// 192-byte, 64-aligned `.param`: the 128-byte `CUtensorMap` from `cuTensorMapEncodeTiled`
/// followed by CuTe's auxiliary stride parameters).
#[test]
fn cute_tma_gemm_decodes_completely() {
    let src = ptx("sm90/cute_wgmma_tma_sm90.ptx");
    let module =
        Module::parse(&src).unwrap_or_else(|e| panic!("the CuTe TMA GEMM must parse: {e}"));
    let n = module
        .instruction_count("cute_wgmma_tma_tn")
        .expect("the module has the entry cute_wgmma_tma_tn");
    assert!(n > 0);
    let unsupported = module.unsupported("cute_wgmma_tma_tn");
    for (line, instr, why) in &unsupported {
        println!("line {line}: `{instr}`: {why}");
    }
    assert!(
        unsupported.is_empty(),
        "{} instructions of the CuTe TMA GEMM are not emulated",
        unsupported.len()
    );
}
