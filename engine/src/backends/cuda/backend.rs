//! `impl Backend for CudaBackend`: every op of the trait dispatched to its launcher file, one per
//! `kernels/cuda/*.cu` module (`softmax.rs` launches `softmax.cu`, ...), plus `linalg.rs`
//! (linear / matmul / attention over `gemm`, `gemm_bf16`, `attention`, `softmax`), `fused.rs`
//! (the fused primitives) and `graph.rs` (`run_steps`). Tensors are bf16 (or f32) in storage with
//! f32 math inside every kernel.
//!
//! `from_f32` / `to_f32` convert on the host (f32 -> bf16 rounds to nearest even). New tensors
//! take the backend's storage dtype ([`CudaBackend::storage`], bf16 by default);
//! [`CudaBackend::from_f32_as`] and [`CudaBackend::to_dtype`] make f32 tensors where precision
//! matters (e.g. the latents the sampler reads). Every op returns the dtype of its input; ops with
//! several tensor inputs promote to f32 when the dtypes differ (per-channel vectors such as
//! gamma / beta / bias follow `x` instead).
//!
//! Channels-last tensors (`memory_format.rs`): the convs and GroupNorm there read and write them; every other
//! op's tensor arguments are made contiguous here first (`contiguous_ops!` below, `Contig`), so
//! no launcher reads channels-last bytes as NCHW.
//!
//! Arrows go one way: this file -> op files -> `context.rs` -> `tensor.rs`, `util.rs`,
//! `device.rs`, `arena.rs` (`tools/check_layout.sh` fails on a cycle).

use anyhow::{bail, Context, Result};
use cyberhost_kernels::DType;

use super::context::CudaBackend;
use super::memory_format::{self, contiguous, Contig, Held};
use super::tensor::CudaTensor;
use super::{
    attention as flash, cfg_ddim, fused, gemm_fp8_sm90, graph, layer_norm, layout, linalg,
    mean_dim, pointwise, pool, rca, softmax, timestep_embedding,
};
use crate::backends::{
    Backend, Binary, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike, Unary,
};

/// `forward_ops!` rows whose arguments pass through [`Contig`] first: every tensor contiguous
/// (one copy for a channels-last one) before the op's launcher reads it.
macro_rules! contiguous_ops {
    ($($name:ident($($arg:ident: $ty:ty),*) => $f:path $(, $e:expr)*;)*) => {
        $(
            fn $name(&self, $($arg: $ty),*) -> Result<CudaTensor> {
                $(let $arg = Contig::hold($arg, self)?;)*
                $f(self, $(Held::view(&$arg),)* $($e),*)
            }
        )*
    };
}

impl Backend for CudaBackend {
    type Tensor = CudaTensor;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn from_f32(&self, shape: &[usize], data: &[f32]) -> Result<CudaTensor> {
        self.from_f32_as(shape, data, self.storage())
    }

    fn packs_qkv(&self, heads: usize, head_dim: usize) -> bool {
        flash::packs_qkv(self, heads, head_dim)
    }

    fn prepare_linear_weight(&self, w: &CudaTensor) -> Result<()> {
        if self.weights_fp8() {
            gemm_fp8_sm90::quantize_weight(self, w)?;
        }
        Ok(())
    }

    fn prepare_conv_weight(&self, w: &CudaTensor, p: Conv2dParams) -> Result<()> {
        if self.channels_last() && p.groups == 1 && w.rank() == 4 {
            let packed = self.conv2d_nhwc_weight(w)?;
            self.insert_packed_conv_weight(w, packed.into_tensor());
        }
        Ok(())
    }

