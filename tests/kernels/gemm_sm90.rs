//! `linear_sm90_v1_bf16` (`kernels/cuda/gemm_sm90.cu`, sm_90a: TMA + mbarrier ring + wgmma,
//! warp-specialised, persistent) against the CPU backend's `linear_ext` (`gemm_ref`): random bf16
//! inputs, M / N / K tails (OOB zero fill of the TMA boxes), bias / residual / scale / GEGLU,
//! batched and broadcast B, persistent CTAs looping over several tiles (grids smaller than the
//! tile count, so the ring's phases wrap across tiles), every output poisoned, two warp schedules
//! (hazard checks: AsyncProxyRace, AsyncHazard, Deadlock, TxCountMismatch, RegisterBudget),
//! relative L2 <= [`TOL_BF16`] (bf16 operands and output, f32 sums: the v2 entries' bound).

use std::sync::{Arc, Mutex};

use crate::common::{
    assert_close, cpu, cuda_serial, emulated_backend, host, rand_pair, round_bf16, to_bf16, Rng,
    CPU,
};
use crate::gemm::{case, upload_bf16_case, GemmCase, Opt};
use crate::harness::{Device, TOL_BF16};
use cyberhost_engine::backends::cuda::cudarc::driver::CudaStream;
use cyberhost_engine::backends::cuda::LaunchObserver;
use cyberhost_engine::backends::{composed, Backend, LinearEpilogue};
use cyberhost_kernels::gemm::{GemmEpilogue, GemmLayout, GemmOp, GemmPtrs, GemmShape};
use cyberhost_kernels::gemm_sm90::{self, GemmSm90Params, PlanesExit, ENTRY};
use cyberhost_kernels::{Arch, KernelModule};

/// A case, the SM count its persistent grid is sized for (`ctas` < tiles: CTAs loop), the L2
/// bytes that bound its raster group (`gemm_sm90::schedule`) and, where set, the CTA tile width
/// forced over the schedule's (`gemm_sm90::tile_n` only narrows launches of one wave).
#[derive(Clone, Copy, Debug)]
struct Sm90Case {
    c: GemmCase,
    ctas: u32,
    l2: u64,
    width: Option<u32>,
}

/// An H100's L2 (the raster group then spans every tile row of these small cases).
const L2_H100: u64 = 50 << 20;

