//! Conformance arm `wav2vec2`: `Wav2Vec2Model(input_values, output_hidden_states=True)`.
//!
//! Input: `input_values` (B, L). Outputs: `hidden_states`, the stacked
//! `num_hidden_layers + 1` hidden states (L+1, B, T, H) (transformers 5.x semantics,
//! see `models::wav2vec2`), and `last_hidden_state` (B, T, H).

use super::{load_checked, to_host, to_tensor, Case, HostTensor, Outputs};
use crate::backends::{Backend, TensorLike};
use crate::models::config_json::ConfigJson;
use crate::models::wav2vec2::{Wav2Vec2Config, Wav2Vec2Model};
use anyhow::Result;
use std::path::Path;

pub fn run(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let mismatch = || "wav2vec2 checkpoint does not match its config".to_string();
    let (be, model) = load_checked(model_dir, mismatch, |vb| {
        let cfg = ConfigJson::from_value(
            &format!("Wav2Vec2 config ({})", model_dir.display()),
            vb.config(),
        )?;
        Wav2Vec2Model::load(vb, &Wav2Vec2Config::from_config(&cfg)?)
    })?;
    let x = to_tensor(&be, case.input("input_values")?)?;
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
        ("last_hidden_state".to_string(), to_host(&be, last)?),
    ])
}
