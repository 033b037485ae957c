//! CyberHost's own modules (`engine/src/models/cyberhost`) on the CPU backend with in-memory
//! weights: config parsing and validation, the tensor list, audio windows (hand-checked),
//! codebook orthonormalisation, BatchNorm folding, max_pool2d, and every module against
//! slow f64 loops written here from the spec (sections 4–6).
//!
//! Run: `cargo test --test cyberhost_modules`

mod common;

use std::collections::HashMap;
use std::ops::Range;

use cyberhost_engine::backends::cpu::{CpuBackend, CpuTensor};
use cyberhost_engine::backends::{Backend, Conv2dParams, TensorLike};
use cyberhost_engine::models::cyberhost::{
    audio_windows, fold_batch_norm, interpolate_frames, orthonormalize_rows, tensor_specs,
    CyberHostConfig, CyberHostModules, IdentityTokens, RcaSiteConfig, RegionCodebookAttention,
    TensorInit,
};
use cyberhost_engine::models::embeddings::Timesteps;
use cyberhost_engine::var_builder::VarBuilder;
use serde_json::{json, Value};

// ---- helpers ---------------------------------------------------------------------

use common::Rng;

fn be() -> CpuBackend {
    CpuBackend::new()
}

fn rel_l2(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let num: f64 = got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-300)).sqrt()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn tiny_json() -> Value {
    json!({"_class_name": "CyberHostModules",
     "audio_proj": {"window": 2, "num_hidden_states": 3, "audio_dim": 64, "intermediate_dim": 64, "num_tokens": 4, "context_dim": 64},
     "pose_encoder": {"channels": [8, 16, 16, 32], "out_channels": 32},
     "clarity_embedding": {"in_channels": 32, "time_embed_dim": 128},
     "identity_encoder": {"stem_channels": 8, "stage_channels": [8, 16], "blocks_per_stage": [1, 1], "crop_size": 32},
     "rca": {"sites": [1, 2], "site_channels": [64, 32], "codebook_size": 8, "num_frames": 10, "norm_num_groups": 8, "identity_dim": 16},
     "pipeline": {"width": 128, "height": 128, "fps": 12, "frames_per_clip": 8, "motion_frames": 2, "num_inference_steps": 4, "guidance_scale": 3.5, "audio_window": 2, "hand_clarity": 1.0}})
}

/// The tiny config with a 2-head site (C = 128) so head splitting is exercised.
fn test_cfg() -> CyberHostConfig {
    let mut v = tiny_json();
    v["rca"]["site_channels"] = json!([128, 32]);
    CyberHostConfig::from_value("test config", &v).unwrap()
}

type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Well-scaled random values for every tensor of `cfg` (weights ~ 1/√fan_in).
fn random_tensors(cfg: &CyberHostConfig, seed: u64) -> Tensors {
    let mut rng = Rng::new(seed);
    let mut out = HashMap::new();
    for s in tensor_specs(cfg).unwrap() {
        let n: usize = s.shape.iter().product();
        let fan_in: usize = s.shape[1..].iter().product::<usize>().max(1);
        let v: Vec<f32> = match s.init {
            TensorInit::Positive => (0..n).map(|_| (0.5 + rng.uniform()) as f32).collect(),
            TensorInit::Codebook => rng.vec(n),
            _ if s.shape.len() >= 2 => rng
                .vec(n)
                .iter()
                .map(|x| x / (fan_in as f32).sqrt())
                .collect(),
            _ if s.name.ends_with("norm.weight")
                || s.name.contains(".bn")
                || s.name.ends_with("downsample.1.weight") =>
            {
                rng.vec(n).iter().map(|x| 1.0 + 0.2 * x).collect()
            }
            _ => rng.vec(n).iter().map(|x| 0.2 * x).collect(),
        };
        out.insert(s.name, (s.shape, v));
    }
    out
}

fn tp() -> Timesteps {
    Timesteps {
        num_channels: 32,
        flip_sin_to_cos: true,
        downscale_freq_shift: 0.0,
    }
}

fn load(cfg: &CyberHostConfig, t: &Tensors) -> CyberHostModules<CpuBackend> {
    let vb = VarBuilder::from_tensors(be(), t.clone()).unwrap();
    let m = CyberHostModules::load(&vb, cfg, &tp()).unwrap();
    vb.finish().unwrap();
    m
}

/// The test config, its random tensors from `seed` and the modules loaded from them.
fn loaded(seed: u64) -> (CyberHostConfig, Tensors, CyberHostModules<CpuBackend>) {
    let cfg = test_cfg();
    let t = random_tensors(&cfg, seed);
    let m = load(&cfg, &t);
    (cfg, t, m)
}

fn get<'a>(t: &'a Tensors, name: &str) -> &'a [f32] {
    &t.get(name).unwrap_or_else(|| panic!("no tensor {name}")).1
}

fn tensor(shape: &[usize], v: &[f32]) -> CpuTensor {
    be().from_f32(shape, v).unwrap()
}

// ---- slow f64 references -----------------------------------------------------------

