//! UNet2DConditionModel / UNetMotionModel against diffusers 0.42.1 fixtures
//! (`tests/fixtures/unet2d_*`, `tests/fixtures/unet_motion_*`), config errors,
//! and the hook call sites.

mod common;

use common::fixtures;
use std::path::{Path, PathBuf};

/// Checks every `prefix*` fixture, each of which must be a `component` case.
fn check_all(prefix: &str, component: &str) {
    let dirs = fixtures::dirs(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
    });
    assert!(
        !dirs.is_empty(),
        "no `{prefix}*` fixtures under tests/fixtures: generate them (tools/fixtures)"
    );
    fixtures::check_each(component, &dirs, |d, r| {
        assert_eq!(r.component, component, "{}", d.display())
    });
}

#[test]
fn unet2d_fixtures_match_diffusers() {
    check_all("unet2d_", "unet2d");
}

#[test]
fn unet_motion_fixtures_match_diffusers() {
    check_all("unet_motion_", "unet_motion");
}

// ---------------------------------------------------------------------------
// Config errors
// ---------------------------------------------------------------------------

use cyberhost_engine::models::unet2d::UNet2DConditionModelConfig;
use cyberhost_engine::models::unet_motion::UNetMotionModelConfig;

/// The error's message (with its causes) names every one of `words`.
fn assert_error_names(err: anyhow::Error, words: [&str; 2]) {
    let err = format!("{err:#}");
    assert!(words.iter().all(|w| err.contains(w)), "{err}");
}

