//! Independent sm_90a PTX: CUTLASS 4.2's CuTe Hopper tutorial GEMM (`wgmma_sm90.cu`: cp.async
//! into 128B-swizzled shared memory, `SM90_64x64x16_F32BF16BF16_SS` from shared-memory
//! descriptors built by CuTe, fence / commit / wait_group by `warpgroup_*`), compiled by the
//! pinned NVRTC 12.4 (tests/ptx/sm90/build_cute_sm90.py), run on the emulator against a CPU GEMM.
//! The descriptors, swizzle and fragment layouts come from CuTe's code, not ours: a mismatch in
//! the emulator's reading of any of them shows up as wrong C elements. The same for the TMA
//! tutorial GEMM (`wgmma_tma_sm90.cu`) and a CuTe TMA load/store copy (`cute_tma_copy_sm90.cu`),
//! with the tensor maps CuTe's host code would encode, plus PTX-edited broken variants.
#![allow(clippy::type_complexity, clippy::result_large_err)]
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
    check_gemm(
        kernel,
        &got,
        |i, kk| a[a_at(i, kk)],
        |j, kk| b[b_at(j, kk)],
        &c0,
        (m, n, k),
        (alpha, beta),
    );
}

/// `got` (column-major `m x n`) against `alpha * A·Bᵀ + beta * C0` in f64, element by element,
/// within the derived bound: `k/16` bf16-product chunks of f32 accumulation plus the epilogue's
/// 3 roundings, all at u = 2^-24 relative to the magnitudes summed.
fn check_gemm(
    kernel: &str,
    got: &[f32],
    a: impl Fn(usize, usize) -> f32,
    b: impl Fn(usize, usize) -> f32,
    c0: &[f32],
    (m, n, k): (usize, usize, usize),
    (alpha, beta): (f32, f32),
) {
    let u = 2f64.powi(-24);
    let mut worst = 0f64;
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut mag) = (0f64, 0f64);
            for kk in 0..k {
                let p = a(i, kk) as f64 * b(j, kk) as f64;
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

/// The TMA atom parameter CuTe's `make_tma_atom(SM90_TMA_LOAD{}, gA, sA(_,_,0), (128, 64))` builds
/// on the host for a row-major (rows × k) bf16 operand with `GMMA::Layout_K_SW128_Atom` shared
/// tiles: `Copy_Traits<SM90_TMA_LOAD, …, AuxTmaParams>` is `{TmaDescriptor tma_desc_ (128 bytes,
/// alignas 64); AuxTmaParams aux_params_}` = 192 bytes. The descriptor comes from
/// `cuTensorMapEncodeTiled` (here `TensorMap::encode_tiled`, the function the stand-in driver's
/// entry point calls) with what `make_tma_copy_desc` passes: BFLOAT16, rank 2 (dim 0 = K, the
/// stride-1 mode; dim 1 = rows, k·2 bytes apart: the PTX's coordinates are {k, row}), box
/// 64 × 128, element strides 1, no interleave, 128B swizzle (the K-major SW128 atom's
/// `Swizzle<3,4,3>`), L2 promotion 128B, no OOB NaN fill. `aux_params_`
/// holds only `g_stride_`, the gmem-mode → TMA-coordinate basis strides, which are static here
/// (`E<1>`, `E<0>`: the stride-(ldA, 1) gmem modes map one-to-one onto TMA modes), so its bytes
/// carry nothing the kernel reads: the PTX only takes the parameter's address (`cvta.param`) as
/// the tensor-map operand of `cp.async.bulk.tensor`. They are left zero.
fn tma_atom_param(base: u64, rows: usize, k: usize) -> Vec<u8> {
    let map = tensor_map::TensorMap::encode_tiled(
        9, // CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
        2,
        base,
        &[k as u64, rows as u64],
        &[(k * 2) as u64],
        &[64, 128],
        &[1, 1],
        0, // CU_TENSOR_MAP_INTERLEAVE_NONE
        3, // CU_TENSOR_MAP_SWIZZLE_128B
        2, // CU_TENSOR_MAP_L2_PROMOTION_L2_128B
        0, // CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE
    )
    .unwrap_or_else(|e| panic!("encode: {e}"));
    let mut p = map.to_bytes().to_vec();
    p.resize(192, 0);
    p
}

/// SharedStorage of the TMA tutorial: A and B stages (128 × 64 bf16 × 3 each), then 3 + 3
/// 8-byte mbarriers.
const TMA_SMEM: u32 = 2 * 128 * 64 * 3 * 2 + 6 * 8;

/// `cute_wgmma_tma_tn` (A M×K row-major, B N×K row-major, C column-major with ldC = m) for an
/// m × n × k problem, with PTX text `src`: the params and the launch config.
fn tma_gemm_setup(
    src: &str,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    beta: f32,
) -> (
    Emu,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
    u64,
    Vec<Vec<u8>>,
    LaunchConfig,
) {
    let module = Module::parse(src).unwrap_or_else(|e| panic!("parse: {e}"));
    let mut e = Emu::from_module(module);
    let a: Vec<f32> = rand_f32(m * k, 21)
        .iter()
        .map(|&x| bf16::from_f32(x).to_f32())
        .collect();
    let b: Vec<f32> = rand_f32(n * k, 22)
        .iter()
        .map(|&x| bf16::from_f32(x).to_f32())
        .collect();
    let c0 = rand_f32(m * n, 23);
    let pa = e.upload(&bf16_bytes(&a));
    let pb = e.upload(&bf16_bytes(&b));
    let pc = e.up_f32(&c0);
    let params = vec![
        p32(m as i32),
        p32(n as i32),
        p32(k as i32),
        p64(pa),
        tma_atom_param(pa, m, k),
        p64(pb),
        tma_atom_param(pb, n, k),
        p64(pc),
        p32(m as i32),
        alpha.to_le_bytes().to_vec(),
        beta.to_le_bytes().to_vec(),
    ];
    let c = cfg(
        [(m / 128) as u32, (n / 128) as u32, 1],
        [128, 1, 1],
        TMA_SMEM,
    );
    (e, a, b, c0, pc, params, c)
}

/// CuTe's TMA tutorial GEMM (`wgmma_tma_sm90.cu`: `cp.async.bulk.tensor.2d` loads of 128B-swizzled
/// tiles completing on `mbarrier` transaction counts, a 3-stage ring with consumer barriers,
/// `elect.sync`, the same wgmmas as above), compiled the same way, run against a CPU GEMM with the
/// bound of `gemm` above. Unlike the cp.async tutorial it is race-free by the PTX model — every
/// shared operand is written by the async proxy and read only after the mbarrier phase its bytes
/// complete, stages are reused only after the consumer barrier's 128 arrivals — so it runs with
/// every check on (races, uninitialised reads, async-proxy and tx-count checks) under 3 schedules,
/// and bit-identically at fast checks and without the decoded path.
fn tma_gemm(m: usize, n: usize, k: usize, alpha: f32, beta: f32) {
    let src = ptx("sm90/cute_wgmma_tma_sm90.ptx");
    let (mut e, a, b, c0, pc, params, c) = tma_gemm_setup(&src, m, n, k, alpha, beta);
    // `run`: 3 schedules at full checks, cross-checked at fast checks and without the decoded
    // path (same statistics, bit-identical memory)
    e.ok("cute_wgmma_tma_tn", c, &params);
    let got = e.f32s(pc, m * n);
    check_gemm(
        "cute_wgmma_tma_tn",
        &got,
        |i, kk| a[i * k + kk],
        |j, kk| b[j * k + kk],
        &c0,
        (m, n, k),
        (alpha, beta),
    );
}

#[test]
fn cute_tma_gemm_tn_matches_cpu() {
    // k = 384: six k tiles through the 3-stage ring (every stage reused, both parities waited)
    tma_gemm(128, 128, 384, 1.0, 0.0);
    // 2 × 1 blocks, fewer k tiles than stages: the prefetch's third load and the loop's refills
    // (as in the first case's last three) are wholly out of bounds, zero-filled, and land on
    // barrier phases nobody waits on
    tma_gemm(256, 128, 128, 0.5, 0.25);
}

/// CuTe's TMA tutorial GEMM (`wgmma_tma_sm90.cu`: `cp.async.bulk.tensor.2d` loads completing on
/// `mbarrier` transaction counts, `elect.sync`, the same wgmmas), compiled the same way: the whole
/// module parses and every instruction of the kernel decodes (TMA, mbarrier, elect and wgmma are
/// all emulated); `cute_tma_gemm_tn_matches_cpu` above runs it.
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

/// The PTX of the TMA GEMM with `from` replaced by `to` (exactly one occurrence).
fn patched_tma_gemm(from: &str, to: &str) -> String {
    let src = ptx("sm90/cute_wgmma_tma_sm90.ptx");
    assert_eq!(src.matches(from).count(), 1, "{from:?}");
    src.replace(from, to)
}

/// The fault of the 128x128x256 TMA GEMM patched by `from` → `to`, at full checks (`why`: the
/// message if it runs clean).
fn broken_tma_gemm(from: &str, to: &str, why: &str) -> Fault {
    let src = patched_tma_gemm(from, to);
    let (mut e, _, _, _, _, params, c) = tma_gemm_setup(&src, 128, 128, 256, 1.0, 0.0);
    let f = e
        .launch_with(
            "cute_wgmma_tma_tn",
            c,
            &params,
            &LaunchOptions::with_checks(Checks::Full),
        )
        .expect_err(why);
    println!("{f}");
    f
}

/// The TMA GEMM with the prefetch's `arrive.expect_tx` announcing 16 bytes more than the two
/// 16 KiB TMA loads deliver: the consumers wait on a barrier whose arrivals are all in and whose
/// loads have all landed, but whose tx-count never reaches 0.
#[test]
fn cute_tma_gemm_expect_tx_too_large_is_reported() {
    let f = broken_tma_gemm(
        "mov.u32 \t%r59, 32768;",
        "mov.u32 \t%r59, 32784;",
        "expect_tx larger than the delivered bytes must be reported",
    );
    assert_eq!(f.kind, FaultKind::TxCountMismatch, "{f}");
}

/// The TMA GEMM with the consumer barriers initialised to 129 arrivals (the warpgroup has 128
/// threads): the producer's wait for the consumers to release stage 0 can never complete, and
/// every consumer then waits for a TMA load that is never issued.
#[test]
fn cute_tma_gemm_missing_arrival_deadlocks() {
    let f = broken_tma_gemm(
        "mov.u32 \t%r37, 128;",
        "mov.u32 \t%r37, 129;",
        "a consumer barrier that can never complete must be reported",
    );
    assert_eq!(f.kind, FaultKind::Deadlock, "{f}");
    assert!(f.instruction.contains("mbarrier.try_wait.parity"), "{f}");
}

/// `cute_tma_copy_swNN` (tests/ptx/sm90/cute_tma_copy_sm90.cu): the TMA atoms for an (m, n)
/// row-major half tensor and a (64 × bn) tile in a GMMA K-major swizzled layout: FLOAT16, rank 2,
/// dims {n, m}, box {bn, 64}, the atom's swizzle (`CU_TENSOR_MAP_SWIZZLE_*`), 192-byte params as
/// for the GEMM (AuxTmaParams static: `ScaledBasis<_1,1>, ScaledBasis<_1,0>`).
fn copy_atom_param(base: u64, m: usize, n: usize, bn: usize, swizzle: u32) -> Vec<u8> {
    let map = tensor_map::TensorMap::encode_tiled(
        6, // CU_TENSOR_MAP_DATA_TYPE_FLOAT16
        2,
        base,
        &[n as u64, m as u64],
        &[(n * 2) as u64],
        &[bn as u32, 64],
        &[1, 1],
        0,
        swizzle,
        2,
        0,
    )
    .unwrap_or_else(|e| panic!("encode: {e}"));
    let mut p = map.to_bytes().to_vec();
    p.resize(192, 0);
    p
}

/// Launches `kernel` (tile 64 × bn, swizzle mode `swizzle`) on a 128 × 3·bn tensor with PTX text
/// `src` (with `opts`, or None: through `run`, every level cross-checked); returns (src values,
/// out, dst) as raw f16 bits.
fn tma_copy(
    src: &str,
    kernel: &str,
    bn: usize,
    swizzle: u32,
    opts: Option<&LaunchOptions>,
) -> Result<(Vec<u16>, Vec<u16>, Vec<u16>), Fault> {
    let (m, n) = (128usize, 3 * bn);
    let mut e = Emu::from_module(Module::parse(src).unwrap_or_else(|e| panic!("parse: {e}")));
    let vals: Vec<u16> = rand_f32(m * n, 31)
        .iter()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect();
    let bytes = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let poison = vec![0xdead_u16; m * n];
    let ps = e.upload(&bytes(&vals));
    let pd = e.upload(&bytes(&poison));
    let po = e.upload(&bytes(&poison));
    let params = vec![
        p32(m as i32),
        p32(n as i32),
        copy_atom_param(ps, m, n, bn, swizzle),
        copy_atom_param(pd, m, n, bn, swizzle),
        p64(po),
    ];
    // CopyStorage: two 1024-aligned 64 × bn half tiles, then the mbarrier (sizeof rounds to 1024)
    let tile = 64 * bn * 2;
    let c = cfg(
        [(m / 64) as u32, 3, 1],
        [128, 1, 1],
        (2 * tile + 1024) as u32,
    );
    match opts {
        Some(o) => e.launch_with(kernel, c, &params, o)?,
        None => e.try_run(kernel, c, &params)?,
    };
    let u16s = |b: Vec<u8>| {
        b.chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<u16>>()
    };
    Ok((
        vals,
        u16s(e.bytes(po, m * n * 2)),
        u16s(e.bytes(pd, m * n * 2)),
    ))
}

/// A CuTe TMA copy: SM90_TMA_LOAD into a 128B/64B/32B-swizzled GMMA K-major shared tile, read back
/// through CuTe's `Swizzle<B,4,3>` layout into `out` (so the emulator's TMA swizzle must agree with
/// CuTe's for `out` to equal the source), negated into a second swizzled tile through the same
/// layout and written back by SM90_TMA_STORE (so the store's de-swizzle must agree too: `dst` must
/// be the source with the sign bit flipped). Full checks, 3 schedules, cross-checked levels.
#[test]
fn cute_tma_copy_load_store_every_swizzle() {
    let src = ptx("sm90/cute_tma_copy_sm90.ptx");
    for (kernel, bn, swizzle) in [
        ("cute_tma_copy_sw128", 64, 3),
        ("cute_tma_copy_sw64", 32, 2),
        ("cute_tma_copy_sw32", 16, 1),
    ] {
        let (vals, out, dst) =
            tma_copy(&src, kernel, bn, swizzle, None).unwrap_or_else(|f| panic!("{kernel}: {f}"));
        for (i, &v) in vals.iter().enumerate() {
            assert_eq!(
                out[i],
                v,
                "{kernel}: out[{i}] (row {}, col {})",
                i / (3 * bn),
                i % (3 * bn)
            );
            assert_eq!(
                dst[i],
                v ^ 0x8000,
                "{kernel}: dst[{i}] (row {}, col {})",
                i / (3 * bn),
                i % (3 * bn)
            );
        }
    }
}

/// The copy kernel waiting with parity 1 instead of 0: `try_wait.parity 1` on a barrier in its
/// first phase passes at once (the phase "before" it counts as complete), so the threads read the
/// TMA destination before the load's phase completes.
#[test]
fn cute_tma_copy_wrong_parity_is_reported() {
    let good = ptx("sm90/cute_tma_copy_sm90.ptx");
    // the sw128 entry's wait parity (the first of the three entries)
    let from = "mov.u32 \t%r19, 0;";
    let at = good.find(from).expect("the parity operand");
    let src = format!(
        "{}mov.u32 \t%r19, 1;{}",
        &good[..at],
        &good[at + from.len()..]
    );
    // (with the uninitialised-read check on, the same read is first reported as a read of bytes
    // nothing has written yet; off, the async-proxy check names the in-flight TMA load)
    let opts = LaunchOptions {
        detect_uninit_shared: false,
        ..LaunchOptions::with_checks(Checks::Full)
    };
    let f = tma_copy(&src, "cute_tma_copy_sw128", 64, 3, Some(&opts))
        .expect_err("reading the TMA destination before its phase completes must be reported");
    println!("{f}");
    assert_eq!(f.kind, FaultKind::AsyncProxyRace, "{f}");
}
