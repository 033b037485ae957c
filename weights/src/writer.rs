//! Writing safetensors files (f32 values stored as F32, F16 or BF16), single or sharded.
//!
//! Files are written to a temporary file in the target folder and renamed into place, so
//! a reader never sees a half-written file and a mapped file is never modified in place.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use half::{bf16, f16};

use crate::dtype::{fmt_shape, DType};

/// One tensor to write: `data` (row-major f32) is stored as `dtype`.
#[derive(Clone, Copy, Debug)]
pub struct WriteTensor<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

impl<'a> WriteTensor<'a> {
    pub fn new(name: &'a str, dtype: DType, shape: &'a [usize], data: &'a [f32]) -> Self {
        WriteTensor {
            name,
            dtype,
            shape,
            data,
        }
    }

    fn byte_len(&self) -> usize {
        self.data.len() * self.dtype.size_in_bytes()
    }
}

fn check(tensors: &[WriteTensor<'_>], target: &Path) -> Result<()> {
    let mut seen = BTreeSet::new();
    for t in tensors {
        if t.name.is_empty() {
            bail!(
                "cannot write {}: a tensor has an empty name",
                target.display()
            );
        }
        if !seen.insert(t.name) {
            bail!(
                "cannot write {}: tensor '{}' is given twice",
                target.display(),
                t.name
            );
        }
        if !t.dtype.is_float_supported() {
            bail!(
                "cannot write {}: tensor '{}' asks for dtype {}; the writer stores F32, F16 or BF16",
                target.display(),
                t.name,
                t.dtype
            );
        }
        let numel: usize = t.shape.iter().product();
        if numel != t.data.len() {
            bail!(
                "cannot write {}: tensor '{}' has shape {} ({numel} values) but {} values were given",
                target.display(),
                t.name,
                fmt_shape(t.shape),
                t.data.len()
            );
        }
    }
    Ok(())
}

/// Write `tensors` to the safetensors file `path` (replacing it atomically), with an
/// optional `__metadata__` map (omitted when empty). Tensors are laid out largest dtype
/// first, then by name, so every tensor's data is aligned to its element size.
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &[WriteTensor<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    check(tensors, path)?;
    let mut order: Vec<&WriteTensor<'_>> = tensors.iter().collect();
    order.sort_by(|a, b| {
        b.dtype
            .size_in_bytes()
            .cmp(&a.dtype.size_in_bytes())
            .then(a.name.cmp(b.name))
    });

    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(m));
    }
    let mut offset = 0usize;
    for t in &order {
        let end = offset + t.byte_len();
        header.insert(
            t.name.to_string(),
            serde_json::json!({
                "dtype": t.dtype.as_str(),
                "shape": t.shape,
                "data_offsets": [offset, end],
            }),
        );
        offset = end;
    }
    let mut header_bytes = serde_json::to_vec(&serde_json::Value::Object(header))?;
    // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
    while header_bytes.len() % 8 != 0 {
        header_bytes.push(b' ');
    }

    write_atomically(path, |w| {
        w.write_all(&(header_bytes.len() as u64).to_le_bytes())?;
        w.write_all(&header_bytes)?;
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        for t in &order {
            for chunk in t.data.chunks(1 << 14) {
                buf.clear();
                match t.dtype {
                    DType::F32 => chunk
                        .iter()
                        .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
                    DType::F16 => chunk
                        .iter()
                        .for_each(|x| buf.extend_from_slice(&f16::from_f32(*x).to_le_bytes())),
                    DType::BF16 => chunk
                        .iter()
                        .for_each(|x| buf.extend_from_slice(&bf16::from_f32(*x).to_le_bytes())),
                    other => bail!("tensor '{}': dtype {other} cannot be written", t.name),
                }
                w.write_all(&buf)?;
            }
        }
        Ok(())
    })
}

