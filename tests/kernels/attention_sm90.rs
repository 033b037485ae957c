//! `attention_sm90_d*_v1_bf16` (`kernels/cuda/attention_sm90.cu`, wgmma attention, sm_90a) against
//! the CPU backend's `attention`, through the sm_80 tests' case runner (same params, same checks:
//! poisoned outputs, nothing written outside the output, relative L2 at the bf16 tensor-core
//! tolerance): every head dim with an entry, ragged Lq / Lk (1 or 2 query blocks of 128 rows,
//! or of 256 for d40's four warpgroups, trailing warpgroups idle or not; 1 to 4 key tiles: the double-buffered ring wraps), Lk = 1, `(B, H, L, D)` and padded `(B, L, H, D)`
//! strides, extra broadcast keys (the second key segment, also straddling a tile), several
//! warp schedules; and which params the module declines (the launcher's fallback rule).

use crate::attention::{
    case, large_self_attention, on_sms, padded, paper_counters, paper_d160, run_attn_with, AttnCase,
};
use crate::harness::Device;
use cyberhost_kernels::attention::{AttentionParams, AttentionShape, AttnStrides};
use cyberhost_kernels::attention_sm90::{launch_config, supports};
use cyberhost_kernels::{DType, KernelModule};

fn cases() -> Vec<AttnCase> {
    let c = case;
    vec![
        c(1, 2, 70, 150, 40, false, false), // d40 (K padded to 48 in smem), 2 key tiles of 128
        c(2, 1, 37, 9, 40, true, false),    // audio cross-attention: short Lk, (B, L, H, D)
        c(1, 1, 16, 16, 64, false, false), // temporal attention Lq = Lk = frames: one warpgroup idle
        c(1, 2, 33, 70, 80, false, false), // d80: two swizzle atom columns, 2 key tiles
        c(1, 1, 65, 40, 128, true, false), // d128, both warpgroups (row 64 in the second)
        c(1, 1, 20, 45, 160, true, false), // d160: three atom columns
        c(1, 1, 5, 1, 160, false, false),  // Lk = 1
        c(1, 2, 19, 23, 16, true, false),  // d16 (tiny preset)
        c(2, 2, 9, 64, 32, false, false),  // d32, Lk one full tile: no mask
        c(1, 1, 130, 200, 80, true, false), // 2 query blocks (the last one's 2nd warpgroup idle)
        c(2, 3, 200, 300, 40, true, false), // d40: 4 warpgroups, the 4th idle; 3 key tiles (ring wraps)
        c(1, 2, 300, 150, 40, true, false), // d40: 2 blocks of 256 rows, 2nd: warpgroups 1-3 idle/ragged
        c(1, 1, 150, 290, 160, false, false), // d160: 5 key tiles of 64
        padded(c(2, 2, 70, 50, 40, true, false), 40, 0), // padded token rows
        padded(c(2, 2, 70, 130, 40, true, false), 0, 37), // extra keys straddle tiles 2 / 3
        padded(c(2, 2, 19, 5, 80, false, false), 8, 70), // extra keys, own Lk < one tile, padded
        padded(c(1, 2, 24, 32, 160, true, false), 8, 4), // d160 + 4 audio tokens
        // persistent (one SM: 1 block, or 2 for d16 / d32, walks every tile head-major; the ring
        // restarts per tile, Q's pad chunks re-zeroed after the staging)
        padded(c(3, 5, 130, 150, 80, true, false), 8, 37), // 2 x 15 tiles, extra keys, 2 key tiles
        padded(c(2, 3, 300, 140, 40, true, false), 0, 9),  // d40: 2 x 6 tiles, LSUM pad column
        c(3, 4, 70, 100, 160, false, false),               // d160: 12 tiles, 2 key tiles of 64
        c(5, 3, 40, 33, 32, true, false),                  // d32: 15 tiles on 2 blocks
        on_sms(c(2, 3, 200, 70, 64, true, false), 5),      // 12 tiles on 5 blocks: ragged round
    ]
}

fn run(dev: &mut Device, c: AttnCase, seed: u64) -> anyhow::Result<()> {
    if !crate::harness::runs_or_refuses(dev, cyberhost_kernels::KernelModule::AttentionSm90) {
        return Ok(());
    }
    run_attn_with(dev, c, seed, &|dev, p, shape| {
        let t = supports(p, DType::Bf16)
            .ok_or_else(|| anyhow::anyhow!("attention_sm90 declines {c:?}"))?;
        dev.launch(
            KernelModule::AttentionSm90,
            t.entry,
            launch_config(t, shape, c.sms),
            p,
        )?;
        Ok(t.entry.to_string())
    })
}

