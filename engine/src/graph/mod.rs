//! Op graphs of model runs, recorded by the tracing backend, with an exact cost model.
//!
//! ```ignore
//! let tb = TraceBackend::new();                      // a `Backend`: tensors are ids + shapes
//! let comps = load_components(&tb, &source)?;        // weights: shape-only leaves, nothing allocated
//! tb.set_leaf_kind(TensorKind::Input);
//! let x = tb.zeros(&[1, 4, 16, 64, 64])?;            // a graph input
//! let y = comps.denoising_unet.forward(&tb, &x, ..)?; // every op becomes a `Node`
//! let g = tb.cut("denoise_step", &[&y]);             // the nodes since the last cut, as a `Graph`
//! ```
//!
//! A `Graph` lists its tensors ([`TensorInfo`]: shape, [`TensorKind`], producer, storage root)
//! and its nodes in execution order ([`Node`]: op, input ids, output id, FLOPs, bytes). Tensors
//! produced by an earlier cut and consumed by this one are its inputs. `reshape` produces an
//! alias of its input's storage (no copy); every other op writes a new tensor, as the
//! [`Backend`](crate::backends::Backend) contract says.
//!
//! Cost model (a multiply-add is 2 FLOPs; a transcendental counts as 1). Bytes are element
//! counts times each tensor's storage size ([`TensorInfo::elem_bytes`]): weights bf16
//! ([`BYTES_PER_ELEMENT`] = 2), activations and inputs at the graph's
//! [`Graph::activations`] (bf16 by default; f32 for the CUDA backend's `--activations f32`
//! denoiser step), the sampler state of `cfg_ddim_step` always f32.
//!
//! FLOPs are the op's arithmetic; [`Node::work_flops`] is what the kernels execute: the same, plus,
//! for tensor-core products ([`Op::product_flops`]) with f32 operands, the extra passes of the
//! bf16 hi + lo split ([`mma_passes`]: 2 with one f32 operand, 3 with two; the lo·lo term is
//! below f32 rounding). Roofline floors use the work.
//!
//! | op | FLOPs | bytes |
//! |---|---|---|
//! | `conv2d` | 2·N·Cout·Ho·Wo·(Cin/g)·kh·kw + N·Cout·Ho·Wo for each of bias, temb, residual, scale ≠ 1 | x + w + bias + temb + residual + out |
//! | `linear` | 2·M·Nw·K (Nw = rows of w: 2N with GEGLU) + M·Nw with bias + 2·M·N with GEGLU + M·N for each of residual, scale ≠ 1 | x + w + bias + residual + out |
//! | `matmul` | 2·batch·M·N·K | a + b + out |
//! | `attention` | 2·B·H·Lq·Lk·(D + Dv) + 6·B·H·Lq·Lk (scale 1, softmax 5) | q + k + v + out (fused: scores never stored) |
//! | `softmax_last` | 5 per element (max, subtract, exp, sum, divide) | in + out |
//! | `group_norm`, `layer_norm` | 5 per element, + 2 with affine, + 1 with a fused activation | x + gamma + beta + out |
//! | `unary`, `binary` | 1 per output element | inputs + out |
//! | `affine` | 2 per element | in + out |
//! | `mean_dim` | input + output elements | in + out |
//! | `max_pool2d` | out · k² | in + out |
//! | `permute`, `concat`, `pad2d`, `upsample_nearest2d` | 0 | in + out |
//! | `narrow`, `index_select` | 0 | 2 · out (only the selected part is read) |
//! | `reshape` | 0 | 0 (alias) |

pub mod pipeline;
pub mod trace;

pub use trace::{TraceBackend, TraceTensor};

use crate::backends::{Binary, Conv2dParams, Unary};
use cyberhost_kernels::DType;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// Storage size of one bf16 element (weights; activations by default).
pub const BYTES_PER_ELEMENT: u64 = 2;

/// Storage size of one element of `dtype`.
pub fn elem_bytes(dtype: DType) -> u64 {
    dtype.size_in_bytes() as u64
}

/// Tensor-core passes of a product of operands stored with `a` and `b` bytes per element: bf16
/// operands take one; an f32 operand is split into bf16 hi + lo, so one f32 side takes two
/// (hi·b + lo·b) and two f32 sides three (hi·hi + hi·lo + lo·hi; lo·lo is below f32 rounding).
pub fn mma_passes(a: u64, b: u64) -> u64 {
    match (a > BYTES_PER_ELEMENT, b > BYTES_PER_ELEMENT) {
        (false, false) => 1,
        (true, false) | (false, true) => 2,
        (true, true) => 3,
    }
}

