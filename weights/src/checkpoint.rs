//! A checkpoint directory as `save_pretrained(..., safe_serialization=True)` writes it.
//!
//! ```text
//! unet/
//!   config.json                                   (scheduler/: scheduler_config.json, no weights)
//!   diffusion_pytorch_model.safetensors           (or model.safetensors for transformers / ours)
//! or, sharded:
//!   diffusion_pytorch_model.safetensors.index.json   {"weight_map": {name: shard file}}
//!   diffusion_pytorch_model-00001-of-00002.safetensors ...
//! ```
//!
//! Names are canonicalised once at open: PyTorch's parametrized weight-norm spelling
//! `X.parametrizations.weight.original0` / `original1` becomes `X.weight_g` / `X.weight_v`.
//! Lookups accept either spelling.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::dtype::DType;
use crate::limits::{read_text_capped, MAX_JSON_BYTES};
use crate::safetensors_file::{SafetensorsFile, TensorView};
use crate::validate::{ShapeMismatch, ValidationError};

/// Config file names, in the order they are looked for.
pub const CONFIG_FILES: [&str; 2] = ["config.json", "scheduler_config.json"];
/// Single-file weight names, in the order they are looked for.
pub const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "diffusion_pytorch_model.safetensors"];
/// Shard index names, in the order they are looked for.
pub const INDEX_FILES: [&str; 2] = [
    "model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors.index.json",
];

const WN_G_ALIAS: &str = ".parametrizations.weight.original0";
const WN_V_ALIAS: &str = ".parametrizations.weight.original1";

/// The canonical spelling of a tensor name: `X.parametrizations.weight.original0` →
/// `X.weight_g`, `...original1` → `X.weight_v`; every other name is returned unchanged.
pub fn canonical_name(name: &str) -> Cow<'_, str> {
    // A module at the root has no leading dot: `parametrizations.weight.original0`.
    if name == &WN_G_ALIAS[1..] {
        Cow::Borrowed("weight_g")
    } else if name == &WN_V_ALIAS[1..] {
        Cow::Borrowed("weight_v")
    } else if let Some(base) = name.strip_suffix(WN_G_ALIAS) {
        Cow::Owned(format!("{base}.weight_g"))
    } else if let Some(base) = name.strip_suffix(WN_V_ALIAS) {
        Cow::Owned(format!("{base}.weight_v"))
    } else {
        Cow::Borrowed(name)
    }
}

/// Where a tensor lives: file index, header entry index.
#[derive(Clone, Copy, Debug)]
struct Slot {
    file: usize,
    entry: usize,
}

/// An opened checkpoint: config plus every tensor of every (shard) file, memory-mapped.
#[derive(Debug)]
pub struct Checkpoint {
    /// The directory (or the single `.safetensors` file) that was opened.
    path: PathBuf,
    config_path: Option<PathBuf>,
    config: serde_json::Value,
    index_path: Option<PathBuf>,
    files: Vec<SafetensorsFile>,
    /// Canonical name → location, sorted by name.
    slots: BTreeMap<String, Slot>,
}

impl Checkpoint {
    /// Open a checkpoint directory (config + weights, see the module docs), or a single
    /// `.safetensors` file (then there is no config: [`Checkpoint::config`] is `Null`).
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        if !path.exists() {
            bail!("checkpoint {} does not exist", path.display());
        }
        if path.is_file() {
            let file = SafetensorsFile::open(path)?;
            return Checkpoint::assemble(path, None, serde_json::Value::Null, None, vec![file]);
        }
        let (config_path, config) = read_config(path)?;
        let is_scheduler = config_path
            .file_name()
            .is_some_and(|n| n == "scheduler_config.json");

