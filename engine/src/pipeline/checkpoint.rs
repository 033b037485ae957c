//! A CyberHost checkpoint: one folder per component (spec section 2), from a
//! directory or made in memory from a preset, loaded and validated as a whole.
//!
//! Synthetic weights (`make-weights`, and the built-in `tiny`) take their
//! parameter list from the model code itself: each component is "loaded" on the
//! shape-only backend with no tensors, and every tensor it asked for (name and
//! shape) is drawn by `cyberhost_weights::synthetic::init_tensor`.

use crate::backends::shape::ShapeBackend;
use crate::backends::Backend;
use crate::error::UserError;
use crate::models::config_json::ConfigJson;
use crate::models::cyberhost::{CyberHostConfig, CyberHostModules};
use crate::models::unet2d::{UNet2DConditionModel, UNet2DConditionModelConfig};
use crate::models::unet_motion::{UNetMotionModel, UNetMotionModelConfig};
use crate::models::vae::{AutoencoderKL, AutoencoderKLConfig};
use crate::models::wav2vec2::{Wav2Vec2Config, Wav2Vec2Model};
use crate::pipeline::presets::{Preset, COMPONENTS};
use crate::sampler::ddim::DdimConfig;
use crate::var_builder::VarBuilder;
use anyhow::{Context, Result};
use cyberhost_weights::synthetic::init_tensor;
use cyberhost_weights::{write_safetensors, DType, ValidationError, WriteTensor};
use rayon::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where the weights come from.
#[derive(Clone, Debug)]
pub enum WeightsSource {
    /// A preset's synthetic weights, made in memory.
    Preset { preset: Preset, seed: u64 },
    /// A checkpoint directory in the layout of spec section 2.
    Dir(PathBuf),
}

/// Parsed configs of every component.
#[derive(Clone, Debug)]
pub struct Configs {
    pub vae: AutoencoderKLConfig,
    pub reference_unet: UNet2DConditionModelConfig,
    pub denoising_unet: UNetMotionModelConfig,
    pub audio_encoder: Wav2Vec2Config,
    pub cyberhost: CyberHostConfig,
    pub scheduler: DdimConfig,
    /// The raw JSON of each component, by folder name.
    pub raw: BTreeMap<String, Value>,
}

/// Every component, loaded.
pub struct Components<B: Backend> {
    pub configs: Configs,
    pub vae: AutoencoderKL<B>,
    pub reference_unet: UNet2DConditionModel<B>,
    pub denoising_unet: UNetMotionModel<B>,
    pub audio_encoder: Wav2Vec2Model<B>,
    pub modules: CyberHostModules<B>,
}

impl<B: Backend> Components<B> {
    /// Loads every component in checkpoint order: `builder(component, &configs)` gives its
    /// weights, and `loaded(component, &vb)` runs after it has loaded.
    pub fn load_with(
        configs: Configs,
        mut builder: impl FnMut(&str, &Configs) -> Result<VarBuilder<B>>,
        mut loaded: impl FnMut(&str, &VarBuilder<B>),
    ) -> Result<Self> {
        // `$load` on the component's weights `$vb`, between `builder` and `loaded`.
        macro_rules! component {
            ($name:literal, |$vb:ident| $load:expr) => {{
                let $vb = builder($name, &configs)?;
                let m = $load?;
                loaded($name, &$vb);
                m
            }};
        }
        let vae = component!("vae", |vb| AutoencoderKL::load(&vb, &configs.vae));
        let reference_unet = component!("reference_unet", |vb| {
            UNet2DConditionModel::load(&vb, &configs.reference_unet)
        });
        let denoising_unet = component!("denoising_unet", |vb| {
            UNetMotionModel::load(&vb, &configs.denoising_unet)
        });
        let audio_encoder = component!("audio_encoder", |vb| {
            Wav2Vec2Model::load(&vb, &configs.audio_encoder)
        });
        let modules = component!("cyberhost", |vb| {
            let time_proj = &configs.denoising_unet.trunk.time_proj;
            CyberHostModules::load(&vb, &configs.cyberhost, time_proj)
        });
        Ok(Components {
            configs,
            vae,
            reference_unet,
            denoising_unet,
            audio_encoder,
            modules,
        })
    }
}

fn config_file(component: &str) -> &'static str {
    if component == "scheduler" {
        "scheduler_config.json"
    } else {
        "config.json"
    }
}

fn weights_file(component: &str) -> &'static str {
    match component {
        "audio_encoder" | "cyberhost" => "model.safetensors",
        _ => "diffusion_pytorch_model.safetensors",
    }
}