/// x (n, c, h, w), w (o, c, k, k) → (n, o, ho, wo)
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f64],
    [n, c, h, w]: [usize; 4],
    wt: &[f32],
    o: usize,
    k: usize,
    b: Option<&[f32]>,
    s: usize,
    p: usize,
) -> (Vec<f64>, [usize; 4]) {
    let ho = (h + 2 * p - k) / s + 1;
    let wo = (w + 2 * p - k) / s + 1;
    let mut y = vec![0f64; n * o * ho * wo];
    for ni in 0..n {
        for oi in 0..o {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = b.map_or(0.0, |b| b[oi] as f64);
                    for ci in 0..c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * s + ky) as isize - p as isize;
                                let ix = (ox * s + kx) as isize - p as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                acc += x[((ni * c + ci) * h + iy as usize) * w + ix as usize]
                                    * wt[((oi * c + ci) * k + ky) * k + kx] as f64;
                            }
                        }
                    }
                    y[((ni * o + oi) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    (y, [n, o, ho, wo])
}

/// rows (r, i) · wᵀ (o, i) + b
fn linear_ref(x: &[f64], i: usize, w: &[f32], o: usize, b: Option<&[f32]>) -> Vec<f64> {
    let r = x.len() / i;
    let mut y = vec![0f64; r * o];
    for ri in 0..r {
        for oi in 0..o {
            let mut acc = b.map_or(0.0, |b| b[oi] as f64);
            for k in 0..i {
                acc += x[ri * i + k] * w[oi * i + k] as f64;
            }
            y[ri * o + oi] = acc;
        }
    }
    y
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Classical Gram-Schmidt (equal to modified GS in exact arithmetic) × √c.
fn gram_schmidt_ref(rows: &[f32], n: usize, c: usize) -> Vec<f64> {
    let mut q: Vec<Vec<f64>> = Vec::new();
    for i in 0..n {
        let r: Vec<f64> = f64s(&rows[i * c..(i + 1) * c]);
        let mut v = r.clone();
        for qj in &q {
            let d: f64 = r.iter().zip(qj).map(|(a, b)| a * b).sum();
            for (a, b) in v.iter_mut().zip(qj) {
                *a -= d * b;
            }
        }
        let nv = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        q.push(v.iter().map(|x| x / nv).collect());
    }
    q.concat().iter().map(|x| x * (c as f64).sqrt()).collect()
}

/// MHA with shared kv: q_rows (r, c), kv (lk, c) → (r, c).
fn mha_ref(
    t: &Tensors,
    root: &str,
    q_rows: &[f64],
    kv: &[f64],
    c: usize,
    heads: usize,
) -> Vec<f64> {
    let q = linear_ref(q_rows, c, get(t, &format!("{root}.to_q.weight")), c, None);
    let k = linear_ref(kv, c, get(t, &format!("{root}.to_k.weight")), c, None);
    let v = linear_ref(kv, c, get(t, &format!("{root}.to_v.weight")), c, None);
    let (r, lk, d) = (q_rows.len() / c, kv.len() / c, c / heads);
    let mut out = vec![0f64; r * c];
    for ri in 0..r {
        for hd in 0..heads {
            let sc: Vec<f64> = (0..lk)
                .map(|j| {
                    (0..d)
                        .map(|e| q[ri * c + hd * d + e] * k[j * c + hd * d + e])
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ex: Vec<f64> = sc.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = ex.iter().sum();
            for e in 0..d {
                out[ri * c + hd * d + e] = (0..lk).map(|j| ex[j] / z * v[j * c + hd * d + e]).sum();
            }
        }
    }
    out
}

/// The spec's section 4, written out: F_out for one region of one site.
#[allow(clippy::too_many_arguments)]
fn rca_ref(
    t: &Tensors,
    root: &str,
    rc: &RcaSiteConfig,
    f_in: &[f64],
    [n, c, h, w]: [usize; 4],
    nf: usize,
    id: Option<(&[f32], std::ops::Range<usize>)>,
) -> Vec<f64> {
    let hw = h * w;
    let heads = (c / 64).max(1);
    let g = rc.norm_num_groups;
    let (gw, gb) = (
        get(t, &format!("{root}.norm.weight")),
        get(t, &format!("{root}.norm.bias")),
    );
    // X (n, hw, c)
    let mut x = vec![0f64; n * hw * c];
    let cg = c / g;
    for ni in 0..n {
        for gi in 0..g {
            let vals: Vec<f64> = (gi * cg..(gi + 1) * cg)
                .flat_map(|ch| (0..hw).map(move |p| (ch, p)))
                .map(|(ch, p)| f_in[(ni * c + ch) * hw + p])
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            for ch in gi * cg..(gi + 1) * cg {
                for p in 0..hw {
                    let v = (f_in[(ni * c + ch) * hw + p] - mean) / (var + 1e-6).sqrt();
                    x[(ni * hw + p) * c + ch] = v * gw[ch] as f64 + gb[ch] as f64;
                }
            }
        }
    }
    let s = gram_schmidt_ref(get(t, &format!("{root}.spatial_bank")), rc.codebook_size, c);
    let tb = gram_schmidt_ref(get(t, &format!("{root}.temporal_bank")), rc.num_frames, c);
    let a_s = mha_ref(t, &format!("{root}.spatial"), &x, &s, c, heads);
    let mut q_t = vec![0f64; n * hw * c];
    for ni in 0..n {
        let f = ni % nf;
        for p in 0..hw {
            for ch in 0..c {
                let i = (ni * hw + p) * c + ch;
                q_t[i] = x[i] + a_s[i] + tb[f * c + ch];
            }
        }
    }
    let a_t = mha_ref(t, &format!("{root}.temporal"), &q_t, &tb, c, heads);
    let mut sum: Vec<f64> = a_s.iter().zip(&a_t).map(|(a, b)| a + b).collect();
    if let Some((tokens, rows)) = id {
        let e = rc.identity_dim;
        let kv = linear_ref(
            &f64s(tokens),
            e,
            get(t, &format!("{root}.id_proj.weight")),
            c,
            Some(get(t, &format!("{root}.id_proj.bias"))),
        );
        let xr = &x[rows.start * hw * c..rows.end * hw * c];
        let f_id = mha_ref(t, &format!("{root}.identity"), xr, &kv, c, heads);
        for (i, v) in f_id.iter().enumerate() {
            sum[rows.start * hw * c + i] += v;
        }
    }
    let out = linear_ref(
        &sum,
        c,
        get(t, &format!("{root}.to_out.weight")),
        c,
        Some(get(t, &format!("{root}.to_out.bias"))),
    );
    let (m1, s1) = conv_ref(
        f_in,
        [n, c, h, w],
        get(t, &format!("{root}.mask.conv1.weight")),
        c / 4,
        3,
        Some(get(t, &format!("{root}.mask.conv1.bias"))),
        1,
        1,
    );
    let m1: Vec<f64> = m1.iter().map(|&v| silu(v)).collect();
    let (m2, _) = conv_ref(
        &m1,
        s1,
        get(t, &format!("{root}.mask.conv2.weight")),
        1,
        1,
        Some(get(t, &format!("{root}.mask.conv2.bias"))),
        1,
        0,
    );
    let mut y = f_in.to_vec();
    for ni in 0..n {
        for ch in 0..c {
            for p in 0..hw {
                let m = 1.0 / (1.0 + (-m2[ni * hw + p]).exp());
                y[(ni * c + ch) * hw + p] += m * out[(ni * hw + p) * c + ch];
            }
        }
    }
    y
}

// ---- config ------------------------------------------------------------------------

#[test]
fn config_parses_round_trips_and_names_keys() {
    let cfg = CyberHostConfig::from_value("tiny", &tiny_json()).unwrap();
    assert_eq!(cfg.audio_proj.input_dim(), 5 * 3 * 64);
    assert_eq!(cfg.identity_encoder.grid_size(), 4);
    assert_eq!(cfg.identity_encoder.embed_dim(), 16);
    let back = CyberHostConfig::from_value("round trip", &cfg.to_value()).unwrap();
    assert_eq!(back, cfg);
    let text = serde_json::to_string(&cfg).unwrap();
    assert!(
        text.contains("\"_class_name\":\"CyberHostModules\""),
        "{text}"
    );

    // ResNet-18 at 128: E 512, 4×4 tokens (spec section 8)
    let mut v = tiny_json();
    v["identity_encoder"] = json!({"stem_channels": 64, "stage_channels": [64, 128, 256, 512], "blocks_per_stage": [2, 2, 2, 2], "crop_size": 128});
    v["rca"]["identity_dim"] = json!(512);
    let r18 = CyberHostConfig::from_value("r18", &v).unwrap();
    assert_eq!(r18.identity_encoder.grid_size(), 4);

    let err_of = |edit: &dyn Fn(&mut Value)| -> String {
        let mut v = tiny_json();
        edit(&mut v);
        format!("{:#}", CyberHostConfig::from_value("cfg", &v).unwrap_err())
    };
    let cases: Vec<(&str, Box<dyn Fn(&mut Value)>)> = vec![
        (
            "audio_proj.window",
            Box::new(|v| {
                v["audio_proj"].as_object_mut().unwrap().remove("window");
            }),
        ),
        (
            "audio_proj.audio_dim",
            Box::new(|v| v["audio_proj"]["audio_dim"] = json!("sixty-four")),
        ),
        (
            "pose_encoder.channels",
            Box::new(|v| v["pose_encoder"]["channels"] = json!(8)),
        ),
        ("rca.extra", Box::new(|v| v["rca"]["extra"] = json!(1))),
        (
            "pipeline.audio_window",
            Box::new(|v| v["pipeline"]["audio_window"] = json!(3)),
        ),
        (
            "rca.num_frames",
            Box::new(|v| v["rca"]["num_frames"] = json!(9)),
        ),
        (
            "rca.identity_dim",
            Box::new(|v| v["rca"]["identity_dim"] = json!(32)),
        ),
        (
            "rca.codebook_size",
            Box::new(|v| v["rca"]["codebook_size"] = json!(40)),
        ),
        (
            "rca.site_channels",
            Box::new(|v| v["rca"]["site_channels"] = json!([64])),
        ),
        (
            "clarity_embedding.time_embed_dim",
            Box::new(|v| v["clarity_embedding"]["time_embed_dim"] = json!(100)),
        ),
        (
            "identity_encoder.blocks_per_stage",
            Box::new(|v| v["identity_encoder"]["blocks_per_stage"] = json!([1])),
        ),
        (
            "_class_name",
            Box::new(|v| v["_class_name"] = json!("UNet2DConditionModel")),
        ),
        (
            "pipeline",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("pipeline");
            }),
        ),
    ];
    for (key, edit) in cases {
        let e = err_of(&*edit);
        assert!(
            e.contains(&format!("`{key}")),
            "error for {key} does not name it: {e}"
        );
    }
}

#[test]
fn tensor_specs_match_load_and_problems_are_reported() {
    let cfg = CyberHostConfig::from_value("tiny", &tiny_json()).unwrap();
    let mut t = random_tensors(&cfg, 1);
    // torchvision checkpoints carry num_batches_tracked (int64): skipped, not reported
    t.insert(
        "identity_encoder.face.bn1.num_batches_tracked".into(),
        (vec![], vec![3.0]),
    );
    let _ = load(&cfg, &t);

    let mut t2 = t.clone();
    t2.remove("rca.hand.2.temporal_bank");
    t2.insert(
        "rca.face.1.mask.conv2.bias".into(),
        (vec![2], vec![0.1, 0.2]),
    );
    t2.insert("audio_proj.stray".into(), (vec![1], vec![1.0]));
    let vb = VarBuilder::from_tensors(be(), t2).unwrap();
    CyberHostModules::load(&vb, &cfg, &tp()).unwrap();
    let e = vb.finish().unwrap_err().to_string();
    for name in [
        "rca.hand.2.temporal_bank",
        "rca.face.1.mask.conv2.bias",
        "audio_proj.stray",
    ] {
        assert!(e.contains(name), "finish() does not report {name}: {e}");
    }

    // a time_proj of the wrong width is refused
    let vb = VarBuilder::from_tensors(be(), t).unwrap();
    let bad = Timesteps {
        num_channels: 64,
        ..tp()
    };
    let e = format!("{:#}", CyberHostModules::load(&vb, &cfg, &bad).unwrap_err());
    assert!(e.contains("clarity_embedding.in_channels"), "{e}");
}

// ---- audio -------------------------------------------------------------------------

#[test]
fn audio_windows_interpolate_and_clamp_hand_checked() {
    // hidden[s][t][d] = 100 s + 10 t + d; (S, T_a, D) = (2, 3, 2)
    let (s, ta, d) = (2, 3, 2);
    let hidden: Vec<f32> = (0..s * ta * d)
        .map(|i| (100 * (i / (ta * d)) + 10 * ((i / d) % ta) + i % d) as f32)
        .collect();
    // N = 5, align_corners: src = 0, .5, 1, 1.5, 2 → 10·src = 0, 5, 10, 15, 20
    let it = interpolate_frames(&hidden, [s, ta, d], 5).unwrap();
    let want: Vec<f32> = [0.0, 1.0, 5.0, 6.0, 10.0, 11.0, 15.0, 16.0, 20.0, 21.0]
        .iter()
        .chain(
            [
                100.0, 101.0, 105.0, 106.0, 110.0, 111.0, 115.0, 116.0, 120.0, 121.0,
            ]
            .iter(),
        )
        .copied()
        .collect();
    assert_eq!(it, want);

    // w = 1: frame 0 = frames [0, 0, 1], frame 4 = [3, 4, 4], each (S, D)
    let win = audio_windows(&hidden, [s, ta, d], 5, 1).unwrap();
    let row = 3 * s * d;
    assert_eq!(win.len(), 5 * row);
    assert_eq!(
        &win[..row],
        &[0.0, 1.0, 100.0, 101.0, 0.0, 1.0, 100.0, 101.0, 5.0, 6.0, 105.0, 106.0]
    );
    assert_eq!(
        &win[4 * row..],
        &[15.0, 16.0, 115.0, 116.0, 20.0, 21.0, 120.0, 121.0, 20.0, 21.0, 120.0, 121.0]
    );
    assert_eq!(
        &win[2 * row..3 * row],
        &[5.0, 6.0, 105.0, 106.0, 10.0, 11.0, 110.0, 111.0, 15.0, 16.0, 115.0, 116.0]
    );

    // N = 1 takes frame 0; downsampling T_a 4 → N 3: src 0, 1.5, 3
    let one = interpolate_frames(&hidden, [s, ta, d], 1).unwrap();
    assert_eq!(one, vec![0.0, 1.0, 100.0, 101.0]);
    let h4: Vec<f32> = (0..4).map(|t| 10.0 * t as f32).collect();
    assert_eq!(
        interpolate_frames(&h4, [1, 4, 1], 3).unwrap(),
        vec![0.0, 15.0, 30.0]
    );
    // w = 2 window wider than N = 2 clamps on both sides
    let w2 = audio_windows(&h4, [1, 4, 1], 2, 2).unwrap();
    assert_eq!(
        w2,
        vec![0.0, 0.0, 0.0, 30.0, 30.0, 0.0, 0.0, 30.0, 30.0, 30.0]
    );
    assert!(interpolate_frames(&h4, [1, 3, 1], 3).is_err());
}

#[test]
fn audio_proj_matches_reference() {
    let (cfg, t, m) = loaded(2);
    let a = &cfg.audio_proj;
    let mut rng = Rng::new(3);
    let (ta, n) = (23, 7);
    let hidden = rng.vec(a.num_hidden_states * ta * a.audio_dim);
    let win = audio_windows(&hidden, [a.num_hidden_states, ta, a.audio_dim], n, a.window).unwrap();
    let got = m
        .audio_proj
        .forward(&be(), &tensor(&[n, a.input_dim()], &win))
        .unwrap();
    assert_eq!(got.shape(), &[n, a.num_tokens, a.context_dim]);

    let relu = |v: Vec<f64>| v.into_iter().map(|x| x.max(0.0)).collect::<Vec<_>>();
    let i = a.intermediate_dim;
    let h = relu(linear_ref(
        &f64s(&win),
        a.input_dim(),
        get(&t, "audio_proj.proj1.weight"),
        i,
        Some(get(&t, "audio_proj.proj1.bias")),
    ));
    let h = relu(linear_ref(
        &h,
        i,
        get(&t, "audio_proj.proj2.weight"),
        i,
        Some(get(&t, "audio_proj.proj2.bias")),
    ));
    let h = linear_ref(
        &h,
        i,
        get(&t, "audio_proj.proj3.weight"),
        a.num_tokens * a.context_dim,
        Some(get(&t, "audio_proj.proj3.bias")),
    );
    let (g, b) = (
        get(&t, "audio_proj.norm.weight"),
        get(&t, "audio_proj.norm.bias"),
    );
    let dc = a.context_dim;
    let want: Vec<f64> = h
        .chunks(dc)
        .flat_map(|r| {
            let mean = r.iter().sum::<f64>() / dc as f64;
            let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / dc as f64;
            r.iter()
                .enumerate()
                .map(move |(j, x)| (x - mean) / (var + 1e-5).sqrt() * g[j] as f64 + b[j] as f64)
                .collect::<Vec<_>>()
        })
        .collect();
    let err = rel_l2(&f64s(got.data()), &want);
    assert!(err < 1e-5, "audio_proj rel L2 {err}");
}

// ---- pose encoder, clarity ----------------------------------------------------------

#[test]
fn pose_encoder_and_clarity_match_reference() {
    let (cfg, t, m) = loaded(4);
    let mut rng = Rng::new(5);
    let (hh, ww) = (24, 40);
    let maps: Vec<f32> = (0..2 * 3 * hh * ww).map(|_| rng.uniform() as f32).collect();
    let got = m
        .pose_encoder
        .forward(&be(), &tensor(&[2, 3, hh, ww], &maps))
        .unwrap();
    assert_eq!(got.shape(), &[2, 32, 3, 5]);

    let p = &cfg.pose_encoder.channels;
    let conv = |x: &[f64], s: [usize; 4], name: &str, o: usize, st: usize| {
        conv_ref(
            x,
            s,
            get(&t, &format!("pose_encoder.{name}.weight")),
            o,
            3,
            Some(get(&t, &format!("pose_encoder.{name}.bias"))),
            st,
            1,
        )
    };
    let act = |(v, s): (Vec<f64>, [usize; 4])| (v.into_iter().map(silu).collect::<Vec<_>>(), s);
    let (mut x, mut s) = act(conv(&f64s(&maps), [2, 3, hh, ww], "conv_in", p[0], 1));
    for i in 0..p.len() - 1 {
        (x, s) = act(conv(&x, s, &format!("blocks.{}", 2 * i), p[i], 1));
        (x, s) = act(conv(&x, s, &format!("blocks.{}", 2 * i + 1), p[i + 1], 2));
    }
    let (want, ws) = conv(&x, s, "conv_out", 32, 1);
    assert_eq!(&ws[..], got.shape());
    let err = rel_l2(&f64s(got.data()), &want);
    assert!(err < 1e-5, "pose_encoder rel L2 {err}");

    // clarity: linear_2(SiLU(linear_1(time_proj(1000 s))))
    let scores = [1.0f32, 0.37];
    let got = m.clarity_embedding.forward(&be(), &scores).unwrap();
    assert_eq!(got.shape(), &[2, 128]);
    let x = tp().embed_host(&[1000.0, 370.0]);
    let h: Vec<f64> = linear_ref(
        &f64s(&x),
        32,
        get(&t, "clarity_embedding.linear_1.weight"),
        128,
        Some(get(&t, "clarity_embedding.linear_1.bias")),
    )
    .into_iter()
    .map(silu)
    .collect();
    let want = linear_ref(
        &h,
        128,
        get(&t, "clarity_embedding.linear_2.weight"),
        128,
        Some(get(&t, "clarity_embedding.linear_2.bias")),
    );
    let err = rel_l2(&f64s(got.data()), &want);
    assert!(err < 1e-5, "clarity rel L2 {err}");
}

// ---- identity encoder ---------------------------------------------------------------

#[test]
fn batch_norm_folding_equals_conv_then_bn() {
    let mut rng = Rng::new(6);
    let (n, c, o, h, w) = (2, 5, 7, 9, 11);
    let x = rng.vec(n * c * h * w);
    let wt = rng.vec(o * c * 9);
    let gamma = rng.vec(o);
    let beta = rng.vec(o);
    let mean = rng.vec(o);
    let var: Vec<f32> = (0..o).map(|_| (0.1 + rng.uniform()) as f32).collect();
    let b = be();
    let xt = tensor(&[n, c, h, w], &x);
    let p = Conv2dParams::new(2, 1);
    // unfolded: conv (no bias), then eval BatchNorm on the host
    let y = b.conv2d(&xt, &tensor(&[o, c, 3, 3], &wt), None, p).unwrap();
    let hw = y.shape()[2] * y.shape()[3];
    let want: Vec<f64> = y
        .data()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / hw) % o;
            (v as f64 - mean[ch] as f64) / (var[ch] as f64 + 1e-5).sqrt() * gamma[ch] as f64
                + beta[ch] as f64
        })
        .collect();
    let (wf, bf) = fold_batch_norm(&wt, &gamma, &beta, &mean, &var, 1e-5);
    let got = b
        .conv2d(
            &xt,
            &tensor(&[o, c, 3, 3], &wf),
            Some(&tensor(&[o], &bf)),
            p,
        )
        .unwrap();
    let err = rel_l2(&f64s(got.data()), &want);
    assert!(err < 1e-6, "folded conv+BN rel L2 {err}");
}

