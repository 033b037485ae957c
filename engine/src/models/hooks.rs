//! Call sites a caller (the CyberHost pipeline) can use to change a U-Net run
//! without forking it: add a feature map after `conv_in`, add a vector to the
//! time embedding, edit each up block's output before its upsampler, record
//! every `BasicTransformerBlock`'s `norm1` output, and give `attn1` extra
//! key/value tokens (reference attention).
//!
//! Transformer blocks are named by their full checkpoint prefix, e.g.
//! `down_blocks.0.attentions.0.transformer_blocks.0`, `mid_block.attentions.0
//! .transformer_blocks.0`, `up_blocks.1.attentions.2.transformer_blocks.0`;
//! blocks inside motion modules are `down_blocks.0.motion_modules.0.transformer_blocks.0`.

use anyhow::Result;

use crate::backends::Backend;
use crate::models::attention::ExtraKv;

/// Every method has a no-op default; implement only what you need.
pub trait UNetHooks<B: Backend> {
    /// After `conv_in`: `h` is (N, C0, h, w) with N = batch·num_frames (num_frames = 1 for
    /// `UNet2DConditionModel`), frame-major within each batch item. Return the new `h`.
    fn after_conv_in(&mut self, _be: &B, h: B::Tensor, _num_frames: usize) -> Result<B::Tensor> {
        Ok(h)
    }

    /// A feature map to add to `conv_in`'s output, before [`after_conv_in`](Self::after_conv_in):
    /// (N, C0, h, w) rides in `conv_in`'s epilogue; a map that only broadcasts to it (e.g.
    /// (1, C0, h, w)) is added by a separate `add`.
    fn conv_in_residual(&mut self, _be: &B, _num_frames: usize) -> Result<Option<B::Tensor>> {
        Ok(None)
    }

    /// A vector to add to the time embedding, before
    /// [`after_time_embedding`](Self::after_time_embedding): (batch, time_embed_dim) rides in
    /// `linear_2`'s epilogue (when there is no `post_act`), and so does (1, time_embed_dim),
    /// broadcast over the batch.
    fn time_embedding_residual(&mut self, _be: &B) -> Result<Option<B::Tensor>> {
        Ok(None)
    }

    /// The finished time embedding (batch, time_embed_dim), computed before the run: when
    /// `Some`, the time projection, `time_embedding`, `time_embed_act` and the two hooks around
    /// them are skipped (the sampler embeds its whole schedule once and feeds one row per step).
    fn time_embedding(&mut self, _be: &B) -> Result<Option<B::Tensor>> {
        Ok(None)
    }

    /// After `time_embedding` (and before the motion model repeats it per frame):
    /// `emb` is (batch, time_embed_dim). Return the new `emb`.
    fn after_time_embedding(&mut self, _be: &B, emb: B::Tensor) -> Result<B::Tensor> {
        Ok(emb)
    }

    /// At the output of `up_blocks.{index}`, before its upsampler: `h` is (N, C, h, w).
    /// Return the new `h`.
    fn after_up_block(
        &mut self,
        _be: &B,
        _index: usize,
        h: B::Tensor,
        _num_frames: usize,
    ) -> Result<B::Tensor> {
        Ok(h)
    }

    /// The `norm1` output (N, L, C) of the transformer block `name` (before any positional embedding).
    /// Called only where [`records_norm1`](UNetHooks::records_norm1) says so.
    fn on_norm1(&mut self, _be: &B, _name: &str, _norm1: &B::Tensor) -> Result<()> {
        Ok(())
    }

    /// Whether [`on_norm1`](UNetHooks::on_norm1) wants the block `name`'s `norm1` output. A block
    /// with a positional embedding fuses `norm1(x) + pos_embed` into one op
    /// ([`Backend::layer_norm_add`](crate::backends::Backend::layer_norm_add)) where this is
    /// false, so `norm1` alone never exists. Default true (every block reports).
    fn records_norm1(&self, _name: &str) -> bool {
        true
    }

    /// `attn2`'s keys and values (N, S, inner) of the transformer block `name`, already
    /// projected from this run's `encoder_hidden_states` (constant over a clip's steps).
    fn attn2_kv(&self, _name: &str) -> Option<(&B::Tensor, &B::Tensor)> {
        None
    }

    /// Extra key/value tokens for `attn1` of the transformer block `name`, for some batch rows.
    fn attn1_extra_kv(&self, _name: &str) -> Option<ExtraKv<'_, B>> {
        None
    }
}

/// The default: changes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl<B: Backend> UNetHooks<B> for NoHooks {
    fn records_norm1(&self, _name: &str) -> bool {
        false
    }
}
