//! One memory-mapped safetensors file, parsed and checked at open, read zero-copy.
//!
//! Format: an 8-byte little-endian header length `N`, `N` bytes of JSON
//! `{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}`,
//! then the data section; offsets are relative to the start of the data section.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use half::{bf16, f16};
use memmap2::Mmap;

use crate::dtype::{fmt_shape, DType};
use crate::limits::MAX_HEADER_BYTES;

/// Header entry of one tensor: where its bytes are in the file.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// Name as written in the file.
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Byte range in the file (already offset by the header).
    pub start: usize,
    pub end: usize,
}

impl TensorInfo {
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A borrowed, zero-copy view of one tensor in a memory-mapped file.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    /// Canonical name (weight-norm aliases already mapped to `weight_g` / `weight_v`).
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    /// Raw little-endian bytes, straight from the mapping.
    pub bytes: &'a [u8],
    /// The file the bytes live in (for error messages).
    pub file: &'a Path,
}

impl<'a> TensorView<'a> {
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Convert the values to f32 (f32 is copied, f16/bf16 widened). Any other dtype is an
    /// error naming the tensor, its dtype and the file.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.elem_count()];
        self.read_f32_into(&mut out)?;
        Ok(out)
    }

    /// Like [`TensorView::to_f32`], writing into `out` (length must be the element count).
    pub fn read_f32_into(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.elem_count() {
            bail!(
                "tensor '{}': destination holds {} values, the tensor has {} (shape {})",
                self.name,
                out.len(),
                self.elem_count(),
                fmt_shape(self.shape)
            );
        }
        match self.dtype {
            DType::F32 => {
                // Aligned data is reinterpreted directly; unaligned data (allowed by the
                // format) goes through byte chunks.
                match bytemuck::try_cast_slice::<u8, f32>(self.bytes) {
                    Ok(src) if cfg!(target_endian = "little") => out.copy_from_slice(src),
                    _ => {
                        for (o, c) in out.iter_mut().zip(self.bytes.chunks_exact(4)) {
                            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                        }
                    }
                }
            }
            DType::F16 => {
                for (o, c) in out.iter_mut().zip(self.bytes.chunks_exact(2)) {
                    *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            DType::BF16 => {
                for (o, c) in out.iter_mut().zip(self.bytes.chunks_exact(2)) {
                    *o = bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            other => bail!(
                "tensor '{}' in {} has dtype {other}; only F32, F16 and BF16 tensors can be \
                 loaded (convert the checkpoint, e.g. `model.to(torch.float32)` before \
                 `save_pretrained`)",
                self.name,
                self.file.display()
            ),
        }
        Ok(())
    }
}

/// One opened safetensors file.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: Mmap,
    /// `__metadata__` of the header.
    metadata: BTreeMap<String, String>,
    /// Tensors in header order of their data offsets.
    tensors: Vec<TensorInfo>,
}

impl SafetensorsFile {
    /// Map and check `path`: header length, header JSON, every tensor's dtype, shape and byte
    /// range. Every problem is reported with the file and tensor name.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsFile> {
        let path = path.as_ref();
        let file = File::open(path)
            .with_context(|| format!("cannot open safetensors file {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        // Everything is checked from the header, read with plain reads, before the file is
        // mapped: a lying length field or offset never reaches the mapping.
        let mut prefix = [0u8; 8];
        let mut f = &file;
        let got = read_up_to(&mut f, &mut prefix)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let header_end = check_prefix(&prefix[..got], len, path)?;
        let mut header = vec![0u8; header_end - 8];
        f.read_exact(&mut header)
            .with_context(|| format!("{}: cannot read the safetensors header", path.display()))?;
        let (metadata, tensors) = parse_header(&header, header_end, len, path)?;
        // SAFETY: the mapping is read-only and private to this struct. The format is only
        // sound if nobody truncates or rewrites the file while it is mapped; checkpoints are
        // treated as immutable inputs (our writer replaces files by rename, never in place).
        let mmap = unsafe { Mmap::map(&file) }
            .with_context(|| format!("cannot memory-map {}", path.display()))?;
        if (mmap.len() as u64) < len {
            bail!(
                "{}: the file shrank from {len} to {} bytes while it was opened; do not rewrite \
                 checkpoints while cyberhost reads them",
                path.display(),
                mmap.len()
            );
        }
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            mmap,
            metadata,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `__metadata__` map of the header (empty if absent).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Header entries, ordered by data offset.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> usize {
        self.mmap.len()
    }

    /// The bytes of one header entry.
    pub fn bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.mmap[info.start..info.end]
    }

    /// A view of the tensor named exactly `name` (as written in the file).
    pub fn view(&self, name: &str) -> Option<TensorView<'_>> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .map(|t| self.view_of(t, &t.name))
    }

    pub(crate) fn view_of<'a>(&'a self, info: &'a TensorInfo, name: &'a str) -> TensorView<'a> {
        TensorView {
            name,
            dtype: info.dtype,
            shape: &info.shape,
            bytes: self.bytes(info),
            file: &self.path,
        }
    }
}