impl WeightsSource {
    /// The raw config JSON of `component`.
    pub fn raw_config(&self, component: &str) -> Result<Value> {
        match self {
            WeightsSource::Preset { preset, .. } => Ok(preset.config(component)),
            WeightsSource::Dir(dir) => {
                let folder = dir.join(component);
                if !folder.is_dir() {
                    return Err(UserError::new(format!(
                        "weights directory {} has no `{component}/` folder; a CyberHost checkpoint holds {} (make one with `cyberhost make-weights --preset tiny --out DIR`)",
                        dir.display(),
                        COMPONENTS.map(|c| format!("{c}/")).join(", ")
                    ))
                    .into());
                }
                let path = folder.join(config_file(component));
                let text = cyberhost_weights::limits::read_text_capped(
                    &path,
                    cyberhost_weights::limits::MAX_JSON_BYTES,
                    "config",
                )
                .map_err(|e| UserError::new(format!("{e:#}")))?;
                serde_json::from_str(&text).map_err(|e| {
                    UserError::new(format!(
                        "{} is not valid JSON: {e}; fix the file or re-save the checkpoint",
                        path.display()
                    ))
                    .into()
                })
            }
        }
    }

    /// Parse every component's config (all errors are user errors naming the file and key).
    pub fn configs(&self) -> Result<Configs> {
        let mut raw = BTreeMap::new();
        for c in COMPONENTS {
            raw.insert(c.to_string(), self.raw_config(c)?);
        }
        let what = |c: &str| match self {
            WeightsSource::Preset { preset, .. } => format!("preset `{}` {c}", preset.name()),
            WeightsSource::Dir(d) => d.join(c).join(config_file(c)).display().to_string(),
        };
        let user = |e: anyhow::Error| anyhow::Error::new(UserError::new(format!("{e:#}")));
        let vae =
            AutoencoderKLConfig::from_config(&ConfigJson::from_value(&what("vae"), &raw["vae"])?)
                .map_err(user)?;
        let reference_unet = UNet2DConditionModelConfig::from_json(&raw["reference_unet"])
            .with_context(|| what("reference_unet"))
            .map_err(user)?;
        let denoising_unet = UNetMotionModelConfig::from_json(&raw["denoising_unet"])
            .with_context(|| what("denoising_unet"))
            .map_err(user)?;
        let audio_encoder = Wav2Vec2Config::from_config(&ConfigJson::from_value(
            &what("audio_encoder"),
            &raw["audio_encoder"],
        )?)
        .map_err(user)?;
        let cyberhost =
            CyberHostConfig::from_value(&what("cyberhost"), &raw["cyberhost"]).map_err(user)?;
        let scheduler = DdimConfig::from_json_str(&raw["scheduler"].to_string())
            .with_context(|| what("scheduler"))
            .map_err(user)?;
        Ok(Configs {
            vae,
            reference_unet,
            denoising_unet,
            audio_encoder,
            cyberhost,
            scheduler,
            raw,
        })
    }

    /// A `VarBuilder` over `component`'s tensors.
    fn var_builder<B: Backend>(
        &self,
        be: &B,
        component: &str,
        configs: &Configs,
    ) -> Result<VarBuilder<B>> {
        match self {
            WeightsSource::Dir(dir) => {
                let folder = dir.join(component);
                VarBuilder::open(be.clone(), &folder)
                    .map_err(|e| anyhow::Error::new(UserError::new(format!("{e:#}"))))
            }
            WeightsSource::Preset { seed, .. } => {
                let params = list_params(component, configs)?;
                let tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = params
                    .into_iter()
                    .map(|(name, shape)| {
                        let data = init_tensor(*seed, &name, &shape);
                        (name, (shape, data))
                    })
                    .collect();
                VarBuilder::from_tensors_with_config(
                    be.clone(),
                    tensors,
                    configs.raw[component].clone(),
                )
            }
        }
    }

    /// Load and validate every component; all problems of all components in one error.
    pub fn load<B: Backend>(&self, be: &B) -> Result<Components<B>> {
        let configs = self.configs()?;
        let mut problems: Vec<ValidationError> = Vec::new();
        let components = Components::load_with(
            configs,
            |component, configs| self.var_builder(be, component, configs),
            |_, vb| {
                if let Err(e) = vb.finish() {
                    problems.push(e);
                }
            },
        )?;
        if !problems.is_empty() {
            let text = problems
                .iter()
                .map(|p| format!("{p}"))
                .collect::<Vec<_>>()
                .join("\n");
            return Err(UserError::new(format!(
                "the checkpoint does not match its configs:\n{text}\n(fix the tensors or the config.json that contradicts them)"
            ))
            .into());
        }
        Ok(components)
    }
}

/// Every tensor (name, shape) that `component` requests under `configs`, in load order.
pub fn list_params(component: &str, configs: &Configs) -> Result<Vec<(String, Vec<usize>)>> {
    let be = ShapeBackend;
    let vb = VarBuilder::from_tensors(be, HashMap::new())?;
    match component {
        "vae" => drop(AutoencoderKL::load(&vb, &configs.vae)?),
        "reference_unet" => drop(UNet2DConditionModel::load(&vb, &configs.reference_unet)?),
        "denoising_unet" => drop(UNetMotionModel::load(&vb, &configs.denoising_unet)?),
        "audio_encoder" => drop(Wav2Vec2Model::load(&vb, &configs.audio_encoder)?),
        "cyberhost" => drop(CyberHostModules::load(
            &vb,
            &configs.cyberhost,
            &configs.denoising_unet.trunk.time_proj,
        )?),
        other => anyhow::bail!("component `{other}` has no tensors"),
    }
    Ok(match vb.finish() {
        Ok(()) => Vec::new(),
        Err(e) => e.missing,
    })
}

