//! Argument helpers shared by the subcommands.

use anyhow::Result;
use cyberhost_engine::backends::cuda::DType;
use cyberhost_engine::error::UserError;
use cyberhost_engine::pipeline::checkpoint::WeightsSource;
use cyberhost_engine::pipeline::presets::Preset;
use std::path::{Path, PathBuf};

/// The text of a file given on the command line, or a user error with the message `explain`
/// makes of the read error (which option, what to give).
pub fn read_arg_file(
    path: &Path,
    explain: impl FnOnce(std::io::Error) -> String,
) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| UserError::new(explain(e)).into())
}

/// `--size WxH`, e.g. `512x512`.
pub fn parse_size(s: &str) -> std::result::Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}` is not WxH, e.g. 512x512"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("`{s}` is not WxH, e.g. 512x512"))
    };
    Ok((p(w)?, p(h)?))
}

/// `--activations`: the storage dtype of the CUDA denoiser's activations (one parser for
/// `generate`, `bench` and `plan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Activations {
    Bf16,
    F32,
}

impl Activations {
    pub fn dtype(self) -> DType {
        match self {
            Activations::Bf16 => DType::Bf16,
            Activations::F32 => DType::F32,
        }
    }
}

/// `--weights-dtype`: how the CUDA backend stores the linear weights (one parser for `generate`,
/// `bench` and `selftest`). `fp8`: e4m3 with per-output-channel f32 scales, quantised once at
/// load, the linears on the Hopper FP8 GEMM (`gemm_fp8_sm90`: activations quantised per row);
/// sm_90a devices only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsDtype {
    #[default]
    Bf16,
    Fp8,
}

impl WeightsDtype {
    /// Sets the flag on a CUDA backend before its weights load: a user error naming the flag and
    /// the fix on a device without the sm_90a kernel set.
    pub fn apply(self, be: &cyberhost_engine::backends::cuda::CudaBackend) -> Result<()> {
        be.set_weights_fp8(self == WeightsDtype::Fp8)
            .map_err(|e| UserError::new(format!("{e:#}")).into())
    }

    /// The CPU backend computes in f32: `fp8` there is a user error naming the fix.
    pub fn check_cpu(self) -> Result<()> {
        if self == WeightsDtype::Fp8 {
            return Err(UserError::new(
                "--weights-dtype fp8 needs --backend cuda on an sm_90a (Hopper) device; the cpu \
                 backend keeps f32 weights: drop the flag or use --weights-dtype bf16",
            )
            .into());
        }
        Ok(())
    }
}

/// The sampling flags of `generate` that a serve job sets too (form fields of the same names,
/// parsed through these definitions so that the messages match the CLI's).
#[derive(clap::Args)]
pub struct SamplingArgs {
    /// Noise seed (same seed and inputs → the same video).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// DDIM steps (default: the checkpoint's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale (default: the checkpoint's).
    #[arg(long, allow_negative_numbers = true)]
    pub guidance: Option<f32>,
    /// Output size WxH, multiples of the latent grid (default: the checkpoint's).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
}

/// The weights flags of the model-running subcommands: `--weights DIR` or `--preset`.
#[derive(clap::Args)]
pub struct WeightsArgs {
    /// tiny or paper (default tiny).
    #[arg(long, conflicts_with = "weights")]
    pub preset: Option<String>,
    /// A checkpoint directory (spec layout).
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

impl WeightsArgs {
    pub fn source(&self) -> Result<WeightsSource> {
        weights_source(&self.weights, &self.preset)
    }
}

/// `--weights DIR` or `--preset tiny|paper` (default `tiny`, seed 0).
pub fn weights_source(weights: &Option<PathBuf>, preset: &Option<String>) -> Result<WeightsSource> {
    Ok(match (weights, preset) {
        (Some(dir), _) => WeightsSource::Dir(dir.clone()),
        (None, p) => WeightsSource::Preset {
            preset: Preset::parse(p.as_deref().unwrap_or("tiny"))?,
            seed: 0,
        },
    })
}
