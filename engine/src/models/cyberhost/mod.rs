//! CyberHost's own modules (the `cyberhost/` checkpoint folder; spec sections 2–6, 8):
//! `config` (CyberHostConfig = `config.json`), `audio_proj` (wav2vec2 windows → audio
//! tokens), `pose_encoder` (skeleton / movement maps → latent features), `clarity`
//! (hand clarity → time-embedding offset), `identity` (ResNet identity encoders → tokens),
//! `rca` (Region Codebook Attention). [`CyberHostModules::load`] loads them all from
//! `cyberhost/model.safetensors`; [`tensor_specs`] lists every tensor it reads.

pub mod audio_proj;
pub mod clarity;
pub mod config;
pub mod identity;
pub mod pose_encoder;
pub mod rca;

use anyhow::{bail, Result};

pub use audio_proj::{audio_windows, interpolate_frames, AudioProj};
pub use clarity::ClarityEmbedding;
pub use config::{
    AudioProjConfig, ClarityEmbeddingConfig, CyberHostConfig, IdentityEncoderConfig,
    PipelineConfig, PoseEncoderConfig, RcaConfig,
};
pub use identity::{fold_batch_norm, IdentityEncoder};
pub use pose_encoder::PoseEncoder;
pub use rca::{
    orthonormalize_rows, IdentityTokens, RcaSite, RcaSiteConfig, RegionCodebookAttention,
};

use crate::backends::Backend;
use crate::models::embeddings::Timesteps;
use crate::var_builder::VarBuilder;

/// Every CyberHost module, loaded from `cyberhost/model.safetensors`.
#[derive(Clone, Debug)]
pub struct CyberHostModules<B: Backend> {
    pub audio_proj: AudioProj<B>,
    /// shared by the skeleton map (ReferenceNet) and the movement map (denoising U-Net)
    pub pose_encoder: PoseEncoder<B>,
    pub clarity_embedding: ClarityEmbedding<B>,
    /// `identity_encoder.face`
    pub face_encoder: IdentityEncoder<B>,
    /// `identity_encoder.hand`
    pub hand_encoder: IdentityEncoder<B>,
    /// one per `rca.sites` entry, in config order
    pub rca: Vec<RcaSite<B>>,
    pub cfg: CyberHostConfig,
}

