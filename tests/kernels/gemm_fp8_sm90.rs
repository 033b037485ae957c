//! `kernels/cuda/gemm_fp8_sm90.cu` (sm_90a) against the CPU reference
//! (`backends::cpu::gemm_fp8_sm90`): `quantize_rows_e4m3_v1_bf16` byte for byte and scale for
//! scale (same IEEE division and round-to-nearest-even, poisoned outputs, K tails and padded
//! rows); `linear_fp8_sm90_v1_bf16` on the GPU-quantised activations and host-quantised weights
//! against the dequantised linear (`gemm_ref` on `s * e4m3(q)`) at relative L2 <= [`TOL_BF16`]
//! (f32 sums, one bf16 rounding: the bf16 kernels' bound), M / N / K tails (TMA zero fill), bias /
//! residual / scale / GEGLU, persistent CTAs looping over tiles and k tiles (the ring wraps), two
//! warp schedules; and the quantisation error itself against the unquantised bf16 linear, bounded
//! by [`TOL_FP8`] (derived from the e4m3 unit roundoff).

use crate::common::{rel_l2, to_bf16, Rng};
use crate::gemm::{case, gemm_inputs, GemmCase, Opt};
use crate::harness::{gemm_ref, Device, TOL_BF16};
use cyberhost_engine::backends::cpu::gemm_fp8_sm90::{dequantize_rows, quantize_rows};
use cyberhost_kernels::gemm::GemmOp;
use cyberhost_kernels::gemm_fp8_sm90::{
    self as fp8, Fp8Epilogue, Fp8Ptrs, Fp8Shape, GemmFp8Params, QuantizeRowsParams, ENTRY,
    QUANTIZE_ENTRY,
};
use cyberhost_kernels::KernelModule;

/// e4m3's unit roundoff: 3 mantissa bits, round to nearest.
const U_E4M3: f64 = 1.0 / 16.0;
/// Both operands quantised, each element off by at most `u` relative (nothing underflows after
/// the amax scaling of these N(0, 1) inputs): a product is off by at most `2u + u^2`, and the
/// random-sign sums keep the relative L2 of the output below that bound; plus the bf16 output.
const TOL_FP8: f64 = 2.0 * U_E4M3 + U_E4M3 * U_E4M3 + TOL_BF16;

/// `rows` e4m3 rows of `k` (dense) padded to the kernel's row stride `ldq`.
fn pad_rows(q: &[u8], rows: usize, k: usize, ldq: usize) -> Vec<u8> {
    let mut out = vec![0u8; rows * ldq];
    for r in 0..rows {
        out[r * ldq..r * ldq + k].copy_from_slice(&q[r * k..(r + 1) * k]);
    }
    out
}

/// (rows, K, ldx): 8 / 16 / 32 lanes per row, 32 / 16 / 8 rows per CTA (row counts off those:
/// idle lanes of the last CTA, which still shuffle); K tails of the 8-element chunks, rows padded
/// past K; the register path (K % 8 = 0, K <= 1280 read once: 8 lanes a row up to K 320, 16 at
/// 648, 32 at exactly 1280) and the two-pass path (K 1288 just past it, 2600 and 37 with a tail).
const QUANT_CASES: [(usize, usize, usize); 8] = [
    (3, 37, 40),
    (5, 72, 72),
    (2, 2600, 2608),
    (4, 8, 16),
    (11, 320, 328),
    (7, 648, 656),
    (9, 1280, 1280),
    (10, 1288, 1296),
];

fn run_quantize(
    dev: &mut Device,
    (rows, k, ldx): (usize, usize, usize),
    seed: u64,
) -> anyhow::Result<()> {
    if !crate::harness::runs_or_refuses(dev, KernelModule::GemmFp8Sm90) {
        return Ok(());
    }
    let mut rng = Rng::new(seed);
    let mut x = rng.randn(rows * ldx, 3.0, 0.0);
    for v in x[ldx..2 * ldx].iter_mut() {
        *v *= 1e-3; // a row of small values: the scale follows its own amax
    }
    if rows > 3 {
        x[3 * ldx..4 * ldx].fill(0.0); // an all-zero row: scale 1, codes 0
    }
    let xb = to_bf16(&x);
    let dense: Vec<f32> = (0..rows)
        .flat_map(|r| xb[r * ldx..r * ldx + k].iter().map(|v| v.to_f32()))
        .collect();
    let (want_q, want_s) = quantize_rows(&dense, rows, k);
    let ldq = fp8::ldq(k as u64) as usize;
    let xa = dev.upload(&xb)?;
    let qa = dev.alloc_poisoned(rows * ldq)?;
    let sa = dev.alloc_poisoned(rows * 4)?;
    let p = QuantizeRowsParams::new(xa, qa, sa, rows as u64, k as u64, ldx as u64)?;
    dev.launch(
        KernelModule::GemmFp8Sm90,
        QUANTIZE_ENTRY,
        fp8::quantize_launch_config(rows as u64, k as u64),
        &p,
    )?;
    let got_q: Vec<u8> = dev.download(qa, rows * ldq)?;
    let got_s: Vec<f32> = dev.download(sa, rows)?;
    assert_eq!(got_s, want_s, "scales, rows {rows} K {k}");
    for r in 0..rows {
        assert_eq!(
            &got_q[r * ldq..r * ldq + k],
            &want_q[r * k..(r + 1) * k],
            "row {r} of {rows}, K {k}"
        );
    }
    Ok(())
}

