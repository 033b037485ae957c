//! Conformance of the VAE (`vae_encode`, `vae_decode`), wav2vec2 and DDIM
//! components against the committed diffusers/transformers fixtures, plus
//! config-error messages.
//!
//! cargo test --test vae_wav2vec2_ddim

use cyberhost_engine::backends::TensorLike;
mod common;

use common::fixtures;
use cyberhost_engine::conformance::{load_case, run_component};
use std::path::PathBuf;

/// Every fixture directory whose case names `component`.
fn fixtures_of(component: &str) -> Vec<PathBuf> {
    fixtures::dirs(|p| {
        load_case(p)
            .map(|c| c.component == component)
            .unwrap_or(false)
    })
}

/// Run every fixture of `component`; fails when there is none.
fn check_all(component: &str) {
    let dirs = fixtures_of(component);
    assert!(
        !dirs.is_empty(),
        "no `{component}` fixtures under {}",
        fixtures::root().display()
    );
    fixtures::check_each(component, &dirs, |_, _| {});
}

#[test]
fn ddim_fixtures() {
    check_all("ddim");
}

#[test]
fn ddim_timesteps_exact() {
    for d in fixtures_of("ddim") {
        let case = load_case(&d).unwrap();
        let out = run_component(&d, &case).unwrap();
        let got = &out.iter().find(|(n, _)| n == "timesteps").unwrap().1;
        assert_eq!(got, &case.expected["timesteps"], "{}", d.display());
    }
}

