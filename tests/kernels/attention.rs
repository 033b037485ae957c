//! `attention_d*_v1_{bf16,f32}` (`kernels/cuda/attention.cu`, flash attention) against the CPU
//! backend's `attention`: every head dim (and head dims that are not multiples of 8), ragged Lq /
//! Lk, Lk = 1, short Lk, `(B, H, L, D)` and `(B, L, H, D)` strides, plain loads, poisoned outputs,
//! several warp schedules; the f32 (split hi / lo) entries at their derived tolerance; and the
//! engine's slice launcher (`backends::cuda::attention`) with its unsupported-head-dim error.

use crate::check_op;
use crate::common::rand_pair;
use crate::common::{assert_close, cpu, host, rel_l2, round_bf16, Rng, CPU};
use crate::harness::{
    download_bf16 as download, engine_device, upload_bf16 as upload, Device, TOL_BF16 as TOL,
};
use cyberhost_engine::backends::{Backend, TensorLike};
use cyberhost_kernels::attention::{
    launch_config as attn_launch, launch_config_short, short_traits, traits_for, AttentionParams,
    AttentionShape, AttnStrides,
};
use cyberhost_kernels::{DType, KernelModule};

/// Relative L2 tolerance of the f32 entries (derivation in docs/kernels.md Numerics): every f32
/// operand (q, k, v, and P in registers) enters the tensor cores as bf16 `hi + lo`, leaving at
/// most u² = 2^-16 relative per operand (u = 2^-8, bf16 unit roundoff) plus the dropped `lo·lo`
/// term (≤ u²): output rms ≈ 0.85 u² ≈ 1.3e-5; f32 sums and exp2 add ~1e-7. 4 u² = 6.1e-5.
/// Plain bf16 operands give ≈ 1.2 u ≈ 5e-3 (asserted below to be > 10x the tolerance away).
const TOL_SPLIT: f64 = 1.0 / 16384.0;

