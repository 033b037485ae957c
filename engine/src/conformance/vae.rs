//! Conformance arms `vae_encode` (input `sample` → `latent_mean`, the posterior
//! mean, unscaled) and `vae_decode` (input `latent` → `sample`, unscaled).

use super::{Case, HostTensor, Outputs};
use crate::backends::cpu::CpuBackend;
use crate::backends::{Backend, TensorLike};
use crate::models::config_json::ConfigJson;
use crate::models::vae::{AutoencoderKL, AutoencoderKLConfig};
use crate::var_builder::VarBuilder;
use anyhow::{Context, Result};
use std::path::Path;

fn load(model_dir: &Path) -> Result<(CpuBackend, AutoencoderKL<CpuBackend>)> {
    let be = CpuBackend::new();
    let vb = VarBuilder::open(be, model_dir)?;
    let cfg = ConfigJson::from_value(
        &format!("AutoencoderKL config ({})", model_dir.display()),
        vb.config(),
    )?;
    let cfg = AutoencoderKLConfig::from_config(&cfg)?;
    let vae = AutoencoderKL::load(&vb, &cfg)?;
    vb.finish()
        .map_err(anyhow::Error::from)
        .context("VAE checkpoint does not match its config")?;
    Ok((be, vae))
}

pub fn run_encode(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let (be, vae) = load(model_dir)?;
    let x = case.input("sample")?;
    let x = be.from_f32(&x.shape, &x.data)?;
    let mean = vae.encode(&be, &x)?;
    Ok(vec![(
        "latent_mean".to_string(),
        HostTensor::new(mean.shape().to_vec(), be.to_f32(&mean)?),
    )])
}

pub fn run_decode(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let (be, vae) = load(model_dir)?;
    let z = case.input("latent")?;
    let z = be.from_f32(&z.shape, &z.data)?;
    let img = vae.decode(&be, &z)?;
    Ok(vec![(
        "sample".to_string(),
        HostTensor::new(img.shape().to_vec(), be.to_f32(&img)?),
    )])
}
