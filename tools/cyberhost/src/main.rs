//! `cyberhost`: the command-line tool.
//!
//! Exit codes: 0 success; 1 internal error or a failed check; 2 bad user input
//! (file, flag, checkpoint); 3 no GPU where one is required.

use clap::{Parser, Subcommand};
use cyberhost_cli::{
    bench, check_fixture, generate, inspect, make_weights, plan, profile, selftest, serve,
};
use cyberhost_engine::error::is_user_error;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cyberhost",
    version,
    about = "Audio-driven talking-body video diffusion (CyberHost), CPU reference and CUDA kernels"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run conformance fixtures (model/ + case.safetensors) against the CPU reference.
    CheckFixture(check_fixture::Args),
    /// Time sampler steps next to their exact FLOPs, bytes and planned arena.
    Bench(bench::Args),
    /// Make a talking-body video from a reference image and speech (MP4).
    Generate(generate::Args),
    /// List a checkpoint's tensors and validate them against its config.
    Inspect(inspect::Args),
    /// Write a synthetic checkpoint of a preset (tiny or paper).
    MakeWeights(make_weights::Args),
    /// Trace one run, plan its activation memory and print FLOPs, bytes and the H100 roofline floor.
    Plan(plan::Args),
    /// Run denoising steps inside NVTX ranges and the CUDA profiler range (Nsight Systems/Compute).
    #[command(after_help = profile::HELP)]
    Profile(profile::Args),
    /// Check every CUDA op against the CPU reference (exit 3 without a GPU).
    Selftest(selftest::Args),
    /// Serve an HTTP jobs API, progress events and a web page (docs/serving.md).
    Serve(serve::Args),
}

fn main() -> ExitCode {
    // Exit quietly when stdout is closed early (`cyberhost plan | head`), like other Unix tools,
    // instead of panicking on a broken pipe.
    // SAFETY: restoring the default SIGPIPE disposition before any thread or I/O starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Cmd::CheckFixture(a) => check_fixture::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Generate(a) => generate::run(a),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::MakeWeights(a) => make_weights::run(a),
        Cmd::Plan(a) => plan::run(a),
        Cmd::Profile(a) => profile::run(a),
        Cmd::Selftest(a) => selftest::run(a),
        Cmd::Serve(a) => serve::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(if is_user_error(&e) { 2 } else { 1 })
        }
    }
}