/// Unfolded BasicBlock ResNet on the host, from the checkpoint names.
fn resnet_ref(
    t: &Tensors,
    root: &str,
    cfg: &CyberHostConfig,
    x: &[f64],
    s: [usize; 4],
) -> (Vec<f64>, [usize; 4]) {
    let conv_bn =
        |x: &[f64], s: [usize; 4], cp: &str, bp: &str, o: usize, k: usize, st: usize, p: usize| {
            let (y, ys) = conv_ref(
                x,
                s,
                get(t, &format!("{root}.{cp}.weight")),
                o,
                k,
                None,
                st,
                p,
            );
            let g = get(t, &format!("{root}.{bp}.weight"));
            let b = get(t, &format!("{root}.{bp}.bias"));
            let m = get(t, &format!("{root}.{bp}.running_mean"));
            let v = get(t, &format!("{root}.{bp}.running_var"));
            let hw = ys[2] * ys[3];
            let y = y
                .iter()
                .enumerate()
                .map(|(i, &y)| {
                    let c = (i / hw) % o;
                    (y - m[c] as f64) / (v[c] as f64 + 1e-5).sqrt() * g[c] as f64 + b[c] as f64
                })
                .collect::<Vec<_>>();
            (y, ys)
        };
    let relu = |v: Vec<f64>| v.into_iter().map(|x| x.max(0.0)).collect::<Vec<_>>();
    let id = &cfg.identity_encoder;
    let (y, ys) = conv_bn(x, s, "conv1", "bn1", id.stem_channels, 7, 2, 3);
    let y = relu(y);
    // max pool 3/2 pad 1 (−∞ padding)
    let (ph, pw) = ((ys[2] - 1) / 2 + 1, (ys[3] - 1) / 2 + 1);
    let mut h = vec![0f64; ys[0] * ys[1] * ph * pw];
    for nc in 0..ys[0] * ys[1] {
        for oy in 0..ph {
            for ox in 0..pw {
                let mut m = f64::NEG_INFINITY;
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = ((2 * oy + ky) as isize - 1, (2 * ox + kx) as isize - 1);
                        if iy >= 0 && ix >= 0 && (iy as usize) < ys[2] && (ix as usize) < ys[3] {
                            m = m.max(y[(nc * ys[2] + iy as usize) * ys[3] + ix as usize]);
                        }
                    }
                }
                h[(nc * ph + oy) * pw + ox] = m;
            }
        }
    }
    let mut hs = [ys[0], ys[1], ph, pw];
    let mut in_ch = id.stem_channels;
    for (i, (&ch, &nb)) in id
        .stage_channels
        .iter()
        .zip(&id.blocks_per_stage)
        .enumerate()
    {
        for j in 0..nb {
            let bp = format!("layer{}.{j}", i + 1);
            let st = if i > 0 && j == 0 { 2 } else { 1 };
            let (a, as_) = conv_bn(
                &h,
                hs,
                &format!("{bp}.conv1"),
                &format!("{bp}.bn1"),
                ch,
                3,
                st,
                1,
            );
            let (a, as_) = conv_bn(
                &relu(a),
                as_,
                &format!("{bp}.conv2"),
                &format!("{bp}.bn2"),
                ch,
                3,
                1,
                1,
            );
            let skip = if st != 1 || in_ch != ch {
                conv_bn(
                    &h,
                    hs,
                    &format!("{bp}.downsample.0"),
                    &format!("{bp}.downsample.1"),
                    ch,
                    1,
                    st,
                    0,
                )
                .0
            } else {
                h.clone()
            };
            h = relu(a.iter().zip(&skip).map(|(a, b)| a + b).collect());
            hs = as_;
            in_ch = ch;
        }
    }
    (h, hs)
}

