//! `cyberhost check-fixture DIR...`: one line per fixture,
//! `DIR COMPONENT rel_l2=<x> tol=<t> ok|FAIL`; exit 1 if any fails.

use anyhow::Result;
use cyberhost_engine::conformance::check_fixture;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Fixture directories (each holds model/ and case.safetensors).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mut failed = false;
    for dir in &a.dirs {
        match check_fixture(dir) {
            Ok(r) => {
                println!(
                    "{} {} rel_l2={:.3e} tol={:.0e} {}",
                    dir.display(),
                    r.component,
                    r.rel_l2,
                    r.tolerance,
                    if r.ok() { "ok" } else { "FAIL" }
                );
                failed |= !r.ok();
            }
            Err(e) => {
                println!("{} ? rel_l2=nan tol=nan FAIL", dir.display());
                eprintln!("error: {}: {e:#}", dir.display());
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