/// Index of a tensor in [`Graph::tensors`].
/// H100 SXM dense bf16 tensor-core peak (FLOP/s).
pub const H100_BF16_FLOPS: f64 = 989e12;
/// H100 SXM HBM3 bandwidth (bytes/s).
pub const H100_HBM_BYTES_PER_S: f64 = 3.35e12;

/// Roofline floor on an H100: max(FLOPs / peak, bytes / bandwidth), seconds.
pub fn h100_floor_seconds(flops: u64, bytes: u64) -> f64 {
    (flops as f64 / H100_BF16_FLOPS).max(bytes as f64 / H100_HBM_BYTES_PER_S)
}

pub type TensorId = usize;

/// What a tensor is, for memory planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorKind {
    /// A model parameter (created while loading); lives outside any arena.
    Weight,
    /// Data fed into the graph (uploaded, or produced by an earlier graph); outside the arena.
    Input,
    /// Produced by a node of this graph; planned into the arena.
    Activation,
}

/// One tensor of a graph.
#[derive(Clone, Debug, Serialize)]
pub struct TensorInfo {
    pub shape: Vec<usize>,
    pub kind: TensorKind,
    /// The node that writes it (`None` for weights and inputs).
    pub producer: Option<usize>,
    /// The tensor whose storage this one uses: itself, or the root of a `reshape` chain.
    pub storage: TensorId,
    /// Storage bytes per element (weights 2; activations and inputs the graph's
    /// [`Graph::activations`]).
    pub elem_bytes: u64,
}

impl TensorInfo {
    pub fn elem_count(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
    /// Storage bytes.
    pub fn bytes(&self) -> u64 {
        self.elem_count() * self.elem_bytes
    }
}

/// The operation of a node (one `Backend` primitive call).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    Reshape,
    Permute,
    Concat {
        dim: usize,
    },
    Narrow {
        dim: usize,
    },
    IndexSelect {
        dim: usize,
    },
    Unary(Unary),
    Binary(Binary),
    Affine,
    Softmax,
    /// `act`: a fused activation (`group_norm_act`).
    GroupNorm {
        groups: usize,
        affine: bool,
        act: Option<Unary>,
    },
    LayerNorm {
        affine: bool,
    },
    /// `residual`, `geglu`, `scaled`: the fused epilogue of `linear_ext`.
    Linear {
        bias: bool,
        residual: bool,
        geglu: bool,
        scaled: bool,
    },
    Matmul,
    /// `temb`, `residual`, `scaled`: the fused epilogue of `conv2d_ext`.
    Conv2d {
        params: Conv2dParams,
        bias: bool,
        temb: bool,
        residual: bool,
        scaled: bool,
    },
    Attention,
    UpsampleNearest2d,
    Pad2d,
    MeanDim {
        dim: usize,
    },
    MaxPool2d {
        kernel: usize,
    },
    /// Sinusoidal timestep projection (`timestep_embedding`).
    TimestepEmbedding,
    /// Classifier-free guidance + DDIM update (`cfg_ddim_step`).
    CfgDdim,
    /// RCA multi-head attention on token rows against a shared key/value set (`rca_attention`).
    RcaAttention {
        heads: usize,
    },
    /// RCA temporal query `x + A_s + T[n mod F]` (`rca_temporal_query`).
    RcaTemporalQuery,
    /// RCA `A_s + A_t (+ F_id)` (`rca_motion_sum`).
    RcaMotionSum,
    /// RCA merge `F_in + sigmoid(conv2(SiLU(hid))) ⊙ tokensᵀ` (`rca_merge`).
    RcaMerge,
}

/// Op classes of the cost tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpClass {
    Conv2d,
    Linear,
    Matmul,
    Attention,
    Norm,
    Softmax,
    Elementwise,
    Layout,
    Reduce,
}

impl OpClass {
    pub const ALL: [OpClass; 9] = [
        OpClass::Conv2d,
        OpClass::Linear,
        OpClass::Matmul,
        OpClass::Attention,
        OpClass::Norm,
        OpClass::Softmax,
        OpClass::Elementwise,
        OpClass::Layout,
        OpClass::Reduce,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpClass::Conv2d => "conv2d",
            OpClass::Linear => "linear",
            OpClass::Matmul => "matmul",
            OpClass::Attention => "attention",
            OpClass::Norm => "norm",
            OpClass::Softmax => "softmax",
            OpClass::Elementwise => "elementwise",
            OpClass::Layout => "layout",
            OpClass::Reduce => "reduce",
        }
    }
}

