//! The tracing backend: tensors are ids with shapes, and every op is recorded.
//!
//! Shapes are checked and inferred by [`ShapeBackend`] (one set of shape rules); nothing is
//! computed or stored. Tensors made by `from_f32` / `zeros` are leaves of the current
//! [`TraceBackend::set_leaf_kind`] (weights while loading, inputs after). [`TraceBackend::cut`]
//! turns the ops recorded since the previous cut into a [`Graph`].

use super::{Graph, Op, TensorKind};
use crate::backends::shape::{ShapeBackend, ShapeTensor};
use crate::backends::{
    Backend, Binary, Conv2dParams, ConvEpilogue, LinearEpilogue, TensorLike, Unary,
};
use anyhow::{bail, Result};
use cyberhost_kernels::DType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A traced tensor: an id in the trace and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceTensor {
    id: usize,
    shape: ShapeTensor,
}

impl TraceTensor {
    /// The tensor's id in the trace (stable across cuts).
    pub fn id(&self) -> usize {
        self.id
    }
}

impl TensorLike for TraceTensor {
    fn shape(&self) -> &[usize] {
        self.shape.shape()
    }
}

struct Recorded {
    op: Op,
    inputs: Vec<usize>,
    output: usize,
}

struct State {
    leaf_kind: TensorKind,
    /// Storage of the activations and inputs of the graphs cut from now on.
    activations: DType,
    /// Per trace tensor: shape, and the leaf kind for leaves (`None` for op outputs).
    tensors: Vec<(Vec<usize>, Option<TensorKind>)>,
    /// Ops since the last cut.
    pending: Vec<Recorded>,
}

/// See the module docs. Clones share one trace.
#[derive(Clone)]
pub struct TraceBackend {
    state: Arc<Mutex<State>>,
}

impl Default for TraceBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TraceBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("TraceBackend")
            .field("tensors", &s.tensors.len())
            .field("pending", &s.pending.len())
            .finish()
    }
}