#[test]
fn unknown_block_type_is_named_in_the_error() {
    let cfg = serde_json::json!({
        "block_out_channels": [16, 32],
        "down_block_types": ["CrossAttnDownBlock2D", "FancyDownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "norm_num_groups": 8,
    });
    assert_error_names(
        UNet2DConditionModelConfig::from_json(&cfg).unwrap_err(),
        ["FancyDownBlock2D", "down_block_types"],
    );

    let cfg = serde_json::json!({
        "block_out_channels": [16, 32],
        "down_block_types": ["CrossAttnDownBlockMotion", "DownBlockMotion"],
        "up_block_types": ["UpBlockMotion", "CrossAttnUpBlock3D"],
    });
    assert_error_names(
        UNetMotionModelConfig::from_json(&cfg).unwrap_err(),
        ["CrossAttnUpBlock3D", "up_block_types"],
    );

    let cfg = serde_json::json!({ "mid_block_type": "UNetMidBlock2DSimpleCrossAttn" });
    assert_error_names(
        UNet2DConditionModelConfig::from_json(&cfg).unwrap_err(),
        ["UNetMidBlock2DSimpleCrossAttn", "mid_block_type"],
    );
}

#[test]
fn unsupported_config_values_are_named_in_the_error() {
    for (key, value) in [
        ("class_embed_type", serde_json::json!("timestep")),
        ("addition_embed_type", serde_json::json!("text_time")),
        ("resnet_time_scale_shift", serde_json::json!("scale_shift")),
        ("time_embedding_type", serde_json::json!("fourier")),
        ("act_fn", serde_json::json!("mish")),
    ] {
        let mut cfg = serde_json::json!({});
        cfg[key] = value.clone();
        let err = format!(
            "{:#}",
            UNet2DConditionModelConfig::from_json(&cfg).unwrap_err()
        );
        let shown = value.as_str().unwrap();
        assert!(err.contains(key) && err.contains(shown), "{key}: {err}");
    }
    // the diffusers defaults (SD1.5 layout) are accepted
    UNet2DConditionModelConfig::from_json(&serde_json::json!({})).unwrap();
    UNetMotionModelConfig::from_json(&serde_json::json!({})).unwrap();
}

// ---------------------------------------------------------------------------
// Hooks
// ---------------------------------------------------------------------------

use cyberhost_engine::backends::cpu::CpuBackend;
use cyberhost_engine::backends::{Backend, BackendExt, TensorLike};
use cyberhost_engine::conformance::{load_case, rel_l2, Case};
use cyberhost_engine::models::attention::{ExtraKv, ExtraKvSource};
use cyberhost_engine::models::hooks::{NoHooks, UNetHooks};
use cyberhost_engine::models::unet2d::UNet2DConditionModel;
use cyberhost_engine::models::unet_motion::UNetMotionModel;
use cyberhost_engine::var_builder::VarBuilder;

type T = <CpuBackend as Backend>::Tensor;

fn fixture(name: &str) -> PathBuf {
    fixtures::root().join(name)
}

/// Fixture `name`'s model, built by `load` from its weights and its `model/config.json`, and its
/// case.
fn fixture_model<M>(
    be: &CpuBackend,
    name: &str,
    load: impl FnOnce(&VarBuilder<CpuBackend>, &Path) -> M,
) -> (M, Case) {
    let dir = fixture(name);
    let vb = VarBuilder::open(*be, dir.join("model")).unwrap();
    let model = load(&vb, &dir.join("model/config.json"));
    vb.finish().unwrap();
    (model, load_case(&dir).unwrap())
}

/// Input `name` of a fixture case as a tensor.
fn input(be: &CpuBackend, case: &Case, name: &str) -> T {
    let h = case.input(name).unwrap();
    be.from_f32(&h.shape, &h.data).unwrap()
}

/// The unet2d_a model (batch 2) and its inputs.
fn unet2d_a(be: &CpuBackend) -> (UNet2DConditionModel<CpuBackend>, T, Vec<f32>, T) {
    let (unet, case) = fixture_model(be, "unet2d_a", |vb, config| {
        let cfg = UNet2DConditionModelConfig::from_file(config).unwrap();
        UNet2DConditionModel::load(vb, &cfg).unwrap()
    });
    let ts = case.input("timestep").unwrap().data.clone();
    let x = input(be, &case, "sample");
    (unet, x, ts, input(be, &case, "encoder_hidden_states"))
}

/// `unet.forward` with `hooks`, read back.
fn run(
    be: &CpuBackend,
    unet: &UNet2DConditionModel<CpuBackend>,
    (x, ts, ehs): (&T, &[f32], &T),
    hooks: &mut dyn UNetHooks<CpuBackend>,
) -> Vec<f32> {
    be.to_f32(&unet.forward(be, x, ts, ehs, hooks).unwrap())
        .unwrap()
}

/// Records every call site.
#[derive(Default)]
struct Recorder {
    norm1: Vec<(String, Vec<usize>)>,
    conv_in: Vec<(Vec<usize>, usize)>,
    time: Vec<Vec<usize>>,
    up: Vec<(usize, Vec<usize>, usize)>,
}

impl UNetHooks<CpuBackend> for Recorder {
    fn after_conv_in(&mut self, _be: &CpuBackend, h: T, f: usize) -> anyhow::Result<T> {
        self.conv_in.push((h.shape().to_vec(), f));
        Ok(h)
    }
    fn after_time_embedding(&mut self, _be: &CpuBackend, emb: T) -> anyhow::Result<T> {
        self.time.push(emb.shape().to_vec());
        Ok(emb)
    }
    fn after_up_block(&mut self, _be: &CpuBackend, i: usize, h: T, f: usize) -> anyhow::Result<T> {
        self.up.push((i, h.shape().to_vec(), f));
        Ok(h)
    }
    fn on_norm1(&mut self, _be: &CpuBackend, name: &str, n: &T) -> anyhow::Result<()> {
        self.norm1.push((name.to_string(), n.shape().to_vec()));
        Ok(())
    }
}

#[test]
fn hooks_are_called_at_their_sites() {
    let be = CpuBackend::new();
    let (unet, x, ts, ehs) = unet2d_a(&be);
    let plain = run(&be, &unet, (&x, &ts, &ehs), &mut NoHooks);
    let mut rec = Recorder::default();
    let out = run(&be, &unet, (&x, &ts, &ehs), &mut rec);
    assert_eq!(
        rel_l2(&out, &plain),
        0.0,
        "no-op hooks must not change the output"
    );
    // unet2d_a: (16, 32) channels, batch 2, 16x16, CrossAttn down 0 / up 1, 1 layer per block
    assert_eq!(rec.conv_in, vec![(vec![2, 16, 16, 16], 1)]);
    assert_eq!(rec.time, vec![vec![2, 64]]);
    assert_eq!(
        rec.up,
        vec![(0, vec![2, 32, 8, 8], 1), (1, vec![2, 16, 16, 16], 1)]
    );
    let names: Vec<&str> = rec.norm1.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "down_blocks.0.attentions.0.transformer_blocks.0",
            "mid_block.attentions.0.transformer_blocks.0",
            "up_blocks.1.attentions.0.transformer_blocks.0",
            "up_blocks.1.attentions.1.transformer_blocks.0",
        ]
    );
    assert_eq!(rec.norm1[0].1, vec![2, 256, 16]);
    assert_eq!(rec.norm1[1].1, vec![2, 64, 32]);
    let listed: Vec<&str> = unet
        .transformer_blocks()
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    assert_eq!(listed, names);
}