/// `softmax(scale * q kᵀ) v` per (batch, head) on the CPU backend; dense `(B, H, L, D)` operands.
fn attention_ref(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    [b, h, lq, lk, d]: [usize; 5],
    scale: f32,
) -> Vec<f32> {
    let o = CPU.attention(
        &cpu(&[b, h, lq, d], q),
        &cpu(&[b, h, lk, d], k),
        &cpu(&[b, h, lk, d], v),
        scale,
    );
    host(&o.expect("CPU attention"))
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnCase {
    pub batch: u64,
    pub heads: u64,
    pub lq: u64,
    pub lk: u64,
    pub d: u64,
    /// `(B, L, H, D)` operands instead of `(B, H, L, D)`.
    pub blhd: bool,
    pub plain: bool,
    pub dtype: DType,
    /// Elements past each row's last head (`(B, L, H, D)`) or past D (`(B, H, L, D)`): strides that
    /// are not the dense ones, e.g. q / k / v columns of one packed projection output.
    pub pad: u64,
    /// Extra keys / values (the kernel's second key segment), `(1, H, Le, D)` broadcast over the
    /// batch (batch stride 0), in the same layout.
    pub extra: u64,
    /// SMs the persistent grid is sized for (`launch_config`'s `sm_count`): 1 by default, so the
    /// few resident blocks of one SM walk every tile (several per block, head-major).
    pub sms: u32,
}

pub(crate) fn case(
    batch: u64,
    heads: u64,
    lq: u64,
    lk: u64,
    d: u64,
    blhd: bool,
    plain: bool,
) -> AttnCase {
    AttnCase {
        batch,
        heads,
        lq,
        lk,
        d,
        blhd,
        plain,
        dtype: DType::Bf16,
        pad: 0,
        extra: 0,
        sms: 1,
    }
}

/// `c` on a persistent grid sized for `sms` SMs.
pub(crate) fn on_sms(c: AttnCase, sms: u32) -> AttnCase {
    AttnCase { sms, ..c }
}

/// `c` with padded rows and `extra` broadcast keys.
pub(crate) fn padded(c: AttnCase, pad: u64, extra: u64) -> AttnCase {
    AttnCase { pad, extra, ..c }
}

fn attn_cases() -> Vec<AttnCase> {
    let c = case;
    vec![
        c(1, 2, 70, 150, 40, false, false), // reference attention Lk > Lq, ragged both, 3 key tiles
        c(2, 1, 37, 9, 40, true, false),    // audio cross-attention: short Lk, (B, L, H, D)
        c(1, 1, 16, 16, 64, false, false),  // temporal attention Lq = Lk = frames
        c(1, 2, 33, 70, 80, false, true),   // plain loads
        c(1, 1, 65, 40, 128, false, false), // 2 query blocks, BN 32 tiles
        c(1, 1, 20, 45, 160, true, false),  // largest head dim
        c(1, 1, 5, 4, 160, false, true),    // 4 audio tokens
        c(1, 1, 9, 13, 36, false, false),   // D % 8 != 0: plain loads, zero-padded to 48
        c(1, 2, 7, 3, 3, true, false),      // D = 3
        c(2, 3, 200, 77, 40, true, false),  // 128-row blocks, 2 of them, ragged; 16-byte stores
        c(3, 2, 130, 64, 64, true, false),  // d64 (128-row blocks), Lk one full tile: no mask
        c(1, 1, 150, 10, 1, false, false),  // D = 1
        c(1, 2, 33, 21, 8, true, false),    // D = 8: fast path with 5 pad chunks
        c(1, 1, 20, 33, 72, false, false),  // D = 72 (d80 entry)
        c(1, 1, 17, 40, 96, true, false),   // D = 96 (d128 entry)
        c(1, 1, 9, 11, 150, false, false),  // D = 150 (d160 entry, 16-byte chunks)
        padded(c(2, 2, 70, 50, 40, true, false), 40, 0), // padded token rows (row stride H D + 40)
        padded(c(2, 2, 70, 130, 40, true, false), 0, 37), // reference attention: extra keys
        padded(c(2, 2, 19, 5, 80, false, false), 8, 70), // extra keys, own Lk < one tile, padded
        padded(c(1, 3, 30, 7, 36, true, true), 4, 9), // extra keys, plain loads, D % 8 != 0
        padded(c(2, 2, 16, 16, 40, true, false), 8, 0), // temporal: Lq = Lk = 16, padded rows
        // persistent: B H = 35 heads x 2 ragged query blocks = 70 tiles on 3 blocks (d80 at 3 per
        // SM), tiles of one block in different heads and batches; extra keys straddling a tile
        padded(c(5, 7, 70, 45, 80, true, false), 8, 37),
        c(3, 5, 130, 33, 40, true, false), // d48: 2 x 15 tiles on 2 blocks, the FAST pad path
        c(4, 6, 65, 20, 160, false, true), // d160 plain loads: 48 tiles on 2 blocks
        on_sms(c(3, 5, 130, 33, 40, true, false), 4), // 30 tiles on 8 blocks: ragged last round
        on_sms(c(2, 3, 70, 50, 64, true, false), 1000), // grid = tiles: one tile per block
    ]
}

/// The f32 entries: every specialisation, ragged tails, Lk = 1, short Lk 4..32, odd D, both
/// layouts, cp.async-free aligned (16-byte) and plain loads.
fn attn_cases_f32() -> Vec<AttnCase> {
    let c = |batch, heads, lq, lk, d, blhd, plain| AttnCase {
        dtype: DType::F32,
        ..case(batch, heads, lq, lk, d, blhd, plain)
    };
    vec![
        c(1, 2, 70, 150, 40, false, false), // reference attention Lk > Lq, ragged, 3 key tiles
        c(2, 1, 37, 9, 40, true, false),    // audio cross-attention: short Lk, (B, L, H, D)
        c(1, 1, 16, 16, 64, false, false),  // temporal attention Lq = Lk = frames
        c(1, 1, 3, 1, 64, false, false),    // Lk = 1
        c(1, 2, 33, 70, 80, false, true),   // plain loads
        c(1, 1, 17, 32, 80, true, false),   // Lk = 32 audio tokens
        c(1, 1, 65, 40, 128, false, false), // 2 query blocks, BN 32 tiles
        c(1, 1, 20, 45, 160, true, false),  // largest head dim
        c(1, 1, 5, 4, 160, false, true),    // 4 audio tokens
        c(1, 1, 9, 13, 36, false, false),   // D % 8 != 0
        c(2, 3, 200, 77, 40, true, false),  // 128-row blocks (d48 entry), 2 of them
        padded(c(2, 2, 70, 130, 40, true, false), 8, 37), // extra keys, padded rows
        padded(c(1, 1, 20, 33, 72, false, true), 0, 20), // extra keys, plain loads, d80 entry
        // persistent: several tiles per block (the split Q staging over K / V rows per tile)
        padded(c(3, 4, 70, 20, 160, true, false), 0, 9), // 2 x 12 tiles on 2 blocks
        c(3, 3, 130, 40, 40, false, false),              // d48: 18 tiles on 2 blocks
        on_sms(c(2, 3, 65, 33, 128, true, false), 2),    // 12 tiles on 4 blocks
    ]
}

/// Dense `(B, H, L, D)` `x` scattered to a buffer through `st` (batch stride 0: batch 0 only).
fn scatter(x: &[f32], (b, h, len, d): (usize, usize, usize, usize), st: AttnStrides) -> Vec<f32> {
    let size = (b.max(1) - 1) * st.batch as usize
        + (h - 1) * st.head as usize
        + len.max(1) * st.row as usize;
    let mut y = vec![0.0; size.max(1)];
    let bs = if st.batch == 0 { 1 } else { b };
    for bi in 0..bs {
        for hi in 0..h {
            for l in 0..len {
                let src = ((bi * h + hi) * len + l) * d;
                let dst = bi * st.batch as usize + hi * st.head as usize + l * st.row as usize;
                y[dst..dst + d].copy_from_slice(&x[src..src + d]);
            }
        }
    }
    y
}

/// The inverse of [`scatter`].
fn gather(y: &[f32], (b, h, len, d): (usize, usize, usize, usize), st: AttnStrides) -> Vec<f32> {
    let mut x = vec![0.0; b * h * len * d];
    for bi in 0..b {
        for hi in 0..h {
            for l in 0..len {
                let dst = ((bi * h + hi) * len + l) * d;
                let src = bi * st.batch as usize + hi * st.head as usize + l * st.row as usize;
                x[dst..dst + d].copy_from_slice(&y[src..src + d]);
            }
        }
    }
    x
}

fn run_attn(dev: &mut Device, c: AttnCase, seed: u64) -> anyhow::Result<()> {
    run_attn_with(dev, c, seed, &|dev, p, shape| {
        let t = traits_for(c.d, c.dtype)?;
        dev.launch(
            KernelModule::Attention,
            t.entry,
            attn_launch(t, shape, c.sms),
            p,
        )?;
        Ok(t.entry.to_string())
    })
}

/// Launches one attention on `dev` from params and shape, returns the entry name.
pub(crate) type AttnLaunch<'a> =
    dyn Fn(&mut Device, &AttentionParams, AttentionShape) -> anyhow::Result<String> + 'a;

/// Case `c` with random operands (seed `seed`) run by `launch` (any kernel taking
/// `AttentionParams`), checked against the CPU reference; nothing written outside the output.
pub(crate) fn run_attn_with(
    dev: &mut Device,
    c: AttnCase,
    seed: u64,
    launch: &AttnLaunch<'_>,
) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let (b, h, lq, lk, d) = (
        c.batch as usize,
        c.heads as usize,
        c.lq as usize,
        c.lk as usize,
        c.d as usize,
    );
    // Dense (B*H, L, D) for the reference; scores of O(3) so the softmax is not flat. bf16 entries
    // get bf16 values (exact in storage); f32 entries full f32 ones (lo parts nonzero).
    let f32_in = c.dtype == DType::F32;
    let mut gen = |n: usize| {
        let x = rng.randn(n, 1.0, 0.0);
        if f32_in {
            x
        } else {
            round_bf16(&x)
        }
    };
    let le = c.extra as usize;
    let q = gen(b * h * lq * d);
    let k = gen(b * h * lk * d);
    let v = gen(b * h * lk * d);
    let ke = gen(h * le * d);
    let ve = gen(h * le * d);
    let scale = 1.0 / (d as f32).sqrt();
    // keys of batch entry bi: its own lk, then the le shared extra ones
    let cat = |own: &[f32], ext: &[f32]| -> Vec<f32> {
        let mut out = Vec::with_capacity(b * h * (lk + le) * d);
        for bi in 0..b {
            for hi in 0..h {
                let o0 = (bi * h + hi) * lk * d;
                out.extend_from_slice(&own[o0..o0 + lk * d]);
                out.extend_from_slice(&ext[hi * le * d..(hi + 1) * le * d]);
            }
        }
        out
    };
    let want = attention_ref(
        &q,
        &cat(&k, &ke),
        &cat(&v, &ve),
        [b, h, lq, lk + le, d],
        scale,
    );
    let st = |len: u64| {
        let dense = if c.blhd {
            AttnStrides::blhd(c.heads, len, c.d)
        } else {
            AttnStrides::bhld(c.heads, len, c.d)
        };
        if c.blhd {
            AttnStrides::tokens(len, c.d, dense.row + c.pad)
        } else {
            let row = c.d + c.pad;
            AttnStrides {
                batch: c.heads * len * row,
                head: len * row,
                row,
            }
        }
    };
    let ext_st = AttnStrides {
        batch: 0,
        ..st(c.extra)
    };
    let shape = AttentionShape {
        batch: c.batch,
        heads: c.heads,
        lq: c.lq,
        lk: c.lk,
        d: c.d,
    };
    let dims = |len: usize| (b, h, len, d);
    let o_len = scatter(&want, dims(lq), st(c.lq)).len();
    let ptrs = [
        dev.upload_as(c.dtype, &scatter(&q, dims(lq), st(c.lq)))?,
        dev.upload_as(c.dtype, &scatter(&k, dims(lk), st(c.lk)))?,
        dev.upload_as(c.dtype, &scatter(&v, dims(lk), st(c.lk)))?,
        dev.alloc_poisoned(o_len * c.dtype.size_in_bytes())?,
    ];
    let mut p = AttentionParams::new(ptrs, [st(c.lq), st(c.lk), st(c.lk), st(c.lq)], shape, scale)?;
    if le > 0 {
        let ext = [
            dev.upload_as(c.dtype, &scatter(&ke, (1, h, le, d), ext_st))?,
            dev.upload_as(c.dtype, &scatter(&ve, (1, h, le, d), ext_st))?,
        ];
        p = p.with_extra(ext, [ext_st; 2], c.extra)?;
    }
    if c.plain {
        p = p.without_cp_async();
    }
    let entry = launch(dev, &p, shape)?;
    let what = format!("{entry} {c:?} aligned {}", p.aligned);
    let raw = dev.download_as(c.dtype, ptrs[3], o_len)?;
    let got = gather(&raw, dims(lq), st(c.lq));
    // nothing written outside the output's elements: the padding still holds the poison (NaN)
    let written = scatter(&vec![1.0; want.len()], dims(lq), st(c.lq));
    let stray = raw
        .iter()
        .zip(&written)
        .filter(|(r, w)| **w == 0.0 && !r.is_nan())
        .count();
    assert_eq!(
        stray, 0,
        "{what}: {stray} elements written outside the output"
    );
    if !f32_in {
        assert_close(&what, &got, &want, TOL);
        return Ok(());
    }
    assert_close(&what, &got, &want, TOL_SPLIT);
    // The bound can fail: the same attention on bf16-rounded q, k, v (the lo parts dropped) is
    // far outside it.
    let (qb, kb, vb) = (round_bf16(&q), round_bf16(&k), round_bf16(&v));
    let (kb, vb) = (cat(&kb, &round_bf16(&ke)), cat(&vb, &round_bf16(&ve)));
    let plain_bf16 = attention_ref(&qb, &kb, &vb, [b, h, lq, lk + le, d], scale);
    let err = rel_l2(&plain_bf16, &want);
    assert!(
        err > 10.0 * TOL_SPLIT,
        "{what}: dropping the lo parts moves the output only {err:e}"
    );
    Ok(())
}

