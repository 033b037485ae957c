//! The built-in presets (spec section 8): every component's `config.json`.
//!
//! `tiny` is the CPU default (built in memory by `generate` without
//! `--weights`); `paper` is SD1.5-sized for benchmarks. A checkpoint directory
//! written by `make-weights` holds exactly these configs, so the same loader
//! serves presets and real checkpoints.

use crate::error::UserError;
use anyhow::Result;
use serde_json::{json, Value};

/// Component folders of a checkpoint, in load order.
pub const COMPONENTS: [&str; 6] = [
    "vae",
    "reference_unet",
    "denoising_unet",
    "audio_encoder",
    "cyberhost",
    "scheduler",
];

/// Named preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Tiny,
    Paper,
}

impl Preset {
    pub fn parse(s: &str) -> Result<Preset> {
        match s {
            "tiny" => Ok(Preset::Tiny),
            "paper" => Ok(Preset::Paper),
            other => Err(UserError::new(format!(
                "unknown preset `{other}`: use `tiny` or `paper`"
            ))
            .into()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Paper => "paper",
        }
    }

    /// The config of one component folder (`scheduler` → `scheduler_config.json` content).
    pub fn config(self, component: &str) -> Value {
        let p = self.params();
        match component {
            "vae" => vae(&p),
            "reference_unet" => reference_unet(&p),
            "denoising_unet" => denoising_unet(&p),
            "audio_encoder" => audio_encoder(&p),
            "cyberhost" => cyberhost(&p),
            "scheduler" => scheduler(&p),
            "model_index" => model_index(),
            other => panic!("no component `{other}`"),
        }
    }

    fn params(self) -> Params {
        match self {
            Preset::Tiny => Params {
                width: 128,
                height: 128,
                fps: 12,
                frames: 8,
                motion: 2,
                steps: 4,
                vae_blocks: vec![32, 32, 64, 64],
                vae_layers: 1,
                vae_groups: 8,
                unet_blocks: vec![32, 64, 64],
                unet_layers: 1,
                unet_heads: 2,
                unet_groups: 8,
                ctx: 64,
                motion_layers: 1,
                motion_heads: 2,
                w2v_hidden: 64,
                w2v_layers: 2,
                w2v_heads: 4,
                w2v_conv: 32,
                w2v_inter: 128,
                w2v_pos: 16,
                w2v_pos_groups: 4,
                audio_inter: 64,
                audio_tokens: 4,
                pose: vec![8, 16, 16, 32],
                codebook: 8,
                id_stem: 8,
                id_stages: vec![8, 16],
                id_blocks: vec![1, 1],
                crop: 32,
            },
            Preset::Paper => Params {
                width: 512,
                height: 512,
                fps: 25,
                frames: 12,
                motion: 4,
                steps: 40,
                vae_blocks: vec![128, 256, 512, 512],
                vae_layers: 2,
                vae_groups: 32,
                unet_blocks: vec![320, 640, 1280, 1280],
                unet_layers: 2,
                unet_heads: 8,
                unet_groups: 32,
                ctx: 768,
                motion_layers: 1,
                motion_heads: 8,
                w2v_hidden: 768,
                w2v_layers: 12,
                w2v_heads: 12,
                w2v_conv: 512,
                w2v_inter: 3072,
                w2v_pos: 128,
                w2v_pos_groups: 16,
                audio_inter: 512,
                audio_tokens: 32,
                pose: vec![16, 32, 96, 256],
                codebook: 32,
                id_stem: 64,
                id_stages: vec![64, 128, 256, 512],
                id_blocks: vec![2, 2, 2, 2],
                crop: 128,
            },
        }
    }
}

struct Params {
    width: usize,
    height: usize,
    fps: usize,
    frames: usize,
    motion: usize,
    steps: usize,
    vae_blocks: Vec<usize>,
    vae_layers: usize,
    vae_groups: usize,
    unet_blocks: Vec<usize>,
    unet_layers: usize,
    unet_heads: usize,
    unet_groups: usize,
    ctx: usize,
    motion_layers: usize,
    motion_heads: usize,
    w2v_hidden: usize,
    w2v_layers: usize,
    w2v_heads: usize,
    w2v_conv: usize,
    w2v_inter: usize,
    w2v_pos: usize,
    w2v_pos_groups: usize,
    audio_inter: usize,
    audio_tokens: usize,
    pose: Vec<usize>,
    codebook: usize,
    id_stem: usize,
    id_stages: Vec<usize>,
    id_blocks: Vec<usize>,
    crop: usize,
}

/// SD layout: all levels but the last have attention.
fn unet_block_types(n: usize, motion: bool) -> (Vec<String>, Vec<String>) {
    let sfx = if motion { "Motion" } else { "2D" };
    let down = (0..n)
        .map(|i| {
            if i + 1 < n {
                format!("CrossAttnDownBlock{sfx}")
            } else {
                format!("DownBlock{sfx}")
            }
        })
        .collect();
    let up = (0..n)
        .map(|i| {
            if i == 0 {
                format!("UpBlock{sfx}")
            } else {
                format!("CrossAttnUpBlock{sfx}")
            }
        })
        .collect();
    (down, up)
}

fn vae(p: &Params) -> Value {
    let n = p.vae_blocks.len();
    json!({
        "_class_name": "AutoencoderKL",
        "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "down_block_types": vec!["DownEncoderBlock2D"; n],
        "up_block_types": vec!["UpDecoderBlock2D"; n],
        "block_out_channels": p.vae_blocks,
        "layers_per_block": p.vae_layers,
        "norm_num_groups": p.vae_groups,
        "act_fn": "silu",
        "sample_size": p.width,
        "scaling_factor": 0.18215,
        "force_upcast": true,
        "use_quant_conv": true,
        "use_post_quant_conv": true,
        "mid_block_add_attention": true
    })
}

fn unet_common(p: &Params) -> Value {
    json!({
        "in_channels": 4, "out_channels": 4,
        "sample_size": p.width / 8,
        "block_out_channels": p.unet_blocks,
        "layers_per_block": p.unet_layers,
        "norm_num_groups": p.unet_groups,
        "norm_eps": 1e-5,
        "cross_attention_dim": p.ctx,
        "act_fn": "silu",
        "downsample_padding": 1,
        "use_linear_projection": false,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "transformer_layers_per_block": 1
    })
}

/// A U-Net config: the shared keys, `_class_name`, the block types (motion or 2-D) and
/// the keys of `extra`.
fn unet(p: &Params, class_name: &str, motion: bool, extra: Value) -> Value {
    let (down, up) = unet_block_types(p.unet_blocks.len(), motion);
    let mut v = unet_common(p);
    let o = v.as_object_mut().unwrap();
    o.insert("_class_name".into(), json!(class_name));
    o.insert("down_block_types".into(), json!(down));
    o.insert("up_block_types".into(), json!(up));
    if let Value::Object(extra) = extra {
        o.extend(extra);
    }
    v
}

fn reference_unet(p: &Params) -> Value {
    let extra = json!({
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        // diffusers' naming quirk: `attention_head_dim` is the number of heads here.
        "attention_head_dim": p.unet_heads,
    });
    unet(p, "UNet2DConditionModel", false, extra)
}

fn denoising_unet(p: &Params) -> Value {
    let extra = json!({
        "num_attention_heads": p.unet_heads,
        "motion_num_attention_heads": p.motion_heads,
        "motion_max_seq_length": 32,
        "temporal_transformer_layers_per_block": p.motion_layers,
        "use_motion_mid_block": true,
        "mid_block_layers": 1,
    });
    unet(p, "UNetMotionModel", true, extra)
}

fn audio_encoder(p: &Params) -> Value {
    json!({
        "architectures": ["Wav2Vec2Model"],
        "model_type": "wav2vec2",
        "hidden_size": p.w2v_hidden,
        "num_hidden_layers": p.w2v_layers,
        "num_attention_heads": p.w2v_heads,
        "intermediate_size": p.w2v_inter,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "conv_dim": vec![p.w2v_conv; 7],
        "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2],
        "conv_bias": false,
        "num_feat_extract_layers": 7,
        "feat_extract_norm": "group",
        "feat_extract_activation": "gelu",
        "do_stable_layer_norm": false,
        "num_conv_pos_embeddings": p.w2v_pos,
        "num_conv_pos_embedding_groups": p.w2v_pos_groups
    })
}

fn cyberhost(p: &Params) -> Value {
    let c0 = p.unet_blocks[0];
    let n = p.unet_blocks.len();
    // Up blocks with attention are 1..n; their output channels (reversed blocks).
    let sites: Vec<usize> = (1..n).collect();
    let site_channels: Vec<usize> = sites.iter().map(|&i| p.unet_blocks[n - 1 - i]).collect();
    json!({
        "_class_name": "CyberHostModules",
        "audio_proj": {
            "window": 2, "num_hidden_states": p.w2v_layers + 1, "audio_dim": p.w2v_hidden,
            "intermediate_dim": p.audio_inter, "num_tokens": p.audio_tokens, "context_dim": p.ctx
        },
        "pose_encoder": {"channels": p.pose, "out_channels": c0},
        "clarity_embedding": {"in_channels": c0, "time_embed_dim": 4 * c0},
        "identity_encoder": {
            "stem_channels": p.id_stem, "stage_channels": p.id_stages,
            "blocks_per_stage": p.id_blocks, "crop_size": p.crop
        },
        "rca": {
            "sites": sites, "site_channels": site_channels, "codebook_size": p.codebook,
            "num_frames": p.motion + p.frames, "norm_num_groups": p.unet_groups,
            "identity_dim": p.id_stages.last().copied().unwrap_or(p.id_stem)
        },
        "pipeline": {
            "width": p.width, "height": p.height, "fps": p.fps,
            "frames_per_clip": p.frames, "motion_frames": p.motion,
            "num_inference_steps": p.steps, "guidance_scale": 3.5,
            "audio_window": 2, "hand_clarity": 1.0
        }
    })
}

fn scheduler(p: &Params) -> Value {
    json!({
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": false,
        "set_alpha_to_one": false,
        "steps_offset": 1,
        "prediction_type": "epsilon",
        "timestep_spacing": if p.steps < 10 { "trailing" } else { "leading" },
        "rescale_betas_zero_snr": false,
        "thresholding": false
    })
}

fn model_index() -> Value {
    json!({
        "_class_name": "CyberHostPipeline",
        "vae": ["diffusers", "AutoencoderKL"],
        "reference_unet": ["diffusers", "UNet2DConditionModel"],
        "denoising_unet": ["diffusers", "UNetMotionModel"],
        "audio_encoder": ["transformers", "Wav2Vec2Model"],
        "cyberhost": ["cyberhost", "CyberHostModules"],
        "scheduler": ["diffusers", "DDIMScheduler"]
    })
}
