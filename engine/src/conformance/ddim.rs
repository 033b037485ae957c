//! Conformance arm `ddim`: run the DDIM loop of a fixture.
//!
//! Inputs: `sample` (initial latent, any shape) and `noise_preds`
//! (num_inference_steps, *sample.shape) — the model output used at step i.
//! Args: `num_inference_steps`, `eta`. Outputs: `timesteps` (as f32) and the
//! final `sample`.

use super::{Case, HostTensor, Outputs};
use crate::sampler::ddim::DdimScheduler;
use anyhow::{bail, Context, Result};
use std::path::Path;

pub fn run(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let mut sched = DdimScheduler::from_config_file(&model_dir.join("scheduler_config.json"))?;
    let n = case
        .args
        .get("num_inference_steps")
        .and_then(|v| v.as_u64())
        .context("ddim fixture: args has no integer `num_inference_steps`")? as usize;
    let eta = case.args.get("eta").and_then(|v| v.as_f64()).unwrap_or(0.0) as f32;
    let sample0 = case.input("sample")?;
    let preds = case.input("noise_preds")?;
    let per_step = sample0.data.len();
    if preds.shape.first() != Some(&n) || preds.shape[1..] != sample0.shape[..] {
        bail!(
            "ddim fixture: `input.noise_preds` has shape {:?}; expected ({n}, {:?})",
            preds.shape,
            sample0.shape
        );
    }
    if eta != 0.0 {
        bail!(
            "ddim fixture: eta {eta} needs variance noise, which fixtures do not carry (use eta 0)"
        );
    }
    sched.set_timesteps(n)?;
    let timesteps = sched.timesteps().to_vec();
    let mut x = sample0.data.clone();
    for (i, &t) in timesteps.iter().enumerate() {
        let eps = &preds.data[i * per_step..(i + 1) * per_step];
        x = sched.step(eps, t, &x, eta, None)?;
    }
    Ok(vec![
        (
            "timesteps".to_string(),
            HostTensor::new(
                vec![timesteps.len()],
                timesteps.iter().map(|&t| t as f32).collect(),
            ),
        ),
        (
            "sample".to_string(),
            HostTensor::new(sample0.shape.clone(), x),
        ),
    ])
}