crate::harness::schedules_test!(attention_flash_head_dims, attn_cases(), 9000, run_attn);

/// The short-sequence entries (`attention_short_d*_v1_bf16`, one warp per (batch, head)): every
/// head dim with an entry (D % 16 == 8 ends QK^T with an m16n8k8), problem counts that do not
/// fill the last block, Lq up to 64 (several 16-row chunks per warp, ragged), Lk 1..32 (one or two
/// key tiles, masked or not), padded token rows and extra broadcast keys.
fn short_cases() -> Vec<AttnCase> {
    let c = case;
    vec![
        c(5, 8, 16, 16, 40, true, false), // temporal: 40 problems = 5 full blocks of 8 warps
        c(3, 5, 16, 16, 40, true, false), // 15 problems: the last block half empty
        c(2, 3, 7, 5, 40, false, false),  // Lq 7, Lk 5: masked keys, rows past Lq not stored
        c(1, 3, 37, 29, 80, true, false), // 3 query chunks (the last ragged), 2 key tiles
        c(2, 2, 64, 32, 64, false, false), // Lq 64, Lk 32: 4 chunks, no mask
        c(1, 2, 16, 16, 160, true, false), // d160: 3 warps per block
        c(1, 3, 9, 20, 160, false, false), // d160, 2 key tiles: one warp per block
        c(2, 2, 19, 23, 16, true, false), // d16
        c(2, 1, 20, 1, 32, false, false), // d32, Lk = 1
        c(1, 2, 16, 16, 128, true, false), // d128
        padded(c(2, 8, 16, 16, 40, true, false), 8, 0), // padded token rows
        padded(c(2, 2, 16, 10, 40, true, false), 0, 7), // extra keys: Lk 17 over 2 key tiles
        padded(c(3, 2, 11, 4, 80, false, false), 8, 12), // extra keys, padded (B, H, L, D) rows
    ]
}

