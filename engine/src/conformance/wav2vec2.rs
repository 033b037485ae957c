//! Conformance arm `wav2vec2`: `Wav2Vec2Model(input_values, output_hidden_states=True)`.
//!
//! Input: `input_values` (B, L). Outputs: `hidden_states`, the stacked
//! `num_hidden_layers + 1` hidden states (L+1, B, T, H) (transformers 5.x semantics,
//! see `models::wav2vec2`), and `last_hidden_state` (B, T, H).

use super::{Case, HostTensor, Outputs};
use crate::backends::cpu::CpuBackend;
use crate::backends::{Backend, TensorLike};
use crate::models::config_json::ConfigJson;
use crate::models::wav2vec2::{Wav2Vec2Config, Wav2Vec2Model};
use crate::var_builder::VarBuilder;
use anyhow::{Context, Result};
use std::path::Path;

pub fn run(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let be = CpuBackend::new();
    let vb = VarBuilder::open(be, model_dir)?;
    let cfg = ConfigJson::from_value(
        &format!("Wav2Vec2 config ({})", model_dir.display()),
        vb.config(),
    )?;
    let cfg = Wav2Vec2Config::from_config(&cfg)?;
    let model = Wav2Vec2Model::load(&vb, &cfg)?;
    vb.finish()
        .map_err(anyhow::Error::from)
        .context("wav2vec2 checkpoint does not match its config")?;
    let x = case.input("input_values")?;
    let x = be.from_f32(&x.shape, &x.data)?;
    let out = model.forward_outputs(&be, &x)?;
    let states = &out.hidden_states;
    let refs: Vec<&_> = states.iter().collect();
    let stacked = be.concat(&refs, 0)?;
    let mut shape = vec![states.len()];
    shape.extend_from_slice(states[0].shape());
    let last = &out.last_hidden_state;
    Ok(vec![
        (
            "hidden_states".to_string(),
            HostTensor::new(shape, be.to_f32(&stacked)?),
        ),
        (
            "last_hidden_state".to_string(),
            HostTensor::new(last.shape().to_vec(), be.to_f32(last)?),
        ),
    ])
}