        if let Some(w) = WEIGHT_FILES
            .iter()
            .map(|f| path.join(f))
            .find(|p| p.is_file())
        {
            let file = SafetensorsFile::open(&w)?;
            return Checkpoint::assemble(path, Some(config_path), config, None, vec![file]);
        }
        if let Some(idx) = INDEX_FILES
            .iter()
            .map(|f| path.join(f))
            .find(|p| p.is_file())
        {
            let files = open_shards(path, &idx)?;
            return Checkpoint::assemble(path, Some(config_path), config, Some(idx), files);
        }
        // Fall back to a lone variant file such as `diffusion_pytorch_model.fp16.safetensors`.
        let listing = list_dir(path)?;
        let singles: Vec<&String> = listing
            .iter()
            .filter(|n| n.ends_with(".safetensors"))
            .collect();
        let indexes: Vec<&String> = listing
            .iter()
            .filter(|n| n.ends_with(".safetensors.index.json"))
            .collect();
        if indexes.len() == 1 {
            let idx = path.join(indexes[0]);
            let files = open_shards(path, &idx)?;
            return Checkpoint::assemble(path, Some(config_path), config, Some(idx), files);
        }
        if singles.len() == 1 && indexes.is_empty() {
            let file = SafetensorsFile::open(path.join(singles[0]))?;
            return Checkpoint::assemble(path, Some(config_path), config, None, vec![file]);
        }
        if is_scheduler && singles.is_empty() && indexes.is_empty() {
            return Checkpoint::assemble(path, Some(config_path), config, None, vec![]);
        }
        let others: Vec<&String> = listing
            .iter()
            .filter(|n| n.ends_with(".bin") || n.ends_with(".safetensors") || n.ends_with(".json"))
            .collect();
        bail!(
            "no weights in {}: expected {} or a sharded {} (as save_pretrained(..., \
             safe_serialization=True) writes them); found {:?}{}",
            path.display(),
            WEIGHT_FILES.join(" or "),
            INDEX_FILES.join(" / "),
            others,
            if others.iter().any(|n| n.ends_with(".bin")) {
                " (PyTorch .bin files are not read: re-save with safe_serialization=True)"
            } else {
                ""
            }
        )
    }

    fn assemble(
        path: &Path,
        config_path: Option<PathBuf>,
        config: serde_json::Value,
        index_path: Option<PathBuf>,
        files: Vec<SafetensorsFile>,
    ) -> Result<Checkpoint> {
        let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
        for (fi, f) in files.iter().enumerate() {
            for (ei, info) in f.tensor_infos().iter().enumerate() {
                let canon = canonical_name(&info.name).into_owned();
                if let Some(prev) = slots.get(&canon) {
                    let pf = &files[prev.file];
                    let pname = &pf.tensor_infos()[prev.entry].name;
                    bail!(
                        "tensor '{canon}' appears twice in checkpoint {}: as '{pname}' in {} \
                         and as '{}' in {}",
                        path.display(),
                        pf.path().display(),
                        info.name,
                        f.path().display()
                    );
                }
                slots.insert(
                    canon,
                    Slot {
                        file: fi,
                        entry: ei,
                    },
                );
            }
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            config_path,
            config,
            index_path,
            files,
            slots,
        })
    }

    /// The directory or file that was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed `config.json` / `scheduler_config.json` (`Null` when a bare file was opened).
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    /// Path of the config file (`None` when a bare `.safetensors` file was opened).
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Path of the shard index, for sharded checkpoints.
    pub fn index_path(&self) -> Option<&Path> {
        self.index_path.as_deref()
    }

    /// The safetensors files, in shard order.
    pub fn files(&self) -> &[SafetensorsFile] {
        &self.files
    }

    /// The tensor called `name` (either weight-norm spelling), zero-copy.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        let (canon, slot) = self.slots.get_key_value(canonical_name(name).as_ref())?;
        let f = &self.files[slot.file];
        Some(f.view_of(&f.tensor_infos()[slot.entry], canon))
    }

    /// Like [`Checkpoint::get`], but a missing tensor is an error naming it and the checkpoint.
    pub fn require(&self, name: &str) -> Result<TensorView<'_>> {
        self.get(name).ok_or_else(|| {
            anyhow!(
                "tensor '{name}' is not in checkpoint {}",
                self.path.display()
            )
        })
    }

    /// The tensor `name` converted to f32, with its shape.
    pub fn get_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let v = self.require(name)?;
        Ok((v.shape.to_vec(), v.to_f32()?))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.slots.contains_key(canonical_name(name).as_ref())
    }

    /// Every tensor, sorted by canonical name.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> + '_ {
        self.slots.iter().map(move |(name, slot)| {
            let f = &self.files[slot.file];
            f.view_of(&f.tensor_infos()[slot.entry], name)
        })
    }

    /// Canonical names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.slots.keys().map(|s| s.as_str())
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Total number of parameters (elements over all tensors).
    pub fn param_count(&self) -> usize {
        self.tensors().map(|t| t.elem_count()).sum()
    }

    /// Total bytes of tensor data.
    pub fn data_bytes(&self) -> usize {
        self.tensors().map(|t| t.bytes.len()).sum()
    }

    /// Parameter count per dtype.
    pub fn dtype_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for t in self.tensors() {
            *m.entry(t.dtype.as_str()).or_insert(0) += t.elem_count();
        }
        m
    }

    /// Check the checkpoint against the tensors a model expects: every missing, unexpected,
    /// mis-shaped and unreadable (non-float dtype) tensor, all in one error.
    pub fn validate<S: AsRef<str>>(
        &self,
        expected: impl IntoIterator<Item = (S, Vec<usize>)>,
    ) -> std::result::Result<(), ValidationError> {
        let mut err = ValidationError::new(self.path.display().to_string());
        let mut seen = BTreeSet::new();
        for (name, shape) in expected {
            let canon = canonical_name(name.as_ref()).into_owned();
            match self.get(&canon) {
                None => err.missing.push((canon.clone(), shape)),
                Some(v) => {
                    if v.shape != shape.as_slice() {
                        err.mismatched.push(ShapeMismatch {
                            name: canon.clone(),
                            expected: shape,
                            found: v.shape.to_vec(),
                        });
                    } else if !v.dtype.is_float_supported() {
                        err.unreadable
                            .push((canon.clone(), unsupported_dtype_reason(v.dtype)));
                    }
                }
            }
            seen.insert(canon);
        }
        for t in self.tensors() {
            if !seen.contains(t.name) {
                err.unexpected.push((t.name.to_string(), t.shape.to_vec()));
            }
        }
        err.into_result()
    }
}

