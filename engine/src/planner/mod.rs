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

use crate::graph::{ClassCost, Graph, OpClass, TensorId, TensorKind};
use serde::Serialize;

/// Offsets and sizes in the arena are multiples of this (bytes).
pub const ALIGNMENT: u64 = 256;

/// H100 SXM dense bf16 tensor-core peak (FLOP/s).
pub const H100_BF16_FLOPS: f64 = 989e12;
/// H100 SXM HBM3 bandwidth (bytes/s).
pub const H100_HBM_BYTES_PER_S: f64 = 3.35e12;

/// Roofline floor on an H100: max(FLOPs / peak, bytes / bandwidth), seconds.
pub fn h100_floor_seconds(flops: u64, bytes: u64) -> f64 {
    (flops as f64 / H100_BF16_FLOPS).max(bytes as f64 / H100_HBM_BYTES_PER_S)
}

pub fn align_up(bytes: u64) -> u64 {
    bytes.div_ceil(ALIGNMENT) * ALIGNMENT
}

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

/// One arena allocation: the storage of an activation and its aliases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Buffer {
    /// The tensor owning the storage.
    pub tensor: TensorId,
    /// Exact bytes (bf16).
    pub bytes: u64,
    /// `bytes` rounded up to [`ALIGNMENT`].
    pub size: u64,
    /// First and last op (inclusive) during which it must hold its value.
    pub first: usize,
    pub last: usize,
    pub offset: u64,
}

impl Buffer {
    pub fn overlaps_in_time(&self, o: &Buffer) -> bool {
        self.first <= o.last && o.first <= self.last
    }
    pub fn overlaps_in_memory(&self, o: &Buffer) -> bool {
        self.offset < o.offset + o.size && o.offset < self.offset + self.size
    }
}

/// The live set at one op.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LiveSet {
    /// The op (node index).
    pub op: usize,
    /// Sum of the live buffers' exact bytes.
    pub bytes: u64,
    /// Sum of their aligned sizes.
    pub aligned_bytes: u64,
    pub count: usize,
}

/// A memory plan (see the module docs).
#[derive(Clone, Debug)]
pub struct Plan {
    pub buffers: Vec<Buffer>,
    /// Per tensor of the graph: its buffer (through `reshape` aliases), `None` for
    /// weights and inputs.
    pub buffer_of: Vec<Option<usize>>,
    /// Arena size: max over buffers of offset + size.
    pub peak_bytes: u64,
    /// Sum of all aligned buffer sizes (every activation allocated separately).
    pub naive_bytes: u64,
    /// The op with the largest aligned live set (a lower bound of `peak_bytes`).
    pub max_live: LiveSet,
    /// The placement that gave the smallest arena (before local search).
    pub strategy: (Order, Fit),
    /// Local-search rounds spent (0 when a strategy reached the live-set bound).
    pub search_rounds: usize,
}

impl Plan {
    /// Byte offset of tensor `t` in the arena (`None`: weight or input).
    pub fn offset_of(&self, t: TensorId) -> Option<u64> {
        self.buffer_of[t].map(|b| self.buffers[b].offset)
    }

    /// The live set at every op.
    pub fn live_sets(&self, num_ops: usize) -> Vec<LiveSet> {
        live_sets(&self.buffers, num_ops)
    }
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

fn live_sets(buffers: &[Buffer], num_ops: usize) -> Vec<LiveSet> {
    let mut d_bytes = vec![0i128; num_ops + 1];
    let mut d_aligned = vec![0i128; num_ops + 1];
    let mut d_count = vec![0i64; num_ops + 1];
    for b in buffers {
        d_bytes[b.first] += b.bytes as i128;
        d_bytes[b.last + 1] -= b.bytes as i128;
        d_aligned[b.first] += b.size as i128;
        d_aligned[b.last + 1] -= b.size as i128;
        d_count[b.first] += 1;
        d_count[b.last + 1] -= 1;
    }
    let (mut bytes, mut aligned, mut count) = (0i128, 0i128, 0i64);
    (0..num_ops)
        .map(|op| {
            bytes += d_bytes[op];
            aligned += d_aligned[op];
            count += d_count[op];
            LiveSet {
                op,
                bytes: bytes as u64,
                aligned_bytes: aligned as u64,
                count: count as usize,
            }
        })
        .collect()
}

/// The order buffers are placed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Largest first (ties: earlier first use).
    Size,
    /// Execution order of first use (ties: larger first).
    FirstUse,
    /// Longest lifetime first (ties: larger first).
    Lifetime,
    /// Largest size × lifetime first.
    Area,
}