fn sm90_cases() -> Vec<Sm90Case> {
    use GemmOp::Linear;
    use Opt::*;
    let v = |c: GemmCase, ctas| Sm90Case {
        c,
        ctas,
        l2: L2_H100,
        width: None,
    };
    let forced = |c: GemmCase, ctas, width| Sm90Case {
        width: Some(width),
        ..v(c, ctas)
    };
    vec![
        // M, N tails; K = 72: a second k tile of 8 valid columns (zero fill past K)
        v(
            case(Linear, 1, (130, 136, 72)).with(&[Bias, Residual, Scale(0.5)]),
            132,
        ),
        // 2 x 2 tiles, K < 64, one CTA loops over all four
        v(case(Linear, 1, (150, 260, 40)).with(&[Bias]), 1),
        // GEGLU: value and gate boxes of B; N tail inside the value box
        v(case(Linear, 1, (129, 136, 64)).with(&[Bias, Geglu]), 132),
        // N = 37: unaligned rows of C and the residual (scalar stores)
        v(case(Linear, 1, (45, 37, 64)).with(&[Residual]), 132),
        // batched A and B (3D tensor maps), 2 CTAs over 2 tiles
        v(case(Linear, 2, (20, 33, 48)).with(&[BatchedB, Residual]), 2),
        // broadcast B over 3 batches, 3 k tiles: the 4-stage ring wraps inside one CTA's tiles
        v(case(Linear, 3, (70, 24, 136)).with(&[Bias]), 2),
        // interior tiles (every row and column in bounds: the branch-free epilogue) beside edge
        // tiles: bias + residual + scale, and residual alone over batched B (3D maps, batch strides)
        v(
            case(Linear, 1, (140, 264, 72)).with(&[Bias, Residual, Scale(0.5)]),
            2,
        ),
        v(
            case(Linear, 2, (130, 260, 40)).with(&[BatchedB, Residual]),
            3,
        ),
        // GEGLU with every epilogue term, 3 x 2 tiles on 4 CTAs
        v(
            case(Linear, 1, (257, 200, 72)).with(&[Bias, Geglu, Residual, Scale(2.0)]),
            4,
        ),
        // raster groups of 2 tile rows (an L2 of 128 KiB: two 16 KiB A panels per quarter) on 4
        // CTAs: 5 tile rows = 2 + 2 + 1 (a short last group) x 2 tile columns x 2 batch entries,
        // 5 tiles a CTA; bias + residual + scale over batched B: a CTA's tiles cross batch entries
        Sm90Case {
            c: case(Linear, 2, (520, 264, 40)).with(&[BatchedB, Bias, Residual, Scale(0.5)]),
            ctas: 4,
            l2: 128 << 10,
            width: None,
        },
        // the cost rule's 160-column tiles (6 tiles of 256 on 8 SMs: 6 of 160 beat 9 of 128 in
        // two waves): M, N (300 = 160 + 140) and K (136 = 64 + 64 + 8) tails beside an interior
        // tile; bias + residual + scale
        v(
            case(Linear, 1, (300, 300, 136)).with(&[Bias, Residual, Scale(0.5)]),
            8,
        ),
        // 160 and 128 columns forced on CTAs that loop over several tiles (the ring wraps across
        // tiles): N tails inside the narrow tiles, batched B, every epilogue term
        forced(
            case(Linear, 2, (200, 330, 72)).with(&[BatchedB, Bias, Residual, Scale(2.0)]),
            3,
            160,
        ),
        forced(
            case(Linear, 1, (257, 300, 200)).with(&[Bias, Residual]),
            2,
            128,
        ),
    ]
}

fn run_sm90(dev: &mut Device, v: Sm90Case, seed: u64) -> anyhow::Result<()> {
    if !crate::harness::runs_or_refuses(dev, cyberhost_kernels::KernelModule::GemmSm90) {
        return Ok(());
    }
    let c = v.c;
    let (shape, layout, ptrs, epi, want) = upload_bf16_case(dev, &c, seed)?;
    assert!(gemm_sm90::supports(ptrs, shape, layout), "{v:?}");
    let mut sched = gemm_sm90::schedule(shape, c.geglu, v.ctas, v.l2);
    if let Some(w) = v.width {
        sched.tile_n = w;
        sched.plan.ctas = gemm_sm90::tiles_of(shape, w).min(v.ctas as u64) as u32;
    }
    let [ta, tb] = gemm_sm90::tensor_maps(ptrs, shape, layout, c.geglu, sched);
    let maps = [dev.tensor_map(&ta)?, dev.tensor_map(&tb)?];
    let p = GemmSm90Params::new(ptrs, shape, layout, epi, maps, sched)?;
    let cfg = gemm_sm90::launch_config(sched, shape);
    dev.launch(KernelModule::GemmSm90, ENTRY, cfg, &p)?;
    dev.check_bf16(
        &format!(
            "{v:?} grid {:?} raster {} tile_n {}",
            cfg.grid, sched.plan.raster, sched.tile_n
        ),
        ptrs.c,
        &want,
    )
}

crate::harness::schedules_test!(gemm_sm90_linear_epilogues, sm90_cases(), 900, run_sm90);

