//! Resource limits checked before any work: a lying size field or an oversized file is
//! refused before it is read, mapped or allocated.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Largest safetensors JSON header (the `safetensors` crate's own limit, 100 MB). A real
/// header holds ~100 bytes per tensor: a million tensors fit.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Largest JSON file read whole: `config.json`, shard indexes, pose files. Real ones are a
/// few kilobytes (a shard index of 10⁵ tensors is ~10 MB).
pub const MAX_JSON_BYTES: u64 = 64 << 20;

/// Read a UTF-8 text file of at most `limit` bytes; a larger file is an error naming the limit,
/// raised from its length before reading (and again if it grows while being read).
pub fn read_text_capped(path: &Path, limit: u64, what: &str) -> Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("cannot stat {what} {}", path.display()))?
        .len();
    let too_big = |n: u64| {
        anyhow::anyhow!(
            "{what} {} is {n} bytes, more than the {limit}-byte limit for this file; \
             it is not a {what} (check the path) or it is corrupt",
            path.display()
        )
    };
    if len > limit {
        return Err(too_big(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => bail!(
            "{what} {} is not UTF-8 text (invalid byte at offset {}); it must be a JSON file",
            path.display(),
            e.utf8_error().valid_up_to()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("cyberhost-limits-{}-{name}", std::process::id()))
    }

    #[test]
    fn refuses_files_over_the_limit_before_reading() {
        let p = tmp("big.json");
        std::fs::write(&p, vec![b' '; 101]).unwrap();
        let e = read_text_capped(&p, 100, "config").unwrap_err().to_string();
        let ok = read_text_capped(&p, 101, "config").map(|s| s.len());
        std::fs::remove_file(&p).unwrap();
        assert!(
            e.contains("101 bytes") && e.contains("100-byte limit"),
            "{e}"
        );
        assert_eq!(ok.unwrap(), 101);
    }

    #[test]
    fn refuses_binary_data() {
        let p = tmp("bin.json");
        std::fs::write(&p, [b'{', 0xff, b'}']).unwrap();
        let e = read_text_capped(&p, 100, "config").unwrap_err().to_string();
        std::fs::remove_file(&p).unwrap();
        assert!(e.contains("not UTF-8"), "{e}");
    }
}