/// Adds per-channel constants after conv_in and a vector to the time embedding.
struct AddHooks {
    feat: T,
    temb: T,
}

impl UNetHooks<CpuBackend> for AddHooks {
    fn after_conv_in(&mut self, be: &CpuBackend, h: T, _f: usize) -> anyhow::Result<T> {
        be.add(&h, &self.feat)
    }
    fn after_time_embedding(&mut self, be: &CpuBackend, emb: T) -> anyhow::Result<T> {
        be.add(&emb, &self.temb)
    }
}

fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

#[test]
fn conv_in_and_time_embedding_hooks_add_where_the_biases_do() {
    let be = CpuBackend::new();
    let (unet, x, ts, ehs) = unet2d_a(&be);
    let c = pseudo_random(16, 1);
    let d = pseudo_random(64, 2);
    let mut hooks = AddHooks {
        feat: be.from_f32(&[1, 16, 1, 1], &c).unwrap(),
        temb: be.from_f32(&[1, 64], &d).unwrap(),
    };
    let hooked = run(&be, &unet, (&x, &ts, &ehs), &mut hooks);
    // the same shifts folded into conv_in.bias and time_embedding.linear_2.bias
    let mut folded = unet.clone();
    let cb = folded.trunk.conv_in.bias.as_ref().unwrap();
    folded.trunk.conv_in.bias = Some(be.add(cb, &be.from_f32(&[16], &c).unwrap()).unwrap());
    let tb = folded.trunk.time_embedding.linear_2.bias.as_ref().unwrap();
    folded.trunk.time_embedding.linear_2.bias =
        Some(be.add(tb, &be.from_f32(&[64], &d).unwrap()).unwrap());
    let want = run(&be, &folded, (&x, &ts, &ehs), &mut NoHooks);
    let plain = run(&be, &unet, (&x, &ts, &ehs), &mut NoHooks);
    assert!(
        rel_l2(&hooked, &want) < 1e-5,
        "rel_l2 {}",
        rel_l2(&hooked, &want)
    );
    assert!(
        rel_l2(&hooked, &plain) > 1e-3,
        "the hooks must change the output"
    );
}

/// Reference attention: row 0 ("cond") gets extra key/value tokens at every spatial block.
struct RefAttn {
    /// keep row 0's own norm1 output as the extra tokens (duplicated keys: a no-op),
    /// or use fixed random tokens of the block's width.
    duplicate: bool,
    tokens: std::collections::HashMap<String, T>,
}

impl UNetHooks<CpuBackend> for RefAttn {
    fn on_norm1(&mut self, be: &CpuBackend, name: &str, n: &T) -> anyhow::Result<()> {
        let t = if self.duplicate {
            be.narrow(n, 0, 0, 1)?
        } else {
            let (l, c) = (5, n.shape()[2]);
            be.from_f32(&[1, l, c], &pseudo_random(l * c, name.len() as u32))?
        };
        self.tokens.insert(name.to_string(), t);
        Ok(())
    }
    fn attn1_extra_kv(&self, name: &str) -> Option<ExtraKv<'_, CpuBackend>> {
        self.tokens.get(name).map(|t| ExtraKv {
            source: ExtraKvSource::Tokens(t),
            rows: 0..1,
        })
    }
}