    fn to_f32(&self, t: &CudaTensor) -> Result<Vec<f32>> {
        if self.in_step() {
            bail!(
                "to_f32 of {t:?} inside a recorded or captured sampler step: a replayed step \
                 cannot read the device from the host (move the read after `run_steps`)"
            );
        }
        let t = &contiguous(self, t)?;
        let bytes = self
            .stream()
            .clone_dtoh(t.buf())
            .with_context(|| format!("downloading {t:?} from {}", self.device().name()))?;
        self.device().synchronize()?;
        let n = t.elem_count();
        Ok(match t.dtype {
            DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes[..n * 4]),
            DType::Bf16 => bytemuck::pod_collect_to_vec::<u8, u16>(&bytes[..n * 2])
                .into_iter()
                .map(|b| half::bf16::from_bits(b).to_f32())
                .collect(),
        })
    }

    fn from_f32_full(&self, shape: &[usize], data: &[f32]) -> Result<CudaTensor> {
        self.from_f32_as(shape, data, DType::F32)
    }

    fn to_activation(&self, t: &CudaTensor) -> Result<CudaTensor> {
        // the cast keeps a channels-last tensor channels-last
        self.as_dtype(t, self.activations())
    }

    fn run_steps(
        &self,
        init: CudaTensor,
        lp: crate::backends::step_loop::StepLoop<'_, Self>,
    ) -> Result<CudaTensor> {
        graph::run_steps(self, contiguous(self, &init)?, lp)
    }

    fn zeros(&self, shape: &[usize]) -> Result<CudaTensor> {
        self.zeros_as(shape, self.storage())
    }

    fn reshape(&self, t: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        layout::reshape(&contiguous(self, t)?, shape)
    }

    fn softmax_last(&self, t: &CudaTensor) -> Result<CudaTensor> {
        softmax::softmax_last(self, &contiguous(self, t)?, 1.0)
    }

    fn concat(&self, ts: &[&CudaTensor], dim: usize) -> Result<CudaTensor> {
        let held = ts
            .iter()
            .map(|t| contiguous(self, t))
            .collect::<Result<Vec<_>>>()?;
        layout::concat(self, &held.iter().collect::<Vec<_>>(), dim)
    }

    // The convolutions, GroupNorm, the token-layout entries / exits, the nearest upsample and the
    // RCA merge take channels-last operands (`memory_format.rs`).
    forward_ops! {
        CudaTensor;
        group_norm(x: &CudaTensor, groups: usize, gamma: Option<&CudaTensor>,
            beta: Option<&CudaTensor>, eps: f32) => memory_format::group_norm_act, None;
        group_norm_act(x: &CudaTensor, groups: usize, gamma: Option<&CudaTensor>,
            beta: Option<&CudaTensor>, eps: f32, act: Option<Unary>)
            => memory_format::group_norm_act;
        group_norm_tokens(x: &CudaTensor, frames: usize, groups: usize,
            gamma: Option<&CudaTensor>, beta: Option<&CudaTensor>, eps: f32)
            => memory_format::group_norm_tokens;
        tokens_planes_add(tokens: &CudaTensor, residual: &CudaTensor, frames: usize)
            => memory_format::tokens_planes_add;
        tokens_planes_add_concat(tokens: &CudaTensor, residual: &CudaTensor, frames: usize,
            tail: &CudaTensor) => memory_format::tokens_planes_add_concat;
        group_norm_conv1x1_tokens(x: &CudaTensor, groups: usize, gamma: Option<&CudaTensor>,
            beta: Option<&CudaTensor>, eps: f32, w: &CudaTensor, bias: Option<&CudaTensor>)
            => memory_format::group_norm_conv1x1_tokens;
        tokens_conv1x1_planes_add(tokens: &CudaTensor, w: &CudaTensor,
            bias: Option<&CudaTensor>, residual: &CudaTensor)
            => memory_format::tokens_conv1x1_planes_add;
        linear_tokens_planes_add(tokens: &CudaTensor, w: &CudaTensor, bias: Option<&CudaTensor>,
            residual: &CudaTensor, frames: usize, tail: Option<&CudaTensor>)
            => memory_format::linear_tokens_planes_add;
        upsample_nearest2d(x: &CudaTensor, out_h: usize, out_w: usize)
            => memory_format::upsample_nearest2d;
        rca_merge(f_in: &CudaTensor, tokens: &CudaTensor, mask_hidden: &CudaTensor,
            mask_w: &CudaTensor, mask_b: Option<&CudaTensor>) => memory_format::rca_merge;
        conv2d(x: &CudaTensor, w: &CudaTensor, bias: Option<&CudaTensor>, p: Conv2dParams)
            => memory_format::conv2d;
        conv2d_ext(x: &CudaTensor, w: &CudaTensor, bias: Option<&CudaTensor>, p: Conv2dParams,
            epi: ConvEpilogue<'_, CudaTensor>) => memory_format::conv2d_ext;
        conv2d_concat(x: &CudaTensor, w: &CudaTensor, bias: Option<&CudaTensor>, p: Conv2dParams,
            epi: ConvEpilogue<'_, CudaTensor>, tail: &CudaTensor) => memory_format::conv2d_concat;
    }

    contiguous_ops! {
        permute(t: &CudaTensor, dims: &[usize]) => layout::permute;
        narrow(t: &CudaTensor, dim: usize, start: usize, len: usize) => layout::narrow;
        index_select(t: &CudaTensor, dim: usize, idx: &[usize]) => layout::index_select;
        unary(t: &CudaTensor, op: Unary) => pointwise::unary;
        binary(a: &CudaTensor, b: &CudaTensor, op: Binary) => pointwise::binary;
        affine(t: &CudaTensor, mul: f32, add: f32) => pointwise::affine;
        layer_norm(x: &CudaTensor, gamma: Option<&CudaTensor>, beta: Option<&CudaTensor>,
            eps: f32) => layer_norm::layer_norm;
        layer_norm_add(x: &CudaTensor, gamma: Option<&CudaTensor>, beta: Option<&CudaTensor>,
            eps: f32, table: &CudaTensor) => layer_norm::layer_norm_add;
        linear(x: &CudaTensor, w: &CudaTensor, bias: Option<&CudaTensor>) => linalg::linear;
        matmul(a: &CudaTensor, b: &CudaTensor) => linalg::matmul;
        attention(q: &CudaTensor, k: &CudaTensor, v: &CudaTensor, scale: f32)
            => linalg::attention;
        pad2d(x: &CudaTensor, left: usize, right: usize, top: usize, bottom: usize)
            => layout::pad2d;
        mean_dim(t: &CudaTensor, dim: usize) => mean_dim::mean_dim;
        max_pool2d(x: &CudaTensor, kernel: usize, stride: usize, padding: usize)
            => pool::max_pool2d;
        linear_ext(x: &CudaTensor, w: &CudaTensor, bias: Option<&CudaTensor>,
            epi: LinearEpilogue<'_, CudaTensor>) => fused::linear_ext;
        attention_heads(q: &CudaTensor, k: &CudaTensor, v: &CudaTensor,
            extra: Option<(&CudaTensor, &CudaTensor, std::ops::Range<usize>)>, heads: usize,
            scale: f32) => flash::attention_heads;
        attention_heads_packed(qkv: &CudaTensor,
            extra: Option<(&CudaTensor, &CudaTensor, std::ops::Range<usize>)>, heads: usize,
            scale: f32) => flash::attention_heads_packed;
        rca_attention(q: &CudaTensor, k: &CudaTensor, v: &CudaTensor, heads: usize, scale: f32)
            => rca::rca_attention;
        rca_temporal_query(x: &CudaTensor, a_s: &CudaTensor, bank: &CudaTensor)
            => rca::rca_temporal_query;
        rca_motion_sum(a_s: &CudaTensor, a_t: &CudaTensor, f_id: Option<(&CudaTensor, usize)>)
            => rca::rca_motion_sum;
        timestep_embedding(t: &CudaTensor, dim: usize, flip_sin_to_cos: bool,
            downscale_freq_shift: f32) => timestep_embedding::timestep_embedding;
        cfg_ddim_step(out: &CudaTensor, z: &CudaTensor, frame_offset: usize, coeffs: &CudaTensor)
            => cfg_ddim::cfg_ddim_step;
    }
}
