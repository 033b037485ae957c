//! Conformance of the VAE (`vae_encode`, `vae_decode`), wav2vec2 and DDIM
//! components against the committed diffusers/transformers fixtures, plus
//! config-error messages.
//!
//! cargo test --test vae_wav2vec2_ddim

use cyberhost_engine::conformance::{check_fixture, load_case, run_component};
use std::path::{Path, PathBuf};

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// Every fixture directory whose case names `component`.
fn fixtures_of(component: &str) -> Vec<PathBuf> {
    let root = fixtures_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.safetensors").is_file())
        .filter(|p| load_case(p).map(|c| c.component == component).unwrap_or(false))
        .collect();
    dirs.sort();
    dirs
}

/// Run every fixture of `component`; fails when there is none.
fn check_all(component: &str) {
    let dirs = fixtures_of(component);
    assert!(!dirs.is_empty(), "no `{component}` fixtures under {}", fixtures_root().display());
    let mut failures = Vec::new();
    for d in &dirs {
        match check_fixture(d) {
            Ok(r) => {
                eprintln!("{}: rel L2 {:.3e} (tolerance {:.0e})", d.display(), r.rel_l2, r.tolerance);
                if !r.ok() {
                    failures.push(format!("{}: rel L2 {:.3e} > {:.0e}", d.display(), r.rel_l2, r.tolerance));
                }
            }
            Err(e) => failures.push(format!("{}: {e:#}", d.display())),
        }
    }
    assert!(failures.is_empty(), "{component} fixtures failed:\n{}", failures.join("\n"));
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
    assert!(msg.contains("beta_schedule") && msg.contains("sigmoid"), "{msg}");
    let cfg = DdimConfig::from_json_str(r#"{"timestep_spacing": "karras"}"#).unwrap();
    let msg = format!("{:#}", DdimScheduler::new(cfg).unwrap_err());
    assert!(msg.contains("timestep_spacing") && msg.contains("karras"), "{msg}");
    let cfg = DdimConfig::from_json_str(r#"{"prediction_type": "flow"}"#).unwrap();
    let msg = format!("{:#}", DdimScheduler::new(cfg).unwrap_err());
    assert!(msg.contains("prediction_type") && msg.contains("flow"), "{msg}");
    let cfg = DdimConfig::from_json_str(r#"{"thresholding": true}"#).unwrap();
    let msg = format!("{:#}", DdimScheduler::new(cfg).unwrap_err());
    assert!(msg.contains("thresholding"), "{msg}");
    // eta > 0 without variance noise is refused.
    let mut s = DdimScheduler::new(DdimConfig::default()).unwrap();
    s.set_timesteps(4).unwrap();
    let x = vec![0.5f32; 8];
    assert!(s.step(&x, s.timesteps()[0], &x, 0.5, None).is_err());
}