pub(crate) fn unsupported_dtype_reason(d: DType) -> String {
    format!("dtype {d} is not supported (only F32, F16, BF16)")
}

fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

fn read_config(dir: &Path) -> Result<(PathBuf, serde_json::Value)> {
    let Some(cp) = CONFIG_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
    else {
        let hint = if dir.join("model_index.json").is_file() {
            " (this is a pipeline folder: open one of its component sub-folders, e.g. unet/)"
        } else {
            ""
        };
        bail!(
            "no config.json (or scheduler_config.json) in checkpoint folder {}{hint}",
            dir.display()
        );
    };
    let text = read_text_capped(&cp, MAX_JSON_BYTES, "config")?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("config {} is not valid JSON", cp.display()))?;
    if !v.is_object() {
        bail!("config {} must hold a JSON object", cp.display());
    }
    Ok((cp, v))
}

/// A shard must be a plain file name in the checkpoint folder: no directories, no `..`, not
/// absolute (an index must not make the loader open files elsewhere).
fn check_shard_name(shard: &str, index: &str) -> Result<()> {
    let plain =
        !shard.is_empty() && shard != "." && shard != ".." && !shard.contains(['/', '\\', '\0']);
    if !plain {
        bail!(
            "shard index {index} names shard {shard:?}, which is not a file name in the \
             checkpoint folder; shards must sit next to the index (fix the weight_map)"
        );
    }
    Ok(())
}

/// Parse a shard index's text (`index` names it in messages): shard file name → the tensor
/// names the index places there. Every shard name must be a plain file name.
pub fn parse_shard_index(text: &str, index: &str) -> Result<BTreeMap<String, Vec<String>>> {
    let v: serde_json::Value = serde_json::from_str(text)
        .with_context(|| format!("shard index {index} is not valid JSON"))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| anyhow!("shard index {index} has no \"weight_map\" object"))?;
    // shard file → names the index puts there
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| {
            anyhow!("shard index {index}: weight_map entry '{name}' must be a file name string")
        })?;
        check_shard_name(file, index)?;
        shards
            .entry(file.to_string())
            .or_default()
            .push(name.clone());
    }
    Ok(shards)
}

/// Read a shard index and open every shard it names (in sorted shard order).
fn open_shards(dir: &Path, index: &Path) -> Result<Vec<SafetensorsFile>> {
    let ip = index.display();
    let text = read_text_capped(index, MAX_JSON_BYTES, "shard index")?;
    let shards = parse_shard_index(&text, &ip.to_string())?;
    let mut files = Vec::with_capacity(shards.len());
    for (shard, names) in &shards {
        let sp = dir.join(shard);
        if !sp.is_file() {
            bail!(
                "shard index {ip} names shard '{shard}' (holding '{}'{}), but {} does not exist",
                names[0],
                if names.len() > 1 {
                    format!(" and {} more", names.len() - 1)
                } else {
                    String::new()
                },
                sp.display()
            );
        }
        let f = SafetensorsFile::open(&sp)
            .with_context(|| format!("while opening shards listed in {ip}"))?;
        for name in names {
            if f.view(name).is_none() {
                bail!(
                    "shard index {ip} places tensor '{name}' in '{shard}', but {} has no such \
                     tensor",
                    sp.display()
                );
            }
        }
        files.push(f);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_index_names_must_stay_in_the_folder() {
        for bad in [
            "../x.safetensors",
            "/etc/passwd",
            "a/b.safetensors",
            "",
            "..",
            "a\\b",
        ] {
            let text = serde_json::json!({"weight_map": {"t": bad}}).to_string();
            let e = format!("{:#}", parse_shard_index(&text, "i.json").unwrap_err());
            assert!(e.contains("not a file name"), "{bad}: {e}");
        }
        let ok = parse_shard_index(r#"{"weight_map": {"t": "m-1.safetensors"}}"#, "i").unwrap();
        assert_eq!(ok["m-1.safetensors"], vec!["t".to_string()]);
    }
}