/// The TMA path's limits: 16-byte-aligned operands with strides of whole 16 bytes and K > 0; the
/// rest stays on gemm.cu.
#[test]
fn gemm_sm90_supports() {
    let shape = GemmShape::new(1, 64, 64, 64);
    let layout = GemmLayout::contiguous(GemmOp::Linear, shape, false, true);
    let ptrs = GemmPtrs {
        a: 0x1000,
        b: 0x2000,
        bias: 0,
        residual: 0,
        c: 0x3000,
    };
    assert!(gemm_sm90::supports(ptrs, shape, layout));
    assert!(!gemm_sm90::supports(
        GemmPtrs { b: 0x2002, ..ptrs },
        shape,
        layout
    ));
    let odd = GemmShape { k: 60, ..shape };
    let odd_layout = GemmLayout::contiguous(GemmOp::Linear, odd, false, true);
    assert!(!gemm_sm90::supports(ptrs, odd, odd_layout));
    let empty = GemmShape { m: 0, ..shape };
    assert!(!gemm_sm90::supports(ptrs, empty, layout));
}

/// Entry names the backend launches while installed as its device's observer.
#[derive(Default)]
pub(crate) struct Entries(pub(crate) Mutex<Vec<String>>);

impl LaunchObserver for Entries {
    fn before_launch(&self, _: &Arc<CudaStream>, _: KernelModule, entry: &str) {
        self.0.lock().unwrap().push(entry.to_string());
    }
    fn after_launch(&self, _: &Arc<CudaStream>, _: KernelModule, _: &str) {}
}

/// The backend's fused `linear_ext` (GEGLU, residual, scale) on the stand-in: an sm_90a device
/// (its default arch) launches `linear_sm90_v1_bf16` for 16-byte rows and gemm.cu for K = 60
/// (120-byte rows, no TMA) and for M = 16 (at most half a tile row, few tiles:
/// `gemm_sm90::prefers`); an sm_80 one (`PTX_EMU_ARCH=sm_80`) never the Hopper entry. All
/// results match the CPU.
#[test]
fn gemm_sm90_backend_dispatch() {
    let _serial = cuda_serial();
    let be = emulated_backend();
    let sm90 = be.device().arch() == Arch::Sm90a;
    for (m, k, hopper) in [(70usize, 64usize, sm90), (70, 60, false), (16, 64, false)] {
        let n = 40usize;
        let (x, xc) = rand_pair(be, &[m, k], 170);
        let (w, wc) = rand_pair(be, &[2 * n, k], 171);
        let (b, bc) = rand_pair(be, &[2 * n], 172);
        let (r, rc) = rand_pair(be, &[m, n], 173);
        let entries = Arc::new(Entries::default());
        be.device().set_launch_observer(Some(entries.clone()));
        let epi = LinearEpilogue {
            residual: Some(&r),
            scale: 0.5,
            geglu: true,
        };
        let got = be.linear_ext(&x, &w, Some(&b), epi);
        be.device().set_launch_observer(None);
        let got = be.to_f32(&got.unwrap()).unwrap();
        let epi = LinearEpilogue {
            residual: Some(&rc),
            scale: 0.5,
            geglu: true,
        };
        let want = host(&CPU.linear_ext(&xc, &wc, Some(&bc), epi).unwrap());
        let launched = entries.0.lock().unwrap().clone();
        assert_eq!(
            launched.iter().any(|e| e == ENTRY),
            hopper,
            "K {k}, arch {}: launched {launched:?}",
            be.device().arch()
        );
        assert_close(&format!("linear_ext GEGLU K {k}"), &got, &want, TOL_BF16);
    }
}