#[test]
fn identity_encoders_match_unfolded_resnet() {
    // stage 1 changes channels (downsample with stride 1) and stage 2 has 2 blocks
    let mut v = tiny_json();
    v["identity_encoder"] = json!({"stem_channels": 8, "stage_channels": [12, 16], "blocks_per_stage": [1, 2], "crop_size": 32});
    let cfg = CyberHostConfig::from_value("id test", &v).unwrap();
    let t = random_tensors(&cfg, 7);
    let m = load(&cfg, &t);
    let mut rng = Rng::new(8);
    let face = rng.vec(3 * 32 * 32);
    let hands = rng.vec(2 * 3 * 32 * 32);
    let b = be();
    let tokens = m
        .identity_tokens(
            &b,
            &tensor(&[1, 3, 32, 32], &face),
            &tensor(&[2, 3, 32, 32], &hands),
        )
        .unwrap();
    assert_eq!(tokens.face.shape(), &[16, 16]);
    assert_eq!(tokens.hand.shape(), &[32, 16]);

    for (root, x, n, got) in [
        ("identity_encoder.face", &face, 1, &tokens.face),
        ("identity_encoder.hand", &hands, 2, &tokens.hand),
    ] {
        let (fmap, fs) = resnet_ref(&t, root, &cfg, &f64s(x), [n, 3, 32, 32]);
        assert_eq!(fs, [n, 16, 4, 4]);
        // (n, E, g, g) → (n·g², E)
        let mut want = vec![0f64; fmap.len()];
        for ni in 0..n {
            for e in 0..16 {
                for p in 0..16 {
                    want[(ni * 16 + p) * 16 + e] = fmap[(ni * 16 + e) * 16 + p];
                }
            }
        }
        let err = rel_l2(&f64s(got.data()), &want);
        assert!(err < 1e-5, "{root} tokens rel L2 {err}");
    }
}