/// Where a buffer goes among the gaps left by the placed buffers it overlaps in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// The lowest offset that fits.
    Lowest,
    /// The smallest gap that fits (the top of the arena when none does).
    Best,
}

/// Every strategy [`plan`] tries.
pub const STRATEGIES: [(Order, Fit); 8] = [
    (Order::Size, Fit::Lowest),
    (Order::Size, Fit::Best),
    (Order::FirstUse, Fit::Lowest),
    (Order::FirstUse, Fit::Best),
    (Order::Lifetime, Fit::Lowest),
    (Order::Lifetime, Fit::Best),
    (Order::Area, Fit::Lowest),
    (Order::Area, Fit::Best),
];

/// Place `buffers` (lifetimes set) one at a time in `order`, each at the `fit` offset
/// among the buffers already placed that overlap it in time; returns the peak.
pub fn place(buffers: &mut [Buffer], order: Order, fit: Fit) -> u64 {
    let idx = placement_order(buffers, order);
    place_in_order(buffers, &idx, fit)
}

/// Buffer indices sorted by `order`.
pub fn placement_order(buffers: &[Buffer], order: Order) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..buffers.len()).collect();
    let len = |b: &Buffer| (b.last - b.first + 1) as u64;
    idx.sort_by(|&a, &b| {
        let (x, y) = (&buffers[a], &buffers[b]);
        let primary = match order {
            Order::Size => y.size.cmp(&x.size).then(x.first.cmp(&y.first)),
            Order::FirstUse => x.first.cmp(&y.first).then(y.size.cmp(&x.size)),
            Order::Lifetime => len(y).cmp(&len(x)).then(y.size.cmp(&x.size)),
            Order::Area => {
                (y.size as u128 * len(y) as u128).cmp(&(x.size as u128 * len(x) as u128))
            }
        };
        primary.then(a.cmp(&b))
    });
    idx
}

