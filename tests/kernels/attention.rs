//! `attention_d*_v1_bf16` (`kernels/cuda/attention.cu`, flash attention) against the CPU
//! backend's `attention`: every head dim, ragged Lq / Lk, `(B, H, L, D)` and `(B, L, H, D)`
//! strides, plain loads, poisoned outputs, several warp schedules; and the engine's slice launcher
//! (`backends::cuda::attention`) with its unsupported-head-dim error.

use crate::check_op;
use crate::common::rand_pair;
use crate::common::{assert_close, cpu, host, round_bf16, to_bf16, Rng, CPU};
use crate::harness::{
    download_bf16 as download, engine_device, upload_bf16 as upload, Device, TOL_BF16 as TOL,
};
use cyberhost_engine::backends::Backend;
use cyberhost_kernels::attention::{
    launch_config as attn_launch, traits_for, AttentionParams, AttentionShape, AttnStrides,
};
use cyberhost_kernels::KernelModule;

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
struct AttnCase {
    batch: u64,
    heads: u64,
    lq: u64,
    lk: u64,
    d: u64,
    /// `(B, L, H, D)` operands instead of `(B, H, L, D)`.
    blhd: bool,
    plain: bool,
}

fn attn_cases() -> Vec<AttnCase> {
    let c = |batch, heads, lq, lk, d, blhd, plain| AttnCase {
        batch,
        heads,
        lq,
        lk,
        d,
        blhd,
        plain,
    };
    vec![
        c(1, 2, 70, 150, 40, false, false), // reference attention Lk > Lq, ragged both, 3 key tiles
        c(2, 1, 37, 9, 40, true, false),    // audio cross-attention: short Lk, (B, L, H, D)
        c(1, 1, 16, 16, 64, false, false),  // temporal attention Lq = Lk = frames
        c(1, 2, 33, 70, 80, false, true),   // plain loads
        c(1, 1, 65, 40, 128, false, false), // 2 query blocks, BN 32 tiles
        c(1, 1, 20, 45, 160, true, false),  // largest head dim
        c(1, 1, 5, 4, 160, false, true),    // 4 audio tokens
    ]
}

/// `(B, H, L, D)` -> `(B, L, H, D)`.
fn swap_heads_and_rows(x: &[f32], (b, h, len, d): (usize, usize, usize, usize)) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for bi in 0..b {
        for hi in 0..h {
            for l in 0..len {
                let bhld = ((bi * h + hi) * len + l) * d;
                let blhd = ((bi * len + l) * h + hi) * d;
                y[blhd..blhd + d].copy_from_slice(&x[bhld..bhld + d]);
            }
        }
    }
    y
}

fn run_attn(dev: &mut Device, c: AttnCase, seed: u64) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let (b, h, lq, lk, d) = (
        c.batch as usize,
        c.heads as usize,
        c.lq as usize,
        c.lk as usize,
        c.d as usize,
    );
    // Dense (B*H, L, D) for the reference; scores of O(3) so the softmax is not flat.
    let q = round_bf16(&rng.randn(b * h * lq * d, 1.0, 0.0));
    let k = round_bf16(&rng.randn(b * h * lk * d, 1.0, 0.0));
    let v = round_bf16(&rng.randn(b * h * lk * d, 1.0, 0.0));
    let scale = 1.0 / (d as f32).sqrt();
    let want = attention_ref(&q, &k, &v, [b, h, lq, lk, d], scale);
    // (B, H, L, D) -> (B, L, H, D) when asked.
    let to_layout = |x: &[f32], len: usize| -> Vec<f32> {
        if c.blhd {
            swap_heads_and_rows(x, (b, h, len, d))
        } else {
            x.to_vec()
        }
    };
    let st = |len: u64| {
        if c.blhd {
            AttnStrides::blhd(c.heads, len, c.d)
        } else {
            AttnStrides::bhld(c.heads, len, c.d)
        }
    };
    let shape = AttentionShape {
        batch: c.batch,
        heads: c.heads,
        lq: c.lq,
        lk: c.lk,
        d: c.d,
    };
    let ptrs = [
        dev.upload(&to_bf16(&to_layout(&q, lq)))?,
        dev.upload(&to_bf16(&to_layout(&k, lk)))?,
        dev.upload(&to_bf16(&to_layout(&v, lk)))?,
        dev.alloc_poisoned(want.len() * 2)?,
    ];
    let mut p = AttentionParams::new(ptrs, [st(c.lq), st(c.lk), st(c.lk), st(c.lq)], shape, scale)?;
    if c.plain {
        p = p.without_cp_async();
    }
    let entry = traits_for(c.d)?.entry;
    dev.launch(KernelModule::Attention, entry, attn_launch(shape), &p)?;
    // compared in the output's layout
    let what = format!("{entry} {c:?} aligned {}", p.aligned);
    dev.check_bf16(&what, ptrs[3], &to_layout(&want, lq))
}

crate::harness::schedules_test!(attention_flash_head_dims, attn_cases(), 9000, run_attn);

#[test]
fn attention_engine_launcher() {
    use cyberhost_engine::backends::cuda::attention::{attention, AttnLayout};
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
    attention(dev, &dq, &dk, &dv, &mut o, shape, AttnLayout::Bhld, scale).unwrap();
    let want = attention_ref(&q, &k, &v, [b, h, lq, lk, d], scale);
    assert_close("engine attention", &download(dev, &o), &want, TOL);
    // Unsupported head dim: an error, not a launch.
    let bad = AttentionShape { d: 36, ..shape };
    assert!(attention(dev, &dq, &dk, &dv, &mut o, bad, AttnLayout::Bhld, scale).is_err());
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
        (2, 1, 5, 70, 40, 24),
    ] {
        let (q, qc) = rand_pair(&be, &[b, h, lq, d], 170);
        let (k, kc) = rand_pair(&be, &[b, h, lk, d], 171);
        let (v, vc) = rand_pair(&be, &[b, h, lk, dv], 172);
        let scale = 1.0 / (d as f32).sqrt() * 2.0;
        check_op!(format!("attention b{b} h{h} lq{lq} lk{lk} d{d} dv{dv}"), be, 1e-2,
            attention(&q, &k, &v, scale) ~ (&qc, &kc, &vc, scale));
    }
});
