//! `cyberhost make-weights --preset tiny|paper --seed S --out DIR`: a synthetic
//! checkpoint in the spec's layout (tiny in f32, paper in bf16 by default).

use anyhow::Result;
use cyberhost_engine::error::UserError;
use cyberhost_engine::pipeline::checkpoint::make_weights;
use cyberhost_engine::pipeline::presets::Preset;
use cyberhost_weights::DType;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// tiny (CPU default) or paper (SD1.5-sized, for benchmarks).
    #[arg(long, default_value = "tiny")]
    preset: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// New directory to create.
    #[arg(long)]
    out: PathBuf,
    /// f32, f16 or bf16 (default: f32 for tiny, bf16 for paper).
    #[arg(long)]
    dtype: Option<String>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let preset = Preset::parse(&a.preset)?;
    let dtype = match a.dtype.as_deref() {
        None if preset == Preset::Paper => DType::BF16,
        None | Some("f32") => DType::F32,
        Some("f16") => DType::F16,
        Some("bf16") => DType::BF16,
        Some(other) => {
            return Err(UserError::new(format!("--dtype {other}: use f32, f16 or bf16")).into())
        }
    };
    let n = make_weights(preset, a.seed, &a.out, dtype, |m| eprintln!("{m}"))?;
    eprintln!("wrote {} ({} parameters, {:?})", a.out.display(), n, dtype);
    Ok(ExitCode::SUCCESS)
}