/// Header entries of a whole safetensors file held in memory, with every check [`SafetensorsFile::open`]
/// makes (`path` only names it in messages). Used by the fuzz targets and tests.
pub fn parse_file_bytes(
    buf: &[u8],
    path: &Path,
) -> Result<(BTreeMap<String, String>, Vec<TensorInfo>)> {
    let prefix = &buf[..buf.len().min(8)];
    let header_end = check_prefix(prefix, buf.len() as u64, path)?;
    parse_header(&buf[8..header_end], header_end, buf.len() as u64, path)
}

/// Read until `buf` is full or the reader ends; the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Check the 8-byte header length field against the limit and the file length; returns the
/// offset where the data section starts.
fn check_prefix(prefix: &[u8], file_len: u64, path: &Path) -> Result<usize> {
    let p = path.display();
    let Ok(n) = <[u8; 8]>::try_from(prefix).map(u64::from_le_bytes) else {
        bail!(
            "{p}: truncated safetensors file: {file_len} bytes, but the format starts with an \
             8-byte header length; re-download or re-save the checkpoint"
        );
    };
    if n > MAX_HEADER_BYTES {
        bail!(
            "{p}: corrupt safetensors file: header length field says {n} bytes, more than the \
             {MAX_HEADER_BYTES}-byte limit; the file is not a safetensors file or is damaged \
             (re-download or re-save it)"
        );
    }
    if n > file_len.saturating_sub(8) {
        bail!(
            "{p}: corrupt or truncated safetensors file: header length field says {n} bytes \
             but only {} bytes follow it; re-download or re-save the checkpoint",
            file_len.saturating_sub(8)
        );
    }
    Ok(8 + n as usize)
}

