//! `CyberHostConfig`: the typed `cyberhost/config.json` (spec sections 2, 5 and 8).
//!
//! ```json
//! {"_class_name": "CyberHostModules",
//!  "audio_proj": {"window": 2, "num_hidden_states": 3, "audio_dim": 64, "intermediate_dim": 64, "num_tokens": 4, "context_dim": 64},
//!  "pose_encoder": {"channels": [8, 16, 16, 32], "out_channels": 32},
//!  "clarity_embedding": {"in_channels": 32, "time_embed_dim": 128},
//!  "identity_encoder": {"stem_channels": 8, "stage_channels": [8, 16], "blocks_per_stage": [1, 1], "crop_size": 32},
//!  "rca": {"sites": [1, 2], "site_channels": [64, 32], "codebook_size": 8, "num_frames": 10, "norm_num_groups": 8, "identity_dim": 16},
//!  "pipeline": {"width": 128, "height": 128, "fps": 12, "frames_per_clip": 8, "motion_frames": 2, "num_inference_steps": 4, "guidance_scale": 3.5, "audio_window": 2, "hand_clarity": 1.0}}
//! ```
//!
//! Every section and field is required and unknown fields are rejected; every error names
//! the dotted key (`audio_proj.window`). [`CyberHostConfig::validate`] checks the
//! cross-field rules (window sizes, frame counts, channel divisibility).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The value of `_class_name`.
pub const CYBERHOST_CLASS_NAME: &str = "CyberHostModules";

/// `audio_proj`: wav2vec2 windows → audio tokens (spec section 5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioProjConfig {
    /// half window w, e.g. 2 (W = 2w+1 = 5 frames per window)
    pub window: usize,
    /// L+1 = wav2vec2 layers + 1, e.g. 3
    pub num_hidden_states: usize,
    /// D_a = wav2vec2 hidden size, e.g. 64
    pub audio_dim: usize,
    /// I, e.g. 64
    pub intermediate_dim: usize,
    /// K_a tokens per frame, e.g. 4
    pub num_tokens: usize,
    /// D_ctx = the U-Net's cross_attention_dim, e.g. 64
    pub context_dim: usize,
}

impl AudioProjConfig {
    /// W = 2w + 1
    pub fn window_frames(&self) -> usize {
        2 * self.window + 1
    }

    /// W·(L+1)·D_a, the width of one flattened window.
    pub fn input_dim(&self) -> usize {
        self.window_frames() * self.num_hidden_states * self.audio_dim
    }
}

/// `pose_encoder`: skeleton / movement maps → latent-resolution features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoseEncoderConfig {
    /// P_0..P_last, e.g. [8, 16, 16, 32]; len−1 stride-2 convs
    pub channels: Vec<usize>,
    /// C0 = the U-Net's block_out_channels[0], e.g. 32
    pub out_channels: usize,
}

/// `clarity_embedding`: sinusoid(1000·s) → time-embedding offset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClarityEmbeddingConfig {
    /// C0 (the U-Net's time_proj width), e.g. 32
    pub in_channels: usize,
    /// 4·C0 (the U-Net's time embedding width), e.g. 128
    pub time_embed_dim: usize,
}

/// `identity_encoder`: a torchvision-style BasicBlock ResNet (no fc), one for the face, one
/// for the hands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityEncoderConfig {
    /// conv1 output channels, e.g. 8 (ResNet-18: 64)
    pub stem_channels: usize,
    /// per stage, e.g. [8, 16] (ResNet-18: [64, 128, 256, 512]); E = the last
    pub stage_channels: Vec<usize>,
    /// BasicBlocks per stage, e.g. [1, 1] (ResNet-18: [2, 2, 2, 2])
    pub blocks_per_stage: Vec<usize>,
    /// square crop side in pixels, e.g. 32 (ResNet-18 preset: 128)
    pub crop_size: usize,
}

impl IdentityEncoderConfig {
    /// E = last stage's channels.
    pub fn embed_dim(&self) -> usize {
        self.stage_channels.last().copied().unwrap_or(0)
    }

    /// g, the side of the final feature map for a `crop_size` crop (PyTorch conv arithmetic).
    pub fn grid_size(&self) -> usize {
        let conv = |s: usize, k: usize, st: usize, p: usize| (s + 2 * p).saturating_sub(k) / st + 1;
        let mut s = conv(self.crop_size, 7, 2, 3); // conv1
        s = conv(s, 3, 2, 1); // maxpool
        for _ in 1..self.stage_channels.len() {
            s = conv(s, 3, 2, 1); // first block of stages ≥ 2 (stride 2)
        }
        s
    }

