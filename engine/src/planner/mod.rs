//! Static memory planning of a [`Graph`]: every activation gets an offset in ONE arena.
//!
//! ```ignore
//! let plan = plan(&graph);                 // lifetimes + offsets
//! plan.peak_bytes;                          // arena size
//! plan.naive_bytes;                         // every activation in its own allocation
//! plan.max_live;                            // the largest set of simultaneously live tensors
//! ```
//!
//! - Lifetime of an activation's storage (a tensor and its `reshape` aliases): [producing op,
//!   last consuming op], inclusive; graph outputs live to the last op; a tensor nobody reads
//!   lives during its own op. An op's output never shares memory with its inputs.
//! - Placement: interval colouring. Buffers are placed one at a time, each at an offset that
//!   fits between the already-placed buffers whose lifetimes overlap its own: the lowest such
//!   offset (TFLite's "greedy by size" when sorted by size) or the smallest gap (best fit).
//!   [`plan`] runs every [`STRATEGIES`] pair of order (size, first use, lifetime, size ×
//!   lifetime) and fit, and keeps the smallest arena; if that is above the largest live set
//!   (the lower bound), a seeded local search moves buffers in the order (a buffer that
//!   touches the top earlier, or any buffer anywhere), keeping moves that do not grow the arena ([`SEARCH_ROUNDS`] rounds). The optimum is NP-hard to find and can
//!   exceed the largest live set, so the bound is not always reached.
//!   Sizes and offsets are multiples of [`ALIGNMENT`].
//! - Weights and graph inputs are not in the arena.
//!
//! The arena can never be smaller than the largest live set (aligned); [`Plan::max_live`]
//! reports it so the planner's fragmentation is visible.

pub use crate::graph::{h100_floor_seconds, H100_BF16_FLOPS, H100_HBM_BYTES_PER_S};
use crate::graph::{ClassCost, Graph, OpClass, TensorKind};
pub use crate::placement::{
    align_up, place, place_all, place_in_order, placement_order, Buffer, Fit, LiveSet, Order, Plan,
    ALIGNMENT, SEARCH_ROUNDS, STRATEGIES,
};
use serde::Serialize;

/// What a plan is for: one graph of one model at one geometry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct PlanKey {
    /// `preset paper`, `preset tiny` or a weights directory.
    pub model: String,
    pub graph: String,
    pub width: usize,
    pub height: usize,
    /// Frames per denoiser call (M + F).
    pub frames: usize,
    /// CFG batch (2).
    pub batch: usize,
}

/// The arena buffers of `g` with their lifetimes (offsets 0), and each tensor's buffer.
pub fn lifetimes(g: &Graph) -> (Vec<Buffer>, Vec<Option<usize>>) {
    let mut buffer_of: Vec<Option<usize>> = vec![None; g.tensors.len()];
    let mut buffers: Vec<Buffer> = Vec::new();
    for (i, t) in g.tensors.iter().enumerate() {
        if t.kind != TensorKind::Activation {
            continue;
        }
        if t.storage == i {
            let first = t.producer.expect("activations have a producer");
            let bytes = t.bytes();
            buffer_of[i] = Some(buffers.len());
            buffers.push(Buffer {
                tensor: i,
                bytes,
                size: align_up(bytes),
                first,
                last: first,
                offset: 0,
            });
        } else {
            // aliases come after their root
            buffer_of[i] = buffer_of[t.storage];
        }
    }
    for (j, n) in g.nodes.iter().enumerate() {
        for &i in &n.inputs {
            if let Some(b) = buffer_of[i] {
                buffers[b].last = buffers[b].last.max(j);
            }
        }
    }
    let end = g.nodes.len().saturating_sub(1);
    for &o in &g.outputs {
        if let Some(b) = buffer_of[o] {
            buffers[b].last = end;
        }
    }
    (buffers, buffer_of)
}

/// Plan `g` (see the module docs).
pub fn plan(g: &Graph) -> Plan {
    let (buffers, buffer_of) = lifetimes(g);
    Plan {
        buffer_of,
        ..place_all(buffers, g.nodes.len())
    }
}
/// The cost figures of a row of the class or kernel table.
#[derive(Clone, Debug, Serialize)]
pub struct CostFigures {
    pub ops: usize,
    pub flops: u64,
    /// FLOPs the kernels execute (`flops` plus the split passes of f32 products;
    /// [`crate::graph::Node::work_flops`]).
    pub work_flops: u64,
    pub bytes: u64,
    /// FLOPs per byte.
    pub intensity: f64,
    /// max(work FLOPs / 989 TFLOP/s, bytes / 3.35 TB/s) over the row's ops together, seconds.
    pub h100_floor_s: f64,
}