/// Parse the JSON header (`header_bytes`, which ends at `header_end` in a file of `file_len`
/// bytes) and check every entry's dtype, shape and byte range against the file.
fn parse_header(
    header_bytes: &[u8],
    header_end: usize,
    file_len: u64,
    path: &Path,
) -> Result<(BTreeMap<String, String>, Vec<TensorInfo>)> {
    let p = path.display();
    let n = header_bytes.len();
    let header: serde_json::Value = serde_json::from_slice(header_bytes).with_context(|| {
        format!(
            "{p}: corrupt safetensors header: not valid JSON ({n} bytes); re-download or \
                 re-save the checkpoint"
        )
    })?;
    let obj = header.as_object().ok_or_else(|| {
        anyhow!(
            "{p}: corrupt safetensors header: expected a JSON object; re-download or re-save \
                 the checkpoint"
        )
    })?;
    let data_len = (file_len - header_end as u64) as usize;

    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(obj.len());
    for (name, entry) in obj {
        if name == "__metadata__" {
            let m = entry.as_object().ok_or_else(|| {
                anyhow!("{p}: corrupt safetensors header: __metadata__ must be an object")
            })?;
            for (k, v) in m {
                let v = v.as_str().ok_or_else(|| {
                    anyhow!("{p}: corrupt safetensors header: __metadata__.{k} must be a string")
                })?;
                metadata.insert(k.clone(), v.to_string());
            }
            continue;
        }
        let bad = |what: &str| {
            anyhow!(
                "{p}: corrupt safetensors header: tensor '{name}': {what} (re-download or re-save \
                 the checkpoint)"
            )
        };
        let e = entry
            .as_object()
            .ok_or_else(|| bad("entry must be an object"))?;
        let dtype_s = e
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("missing string field \"dtype\""))?;
        let dtype = DType::parse(dtype_s).ok_or_else(|| {
            anyhow!(
                "{p}: tensor '{name}' has dtype '{dtype_s}', which this loader does not know \
                 (supported: F32, F16, BF16); re-save the checkpoint in one of those"
            )
        })?;
        let shape = e
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("missing array field \"shape\""))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("\"shape\" must hold non-negative integers"))?;
        let offs = e
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("missing array field \"data_offsets\""))?;
        let (begin, end) = match offs.as_slice() {
            [b, e] => match (b.as_u64(), e.as_u64()) {
                (Some(b), Some(e)) => (b, e),
                _ => return Err(bad("\"data_offsets\" must be two non-negative integers")),
            },
            _ => return Err(bad("\"data_offsets\" must be [begin, end]")),
        };
        if begin > end {
            return Err(bad(&format!(
                "data_offsets [{begin}, {end}]: begin is after end"
            )));
        }
        if end > data_len as u64 {
            bail!(
                "{p}: tensor '{name}': data_offsets [{begin}, {end}] run past the end of the \
                 data section ({data_len} bytes): the file is truncated or its header is corrupt \
                 (re-download or re-save the checkpoint)"
            );
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(&format!("shape {} overflows", fmt_shape(&shape))))?;
        let want = numel
            .checked_mul(dtype.size_in_bytes())
            .ok_or_else(|| bad("size overflows"))?;
        if (end - begin) as usize != want {
            return Err(bad(&format!(
                "shape {} of {dtype} needs {want} bytes but data_offsets [{begin}, {end}] hold {}",
                fmt_shape(&shape),
                end - begin
            )));
        }
        tensors.push(TensorInfo {
            name: name.clone(),
            dtype,
            shape,
            start: header_end + begin as usize,
            end: header_end + end as usize,
        });
    }
    tensors.sort_by_key(|t| (t.start, t.end));
    for w in tensors.windows(2) {
        if w[1].start < w[0].end {
            bail!(
                "{p}: corrupt safetensors header: the data of tensors '{}' and '{}' overlap; \
                 re-save the checkpoint (e.g. with safetensors' save_file)",
                w[0].name,
                w[1].name
            );
        }
    }
    Ok((metadata, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    fn err(buf: &[u8]) -> String {
        format!(
            "{:#}",
            parse_file_bytes(buf, Path::new("t.safetensors")).unwrap_err()
        )
    }

    #[test]
    fn accepts_a_valid_file() {
        let b = file(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 8],
        );
        let (_, t) = parse_file_bytes(&b, Path::new("t")).unwrap();
        assert_eq!((t[0].start, t[0].end), (b.len() - 8, b.len()));
    }

    #[test]
    fn refuses_lying_length_fields_before_reading_the_header() {
        assert!(err(&[1, 2, 3]).contains("truncated"));
        let mut b = file("{}", &[]);
        b[..8].copy_from_slice(&(MAX_HEADER_BYTES + 1).to_le_bytes());
        assert!(err(&b).contains("limit"));
        b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&b).contains("limit"));
        b[..8].copy_from_slice(&3u64.to_le_bytes());
        assert!(err(&b).contains("only 2 bytes follow"));
    }

    #[test]
    fn refuses_bad_offsets_and_shapes() {
        let e = err(&file(
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            &[0; 8],
        ));
        assert!(e.contains("run past the end"), "{e}");
        let e = err(&file(
            r#"{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,0]}}"#,
            &[],
        ));
        assert!(e.contains("overflows"), "{e}");
        let e = err(&file(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            &[0; 12],
        ));
        assert!(e.contains("overlap"), "{e}");
        let e = err(&file(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
            &[0; 8],
        ));
        assert!(e.contains("begin is after end"), "{e}");
    }
}