#[test]
fn max_pool2d_pads_with_minus_infinity() {
    let mut rng = Rng::new(9);
    let (n, c, h, w) = (2, 3, 7, 6);
    // all negative: zero padding would leak 0 into the border windows
    let x: Vec<f32> = rng
        .vec(n * c * h * w)
        .iter()
        .map(|v| -1.0 - v.abs())
        .collect();
    let y = be()
        .max_pool2d(&tensor(&[n, c, h, w], &x), 3, 2, 1)
        .unwrap();
    assert_eq!(y.shape(), &[n, c, 4, 3]);
    for nc in 0..n * c {
        for oy in 0..4 {
            for ox in 0..3 {
                let mut m = f32::NEG_INFINITY;
                for iy in (2 * oy as usize).saturating_sub(1)..(2 * oy + 2).min(h) {
                    for ix in (2 * ox as usize).saturating_sub(1)..(2 * ox + 2).min(w) {
                        m = m.max(x[(nc * h + iy) * w + ix]);
                    }
                }
                assert_eq!(
                    y.data()[(nc * 4 + oy) * 3 + ox],
                    m,
                    "plane {nc} ({oy}, {ox})"
                );
            }
        }
    }
    assert!(be()
        .max_pool2d(&tensor(&[1, 1, 4, 4], &[0.0; 16]), 3, 2, 2)
        .is_err());
}

