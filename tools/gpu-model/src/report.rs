//! The user's view of `cyberhost bench --gpu NAME`: per-kernel table, JSON and a roofline SVG.
//!
//! Input: the per-launch counter rows (as the stand-in writes them to `PTX_EMU_STATS`, one JSON
//! object per line); every row is (re)predicted for the chosen GPU, rows are grouped by kernel.

use crate::counters::Counters;
use crate::gpu::GpuSpec;
use crate::model::{annotate, BOUNDS};
use serde::Serialize;
use std::collections::BTreeMap;

/// One kernel's aggregate over its launches.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KernelRow {
    pub kernel: String,
    pub launches: u64,
    pub predicted_us: f64,
    /// Share of the whole run's predicted time (%).
    pub share_pct: f64,
    /// The unit the kernel's launches are bound by, weighted by predicted time.
    pub bound: String,
    /// Speed of light (%), weighted by predicted time.
    pub sol_pct: f64,
    pub achieved_tflops: f64,
    pub dram_gbs: f64,
    pub flops: u64,
    pub dram_bytes: u64,
    pub bank_conflicts: u64,
    pub sectors_per_request: f64,
    /// Measured time on a real GPU (when the caller has one) and the model's error in %.
    pub measured_us: Option<f64>,
    pub error_pct: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub gpu: String,
    pub launches: u64,
    pub predicted_total_us: f64,
    /// `true` when any launch ran sampled blocks: counters are scaled and outputs are invalid.
    pub sampled: bool,
    pub kernels: Vec<KernelRow>,
}

/// Parse `PTX_EMU_STATS` JSON Lines; errors name the line.
pub fn parse_jsonl(text: &str) -> Result<Vec<Counters>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("stats line {}: not a counter row: {e}", i + 1))
        })
        .collect()
}

/// Predict every row on `g` and aggregate per kernel (sorted by predicted time, largest first).
/// `measured_us` maps a kernel name to its measured total time, when a real GPU ran it.
pub fn build(
    rows: &[Counters],
    g: &GpuSpec,
    measured_us: Option<&BTreeMap<String, f64>>,
) -> Report {
    struct Acc {
        launches: u64,
        us: f64,
        by_bound: BTreeMap<&'static str, f64>,
        sol_w: f64,
        flops: u64,
        dram: u64,
        conflicts: u64,
        sectors: u64,
        requests: u64,
    }
    let mut per: BTreeMap<String, Acc> = BTreeMap::new();
    let mut total = 0.0;
    let mut sampled = false;
    for r in rows {
        let mut c = r.clone();
        let p = annotate(&mut c, g);
        sampled |= c.sampled;
        total += p.predicted_us;
        let a = per.entry(c.kernel.clone()).or_insert(Acc {
            launches: 0,
            us: 0.0,
            by_bound: BTreeMap::new(),
            sol_w: 0.0,
            flops: 0,
            dram: 0,
            conflicts: 0,
            sectors: 0,
            requests: 0,
        });
        a.launches += 1;
        a.us += p.predicted_us;
        let b = BOUNDS
            .iter()
            .find(|&&b| b == p.bound)
            .copied()
            .unwrap_or("launch");
        *a.by_bound.entry(b).or_default() += p.predicted_us;
        a.sol_w += p.sol_pct * p.predicted_us;
        a.flops += c.flops();
        a.dram += p.dram_bytes_read + p.dram_bytes_write;
        a.conflicts += c.bank_conflicts();
        a.sectors += c.global_sectors();
        a.requests += c.global_requests();
    }
    let mut kernels: Vec<KernelRow> = per
        .into_iter()
        .map(|(k, a)| {
            let bound = a
                .by_bound
                .iter()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .map(|(b, _)| b.to_string())
                .unwrap_or_else(|| "launch".into());
            let measured = measured_us.and_then(|m| m.get(&k)).copied();
            KernelRow {
                launches: a.launches,
                predicted_us: a.us,
                share_pct: if total > 0.0 {
                    100.0 * a.us / total
                } else {
                    0.0
                },
                bound,
                sol_pct: if a.us > 0.0 { a.sol_w / a.us } else { 0.0 },
                achieved_tflops: if a.us > 0.0 {
                    a.flops as f64 / a.us / 1e6
                } else {
                    0.0
                },
                dram_gbs: if a.us > 0.0 {
                    a.dram as f64 / a.us / 1e3
                } else {
                    0.0
                },
                flops: a.flops,
                dram_bytes: a.dram,
                bank_conflicts: a.conflicts,
                sectors_per_request: if a.requests > 0 {
                    a.sectors as f64 / a.requests as f64
                } else {
                    0.0
                },
                error_pct: measured.map(|m| 100.0 * (a.us - m) / m),
                measured_us: measured,
                kernel: k,
            }
        })
        .collect();
    kernels.sort_by(|a, b| {
        b.predicted_us
            .total_cmp(&a.predicted_us)
            .then(a.kernel.cmp(&b.kernel))
    });
    Report {
        gpu: g.name.to_string(),
        launches: rows.len() as u64,
        predicted_total_us: total,
        sampled,
        kernels,
    }
}