impl TraceBackend {
    /// A new trace; leaves start as [`TensorKind::Weight`].
    pub fn new() -> Self {
        TraceBackend {
            state: Arc::new(Mutex::new(State {
                leaf_kind: TensorKind::Weight,
                activations: DType::Bf16,
                tensors: Vec::new(),
                pending: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `from_f32` / `zeros` make from now on (`Weight` or `Input`).
    pub fn set_leaf_kind(&self, kind: TensorKind) {
        assert!(
            kind != TensorKind::Activation,
            "leaves are weights or inputs"
        );
        self.lock().leaf_kind = kind;
    }

    /// Storage of the activations and inputs of the graphs [`Self::cut`] from now on (bf16 until
    /// set).
    pub fn set_activations(&self, dtype: DType) {
        self.lock().activations = dtype;
    }

    /// Total elements of the leaves of `kind` made so far (e.g. the parameter count).
    pub fn leaf_elems(&self, kind: TensorKind) -> u64 {
        let s = self.lock();
        s.tensors
            .iter()
            .filter(|(_, k)| *k == Some(kind))
            .map(|(shape, _)| shape.iter().map(|&d| d as u64).product::<u64>())
            .sum()
    }

    /// Number of ops recorded since the last cut.
    pub fn pending_ops(&self) -> usize {
        self.lock().pending.len()
    }

    fn leaf(&self, shape: &[usize]) -> TraceTensor {
        let mut s = self.lock();
        let id = s.tensors.len();
        let kind = s.leaf_kind;
        s.tensors.push((shape.to_vec(), Some(kind)));
        TraceTensor {
            id,
            shape: ShapeTensor::new(shape),
        }
    }

    fn record(&self, op: Op, inputs: &[&TraceTensor], out: ShapeTensor) -> Result<TraceTensor> {
        let mut s = self.lock();
        let id = s.tensors.len();
        s.tensors.push((out.shape().to_vec(), None));
        s.pending.push(Recorded {
            op,
            inputs: inputs.iter().map(|t| t.id).collect(),
            output: id,
        });
        Ok(TraceTensor { id, shape: out })
    }

    /// The ops recorded since the previous cut, as a graph named `name`. Tensors they read
    /// that they did not produce become leaves: weights stay weights, everything else
    /// (uploads, results of earlier cuts) is an input. `outputs` live to the graph's end.
    pub fn cut(&self, name: &str, outputs: &[&TraceTensor]) -> Graph {
        let mut s = self.lock();
        let pending = std::mem::take(&mut s.pending);
        let mut g = Graph::with_activations(name, s.activations);
        let mut local: HashMap<usize, usize> = HashMap::new();
        let leaf_of = |g: &mut Graph, s: &State, id: usize| {
            let (shape, kind) = &s.tensors[id];
            g.add_leaf(shape, kind.unwrap_or(TensorKind::Input))
        };
        for r in &pending {
            let ins: Vec<usize> = r
                .inputs
                .iter()
                .map(|&i| match local.get(&i) {
                    Some(&l) => l,
                    None => {
                        let l = leaf_of(&mut g, &s, i);
                        local.insert(i, l);
                        l
                    }
                })
                .collect();
            let out = g.add_node(r.op, &ins, &s.tensors[r.output].0);
            local.insert(r.output, out);
        }
        for o in outputs {
            let l = match local.get(&o.id) {
                Some(&l) => l,
                None => {
                    let l = leaf_of(&mut g, &s, o.id);
                    local.insert(o.id, l);
                    l
                }
            };
            if !g.outputs.contains(&l) {
                g.outputs.push(l);
            }
        }
        g
    }
}

/// An argument of a traced op: what [`ShapeBackend`]'s method takes in its place, and the traced
/// tensors it reads.
trait TraceArg<'a>: Copy {
    type Shape;
    fn shape(self) -> Self::Shape;
    fn inputs(self, _ins: &mut Vec<&'a TraceTensor>) {}
}

impl<'a> TraceArg<'a> for &'a TraceTensor {
    type Shape = &'a ShapeTensor;
    fn shape(self) -> &'a ShapeTensor {
        &self.shape
    }
    fn inputs(self, ins: &mut Vec<&'a TraceTensor>) {
        ins.push(self);
    }
}

impl<'a> TraceArg<'a> for Option<&'a TraceTensor> {
    type Shape = Option<&'a ShapeTensor>;
    fn shape(self) -> Option<&'a ShapeTensor> {
        self.map(|t| &t.shape)
    }
    fn inputs(self, ins: &mut Vec<&'a TraceTensor>) {
        ins.extend(self);
    }
}

/// `rca_motion_sum`'s `f_id`.
impl<'a> TraceArg<'a> for Option<(&'a TraceTensor, usize)> {
    type Shape = Option<(&'a ShapeTensor, usize)>;
    fn shape(self) -> Self::Shape {
        self.map(|(t, start)| (&t.shape, start))
    }
    fn inputs(self, ins: &mut Vec<&'a TraceTensor>) {
        ins.extend(self.map(|(t, _)| t));
    }
}

impl<'a> TraceArg<'a> for LinearEpilogue<'a, TraceTensor> {
    type Shape = LinearEpilogue<'a, ShapeTensor>;
    fn shape(self) -> Self::Shape {
        LinearEpilogue {
            residual: self.residual.shape(),
            scale: self.scale,
            geglu: self.geglu,
        }
    }
    fn inputs(self, ins: &mut Vec<&'a TraceTensor>) {
        self.residual.inputs(ins);
    }
}

impl<'a> TraceArg<'a> for ConvEpilogue<'a, TraceTensor> {
    type Shape = ConvEpilogue<'a, ShapeTensor>;
    fn shape(self) -> Self::Shape {
        ConvEpilogue {
            temb: self.temb.shape(),
            residual: self.residual.shape(),
            scale: self.scale,
        }
    }
    fn inputs(self, ins: &mut Vec<&'a TraceTensor>) {
        self.temb.inputs(ins);
        self.residual.inputs(ins);
    }
}

/// Arguments that are no tensors go to the shape backend as they are.
macro_rules! plain_trace_args {
    ($($t:ty),*) => {
        $(
            impl<'a> TraceArg<'a> for $t {
                type Shape = $t;
                fn shape(self) -> $t {
                    self
                }
            }
        )*
    };
}

plain_trace_args!(
    usize,
    f32,
    bool,
    Unary,
    Option<Unary>,
    Binary,
    Conv2dParams,
    &'a [usize]
);

/// [`Backend`] methods of the trace. A row `name(arg: Type, ..) => op;` checks the operands and
/// infers the output shape with [`ShapeBackend`]'s method of the same name, then records `op` (an
/// expression over the arguments) reading the traced tensors among the arguments, in order.
macro_rules! trace_ops {
    ($($name:ident($($arg:ident: $ty:ty),*) => $op:expr;)*) => {
        $(
            fn $name(&self, $($arg: $ty),*) -> Result<TraceTensor> {
                let out = ShapeBackend.$name($(TraceArg::shape($arg)),*)?;
                let mut inputs = Vec::new();
                $(TraceArg::inputs($arg, &mut inputs);)*
                self.record($op, &inputs, out)
            }
        )*
    };
}

impl Backend for TraceBackend {
    type Tensor = TraceTensor;