/// Place the buffers in the order `idx`, each at the `fit` offset among the buffers
/// already placed that overlap it in time; returns the peak.
pub fn place_in_order(buffers: &mut [Buffer], idx: &[usize], fit: Fit) -> u64 {
    let mut placed: Vec<usize> = Vec::with_capacity(buffers.len());
    let mut peak = 0u64;
    let mut conflicts: Vec<(u64, u64)> = Vec::new();
    for &i in idx {
        let b = &buffers[i];
        conflicts.clear();
        conflicts.extend(
            placed
                .iter()
                .map(|&p| &buffers[p])
                .filter(|p| p.overlaps_in_time(b))
                .map(|p| (p.offset, p.offset + p.size)),
        );
        conflicts.sort_unstable();
        // gaps between the conflicting intervals, lowest first; the last one is unbounded
        let mut lowest: Option<u64> = None;
        let mut best: Option<(u64, u64)> = None; // (gap, offset)
        let mut cursor = 0u64;
        for &(start, end) in &conflicts {
            if start >= cursor + b.size {
                let gap = start - cursor;
                lowest.get_or_insert(cursor);
                if best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(end);
        }
        let offset = match fit {
            Fit::Lowest => lowest.unwrap_or(cursor),
            Fit::Best => best.map_or(cursor, |(_, o)| o),
        };
        buffers[i].offset = offset;
        peak = peak.max(offset + buffers[i].size);
        placed.push(i);
    }
    peak
}

/// Rounds of local search [`plan`] spends when no strategy reaches the live-set bound.
pub const SEARCH_ROUNDS: usize = 400;

/// Plan `g` (see the module docs).
pub fn plan(g: &Graph) -> Plan {
    let (buffers, buffer_of) = lifetimes(g);
    Plan {
        buffer_of,
        ..place_all(buffers, g.nodes.len())
    }
}

/// Place buffers whose lifetimes lie in `0..num_ops` (the strategies, then local search; see
/// the module docs). `buffer_of` of the result is empty. Also used for the allocations a CUDA
/// step records (`backends::cuda::arena`).
pub fn place_all(buffers: Vec<Buffer>, num_ops: usize) -> Plan {
    let buffer_of = Vec::new();
    let live = live_sets(&buffers, num_ops);
    let max_live = live
        .iter()
        .copied()
        .max_by(|a, b| a.aligned_bytes.cmp(&b.aligned_bytes).then(b.op.cmp(&a.op)))
        .unwrap_or_default();
    let naive_bytes = buffers.iter().map(|b| b.size).sum();
    // every strategy; stop at the first that reaches the lower bound
    let mut best: Option<(u64, Vec<usize>, (Order, Fit))> = None;
    for (order, fit) in STRATEGIES {
        let idx = placement_order(&buffers, order);
        let mut b = buffers.clone();
        let peak = place_in_order(&mut b, &idx, fit);
        if best.as_ref().is_none_or(|(p, ..)| peak < *p) {
            best = Some((peak, idx, (order, fit)));
        }
        if peak <= max_live.aligned_bytes {
            break;
        }
    }
    let Some((mut peak, mut idx, strategy)) = best else {
        return Plan {
            buffers,
            buffer_of,
            peak_bytes: 0,
            naive_bytes,
            max_live,
            strategy: STRATEGIES[0],
            search_rounds: 0,
        };
    };
    let fit = strategy.1;
    // local search: move a buffer that touches the top of the arena earlier in the order
    let mut placed = buffers.clone();
    place_in_order(&mut placed, &idx, fit);
    let mut rng = 0x5EED_u64;
    let mut rounds = 0;
    while peak > max_live.aligned_bytes && rounds < SEARCH_ROUNDS {
        rounds += 1;
        let top: Vec<usize> = idx
            .iter()
            .enumerate()
            .filter(|(_, &i)| placed[i].offset + placed[i].size == peak)
            .map(|(k, _)| k)
            .collect();
        // half the moves lift a buffer at the top earlier, half move any buffer anywhere
        let (from, to) = if rounds % 2 == 1 {
            let from = top[(splitmix(&mut rng) % top.len() as u64) as usize];
            if from == 0 {
                continue;
            }
            (from, (splitmix(&mut rng) % from as u64) as usize)
        } else {
            let n = idx.len() as u64;
            (
                (splitmix(&mut rng) % n) as usize,
                (splitmix(&mut rng) % n) as usize,
            )
        };
        let mut cand = idx.clone();
        let moved = cand.remove(from);
        cand.insert(to, moved);
        let mut b = buffers.clone();
        let p = place_in_order(&mut b, &cand, fit);
        if p <= peak {
            (peak, idx, placed) = (p, cand, b);
        }
    }
    Plan {
        buffers: placed,
        buffer_of,
        peak_bytes: peak,
        naive_bytes,
        max_live,
        strategy,
        search_rounds: rounds,
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One row of the cost table.
#[derive(Clone, Debug, Serialize)]
pub struct ClassRow {
    pub class: OpClass,
    pub ops: usize,
    pub flops: u64,
    pub bytes: u64,
    /// FLOPs per byte.
    pub intensity: f64,
    /// max(FLOPs / 989 TFLOP/s, bytes / 3.35 TB/s), seconds.
    pub h100_floor_s: f64,
}

impl ClassRow {
    fn new(class: OpClass, c: ClassCost) -> Self {
        ClassRow {
            class,
            ops: c.ops,
            flops: c.flops,
            bytes: c.bytes,
            intensity: if c.bytes == 0 {
                0.0
            } else {
                c.flops as f64 / c.bytes as f64
            },
            h100_floor_s: h100_floor_seconds(c.flops, c.bytes),
        }
    }
}

/// One row of the per-kernel cost table.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    /// `kernels/cuda/<kernel>.cu`
    pub kernel: &'static str,
    pub ops: usize,
    pub flops: u64,
    pub bytes: u64,
    /// FLOPs per byte.
    pub intensity: f64,
    /// max(FLOPs / 989 TFLOP/s, bytes / 3.35 TB/s) over the kernel's launches together, seconds.
    pub h100_floor_s: f64,
}

/// Everything `cyberhost plan` reports for one graph.
#[derive(Clone, Debug, Serialize)]
pub struct PlanReport {
    pub key: PlanKey,
    pub ops: usize,
    pub flops: u64,
    pub bytes: u64,
    /// Bytes of the weights the graph reads (bf16).
    pub weight_bytes: u64,
    /// Bytes of its inputs (bf16).
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
}

impl PlanReport {
    pub fn new(key: PlanKey, g: &Graph, plan: &Plan) -> Self {
        let classes: Vec<ClassRow> = g
            .cost_by_class()
            .into_iter()
            .map(|(c, cost)| ClassRow::new(c, cost))
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
                ops: c.ops,
                flops: c.flops,
                bytes: c.bytes,
                intensity: if c.bytes == 0 {
                    0.0
                } else {
                    c.flops as f64 / c.bytes as f64
                },
                h100_floor_s: h100_floor_seconds(c.flops, c.bytes),
            })
            .collect();
        PlanReport {
            kernels,
            key,
            ops: g.nodes.len(),
            flops: g.total_flops(),
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
                .map(|n| h100_floor_seconds(n.flops, n.bytes))
                .sum(),
            classes,
        }
    }
}
