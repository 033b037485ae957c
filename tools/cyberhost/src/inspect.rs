//! `cyberhost inspect PATH`: tensors (name, dtype, shape), parameter count and
//! validation against the config, for a component folder, a `.safetensors`
//! file, or a whole CyberHost checkpoint (every component folder).

use anyhow::Result;
use cyberhost_engine::error::UserError;
use cyberhost_engine::pipeline::checkpoint::validate_folder;
use cyberhost_engine::pipeline::presets::COMPONENTS;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// A component folder, a .safetensors file, or a CyberHost checkpoint directory.
    path: PathBuf,
}

fn inspect_one(path: &Path, failed: &mut bool) -> Result<()> {
    let text =
        cyberhost_weights::inspect_path(path).map_err(|e| UserError::new(format!("{e:#}")))?;
    print!("{text}");
    if path.is_dir() {
        match validate_folder(path)? {
            Some((class, Ok(()))) => {
                println!("validation ({class}): ok, every tensor matches config.json")
            }
            Some((class, Err(e))) => {
                println!("validation ({class}): FAILED\n{e}");
                *failed = true;
            }
            None => println!("validation: no model class with tensors in config.json; skipped"),
        }
    }
    Ok(())
}

pub fn run(a: Args) -> Result<ExitCode> {
    if !a.path.exists() {
        return Err(UserError::new(format!("{} does not exist", a.path.display())).into());
    }
    let mut failed = false;
    if a.path.join("model_index.json").is_file() {
        for c in COMPONENTS.iter().filter(|c| **c != "scheduler") {
            let dir = a.path.join(c);
            println!("== {c}/");
            if !dir.is_dir() {
                println!("missing folder {}", dir.display());
                failed = true;
                continue;
            }
            inspect_one(&dir, &mut failed)?;
        }
    } else {
        inspect_one(&a.path, &mut failed)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