/// Counters of `linear_sm90_v1_bf16` at the `paper` step's linears whose 256-column grid is under
/// one wave on 132 SMs (2048 x 1280 x 1280 without and with bias + residual, 2048 x 1280 x 5120
/// with bias + residual; the context projections 1024 x 320 | 640 | 1280 x 768), each launched
/// twice: with the 256-column tile forced (before) and with the schedule's width
/// (`gemm_sm90::tile_n`: 160 for 2048 rows, 128 for 1024). Run on the stand-in at its default sm_90a with
/// `PTX_EMU_STATS=FILE PTX_EMU_SAMPLE_BLOCKS=2 CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test -p
/// cyberhost-suite --test kernels gemm_sm90_counters -- --ignored`, then `gpu-report --gpu
/// h100-sxm FILE` (docs/performance.md). Checks nothing: sampled launches leave outputs invalid.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_90a and PTX_EMU_STATS"]
fn gemm_sm90_counters() {
    let mut dev = Device::new(1, 0);
    assert!(
        matches!(dev, Device::Cuda { .. }),
        "run on the stand-in (CYBERHOST_KERNEL_TEST_DEVICE=stand-in)"
    );
    let half = 0x3f00u16; // bf16 0.5
    for (m, n, k, fused) in [
        (2048usize, 1280usize, 1280usize, false),
        (2048, 1280, 1280, true),
        (2048, 1280, 5120, true),
        (1024, 320, 768, false),
        (1024, 640, 768, false),
        (1024, 1280, 768, false),
    ] {
        let shape = GemmShape::new(1, m, n, k);
        let layout = GemmLayout::contiguous(GemmOp::Linear, shape, false, true);
        // exact-size buffers: the model's DRAM footprint is capped by the buffers' sizes
        let opt = |dev: &mut Device, len: usize| {
            if fused {
                dev.upload(&vec![half; len]).unwrap()
            } else {
                0
            }
        };
        let ptrs = GemmPtrs {
            a: dev.upload(&vec![half; m * k]).unwrap(),
            b: dev.upload(&vec![half; n * k]).unwrap(),
            bias: opt(&mut dev, n),
            residual: opt(&mut dev, m * n),
            c: dev.alloc_poisoned(2 * m * n).unwrap(),
        };
        let epi = GemmEpilogue {
            scale: 1.0,
            geglu: false,
        };
        let natural = gemm_sm90::schedule(shape, false, 132, L2_H100);
        assert!(natural.tile_n < gemm_sm90::BN, "{shape:?}");
        let mut wide = gemm_sm90::schedule(shape, false, 132, L2_H100);
        wide.tile_n = gemm_sm90::BN;
        wide.plan.ctas = gemm_sm90::tiles_of(shape, gemm_sm90::BN).min(132) as u32;
        for sched in [wide, natural] {
            let [ta, tb] = gemm_sm90::tensor_maps(ptrs, shape, layout, false, sched);
            let maps = [dev.tensor_map(&ta).unwrap(), dev.tensor_map(&tb).unwrap()];
            let p = GemmSm90Params::new(ptrs, shape, layout, epi, maps, sched).unwrap();
            dev.launch(
                KernelModule::GemmSm90,
                ENTRY,
                gemm_sm90::launch_config(sched, shape),
                &p,
            )
            .unwrap();
        }
    }
}

/// A transformer exit through the planes epilogue ([`PlanesExit`]): tokens `(items, hw, frames,
/// K)`, weight `(C, K)` (+ bias), output planes `(items · frames, C + tail, hw)` with the residual
/// planes added; `ctas` persistent CTAs (fewer than the tiles: they loop).
#[derive(Clone, Copy, Debug)]
struct PlanesCase {
    exit: PlanesExit,
    bias: bool,
    ctas: u32,
}

fn planes_cases() -> Vec<PlanesCase> {
    let exit = |items, hw, frames, k, c, tail| PlanesExit {
        items,
        hw,
        frames,
        k,
        c,
        out_channels: c + tail,
    };
    let case = |exit, bias, ctas| PlanesCase { exit, bias, ctas };
    vec![
        // f = 1, 7 x 9 planes (H·W not a multiple of 8: every chunk takes the guarded path,
        // images change inside a tile), C = 40 of a 128-wide tile, a 5-channel tail
        case(exit(3, 63, 1, 72, 40, 5), true, 2),
        // f = 1, 16 x 8 planes, C = 200 (N tail of the 256 / 128 tile), no tail
        case(exit(2, 128, 1, 64, 200, 0), true, 3),
        // f = 3: (item, frame) batches of 12 x 12 = 144 rows (a row tail per frame), C = 36
        // (not a multiple of 8), a 4-channel tail, no bias
        case(exit(2, 144, 3, 40, 36, 4), false, 4),
        // f = 2, 8 x 8 planes (half a tile row per frame), C = 160, an 8-channel tail
        case(exit(1, 64, 2, 64, 160, 8), true, 2),
    ]
}

