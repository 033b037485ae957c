//! Models, written once and generic over `B: Backend`.
//!
//! Building blocks (diffusers names, one concept per file): `nn` (Linear, Conv2d,
//! GroupNorm, LayerNorm, activations), `resnet` (ResnetBlock2D), `attention`
//! (Attention), `sampling` (Downsample2D, Upsample2D), `embeddings` (timestep and
//! sinusoidal positional embeddings), `transformer` (BasicTransformerBlock,
//! FeedForward, Transformer2DModel), `motion_module` (AnimateDiffTransformer3D),
//! `unet_blocks` (down/mid/up blocks), `unet_trunk` (the shared U-Net body),
//! `unet2d` (UNet2DConditionModel), `unet_motion` (UNetMotionModel), `hooks`
//! (UNetHooks call sites), `config_json` (typed config.json reads).

pub mod attention;
pub mod config_json;
pub mod cyberhost;
pub mod embeddings;
pub mod hooks;
pub mod motion_module;
pub mod nn;
pub mod resnet;
pub mod sampling;
pub mod transformer;
pub mod unet2d;
pub mod unet_blocks;
pub mod unet_motion;
pub mod unet_trunk;
pub mod vae;
pub mod wav2vec2;