/// The pattern of the ops that only move data ([`OpClass::Layout`]).
macro_rules! layout_ops {
    () => {
        Op::Reshape
            | Op::Permute
            | Op::Concat { .. }
            | Op::Narrow { .. }
            | Op::IndexSelect { .. }
            | Op::UpsampleNearest2d
            | Op::Pad2d
    };
}

impl Op {
    /// The `Backend` method name.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Reshape => "reshape",
            Op::Permute => "permute",
            Op::Concat { .. } => "concat",
            Op::Narrow { .. } => "narrow",
            Op::IndexSelect { .. } => "index_select",
            Op::Unary(_) => "unary",
            Op::Binary(_) => "binary",
            Op::Affine => "affine",
            Op::Softmax => "softmax_last",
            Op::GroupNorm { .. } => "group_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Linear { .. } => "linear",
            Op::Matmul => "matmul",
            Op::Conv2d { .. } => "conv2d",
            Op::Attention => "attention",
            Op::UpsampleNearest2d => "upsample_nearest2d",
            Op::Pad2d => "pad2d",
            Op::MeanDim { .. } => "mean_dim",
            Op::MaxPool2d { .. } => "max_pool2d",
            Op::TimestepEmbedding => "timestep_embedding",
            Op::CfgDdim => "cfg_ddim_step",
            Op::RcaAttention { .. } => "rca_attention",
            Op::RcaTemporalQuery => "rca_temporal_query",
            Op::RcaMotionSum => "rca_motion_sum",
            Op::RcaMerge => "rca_merge",
        }
    }

    pub fn class(&self) -> OpClass {
        match self {
            layout_ops!() => OpClass::Layout,
            Op::Unary(_) | Op::Binary(_) | Op::Affine | Op::TimestepEmbedding | Op::CfgDdim => {
                OpClass::Elementwise
            }
            Op::Softmax => OpClass::Softmax,
            Op::GroupNorm { .. } | Op::LayerNorm { .. } => OpClass::Norm,
            Op::Linear { .. } => OpClass::Linear,
            Op::Matmul => OpClass::Matmul,
            Op::Conv2d { .. } => OpClass::Conv2d,
            Op::Attention | Op::RcaAttention { .. } => OpClass::Attention,
            Op::RcaTemporalQuery | Op::RcaMotionSum | Op::RcaMerge => OpClass::Elementwise,
            Op::MeanDim { .. } | Op::MaxPool2d { .. } => OpClass::Reduce,
        }
    }

    /// The `kernels/cuda/<name>.cu` module that runs the op on the CUDA backend (`None`: a view,
    /// no launch). Several op kinds share a module (e.g. `permute`, `concat` → `layout`).
    pub fn kernel(&self) -> Option<&'static str> {
        Some(match self {
            Op::Reshape => return None,
            Op::Permute
            | Op::Concat { .. }
            | Op::Narrow { .. }
            | Op::IndexSelect { .. }
            | Op::Pad2d => "layout",
            Op::UpsampleNearest2d => "upsample",
            Op::Unary(_) | Op::Binary(_) | Op::Affine => "pointwise",
            Op::Softmax => "softmax",
            Op::GroupNorm { .. } => "group_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Linear { .. } | Op::Matmul => "gemm",
            Op::Conv2d { .. } => "conv2d",
            Op::Attention | Op::RcaAttention { .. } => "attention",
            Op::RcaTemporalQuery | Op::RcaMotionSum | Op::RcaMerge => "rca",
            Op::MeanDim { .. } => "mean_dim",
            Op::MaxPool2d { .. } => "pool",
            Op::TimestepEmbedding => "timestep_embedding",
            Op::CfgDdim => "cfg_ddim",
        })
    }

    /// Whether the output shares its input's storage.
    pub fn is_alias(&self) -> bool {
        matches!(self, Op::Reshape)
    }

    /// The FLOPs of [`Op::flops`] that are operand products on tensor cores (GEMM, conv,
    /// attention's QKᵀ and PV); 0 for the other ops.
    pub fn product_flops(&self, inputs: &[&[usize]], out: &[usize]) -> u64 {
        let n = |s: &[usize]| s.iter().map(|&d| d as u64).product::<u64>();
        let out_n = n(out);
        match *self {
            Op::Conv2d { .. } => {
                let w = inputs[1];
                2 * out_n * w[1] as u64 * w[2] as u64 * w[3] as u64
            }
            Op::Linear { .. } => {
                let k = *inputs[0].last().unwrap_or(&1) as u64;
                let cols = *out.last().unwrap_or(&1) as u64;
                let rows_w = inputs[1][0] as u64;
                // all w rows (2N with GEGLU)
                let gemm_n = if cols == 0 { 0 } else { out_n / cols * rows_w };
                2 * gemm_n * k
            }
            Op::Matmul => 2 * out_n * inputs[0][inputs[0].len() - 1] as u64,
            Op::Attention => {
                let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
                let scores = q[0] as u64 * q[1] as u64 * q[2] as u64 * k[2] as u64;
                2 * scores * (q[3] as u64 + v[3] as u64)
            }
            // as `attention` with B = 1, Lq = N·L, D = Dv = C / heads
            Op::RcaAttention { heads } => {
                let (q, k) = (inputs[0], inputs[1]);
                let h = heads as u64;
                let scores = h * q[0] as u64 * q[1] as u64 * k[0] as u64;
                2 * scores * (2 * (q[2] as u64 / h.max(1)))
            }
            _ => 0,
        }
    }

    /// Tensor-core passes of the op's products with operands of `in_bytes` bytes per element
    /// ([`mma_passes`] of the first two operands: x·w, a·b, q·k; P·V has the same passes, since
    /// P is kept at the inputs' precision in registers). 1 for the other ops.
    pub fn passes(&self, in_bytes: &[u64]) -> u64 {
        match self {
            Op::Conv2d { .. }
            | Op::Linear { .. }
            | Op::Matmul
            | Op::Attention
            | Op::RcaAttention { .. } => mma_passes(in_bytes[0], in_bytes[1]),
            _ => 1,
        }
    }

    /// Exact FLOPs of the op on operands of `inputs` shapes giving `out` (module docs).
    pub fn flops(&self, inputs: &[&[usize]], out: &[usize]) -> u64 {
        let n = |s: &[usize]| s.iter().map(|&d| d as u64).product::<u64>();
        let out_n = n(out);
        match *self {
            Op::Conv2d {
                bias,
                temb,
                residual,
                scaled,
                ..
            } => {
                let epilogue = [bias, temb, residual, scaled]
                    .iter()
                    .filter(|&&b| b)
                    .count() as u64;
                self.product_flops(inputs, out) + epilogue * out_n
            }
            Op::Linear {
                bias,
                residual,
                geglu,
                scaled,
            } => {
                // GEMM over all w rows (2N with GEGLU), bias on each; then gelu + multiply
                let cols = *out.last().unwrap_or(&1) as u64;
                let rows_w = inputs[1][0] as u64;
                let gemm_n = if cols == 0 { 0 } else { out_n / cols * rows_w };
                let epilogue = [residual, scaled].iter().filter(|&&b| b).count() as u64;
                self.product_flops(inputs, out)
                    + if bias { gemm_n } else { 0 }
                    + if geglu { 2 * out_n } else { 0 }
                    + epilogue * out_n
            }
            Op::Matmul => self.product_flops(inputs, out),
            Op::Attention => {
                let (q, k) = (inputs[0], inputs[1]);
                let scores = q[0] as u64 * q[1] as u64 * q[2] as u64 * k[2] as u64;
                self.product_flops(inputs, out) + 6 * scores
            }
            Op::Softmax => 5 * out_n,
            Op::GroupNorm { affine, act, .. } => {
                (5 + if affine { 2 } else { 0 } + if act.is_some() { 1 } else { 0 }) * out_n
            }
            Op::LayerNorm { affine } => (5 + if affine { 2 } else { 0 }) * out_n,
            Op::Unary(_) | Op::Binary(_) => out_n,
            Op::Affine => 2 * out_n,
            Op::MeanDim { .. } => n(inputs[0]) + out_n,
            Op::MaxPool2d { kernel } => out_n * (kernel * kernel) as u64,
            // exp for the frequency, a multiply, sin or cos (counted as one each)
            Op::TimestepEmbedding => 3 * out_n,
            // guidance (3), x̂₀ (2), clamp (2), update (3)
            Op::CfgDdim => 10 * out_n,
            // as `attention` with B = 1, Lq = N·L, D = Dv = C / heads
            Op::RcaAttention { heads } => {
                let (q, k) = (inputs[0], inputs[1]);
                let scores = heads as u64 * q[0] as u64 * q[1] as u64 * k[0] as u64;
                self.product_flops(inputs, out) + 6 * scores
            }
            // two adds per element
            Op::RcaTemporalQuery => 2 * out_n,
            // one add per element, one more per identity element
            Op::RcaMotionSum => out_n + inputs.get(2).map_or(0, |f| n(f)),
            // per hidden element SiLU (1) + multiply-add (2); per pixel bias + sigmoid (2);
            // per output element multiply + add (2)
            Op::RcaMerge => {
                let pixels = n(inputs[0]) / inputs[0][1].max(1) as u64;
                3 * n(inputs[2]) + 2 * pixels + 2 * out_n
            }
            layout_ops!() => 0,
        }
    }

    /// Bytes read and written (module docs): inputs of `inputs` shapes stored with `in_bytes`
    /// bytes per element, the output of `out` shape with `out_bytes`.
    pub fn bytes(
        &self,
        inputs: &[&[usize]],
        in_bytes: &[u64],
        out: &[usize],
        out_bytes: u64,
    ) -> u64 {
        let n = |s: &[usize]| s.iter().map(|&d| d as u64).product::<u64>();
        let out_n = n(out);
        match self {
            Op::Reshape => 0,
            Op::Narrow { .. } | Op::IndexSelect { .. } => 2 * out_n * out_bytes,
            // reads the F frames of both CFG rows and z, writes z (the sampler state: f32)
            Op::CfgDdim => (3 * out_n + out_n) * elem_bytes(DType::F32),
            _ => {
                inputs
                    .iter()
                    .zip(in_bytes)
                    .map(|(s, &b)| n(s) * b)
                    .sum::<u64>()
                    + out_n * out_bytes
            }
        }
    }
}