fn run_short(dev: &mut Device, c: AttnCase, seed: u64) -> anyhow::Result<()> {
    run_attn_with(dev, c, seed, &|dev, p, _| {
        let t = short_traits(p, DType::Bf16)
            .ok_or_else(|| anyhow::anyhow!("attention_short declines {c:?}"))?;
        dev.launch(
            KernelModule::Attention,
            t.entry,
            launch_config_short(t, p),
            p,
        )?;
        Ok(t.entry.to_string())
    })
}

crate::harness::schedules_test!(attention_short_head_dims, short_cases(), 9300, run_short);
crate::harness::schedules_test!(attention_flash_f32, attn_cases_f32(), 9500, run_attn);

#[test]
fn attention_engine_launcher() {
    use cyberhost_engine::backends::cuda::attention::{attention, AttnLayout};
    use cyberhost_engine::backends::cuda::cudarc::driver::{CudaSlice, DeviceRepr};
    use cyberhost_engine::backends::cuda::CudaDevice;
    /// The launcher on (q, k, v) -> o in the Bhld layout.
    fn bhld<T: DeviceRepr>(
        dev: &CudaDevice,
        (q, k, v): (&CudaSlice<T>, &CudaSlice<T>, &CudaSlice<T>),
        o: &mut CudaSlice<T>,
        shape: AttentionShape,
        scale: f32,
        dtype: DType,
    ) -> anyhow::Result<()> {
        attention(dev, q, k, v, o, shape, AttnLayout::Bhld, scale, dtype)
    }
    let dev = engine_device();
    let mut rng = Rng::new(13);
    let (b, h, lq, lk, d) = (1usize, 2usize, 40usize, 72usize, 40usize);
    let q = round_bf16(&rng.randn(b * h * lq * d, 1.0, 0.0));
    let k = round_bf16(&rng.randn(b * h * lk * d, 1.0, 0.0));
    let v = round_bf16(&rng.randn(b * h * lk * d, 1.0, 0.0));
    let (dq, dk, dv) = (upload(dev, &q), upload(dev, &k), upload(dev, &v));
    let mut o = dev.stream().alloc_zeros::<u16>(b * h * lq * d).unwrap();
    let shape = AttentionShape {
        batch: b as u64,
        heads: h as u64,
        lq: lq as u64,
        lk: lk as u64,
        d: d as u64,
    };
    let scale = 1.0 / (d as f32).sqrt();
    let bf = DType::Bf16;
    bhld(dev, (&dq, &dk, &dv), &mut o, shape, scale, bf).unwrap();
    let want = attention_ref(&q, &k, &v, [b, h, lq, lk, d], scale);
    assert_close("engine attention", &download(dev, &o), &want, TOL);
    // Unsupported head dim: an error, not a launch.
    let bad = AttentionShape { d: 168, ..shape };
    assert!(bhld(dev, (&dq, &dk, &dv), &mut o, bad, scale, bf).is_err());

    // f32: f32 buffers, f32 entry, split-operand accuracy.
    let q = rng.randn(b * h * lq * d, 1.0, 0.0);
    let k = rng.randn(b * h * lk * d, 1.0, 0.0);
    let v = rng.randn(b * h * lk * d, 1.0, 0.0);
    let up = |x: &[f32]| dev.stream().clone_htod(x).unwrap();
    let (dq, dk, dv) = (up(&q), up(&k), up(&v));
    let mut o = dev.stream().alloc_zeros::<f32>(b * h * lq * d).unwrap();
    let f = DType::F32;
    bhld(dev, (&dq, &dk, &dv), &mut o, shape, scale, f).unwrap();
    let got = dev.stream().clone_dtoh(&o).unwrap();
    let want = attention_ref(&q, &k, &v, [b, h, lq, lk, d], scale);
    assert_close("engine attention f32", &got, &want, TOL_SPLIT);
    // An f32 output too short for the shape (as bf16 it would fit): an error.
    let mut short = dev.stream().alloc_zeros::<f32>(b * h * lq * d / 2).unwrap();
    assert!(bhld(dev, (&dq, &dk, &dv), &mut short, shape, scale, f).is_err());
}

