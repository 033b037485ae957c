//! `identity_encoder.{face,hand}`: a torchvision-named BasicBlock ResNet without `fc`
//! (ResNet-18 in the paper preset) → identity tokens (spec sections 5, 6).
//!
//! ```text
//! crop (N, 3, S, S) ─conv1 7×7/2─bn1─ReLU─maxpool 3/2 p1─► layer1 .. layer_k ─► (N, E, g, g)
//!   ─► tokens (N, g², E) (row-major over y, x)
//! BasicBlock: ReLU(bn2(conv2(ReLU(bn1(conv1(x))))) + [downsample.1(downsample.0(x)) | x])
//!   first block of stages ≥ 2 has stride 2; downsample when stride ≠ 1 or channels change
//! ```
//!
//! BatchNorm runs in eval mode (running statistics, eps 1e-5) and is folded into the
//! preceding bias-free conv at load time: w' = w·γ/√(var+ε), b' = β − mean·γ/√(var+ε)
//! (computed in f64, stored f32). `num_batches_tracked` entries (int64 in torchvision
//! checkpoints) are skipped without being read.
//!
//! **[choice]** The crop is fed as given, with no ImageNet normalisation: the caller passes
//! the same pixel range as the reference image ([−1, 1], spec section 6).

use anyhow::{bail, Result};

use super::config::{IdentityBlock, IdentityEncoderConfig};
use crate::backends::{Backend, Conv2dParams, ConvEpilogue, TensorLike, Unary};
use crate::models::nn::Conv2d;
use crate::var_builder::VarBuilder;

/// eps of the ResNet BatchNorms (torchvision default).
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// Fold eval-mode BatchNorm (γ, β, running mean, running var, eps) into a bias-free conv
/// weight `w` (O, ...) row-major: returns (w·γ/√(var+ε), β − mean·γ/√(var+ε)).
pub fn fold_batch_norm(
    w: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let o = gamma.len();
    let per = w.len() / o.max(1);
    let mut wf = vec![0f32; w.len()];
    let mut bf = vec![0f32; o];
    for c in 0..o {
        let scale = gamma[c] as f64 / (var[c] as f64 + eps).sqrt();
        for (d, &s) in wf[c * per..(c + 1) * per]
            .iter_mut()
            .zip(&w[c * per..(c + 1) * per])
        {
            *d = (s as f64 * scale) as f32;
        }
        bf[c] = (beta[c] as f64 - mean[c] as f64 * scale) as f32;
    }
    (wf, bf)
}

/// Load conv `conv` (bias-free, (out, in, k, k)) and BatchNorm `bn` under `vb`, folded.
fn load_conv_bn<B: Backend>(
    vb: &VarBuilder<B>,
    conv: &str,
    bn: &str,
    (in_ch, out_ch, k, stride, padding): (usize, usize, usize, usize, usize),
) -> Result<Conv2d<B>> {
    let shape = [out_ch, in_ch, k, k];
    let w = vb.pp(conv).get_f32("weight", &shape)?;
    let b = vb.pp(bn);
    let gamma = b.get_f32("weight", &[out_ch])?;
    let beta = b.get_f32("bias", &[out_ch])?;
    let mean = b.get_f32("running_mean", &[out_ch])?;
    let var = b.get_f32("running_var", &[out_ch])?;
    b.skip("num_batches_tracked");
    if let Some(v) = var.iter().find(|v| v.is_nan() || **v < 0.0) {
        bail!(
            "identity encoder: `{}` holds {v}; a BatchNorm running variance must be ≥ 0",
            b.full_name("running_var")
        );
    }
    let (wf, bf) = fold_batch_norm(&w, &gamma, &beta, &mean, &var, BATCH_NORM_EPS);
    let be = vb.backend();
    Ok(Conv2d {
        weight: be.from_f32(&shape, &wf)?,
        bias: Some(be.from_f32(&[out_ch], &bf)?),
        params: Conv2dParams::new(stride, padding),
    })
}

/// torchvision `BasicBlock` with its BatchNorms folded.
#[derive(Clone, Debug)]
pub struct BasicBlock<B: Backend> {
    /// conv1+bn1: (C_out, C_in, 3, 3), stride s
    pub conv1: Conv2d<B>,
    /// conv2+bn2: (C_out, C_out, 3, 3)
    pub conv2: Conv2d<B>,
    /// downsample.0+downsample.1: (C_out, C_in, 1, 1), stride s
    pub downsample: Option<Conv2d<B>>,
}

