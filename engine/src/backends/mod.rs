//! The whole op surface of the engine, as one trait.
//!
//! Models (`crate::models`) are written once, generic over `B: Backend`. The CPU
//! reference backend (`cpu`) is the f32 oracle; the CUDA backend implements the
//! same list with fused kernels. Every tensor is contiguous and row-major;
//! layout ops (`permute`, `concat`, `narrow`) materialise a new tensor.
//!
//! Conventions (shared by every backend):
//! - images are NCHW; sequences are (batch, tokens, channels);
//! - weights follow PyTorch: linear `(out, in)`, conv `(out, in/groups, kh, kw)`;
//! - binary elementwise ops broadcast with NumPy rules.

#[macro_use]
mod macros;

pub mod composed;
pub mod composed_attention;
pub mod composed_rca;
pub mod cpu;
pub mod cuda;
pub mod shape;
pub mod step_loop;
pub mod strides;

use anyhow::Result;

/// Shape access for backend tensors.
pub trait TensorLike: Clone + Send + Sync + std::fmt::Debug {
    fn shape(&self) -> &[usize];
    fn elem_count(&self) -> usize {
        self.shape().iter().product()
    }
    fn rank(&self) -> usize {
        self.shape().len()
    }
}

/// Pointwise activation functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    /// x * sigmoid(x)
    Silu,
    /// exact GELU: 0.5 x (1 + erf(x / sqrt 2))
    Gelu,
    /// tanh approximation of GELU
    GeluTanh,
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Neg,
    Sqrt,
}

/// Binary elementwise ops (NumPy broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// 2-D convolution geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Square kernel helper: stride `s`, padding `p`.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dParams {
            stride: (stride, stride),
            padding: (padding, padding),
            ..Default::default()
        }
    }
}

/// Epilogue of [`Backend::linear_ext`]:
/// `out = scale · (x·wᵀ + bias + residual)`, or with `geglu` (w has 2N rows, bias 2N)
/// `out = scale · ((x·w[:N]ᵀ + b[:N]) ⊙ gelu(x·w[N:]ᵀ + b[N:]) + residual)` (exact erf GELU,
/// diffusers `GEGLU`: value half first, gate half second).
#[derive(Debug)]
pub struct LinearEpilogue<'a, T> {
    /// Same shape as the output (e.g. the transformer block's hidden states), or one row of
    /// `N` elements (`(1, N)`, `(1, 1, N)`, ..) added to every row.
    pub residual: Option<&'a T>,
    /// Output scale, 1.0 = none (diffusers' `1 / rescale_output_factor`).
    pub scale: f32,
    /// FeedForward GEGLU projection.
    pub geglu: bool,
}

copy_with_defaults!(LinearEpilogue<T> {
    residual: None,
    scale: 1.0,
    geglu: false,
});

impl<'a, T> LinearEpilogue<'a, T> {
    /// `out = x·wᵀ + bias + residual`.
    pub fn residual(residual: &'a T) -> Self {
        LinearEpilogue {
            residual: Some(residual),
            ..Default::default()
        }
    }
}

/// Epilogue of [`Backend::conv2d_ext`]: `out = scale · (conv(x, w) + bias + temb + residual)`
/// (diffusers `ResnetBlock2D`: `(shortcut + conv2(..)) / output_scale_factor`, and the time
/// embedding added after `conv1`).
#[derive(Debug)]
pub struct ConvEpilogue<'a, T> {
    /// `(N, C_out)`: added per (image, channel), broadcast over the spatial dims.
    pub temb: Option<&'a T>,
    /// Same shape as the output `(N, C_out, Ho, Wo)`, or one image `(1, C_out, Ho, Wo)` added to
    /// every image of the batch (e.g. the movement map `p_move` after the denoiser's `conv_in`).
    pub residual: Option<&'a T>,
    /// Output scale, 1.0 = none.
    pub scale: f32,
}

copy_with_defaults!(ConvEpilogue<T> {
    temb: None,
    residual: None,
    scale: 1.0,
});