/// q / k / v whose batch, heads or head dims disagree are errors.
fn attention_bad_shapes<B: Backend>(be: &B) -> anyhow::Result<()> {
    let q = be.from_f32(&[1, 2, 3, 8], &[0.5; 48])?;
    let k = be.from_f32(&[1, 2, 5, 4], &[0.5; 40])?;
    let v = be.from_f32(&[1, 2, 5, 8], &[0.5; 80])?;
    assert!(be.attention(&q, &k, &v, 0.3).is_err(), "head dim 8 vs 4");
    let k = be.from_f32(&[1, 3, 5, 8], &[0.5; 120])?;
    assert!(be.attention(&q, &k, &v, 0.3).is_err(), "2 vs 3 heads");
    // equal keys: the output is the mean of the values, whatever the scores
    let k = be.from_f32(&[1, 2, 5, 8], &[0.5; 80])?;
    let o = be.to_f32(&be.attention(&q, &k, &v, 0.3)?)?;
    assert!(o.iter().all(|&x| (x - 0.5).abs() < 1e-2), "{o:?}");
    Ok(())
}
crate::backend_test!(attention_bad_shapes);

// ------------------------------------------------------------------------------------------------
// through the CUDA backend (stand-in driver, or a GPU), against the CPU backend
// ------------------------------------------------------------------------------------------------

crate::storages_test!(attention_matches_cpu, |be, _| {
    for (b, h, lq, lk, d, dv) in [
        (1usize, 2usize, 19usize, 23usize, 16usize, 16usize),
        (2, 1, 5, 70, 40, 24), // Dv != D: composed
        (1, 2, 21, 7, 80, 80),
        (1, 1, 9, 13, 36, 36),
    ] {
        let (q, qc) = rand_pair(&be, &[b, h, lq, d], 170);
        let (k, kc) = rand_pair(&be, &[b, h, lk, d], 171);
        let (v, vc) = rand_pair(&be, &[b, h, lk, dv], 172);
        let scale = 1.0 / (d as f32).sqrt() * 2.0;
        check_op!(format!("attention b{b} h{h} lq{lq} lk{lk} d{d} dv{dv}"), be, 1e-2,
            attention(&q, &k, &v, scale) ~ (&qc, &kc, &vc, scale));
    }
});

// `attention_heads` (token layouts, heads merged in the output; reference attention's extra keys
// for a row range, broadcast or per row) on the flash kernel through strides, against the CPU
// backend's composed default (narrow, concat, heads split, attention, heads merge).
crate::storages_test!(attention_heads_matches_cpu, |be, tol| {
    type Extra = Option<(usize, usize, std::ops::Range<usize>)>; // (batch 1 or R, Le, rows)
    let cases: [(usize, usize, usize, usize, usize, Extra); 8] = [
        (3, 2, 19, 23, 80, None),                 // d40, ragged
        (5, 8, 16, 16, 320, None),                // temporal: short-sequence entry, 40 problems
        (3, 2, 16, 9, 160, Some((1, 5, 1..2))),   // short-sequence d80 with extra keys (Lk 14)
        (4, 8, 70, 33, 320, Some((1, 21, 1..3))), // model-like: 8 heads of 40, broadcast extra
        (3, 1, 9, 5, 36, Some((2, 7, 1..3))),     // D % 8 != 0, per-row extra keys
        (2, 2, 16, 16, 128, Some((1, 5, 0..2))),  // d64: all rows extended
        (5, 2, 130, 9, 160, Some((1, 64, 4..5))), // d80, last row only, 3 launches
        (2, 1, 20, 6, 160, None),                 // d160
    ];
    for (i, (n, h, lq, lk, c, extra)) in cases.into_iter().enumerate() {
        let seed = 300 + 10 * i as u64;
        let (q, qc) = rand_pair(&be, &[n, lq, c], seed);
        let (k, kc) = rand_pair(&be, &[n, lk, c], seed + 1);
        let (v, vc) = rand_pair(&be, &[n, lk, c], seed + 2);
        let scale = 1.5 / ((c / h) as f32).sqrt();
        let what = format!("attention_heads n{n} h{h} lq{lq} lk{lk} c{c} extra {extra:?}");
        match extra {
            None => check_op!(what, be, tol,
                attention_heads(&q, &k, &v, None, h, scale) ~ (&qc, &kc, &vc, None, h, scale)),
            Some((eb, le, rows)) => {
                let (ke, kec) = rand_pair(&be, &[eb, le, c], seed + 3);
                let (ve, vec) = rand_pair(&be, &[eb, le, c], seed + 4);
                let r = rows.clone();
                check_op!(what, be, tol,
                    attention_heads(&q, &k, &v, Some((&ke, &ve, r)), h, scale)
                    ~ (&qc, &kc, &vc, Some((&kec, &vec, rows)), h, scale));
            }
        }
    }
    // rows outside the batch, extra keys of another batch: errors on both backends
    let (q, _) = rand_pair(&be, &[3, 4, 16], 390);
    let (e, _) = rand_pair(&be, &[2, 5, 16], 391);
    assert!(be
        .attention_heads(&q, &q, &q, Some((&e, &e, 2..4)), 2, 1.0)
        .is_err());
    assert!(be
        .attention_heads(&q, &q, &q, Some((&e, &e, 0..3)), 2, 1.0)
        .is_err());
    assert!(be.attention_heads(&q, &q, &q, None, 3, 1.0).is_err());
});