/// One op call.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
    pub flops: u64,
    /// FLOPs the kernels execute: `flops` plus the split passes of f32 products (module docs).
    pub work_flops: u64,
    pub bytes: u64,
}

/// The ops of one model run, in execution order.
#[derive(Clone, Debug)]
pub struct Graph {
    pub name: String,
    pub tensors: Vec<TensorInfo>,
    pub nodes: Vec<Node>,
    /// Tensors the caller keeps (live to the end of the graph).
    pub outputs: Vec<TensorId>,
    /// Storage of the activations and inputs (weights are bf16).
    pub activations: DType,
}

/// FLOPs, bytes and op count of one op class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassCost {
    pub ops: usize,
    pub flops: u64,
    /// [`Node::work_flops`] summed.
    pub work_flops: u64,
    pub bytes: u64,
}

impl Graph {
    /// An empty graph with bf16 activations, for building by hand (tests, synthetic graphs).
    pub fn new(name: &str) -> Self {
        Self::with_activations(name, DType::Bf16)
    }

    /// An empty graph whose activations and inputs are stored as `activations`.
    pub fn with_activations(name: &str, activations: DType) -> Self {
        Graph {
            name: name.to_string(),
            tensors: Vec::new(),
            nodes: Vec::new(),
            outputs: Vec::new(),
            activations,
        }
    }