#[test]
fn reference_attention_changes_only_the_chosen_rows() {
    let be = CpuBackend::new();
    let (unet, x, ts, ehs) = unet2d_a(&be);
    let plain = run(&be, &unet, (&x, &ts, &ehs), &mut NoHooks);
    let half = plain.len() / 2;

    // keys/values [k; k], [v; v] give the same softmax average: output unchanged
    let mut dup = RefAttn {
        duplicate: true,
        tokens: Default::default(),
    };
    let out = run(&be, &unet, (&x, &ts, &ehs), &mut dup);
    assert_eq!(dup.tokens.len(), 4);
    assert!(
        rel_l2(&out, &plain) < 1e-5,
        "duplicated keys: rel_l2 {}",
        rel_l2(&out, &plain)
    );

    // random extra tokens change row 0 and leave row 1 exactly as it was
    let mut rnd = RefAttn {
        duplicate: false,
        tokens: Default::default(),
    };
    let out = run(&be, &unet, (&x, &ts, &ehs), &mut rnd);
    assert!(
        rel_l2(&out[..half], &plain[..half]) > 1e-3,
        "row 0 must change"
    );
    assert!(
        rel_l2(&out[half..], &plain[half..]) < 1e-6,
        "row 1 must not change"
    );

    // pre-projected keys/values give the same numbers as raw tokens
    struct Projected(Vec<(String, T, T)>);
    impl UNetHooks<CpuBackend> for Projected {
        fn attn1_extra_kv(&self, name: &str) -> Option<ExtraKv<'_, CpuBackend>> {
            self.0
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, k, v)| ExtraKv {
                    source: ExtraKvSource::Projected { k, v },
                    rows: 0..1,
                })
        }
    }
    let mut proj = Projected(Vec::new());
    for b in unet.transformer_blocks() {
        let (k, v) = b.attn1.project_kv(&be, &rnd.tokens[&b.name]).unwrap();
        proj.0.push((b.name.clone(), k, v));
    }
    let out_p = run(&be, &unet, (&x, &ts, &ehs), &mut proj);
    assert!(
        rel_l2(&out_p, &out) < 1e-6,
        "projected: rel_l2 {}",
        rel_l2(&out_p, &out)
    );
}

#[test]
fn motion_model_hooks_see_folded_frames() {
    let be = CpuBackend::new();
    let (unet, case) = fixture_model(&be, "unet_motion_b", |vb, config| {
        let cfg = UNetMotionModelConfig::from_file(config).unwrap();
        UNetMotionModel::load(vb, &cfg).unwrap()
    });
    let t = |n: &str| input(&be, &case, n);
    let ts = case.input("timestep").unwrap().data.clone();
    let mut rec = Recorder::default();
    let out = unet
        .forward(
            &be,
            &t("sample"),
            &ts,
            &t("encoder_hidden_states"),
            &mut rec,
        )
        .unwrap();
    assert_eq!(out.shape(), &[2, 4, 3, 8, 8]);
    // batch 2 × 3 frames, 16 channels at 8x8
    assert_eq!(rec.conv_in, vec![(vec![6, 16, 8, 8], 3)]);
    assert_eq!(rec.time, vec![vec![2, 64]]);
    assert_eq!(
        rec.up.iter().map(|u| (u.0, u.2)).collect::<Vec<_>>(),
        vec![(0, 3), (1, 3)]
    );
    assert!(rec.norm1.iter().any(
        |(n, s)| n == "down_blocks.0.attentions.0.transformer_blocks.0" && s == &vec![6, 64, 16]
    ));
    // motion blocks: (B·H·W, F, C)
    assert!(rec.norm1.iter().any(|(n, s)| n
        == "down_blocks.0.motion_modules.0.transformer_blocks.1"
        && s == &vec![128, 3, 16]));

    // (B, S, D) encoder states are repeated per frame, as the AnimateDiff pipeline does
    let e = case.input("encoder_hidden_states").unwrap();
    let (s, d) = (e.shape[1], e.shape[2]);
    let per_item: Vec<f32> = [0usize, 3]
        .iter()
        .flat_map(|&r| e.data[r * s * d..(r + 1) * s * d].to_vec())
        .collect();
    let shared = be.from_f32(&[2, s, d], &per_item).unwrap();
    let rows: Vec<f32> = (0..6)
        .flat_map(|i| per_item[(i / 3) * s * d..(i / 3 + 1) * s * d].to_vec())
        .collect();
    let repeated = be.from_f32(&[6, s, d], &rows).unwrap();
    let sample = t("sample");
    let run = |ehs: &T| {
        let out = unet.forward(&be, &sample, &ts, ehs, &mut NoHooks);
        be.to_f32(&out.unwrap()).unwrap()
    };
    assert_eq!(rel_l2(&run(&shared), &run(&repeated)), 0.0);
}
