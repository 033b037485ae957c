//! The text of `cyberhost inspect PATH`: files, every tensor (name, dtype, shape) and totals.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::checkpoint::Checkpoint;
use crate::dtype::fmt_shape;

/// Describe one opened checkpoint: its config and weight files, one line per tensor
/// (`name  dtype  shape`, sorted by name) and the total parameter count.
pub fn inspect(ckpt: &Checkpoint) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "checkpoint {}", ckpt.path().display());
    match ckpt.config_path() {
        Some(cp) => {
            // diffusers writes `_class_name`, transformers `architectures: [..]`.
            let cfg = ckpt.config();
            let class = cfg
                .get("_class_name")
                .or_else(|| cfg.get("architectures").and_then(|a| a.get(0)))
                .and_then(|c| c.as_str());
            let _ = match class {
                Some(c) => writeln!(s, "config     {} ({c})", cp.display()),
                None => writeln!(s, "config     {}", cp.display()),
            };
        }
        None => {
            let _ = writeln!(s, "config     (none: a bare safetensors file)");
        }
    }
    if let Some(ip) = ckpt.index_path() {
        let _ = writeln!(s, "index      {}", ip.display());
    }
    for f in ckpt.files() {
        let _ = writeln!(
            s,
            "file       {} ({} tensors, {})",
            f.path().display(),
            f.tensor_infos().len(),
            human_bytes(f.file_size())
        );
    }
    let name_w = ckpt.names().map(str::len).max().unwrap_or(4).max(4);
    let _ = writeln!(s, "{:name_w$}  {:7}  shape", "name", "dtype");
    for t in ckpt.tensors() {
        let _ = writeln!(
            s,
            "{:name_w$}  {:7}  {}",
            t.name,
            t.dtype.as_str(),
            fmt_shape(t.shape)
        );
    }
    let by_dtype: Vec<String> = ckpt
        .dtype_counts()
        .iter()
        .map(|(d, n)| format!("{d} {}", group_thousands(*n)))
        .collect();
    let _ = writeln!(
        s,
        "total      {} tensors, {} parameters ({}), {} of data",
        ckpt.len(),
        group_thousands(ckpt.param_count()),
        if by_dtype.is_empty() {
            "none".to_string()
        } else {
            by_dtype.join(", ")
        },
        human_bytes(ckpt.data_bytes())
    );
    s
}

/// `inspect` for a path: a `.safetensors` file, a component folder (`config.json` +
/// weights), or a pipeline folder (`model_index.json`: every component sub-folder in turn,
/// then the grand total).
pub fn inspect_path(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let is_pipeline = path.is_dir()
        && path.join("model_index.json").is_file()
        && !crate::checkpoint::CONFIG_FILES
            .iter()
            .any(|c| path.join(c).is_file());
    if !is_pipeline {
        let ckpt = Checkpoint::open(path)?;
        return Ok(inspect(&ckpt));
    }
    let mut subdirs = Vec::new();
    for e in std::fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))? {
        let e = e.with_context(|| format!("cannot list {}", path.display()))?;
        if e.path().is_dir() {
            subdirs.push(e.path());
        }
    }
    subdirs.sort();
    let mut s = format!("pipeline {}\n", path.display());
    let mut total = 0usize;
    for d in subdirs {
        let ckpt =
            Checkpoint::open(&d).with_context(|| format!("in pipeline {}", path.display()))?;
        total += ckpt.param_count();
        s.push('\n');
        s.push_str(&inspect(&ckpt));
    }
    let _ = writeln!(s, "\npipeline total {} parameters", group_thousands(total));
    Ok(s)
}

/// `1234567` → `1,234,567`.
pub fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes with a binary unit: `512 B`, `3.0 KiB`, `1.6 GiB`.
pub fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