impl<B: Backend> CyberHostModules<B> {
    /// Load from `vb` at the root of `cyberhost/model.safetensors`. `unet_time_proj` is the
    /// denoising U-Net's `time_proj` (the clarity sinusoid). Call `vb.finish()` afterwards
    /// to report every missing / mis-shaped / unexpected tensor at once.
    pub fn load(
        vb: &VarBuilder<B>,
        cfg: &CyberHostConfig,
        unet_time_proj: &Timesteps,
    ) -> Result<Self> {
        cfg.validate("cyberhost/config.json")?;
        let idv = vb.pp("identity_encoder");
        let rv = vb.pp("rca");
        let rca = cfg
            .rca
            .sites
            .iter()
            .enumerate()
            .map(|(i, &site)| RcaSite::load(&rv, site, &RcaSiteConfig::from_rca(&cfg.rca, i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(CyberHostModules {
            audio_proj: AudioProj::load(&vb.pp("audio_proj"), &cfg.audio_proj)?,
            pose_encoder: PoseEncoder::load(&vb.pp("pose_encoder"), &cfg.pose_encoder)?,
            clarity_embedding: ClarityEmbedding::load(
                &vb.pp("clarity_embedding"),
                &cfg.clarity_embedding,
                unet_time_proj,
            )?,
            face_encoder: IdentityEncoder::load(&idv.pp("face"), &cfg.identity_encoder)?,
            hand_encoder: IdentityEncoder::load(&idv.pp("hand"), &cfg.identity_encoder)?,
            rca,
            cfg: cfg.clone(),
        })
    }

    /// The RCA of up block `site`, if it has one.
    pub fn rca_site(&self, site: usize) -> Option<&RcaSite<B>> {
        self.rca.iter().find(|s| s.site == site)
    }

    /// Identity tokens of one video: face crop (1, 3, S, S), hand crops (2, 3, S, S).
    pub fn identity_tokens(
        &self,
        be: &B,
        face_crop: &B::Tensor,
        hand_crops: &B::Tensor,
    ) -> Result<IdentityTokens<B>> {
        Ok(IdentityTokens {
            face: self.face_encoder.encode_face(be, face_crop)?,
            hand: self.hand_encoder.encode_hands(be, hand_crops)?,
        })
    }

    /// Every RCA freshly initialised (`to_out` = 0): the U-Net output is then unchanged.
    pub fn with_fresh_rca(mut self, be: &B) -> Result<Self> {
        self.rca = self
            .rca
            .into_iter()
            .map(|s| s.with_fresh_to_out(be))
            .collect::<Result<_>>()?;
        Ok(self)
    }
}

/// How a synthetic checkpoint should draw a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorInit {
    /// any well-scaled random values
    Random,
    /// zero in a freshly initialised module (spec sections 4, 5); synthetic checkpoints
    /// still draw it non-zero
    ZeroInit,
    /// BatchNorm `running_var`: must be positive
    Positive,
    /// a bank orthonormalised at load time: random rows (linearly independent)
    Codebook,
}

/// One tensor of `cyberhost/model.safetensors`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: TensorInit,
}

/// Every tensor [`CyberHostModules::load`] reads, in a fixed order (for synthetic
/// checkpoints and `inspect`). BatchNorm `num_batches_tracked` is not listed (skipped when
/// present).
pub fn tensor_specs(cfg: &CyberHostConfig) -> Result<Vec<TensorSpec>> {
    cfg.validate("cyberhost/config.json")?;
    let mut out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, init: TensorInit| {
        out.push(TensorSpec { name, shape, init })
    };
    let lin = |add: &mut dyn FnMut(String, Vec<usize>, TensorInit),
               p: &str,
               i: usize,
               o: usize,
               bias: bool,
               init| {
        add(format!("{p}.weight"), vec![o, i], init);
        if bias {
            add(format!("{p}.bias"), vec![o], init);
        }
    };
    let conv = |add: &mut dyn FnMut(String, Vec<usize>, TensorInit),
                p: &str,
                i: usize,
                o: usize,
                k: usize,
                bias: bool,
                init| {
        add(format!("{p}.weight"), vec![o, i, k, k], init);
        if bias {
            add(format!("{p}.bias"), vec![o], init);
        }
    };
    use TensorInit::*;

    let a = &cfg.audio_proj;
    lin(
        &mut add,
        "audio_proj.proj1",
        a.input_dim(),
        a.intermediate_dim,
        true,
        Random,
    );
    lin(
        &mut add,
        "audio_proj.proj2",
        a.intermediate_dim,
        a.intermediate_dim,
        true,
        Random,
    );
    lin(
        &mut add,
        "audio_proj.proj3",
        a.intermediate_dim,
        a.num_tokens * a.context_dim,
        true,
        Random,
    );
    add("audio_proj.norm.weight".into(), vec![a.context_dim], Random);
    add("audio_proj.norm.bias".into(), vec![a.context_dim], Random);

    let p = &cfg.pose_encoder.channels;
    conv(&mut add, "pose_encoder.conv_in", 3, p[0], 3, true, Random);
    for i in 0..p.len() - 1 {
        conv(
            &mut add,
            &format!("pose_encoder.blocks.{}", 2 * i),
            p[i],
            p[i],
            3,
            true,
            Random,
        );
        conv(
            &mut add,
            &format!("pose_encoder.blocks.{}", 2 * i + 1),
            p[i],
            p[i + 1],
            3,
            true,
            Random,
        );
    }
    conv(
        &mut add,
        "pose_encoder.conv_out",
        p[p.len() - 1],
        cfg.pose_encoder.out_channels,
        3,
        true,
        ZeroInit,
    );

    let c = &cfg.clarity_embedding;
    lin(
        &mut add,
        "clarity_embedding.linear_1",
        c.in_channels,
        c.time_embed_dim,
        true,
        Random,
    );
    lin(
        &mut add,
        "clarity_embedding.linear_2",
        c.time_embed_dim,
        c.time_embed_dim,
        true,
        ZeroInit,
    );

    let id = &cfg.identity_encoder;
    for region in ["face", "hand"] {
        let root = format!("identity_encoder.{region}");
        let conv_bn = |add: &mut dyn FnMut(String, Vec<usize>, TensorInit),
                       cp: String,
                       bp: String,
                       i: usize,
                       o: usize,
                       k: usize| {
            conv(add, &cp, i, o, k, false, Random);
            add(format!("{bp}.weight"), vec![o], Random);
            add(format!("{bp}.bias"), vec![o], Random);
            add(format!("{bp}.running_mean"), vec![o], Random);
            add(format!("{bp}.running_var"), vec![o], Positive);
        };
        conv_bn(
            &mut add,
            format!("{root}.conv1"),
            format!("{root}.bn1"),
            3,
            id.stem_channels,
            7,
        );
        for blk in id.blocks() {
            let b = format!("{root}.{}", blk.prefix());
            let (i, o) = (blk.in_channels, blk.out_channels);
            conv_bn(&mut add, format!("{b}.conv1"), format!("{b}.bn1"), i, o, 3);
            conv_bn(&mut add, format!("{b}.conv2"), format!("{b}.bn2"), o, o, 3);
            if blk.has_downsample() {
                let d = format!("{b}.downsample");
                conv_bn(&mut add, format!("{d}.0"), format!("{d}.1"), i, o, 1);
            }
        }
    }

    let r = &cfg.rca;
    for region in rca::RCA_REGIONS {
        for (&site, &ch) in r.sites.iter().zip(&r.site_channels) {
            let root = format!("rca.{region}.{site}");
            add(
                format!("{root}.spatial_bank"),
                vec![r.codebook_size, ch],
                Codebook,
            );
            add(
                format!("{root}.temporal_bank"),
                vec![r.num_frames, ch],
                Codebook,
            );
            add(format!("{root}.norm.weight"), vec![ch], Random);
            add(format!("{root}.norm.bias"), vec![ch], Random);
            for m in ["spatial", "temporal", "identity"] {
                for proj in ["to_q", "to_k", "to_v"] {
                    lin(
                        &mut add,
                        &format!("{root}.{m}.{proj}"),
                        ch,
                        ch,
                        false,
                        Random,
                    );
                }
            }
            lin(
                &mut add,
                &format!("{root}.id_proj"),
                r.identity_dim,
                ch,
                true,
                Random,
            );
            conv(
                &mut add,
                &format!("{root}.mask.conv1"),
                ch,
                ch / 4,
                3,
                true,
                Random,
            );
            conv(
                &mut add,
                &format!("{root}.mask.conv2"),
                ch / 4,
                1,
                1,
                true,
                Random,
            );
            lin(&mut add, &format!("{root}.to_out"), ch, ch, true, ZeroInit);
        }
    }
    if out.is_empty() {
        bail!("cyberhost: no tensors (empty config?)");
    }
    Ok(out)
}