/// The CPU reference of `v` on `seed`'s bf16 data: `(tokens, weight, bias, residual, tail, out)`
/// (out: `(N·F, C + tail, hw)` with the tail's channels after the exit's).
#[allow(clippy::type_complexity)]
fn planes_reference(
    v: &PlanesCase,
    seed: u64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let e = v.exit;
    let mut rng = Rng::new(seed);
    let mut draw = |n: usize| round_bf16(&rng.randn(n, 1.0, 0.0));
    let nf = e.items * e.frames;
    let ct = e.out_channels - e.c;
    let (t, w, b) = (draw(e.tokens_len()), draw(e.c * e.k), draw(e.c));
    let (r, tail) = (draw(e.residual_len()), draw(nf * ct * e.hw));
    let planes = |c: usize| [nf, c, e.hw, 1];
    let tokens = cpu(&[e.items * e.hw, e.frames, e.k], &t);
    let bias = v.bias.then(|| cpu(&[e.c], &b));
    let (rc, tc) = (cpu(&planes(e.c), &r), cpu(&planes(ct), &tail));
    let wc = cpu(&[e.c, e.k], &w);
    let out = CPU
        .linear_tokens_planes_add(&tokens, &wc, bias.as_ref(), &rc, e.frames, Some(&tc))
        .unwrap();
    (t, w, b, r, tail, host(&out))
}

fn run_planes(dev: &mut Device, v: PlanesCase, seed: u64) -> anyhow::Result<()> {
    if !crate::harness::runs_or_refuses(dev, KernelModule::GemmSm90) {
        return Ok(());
    }
    let e = v.exit;
    let (t, w, b, r, tail, want) = planes_reference(&v, seed);
    // the output: the tail's channels in place, the exit's poisoned (the kernel writes only those)
    let (nf, ct) = (e.items * e.frames, e.out_channels - e.c);
    let mut out = vec![f32::NAN; want.len()];
    for i in 0..nf {
        let (o, s) = ((i * e.out_channels + e.c) * e.hw, i * ct * e.hw);
        out[o..o + ct * e.hw].copy_from_slice(&tail[s..s + ct * e.hw]);
    }
    let ptrs = GemmPtrs {
        a: dev.upload(&to_bf16(&t))?,
        b: dev.upload(&to_bf16(&w))?,
        bias: dev.upload_bf16_opt(v.bias, &b)?,
        residual: dev.upload(&to_bf16(&r))?,
        c: dev.upload(&to_bf16(&out))?,
    };
    let (shape, layout) = (e.shape(), e.layout());
    assert!(gemm_sm90::supports(ptrs, shape, layout), "{v:?}");
    let mut sched = gemm_sm90::schedule(shape, false, v.ctas, L2_H100);
    sched.plan.ctas = sched.plan.ctas.min(v.ctas);
    let [ta, tb] = gemm_sm90::tensor_maps_framed(ptrs, shape, layout, false, sched, e.frames);
    let maps = [dev.tensor_map(&ta)?, dev.tensor_map(&tb)?];
    let p = GemmSm90Params::planes(ptrs, e, GemmEpilogue::default(), maps, sched)?;
    let cfg = gemm_sm90::launch_config(sched, shape);
    dev.launch(KernelModule::GemmSm90, ENTRY, cfg, &p)?;
    dev.check_bf16(
        &format!("{v:?} grid {:?} tile_n {}", cfg.grid, sched.tile_n),
        ptrs.c,
        &want,
    )
}

crate::harness::schedules_test!(gemm_sm90_planes_exits, planes_cases(), 940, run_planes);

