//! Conformance arm `unet2d`: diffusers `UNet2DConditionModel` on a fixture.
//!
//! Inputs: `sample` (B, C, H, W), `timestep` (B,) or (1,) or (), `encoder_hidden_states`
//! (B, S, D). Output: `sample` (B, C_out, H, W). The model comes from `model/`
//! (`config.json` + weights) on the CPU backend.

use std::path::Path;

use anyhow::{Context, Result};

use super::{Case, HostTensor, Outputs};
use crate::backends::cpu::CpuBackend;
use crate::backends::{Backend, TensorLike};
use crate::models::hooks::NoHooks;
use crate::models::unet2d::{UNet2DConditionModel, UNet2DConditionModelConfig};
use crate::var_builder::VarBuilder;

pub fn run(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let be = CpuBackend::new();
    let cfg = UNet2DConditionModelConfig::from_file(&model_dir.join("config.json"))?;
    let vb = VarBuilder::open(be.clone(), model_dir)?;
    let unet = UNet2DConditionModel::load(&vb, &cfg)?;
    vb.finish()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("loading {}", model_dir.display()))?;

    let sample = to_tensor(&be, case.input("sample")?)?;
    let timesteps = case.input("timestep")?.data.clone();
    let ehs = to_tensor(&be, case.input("encoder_hidden_states")?)?;
    let out = unet.forward(&be, &sample, &timesteps, &ehs, &mut NoHooks)?;
    Ok(vec![("sample".to_string(), to_host(&be, &out)?)])
}

pub(crate) fn to_tensor<B: Backend>(be: &B, t: &HostTensor) -> Result<B::Tensor> {
    be.from_f32(&t.shape, &t.data)
}

pub(crate) fn to_host<B: Backend>(be: &B, t: &B::Tensor) -> Result<HostTensor> {
    Ok(HostTensor::new(t.shape().to_vec(), be.to_f32(t)?))
}