    /// Identity tokens per crop, g².
    pub fn tokens_per_crop(&self) -> usize {
        let g = self.grid_size();
        g * g
    }

    /// The BasicBlocks in order, stage by stage (stages beyond the shorter of
    /// `stage_channels` / `blocks_per_stage` are dropped).
    pub fn blocks(&self) -> Vec<IdentityBlock> {
        let mut blocks = Vec::new();
        let mut in_channels = self.stem_channels;
        let stages = self.stage_channels.iter().zip(&self.blocks_per_stage);
        for (stage, (&out_channels, &n)) in stages.enumerate() {
            for index in 0..n {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                blocks.push(IdentityBlock {
                    stage,
                    index,
                    in_channels,
                    out_channels,
                    stride,
                });
                in_channels = out_channels;
            }
        }
        blocks
    }
}

/// One BasicBlock of an identity encoder ([`IdentityEncoderConfig::blocks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityBlock {
    /// 0-based stage: the block is `layer{stage + 1}.{index}`
    pub stage: usize,
    pub index: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    /// 2 for the first block of the stages after the first, else 1
    pub stride: usize,
}

impl IdentityBlock {
    /// The checkpoint prefix below the encoder, `layer{stage + 1}.{index}`.
    pub fn prefix(&self) -> String {
        format!("layer{}.{}", self.stage + 1, self.index)
    }

    /// Whether the skip goes through `downsample` (stride ≠ 1 or the channels change).
    pub fn has_downsample(&self) -> bool {
        self.stride != 1 || self.in_channels != self.out_channels
    }
}

/// `rca`: Region Codebook Attention sites (spec section 4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RcaConfig {
    /// up-block indices that carry an RCA, e.g. [1, 2] (SD1.5: [1, 2, 3])
    pub sites: Vec<usize>,
    /// C per site (the up block's output channels), e.g. [64, 32]
    pub site_channels: Vec<usize>,
    /// n, rows of each spatial bank, e.g. 8 (paper preset: 32); n ≤ C
    pub codebook_size: usize,
    /// M+F, rows of each temporal bank, e.g. 10
    pub num_frames: usize,
    /// the U-Net's norm_num_groups, e.g. 8 (SD1.5: 32)
    pub norm_num_groups: usize,
    /// E = identity_encoder's last stage channels, e.g. 16
    pub identity_dim: usize,
}

/// `pipeline`: defaults of one run (spec section 2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// e.g. 128
    pub width: usize,
    /// e.g. 128
    pub height: usize,
    /// e.g. 12
    pub fps: usize,
    /// F, e.g. 8
    pub frames_per_clip: usize,
    /// M, e.g. 2
    pub motion_frames: usize,
    /// e.g. 4
    pub num_inference_steps: usize,
    /// g, e.g. 3.5
    pub guidance_scale: f32,
    /// = audio_proj.window, e.g. 2
    pub audio_window: usize,
    /// s in [0, 1], e.g. 1.0
    pub hand_clarity: f32,
}

/// The whole `cyberhost/config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CyberHostConfig {
    /// always "CyberHostModules"
    #[serde(rename = "_class_name")]
    pub class_name: String,
    pub audio_proj: AudioProjConfig,
    pub pose_encoder: PoseEncoderConfig,
    pub clarity_embedding: ClarityEmbeddingConfig,
    pub identity_encoder: IdentityEncoderConfig,
    pub rca: RcaConfig,
    pub pipeline: PipelineConfig,
}

