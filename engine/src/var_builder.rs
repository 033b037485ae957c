//! `VarBuilder`: named access to checkpoint tensors for model `load` functions, candle-style.
//!
//! ```ignore
//! let vb = VarBuilder::open(backend, "ckpt/denoising_unet")?;
//! let conv_in = vb.pp("conv_in").get("weight", &[32, 4, 3, 3])?;      // (C0, 4, 3, 3)
//! let res = vb.pp("down_blocks").pp(0).pp("resnets").pp(0);           // "down_blocks.0.resnets.0"
//! vb.finish()?;   // every missing / mis-shaped / unreadable / unexpected tensor, at once
//! ```
//!
//! To report all problems in one error, `get` does not fail on a missing or mis-shaped tensor:
//! it records the problem and returns zeros of the requested shape. Call [`VarBuilder::finish`]
//! after loading; it fails with a [`ValidationError`] naming every problem, including tensors
//! of the checkpoint that were never requested (mark intentionally unused ones with
//! [`VarBuilder::skip`] / [`VarBuilder::skip_all`]). Clones and `pp` prefixes share one log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, Result};
use cyberhost_weights::{
    canonical_name, fmt_shape, weight_norm, weight_norm_g_shape, Checkpoint, ShapeMismatch,
    ValidationError,
};

use crate::backends::Backend;

/// Where the tensors come from.
enum Source {
    Checkpoint(Arc<Checkpoint>),
    /// Canonical name → (shape, row-major values).
    Memory(BTreeMap<String, (Vec<usize>, Vec<f32>)>),
}

/// What loading has requested and found wrong so far.
#[derive(Default)]
struct Log {
    /// Canonical names that were requested and found (or skipped on purpose).
    used: BTreeSet<String>,
    /// Prefixes whose every tensor counts as used (`skip_all`).
    skipped_prefixes: Vec<String>,
    missing: Vec<(String, Vec<usize>)>,
    mismatched: Vec<ShapeMismatch>,
    unreadable: Vec<(String, String)>,
}

struct Shared {
    source: Source,
    config: serde_json::Value,
    /// For error messages: the checkpoint path or "in-memory weights".
    label: String,
    log: Mutex<Log>,
}

/// Prefixed, shape-checked access to the tensors of one checkpoint (see the module docs).
pub struct VarBuilder<B: Backend> {
    backend: B,
    /// `""` or a dotted path such as `"down_blocks.0.resnets.1"`.
    prefix: String,
    /// Check names, shapes and dtypes only; no tensor data is read
    /// (see [`VarBuilder::shapes_only`]).
    shapes_only: bool,
    shared: Arc<Shared>,
}

impl<B: Backend> Clone for VarBuilder<B> {
    fn clone(&self) -> Self {
        VarBuilder {
            backend: self.backend.clone(),
            prefix: self.prefix.clone(),
            shapes_only: self.shapes_only,
            shared: self.shared.clone(),
        }
    }
}

impl<B: Backend> std::fmt::Debug for VarBuilder<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VarBuilder")
            .field("backend", &self.backend.name())
            .field("source", &self.shared.label)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Is `name` equal to `prefix` or inside it (`prefix.` + rest)? The empty prefix holds all.
fn under(name: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || name == prefix
        || (name.len() > prefix.len()
            && name.starts_with(prefix)
            && name.as_bytes()[prefix.len()] == b'.')
}

impl<B: Backend> VarBuilder<B> {
    fn with_source(backend: B, source: Source, config: serde_json::Value, label: String) -> Self {
        VarBuilder {
            backend,
            prefix: String::new(),
            shapes_only: false,
            shared: Arc::new(Shared {
                source,
                config,
                label,
                log: Mutex::new(Log::default()),
            }),
        }
    }

    /// Over an opened checkpoint.
    pub fn from_checkpoint(backend: B, ckpt: impl Into<Arc<Checkpoint>>) -> Self {
        let ckpt: Arc<Checkpoint> = ckpt.into();
        let config = ckpt.config().clone();
        let label = ckpt.path().display().to_string();
        VarBuilder::with_source(backend, Source::Checkpoint(ckpt), config, label)
    }

    /// Open the checkpoint folder (or `.safetensors` file) at `path`.
    pub fn open(backend: B, path: impl AsRef<Path>) -> Result<Self> {
        Ok(VarBuilder::from_checkpoint(
            backend,
            Checkpoint::open(path)?,
        ))
    }

    /// Over in-memory f32 tensors `name → (shape, values)`, with a `Null` config.
    pub fn from_tensors(
        backend: B,
        tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<Self> {
        VarBuilder::from_tensors_with_config(backend, tensors, serde_json::Value::Null)
    }

    /// Over in-memory f32 tensors with a config (what `config.json` would hold).
    pub fn from_tensors_with_config(
        backend: B,
        tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
        config: serde_json::Value,
    ) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (name, (shape, data)) in tensors {
            let numel: usize = shape.iter().product();
            if numel != data.len() {
                bail!(
                    "in-memory tensor '{name}': shape {} needs {numel} values, {} given",
                    fmt_shape(&shape),
                    data.len()
                );
            }
            let canon = canonical_name(&name).into_owned();
            if map.insert(canon.clone(), (shape, data)).is_some() {
                bail!("in-memory tensor '{canon}' is given twice (both weight-norm spellings?)");
            }
        }
        Ok(VarBuilder::with_source(
            backend,
            Source::Memory(map),
            config,
            "in-memory weights".into(),
        ))
    }

