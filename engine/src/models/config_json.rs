//! Typed reads of a diffusers `config.json` with errors that name the key, the
//! value and what is supported. Missing keys and `null` take diffusers' defaults.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

/// The largest integer a config key may hold (2^20). Every size, count and index of a real
/// checkpoint is far below it (channels ≤ a few thousand, timesteps 1000, sample rate 16 000);
/// the bound keeps a hostile `config.json` from asking for a many-gigabyte `Vec` (e.g.
/// `mid_block_layers` = 2^62) or from overflowing a product of two or three config values.
pub const MAX_CONFIG_INT: u64 = 1 << 20;

/// A config integer: a non-negative JSON integer no larger than [`MAX_CONFIG_INT`].
fn config_int(v: &Value) -> Option<usize> {
    v.as_u64()
        .filter(|&x| x <= MAX_CONFIG_INT)
        .map(|x| x as usize)
}

/// What [`config_int`] accepts, for error messages.
const CONFIG_INT: &str = "a non-negative integer (at most 1048576)";

/// A parsed `config.json` object; `what` names it in errors (e.g. "UNet2DConditionModel config").
#[derive(Clone, Debug)]
pub struct ConfigJson {
    pub what: String,
    pub obj: Map<String, Value>,
}

impl ConfigJson {
    pub fn from_value(what: &str, v: &Value) -> Result<Self> {
        match v {
            Value::Object(m) => Ok(ConfigJson {
                what: what.to_string(),
                obj: m.clone(),
            }),
            _ => bail!("{what}: config must be a JSON object"),
        }
    }

    pub fn from_file(what: &str, path: &Path) -> Result<Self> {
        let s = std::fs::read_to_string(path)
            .with_context(|| format!("{what}: cannot read {}", path.display()))?;
        let v: Value = serde_json::from_str(&s)
            .with_context(|| format!("{what}: {} is not valid JSON", path.display()))?;
        Self::from_value(&format!("{what} ({})", path.display()), &v)
    }

    /// The value of `key`, `None` when missing or null.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self.obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn bad(&self, key: &str, v: &Value, expected: &str) -> anyhow::Error {
        anyhow::anyhow!("{}: `{key}` = {v} is not {expected}", self.what)
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => config_int(v)
                .map(Some)
                .ok_or_else(|| self.bad(key, v, CONFIG_INT)),
        }
    }

    pub fn usize(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.opt_usize(key)?.unwrap_or(default))
    }

    pub fn f32(&self, key: &str, default: f32) -> Result<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| self.bad(key, v, "a number")),
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(key, v, "a boolean")),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.bad(key, v, "a string")),
        }
    }

    pub fn str(&self, key: &str, default: &str) -> Result<String> {
        Ok(self.opt_str(key)?.unwrap_or_else(|| default.to_string()))
    }

    /// A required list of strings.
    pub fn str_list(&self, key: &str, default: &[&str]) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.bad(key, v, "a string"))
                })
                .collect(),
            Some(v) => Err(self.bad(key, v, "a list of strings")),
        }
    }

    /// A list of non-negative integers.
    pub fn usize_list(&self, key: &str, default: &[usize]) -> Result<Vec<usize>> {
        match self.get(key) {
            None => Ok(default.to_vec()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| config_int(v).ok_or_else(|| self.bad(key, v, CONFIG_INT)))
                .collect(),
            Some(v) => Err(self.bad(key, v, "a list of integers")),
        }
    }

    /// A value (repeated `n` times) or a list of `n` values, each read by `one`; `None`
    /// when missing. `item` and `any` say what a list entry and the value should be.
    fn per_block<T: Clone>(
        &self,
        key: &str,
        n: usize,
        one: impl Fn(&Value) -> Option<T>,
        item: &str,
        any: &str,
    ) -> Result<Option<Vec<T>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => {
                if a.len() != n {
                    bail!(
                        "{}: `{key}` has {} entries; expected one per block ({n})",
                        self.what,
                        a.len()
                    );
                }
                let v = a
                    .iter()
                    .map(|v| one(v).ok_or_else(|| self.bad(key, v, item)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Some(v))
            }
            Some(v) => match one(v) {
                Some(x) => Ok(Some(vec![x; n])),
                None => Err(self.bad(key, v, any)),
            },
        }
    }

    /// An integer (repeated `n` times) or a list of `n` integers; `None` when missing or null.
    pub fn opt_int_or_list(&self, key: &str, n: usize) -> Result<Option<Vec<usize>>> {
        self.per_block(
            key,
            n,
            config_int,
            "an integer of at most 1048576 (nested per-layer lists are not supported)",
            "an integer or a list of integers",
        )
    }

    pub fn int_or_list(&self, key: &str, n: usize, default: usize) -> Result<Vec<usize>> {
        Ok(self
            .opt_int_or_list(key, n)?
            .unwrap_or_else(|| vec![default; n]))
    }

    /// A boolean (repeated `n` times) or a list of `n` booleans.
    pub fn bool_or_list(&self, key: &str, n: usize, default: bool) -> Result<Vec<bool>> {
        let v = self.per_block(
            key,
            n,
            Value::as_bool,
            "a boolean",
            "a boolean or a list of booleans",
        )?;
        Ok(v.unwrap_or_else(|| vec![default; n]))
    }

    /// Error unless `key` is missing or null.
    pub fn require_null(&self, key: &str) -> Result<()> {
        if let Some(v) = self.get(key) {
            bail!(
                "{}: `{key}` = {v} is not supported (only null is)",
                self.what
            );
        }
        Ok(())
    }

    /// Error unless `key` (default `default`) is one of `allowed`.
    pub fn require_str(&self, key: &str, default: &str, allowed: &[&str]) -> Result<String> {
        let s = self.str(key, default)?;
        if !allowed.contains(&s.as_str()) {
            bail!(
                "{}: `{key}` = {s:?} is not supported (supported: {allowed:?})",
                self.what
            );
        }
        Ok(s)
    }

    /// Error unless the boolean `key` (default `default`) equals `want`.
    pub fn require_bool(&self, key: &str, default: bool, want: bool) -> Result<()> {
        let b = self.bool(key, default)?;
        if b != want {
            bail!(
                "{}: `{key}` = {b} is not supported (only {want} is)",
                self.what
            );
        }
        Ok(())
    }
}