/// Write a synthetic checkpoint of `preset` into `out` (atomically: a temporary
/// sibling directory renamed at the end). Returns the parameter count.
pub fn make_weights(
    preset: Preset,
    seed: u64,
    out: &Path,
    dtype: DType,
    mut log: impl FnMut(&str),
) -> Result<usize> {
    if out.exists() {
        return Err(UserError::new(format!(
            "{} already exists; choose a new --out directory (make-weights never overwrites)",
            out.display()
        ))
        .into());
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(UserError::new(format!(
            "directory {} does not exist; create it first",
            parent.display()
        ))
        .into());
    }
    let source = WeightsSource::Preset { preset, seed };
    let configs = source.configs()?;
    let tmp = tempfile::Builder::new()
        .prefix(".cyberhost-weights-")
        .tempdir_in(&parent)?;
    let mut total = 0usize;
    for component in COMPONENTS {
        let dir = tmp.path().join(component);
        std::fs::create_dir_all(&dir)?;
        let config = serde_json::to_string_pretty(&configs.raw[component])?;
        std::fs::write(dir.join(config_file(component)), config + "\n")?;
        if component == "scheduler" {
            continue;
        }
        let params = list_params(component, &configs)?;
        let n: usize = params
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        log(&format!(
            "{component}: {} tensors, {n} parameters",
            params.len()
        ));
        total += n;
        let data: Vec<Vec<f32>> = params
            .par_iter()
            .map(|(name, shape)| init_tensor(seed, name, shape))
            .collect();
        let tensors: Vec<WriteTensor<'_>> = params
            .iter()
            .zip(&data)
            .map(|((name, shape), d)| WriteTensor::new(name, dtype, shape, d))
            .collect();
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), "pt".to_string());
        write_safetensors(dir.join(weights_file(component)), &tensors, &meta)?;
    }
    std::fs::write(
        tmp.path().join("model_index.json"),
        serde_json::to_string_pretty(&preset.config("model_index"))? + "\n",
    )?;
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, out)
        .with_context(|| format!("moving the checkpoint into {}", out.display()))?;
    Ok(total)
}

/// The model class a component folder's config names (`_class_name`, or
/// transformers' `architectures[0]`).
pub fn folder_class(config: &Value) -> Option<String> {
    config
        .get("_class_name")
        .and_then(Value::as_str)
        .or_else(|| {
            config
                .get("architectures")
                .and_then(|a| a.get(0))
                .and_then(Value::as_str)
        })
        .map(str::to_string)
}

/// Validate one component folder's tensors against its `config.json`, without
/// keeping any weights (shape-only backend). `Ok(None)` when the folder holds a
/// config of no tensor-bearing class (e.g. a scheduler).
pub fn validate_folder(
    folder: &Path,
) -> Result<Option<(String, std::result::Result<(), ValidationError>)>> {
    let ckpt = cyberhost_weights::Checkpoint::open(folder)
        .map_err(|e| anyhow::Error::new(UserError::new(format!("{e:#}"))))?;
    let config = ckpt.config().clone();
    let Some(class) = folder_class(&config) else {
        return Ok(None);
    };
    let what = folder.join("config.json").display().to_string();
    let vb = VarBuilder::from_checkpoint(ShapeBackend, ckpt).shapes_only();
    match class.as_str() {
        "AutoencoderKL" => drop(AutoencoderKL::load(
            &vb,
            &AutoencoderKLConfig::from_config(&ConfigJson::from_value(&what, &config)?)?,
        )?),
        "UNet2DConditionModel" => drop(UNet2DConditionModel::load(
            &vb,
            &UNet2DConditionModelConfig::from_json(&config)?,
        )?),
        "UNetMotionModel" => drop(UNetMotionModel::load(
            &vb,
            &UNetMotionModelConfig::from_json(&config)?,
        )?),
        "Wav2Vec2Model" | "Wav2Vec2ForPreTraining" | "Wav2Vec2ForCTC" => drop(Wav2Vec2Model::load(
            &vb,
            &Wav2Vec2Config::from_config(&ConfigJson::from_value(&what, &config)?)?,
        )?),
        "CyberHostModules" => {
            let cfg = CyberHostConfig::from_value(&what, &config)?;
            // The clarity embedding uses the denoising U-Net's time_proj: read the sibling config if present.
            let sibling = folder
                .parent()
                .map(|p| p.join("denoising_unet").join("config.json"));
            let time_proj = match sibling.filter(|p| p.is_file()) {
                Some(p) => UNetMotionModelConfig::from_file(&p)?.trunk.time_proj,
                None => crate::models::embeddings::Timesteps {
                    num_channels: cfg.clarity_embedding.in_channels,
                    flip_sin_to_cos: true,
                    downscale_freq_shift: 0.0,
                },
            };
            drop(CyberHostModules::load(&vb, &cfg, &time_proj)?)
        }
        _ => return Ok(None),
    }
    Ok(Some((class, vb.finish())))
}