// `attention_heads_packed` (self-attention from one packed projection `(N, L, 3C)`: q, k, v read
// in place through row stride 3C) on the flash kernels, against the CPU backend's composed
// default (the three `narrow`s, then `attention_heads`).
crate::storages_test!(attention_heads_packed_matches_cpu, |be, tol| {
    type Extra = Option<(usize, usize, std::ops::Range<usize>)>; // (batch 1 or R, Le, rows)
    let cases: [(usize, usize, usize, usize, Extra); 7] = [
        (3, 2, 77, 80, None),  // d40, ragged Lq = Lk > 64 (wgmma kernel on sm_90a)
        (5, 8, 16, 320, None), // temporal: short-sequence entry, 40 problems
        (3, 2, 13, 160, Some((1, 5, 1..2))), // short-sequence d80 with extra keys (Lk 18)
        (4, 8, 70, 320, Some((1, 21, 1..3))), // model-like: 8 heads of 40, broadcast extra
        (3, 1, 9, 36, Some((2, 7, 1..3))), // D % 8 != 0 (row 108: plain loads), per-row extra
        (5, 2, 130, 160, Some((1, 64, 4..5))), // d80, last row only, 3 launches
        (2, 1, 20, 160, None), // d160
    ];
    for (i, (n, h, l, c, extra)) in cases.into_iter().enumerate() {
        let seed = 600 + 10 * i as u64;
        let (qkv, qkvc) = rand_pair(&be, &[n, l, 3 * c], seed);
        let scale = 1.5 / ((c / h) as f32).sqrt();
        let what = format!("attention_heads_packed n{n} h{h} l{l} c{c} extra {extra:?}");
        match extra {
            None => check_op!(what, be, tol,
                attention_heads_packed(&qkv, None, h, scale) ~ (&qkvc, None, h, scale)),
            Some((eb, le, rows)) => {
                let (ke, kec) = rand_pair(&be, &[eb, le, c], seed + 3);
                let (ve, vec) = rand_pair(&be, &[eb, le, c], seed + 4);
                let r = rows.clone();
                check_op!(what, be, tol,
                    attention_heads_packed(&qkv, Some((&ke, &ve, r)), h, scale)
                    ~ (&qkvc, Some((&kec, &vec, rows)), h, scale));
            }
        }
    }
    // a width not 3C, C not divisible by the heads, extra keys of another width or outside the
    // batch: errors on both backends
    let (q, qc) = rand_pair(&be, &[3, 4, 16], 690);
    let (p, pc) = rand_pair(&be, &[3, 4, 48], 691);
    let (e, ec) = rand_pair(&be, &[1, 5, 16], 692);
    assert!(be.attention_heads_packed(&q, None, 2, 1.0).is_err());
    assert!(CPU.attention_heads_packed(&qc, None, 2, 1.0).is_err());
    assert!(be.attention_heads_packed(&p, None, 3, 1.0).is_err());
    assert!(be
        .attention_heads_packed(&p, Some((&p, &p, 0..1)), 2, 1.0)
        .is_err());
    assert!(be
        .attention_heads_packed(&p, Some((&e, &e, 2..4)), 2, 1.0)
        .is_err());
    assert!(CPU
        .attention_heads_packed(&pc, Some((&ec, &ec, 2..4)), 2, 1.0)
        .is_err());
});

/// Mixed dtypes (f32 q / v, bf16 k) run the f32 flash entry; the bf16 operand is widened exactly,
/// so the result matches the CPU on the values the device holds.
#[test]
fn attention_mixed_dtypes() {
    use crate::common::{cpu as cpu_t, random};
    let _serial = crate::common::cuda_serial();
    let be = crate::common::cuda_backend().with_storage(DType::F32);
    let (b, h, lq, lk, d) = (1usize, 2usize, 11usize, 19usize, 40usize);
    let q = be
        .from_f32(&[b, h, lq, d], &random(b * h * lq * d, 181))
        .unwrap();
    let k32 = be
        .from_f32(&[b, h, lk, d], &random(b * h * lk * d, 182))
        .unwrap();
    let k = be.to_dtype(&k32, DType::Bf16).unwrap();
    let v = be
        .from_f32(&[b, h, lk, d], &random(b * h * lk * d, 183))
        .unwrap();
    let scale = 2.0 / (d as f32).sqrt();
    let got = be.attention(&q, &k, &v, scale).unwrap();
    assert_eq!(got.dtype(), DType::F32);
    let c =
        |t: &cyberhost_engine::backends::cuda::CudaTensor| cpu_t(t.shape(), &be.to_f32(t).unwrap());
    let want = CPU.attention(&c(&q), &c(&k), &c(&v), scale).unwrap();
    crate::common::check("attention mixed f32/bf16", &be, &got, &want, TOL_SPLIT);
}