/// Column headers of [`render_table`] (and their widths).
pub const COLUMNS: [&str; 10] = [
    "kernel",
    "launches",
    "predicted_us",
    "share%",
    "bound",
    "sol%",
    "TFLOP/s",
    "DRAM_GB/s",
    "bank_confl",
    "sect/req",
];
const WIDTHS: [usize; 10] = [40, 8, 12, 7, 8, 6, 10, 9, 12, 8];

/// Append launch rows to a `PTX_EMU_STATS` file (created if missing), one JSON object per
/// line, in a single write so a reader never sees half a row.
pub fn append_jsonl(path: &std::path::Path, rows: &[Counters]) -> Result<(), String> {
    use std::io::Write;
    let mut text = String::new();
    for r in rows {
        text.push_str(&serde_json::to_string(r).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open the stats file {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.flush())
        .map_err(|e| format!("cannot write the stats file {}: {e}", path.display()))
}

/// The per-kernel table as text.
pub fn render_table(r: &Report) -> String {
    use std::fmt::Write;
    let measured = r.kernels.iter().any(|k| k.measured_us.is_some());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "predicted on {} (model, not a measurement){}",
        r.gpu,
        if r.sampled {
            "; sampled blocks: counters scaled, kernel outputs not valid"
        } else {
            ""
        }
    );
    for (i, (col, w)) in COLUMNS.iter().zip(WIDTHS).enumerate() {
        let _ = match i {
            0 => write!(s, "{col:<w$}"),
            _ => write!(s, " {col:>w$}"),
        };
    }
    if measured {
        let _ = write!(s, " {:>12} {:>7}", "measured_us", "err%");
    }
    s.push('\n');
    for k in &r.kernels {
        let name: String = if k.kernel.chars().count() > 40 {
            k.kernel
                .chars()
                .take(39)
                .chain(std::iter::once('…'))
                .collect()
        } else {
            k.kernel.clone()
        };
        let _ = write!(
            s,
            "{:<40} {:>8} {:>12.1} {:>7.1} {:>8} {:>6.1} {:>10.2} {:>9.1} {:>12} {:>8.2}",
            name,
            k.launches,
            k.predicted_us,
            k.share_pct,
            k.bound,
            k.sol_pct,
            k.achieved_tflops,
            k.dram_gbs,
            k.bank_conflicts,
            k.sectors_per_request
        );
        if measured {
            match (k.measured_us, k.error_pct) {
                (Some(m), Some(e)) => {
                    let _ = write!(s, " {m:>12.1} {e:>7.1}");
                }
                _ => {
                    let _ = write!(s, " {:>12} {:>7}", "-", "-");
                }
            }
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "total predicted: {:.1} µs over {} launches",
        r.predicted_total_us, r.launches
    );
    s
}

/// The report as pretty JSON.
pub fn to_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("report serialises")
}

/// A roofline picture (log-log: arithmetic intensity in FLOP/DRAM byte vs achieved TFLOP/s) with
/// the GPU's DRAM, FP32 and 16-bit tensor ceilings and each kernel as a labelled point, as SVG.
pub fn roofline_svg(r: &Report, g: &GpuSpec) -> Result<String, String> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let bw = g.dram_gbs * 1e9;
        let pts: Vec<(String, f64, f64)> = r
            .kernels
            .iter()
            .filter(|k| k.flops > 0 && k.predicted_us > 0.0)
            .map(|k| {
                let ai = k.flops as f64 / (k.dram_bytes.max(1)) as f64;
                (k.kernel.clone(), ai, k.achieved_tflops)
            })
            .collect();
        let (mut xmin, mut xmax) = (0.1f64, 1e4f64);
        for p in &pts {
            xmin = xmin.min(p.1 / 2.0);
            xmax = xmax.max(p.1 * 2.0);
        }
        let ymax = g.tensor_peak_tflops().max(g.fp32_tflops) * 2.0;
        let ymin = pts.iter().map(|p| p.2).fold(1e-3f64, f64::min).max(1e-6) / 2.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Roofline, {} (predicted)", g.marketing),
                ("sans-serif", 22),
            )
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d((xmin..xmax).log_scale(), (ymin..ymax).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("arithmetic intensity (FLOP / DRAM byte)")
            .y_desc("TFLOP/s")
            .draw()
            .map_err(|e| e.to_string())?;
        let xs: Vec<f64> = (0..=200)
            .map(|i| xmin * (xmax / xmin).powf(i as f64 / 200.0))
            .collect();
        for (peak, label, color) in [
            (g.fp32_tflops, "FP32 roof", BLUE),
            (g.tensor_peak_tflops(), "16-bit tensor roof", RED),
        ] {
            chart
                .draw_series(LineSeries::new(
                    xs.iter().map(|&x| (x, (x * bw / 1e12).min(peak))),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        for (name, ai, tf) in &pts {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (*ai, tf.max(ymin)),
                    5,
                    BLACK.filled(),
                )))
                .map_err(|e| e.to_string())?;
            let short: String = name.chars().take(28).collect();
            chart
                .draw_series(std::iter::once(Text::new(
                    short,
                    (*ai, tf.max(ymin)),
                    ("sans-serif", 12),
                )))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Write the roofline SVG to `path`, whole or not at all (temp file + rename).
pub fn write_roofline(r: &Report, g: &GpuSpec, path: &std::path::Path) -> Result<(), String> {
    let svg = roofline_svg(r, g)?;
    let tmp = path.with_extension("svg.tmp");
    std::fs::write(&tmp, svg).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
