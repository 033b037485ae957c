//! Every committed conformance fixture passes at its tolerance, and malformed
//! fixtures are reported by name instead of panicking.

mod common;

use common::fixtures;
use cyberhost_engine::conformance::{check_fixture, load_case};
use cyberhost_weights::{write_safetensors, DType, WriteTensor};
use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn every_committed_fixture_passes() {
    let mut per_component: BTreeMap<String, usize> = BTreeMap::new();
    fixtures::check_each("committed", &fixtures::dirs(|_| true), |dir, r| {
        *per_component.entry(r.component.clone()).or_default() += 1;
        assert!(
            r.tolerance <= 1e-4,
            "{}: tolerance {} is looser than 1e-4",
            dir.display(),
            r.tolerance
        );
    });
    for c in [
        "vae_encode",
        "vae_decode",
        "unet2d",
        "unet_motion",
        "wav2vec2",
        "ddim",
    ] {
        assert!(
            per_component.get(c).copied().unwrap_or(0) >= 2,
            "fewer than two `{c}` fixtures: {per_component:?}"
        );
    }
}

/// Copy `src` fixture to a temp dir, rewriting its case with `edit`.
fn mutated(
    src: &str,
    edit: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Vec<f32>)>, &mut BTreeMap<String, String>),
) -> tempfile::TempDir {
    let src = fixtures::root().join(src);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("model")).unwrap();
    for e in std::fs::read_dir(src.join("model")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join("model").join(e.file_name())).unwrap();
    }
    let case = load_case(&src).unwrap();
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    for (n, t) in &case.inputs {
        tensors.insert(format!("input.{n}"), (t.shape.clone(), t.data.clone()));
    }
    for (n, t) in &case.expected {
        tensors.insert(format!("expected.{n}"), (t.shape.clone(), t.data.clone()));
    }
    let mut meta = BTreeMap::new();
    meta.insert("component".to_string(), case.component.clone());
    meta.insert("args".to_string(), case.args.to_string());
    meta.insert("tolerance".to_string(), format!("{}", case.tolerance));
    edit(&mut tensors, &mut meta);
    let list: Vec<WriteTensor<'_>> = tensors
        .iter()
        .map(|(n, (s, d))| WriteTensor::new(n, DType::F32, s, d))
        .collect();
    write_safetensors(dir.path().join("case.safetensors"), &list, &meta).unwrap();
    dir
}

fn err_of(dir: &Path) -> String {
    match check_fixture(dir) {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn fixture_missing_an_input_names_it() {
    let d = mutated("vae_a_decode", |t, _| {
        t.remove("input.latent");
    });
    let e = err_of(d.path());
    assert!(e.contains("input.latent"), "{e}");
}

#[test]
fn fixture_with_a_mis_shaped_expected_tensor_names_it() {
    let d = mutated("ddim_a", |t, _| {
        let (s, v) = t.remove("expected.sample").unwrap();
        let n = s.iter().product::<usize>();
        t.insert("expected.sample".into(), (vec![n], v));
    });
    let e = err_of(d.path());
    assert!(e.contains("expected.sample") && e.contains("shape"), "{e}");
}

#[test]
fn fixture_with_an_unknown_component_or_missing_metadata() {
    let d = mutated("ddim_a", |_, m| {
        m.insert("component".into(), "flux".into());
    });
    assert!(err_of(d.path()).contains("flux"));
    let d = mutated("ddim_a", |_, m| {
        m.remove("tolerance");
    });
    assert!(err_of(d.path()).contains("tolerance"));
}

#[test]
fn a_wrong_answer_fails_the_check() {
    let d = mutated("ddim_a", |t, _| {
        let e = t.get_mut("expected.sample").unwrap();
        for v in e.1.iter_mut() {
            *v *= 1.01;
        }
    });
    let r = check_fixture(d.path()).unwrap();
    assert!(!r.ok(), "a 1% error must fail at tolerance 1e-4: {r:?}");
}

#[test]
fn fixture_directory_without_a_case() {
    let d = tempfile::tempdir().unwrap();
    let e = err_of(d.path());
    assert!(e.contains("case.safetensors"), "{e}");
}