crate::harness::schedules_test!(gemm_fp8_sm90_quantize_rows, QUANT_CASES, 1200, run_quantize);

/// The paper step's `quantize_rows` launch classes (rows, K): the 320 / 640 / 1280-channel token
/// rows of the U-Net's linears at 64 x 64, 32 x 32, 16 x 16 frames (and 2048 rows of 1280).
const PAPER_QUANT: [(usize, usize); 4] = [(131072, 320), (32768, 640), (8192, 1280), (2048, 1280)];

/// [`PAPER_QUANT`] through `quantize_rows_e4m3_v1_bf16`, checked byte for byte against the CPU
/// reference. Ignored (minutes of emulation); run on the stand-in
/// (`CYBERHOST_KERNEL_TEST_DEVICE=stand-in`) with `PTX_EMU_SAMPLE_BLOCKS=2 PTX_EMU_STATS=F.jsonl`
/// for the launches' counters (`gpu-report --gpu h100-sxm F.jsonl`:
/// docs/performance.md; only sampled blocks run then, so nothing is compared).
#[test]
#[ignore = "minutes of emulation: a profiling run for docs/performance.md"]
fn gemm_fp8_sm90_paper_quantize_rows() {
    let sampled = std::env::var_os("PTX_EMU_SAMPLE_BLOCKS").is_some();
    let mut dev = if sampled {
        crate::attention::stand_in_device()
    } else {
        crate::harness::Device::new(1, 0)
    };
    if !crate::harness::runs_or_refuses(&dev, KernelModule::GemmFp8Sm90) {
        return;
    }
    for (i, (rows, k)) in PAPER_QUANT.into_iter().enumerate() {
        if sampled {
            let mut rng = Rng::new(1400 + i as u64);
            let xa = dev
                .upload(&to_bf16(&rng.randn(rows * k, 3.0, 0.0)))
                .unwrap();
            let qa = dev.alloc_poisoned(rows * k).unwrap();
            let sa = dev.alloc_poisoned(rows * 4).unwrap();
            let p = QuantizeRowsParams::new(xa, qa, sa, rows as u64, k as u64, k as u64).unwrap();
            let cfg = fp8::quantize_launch_config(rows as u64, k as u64);
            dev.launch(KernelModule::GemmFp8Sm90, QUANTIZE_ENTRY, cfg, &p)
                .unwrap();
        } else {
            run_quantize(&mut dev, (rows, k, k), 1400 + i as u64).unwrap();
        }
    }
}

/// A case and the SM count its persistent grid is sized for (`ctas` < tiles: CTAs loop).
#[derive(Clone, Copy, Debug)]
struct Fp8Case {
    c: GemmCase,
    ctas: u32,
}

fn fp8_cases() -> Vec<Fp8Case> {
    use GemmOp::Linear;
    use Opt::*;
    let v = |c: GemmCase, ctas| Fp8Case { c, ctas };
    vec![
        // M, N tails; K = 72 < 128: one k tile, zero fill past K
        v(
            case(Linear, 1, (130, 136, 72)).with(&[Bias, Residual, Scale(0.5)]),
            132,
        ),
        // 2 x 2 tiles and 2 k tiles on one CTA
        v(case(Linear, 1, (150, 260, 200)).with(&[Bias]), 1),
        // GEGLU: value and gate boxes of QB and their scales; N tail inside the value box
        v(case(Linear, 1, (129, 136, 64)).with(&[Bias, Geglu]), 132),
        // N = 37: unaligned rows of C and the residual (scalar stores)
        v(case(Linear, 1, (45, 37, 48)).with(&[Residual]), 132),
        // 5 k tiles: the 4-stage ring wraps inside a tile
        v(case(Linear, 1, (70, 24, 520)).with(&[Bias]), 2),
        // GEGLU with every epilogue term, 3 x 2 tiles on 4 CTAs
        v(
            case(Linear, 1, (257, 200, 72)).with(&[Bias, Geglu, Residual, Scale(2.0)]),
            4,
        ),
    ]
}