/// Counters of the temporal attention launches of the `paper` step (token layout `(N, F, C)`,
/// F = 16 frames, 8 heads; N = 2 CFG rows x H x W latent positions: d40 at 64x64, d80 at 32x32,
/// d160 at 16x16) on v1 (`attention_d*_v1_bf16`, before) and on the short-sequence entries
/// (after): run on the stand-in with `PTX_EMU_STATS=FILE PTX_EMU_SAMPLE_BLOCKS=2
/// CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test -p cyberhost-suite --test kernels
/// attention_counters -- --ignored`, then `gpu-report --gpu h100-sxm FILE` (docs/performance.md,
/// "Short-sequence attention"). Checks nothing: sampled launches leave outputs invalid.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in and PTX_EMU_STATS"]
fn attention_counters() {
    let mut dev = stand_in_device();
    let (f, h) = (16u64, 8u64);
    for (n, d) in [(8192u64, 40u64), (2048, 80), (512, 160)] {
        let (shape, p) = token_self_attention(&mut dev, n, h, f, d);
        let v1 = traits_for(d, DType::Bf16).unwrap();
        dev.launch(
            KernelModule::Attention,
            v1.entry,
            attn_launch(v1, shape, 108),
            &p,
        )
        .unwrap();
        let t = short_traits(&p, DType::Bf16).unwrap();
        dev.launch(
            KernelModule::Attention,
            t.entry,
            launch_config_short(t, &p),
            &p,
        )
        .unwrap();
    }
}

/// The self-attention launches of the `paper` step at head dim `d` (B 16 rows = 2 CFG x 8 frames,
/// 8 heads, Lq = Lk = `l` latent positions, token layout `(B, L, 8 d)`): spatial (keys = the
/// queries' own tokens) and reference (plus `l` reference-net keys as the second key segment,
/// batch stride 0), as `(shape, params)` on `dev` (operands 0.5: counters only).
pub(crate) fn paper_self_attention(
    dev: &mut Device,
    l: u64,
    d: u64,
) -> Vec<(AttentionShape, AttentionParams)> {
    let h = 8u64;
    let (shape, p) = token_self_attention(dev, 16, h, l, d);
    let x = vec![0.5f32; (l * h * d) as usize];
    let [ke, ve] = dev.upload_all(DType::Bf16, [&x[..], &x[..]]).unwrap();
    let ext_st = AttnStrides {
        batch: 0,
        ..AttnStrides::tokens(l, d, h * d)
    };
    let pe = p.with_extra([ke, ve], [ext_st; 2], l).unwrap();
    vec![(shape, p), (shape, pe)]
}

/// Self-attention of `b` sequences of `l` tokens, `h` heads of `d` (token layout `(B, L, H d)`,
/// operands 0.5, poisoned output) on `dev`: counters only.
fn token_self_attention(
    dev: &mut Device,
    b: u64,
    h: u64,
    l: u64,
    d: u64,
) -> (AttentionShape, AttentionParams) {
    let c = h * d;
    let x = vec![0.5f32; (b * l * c) as usize];
    let [q, k, v] = dev
        .upload_all(DType::Bf16, [&x[..], &x[..], &x[..]])
        .unwrap();
    let o = dev.alloc_poisoned(x.len() * 2).unwrap();
    let shape = AttentionShape {
        batch: b,
        heads: h,
        lq: l,
        lk: l,
        d,
    };
    let st = AttnStrides::tokens(l, d, c);
    (
        shape,
        AttentionParams::new([q, k, v, o], [st; 4], shape, 0.25).unwrap(),
    )
}

/// Counters of the `paper` step's self-attention launches on the sm_80 set's v1 entries (d80 at
/// 32x32 = 1024 tokens, d160 at 16x16, d40 (the d48 entry) at 64x64; spatial and reference), each
/// launched three times: one tile per block (grid = tiles: the pre-persistent launch shape),
/// persistent on 108 SMs (an A100: grid = resident blocks x 108) and on 132 (H100 / H200, which
/// the sm_80 set also runs on). Run with `PTX_EMU_ARCH=sm_80
/// PTX_EMU_STATS=FILE PTX_EMU_SAMPLE_BLOCKS=16 CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test -p
/// cyberhost-suite --test kernels attention_persistent_counters -- --ignored`, then `gpu-report
/// --gpu a100-sxm FILE` (docs/performance.md, "Persistent attention"). Checks nothing: sampled
/// launches leave outputs invalid.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_80 and PTX_EMU_STATS"]
fn attention_persistent_counters() {
    let bm = |d| traits_for(d, DType::Bf16).unwrap().bm;
    paper_counters(&bm, &[108, 132], &launch_v1);
}

/// Launches `p` (bf16, built for `shape`) on its v1 entry with the launcher's grid for `sms` SMs.
fn launch_v1(dev: &mut Device, p: &AttentionParams, shape: AttentionShape, sms: u32) {
    let t = traits_for(shape.d, DType::Bf16).unwrap();
    dev.launch(
        KernelModule::Attention,
        t.entry,
        attn_launch(t, shape, sms),
        p,
    )
    .unwrap();
}