#[test]
fn ddim_config_errors_name_key_and_value() {
    use cyberhost_engine::sampler::ddim::{DdimConfig, DdimScheduler};
    let cfg = DdimConfig::from_json_str(r#"{"beta_schedule": "sigmoid"}"#).unwrap();
    let msg = format!("{:#}", DdimScheduler::new(cfg).unwrap_err());
    assert!(
        msg.contains("beta_schedule") && msg.contains("sigmoid"),
        "{msg}"
    );
    let cfg = DdimConfig::from_json_str(r#"{"timestep_spacing": "karras"}"#).unwrap();
    let msg = format!("{:#}", DdimScheduler::new(cfg).unwrap_err());
    assert!(
        msg.contains("timestep_spacing") && msg.contains("karras"),
        "{msg}"
    );
    let cfg = DdimConfig::from_json_str(r#"{"prediction_type": "flow"}"#).unwrap();
    let msg = format!("{:#}", DdimScheduler::new(cfg).unwrap_err());
    assert!(
        msg.contains("prediction_type") && msg.contains("flow"),
        "{msg}"
    );
    let cfg = DdimConfig::from_json_str(r#"{"thresholding": true}"#).unwrap();
    let msg = format!("{:#}", DdimScheduler::new(cfg).unwrap_err());
    assert!(msg.contains("thresholding"), "{msg}");
    // eta > 0 without variance noise is refused.
    let mut s = DdimScheduler::new(DdimConfig::default()).unwrap();
    s.set_timesteps(4).unwrap();
    let x = vec![0.5f32; 8];
    assert!(s.step(&x, s.timesteps()[0], &x, 0.5, None).is_err());
}

#[test]
fn vae_encode_fixtures() {
    check_all("vae_encode");
}

#[test]
fn vae_decode_fixtures() {
    check_all("vae_decode");
}

#[test]
fn wav2vec2_fixtures() {
    check_all("wav2vec2");
}

/// transformers 5.x: for pre-LN (`do_stable_layer_norm`) models `hidden_states[-1]` is
/// the last layer's output BEFORE `encoder.layer_norm` (only `last_hidden_state` is normed),
/// unless `config.json` sets `tie_last_hidden_states` (transformers 4.x's behaviour).
/// Checks the fixtures tell the two apart and that `forward` (what the audio path
/// uses) gives the right last entry.
#[test]
fn wav2vec2_stable_layer_norm_last_hidden_state_follows_transformers_5() {
    use cyberhost_engine::backends::cpu::CpuBackend;
    use cyberhost_engine::backends::Backend;
    use cyberhost_engine::conformance::rel_l2;
    use cyberhost_engine::models::config_json::ConfigJson;
    use cyberhost_engine::models::wav2vec2::{Wav2Vec2Config, Wav2Vec2Model};
    use cyberhost_engine::var_builder::VarBuilder;
    let (mut untied, mut tied) = (0, 0);
    let mut failures = Vec::new();
    for d in fixtures_of("wav2vec2") {
        let json = ConfigJson::from_file("wav2vec2 config", &d.join("model/config.json")).unwrap();
        let cfg = Wav2Vec2Config::from_config(&json).unwrap();
        if !cfg.do_stable_layer_norm {
            continue;
        }
        let tie = json.bool("tie_last_hidden_states", false).unwrap();
        let case = load_case(&d).unwrap();
        let states = &case.expected["hidden_states"];
        let last = &case.expected["last_hidden_state"];
        let n = last.data.len();
        let exp_final = &states.data[states.data.len() - n..];
        // the fixture separates the two semantics
        let gap = rel_l2(exp_final, &last.data);
        if tie {
            tied += 1;
            assert_eq!(
                gap,
                0.0,
                "{}: tied, yet hidden_states[-1] != last_hidden_state",
                d.display()
            );
        } else {
            untied += 1;
            assert!(
                gap > 1e-2,
                "{}: hidden_states[-1] vs last_hidden_state only {gap:.1e} apart",
                d.display()
            );
        }
        let be = CpuBackend::new();
        let vb = VarBuilder::open(be, &d.join("model")).unwrap();
        let model = Wav2Vec2Model::load(&vb, &cfg).unwrap();
        let x = case.input("input_values").unwrap();
        let x = be.from_f32(&x.shape, &x.data).unwrap();
        let got = model.forward(&be, &x).unwrap();
        assert_eq!(got.len(), cfg.num_hidden_layers + 1);
        let got_final = be.to_f32(got.last().unwrap()).unwrap();
        let err = rel_l2(&got_final, exp_final);
        eprintln!(
            "{}: tie_last_hidden_states={tie}: hidden_states[-1] rel L2 {err:.3e} (fixture gap {gap:.3e})",
            d.display()
        );
        if !(err <= case.tolerance) {
            failures.push(format!(
                "{}: hidden_states[-1] rel L2 {err:.3e} > {:.0e} (vs last_hidden_state {:.3e})",
                d.display(),
                case.tolerance,
                rel_l2(&got_final, &last.data)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        untied >= 2 && tied >= 1,
        "pre-LN wav2vec2 fixtures: {untied} untied, {tied} with tie_last_hidden_states"
    );
}

#[test]
fn wav2vec2_config_errors_name_key_and_value() {
    use cyberhost_engine::models::config_json::ConfigJson;
    use cyberhost_engine::models::wav2vec2::Wav2Vec2Config;
    for (json, names) in [
        (
            serde_json::json!({"feat_extract_norm": "batch"}),
            &["feat_extract_norm", "batch"][..],
        ),
        (
            serde_json::json!({"feat_extract_activation": "mish"}),
            &["feat_extract_activation", "mish"][..],
        ),
        (
            serde_json::json!({"conv_dim": [8, 8], "conv_stride": [5]}),
            &["conv_stride"][..],
        ),
        (
            serde_json::json!({"tie_last_hidden_states": "yes"}),
            &["tie_last_hidden_states", "yes"][..],
        ),
    ] {
        let c = ConfigJson::from_value("Wav2Vec2 config", &json).unwrap();
        let msg = format!("{:#}", Wav2Vec2Config::from_config(&c).unwrap_err());
        assert!(names.iter().all(|n| msg.contains(n)), "{json}: {msg}");
    }
}

#[test]
fn vae_config_errors_name_key_and_value() {
    use cyberhost_engine::models::config_json::ConfigJson;
    use cyberhost_engine::models::vae::AutoencoderKLConfig;
    let c = ConfigJson::from_value(
        "AutoencoderKL config",
        &serde_json::json!({"block_out_channels": [8, 16], "down_block_types": ["DownEncoderBlock2D", "AttnDownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"]}),
    )
    .unwrap();
    let msg = format!("{:#}", AutoencoderKLConfig::from_config(&c).unwrap_err());
    assert!(
        msg.contains("down_block_types") && msg.contains("AttnDownEncoderBlock2D"),
        "{msg}"
    );
}

/// The posterior mean is exactly the first `latent_channels` channels of the moments,
/// and a checkpoint with a missing tensor is refused with its name.
#[test]
fn vae_mean_is_first_half_of_moments_and_missing_weights_are_named() {
    use cyberhost_engine::backends::cpu::CpuBackend;
    use cyberhost_engine::backends::Backend;
    use cyberhost_engine::models::config_json::ConfigJson;
    use cyberhost_engine::models::vae::{AutoencoderKL, AutoencoderKLConfig};
    use cyberhost_engine::var_builder::VarBuilder;
    let dir = fixtures_of("vae_encode")
        .into_iter()
        .next()
        .expect("a vae_encode fixture");
    let be = CpuBackend::new();
    let vb = VarBuilder::open(be, dir.join("model")).unwrap();
    let cfg =
        AutoencoderKLConfig::from_config(&ConfigJson::from_value("vae", vb.config()).unwrap())
            .unwrap();
    let vae = AutoencoderKL::load(&vb, &cfg).unwrap();
    vb.finish().unwrap();
    let case = load_case(&dir).unwrap();
    let x = case.input("sample").unwrap();
    let x = be.from_f32(&x.shape, &x.data).unwrap();
    let m = be.to_f32(&vae.encode_moments(&be, &x).unwrap()).unwrap();
    let mean = be.to_f32(&vae.encode(&be, &x).unwrap()).unwrap();
    let n = x.shape()[0];
    let per = m.len() / n;
    for b in 0..n {
        assert_eq!(
            &m[b * per..b * per + per / 2],
            &mean[b * per / 2..(b + 1) * per / 2]
        );
    }
    // Drop the decoder's conv_out weight: loading must name it.
    let ckpt = cyberhost_weights::Checkpoint::open(dir.join("model")).unwrap();
    let mut tensors = std::collections::HashMap::new();
    for name in ckpt.names() {
        if name != "decoder.conv_out.weight" {
            tensors.insert(name.to_string(), ckpt.get_f32(name).unwrap());
        }
    }
    let vb = VarBuilder::from_tensors_with_config(be, tensors, ckpt.config().clone()).unwrap();
    AutoencoderKL::load(&vb, &cfg).unwrap();
    let msg = vb.finish().unwrap_err().to_string();
    assert!(msg.contains("decoder.conv_out.weight"), "{msg}");
}