fn run_fp8(dev: &mut Device, v: Fp8Case, seed: u64) -> anyhow::Result<()> {
    if !crate::harness::runs_or_refuses(dev, KernelModule::GemmFp8Sm90) {
        return Ok(());
    }
    let c = v.c;
    let (m, n, k) = (c.m, c.n, c.k);
    let b_rows = if c.geglu { 2 * n } else { n };
    let (a, b, bias, res, want_bf16) = gemm_inputs(&c, seed, true, true);
    // the reference: the dequantised operands through the f32 CPU linear
    let (qa_h, sa_h) = quantize_rows(&a, m, k);
    let (qb_h, sb_h) = quantize_rows(&b, b_rows, k);
    let want = gemm_ref(
        &dequantize_rows(&qa_h, &sa_h, m, k),
        &dequantize_rows(&qb_h, &sb_h, b_rows, k),
        c.bias.then_some(&bias[..]),
        c.residual.then_some(&res[..]),
        (1, m, n, k),
        false,
        false,
        c.scale,
        c.geglu,
    );
    let ldq = fp8::ldq(k as u64);
    let x = dev.upload(&to_bf16(&a))?;
    let p = Fp8Ptrs {
        qa: dev.alloc_poisoned(m * ldq as usize)?,
        sa: dev.alloc_poisoned(m * 4)?,
        qb: dev.upload(&pad_rows(&qb_h, b_rows, k, ldq as usize))?,
        sb: dev.upload(&sb_h)?,
        bias: dev.upload_bf16_opt(c.bias, &bias)?,
        residual: dev.upload_bf16_opt(c.residual, &res)?,
        c: dev.alloc_poisoned(m * n * 2)?,
    };
    let q = QuantizeRowsParams::new(x, p.qa, p.sa, m as u64, k as u64, k as u64)?;
    dev.launch(
        KernelModule::GemmFp8Sm90,
        QUANTIZE_ENTRY,
        fp8::quantize_launch_config(m as u64, k as u64),
        &q,
    )?;
    let s = Fp8Shape {
        m: m as u64,
        n: n as u64,
        k: k as u64,
        ldq,
        ldr: n as u64,
        ldc: n as u64,
    };
    let epi = Fp8Epilogue {
        scale: c.scale,
        geglu: c.geglu,
    };
    let [ta, tb] = fp8::tensor_maps(p, s, c.geglu);
    let maps = [dev.tensor_map_as(&ta, true)?, dev.tensor_map_as(&tb, true)?];
    let params = GemmFp8Params::new(p, s, epi, maps)?;
    let cfg = fp8::launch_config(s, c.geglu, v.ctas);
    dev.launch(KernelModule::GemmFp8Sm90, ENTRY, cfg, &params)?;
    dev.check_bf16(&format!("{v:?} grid {:?}", cfg.grid), p.c, &want)?;
    // the quantisation error against the unquantised linear: within the e4m3 bound
    let got = dev.download_as(cyberhost_kernels::DType::Bf16, p.c, m * n)?;
    let err = rel_l2(&got, &want_bf16);
    eprintln!("{v:?}: fp8 vs unquantised bf16 linear rel L2 {err:.4}");
    assert!(
        err <= TOL_FP8,
        "{v:?}: fp8 vs bf16 rel L2 {err:.4} > {TOL_FP8:.4}"
    );
    Ok(())
}

crate::harness::schedules_test!(gemm_fp8_sm90_linear_epilogues, fp8_cases(), 1300, run_fp8);