crate::harness::schedules_test!(attention_sm90_head_dims, cases(), 9700, run);

/// f32 operands, head dims without an entry and unaligned operands are declined (the backend
/// runs the sm_80 kernel for them).
#[test]
fn attention_sm90_declines() {
    let shape = |d| AttentionShape {
        batch: 1,
        heads: 2,
        lq: 10,
        lk: 10,
        d,
    };
    let params = |d, ptr| {
        let st = AttnStrides::blhd(2, 10, d);
        AttentionParams::new([ptr; 4], [st; 4], shape(d), 0.5).unwrap()
    };
    for d in [16, 32, 40, 64, 80, 128, 160] {
        assert!(supports(&params(d, 4096), DType::Bf16).is_some(), "d{d}");
        assert!(supports(&params(d, 4096), DType::F32).is_none(), "d{d} f32");
        assert!(
            supports(&params(d, 4098), DType::Bf16).is_none(),
            "d{d} unaligned"
        );
        assert!(supports(&params(d, 4096).without_cp_async(), DType::Bf16).is_none());
    }
    for d in [8, 36, 48, 72, 96, 150] {
        assert!(supports(&params(d, 4096), DType::Bf16).is_none(), "d{d}");
    }
}

/// Counters of the `paper` step's self-attention launches on the sm_90a entries
/// ([`paper_self_attention`]: d80, d160, d40; spatial and reference), each launched twice: one
/// tile per block (grid = tiles: the pre-persistent launch shape) and persistent (grid = resident
/// blocks x 132 SMs). Run on the stand-in at sm_90a with `PTX_EMU_STATS=FILE
/// PTX_EMU_SAMPLE_BLOCKS=16 CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test -p cyberhost-suite
/// --test kernels attention_sm90_counters -- --ignored`, then `gpu-report --gpu h100-sxm FILE`
/// (docs/performance.md, "Persistent attention"). Checks nothing: sampled launches leave outputs
/// invalid.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_90a and PTX_EMU_STATS"]
fn attention_sm90_counters() {
    let bm = |d| {
        cyberhost_kernels::attention_sm90::traits_for(d)
            .unwrap()
            .bm()
    };
    paper_counters(&bm, &[132], &launch_sm90);
}

/// Launches `p` (bf16, built for `shape`) on its `attention_sm90` entry with the launcher's grid
/// for `sms` SMs.
fn launch_sm90(dev: &mut Device, p: &AttentionParams, shape: AttentionShape, sms: u32) {
    let t = supports(p, DType::Bf16).unwrap();
    dev.launch(
        KernelModule::AttentionSm90,
        t.entry,
        launch_config(t, shape, sms),
        p,
    )
    .unwrap();
}

/// Counters of large self-attention on `attention_sm90` (B 1, 8 heads, Lq = Lk = 4096, head dims
/// 40, 80, 160; the launcher's grid for an H100, 132 SMs), every block run (exact counters): at
/// sm_90a with `PTX_EMU_STATS=FILE CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test -p
/// cyberhost-suite --test kernels attention_sm90_large_counters -- --ignored`, then `gpu-report
/// --gpu h100-sxm FILE` (docs/performance.md, "Head dim 160 attention"). Checks nothing.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_90a and PTX_EMU_STATS"]
fn attention_sm90_large_counters() {
    large_self_attention(&|dev, p, shape| launch_sm90(dev, p, shape, 132));
}

/// Exact counters (every block run) of the `paper` step's d160 launches at Lq 256 (spatial,
/// reference, 32-key cross) on `attention_sm90`'s grid for an H100: at sm_90a with
/// `PTX_EMU_STATS=FILE CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test -p cyberhost-suite --test
/// kernels attention_sm90_d160_paper_counters -- --ignored`, then `gpu-report --gpu h100-sxm FILE`
/// (docs/performance.md, "Head dim 160 attention"). Checks nothing.
#[test]
#[ignore = "counters for docs/performance.md; needs the stand-in at sm_90a and PTX_EMU_STATS"]
fn attention_sm90_d160_paper_counters() {
    paper_d160(&|dev, p, shape| launch_sm90(dev, p, shape, 132));
}