    /// Add a weight or input tensor.
    pub fn add_leaf(&mut self, shape: &[usize], kind: TensorKind) -> TensorId {
        assert!(
            kind != TensorKind::Activation,
            "add_leaf: activations come from add_node"
        );
        let id = self.tensors.len();
        let elem_bytes = match kind {
            TensorKind::Weight => BYTES_PER_ELEMENT,
            _ => elem_bytes(self.activations),
        };
        self.tensors.push(TensorInfo {
            shape: shape.to_vec(),
            kind,
            producer: None,
            storage: id,
            elem_bytes,
        });
        id
    }

    /// Append a node computing `op` on `inputs`, producing a tensor of `out_shape`; its
    /// FLOPs and bytes come from the cost model. Returns the output id.
    pub fn add_node(&mut self, op: Op, inputs: &[TensorId], out_shape: &[usize]) -> TensorId {
        let shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|&i| self.tensors[i].shape.as_slice())
            .collect();
        let in_bytes: Vec<u64> = inputs.iter().map(|&i| self.tensors[i].elem_bytes).collect();
        let id = self.tensors.len();
        let node = self.nodes.len();
        let (kind, storage, out_bytes) = if op.is_alias() {
            let root = self.tensors[inputs[0]].storage;
            let r = &self.tensors[root];
            (r.kind, root, r.elem_bytes)
        } else {
            (TensorKind::Activation, id, elem_bytes(self.activations))
        };
        let flops = op.flops(&shapes, out_shape);
        let work_flops = flops + (op.passes(&in_bytes) - 1) * op.product_flops(&shapes, out_shape);
        let bytes = op.bytes(&shapes, &in_bytes, out_shape, out_bytes);
        self.tensors.push(TensorInfo {
            shape: out_shape.to_vec(),
            kind,
            producer: Some(node),
            storage,
            elem_bytes: out_bytes,
        });
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            output: id,
            flops,
            work_flops,
            bytes,
        });
        id
    }

    pub fn total_flops(&self) -> u64 {
        self.nodes.iter().map(|n| n.flops).sum()
    }

    pub fn total_work_flops(&self) -> u64 {
        self.nodes.iter().map(|n| n.work_flops).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.bytes).sum()
    }

    /// Bytes of every tensor of `kind` that owns its storage.
    pub fn kind_bytes(&self, kind: TensorKind) -> u64 {
        self.tensors
            .iter()
            .enumerate()
            .filter(|(i, t)| t.kind == kind && t.storage == *i)
            .map(|(_, t)| t.bytes())
            .sum()
    }

    /// Per op class (in [`OpClass::ALL`] order, classes with no op left out).
    pub fn cost_by_class(&self) -> Vec<(OpClass, ClassCost)> {
        OpClass::ALL
            .iter()
            .map(|&c| {
                let mut cost = ClassCost::default();
                for n in self.nodes.iter().filter(|n| n.op.class() == c) {
                    cost.ops += 1;
                    cost.flops += n.flops;
                    cost.work_flops += n.work_flops;
                    cost.bytes += n.bytes;
                }
                (c, cost)
            })
            .filter(|(_, c)| c.ops > 0)
            .collect()
    }

    /// Cost per CUDA kernel module ([`Op::kernel`]), largest H100 floor first; views are left out.
    pub fn cost_by_kernel(&self) -> Vec<(&'static str, ClassCost)> {
        let mut by: Vec<(&'static str, ClassCost)> = Vec::new();
        for n in &self.nodes {
            let Some(k) = n.op.kernel() else { continue };
            let i = match by.iter().position(|(name, _)| *name == k) {
                Some(i) => i,
                None => {
                    by.push((k, ClassCost::default()));
                    by.len() - 1
                }
            };
            by[i].1.ops += 1;
            by[i].1.flops += n.flops;
            by[i].1.work_flops += n.work_flops;
            by[i].1.bytes += n.bytes;
        }
        let floor = |c: &ClassCost| h100_floor_seconds(c.work_flops, c.bytes);
        by.sort_by(|a, b| floor(&b.1).total_cmp(&floor(&a.1)).then(a.0.cmp(b.0)));
        by
    }

    /// The graph without the nodes no output depends on (tensor ids are renumbered).
    pub fn pruned(&self) -> Graph {
        let mut live: HashSet<usize> = self.outputs.iter().copied().collect();
        let mut keep = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            if live.contains(&n.output) {
                keep[i] = true;
                live.extend(n.inputs.iter().copied());
            }
        }
        let mut g = Graph::with_activations(&self.name, self.activations);
        let mut map: HashMap<usize, usize> = HashMap::new();
        let get = |g: &mut Graph, map: &mut HashMap<usize, usize>, id: usize| -> usize {
            *map.entry(id)
                .or_insert_with(|| g.add_leaf(&self.tensors[id].shape, self.tensors[id].kind))
        };
        for (i, n) in self.nodes.iter().enumerate() {
            if !keep[i] {
                continue;
            }
            let ins: Vec<usize> = n.inputs.iter().map(|&t| get(&mut g, &mut map, t)).collect();
            let out = g.add_node(n.op, &ins, &self.tensors[n.output].shape);
            map.insert(n.output, out);
        }
        for &o in &self.outputs {
            let l = get(&mut g, &mut map, o);
            g.outputs.push(l);
        }
        g
    }

    /// A short description of node `i`: `#i op → shape`.
    pub fn describe_node(&self, i: usize) -> String {
        let n = &self.nodes[i];
        format!("#{i} {} → {:?}", n.op.name(), self.tensors[n.output].shape)
    }
}