/// Deserialise section `key` of `obj`, naming `key.field` in the error.
fn section<T: DeserializeOwned>(
    what: &str,
    obj: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<T> {
    let v = obj
        .get(key)
        .ok_or_else(|| anyhow!("{what}: missing section `{key}` (see the spec, section 2)"))?;
    if !v.is_object() {
        bail!("{what}: `{key}` = {v} is not a JSON object");
    }
    // Parse the section from pretty JSON (one top-level field per line) so that a type
    // error's line number identifies the field; missing / unknown field errors name it.
    let text = serde_json::to_string_pretty(v).expect("a JSON value prints");
    serde_json::from_str::<T>(&text).map_err(|e| {
        let msg = e.to_string();
        let named = msg.contains("missing field") || msg.contains("unknown field");
        let field = if named {
            msg.split('`').nth(1).map(str::to_string)
        } else {
            text.lines()
                .take(e.line())
                .filter_map(|l| l.strip_prefix("  \"").and_then(|r| r.split('"').next()))
                .last()
                .map(str::to_string)
        };
        match field {
            Some(f) => anyhow!("{what}: `{key}.{f}`: {msg}"),
            None => anyhow!("{what}: `{key}`: {msg}"),
        }
    })
}

/// `cond` or an error naming `key`.
fn check(cond: bool, what: &str, key: &str, msg: String) -> Result<()> {
    if !cond {
        bail!("{what}: `{key}` {msg}");
    }
    Ok(())
}

/// `key` (= `v`) must be positive.
fn check_positive(what: &str, key: &str, v: usize) -> Result<()> {
    check(v > 0, what, key, "must be positive".into())
}

/// Every entry of `key` (= `v`) must be positive.
fn check_all_positive(what: &str, key: &str, v: &[usize]) -> Result<()> {
    let msg = format!("= {v:?} must be all positive");
    check(v.iter().all(|&x| x > 0), what, key, msg)
}

/// The list `key` (`len` entries) must have one entry per `item` of the list `other`.
fn check_one_per(
    what: &str,
    (key, len): (&str, usize),
    item: &str,
    (other, n): (&str, usize),
) -> Result<()> {
    let msg = format!("has {len} entries; expected one per {item} ({n} in {other})");
    check(len == n, what, key, msg)
}

/// `key` (= `got`) must equal `other` (= `want`).
fn check_equal(what: &str, key: &str, got: usize, other: &str, want: usize) -> Result<()> {
    let msg = format!("= {got} must equal {other} = {want}");
    check(got == want, what, key, msg)
}

impl CyberHostConfig {
    /// Parse and validate a config JSON value; `what` names the source in errors.
    pub fn from_value(what: &str, v: &Value) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| anyhow!("{what}: config must be a JSON object"))?;
        let known = [
            "_class_name",
            "audio_proj",
            "pose_encoder",
            "clarity_embedding",
            "identity_encoder",
            "rca",
            "pipeline",
        ];
        for k in obj.keys() {
            // diffusers-style metadata (`_diffusers_version`, ...) is allowed.
            if !k.starts_with('_') && !known.contains(&k.as_str()) {
                bail!("{what}: unknown key `{k}` (expected {known:?})");
            }
        }
        let class_name = match obj.get("_class_name") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => bail!("{what}: `_class_name` = {other} is not a string"),
            None => bail!("{what}: missing `_class_name` (expected \"{CYBERHOST_CLASS_NAME}\")"),
        };
        let cfg = CyberHostConfig {
            class_name,
            audio_proj: section(what, obj, "audio_proj")?,
            pose_encoder: section(what, obj, "pose_encoder")?,
            clarity_embedding: section(what, obj, "clarity_embedding")?,
            identity_encoder: section(what, obj, "identity_encoder")?,
            rca: section(what, obj, "rca")?,
            pipeline: section(what, obj, "pipeline")?,
        };
        cfg.validate(what)?;
        Ok(cfg)
    }

    /// Parse and validate a JSON string.
    pub fn from_json_str(what: &str, s: &str) -> Result<Self> {
        let v: Value =
            serde_json::from_str(s).with_context(|| format!("{what}: not valid JSON"))?;
        Self::from_value(what, &v)
    }

    /// Read `config.json` (a file, or the `cyberhost/` folder holding it).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let mut path = path.as_ref().to_path_buf();
        if path.is_dir() {
            path = path.join("config.json");
        }
        let s = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read CyberHost config {}", path.display()))?;
        Self::from_json_str(&path.display().to_string(), &s)
    }

    /// The config as JSON (what `config.json` holds).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("CyberHostConfig serialises to JSON")
    }

    /// Cross-field checks; every error names the offending key.
    pub fn validate(&self, what: &str) -> Result<()> {
        check(
            self.class_name == CYBERHOST_CLASS_NAME,
            what,
            "_class_name",
            format!("= {:?}, expected {CYBERHOST_CLASS_NAME:?}", self.class_name),
        )?;

        let a = &self.audio_proj;
        for (k, v) in [
            ("audio_proj.num_hidden_states", a.num_hidden_states),
            ("audio_proj.audio_dim", a.audio_dim),
            ("audio_proj.intermediate_dim", a.intermediate_dim),
            ("audio_proj.num_tokens", a.num_tokens),
            ("audio_proj.context_dim", a.context_dim),
        ] {
            check_positive(what, k, v)?;
        }

        let p = &self.pose_encoder;
        check(
            !p.channels.is_empty(),
            what,
            "pose_encoder.channels",
            "must not be empty".into(),
        )?;
        check_all_positive(what, "pose_encoder.channels", &p.channels)?;
        check_positive(what, "pose_encoder.out_channels", p.out_channels)?;
        let down = 1usize << (p.channels.len() - 1);
        for (k, v) in [
            ("pipeline.width", self.pipeline.width),
            ("pipeline.height", self.pipeline.height),
        ] {
            check(
                v > 0 && v % down == 0,
                what,
                k,
                format!(
                    "= {v} must be a positive multiple of {down} (2^(len(pose_encoder.channels) − 1))"
                ),
            )?;
        }

        let c = &self.clarity_embedding;
        check(
            c.in_channels == p.out_channels,
            what,
            "clarity_embedding.in_channels",
            format!(
                "= {} must equal pose_encoder.out_channels = {} (C0)",
                c.in_channels, p.out_channels
            ),
        )?;
        check(
            c.time_embed_dim == 4 * c.in_channels,
            what,
            "clarity_embedding.time_embed_dim",
            format!(
                "= {} must be 4 · clarity_embedding.in_channels = {}",
                c.time_embed_dim,
                4 * c.in_channels
            ),
        )?;

        let id = &self.identity_encoder;
        check_positive(what, "identity_encoder.stem_channels", id.stem_channels)?;
        check(
            !id.stage_channels.is_empty() && id.stage_channels.iter().all(|&c| c > 0),
            what,
            "identity_encoder.stage_channels",
            format!(
                "= {:?} must be non-empty and all positive",
                id.stage_channels
            ),
        )?;
        check_one_per(
            what,
            (
                "identity_encoder.blocks_per_stage",
                id.blocks_per_stage.len(),
            ),
            "stage",
            ("identity_encoder.stage_channels", id.stage_channels.len()),
        )?;
        check_all_positive(
            what,
            "identity_encoder.blocks_per_stage",
            &id.blocks_per_stage,
        )?;
        check_positive(what, "identity_encoder.crop_size", id.crop_size)?;

        let r = &self.rca;
        check_one_per(
            what,
            ("rca.site_channels", r.site_channels.len()),
            "site",
            ("rca.sites", r.sites.len()),
        )?;
        let mut sorted = r.sites.clone();
        sorted.sort_unstable();
        sorted.dedup();
        check(
            sorted.len() == r.sites.len(),
            what,
            "rca.sites",
            format!("= {:?} has duplicates", r.sites),
        )?;
        check_positive(what, "rca.norm_num_groups", r.norm_num_groups)?;
        check_positive(what, "rca.codebook_size", r.codebook_size)?;
        for (&site, &ch) in r.sites.iter().zip(&r.site_channels) {
            let key = "rca.site_channels";
            check(
                ch > 0 && ch % r.norm_num_groups == 0,
                what,
                key,
                format!(
                    "= {ch} (site {site}) must be a positive multiple of rca.norm_num_groups = {}",
                    r.norm_num_groups
                ),
            )?;
            check(
                ch % 4 == 0,
                what,
                key,
                format!("= {ch} (site {site}) must be divisible by 4 (mask conv C/4)"),
            )?;
            let heads = (ch / 64).max(1);
            check(
                ch % heads == 0,
                what,
                key,
                format!("= {ch} (site {site}) must be divisible by its {heads} heads (C/64)"),
            )?;
            check(
                r.codebook_size <= ch,
                what,
                "rca.codebook_size",
                format!(
                    "= {} exceeds the {ch} channels of site {site} (Gram-Schmidt needs n ≤ C)",
                    r.codebook_size
                ),
            )?;
            check(
                r.num_frames <= ch,
                what,
                "rca.num_frames",
                format!(
                    "= {} exceeds the {ch} channels of site {site} (Gram-Schmidt needs M+F ≤ C)",
                    r.num_frames
                ),
            )?;
        }
        check_equal(
            what,
            "rca.identity_dim",
            r.identity_dim,
            "the last of identity_encoder.stage_channels",
            id.embed_dim(),
        )?;

        let pl = &self.pipeline;
        let (key, window) = ("pipeline.audio_window", pl.audio_window);
        check_equal(what, key, window, "audio_proj.window", a.window)?;
        check_positive(what, "pipeline.frames_per_clip", pl.frames_per_clip)?;
        check_equal(
            what,
            "rca.num_frames",
            r.num_frames,
            "pipeline.motion_frames + pipeline.frames_per_clip",
            pl.motion_frames + pl.frames_per_clip,
        )?;
        check_positive(what, "pipeline.fps", pl.fps)?;
        check_positive(what, "pipeline.num_inference_steps", pl.num_inference_steps)?;
        check(
            pl.guidance_scale.is_finite(),
            what,
            "pipeline.guidance_scale",
            format!("= {} must be finite", pl.guidance_scale),
        )?;
        check(
            (0.0..=1.0).contains(&pl.hand_clarity),
            what,
            "pipeline.hand_clarity",
            format!("= {} must be in [0, 1]", pl.hand_clarity),
        )?;
        Ok(())
    }
}