// ---- region codebook attention --------------------------------------------------------

#[test]
fn codebooks_are_orthonormal_scaled_and_deterministic() {
    let mut rng = Rng::new(10);
    let (n, c) = (8, 64);
    let raw = rng.vec(n * c);
    let s = orthonormalize_rows(&raw, n, c, "bank").unwrap();
    for i in 0..n {
        for j in 0..n {
            let d: f64 = (0..c)
                .map(|k| s[i * c + k] as f64 * s[j * c + k] as f64)
                .sum();
            let want = if i == j { c as f64 } else { 0.0 };
            assert!(
                (d - want).abs() <= 1e-5 * c as f64,
                "S Sᵀ[{i}][{j}] = {d}, want {want}"
            );
        }
    }
    // row order: row 0 keeps its direction
    let n0: f64 = raw[..c]
        .iter()
        .map(|&v| (v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    for k in 0..c {
        assert!((s[k] as f64 - raw[k] as f64 / n0 * (c as f64).sqrt()).abs() < 1e-5);
    }
    assert_eq!(
        s,
        orthonormalize_rows(&raw, n, c, "bank").unwrap(),
        "not deterministic"
    );
    let want = gram_schmidt_ref(&raw, n, c);
    assert!(rel_l2(&f64s(&s), &want) < 1e-6);

    let e = orthonormalize_rows(&rng.vec(9 * 8), 9, 8, "rca.face.1.spatial_bank")
        .unwrap_err()
        .to_string();
    assert!(e.contains("rca.face.1.spatial_bank"), "{e}");
    let mut dep = rng.vec(3 * 8);
    let r0: Vec<f32> = dep[..8].to_vec();
    dep[16..].copy_from_slice(&r0.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    assert!(orthonormalize_rows(&dep, 3, 8, "b").is_err());

    // loaded banks are the orthonormalised ones, bit for bit
    let (_, t, m) = loaded(11);
    let site = m.rca_site(1).unwrap();
    assert_eq!(
        site.face.spatial_bank.data(),
        &orthonormalize_rows(get(&t, "rca.face.1.spatial_bank"), 8, 128, "b").unwrap()[..]
    );
    assert_eq!(
        site.hand.temporal_bank.data(),
        &orthonormalize_rows(get(&t, "rca.hand.1.temporal_bank"), 10, 128, "b").unwrap()[..]
    );
}

/// The update `y − x` of a residual block, in f64 (x would dominate a comparison of y).
fn update(y: &[f32], x: &[f32]) -> Vec<f64> {
    y.iter()
        .zip(x)
        .map(|(a, b)| *a as f64 - *b as f64)
        .collect()
}

fn rca_input(seed: u64, n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    Rng::new(seed).vec(n * c * h * w)
}

#[test]
fn rca_matches_spec_reference() {
    let (cfg, t, m) = loaded(12);
    let b = be();
    let nf = cfg.rca.num_frames;
    let (h, w) = (3, 5);
    for (i, &site) in cfg.rca.sites.iter().enumerate() {
        let rc = RcaSiteConfig::from_rca(&cfg.rca, i);
        let c = rc.channels;
        let n = 2 * nf;
        let x = rca_input(13 + i as u64, n, c, h, w);
        let tokens = Rng::new(14).vec(48 * 16);
        let rs = m.rca_site(site).unwrap();
        let xt = tensor(&[n, c, h, w], &x);
        let tt = tensor(&[48, 16], &tokens);
        // compares the update F_out − F_in (F_in would dominate) with the reference's
        let check = |rca: &RegionCodebookAttention<CpuBackend>,
                     region,
                     rows: Option<Range<usize>>,
                     what| {
            let got = rca
                .forward(&b, &xt, nf, rows.clone().map(|r| (&tt, r)))
                .unwrap();
            let want = rca_ref(
                &t,
                &format!("rca.{region}.{site}"),
                &rc,
                &f64s(&x),
                [n, c, h, w],
                nf,
                rows.map(|r| (&tokens[..], r)),
            );
            let wd: Vec<f64> = want.iter().zip(&x).map(|(a, b)| a - *b as f64).collect();
            let err = rel_l2(&update(got.data(), &x), &wd);
            assert!(
                err < 1e-4,
                "site {site} (C {c}) {what}: RCA update rel L2 {err}"
            );
        };
        check(&rs.face, "face", Some(0..nf), "face RCA");
        // identity rows in the middle of the batch, and no identity at all
        check(&rs.hand, "hand", Some(5..12), "hand RCA rows 5..12");
        check(&rs.hand, "hand", None, "hand RCA without identity");
    }
}

#[test]
fn fresh_rca_is_identity_and_trained_rca_changes_only_cond_rows_with_identity() {
    let (cfg, _, m) = loaded(15);
    let b = be();
    let nf = cfg.rca.num_frames;
    let (n, c, h, w) = (2 * nf, 128, 4, 6);
    let x = rca_input(16, n, c, h, w);
    let xt = tensor(&[n, c, h, w], &x);
    let mut rng = Rng::new(17);
    let ids_a = IdentityTokens {
        face: tensor(&[16, 16], &rng.vec(256)),
        hand: tensor(&[32, 16], &rng.vec(512)),
    };
    let ids_b = IdentityTokens {
        face: tensor(&[16, 16], &rng.vec(256)),
        hand: tensor(&[32, 16], &rng.vec(512)),
    };
    let site = m.rca_site(1).unwrap();

    // fresh: to_out = 0 ⇒ F_out == F_in exactly
    let fresh = site.clone().with_fresh_to_out(&b).unwrap();
    let y = fresh.forward(&b, &xt, nf, Some((&ids_a, 0..nf))).unwrap();
    assert_eq!(y.data(), &x[..], "fresh RCA changed its input");
    let all_fresh = m.clone().with_fresh_rca(&b).unwrap();
    assert!(all_fresh.rca.iter().all(|s| b
        .to_f32(&s.hand.to_out.weight)
        .unwrap()
        .iter()
        .all(|&v| v == 0.0)));

    // trained: the output changes
    let ya = site.forward(&b, &xt, nf, Some((&ids_a, 0..nf))).unwrap();
    let d = update(ya.data(), &x);
    assert!(
        rel_l2(&d, &vec![0.0; d.len()]) > 0.0 && rel_l2(&f64s(ya.data()), &f64s(&x)) > 1e-3,
        "RCA did not change its input"
    );

    // other identity tokens: cond rows change, uncond rows are bit-identical (F_id = 0 there)
    let yb = site.forward(&b, &xt, nf, Some((&ids_b, 0..nf))).unwrap();
    let y0 = site.forward(&b, &xt, nf, None).unwrap();
    let row = c * h * w;
    let (cond_a, uncond_a) = ya.data().split_at(nf * row);
    let (cond_b, uncond_b) = yb.data().split_at(nf * row);
    assert_eq!(
        uncond_a, uncond_b,
        "uncond rows depend on the identity tokens"
    );
    assert_eq!(
        uncond_a,
        &y0.data()[nf * row..],
        "uncond rows differ from the no-identity run"
    );
    assert!(
        rel_l2(&f64s(cond_a), &f64s(cond_b)) > 1e-4,
        "identity tokens do not reach the cond rows"
    );
    assert!(rel_l2(&f64s(cond_a), &f64s(&y0.data()[..nf * row])) > 1e-4);

    // deterministic
    let ya2 = site.forward(&b, &xt, nf, Some((&ids_a, 0..nf))).unwrap();
    assert_eq!(ya.data(), ya2.data());

    // face then hands: the site equals hand(face(x))
    let f = site
        .face
        .forward(&b, &xt, nf, Some((&ids_a.face, 0..nf)))
        .unwrap();
    let fh = site
        .hand
        .forward(&b, &f, nf, Some((&ids_a.hand, 0..nf)))
        .unwrap();
    assert_eq!(fh.data(), ya.data());

    // shape errors are reported, not panics
    assert!(site.face.forward(&b, &xt, nf - 1, None).is_err());
    assert!(site
        .face
        .forward(&b, &xt, nf, Some((&ids_a.face, 0..n + 1)))
        .is_err());
    let _ = RegionCodebookAttention::<CpuBackend>::load; // API presence
}
