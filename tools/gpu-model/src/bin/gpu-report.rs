//! `gpu-report --gpu NAME STATS.jsonl [--json] [--plot roofline.svg]`: the per-kernel
//! speed-of-light table of a `PTX_EMU_STATS` file (docs/profiling.md), predicted for one GPU.

use clap::Parser;
use gpu_model::report::{build, parse_jsonl, render_table, to_json, write_roofline};
use gpu_model::GpuSpec;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    about = "Predicted per-kernel times, bounds and % of speed of light from PTX_EMU_STATS counters"
)]
struct Args {
    /// GPU to model: h100-sxm, h100-pcie, h200, a100-sxm, a6000, l4, rtx4090.
    #[arg(long)]
    gpu: String,
    /// A PTX_EMU_STATS file (JSON Lines, one counter object per launch).
    stats: PathBuf,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write a roofline picture (SVG) here.
    #[arg(long)]
    plot: Option<PathBuf>,
}

fn run(a: &Args) -> Result<(), String> {
    let g = GpuSpec::by_name(&a.gpu).map_err(|e| format!("--gpu: {e}"))?;
    let text = std::fs::read_to_string(&a.stats).map_err(|e| {
        format!(
            "cannot read {}: {e} (give the file PTX_EMU_STATS named)",
            a.stats.display()
        )
    })?;
    let rows = parse_jsonl(&text).map_err(|e| format!("{}: {e}", a.stats.display()))?;
    if rows.is_empty() {
        return Err(format!(
            "{} has no launches: run the workload with PTX_EMU_STATS set on the stand-in driver",
            a.stats.display()
        ));
    }
    let r = build(&rows, g, None);
    if let Some(p) = &a.plot {
        write_roofline(&r, g, p)?;
    }
    if a.json {
        println!("{}", to_json(&r));
    } else {
        print!("{}", render_table(&r));
    }
    Ok(())
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpu-report: error: {e}");
            ExitCode::from(2)
        }
    }
}
