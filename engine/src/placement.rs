//! Arena placement: buffers with lifetimes (first and last op, inclusive) get offsets in one
//! arena. The algorithm the [`planner`](crate::planner) runs on a traced graph and the CUDA
//! backend runs on the allocations of a recorded step (`backends::cuda::arena`); it knows
//! nothing of either (a leaf module: see docs/architecture.md). Placement strategies and the
//! local search are described in the planner's module docs.

use serde::Serialize;

/// Index of a tensor in the graph or recording that owns a buffer.
pub type TensorId = usize;

/// Offsets and sizes in the arena are multiples of this (bytes).
pub const ALIGNMENT: u64 = 256;

pub fn align_up(bytes: u64) -> u64 {
    bytes.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// One arena allocation: the storage of an activation and its aliases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Buffer {
    /// The tensor owning the storage.
    pub tensor: TensorId,
    /// Exact bytes (at the tensor's storage).
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

/// Every strategy [`place_all`] tries.
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

/// Rounds of local search [`place_all`] spends when no strategy reaches the live-set bound.
pub const SEARCH_ROUNDS: usize = 400;

/// Place buffers whose lifetimes lie in `0..num_ops` (the strategies, then local search; see
/// the planner's module docs). `buffer_of` of the result is empty. Also used for the allocations a CUDA
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
