//! Conformance arm `unet_motion`: diffusers `UNetMotionModel` (AnimateDiff) on a fixture.
//!
//! Inputs: `sample` (B, C, F, H, W), `timestep` (B,) or (1,) or (),
//! `encoder_hidden_states` (B·F, S, D) (or (B, S, D)); args `num_frames` (checked
//! against the sample). Output: `sample` (B, C_out, F, H, W).

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::unet2d::{to_host, to_tensor};
use super::{Case, Outputs};
use crate::backends::cpu::CpuBackend;
use crate::models::hooks::NoHooks;
use crate::models::unet_motion::{UNetMotionModel, UNetMotionModelConfig};
use crate::var_builder::VarBuilder;

pub fn run(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let be = CpuBackend::new();
    let cfg = UNetMotionModelConfig::from_file(&model_dir.join("config.json"))?;
    let vb = VarBuilder::open(be.clone(), model_dir)?;
    let unet = UNetMotionModel::load(&vb, &cfg)?;
    vb.finish()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("loading {}", model_dir.display()))?;

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
    let timesteps = case.input("timestep")?.data.clone();
    let ehs = to_tensor(&be, case.input("encoder_hidden_states")?)?;
    let out = unet.forward(&be, &sample, &timesteps, &ehs, &mut NoHooks)?;
    Ok(vec![("sample".to_string(), to_host(&be, &out)?)])
}