    // ---- navigation -----------------------------------------------------------------

    /// A builder for the sub-module `s`: `vb.pp("down_blocks").pp(0)` reads
    /// `down_blocks.0.*`. Shares the log with `self`.
    pub fn pp(&self, s: impl ToString) -> Self {
        let s = s.to_string();
        let prefix = if self.prefix.is_empty() {
            s
        } else {
            format!("{}.{s}", self.prefix)
        };
        VarBuilder {
            backend: self.backend.clone(),
            prefix,
            shapes_only: self.shapes_only,
            shared: self.shared.clone(),
        }
    }

    /// Validation mode: every request is checked and recorded as usual, but no tensor data
    /// is read or converted and every tensor returned is `backend.zeros(shape)` (host values
    /// are zeros). For checking a large checkpoint against a config, e.g. with a shape-only
    /// backend. Applies to this builder and the ones derived from it.
    pub fn shapes_only(mut self) -> Self {
        self.shapes_only = true;
        self
    }

    /// The current dotted prefix (`""` at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full checkpoint name of `name` under the current prefix, canonicalised.
    pub fn full_name(&self, name: &str) -> String {
        let full = if self.prefix.is_empty() {
            name.to_string()
        } else if name.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}.{name}", self.prefix)
        };
        canonical_name(&full).into_owned()
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The checkpoint's `config.json` (`Null` for bare files and `from_tensors`).
    pub fn config(&self) -> &serde_json::Value {
        &self.shared.config
    }

    /// The underlying checkpoint, unless the weights are in memory.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        match &self.shared.source {
            Source::Checkpoint(c) => Some(c),
            Source::Memory(_) => None,
        }
    }

    // ---- queries (never recorded) -----------------------------------------------------

    /// Whether `name` (under the prefix) exists; does not mark it used.
    pub fn contains(&self, name: &str) -> bool {
        self.source_shape(&self.full_name(name)).is_some()
    }

    /// The stored shape of `name` (under the prefix); does not mark it used.
    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        self.source_shape(&self.full_name(name))
    }

    fn source_shape(&self, full: &str) -> Option<Vec<usize>> {
        match &self.shared.source {
            Source::Checkpoint(c) => c.get(full).map(|v| v.shape.to_vec()),
            Source::Memory(m) => m.get(full).map(|(s, _)| s.clone()),
        }
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        // A panic elsewhere while holding the lock leaves the log usable.
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- loading --------------------------------------------------------------------

    /// `name` under the prefix as host f32 values of the expected `shape`.
    /// Missing, mis-shaped or unreadable: the problem is recorded and zeros are returned.
    pub fn get_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = self.full_name(name);
        Ok(self
            .load_full(&full, shape, false)?
            .unwrap_or_else(|| zeros(shape)))
    }

    /// `name` under the prefix, of the expected `shape`, uploaded to the backend.
    /// Missing, mis-shaped or unreadable: recorded for [`VarBuilder::finish`], and a zero
    /// tensor of `shape` is returned so loading can go on and report everything at once.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<B::Tensor> {
        let data = self.get_f32(name, shape)?;
        self.upload(shape, &data)
    }

    fn upload(&self, shape: &[usize], data: &[f32]) -> Result<B::Tensor> {
        if self.shapes_only {
            self.backend.zeros(shape)
        } else {
            self.backend.from_f32(shape, data)
        }
    }

    /// Like [`VarBuilder::get`], but an absent tensor is `None` and not a problem.
    /// A present tensor of the wrong shape is still recorded (and zeros returned).
    pub fn get_opt(&self, name: &str, shape: &[usize]) -> Result<Option<B::Tensor>> {
        let full = self.full_name(name);
        match self.load_full(&full, shape, true)? {
            Some(data) => Ok(Some(self.upload(shape, &data)?)),
            None if self.source_shape(&full).is_some() => Ok(Some(self.backend.zeros(shape)?)),
            None => Ok(None),
        }
    }

    /// `Some(values)` when `full` exists with `shape` and a float dtype; `None` after
    /// recording the problem (a missing tensor is recorded unless `optional`).
    /// In shapes-only mode the values are zeros and no tensor data is read.
    fn load_full(&self, full: &str, shape: &[usize], optional: bool) -> Result<Option<Vec<f32>>> {
        let found = match &self.shared.source {
            Source::Checkpoint(c) => match c.get(full) {
                None => None,
                Some(v) if v.shape != shape => Some(Err(v.shape.to_vec())),
                Some(v) if self.shapes_only && v.dtype.is_float_supported() => {
                    Some(Ok(zeros(shape)))
                }
                Some(v) => match v.to_f32().and_then(|d| check_finite(&d).map(|()| d)) {
                    Ok(d) => Some(Ok(d)),
                    Err(e) => {
                        let mut log = self.log();
                        log.used.insert(full.to_string());
                        log.unreadable.push((full.to_string(), format!("{e:#}")));
                        return Ok(None);
                    }
                },
            },
            Source::Memory(m) => match m.get(full) {
                None => None,
                Some((s, _)) if s.as_slice() != shape => Some(Err(s.clone())),
                Some(_) if self.shapes_only => Some(Ok(zeros(shape))),
                Some((_, d)) => Some(Ok(d.clone())),
            },
        };
        let mut log = self.log();
        match found {
            None => {
                if !optional {
                    log.missing.push((full.to_string(), shape.to_vec()));
                }
                Ok(None)
            }
            Some(Err(found_shape)) => {
                log.used.insert(full.to_string());
                log.mismatched.push(ShapeMismatch {
                    name: full.to_string(),
                    expected: shape.to_vec(),
                    found: found_shape,
                });
                Ok(None)
            }
            Some(Ok(data)) => {
                log.used.insert(full.to_string());
                Ok(Some(data))
            }
        }
    }

    /// The weight of the weight-normed module `name` (e.g. wav2vec2's
    /// `encoder.pos_conv_embed.conv`), of `shape`, normalised along `dim`:
    /// `name.weight` if stored plainly, else `g · v / ‖v‖` from `name.weight_g` /
    /// `name.weight_v` (or PyTorch's `name.parametrizations.weight.original0` / `original1`).
    /// Problems are recorded as for [`VarBuilder::get`].
    pub fn get_weight_norm(&self, name: &str, shape: &[usize], dim: usize) -> Result<B::Tensor> {
        let data = self.get_weight_norm_f32(name, shape, dim)?;
        self.upload(shape, &data)
    }

    /// Host-side [`VarBuilder::get_weight_norm`].
    pub fn get_weight_norm_f32(&self, name: &str, shape: &[usize], dim: usize) -> Result<Vec<f32>> {
        if dim >= shape.len() {
            bail!(
                "weight norm of '{}': dim {dim} is out of range for shape {}",
                self.full_name(name),
                fmt_shape(shape)
            );
        }
        let vb = self.pp(name);
        if vb.contains("weight") {
            return vb.get_f32("weight", shape);
        }
        let g_shape = weight_norm_g_shape(shape, dim);
        let g = vb.load_full(&vb.full_name("weight_g"), &g_shape, false)?;
        let v = vb.load_full(&vb.full_name("weight_v"), shape, false)?;
        match (g, v) {
            (Some(_), Some(_)) if self.shapes_only => Ok(zeros(shape)),
            (Some(g), Some(v)) => weight_norm(&g, &v, shape, dim),
            _ => Ok(zeros(shape)),
        }
    }

    /// Mark `name` (under the prefix) as intentionally unused, so `finish` does not report it.
    pub fn skip(&self, name: &str) {
        let full = self.full_name(name);
        self.log().used.insert(full);
    }

    /// Mark every tensor under the current prefix as intentionally unused (e.g. ReferenceNet
    /// layers after the last attention that is read).
    pub fn skip_all(&self) {
        let p = self.prefix.clone();
        self.log().skipped_prefixes.push(p);
    }

    /// Every problem recorded so far, plus every tensor of the source that was never
    /// requested (nor skipped), as one [`ValidationError`]. Does not reset the log.
    pub fn finish(&self) -> std::result::Result<(), ValidationError> {
        let log = self.log();
        let mut err = ValidationError::new(self.shared.label.clone());
        err.missing = log.missing.clone();
        err.mismatched = log.mismatched.clone();
        err.unreadable = log.unreadable.clone();
        let is_used =
            |n: &str| log.used.contains(n) || log.skipped_prefixes.iter().any(|p| under(n, p));
        match &self.shared.source {
            Source::Checkpoint(c) => {
                for t in c.tensors() {
                    if !is_used(t.name) {
                        err.unexpected.push((t.name.to_string(), t.shape.to_vec()));
                    }
                }
            }
            Source::Memory(m) => {
                for (n, (s, _)) in m {
                    if !is_used(n) {
                        err.unexpected.push((n.clone(), s.clone()));
                    }
                }
            }
        }
        err.into_result()
    }
}

fn zeros(shape: &[usize]) -> Vec<f32> {
    vec![0f32; shape.iter().product()]
}

/// A weight must hold finite numbers: a NaN or ±Inf (a corrupt or badly converted checkpoint)
/// would silently poison every frame.
fn check_finite(d: &[f32]) -> Result<()> {
    let bad = d.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        let first = d.iter().position(|v| !v.is_finite()).unwrap_or(0);
        bail!(
            "{bad} of {} values are NaN or infinite (first at index {first}: {}); the checkpoint \
             is corrupt: re-export it from a working model",
            d.len(),
            d[first]
        );
    }
    Ok(())
}