/// The backend's `linear_tokens_planes_add` on the stand-in: an sm_90a device launches
/// `linear_sm90_v1_bf16` (planes epilogue) and no `tokens_planes_add` for f = 1 and f > 1, with
/// and without a tail; an sm_80 one (`PTX_EMU_ARCH=sm_80`) runs the composed ops. All results
/// match the CPU.
#[test]
fn gemm_sm90_planes_backend_dispatch() {
    let _serial = cuda_serial();
    let be = emulated_backend();
    let sm90 = be.device().arch() == Arch::Sm90a;
    for (n, f, hh, ww, k, c, ct) in [
        (2usize, 1usize, 6usize, 12usize, 48usize, 40usize, 0usize),
        (1, 3, 8, 9, 32, 24, 7),
    ] {
        let (x, xc) = rand_pair(be, &[n * hh * ww, f, k], 180);
        let (w, wc) = rand_pair(be, &[c, k], 181);
        let (b, bc) = rand_pair(be, &[c], 182);
        let (r, rc) = rand_pair(be, &[n * f, c, hh, ww], 183);
        let (t, tc) = rand_pair(be, &[n * f, ct, hh, ww], 184);
        let tail = (ct > 0).then_some(&t);
        let entries = Arc::new(Entries::default());
        be.device().set_launch_observer(Some(entries.clone()));
        let got = be.linear_tokens_planes_add(&x, &w, Some(&b), &r, f, tail);
        be.device().set_launch_observer(None);
        let got = be.to_f32(&got.unwrap()).unwrap();
        let tail_c = (ct > 0).then_some(&tc);
        let want = host(
            &CPU.linear_tokens_planes_add(&xc, &wc, Some(&bc), &rc, f, tail_c)
                .unwrap(),
        );
        let launched = entries.0.lock().unwrap().clone();
        let fused = launched.iter().any(|e| e == ENTRY)
            && !launched.iter().any(|e| e.starts_with("tokens_planes_add"));
        assert_eq!(
            fused,
            sm90,
            "f {f}, arch {}: launched {launched:?}",
            be.device().arch()
        );
        assert_close(
            &format!("linear_tokens_planes_add f {f} tail {ct}"),
            &got,
            &want,
            TOL_BF16,
        );
    }
}

/// Counters of the `paper` step's transformer / motion module exits (bf16, 2 items x 16 frames
/// of 64 x 64 / 32 x 32 / 16 x 16 / 8 x 8 planes of 320 / 640 / 1280 / 1280 channels; f = 1: the
/// Transformer2D exits over 32 images, f = 16: the motion modules'), each run twice through the
/// backend: composed (before: `linear_sm90_v1_bf16` writing tokens, then `tokens_planes_add_v2`)
/// and fused (after: one launch, the planes epilogue). Run on the stand-in at its default sm_90a
/// with `PTX_EMU_STATS=FILE PTX_EMU_SAMPLE_BLOCKS=2 cargo test -p cyberhost-suite --test kernels
/// gemm_sm90_planes_counters -- --ignored`, then `gpu-report --gpu h100-sxm FILE`
/// (docs/performance.md). Checks nothing: sampled launches leave outputs invalid.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_90a and PTX_EMU_STATS"]
fn gemm_sm90_planes_counters() {
    let _serial = cuda_serial();
    let be = emulated_backend();
    assert_eq!(be.device().arch(), Arch::Sm90a, "run at sm_90a");
    for (side, c, frames) in [
        (64usize, 320usize, 1usize),
        (64, 320, 16),
        (32, 640, 1),
        (32, 640, 16),
        (16, 1280, 1),
        (16, 1280, 16),
        (8, 1280, 1),
        (8, 1280, 16),
    ] {
        let (images, hw) = (32, side * side);
        let full = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            be.from_f32(shape, &vec![0.5; n]).unwrap()
        };
        let tokens = full(&[images / frames * hw, frames, c]);
        let (w, b) = (full(&[c, c]), full(&[c]));
        let x = full(&[images, c, side, side]);
        composed::linear_tokens_planes_add(be, &tokens, &w, Some(&b), &x, frames, None).unwrap();
        be.linear_tokens_planes_add(&tokens, &w, Some(&b), &x, frames, None)
            .unwrap();
        be.device().synchronize().unwrap();
    }
}