/// Counters of large self-attention on the sm_80 set's v1 entries: B 1, 8 heads, Lq = Lk = 4096
/// tokens (token layout) at head dims 40 (the d48 entry), 80 and 160, the launcher's grid for an
/// A100 (108 SMs). Unlike the `paper` step's d160 launches (Lq 256, DRAM-bound by their roofline),
/// these shapes show the kernels' own efficiency: every launch's footprint (4 x 8 x 4096 x D bf16)
/// fits the L2. Run every block (no `PTX_EMU_SAMPLE_BLOCKS`: exact counters, no persistent-grid
/// sampling bias): `PTX_EMU_ARCH=sm_80 PTX_EMU_STATS=FILE CYBERHOST_KERNEL_TEST_DEVICE=stand-in
/// cargo test -p cyberhost-suite --test kernels attention_large_counters -- --ignored`, then
/// `gpu-report --gpu a100-sxm FILE` (docs/performance.md, "Head dim 160 attention"). Checks nothing.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_80 and PTX_EMU_STATS"]
fn attention_large_counters() {
    large_self_attention(&|dev, p, shape| launch_v1(dev, p, shape, 108));
}

/// Exact counters (every block run: no `PTX_EMU_SAMPLE_BLOCKS`) of the `paper` step's head-dim-160
/// launches at 16x16 latents on the sm_80 set's persistent grid for an A100: spatial and reference
/// self-attention ([`paper_self_attention`]) and the 32-key cross-attention ([`paper_cross_d160`]).
/// `PTX_EMU_ARCH=sm_80 PTX_EMU_STATS=FILE CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test -p
/// cyberhost-suite --test kernels attention_d160_paper_counters -- --ignored`, then `gpu-report
/// --gpu a100-sxm FILE` (docs/performance.md, "Head dim 160 attention"). Checks nothing.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_80 and PTX_EMU_STATS"]
fn attention_d160_paper_counters() {
    paper_d160(&|dev, p, shape| launch_v1(dev, p, shape, 108));
}

/// Runs `launch(dev, params, shape)` for the `paper` step's d160 launches at Lq = 256: spatial,
/// reference (256 extra keys, batch stride 0), cross (B 32, 32 keys per row).
pub(crate) fn paper_d160(launch: &dyn Fn(&mut Device, &AttentionParams, AttentionShape)) {
    let mut dev = stand_in_device();
    for (shape, p) in paper_self_attention(&mut dev, 256, 160) {
        launch(&mut dev, &p, shape);
    }
    let (shape, p) = paper_cross_d160(&mut dev);
    launch(&mut dev, &p, shape);
}

/// The `paper` step's d160 cross-attention launch: B 32, 8 heads, Lq 256 tokens, Lk 32 keys per
/// batch row (token layouts `(B, L, 1280)`; operands 0.5: counters only).
pub(crate) fn paper_cross_d160(dev: &mut Device) -> (AttentionShape, AttentionParams) {
    let (b, h, lq, lk, d) = (32u64, 8u64, 256u64, 32u64, 160u64);
    let c = h * d;
    let xq = vec![0.5f32; (b * lq * c) as usize];
    let xk = vec![0.5f32; (b * lk * c) as usize];
    let [q, k, v] = dev
        .upload_all(DType::Bf16, [&xq[..], &xk[..], &xk[..]])
        .unwrap();
    let o = dev.alloc_poisoned(xq.len() * 2).unwrap();
    let shape = AttentionShape {
        batch: b,
        heads: h,
        lq,
        lk,
        d,
    };
    let (qs, ks) = (AttnStrides::tokens(lq, d, c), AttnStrides::tokens(lk, d, c));
    let p = AttentionParams::new([q, k, v, o], [qs, ks, ks, qs], shape, 0.25).unwrap();
    (shape, p)
}

/// Runs `launch(dev, params, shape)` on the stand-in for self-attention of B 1, 8 heads,
/// Lq = Lk = 4096 tokens at head dims 40, 80 and 160 (token layout, operands 0.5: counters only).
pub(crate) fn large_self_attention(launch: &dyn Fn(&mut Device, &AttentionParams, AttentionShape)) {
    let mut dev = stand_in_device();
    for d in [40u64, 80, 160] {
        let (shape, p) = token_self_attention(&mut dev, 1, 8, 4096, d);
        launch(&mut dev, &p, shape);
    }
}

/// Runs `launch(dev, params, shape, sms)` on the stand-in for every [`paper_self_attention`]
/// launch (d80 at 1024 tokens, d160 at 256, d40 at 4096), once with `sms` = its tile count (one
/// tile per block, `bm(d)` query rows each) and once per entry of `sms`.
pub(crate) fn paper_counters(
    bm: &dyn Fn(u64) -> u32,
    sms: &[u32],
    launch: &dyn Fn(&mut Device, &AttentionParams, AttentionShape, u32),
) {
    let mut dev = stand_in_device();
    for (l, d) in [(1024u64, 80u64), (256, 160), (4096, 40)] {
        for (shape, p) in paper_self_attention(&mut dev, l, d) {
            let tiles = cyberhost_kernels::attention::query_tiles(shape, bm(d)) as u32;
            for &n in [tiles].iter().chain(sms) {
                launch(&mut dev, &p, shape, n);
            }
        }
    }
}

/// The stand-in driver's device (the counters tests need `PTX_EMU_STATS` from it).
pub(crate) fn stand_in_device() -> Device {
    let dev = Device::new(1, 0);
    assert!(
        matches!(dev, Device::Cuda { .. }),
        "run on the stand-in (CYBERHOST_KERNEL_TEST_DEVICE=stand-in)"
    );
    dev
}
