//! Conformance arm `unet2d`: diffusers `UNet2DConditionModel` on a fixture.
//!
//! Inputs: `sample` (B, C, H, W), `timestep` (B,) or (1,) or (), `encoder_hidden_states`
//! (B, S, D). Output: `sample` (B, C_out, H, W). The model comes from `model/`
//! (`config.json` + weights) on the CPU backend.

use std::path::Path;

use anyhow::Result;

use super::{load_checked, to_host, to_tensor, Case, Outputs};
use crate::backends::cpu::{CpuBackend, CpuTensor};
use crate::models::hooks::NoHooks;
use crate::models::unet2d::{UNet2DConditionModel, UNet2DConditionModelConfig};

pub fn run(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let cfg = UNet2DConditionModelConfig::from_file(&model_dir.join("config.json"))?;
    let (be, unet) = load_checked(model_dir, loading(model_dir), |vb| {
        UNet2DConditionModel::load(vb, &cfg)
    })?;
    let sample = to_tensor(&be, case.input("sample")?)?;
    let (timesteps, ehs) = unet_conditions(&be, case)?;
    let out = unet.forward(&be, &sample, &timesteps, &ehs, &mut NoHooks)?;
    Ok(vec![("sample".to_string(), to_host(&be, &out)?)])
}

/// The load error context of a U-Net arm.
pub(crate) fn loading(model_dir: &Path) -> impl FnOnce() -> String + '_ {
    move || format!("loading {}", model_dir.display())
}

/// A U-Net arm's `timestep` and `encoder_hidden_states` inputs.
pub(crate) fn unet_conditions(be: &CpuBackend, case: &Case) -> Result<(Vec<f32>, CpuTensor)> {
    let timesteps = case.input("timestep")?.data.clone();
    let ehs = to_tensor(be, case.input("encoder_hidden_states")?)?;
    Ok((timesteps, ehs))
}