impl<B: Backend> BasicBlock<B> {
    /// `vb` at the block (`layer{i}.{j}`).
    pub fn load(vb: &VarBuilder<B>, b: &IdentityBlock) -> Result<Self> {
        let (in_ch, out_ch, stride) = (b.in_channels, b.out_channels, b.stride);
        let conv1 = load_conv_bn(vb, "conv1", "bn1", (in_ch, out_ch, 3, stride, 1))?;
        let conv2 = load_conv_bn(vb, "conv2", "bn2", (out_ch, out_ch, 3, 1, 1))?;
        let downsample = if b.has_downsample() {
            let d = vb.pp("downsample");
            Some(load_conv_bn(&d, "0", "1", (in_ch, out_ch, 1, stride, 0))?)
        } else {
            None
        };
        Ok(BasicBlock {
            conv1,
            conv2,
            downsample,
        })
    }

    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let h = be.unary(&self.conv1.forward(be, x)?, Unary::Relu)?;
        let skip = match &self.downsample {
            Some(d) => d.forward(be, x)?,
            None => x.clone(),
        };
        // the skip rides in conv2's epilogue
        let epi = ConvEpilogue {
            residual: Some(&skip),
            ..Default::default()
        };
        be.unary(&self.conv2.forward_ext(be, &h, epi)?, Unary::Relu)
    }
}

/// One identity encoder (`identity_encoder.face` or `identity_encoder.hand`).
#[derive(Clone, Debug)]
pub struct IdentityEncoder<B: Backend> {
    /// conv1+bn1: (stem, 3, 7, 7), stride 2, padding 3
    pub conv1: Conv2d<B>,
    /// layers[i][j] = `layer{i+1}.{j}`
    pub layers: Vec<Vec<BasicBlock<B>>>,
    pub cfg: IdentityEncoderConfig,
}

impl<B: Backend> IdentityEncoder<B> {
    /// `vb` at `identity_encoder.face` / `identity_encoder.hand`.
    pub fn load(vb: &VarBuilder<B>, cfg: &IdentityEncoderConfig) -> Result<Self> {
        if cfg.stage_channels.len() != cfg.blocks_per_stage.len() {
            bail!(
                "identity encoder `{}`: `identity_encoder.blocks_per_stage` has {} entries for {} stages",
                vb.prefix(),
                cfg.blocks_per_stage.len(),
                cfg.stage_channels.len()
            );
        }
        let conv1 = load_conv_bn(vb, "conv1", "bn1", (3, cfg.stem_channels, 7, 2, 3))?;
        let mut layers: Vec<Vec<BasicBlock<B>>> = cfg
            .blocks_per_stage
            .iter()
            .map(|&n| Vec::with_capacity(n))
            .collect();
        for b in cfg.blocks() {
            let block = BasicBlock::load(&vb.pp(b.prefix()), &b)?;
            layers[b.stage].push(block);
        }
        Ok(IdentityEncoder {
            conv1,
            layers,
            cfg: cfg.clone(),
        })
    }

    /// crops (N, 3, S, S) → final feature map (N, E, g, g).
    pub fn feature_map(&self, be: &B, crops: &B::Tensor) -> Result<B::Tensor> {
        let s = crops.shape();
        if s.len() != 4 || s[1] != 3 {
            bail!("identity encoder: crops have shape {s:?}, expected (N, 3, S, S)");
        }
        let h = be.unary(&self.conv1.forward(be, crops)?, Unary::Relu)?;
        let mut h = be.max_pool2d(&h, 3, 2, 1)?;
        for layer in &self.layers {
            for block in layer {
                h = block.forward(be, &h)?;
            }
        }
        Ok(h)
    }

    /// crops (N, 3, S, S) → tokens (N, g², E).
    pub fn forward(&self, be: &B, crops: &B::Tensor) -> Result<B::Tensor> {
        let f = self.feature_map(be, crops)?;
        let (n, e, gh, gw) = (f.shape()[0], f.shape()[1], f.shape()[2], f.shape()[3]);
        let t = be.reshape(&f, &[n, e, gh * gw])?;
        be.permute(&t, &[0, 2, 1])
    }

    /// One face crop (1, 3, S, S) → identity tokens (g², E).
    pub fn encode_face(&self, be: &B, crop: &B::Tensor) -> Result<B::Tensor> {
        self.encode_crops(be, crop, 1, "encode_face takes one crop")
    }

    /// The two hand crops (2, 3, S, S) → their tokens concatenated (2·g², E).
    pub fn encode_hands(&self, be: &B, crops: &B::Tensor) -> Result<B::Tensor> {
        self.encode_crops(be, crops, 2, "encode_hands takes the two hand crops")
    }

    /// Exactly `n` crops (n, 3, S, S) → their tokens concatenated (n·g², E); `what` leads
    /// the error for another count.
    fn encode_crops(&self, be: &B, crops: &B::Tensor, n: usize, what: &str) -> Result<B::Tensor> {
        let t = self.forward(be, crops)?;
        if t.shape()[0] != n {
            bail!(
                "identity encoder: {what} ({n}, 3, S, S), got {:?}",
                crops.shape()
            );
        }
        let (l, e) = (t.shape()[1], t.shape()[2]);
        be.reshape(&t, &[n * l, e])
    }
}