impl CostFigures {
    fn new(c: ClassCost) -> Self {
        CostFigures {
            ops: c.ops,
            flops: c.flops,
            work_flops: c.work_flops,
            bytes: c.bytes,
            intensity: if c.bytes == 0 {
                0.0
            } else {
                c.flops as f64 / c.bytes as f64
            },
            h100_floor_s: h100_floor_seconds(c.work_flops, c.bytes),
        }
    }
}

/// One row of the cost table (its figures read as fields of the row).
#[derive(Clone, Debug, Serialize)]
pub struct ClassRow {
    pub class: OpClass,
    #[serde(flatten)]
    pub cost: CostFigures,
}

/// One row of the per-kernel cost table (its figures read as fields of the row).
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    /// `kernels/cuda/<kernel>.cu`
    pub kernel: &'static str,
    #[serde(flatten)]
    pub cost: CostFigures,
}

impl std::ops::Deref for ClassRow {
    type Target = CostFigures;
    fn deref(&self) -> &CostFigures {
        &self.cost
    }
}

impl std::ops::Deref for KernelRow {
    type Target = CostFigures;
    fn deref(&self) -> &CostFigures {
        &self.cost
    }
}

/// One buffer of the arena: the tensor that owns it, the op that writes it and where it lives.
#[derive(Clone, Debug, Serialize)]
pub struct BufferRow {
    /// Tensor id in the graph.
    pub tensor: usize,
    /// `#i op → shape` of the op that writes it.
    pub op: String,
    pub shape: Vec<usize>,
    /// Exact bytes at the activation storage.
    pub bytes: u64,
    pub offset: u64,
    /// First and last op (inclusive) during which it holds its value.
    pub first: usize,
    pub last: usize,
}

/// Everything `cyberhost plan` reports for one graph.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    pub key: PlanKey,
    /// Storage of the graph's activations and inputs (`bf16` | `f32`; weights are bf16).
    pub activations: &'static str,
    pub ops: usize,
    pub flops: u64,
    /// FLOPs the kernels execute (`flops` + split passes of f32 products).
    pub work_flops: u64,
    pub bytes: u64,
    /// Bytes of the weights the graph reads (bf16).
    pub weight_bytes: u64,
    /// Bytes of its inputs (at the activation storage).
    pub input_bytes: u64,
    pub peak_bytes: u64,
    pub naive_bytes: u64,
    pub max_live: LiveSet,
    /// `#i op → shape` of the max-live op.
    pub max_live_op: String,
    pub classes: Vec<ClassRow>,
    /// Per CUDA kernel module (`kernels/cuda/<kernel>.cu`), largest floor first.
    pub kernels: Vec<KernelRow>,
    /// Sum of the class floors.
    pub h100_floor_s: f64,
    /// Sum over ops of each op's own floor (≥ `h100_floor_s`: no overlap between ops).
    pub h100_floor_per_op_s: f64,
    /// Every arena buffer, largest first (fused attention never stores its scores, so no
    /// buffer holds a B·H·Lq·Lk matrix: `tests/planner.rs` checks it).
    pub buffers: Vec<BufferRow>,
}

impl PlanReport {
    pub fn new(key: PlanKey, g: &Graph, plan: &Plan) -> Self {
        let classes: Vec<ClassRow> = g
            .cost_by_class()
            .into_iter()
            .map(|(class, c)| ClassRow {
                class,
                cost: CostFigures::new(c),
            })
            .collect();
        let max_live_op = if g.nodes.is_empty() {
            String::new()
        } else {
            g.describe_node(plan.max_live.op)
        };
        let kernels = g
            .cost_by_kernel()
            .into_iter()
            .map(|(kernel, c)| KernelRow {
                kernel,
                cost: CostFigures::new(c),
            })
            .collect();
        let mut buffers: Vec<BufferRow> = plan
            .buffers
            .iter()
            .map(|b| BufferRow {
                tensor: b.tensor,
                op: g.describe_node(b.first),
                shape: g.tensors[b.tensor].shape.clone(),
                bytes: b.bytes,
                offset: b.offset,
                first: b.first,
                last: b.last,
            })
            .collect();
        buffers.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.tensor.cmp(&b.tensor)));
        PlanReport {
            kernels,
            key,
            activations: g.activations.suffix(),
            ops: g.nodes.len(),
            flops: g.total_flops(),
            work_flops: g.total_work_flops(),
            bytes: g.total_bytes(),
            weight_bytes: g.kind_bytes(TensorKind::Weight),
            input_bytes: g.kind_bytes(TensorKind::Input),
            peak_bytes: plan.peak_bytes,
            naive_bytes: plan.naive_bytes,
            max_live: plan.max_live,
            max_live_op,
            h100_floor_s: classes.iter().map(|c| c.h100_floor_s).sum(),
            h100_floor_per_op_s: g
                .nodes
                .iter()
                .map(|n| h100_floor_seconds(n.work_flops, n.bytes))
                .sum(),
            classes,
            buffers,
        }
    }
}