/// `from_file` (a `config.json`) and `from_json` (a parsed value) for a config type with
/// `parse(&ConfigJson)`; `$what` names the config in errors.
macro_rules! config_constructors {
    ($what:literal) => {
        /// Read a `config.json`.
        pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
            Self::parse(&$crate::models::config_json::ConfigJson::from_file(
                $what, path,
            )?)
        }

        pub fn from_json(v: &serde_json::Value) -> anyhow::Result<Self> {
            Self::parse(&$crate::models::config_json::ConfigJson::from_value(
                $what, v,
            )?)
        }
    };
}
pub(crate) use config_constructors;

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> ConfigJson {
        ConfigJson::from_value("test config", &v).unwrap()
    }

    #[test]
    fn integers_are_bounded() {
        assert!(CONFIG_INT.contains(&MAX_CONFIG_INT.to_string()));
        let c = cfg(serde_json::json!({
            "ok": MAX_CONFIG_INT,
            "big": MAX_CONFIG_INT + 1,
            "list": [1, u64::MAX],
        }));
        assert_eq!(c.usize("ok", 0).unwrap(), MAX_CONFIG_INT as usize);
        let e = c.usize("big", 0).unwrap_err().to_string();
        assert!(e.contains("`big`") && e.contains("at most 1048576"), "{e}");
        assert!(c.usize_list("list", &[]).is_err());
        assert!(c.int_or_list("big", 2, 1).is_err());
        assert!(c.int_or_list("list", 2, 1).is_err());
    }

    /// The `config` fuzz target's crash of 2026-12-06 (first byte 2: the motion U-Net):
    /// `"mid_block_layers": 8888888888888888882` made the parser build a `Vec` of that many
    /// per-layer counts (capacity-overflow panic). It must be an error naming the key.
    #[test]
    fn fuzz_crash_huge_layer_count_is_an_error() {
        let bytes = include_bytes!(
            "../../../fuzz/regressions/config/capacity-overflow-mid-block-layers.bin"
        );
        assert_eq!(bytes[0] % 6, 2);
        let v: Value = serde_json::from_slice(&bytes[1..]).unwrap();
        let e = crate::models::unet_motion::UNetMotionModelConfig::from_json(&v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mid_block_layers"), "{e}");
    }
}
