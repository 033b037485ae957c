//! Conformance arm `unet_motion`: diffusers `UNetMotionModel` (AnimateDiff) on a fixture.
//!
//! Inputs: `sample` (B, C, F, H, W), `timestep` (B,) or (1,) or (),
//! `encoder_hidden_states` (B·F, S, D) (or (B, S, D)); args `num_frames` (checked
//! against the sample). Output: `sample` (B, C_out, F, H, W).

use std::path::Path;

use anyhow::{bail, Result};

use super::unet2d::{loading, unet_conditions};
use super::{load_checked, to_host, to_tensor, Case, Outputs};
use crate::models::hooks::NoHooks;
use crate::models::unet_motion::{UNetMotionModel, UNetMotionModelConfig};

pub fn run(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let cfg = UNetMotionModelConfig::from_file(&model_dir.join("config.json"))?;
    let (be, unet) = load_checked(model_dir, loading(model_dir), |vb| {
        UNetMotionModel::load(vb, &cfg)
    })?;

    let sample_h = case.input("sample")?;
    if sample_h.shape.len() != 5 {
        bail!(
            "unet_motion fixture: `input.sample` must be (B, C, F, H, W), got {:?}",
            sample_h.shape
        );
    }
    if let Some(f) = case.args.get("num_frames").and_then(|v| v.as_u64()) {
        if f as usize != sample_h.shape[2] {
            bail!(
                "unet_motion fixture: args num_frames {f} but the sample has {} frames",
                sample_h.shape[2]
            );
        }
    }
    let sample = to_tensor(&be, sample_h)?;
    let (timesteps, ehs) = unet_conditions(&be, case)?;
    let out = unet.forward(&be, &sample, &timesteps, &ehs, &mut NoHooks)?;
    Ok(vec![("sample".to_string(), to_host(&be, &out)?)])
}