    fn name(&self) -> &'static str {
        "trace"
    }

    fn from_f32(&self, shape: &[usize], data: &[f32]) -> Result<TraceTensor> {
        ShapeBackend.from_f32(shape, data)?;
        Ok(self.leaf(shape))
    }

    fn to_f32(&self, _t: &TraceTensor) -> Result<Vec<f32>> {
        bail!("the trace backend holds no values (trace graph pieces between host round trips separately)")
    }

    fn zeros(&self, shape: &[usize]) -> Result<TraceTensor> {
        Ok(self.leaf(shape))
    }

    fn concat(&self, ts: &[&TraceTensor], dim: usize) -> Result<TraceTensor> {
        let shapes: Vec<&ShapeTensor> = ts.iter().map(|t| &t.shape).collect();
        let out = ShapeBackend.concat(&shapes, dim)?;
        self.record(Op::Concat { dim }, ts, out)
    }

    trace_ops! {
        reshape(t: &TraceTensor, shape: &[usize]) => Op::Reshape;
        permute(t: &TraceTensor, dims: &[usize]) => Op::Permute;
        narrow(t: &TraceTensor, dim: usize, start: usize, len: usize) => Op::Narrow { dim };
        index_select(t: &TraceTensor, dim: usize, idx: &[usize]) => Op::IndexSelect { dim };
        unary(t: &TraceTensor, op: Unary) => Op::Unary(op);
        binary(a: &TraceTensor, b: &TraceTensor, op: Binary) => Op::Binary(op);
        affine(t: &TraceTensor, mul: f32, add: f32) => Op::Affine;
        softmax_last(t: &TraceTensor) => Op::Softmax;
        group_norm(x: &TraceTensor, groups: usize, gamma: Option<&TraceTensor>,
            beta: Option<&TraceTensor>, eps: f32)
            => Op::GroupNorm { groups, affine: gamma.is_some() || beta.is_some(), act: None };
        layer_norm(x: &TraceTensor, gamma: Option<&TraceTensor>, beta: Option<&TraceTensor>,
            eps: f32) => Op::LayerNorm { affine: gamma.is_some() || beta.is_some() };
        linear(x: &TraceTensor, w: &TraceTensor, bias: Option<&TraceTensor>)
            => Op::Linear { bias: bias.is_some(), residual: false, geglu: false, scaled: false };
        matmul(a: &TraceTensor, b: &TraceTensor) => Op::Matmul;
        conv2d(x: &TraceTensor, w: &TraceTensor, bias: Option<&TraceTensor>, p: Conv2dParams)
            => Op::Conv2d {
                params: p,
                bias: bias.is_some(),
                temb: false,
                residual: false,
                scaled: false,
            };
        attention(q: &TraceTensor, k: &TraceTensor, v: &TraceTensor, scale: f32) => Op::Attention;
        upsample_nearest2d(x: &TraceTensor, out_h: usize, out_w: usize) => Op::UpsampleNearest2d;
        pad2d(x: &TraceTensor, left: usize, right: usize, top: usize, bottom: usize) => Op::Pad2d;
        mean_dim(t: &TraceTensor, dim: usize) => Op::MeanDim { dim };
        max_pool2d(x: &TraceTensor, kernel: usize, stride: usize, padding: usize)
            => Op::MaxPool2d { kernel };

        // fused primitives
        group_norm_act(x: &TraceTensor, groups: usize, gamma: Option<&TraceTensor>,
            beta: Option<&TraceTensor>, eps: f32, act: Option<Unary>)
            => Op::GroupNorm { groups, affine: gamma.is_some() || beta.is_some(), act };
        linear_ext(x: &TraceTensor, w: &TraceTensor, bias: Option<&TraceTensor>,
            epi: LinearEpilogue<'_, TraceTensor>)
            => Op::Linear {
                bias: bias.is_some(),
                residual: epi.residual.is_some(),
                geglu: epi.geglu,
                scaled: epi.scale != 1.0,
            };
        conv2d_ext(x: &TraceTensor, w: &TraceTensor, bias: Option<&TraceTensor>, p: Conv2dParams,
            epi: ConvEpilogue<'_, TraceTensor>)
            => Op::Conv2d {
                params: p,
                bias: bias.is_some(),
                temb: epi.temb.is_some(),
                residual: epi.residual.is_some(),
                scaled: epi.scale != 1.0,
            };
        timestep_embedding(t: &TraceTensor, dim: usize, flip_sin_to_cos: bool,
            downscale_freq_shift: f32) => Op::TimestepEmbedding;
        cfg_ddim_step(out: &TraceTensor, z: &TraceTensor, frame_offset: usize,
            coeffs: &TraceTensor) => Op::CfgDdim;

        // region codebook attention
        rca_attention(q: &TraceTensor, k: &TraceTensor, v: &TraceTensor, heads: usize, scale: f32)
            => Op::RcaAttention { heads };
        rca_temporal_query(x: &TraceTensor, a_s: &TraceTensor, bank: &TraceTensor)
            => Op::RcaTemporalQuery;
        rca_motion_sum(a_s: &TraceTensor, a_t: &TraceTensor,
            f_id: Option<(&TraceTensor, usize)>) => Op::RcaMotionSum;
        rca_merge(f_in: &TraceTensor, tokens: &TraceTensor, mask_hidden: &TraceTensor,
            mask_w: &TraceTensor, mask_b: Option<&TraceTensor>) => Op::RcaMerge;
    }
}
