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
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A traced tensor: an id in the trace and its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceTensor {
    id: usize,
    shape: Vec<usize>,
}

impl TraceTensor {
    /// The tensor's id in the trace (stable across cuts).
    pub fn id(&self) -> usize {
        self.id
    }
}

impl TensorLike for TraceTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

struct Recorded {
    op: Op,
    inputs: Vec<usize>,
    output: usize,
}

struct State {
    leaf_kind: TensorKind,
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

fn st(t: &TraceTensor) -> ShapeTensor {
    ShapeTensor::new(&t.shape)
}

impl TraceBackend {
    /// A new trace; leaves start as [`TensorKind::Weight`].
    pub fn new() -> Self {
        TraceBackend {
            state: Arc::new(Mutex::new(State {
                leaf_kind: TensorKind::Weight,
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
            shape: shape.to_vec(),
        }
    }

    fn record(&self, op: Op, inputs: &[&TraceTensor], out: ShapeTensor) -> Result<TraceTensor> {
        let mut s = self.lock();
        let id = s.tensors.len();
        let shape = out.shape().to_vec();
        s.tensors.push((shape.clone(), None));
        s.pending.push(Recorded {
            op,
            inputs: inputs.iter().map(|t| t.id).collect(),
            output: id,
        });
        Ok(TraceTensor { id, shape })
    }

    /// The ops recorded since the previous cut, as a graph named `name`. Tensors they read
    /// that they did not produce become leaves: weights stay weights, everything else
    /// (uploads, results of earlier cuts) is an input. `outputs` live to the graph's end.
    pub fn cut(&self, name: &str, outputs: &[&TraceTensor]) -> Graph {
        let mut s = self.lock();
        let pending = std::mem::take(&mut s.pending);
        let mut g = Graph::new(name);
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

    fn reshape(&self, t: &TraceTensor, shape: &[usize]) -> Result<TraceTensor> {
        let o = ShapeBackend.reshape(&st(t), shape)?;
        self.record(Op::Reshape, &[t], o)
    }

    fn permute(&self, t: &TraceTensor, dims: &[usize]) -> Result<TraceTensor> {
        let o = ShapeBackend.permute(&st(t), dims)?;
        self.record(Op::Permute, &[t], o)
    }

    fn concat(&self, ts: &[&TraceTensor], dim: usize) -> Result<TraceTensor> {
        let shapes: Vec<ShapeTensor> = ts.iter().map(|t| st(t)).collect();
        let refs: Vec<&ShapeTensor> = shapes.iter().collect();
        let o = ShapeBackend.concat(&refs, dim)?;
        self.record(Op::Concat { dim }, ts, o)
    }

    fn narrow(&self, t: &TraceTensor, dim: usize, start: usize, len: usize) -> Result<TraceTensor> {
        let o = ShapeBackend.narrow(&st(t), dim, start, len)?;
        self.record(Op::Narrow { dim }, &[t], o)
    }

    fn index_select(&self, t: &TraceTensor, dim: usize, idx: &[usize]) -> Result<TraceTensor> {
        let o = ShapeBackend.index_select(&st(t), dim, idx)?;
        self.record(Op::IndexSelect { dim }, &[t], o)
    }

    fn unary(&self, t: &TraceTensor, op: Unary) -> Result<TraceTensor> {
        let o = ShapeBackend.unary(&st(t), op)?;
        self.record(Op::Unary(op), &[t], o)
    }

    fn binary(&self, a: &TraceTensor, b: &TraceTensor, op: Binary) -> Result<TraceTensor> {
        let o = ShapeBackend.binary(&st(a), &st(b), op)?;
        self.record(Op::Binary(op), &[a, b], o)
    }

    fn affine(&self, t: &TraceTensor, mul: f32, add: f32) -> Result<TraceTensor> {
        let o = ShapeBackend.affine(&st(t), mul, add)?;
        self.record(Op::Affine, &[t], o)
    }

    fn softmax_last(&self, t: &TraceTensor) -> Result<TraceTensor> {
        let o = ShapeBackend.softmax_last(&st(t))?;
        self.record(Op::Softmax, &[t], o)
    }

    fn group_norm(
        &self,
        x: &TraceTensor,
        groups: usize,
        gamma: Option<&TraceTensor>,
        beta: Option<&TraceTensor>,
        eps: f32,
    ) -> Result<TraceTensor> {
        let (g, b) = (gamma.map(st), beta.map(st));
        let o = ShapeBackend.group_norm(&st(x), groups, g.as_ref(), b.as_ref(), eps)?;
        let mut ins = vec![x];
        ins.extend(gamma);
        ins.extend(beta);
        self.record(
            Op::GroupNorm {
                groups,
                affine: gamma.is_some() || beta.is_some(),
                act: None,
            },
            &ins,
            o,
        )
    }

    fn layer_norm(
        &self,
        x: &TraceTensor,
        gamma: Option<&TraceTensor>,
        beta: Option<&TraceTensor>,
        eps: f32,
    ) -> Result<TraceTensor> {
        let (g, b) = (gamma.map(st), beta.map(st));
        let o = ShapeBackend.layer_norm(&st(x), g.as_ref(), b.as_ref(), eps)?;
        let mut ins = vec![x];
        ins.extend(gamma);
        ins.extend(beta);
        self.record(
            Op::LayerNorm {
                affine: gamma.is_some() || beta.is_some(),
            },
            &ins,
            o,
        )
    }

    fn linear(
        &self,
        x: &TraceTensor,
        w: &TraceTensor,
        bias: Option<&TraceTensor>,
    ) -> Result<TraceTensor> {
        let b = bias.map(st);
        let o = ShapeBackend.linear(&st(x), &st(w), b.as_ref())?;
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.record(
            Op::Linear {
                bias: bias.is_some(),
                residual: false,
                geglu: false,
                scaled: false,
            },
            &ins,
            o,
        )
    }

    fn matmul(&self, a: &TraceTensor, b: &TraceTensor) -> Result<TraceTensor> {
        let o = ShapeBackend.matmul(&st(a), &st(b))?;
        self.record(Op::Matmul, &[a, b], o)
    }

    fn conv2d(
        &self,
        x: &TraceTensor,
        w: &TraceTensor,
        bias: Option<&TraceTensor>,
        p: Conv2dParams,
    ) -> Result<TraceTensor> {
        let b = bias.map(st);
        let o = ShapeBackend.conv2d(&st(x), &st(w), b.as_ref(), p)?;
        let mut ins = vec![x, w];
        ins.extend(bias);
        self.record(
            Op::Conv2d {
                params: p,
                bias: bias.is_some(),
                temb: false,
                residual: false,
                scaled: false,
            },
            &ins,
            o,
        )
    }

    fn attention(
        &self,
        q: &TraceTensor,
        k: &TraceTensor,
        v: &TraceTensor,
        scale: f32,
    ) -> Result<TraceTensor> {
        let o = ShapeBackend.attention(&st(q), &st(k), &st(v), scale)?;
        self.record(Op::Attention, &[q, k, v], o)
    }

    fn upsample_nearest2d(
        &self,
        x: &TraceTensor,
        out_h: usize,
        out_w: usize,
    ) -> Result<TraceTensor> {
        let o = ShapeBackend.upsample_nearest2d(&st(x), out_h, out_w)?;
        self.record(Op::UpsampleNearest2d, &[x], o)
    }

    fn pad2d(
        &self,
        x: &TraceTensor,
        left: usize,
        right: usize,
        top: usize,
        bottom: usize,
    ) -> Result<TraceTensor> {
        let o = ShapeBackend.pad2d(&st(x), left, right, top, bottom)?;
        self.record(Op::Pad2d, &[x], o)
    }

    fn mean_dim(&self, t: &TraceTensor, dim: usize) -> Result<TraceTensor> {
        let o = ShapeBackend.mean_dim(&st(t), dim)?;
        self.record(Op::MeanDim { dim }, &[t], o)
    }

    fn timestep_embedding(
        &self,
        t: &TraceTensor,
        dim: usize,
        flip_sin_to_cos: bool,
        downscale_freq_shift: f32,
    ) -> Result<TraceTensor> {
        let o =
            ShapeBackend.timestep_embedding(&st(t), dim, flip_sin_to_cos, downscale_freq_shift)?;
        self.record(Op::TimestepEmbedding, &[t], o)
    }

    fn cfg_ddim_step(
        &self,
        out: &TraceTensor,
        z: &TraceTensor,
        frame_offset: usize,
        coeffs: &TraceTensor,
    ) -> Result<TraceTensor> {
        let o = ShapeBackend.cfg_ddim_step(&st(out), &st(z), frame_offset, &st(coeffs))?;
        self.record(Op::CfgDdim, &[out, z, coeffs], o)
    }

    fn max_pool2d(
        &self,
        x: &TraceTensor,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<TraceTensor> {
        let o = ShapeBackend.max_pool2d(&st(x), kernel, stride, padding)?;
        self.record(Op::MaxPool2d { kernel }, &[x], o)
    }

    fn group_norm_act(
        &self,
        x: &TraceTensor,
        groups: usize,
        gamma: Option<&TraceTensor>,
        beta: Option<&TraceTensor>,
        eps: f32,
        act: Option<Unary>,
    ) -> Result<TraceTensor> {
        let (g, b) = (gamma.map(st), beta.map(st));
        let o = ShapeBackend.group_norm_act(&st(x), groups, g.as_ref(), b.as_ref(), eps, act)?;
        let mut ins = vec![x];
        ins.extend(gamma);
        ins.extend(beta);
        self.record(
            Op::GroupNorm {
                groups,
                affine: gamma.is_some() || beta.is_some(),
                act,
            },
            &ins,
            o,
        )
    }

    fn linear_ext(
        &self,
        x: &TraceTensor,
        w: &TraceTensor,
        bias: Option<&TraceTensor>,
        epi: LinearEpilogue<'_, TraceTensor>,
    ) -> Result<TraceTensor> {
        let b = bias.map(st);
        let r = epi.residual.map(st);
        let shape_epi = LinearEpilogue {
            residual: r.as_ref(),
            scale: epi.scale,
            geglu: epi.geglu,
        };
        let o = ShapeBackend.linear_ext(&st(x), &st(w), b.as_ref(), shape_epi)?;
        let mut ins = vec![x, w];
        ins.extend(bias);
        ins.extend(epi.residual);
        self.record(
            Op::Linear {
                bias: bias.is_some(),
                residual: epi.residual.is_some(),
                geglu: epi.geglu,
                scaled: epi.scale != 1.0,
            },
            &ins,
            o,
        )
    }

    fn conv2d_ext(
        &self,
        x: &TraceTensor,
        w: &TraceTensor,
        bias: Option<&TraceTensor>,
        p: Conv2dParams,
        epi: ConvEpilogue<'_, TraceTensor>,
    ) -> Result<TraceTensor> {
        let b = bias.map(st);
        let t = epi.temb.map(st);
        let r = epi.residual.map(st);
        let shape_epi = ConvEpilogue {
            temb: t.as_ref(),
            residual: r.as_ref(),
            scale: epi.scale,
        };
        let o = ShapeBackend.conv2d_ext(&st(x), &st(w), b.as_ref(), p, shape_epi)?;
        let mut ins = vec![x, w];
        ins.extend(bias);
        ins.extend(epi.temb);
        ins.extend(epi.residual);
        self.record(
            Op::Conv2d {
                params: p,
                bias: bias.is_some(),
                temb: epi.temb.is_some(),
                residual: epi.residual.is_some(),
                scaled: epi.scale != 1.0,
            },
            &ins,
            o,
        )
    }

    fn rca_attention(
        &self,
        q: &TraceTensor,
        k: &TraceTensor,
        v: &TraceTensor,
        heads: usize,
        scale: f32,
    ) -> Result<TraceTensor> {
        let o = ShapeBackend.rca_attention(&st(q), &st(k), &st(v), heads, scale)?;
        self.record(Op::RcaAttention { heads }, &[q, k, v], o)
    }

    fn rca_temporal_query(
        &self,
        x: &TraceTensor,
        a_s: &TraceTensor,
        bank: &TraceTensor,
    ) -> Result<TraceTensor> {
        let o = ShapeBackend.rca_temporal_query(&st(x), &st(a_s), &st(bank))?;
        self.record(Op::RcaTemporalQuery, &[x, a_s, bank], o)
    }

    fn rca_motion_sum(
        &self,
        a_s: &TraceTensor,
        a_t: &TraceTensor,
        f_id: Option<(&TraceTensor, usize)>,
    ) -> Result<TraceTensor> {
        let f = f_id.map(|(f, r)| (st(f), r));
        let o =
            ShapeBackend.rca_motion_sum(&st(a_s), &st(a_t), f.as_ref().map(|(f, r)| (f, *r)))?;
        let mut ins = vec![a_s, a_t];
        ins.extend(f_id.map(|(f, _)| f));
        self.record(Op::RcaMotionSum, &ins, o)
    }

    fn rca_merge(
        &self,
        f_in: &TraceTensor,
        tokens: &TraceTensor,
        mask_hidden: &TraceTensor,
        mask_w: &TraceTensor,
        mask_b: Option<&TraceTensor>,
    ) -> Result<TraceTensor> {
        let b = mask_b.map(st);
        let o = ShapeBackend.rca_merge(
            &st(f_in),
            &st(tokens),
            &st(mask_hidden),
            &st(mask_w),
            b.as_ref(),
        )?;
        let mut ins = vec![f_in, tokens, mask_hidden, mask_w];
        ins.extend(mask_b);
        self.record(Op::RcaMerge, &ins, o)
    }
}