/// The paper's feed-forward GEGLU projection of one 64 x 64 frame (x `(4096, 320)`, w
/// `(5120, 320)`: 4096 x 2560 outputs) through the backend twice: bf16 weights
/// (`linear_sm90_v1_bf16`) and `--weights-dtype fp8` (`quantize_rows` + `linear_fp8_sm90`), the
/// fp8 output within [`TOL_FP8`] of the bf16 one. Ignored (minutes of emulation); run with
/// `PTX_EMU_STATS=F.jsonl` for the two launches' counters (`gpu-report --gpu h100-sxm F.jsonl`:
/// docs/performance.md). With `PTX_EMU_SAMPLE_BLOCKS` only sampled blocks run, so the outputs are
/// not compared then.
#[test]
#[ignore = "minutes of emulation: a profiling run for docs/performance.md"]
fn gemm_fp8_sm90_paper_ff_geglu_vs_bf16() {
    use crate::common::{emulated_backend, rand_pair};
    use cyberhost_engine::backends::{Backend, LinearEpilogue};
    let _serial = crate::common::cuda_serial();
    let be = emulated_backend();
    if be.set_weights_fp8(true).is_err() {
        return; // the sm_80 kernel set: no FP8 path
    }
    be.set_weights_fp8(false).unwrap();
    let (m, k, n) = (4096usize, 320usize, 2560usize);
    let (x, _) = rand_pair(be, &[m, k], 180);
    let (w, _) = rand_pair(be, &[2 * n, k], 181);
    let (b, _) = rand_pair(be, &[2 * n], 182);
    let epi = LinearEpilogue {
        geglu: true,
        ..Default::default()
    };
    let bf16 = host_of(be, &be.linear_ext(&x, &w, Some(&b), epi).unwrap());
    be.set_weights_fp8(true).unwrap();
    be.prepare_linear_weight(&w).unwrap();
    let fp8 = host_of(be, &be.linear_ext(&x, &w, Some(&b), epi).unwrap());
    be.set_weights_fp8(false).unwrap();
    if std::env::var_os("PTX_EMU_SAMPLE_BLOCKS").is_none() {
        let err = rel_l2(&fp8, &bf16);
        eprintln!("paper FF GEGLU: fp8 vs bf16 rel L2 {err:.4}");
        assert!(err <= TOL_FP8, "fp8 vs bf16 rel L2 {err:.4} > {TOL_FP8:.4}");
    }
}

fn host_of(
    be: &cyberhost_engine::backends::cuda::CudaBackend,
    t: &cyberhost_engine::backends::cuda::CudaTensor,
) -> Vec<f32> {
    use cyberhost_engine::backends::Backend;
    be.to_f32(t).unwrap()
}

/// `--weights-dtype fp8` linears sharing one activation (the q / k / v projections of the same
/// tokens): the first quantises x (`quantize_rows` + the GEMM), the others reuse its e4m3 rows
/// (the GEMM only: the launches seen by the backend's launch observer); each output equals, bit
/// for bit, that of a fresh copy of x (quantised afresh), and the CPU's dequantised linear
/// (`linear_fp8_ref`) within [`TOL_BF16`]. K and N off the tiles, M off the quantiser's rows per
/// CTA.
#[test]
fn gemm_fp8_sm90_shared_activation_quantised_once() {
    use crate::common::{emulated_backend, rounded_pair};
    use crate::gemm_sm90::Entries;
    use cyberhost_engine::backends::cpu::gemm_fp8_sm90::linear_fp8_ref;
    use cyberhost_engine::backends::{Backend, LinearEpilogue};
    use std::sync::Arc;
    let _serial = crate::common::cuda_serial();
    let be = emulated_backend();
    if be.set_weights_fp8(true).is_err() {
        return; // the sm_80 kernel set: no FP8 path
    }
    let (m, k, n) = (70usize, 136usize, 40usize);
    let (x, xc) = rounded_pair(be, &[m, k], 190);
    for (i, seed) in [191u64, 192, 193].into_iter().enumerate() {
        let (w, wc) = rounded_pair(be, &[n, k], seed);
        be.prepare_linear_weight(&w).unwrap();
        let entries = Arc::new(Entries::default());
        be.device().set_launch_observer(Some(entries.clone()));
        let out = be.linear(&x, &w, None);
        be.device().set_launch_observer(None);
        let want_entries: &[&str] = if i == 0 {
            &[QUANTIZE_ENTRY, ENTRY]
        } else {
            &[ENTRY]
        };
        assert_eq!(
            *entries.0.lock().unwrap(),
            want_entries,
            "linear {i} on the shared x"
        );
        let got = host_of(be, &out.unwrap());
        let (fresh_x, _) = rounded_pair(be, &[m, k], 190);
        let fresh = host_of(be, &be.linear(&fresh_x, &w, None).unwrap());
        assert!(
            got.iter()
                .zip(&fresh)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "linear {i}: reused rows differ from a fresh quantisation"
        );
        let want = linear_fp8_ref(&xc, &wc, None, LinearEpilogue::default()).unwrap();
        let err = rel_l2(&got, want.data());
        assert!(err <= TOL_BF16, "linear {i}: rel L2 {err:.4} > {TOL_BF16}");
    }
    be.set_weights_fp8(false).unwrap();
}
