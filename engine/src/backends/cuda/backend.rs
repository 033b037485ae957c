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
//! Arrows go one way: this file -> op files -> `context.rs` -> `tensor.rs`, `util.rs`,
//! `device.rs`, `arena.rs` (`tools/check_layout.sh` fails on a cycle).

use anyhow::{bail, Context, Result};
use cyberhost_kernels::DType;

use super::context::CudaBackend;
use super::tensor::CudaTensor;
use super::{
    cfg_ddim, conv2d, fused, graph, group_norm, layer_norm, layout, linalg, mean_dim, pointwise,
    pool, rca, softmax, timestep_embedding, upsample,
};
use crate::backends::{
    Backend, Binary, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike, Unary,
};

impl Backend for CudaBackend {
    type Tensor = CudaTensor;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn from_f32(&self, shape: &[usize], data: &[f32]) -> Result<CudaTensor> {
        self.from_f32_as(shape, data, self.storage())
    }

    fn to_f32(&self, t: &CudaTensor) -> Result<Vec<f32>> {
        if self.in_step() {
            bail!(
                "to_f32 of {t:?} inside a recorded or captured sampler step: a replayed step \
                 cannot read the device from the host (move the read after `run_steps`)"
            );
        }
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
        self.as_dtype(t, self.activations())
    }

    fn run_steps(
        &self,
        init: CudaTensor,
        lp: crate::backends::step_loop::StepLoop<'_, Self>,
    ) -> Result<CudaTensor> {
        graph::run_steps(self, init, lp)
    }

    fn zeros(&self, shape: &[usize]) -> Result<CudaTensor> {
        self.zeros_as(shape, self.storage())
    }

    fn reshape(&self, t: &CudaTensor, shape: &[usize]) -> Result<CudaTensor> {
        layout::reshape(t, shape)
    }

    fn permute(&self, t: &CudaTensor, dims: &[usize]) -> Result<CudaTensor> {
        layout::permute(self, t, dims)
    }

    fn concat(&self, ts: &[&CudaTensor], dim: usize) -> Result<CudaTensor> {
        layout::concat(self, ts, dim)
    }

    fn narrow(&self, t: &CudaTensor, dim: usize, start: usize, len: usize) -> Result<CudaTensor> {
        layout::narrow(self, t, dim, start, len)
    }

    fn index_select(&self, t: &CudaTensor, dim: usize, idx: &[usize]) -> Result<CudaTensor> {
        layout::index_select(self, t, dim, idx)
    }

    fn unary(&self, t: &CudaTensor, op: Unary) -> Result<CudaTensor> {
        pointwise::unary(self, t, op)
    }

    fn binary(&self, a: &CudaTensor, b: &CudaTensor, op: Binary) -> Result<CudaTensor> {
        pointwise::binary(self, a, b, op)
    }

    fn affine(&self, t: &CudaTensor, mul: f32, add: f32) -> Result<CudaTensor> {
        pointwise::affine(self, t, mul, add)
    }

    fn softmax_last(&self, t: &CudaTensor) -> Result<CudaTensor> {
        softmax::softmax_last(self, t, 1.0)
    }

    fn group_norm(
        &self,
        x: &CudaTensor,
        groups: usize,
        gamma: Option<&CudaTensor>,
        beta: Option<&CudaTensor>,
        eps: f32,
    ) -> Result<CudaTensor> {
        group_norm::group_norm(self, x, groups, gamma, beta, eps)
    }

    fn layer_norm(
        &self,
        x: &CudaTensor,
        gamma: Option<&CudaTensor>,
        beta: Option<&CudaTensor>,
        eps: f32,
    ) -> Result<CudaTensor> {
        layer_norm::layer_norm(self, x, gamma, beta, eps)
    }

    fn linear(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        linalg::linear(self, x, w, bias)
    }

    fn matmul(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        linalg::matmul(self, a, b)
    }

    fn conv2d(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        p: Conv2dParams,
    ) -> Result<CudaTensor> {
        conv2d::conv2d_op(self, x, w, bias, p)
    }

    fn attention(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        scale: f32,
    ) -> Result<CudaTensor> {
        linalg::attention(self, q, k, v, scale)
    }

    fn upsample_nearest2d(&self, x: &CudaTensor, out_h: usize, out_w: usize) -> Result<CudaTensor> {
        upsample::upsample_nearest2d(self, x, out_h, out_w)
    }

    fn pad2d(
        &self,
        x: &CudaTensor,
        left: usize,
        right: usize,
        top: usize,
        bottom: usize,
    ) -> Result<CudaTensor> {
        layout::pad2d(self, x, left, right, top, bottom)
    }

    fn mean_dim(&self, t: &CudaTensor, dim: usize) -> Result<CudaTensor> {
        mean_dim::mean_dim(self, t, dim)
    }

    fn max_pool2d(
        &self,
        x: &CudaTensor,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<CudaTensor> {
        pool::max_pool2d(self, x, kernel, stride, padding)
    }

    fn group_norm_act(
        &self,
        x: &CudaTensor,
        groups: usize,
        gamma: Option<&CudaTensor>,
        beta: Option<&CudaTensor>,
        eps: f32,
        act: Option<Unary>,
    ) -> Result<CudaTensor> {
        fused::group_norm_act(self, x, groups, gamma, beta, eps, act)
    }

    fn linear_ext(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        epi: LinearEpilogue<'_, CudaTensor>,
    ) -> Result<CudaTensor> {
        fused::linear_ext(self, x, w, bias, epi)
    }

    fn conv2d_ext(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
        p: Conv2dParams,
        epi: ConvEpilogue<'_, CudaTensor>,
    ) -> Result<CudaTensor> {
        fused::conv2d_ext(self, x, w, bias, p, epi)
    }

    fn rca_attention(
        &self,
        q: &CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        heads: usize,
        scale: f32,
    ) -> Result<CudaTensor> {
        rca::rca_attention(self, q, k, v, heads, scale)
    }

    fn rca_temporal_query(
        &self,
        x: &CudaTensor,
        a_s: &CudaTensor,
        bank: &CudaTensor,
    ) -> Result<CudaTensor> {
        rca::rca_temporal_query(self, x, a_s, bank)
    }

    fn rca_motion_sum(
        &self,
        a_s: &CudaTensor,
        a_t: &CudaTensor,
        f_id: Option<(&CudaTensor, usize)>,
    ) -> Result<CudaTensor> {
        rca::rca_motion_sum(self, a_s, a_t, f_id)
    }

    fn rca_merge(
        &self,
        f_in: &CudaTensor,
        tokens: &CudaTensor,
        mask_hidden: &CudaTensor,
        mask_w: &CudaTensor,
        mask_b: Option<&CudaTensor>,
    ) -> Result<CudaTensor> {
        rca::rca_merge(self, f_in, tokens, mask_hidden, mask_w, mask_b)
    }

    fn timestep_embedding(
        &self,
        t: &CudaTensor,
        dim: usize,
        flip_sin_to_cos: bool,
        downscale_freq_shift: f32,
    ) -> Result<CudaTensor> {
        timestep_embedding::timestep_embedding(self, t, dim, flip_sin_to_cos, downscale_freq_shift)
    }

    fn cfg_ddim_step(
        &self,
        out: &CudaTensor,
        z: &CudaTensor,
        frame_offset: usize,
        coeffs: &CudaTensor,
    ) -> Result<CudaTensor> {
        cfg_ddim::cfg_ddim_step(self, out, z, frame_offset, coeffs)
    }
}