/// Every primitive the models use. All methods take and return contiguous tensors.
pub trait Backend: Clone + Send + Sync + 'static {
    type Tensor: TensorLike;

    fn name(&self) -> &'static str;

    // ---- creation and transfer -------------------------------------------------
    /// Build a tensor from host f32 data (`data.len()` must equal the shape's product).
    fn from_f32(&self, shape: &[usize], data: &[f32]) -> Result<Self::Tensor>;
    /// Copy a tensor back to host f32.
    fn to_f32(&self, t: &Self::Tensor) -> Result<Vec<f32>>;
    fn zeros(&self, shape: &[usize]) -> Result<Self::Tensor>;
    /// Like `from_f32`, but keeps f32 precision on backends whose storage is narrower (the
    /// sampler's latents, timesteps: bf16 cannot hold 999).
    fn from_f32_full(&self, shape: &[usize], data: &[f32]) -> Result<Self::Tensor> {
        self.from_f32(shape, data)
    }
    /// `t` in the dtype the denoiser's activations are stored in. The sampler keeps its latents
    /// in f32 (`from_f32_full`); this is where they enter the U-Net. CPU: `t` itself. CUDA: bf16
    /// (the default, f32 accumulation; docs/numerics.md) or f32 (f32-accurate products through
    /// split bf16 operands; see `CudaBackend::set_activations` and docs/performance.md).
    fn to_activation(&self, t: &Self::Tensor) -> Result<Self::Tensor> {
        Ok(t.clone())
    }
    /// Called by `nn::Linear::load` with each linear weight `(out, in)` once it is loaded. CUDA
    /// with `--weights-dtype fp8`: quantises it to e4m3 with per-output-channel scales (kept
    /// beside it) for the FP8 GEMM; elsewhere nothing.
    fn prepare_linear_weight(&self, _w: &Self::Tensor) -> Result<()> {
        Ok(())
    }
    /// Called by `nn::Conv2d::load` with each conv weight `(out, in/groups, kh, kw)` and its
    /// geometry once it is loaded. CUDA with the channels-last trunk (sm_80 set): packs it for
    /// `conv2d_nhwc` (kept beside it); elsewhere nothing.
    fn prepare_conv_weight(&self, _w: &Self::Tensor, _p: Conv2dParams) -> Result<()> {
        Ok(())
    }
    /// Whether `models::attention` runs self-attention's q / k / v projections of `heads` heads
    /// of `head_dim` as one linear over weights packed at load (`(3·inner, C)`,
    /// [`Backend::attention_heads_packed`] reading its `(N, L, 3·inner)` output): the activation
    /// read once, one launch on a 3× wider N. CPU: false (the reference keeps the three
    /// projections it checks against diffusers); CUDA: where a flash entry takes the head dim
    /// (else the op's composed default would copy the three parts out).
    fn packs_qkv(&self, _heads: usize, _head_dim: usize) -> bool {
        false
    }

    // ---- the primitives: layout, elementwise, normalisation and reductions, linear algebra,
    // resampling (declared from the list in `macros.rs`, which the CPU backend shares) -------
    primitive_ops!(declare_ops!());

    // ---- fused primitives ------------------------------------------------------------
    // One kernel launch each on CUDA. The defaults compose the primitives above (the CPU
    // reference keeps them, so fused and unfused models agree bit for bit on the CPU).

    forward_ops! {
        Self::Tensor;
        /// `act(group_norm(x))`, e.g. ResnetBlock2D's `SiLU(norm1(x))`.
        group_norm_act(x: &Self::Tensor, groups: usize, gamma: Option<&Self::Tensor>,
            beta: Option<&Self::Tensor>, eps: f32, act: Option<Unary>)
            => composed::group_norm_act;

        /// `layer_norm(x) + table`: x `(.., L, C)`, the row table `(L, C)` (or `(1, L, C)`)
        /// broadcast over the leading dims, e.g. a temporal transformer block's
        /// `norm1(x) + pos_embed` (sinusoidal, frames L). CUDA: one launch, the table added in
        /// f32 before the output's one rounding.
        layer_norm_add(x: &Self::Tensor, gamma: Option<&Self::Tensor>,
            beta: Option<&Self::Tensor>, eps: f32, table: &Self::Tensor)
            => composed::layer_norm_add;

        /// GroupNorm of planes `x` `(N·F, C, H, W)` (`frames` = F per batch item, frame-major;
        /// the statistics of batch item n over its F frames, as AnimateDiff's GroupNorm of
        /// `(N, C, F, H, W)`; F = 1: `group_norm`) written as tokens `(N, H·W, F, C)`.
        group_norm_tokens(x: &Self::Tensor, frames: usize, groups: usize,
            gamma: Option<&Self::Tensor>, beta: Option<&Self::Tensor>, eps: f32)
            => composed::group_norm_tokens;

        /// The inverse permutation with a skip add: tokens `(N, H·W, F, C)` (any shape of that
        /// many elements) read as planes, `+ residual` `(N·F, C, H, W)` → `(N·F, C, H, W)`.
        tokens_planes_add(tokens: &Self::Tensor, residual: &Self::Tensor, frames: usize)
            => composed::tokens_planes_add;

        /// `concat([tokens_planes_add(tokens, residual, frames), tail], 1)`: the motion module's
        /// (or a Transformer2DModel's) output as the first part of an up block's
        /// `concat(h, skip)`. tail `(N·F, C_t, H, W)` → `(N·F, C + C_t, H, W)`. CUDA: the kernel
        /// writes its channels of the concatenated tensor in place, only `tail` is copied.
        tokens_planes_add_concat(tokens: &Self::Tensor, residual: &Self::Tensor, frames: usize,
            tail: &Self::Tensor) => composed::tokens_planes_add_concat;

        /// A transformer's (or motion module's) linear exit: `linear(tokens, w, bias)` read back
        /// as planes `+ residual` (`tokens_planes_add`), with a `tail` the first part of
        /// `concat([.., tail], 1)` (`tokens_planes_add_concat`). CUDA on sm_90a: one GEMM whose
        /// epilogue writes the planes (gemm_sm90's planes epilogue), no token tensor.
        linear_tokens_planes_add(tokens: &Self::Tensor, w: &Self::Tensor,
            bias: Option<&Self::Tensor>, residual: &Self::Tensor, frames: usize,
            tail: Option<&Self::Tensor>) => composed::linear_tokens_planes_add;

        /// Transformer2DModel's entry with a 1x1-conv `proj_in`: GroupNorm of x `(N, C, H, W)`,
        /// the 1x1 conv w `(O, C, 1, 1)` + bias, written as tokens `(N, H·W, O)`.
        group_norm_conv1x1_tokens(x: &Self::Tensor, groups: usize, gamma: Option<&Self::Tensor>,
            beta: Option<&Self::Tensor>, eps: f32, w: &Self::Tensor, bias: Option<&Self::Tensor>)
            => composed::group_norm_conv1x1_tokens;

        /// Its exit: tokens `(N, H·W, C)` through the 1x1 conv w `(O, C, 1, 1)` + bias, as planes
        /// `(N, O, H, W)` `+ residual` (that shape).
        tokens_conv1x1_planes_add(tokens: &Self::Tensor, w: &Self::Tensor,
            bias: Option<&Self::Tensor>, residual: &Self::Tensor)
            => composed::tokens_conv1x1_planes_add;

        /// `linear` with a fused epilogue (see [`LinearEpilogue`]); `bias` is `(N)`, or `(2N)`
        /// with GEGLU.
        linear_ext(x: &Self::Tensor, w: &Self::Tensor, bias: Option<&Self::Tensor>,
            epi: LinearEpilogue<'_, Self::Tensor>) => composed::linear_ext;

        /// `conv2d` with a fused epilogue (see [`ConvEpilogue`]).
        conv2d_ext(x: &Self::Tensor, w: &Self::Tensor, bias: Option<&Self::Tensor>,
            p: Conv2dParams, epi: ConvEpilogue<'_, Self::Tensor>) => composed::conv2d_ext;

        /// `concat([conv2d_ext(x, w, bias, p, epi), tail], 1)`: a conv whose output is the first
        /// part of a channel concat, e.g. an up block's `concat(h, skip)` where h is the previous
        /// block's upsampler conv (or the mid block's last resnet). tail `(N, C_t, Ho, Wo)` →
        /// `(N, C_out + C_t, Ho, Wo)`. CUDA: the conv writes its channels of the concatenated
        /// tensor in place, only `tail` is copied.
        conv2d_concat(x: &Self::Tensor, w: &Self::Tensor, bias: Option<&Self::Tensor>,
            p: Conv2dParams, epi: ConvEpilogue<'_, Self::Tensor>, tail: &Self::Tensor)
            => composed::conv2d_concat;

        // ---- sampler -----------------------------------------------------------------------

        /// Run a loop of identical steps from `init` ([`step_loop`]); returns the final state.
        /// The CUDA backend captures one step as a CUDA graph and replays it for every step.
        run_steps(init: Self::Tensor, lp: step_loop::StepLoop<'_, Self>) => step_loop::run_plain;

        // Both read their step-dependent scalars from tensors, so a captured step graph replays
        // for every step without re-capture (the defaults go through the host).

        /// diffusers `get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift,
        /// scale = 1, max_period = 10000)`: t (N,) → (N, dim), f32 math.
        timestep_embedding(t: &Self::Tensor, dim: usize, flip_sin_to_cos: bool,
            downscale_freq_shift: f32) => composed::timestep_embedding;

        /// Classifier-free guidance fused with one DDIM step (eta 0). `out` (2, C, S, ..) is the
        /// denoiser's output, row 0 cond and row 1 uncond; frames `frame_offset..frame_offset +
        /// F` (dim 2) belong to `z` (1, C, F, ..), the sample being denoised. `coeffs` (8,) =
        /// `DdimStepCoeffs::device_coeffs(guidance)`: `m = uncond + g·(cond − uncond)`, then the
        /// DDIM update of `z` with model output `m` ([`composed::cfg_ddim_one`]). Returns the
        /// new `z` in f32.
        cfg_ddim_step(out: &Self::Tensor, z: &Self::Tensor, frame_offset: usize,
            coeffs: &Self::Tensor) => composed::cfg_ddim_step;

        /// Multi-head attention on token layouts (what the projections write and `to_out`
        /// reads, no head transposes): q `(N, Lq, C)`, k and v `(N, Lk, C)`, `heads | C`, d =
        /// C/heads → `(N, Lq, C)`, heads merged. `extra = (k_e, v_e, rows)`: keys / values
        /// `(1 or rows.len(), Le, C)` (projected) appended after the own keys of the batch rows
        /// `rows` (reference attention); the other rows attend to their own keys.
        attention_heads(q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor,
            extra: Option<(&Self::Tensor, &Self::Tensor, std::ops::Range<usize>)>, heads: usize,
            scale: f32) => composed_attention::attention_heads;

        /// [`attention_heads`](Backend::attention_heads) of self-attention from one packed
        /// projection: `qkv` `(N, L, 3C)` holds q, k, v at columns `0..C`, `C..2C`, `2C..3C`
        /// (row stride 3C) → `(N, L, C)`; `extra` as in `attention_heads`. The default narrows the
        /// three parts; CUDA reads them in place through the kernels' row strides.
        attention_heads_packed(qkv: &Self::Tensor,
            extra: Option<(&Self::Tensor, &Self::Tensor, std::ops::Range<usize>)>, heads: usize,
            scale: f32) => composed_attention::attention_heads_packed;

        // ---- region codebook attention ------------------------------------------------------
        // `models::cyberhost::rca` (spec section 4). One launch each on CUDA
        // (`kernels/cuda/rca.cu`, flash attention on token layouts); the defaults
        // ([`composed_rca`]) are the op sequence the model ran before, so the CPU reference is
        // unchanged bit for bit.

        /// Multi-head attention of token rows against one shared key/value set: q `(N, L, C)`
        /// (already projected), k and v `(Lk, C)`, `heads | C`, d = C/heads → `(N, L, C)`,
        /// `softmax(q kᵀ · scale) v` per head over the N·L query rows. No output projection.
        rca_attention(q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor, heads: usize,
            scale: f32) => composed_rca::rca_attention;

        /// The temporal stage's query `x + a_s + bank[n mod F]`: x and a_s `(N, L, C)`, bank
        /// `(F, C)` (row n is frame slot n mod F) → `(N, L, C)`.
        rca_temporal_query(x: &Self::Tensor, a_s: &Self::Tensor, bank: &Self::Tensor)
            => composed_rca::rca_temporal_query;

        /// `a_s + a_t`, plus `f_id` `(R, L, C)` on rows `start..start + R` (the cond half's
        /// identity descriptor): a_s, a_t `(N, L, C)` → `(N, L, C)`.
        rca_motion_sum(a_s: &Self::Tensor, a_t: &Self::Tensor,
            f_id: Option<(&Self::Tensor, usize)>) => composed_rca::rca_motion_sum;

        /// `F_in + sigmoid(conv1x1(SiLU(mask_hidden), mask_w, mask_b)) ⊙ tokens` with the tokens
        /// `(N, h·w, C)` (to_out's output) read as NCHW: f_in `(N, C, h, w)`, mask_hidden
        /// `(N, C4, h, w)` (mask conv1's output), mask_w `(1, C4, 1, 1)`, mask_b `(1)` →
        /// `(N, C, h, w)`.
        rca_merge(f_in: &Self::Tensor, tokens: &Self::Tensor, mask_hidden: &Self::Tensor,
            mask_w: &Self::Tensor, mask_b: Option<&Self::Tensor>) => composed_rca::rca_merge;
    }
}

/// Convenience methods built from the primitives; models call these.
pub trait BackendExt: Backend {
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.binary(a, b, Binary::Add)
    }
    fn sub(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.binary(a, b, Binary::Sub)
    }
    fn mul(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor> {
        self.binary(a, b, Binary::Mul)
    }
    fn silu(&self, t: &Self::Tensor) -> Result<Self::Tensor> {
        self.unary(t, Unary::Silu)
    }
    fn scale(&self, t: &Self::Tensor, s: f32) -> Result<Self::Tensor> {
        self.affine(t, s, 0.0)
    }
}

impl<B: Backend> BackendExt for B {}
