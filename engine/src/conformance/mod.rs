//! Conformance fixtures: run one component on a fixture's inputs and compare
//! with the outputs diffusers/transformers produced.
//!
//! A fixture is a directory with `model/` (what `save_pretrained` writes; for
//! `ddim` the `scheduler_config.json`) and `case.safetensors` holding f32 tensors
//! `input.<name>` / `expected.<name>` and `__metadata__` keys `component`,
//! `args` (JSON string) and `tolerance` (relative L2).

mod ddim;
mod unet2d;
mod unet_motion;
mod vae;
mod wav2vec2;

use crate::backends::cpu::CpuBackend;
use crate::backends::{Backend, TensorLike};
use crate::var_builder::VarBuilder;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A host f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data }
    }
}

/// One fixture's case file.
#[derive(Clone, Debug)]
pub struct Case {
    pub component: String,
    pub args: serde_json::Value,
    pub tolerance: f64,
    /// `input.<name>` tensors, keyed by `<name>`.
    pub inputs: BTreeMap<String, HostTensor>,
    /// `expected.<name>` tensors, keyed by `<name>`.
    pub expected: BTreeMap<String, HostTensor>,
}

impl Case {
    /// The input `name`, or an error naming the fixture's missing tensor.
    pub fn input(&self, name: &str) -> Result<&HostTensor> {
        self.inputs.get(name).with_context(|| {
            format!(
                "fixture is missing tensor `input.{name}` (component `{}` needs it)",
                self.component
            )
        })
    }
}

/// Named outputs of a component run, keyed like `expected.<name>` without the prefix.
pub type Outputs = Vec<(String, HostTensor)>;

/// Result of checking one fixture.
#[derive(Clone, Debug)]
pub struct FixtureResult {
    pub dir: PathBuf,
    pub component: String,
    /// Worst relative L2 error over the expected tensors.
    pub rel_l2: f64,
    pub tolerance: f64,
}

impl FixtureResult {
    pub fn ok(&self) -> bool {
        self.rel_l2.is_finite() && self.rel_l2 <= self.tolerance
    }
}

/// ‖got − exp‖₂ / ‖exp‖₂ (computed in f64).
pub fn rel_l2(got: &[f32], exp: &[f32]) -> f64 {
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (g, e) in got.iter().zip(exp) {
        let d = *g as f64 - *e as f64;
        num += d * d;
        den += (*e as f64) * (*e as f64);
    }
    if got.len() != exp.len() {
        return f64::INFINITY;
    }
    if den == 0.0 {
        return if num == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (num / den).sqrt()
}

/// Read `case.safetensors` of a fixture directory.
pub fn load_case(dir: &Path) -> Result<Case> {
    let path = dir.join("case.safetensors");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {}: a fixture directory holds model/ and case.safetensors",
            path.display()
        )
    })?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
    let md = meta.metadata().clone().unwrap_or_default();
    let component = md
        .get("component")
        .with_context(|| format!("{}: __metadata__ has no `component` key", path.display()))?
        .clone();
    let args: serde_json::Value = match md.get("args") {
        Some(s) if !s.trim().is_empty() => serde_json::from_str(s).with_context(|| {
            format!(
                "{}: __metadata__ `args` is not valid JSON: {s}",
                path.display()
            )
        })?,
        _ => serde_json::json!({}),
    };
    let tolerance: f64 = md
        .get("tolerance")
        .with_context(|| format!("{}: __metadata__ has no `tolerance` key", path.display()))?
        .parse()
        .with_context(|| {
            format!(
                "{}: __metadata__ `tolerance` is not a number",
                path.display()
            )
        })?;
    let mut inputs = BTreeMap::new();
    let mut expected = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            bail!(
                "{}: tensor `{name}` is {:?}; fixtures hold f32 tensors only",
                path.display(),
                view.dtype()
            );
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let t = HostTensor::new(view.shape().to_vec(), data);
        if let Some(n) = name.strip_prefix("input.") {
            inputs.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix("expected.") {
            expected.insert(n.to_string(), t);
        } else {
            bail!(
                "{}: tensor `{name}` is neither `input.*` nor `expected.*`",
                path.display()
            );
        }
    }
    if expected.is_empty() {
        bail!("{}: no `expected.*` tensors", path.display());
    }
    Ok(Case {
        component,
        args,
        tolerance,
        inputs,
        expected,
    })
}

/// Opens `model_dir` on the CPU backend, loads a model from it with `load`, and checks that
/// the checkpoint holds exactly the tensors the model asked for (`mismatch()` says what
/// failed when it does not).
fn load_checked<M>(
    model_dir: &Path,
    mismatch: impl FnOnce() -> String,
    load: impl FnOnce(&VarBuilder<CpuBackend>) -> Result<M>,
) -> Result<(CpuBackend, M)> {
    let be = CpuBackend::new();
    let vb = VarBuilder::open(be.clone(), model_dir)?;
    let model = load(&vb)?;
    vb.finish()
        .map_err(anyhow::Error::from)
        .with_context(mismatch)?;
    Ok((be, model))
}

/// A fixture tensor on the backend.
fn to_tensor<B: Backend>(be: &B, t: &HostTensor) -> Result<B::Tensor> {
    be.from_f32(&t.shape, &t.data)
}

/// A backend tensor as a fixture tensor.
fn to_host<B: Backend>(be: &B, t: &B::Tensor) -> Result<HostTensor> {
    Ok(HostTensor::new(t.shape().to_vec(), be.to_f32(t)?))
}

/// Run the component a case names on its `model/` directory.
pub fn run_component(dir: &Path, case: &Case) -> Result<Outputs> {
    let model = dir.join("model");
    match case.component.as_str() {
        // Component arms are registered here by the model modules:
        // "vae_encode" | "vae_decode" | "unet2d" | "unet_motion" | "wav2vec2" | "ddim"
        "ddim" => ddim::run(&model, case),
        "unet2d" => unet2d::run(&model, case),
        "unet_motion" => unet_motion::run(&model, case),
        "vae_encode" => vae::run_encode(&model, case),
        "vae_decode" => vae::run_decode(&model, case),
        "wav2vec2" => wav2vec2::run(&model, case),
        other => bail!(
            "unknown fixture component `{other}` (known: vae_encode, vae_decode, unet2d, unet_motion, wav2vec2, ddim)"
        ),
    }
}

/// Check one fixture directory: run it and compare every expected tensor.
pub fn check_fixture(dir: &Path) -> Result<FixtureResult> {
    let case = load_case(dir)?;
    let outputs = run_component(dir, &case)?;
    let mut worst = 0.0f64;
    for (name, exp) in &case.expected {
        let got = outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .with_context(|| format!("component `{}` produced no `{name}`", case.component))?;
        if got.shape != exp.shape {
            bail!(
                "{}: `expected.{name}` has shape {:?} but the engine produced {:?}",
                dir.display(),
                exp.shape,
                got.shape
            );
        }
        worst = worst.max(rel_l2(&got.data, &exp.data));
    }
    Ok(FixtureResult {
        dir: dir.to_path_buf(),
        component: case.component,
        rel_l2: worst,
        tolerance: case.tolerance,
    })
}