/// Write `tensors` as shards of at most `max_shard_bytes` of data each (a larger tensor gets
/// a shard of its own) named `{stem}-00001-of-0000N.safetensors`, plus the index
/// `{stem}.safetensors.index.json` (`{"metadata": {"total_size"}, "weight_map"}`), as
/// `save_pretrained` does. `stem` is `model` or `diffusion_pytorch_model`. Returns the paths
/// written, index last.
pub fn write_sharded_safetensors(
    dir: impl AsRef<Path>,
    stem: &str,
    tensors: &[WriteTensor<'_>],
    max_shard_bytes: usize,
) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let index_path = dir.join(format!("{stem}.safetensors.index.json"));
    check(tensors, &index_path)?;
    let mut order: Vec<&WriteTensor<'_>> = tensors.iter().collect();
    order.sort_by(|a, b| a.name.cmp(b.name));
    let mut shards: Vec<Vec<WriteTensor<'_>>> = vec![];
    let mut cur_bytes = 0usize;
    for t in order {
        if shards.is_empty() || (cur_bytes > 0 && cur_bytes + t.byte_len() > max_shard_bytes) {
            shards.push(vec![]);
            cur_bytes = 0;
        }
        cur_bytes += t.byte_len();
        shards.last_mut().expect("pushed").push(*t);
    }
    let n = shards.len().max(1);
    let mut written = Vec::with_capacity(n + 1);
    let mut weight_map = serde_json::Map::new();
    let mut total = 0usize;
    for (i, shard) in shards.iter().enumerate() {
        let fname = format!("{stem}-{:05}-of-{n:05}.safetensors", i + 1);
        let p = dir.join(&fname);
        write_safetensors(&p, shard, &BTreeMap::new())?;
        for t in shard {
            weight_map.insert(t.name.to_string(), serde_json::Value::from(fname.as_str()));
            total += t.byte_len();
        }
        written.push(p);
    }
    let index = serde_json::json!({
        "metadata": { "total_size": total },
        "weight_map": weight_map,
    });
    let text = serde_json::to_string_pretty(&index)?;
    write_atomically(&index_path, |w| {
        w.write_all(text.as_bytes()).map_err(Into::into)
    })?;
    written.push(index_path);
    Ok(written)
}

/// Run `body` on a buffered temp file next to `path`, then sync and rename it to `path`.
pub(crate) fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let fname = path
        .file_name()
        .with_context(|| format!("cannot write {}: not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = path.with_file_name(format!(".{fname}.tmp{}", std::process::id()));
    let result = (|| -> Result<()> {
        let f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        body(&mut w).with_context(|| format!("cannot write {}", tmp.display()))?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files from `write_safetensors` are read by the reference `safetensors` crate.
    #[test]
    fn reference_reader_accepts_our_files() {
        let dir = std::env::temp_dir().join(format!("cyberhost-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.safetensors");
        let a: Vec<f32> = (0..5).map(|i| i as f32 * 0.37 - 1.0).collect();
        let b: Vec<f32> = (0..6).map(|i| i as f32 * -0.11 + 0.5).collect();
        let meta: BTreeMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        write_safetensors(
            &path,
            &[
                WriteTensor::new("a", DType::F16, &[5], &a),
                WriteTensor::new("b", DType::F32, &[2, 3], &b),
            ],
            &meta,
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let tb = st.tensor("b").unwrap();
        assert_eq!(tb.dtype(), safetensors::Dtype::F32);
        assert_eq!(tb.shape(), &[2, 3]);
        let got: Vec<f32> = tb
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(got, b);
        let ta = st.tensor("a").unwrap();
        assert_eq!(ta.dtype(), safetensors::Dtype::F16);
        let got: Vec<f32> = ta
            .data()
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        let want: Vec<f32> = a.iter().map(|x| f16::from_f32(*x).to_f32()).collect();
        assert_eq!(got, want);
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            m.metadata()
                .as_ref()
                .unwrap()
                .get("format")
                .map(String::as_str),
            Some("pt")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
