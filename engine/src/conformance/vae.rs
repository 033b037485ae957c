//! Conformance arms `vae_encode` (input `sample` → `latent_mean`, the posterior
//! mean, unscaled) and `vae_decode` (input `latent` → `sample`, unscaled).

use super::{load_checked, to_host, to_tensor, Case, Outputs};
use crate::backends::cpu::CpuBackend;
use crate::models::config_json::ConfigJson;
use crate::models::vae::{AutoencoderKL, AutoencoderKLConfig};
use anyhow::Result;
use std::path::Path;

fn load(model_dir: &Path) -> Result<(CpuBackend, AutoencoderKL<CpuBackend>)> {
    let mismatch = || "VAE checkpoint does not match its config".to_string();
    load_checked(model_dir, mismatch, |vb| {
        let cfg = ConfigJson::from_value(
            &format!("AutoencoderKL config ({})", model_dir.display()),
            vb.config(),
        )?;
        AutoencoderKL::load(vb, &AutoencoderKLConfig::from_config(&cfg)?)
    })
}

pub fn run_encode(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let (be, vae) = load(model_dir)?;
    let mean = vae.encode(&be, &to_tensor(&be, case.input("sample")?)?)?;
    Ok(vec![("latent_mean".to_string(), to_host(&be, &mean)?)])
}

pub fn run_decode(model_dir: &Path, case: &Case) -> Result<Outputs> {
    let (be, vae) = load(model_dir)?;
    let img = vae.decode(&be, &to_tensor(&be, case.input("latent")?)?)?;
    Ok(vec![("sample".to_string(), to_host(&be, &img)?)])
}
