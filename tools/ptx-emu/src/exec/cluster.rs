//! Thread-block clusters (sm_90): the blocks of one cluster run co-scheduled — their warps are
//! interleaved by one seeded scheduler — so `barrier.cluster` and distributed shared memory
//! (DSMEM: `mapa`, `ld/st/atom/red .shared::cluster`, remote `mbarrier.arrive`, multicast bulk
//! and TMA loads) work. Clusters are independent and run one after another.
//!
//! The blocks of a cluster are set up one by one by `run_block` (ranks in order); each block but
//! the last parks its state (shared memory, warps, mbarriers, ...) here, and the last runs them
//! all. One block's state is "current" (in the `Block`); switching blocks swaps the state in, so
//! every per-block mechanism (barriers, mbarriers, copies in flight, hazards) works unchanged.
//!
//! Addresses: a `.shared::cluster` address of rank `r`'s byte `o` is
//! `CLUSTER_TAG | r << 24 | o` (a plain shared offset is this block's own byte); `mapa.u64` of a
//! generic shared address returns the same inside the generic shared window.
//!
//! `barrier.cluster`: each thread counts its arrivals and waits; a phase completes when every
//! non-exited thread of the cluster has arrived. Exit rule (`ClusterHazard`): a block must not
//! exit while another block may still access its shared memory — every remote access made before
//! the accessing thread's `k`-th arrive requires the target block's threads to have waited on
//! phase `k` before exiting; an access to a block that has exited is always a hazard.

use super::*;

/// The bit that marks a `.shared::cluster` address naming a rank.
pub(super) const CLUSTER_TAG: u64 = 0x8000_0000;
const RANK_SHIFT: u32 = 24;
const OFF_MASK: u64 = (1 << RANK_SHIFT) - 1;
/// The largest cluster (non-portable; the portable limit of 8 is the driver's).
const MAX_CLUSTER: u64 = 16;

/// The per-block state a cluster keeps for the blocks that are not current.
#[derive(Default)]
struct Cta {
    ctaid: [u32; 3],
    shared: Vec<u8>,
    shadow: Vec<Shadow>,
    epoch: u32,
    warps: Vec<Warp>,
    prof: Option<Box<stats::BlockStats>>,
    hop: mbarrier::HopState,
}

/// A remote access that the target block's exit must wait for: the accessing thread had arrived
/// `need - 1` times at `barrier.cluster`.
#[derive(Clone, Copy)]
struct Need {
    need: u32,
    ctaid: [u32; 3],
    tid: u32,
    pc: u32,
}

/// The cluster shape of a launch and the state of the cluster being run.
#[derive(Default)]
pub(crate) struct Cluster {
    dims: [u32; 3],
    /// Per rank: the parked state (the current rank's slot is empty).
    ctas: Vec<Cta>,
    /// Per rank: every thread has exited (and its copies landed).
    done: Vec<bool>,
    /// Per rank and thread: `barrier.cluster.arrive`s and completed waits.
    arrived: Vec<Vec<u32>>,
    waited: Vec<Vec<u32>>,
    /// Completed `barrier.cluster` phases.
    phase: u32,
    /// Per rank: the strictest remote access into it so far.
    need: Vec<Option<Need>>,
    /// Stall signature of the whole cluster (deadlock detection across blocks).
    sig: u64,
}

/// The launch's cluster shape must divide the grid and hold 1..=16 blocks.
pub(super) fn check_dims(dims: [u32; 3], grid: [u32; 3]) -> Result<(), String> {
    let size: u64 = dims.iter().map(|&d| d as u64).product();
    if dims.contains(&0) || (0..3).any(|i| !grid[i].is_multiple_of(dims[i])) || size > MAX_CLUSTER {
        return Err(format!(
            "cluster {dims:?} must divide the grid {grid:?} and hold 1..={MAX_CLUSTER} blocks"
        ));
    }
    Ok(())
}

/// The cluster shape of a launch of `prog` asked for `dims`: a kernel's `.reqnctapercluster`
/// applies to every launch (a different explicit shape is an error); a `.explicitcluster` kernel
/// must be launched with a shape.
pub(super) fn launch_dims(prog: &Program, dims: [u32; 3]) -> Result<[u32; 3], String> {
    match prog.req_cluster {
        Some(req) if dims == [1, 1, 1] || dims == req => Ok(req),
        Some(req) => Err(format!(
            "the kernel requires clusters of {req:?} blocks (.reqnctapercluster); the launch asks for {dims:?}"
        )),
        None if prog.explicit_cluster && dims == [1, 1, 1] => Err(
            "the kernel is .explicitcluster: launch it with a cluster shape (cuLaunchKernelEx)"
                .into(),
        ),
        None => Ok(dims),
    }
}

/// The linear block index (x fastest) of the `b`-th block when blocks are counted cluster by
/// cluster, rank by rank.
pub(super) fn block_index(b: u64, dims: [u32; 3], grid: [u32; 3]) -> u64 {
    if dims == [1, 1, 1] {
        return b;
    }
    let d = dims.map(u64::from);
    let g = grid.map(u64::from);
    let size = d[0] * d[1] * d[2];
    let (ci, r) = (b / size, b % size);
    let n = [g[0] / d[0], g[1] / d[1]];
    let c = [ci % n[0], (ci / n[0]) % n[1], ci / (n[0] * n[1])];
    let rc = [r % d[0], (r / d[0]) % d[1], r / (d[0] * d[1])];
    let x = c[0] * d[0] + rc[0];
    let y = c[1] * d[1] + rc[1];
    let z = c[2] * d[2] + rc[2];
    x + y * g[0] + z * g[0] * g[1]
}

/// The blocks a sampled launch with clusters of `dims` runs when a block sample of `n` blocks
/// was asked for: `ceil(n / size)` whole clusters (all when that is every cluster), picked over
/// the launch's clusters as `gpu_model::sampling::sample_blocks` picks blocks (first and last
/// included, evenly spread), each as its `size` block numbers in the cluster-major order of
/// [`block_index`].
pub(super) fn sampled_clusters(n: u64, dims: [u32; 3], grid_blocks: u64) -> Vec<u64> {
    let size = dims.iter().map(|&d| u64::from(d)).product::<u64>().max(1);
    let clusters = grid_blocks / size;
    gpu_model::sampling::sample_blocks(clusters, Some(n.div_ceil(size).max(1)))
        .into_iter()
        .flat_map(|c| c * size..(c + 1) * size)
        .collect()
}

/// Shuffle the clusters of a launch order (the blocks of a cluster stay together, in rank
/// order).
pub(super) fn shuffle_clusters(order: &mut Vec<u64>, dims: [u32; 3], rng: &mut Rng) {
    let size = dims.iter().map(|&d| d as u64).product::<u64>();
    let mut cl: Vec<u64> = (0..order.len() as u64 / size).collect();
    for i in (1..cl.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        cl.swap(i, j);
    }
    *order = cl
        .into_iter()
        .flat_map(|c| c * size..(c + 1) * size)
        .collect();
}

impl Cluster {
    pub(super) fn new(dims: [u32; 3]) -> Cluster {
        Cluster {
            dims,
            ..Default::default()
        }
    }

    pub(super) fn size(&self) -> u32 {
        self.dims.iter().product()
    }

    fn rank_of(&self, ctaid: [u32; 3]) -> usize {
        let d = self.dims;
        let c = [ctaid[0] % d[0], ctaid[1] % d[1], ctaid[2] % d[2]];
        (c[0] + c[1] * d[0] + c[2] * d[0] * d[1]) as usize
    }

    /// `%cluster_ctaid.xyz`, `%cluster_nctaid.xyz`, `%cluster_ctarank`, `%cluster_nctarank`,
    /// `%clusterid.xyz`, `%nclusterid.xyz`, `%is_explicit_cluster` of block `ctaid`. A launch
    /// without a cluster shape runs implicit 1×1×1 clusters.
    pub(super) fn specials(&self, ctaid: [u32; 3], grid: [u32; 3]) -> [u64; 15] {
        let d = self.dims;
        let c = [0, 1, 2].map(|i| (ctaid[i] % d[i]) as u64);
        let id = [0, 1, 2].map(|i| (ctaid[i] / d[i]) as u64);
        let n = [0, 1, 2].map(|i| (grid[i] / d[i]) as u64);
        let explicit = (d != [1, 1, 1]) as u64;
        [
            c[0],
            c[1],
            c[2],
            d[0] as u64,
            d[1] as u64,
            d[2] as u64,
            self.rank_of(ctaid) as u64,
            self.size() as u64,
            id[0],
            id[1],
            id[2],
            n[0],
            n[1],
            n[2],
            explicit,
        ]
    }

    fn reset(&mut self, nthreads: u32) {
        let n = self.size() as usize;
        self.ctas.clear();
        self.ctas.resize_with(n, Default::default);
        self.done = vec![false; n];
        self.arrived = vec![vec![0; nthreads as usize]; n];
        self.waited = vec![vec![0; nthreads as usize]; n];
        self.phase = 0;
        self.need = vec![None; n];
        self.sig = u64::MAX;
    }
}

impl<'a, 'b> Block<'a, 'b> {
    /// This block's rank in its cluster.
    pub(super) fn cluster_rank(&self) -> usize {
        self.c.cluster.rank_of(self.ctaid)
    }

    fn swap_cta(&mut self, s: &mut Cta) {
        std::mem::swap(&mut self.ctaid, &mut s.ctaid);
        std::mem::swap(&mut self.shared, &mut s.shared);
        std::mem::swap(&mut self.shadow, &mut s.shadow);
        std::mem::swap(&mut self.epoch, &mut s.epoch);
        std::mem::swap(&mut self.warps, &mut s.warps);
        std::mem::swap(&mut self.prof, &mut s.prof);
        std::mem::swap(&mut self.hop, &mut s.hop);
    }

    /// Make rank `r` the current block.
    fn switch_to(&mut self, r: usize) {
        let cur = self.cluster_rank();
        if r == cur {
            return;
        }
        let mut slot = std::mem::take(&mut self.c.cluster.ctas[r]);
        self.swap_cta(&mut slot);
        self.c.cluster.ctas[cur] = slot;
    }

    /// Run `f` with rank `r` as the current block.
    pub(super) fn as_cta<T>(&mut self, r: usize, f: impl FnOnce(&mut Self) -> T) -> T {
        let cur = self.cluster_rank();
        self.switch_to(r);
        let out = f(self);
        self.switch_to(cur);
        out
    }

    /// `Block::schedule` of a block of a cluster of several blocks: park it, or (the last rank)
    /// run the whole cluster.
    pub(super) fn schedule_cluster(&mut self, sched: u32, rng: &mut Rng) -> Result<(), Fault> {
        let size = self.c.cluster.size() as usize;
        let rank = self.cluster_rank();
        if rank == 0 {
            let n = self.c.nthreads;
            self.c.cluster.reset(n);
        }
        if rank + 1 < size {
            let mut slot = Cta::default();
            self.swap_cta(&mut slot);
            // keep the block's id: `run_block` reports nothing more of a parked block
            self.ctaid = slot.ctaid;
            self.c.cluster.ctas[rank] = slot;
            return Ok(());
        }
        let r = self.run_cluster(sched, rng);
        // the last rank ends current (`run_block` finishes its profile and pools its buffers)
        self.switch_to(rank);
        for i in 0..size {
            let cta = std::mem::take(&mut self.c.cluster.ctas[i]);
            if let (Ok(()), Some(p), Some(sink)) = (&r, cta.prof, self.c.prof) {
                p.finish(sink.sink, cta.ctaid, self.c.cfg.grid);
            }
            self.c.pool.extend(cta.warps);
        }
        r
    }

    fn cta_warps(&self, r: usize) -> &[Warp] {
        if r == self.cluster_rank() {
            &self.warps
        } else {
            &self.c.cluster.ctas[r].warps
        }
    }

    fn run_cluster(&mut self, sched: u32, rng: &mut Rng) -> Result<(), Fault> {
        let size = self.c.cluster.size() as usize;
        let mut rr = 0usize;
        let mut cand: Vec<(usize, usize)> = Vec::new();
        loop {
            cand.clear();
            for r in 0..size {
                for (i, w) in self.cta_warps(r).iter().enumerate() {
                    if w.running != 0 {
                        cand.push((r, i));
                    }
                }
            }
            if cand.is_empty() {
                if self.cluster_stalled()? {
                    continue;
                }
                return Ok(());
            }
            let ((r, wi), slice) = if sched == 0 {
                rr = (rr + 1) % cand.len();
                (cand[rr], 256)
            } else {
                (
                    cand[rng.below(cand.len() as u64) as usize],
                    1 + rng.below(96) as u32,
                )
            };
            self.switch_to(r);
            let mut w = std::mem::take(&mut self.warps[wi]);
            let res = self.run_warp(&mut w, slice);
            self.warps[wi] = w;
            if let Err(er) = res {
                let pc = self.warps[wi].pc as usize;
                return Err(self.fault(wi, pc, er));
            }
            self.hop_tick(sched, rng)?;
            if self.warps.iter().all(|w| w.exited & w.valid == w.valid) {
                self.finish_cta()?;
            }
        }
    }

    /// No warp of the cluster can run. Returns whether something became runnable.
    fn cluster_stalled(&mut self) -> Result<bool, Fault> {
        let size = self.c.cluster.size() as usize;
        if self.c.cluster.done.iter().all(|&d| d) {
            return Ok(false);
        }
        let mut progress = self.cluster_phase_check(None);
        // copies land, block barriers release, finished blocks end
        for r in 0..size {
            if self.c.cluster.done[r] {
                continue;
            }
            self.switch_to(r);
            if !self.hop.inflight.is_empty() {
                progress |= self.hop_stalled()?;
                continue;
            }
            if self.hop.parked.iter().any(|&p| p != 0) {
                continue;
            }
            if !self.resolve_barrier()? {
                self.finish_cta()?;
            }
            progress = true;
        }
        if progress {
            return Ok(true);
        }
        // Only parked waits are left (mbarrier or cluster-barrier waits): time them out once
        // per block; a block whose state stays the same for two such rounds while nothing in
        // the whole cluster changed is deadlocked.
        let sig = self.cluster_sig();
        if sig != self.c.cluster.sig {
            for r in 0..size {
                self.as_cta(r, |b| b.hop.progress += 1);
            }
            self.c.cluster.sig = self.cluster_sig();
        }
        // A deadlock report names an mbarrier wait rather than a cluster-barrier wait when
        // there is one (the cluster barrier usually waits for the block stuck on the mbarrier).
        let mut faults = Vec::new();
        for r in 0..size {
            if !self.c.cluster.done[r] {
                self.switch_to(r);
                match self.hop_stalled() {
                    Ok(p) => progress |= p,
                    Err(f) => faults.push(f),
                }
            }
        }
        faults.sort_by_key(|f| f.instruction.starts_with("barrier.cluster"));
        match faults.into_iter().next() {
            Some(f) => Err(f),
            None => Ok(progress),
        }
    }

    /// A sum of everything that changes when the cluster makes progress.
    fn cluster_sig(&mut self) -> u64 {
        let size = self.c.cluster.size() as usize;
        let mut s = self.c.cluster.phase as u64;
        for r in 0..size {
            s = s.wrapping_add(self.as_cta(r, |b| {
                let exited: u64 = b.warps.iter().map(|w| w.exited.count_ones() as u64).sum();
                b.hop.progress + b.epoch as u64 + exited
            }));
        }
        s + self.c.cluster.done.iter().filter(|&&d| d).count() as u64
    }

    /// The current block's threads have all exited: its copies land, its mbarriers are checked,
    /// and the exit rule is checked.
    fn finish_cta(&mut self) -> Result<(), Fault> {
        let r = self.cluster_rank();
        if self.c.cluster.done[r] {
            return Ok(());
        }
        self.hop_finish()?;
        self.c.cluster.done[r] = true;
        // the shared memory lives until the block's last thread exits: the most waits of any thread
        let waited = self.c.cluster.waited[r].iter().copied().max().unwrap_or(0);
        if let Some(n) = self.c.cluster.need[r] {
            if n.need > waited {
                let detail = format!(
                    "block ({},{},{}) (cluster rank {r}) exits after {waited} barrier.cluster wait(s), but thread {} of block ({},{},{}) accessed its shared memory after {} barrier.cluster.arrive(s): without a barrier.cluster.arrive/wait pair between that access and this exit the access may happen after the block's shared memory is gone (the exiting block must wait on the cluster barrier first)",
                    self.ctaid[0],
                    self.ctaid[1],
                    self.ctaid[2],
                    n.tid,
                    n.ctaid[0],
                    n.ctaid[1],
                    n.ctaid[2],
                    n.need - 1
                );
                return Err(self.cluster_fault(n, detail));
            }
        }
        let _ = self.cluster_phase_check(None);
        Ok(())
    }

    /// A `ClusterHazard` fault at the access `n`.
    fn cluster_fault(&self, n: Need, detail: String) -> Fault {
        let b = self.c.cfg.block;
        let pc = n.pc as usize;
        Fault {
            kind: FaultKind::ClusterHazard,
            kernel: self.c.kernel.to_string(),
            ptx_line: self.c.prog.instrs.get(pc).map_or(0, |i| i.line as usize),
            instruction: self.c.prog.texts.get(pc).cloned().unwrap_or_default(),
            block: n.ctaid,
            thread: [n.tid % b[0], (n.tid / b[0]) % b[1], n.tid / (b[0] * b[1])],
            address: None,
            detail,
        }
    }

    /// Complete the cluster barrier's phase when every non-exited thread has arrived (`w`: the
    /// warp running now, outside its block's warp list). Returns whether it completed.
    fn cluster_phase_check(&mut self, mut w: Option<&mut Warp>) -> bool {
        let size = self.c.cluster.size() as usize;
        let cur = self.cluster_rank();
        let target = self.c.cluster.phase + 1;
        let mut live = false;
        for r in 0..size {
            let arrived = &self.c.cluster.arrived[r];
            let run = w.as_deref().filter(|_| r == cur);
            for x in self.cta_warps(r).iter().chain(run) {
                for l in lanes(x.valid & !x.exited) {
                    if arrived[x.idx as usize * 32 + l] < target {
                        return false;
                    }
                    live = true;
                }
            }
        }
        if !live {
            return false;
        }
        self.c.cluster.phase = target;
        for r in 0..size {
            if r == cur {
                self.wake_all(w.as_deref_mut());
            } else {
                self.as_cta(r, |b| b.wake_all(None));
            }
        }
        true
    }

    /// `barrier.cluster.arrive` by the lanes `exec` of `w` (a no-op in a cluster of one block).
    pub(super) fn cluster_arrive(&mut self, w: &mut Warp, exec: u32) -> R<()> {
        if self.c.cluster.size() <= 1 {
            return Ok(());
        }
        let r = self.cluster_rank();
        for l in lanes(exec) {
            let t = (w.idx * 32) as usize + l;
            let cl = &mut self.c.cluster;
            if cl.arrived[r][t] > cl.waited[r][t] {
                return Err(e(
                    FaultKind::BarrierDivergence,
                    l as u32,
                    None,
                    "barrier.cluster.arrive twice without a barrier.cluster.wait in between",
                ));
            }
            cl.arrived[r][t] += 1;
        }
        self.hop.progress += 1;
        self.cluster_phase_check(Some(w));
        Ok(())
    }

    /// `barrier.cluster.wait` by the lanes `exec` of `w` at `pc`: the lanes whose phase has not
    /// completed park (true when any did). In a cluster of one block it is a block barrier.
    pub(super) fn cluster_wait(&mut self, w: &mut Warp, exec: u32, mask: u32, pc: u32) -> R<bool> {
        if self.c.cluster.size() <= 1 {
            w.at_bar |= exec;
            w.park(exec, mask, pc);
            return Ok(true);
        }
        let wi = w.idx as usize;
        self.hop.timeout[wi] &= !exec;
        let r = self.cluster_rank();
        let mut unready = 0u32;
        for l in lanes(exec) {
            let t = wi * 32 + l;
            let cl = &mut self.c.cluster;
            let target = cl.waited[r][t] + 1;
            if cl.arrived[r][t] < target {
                return Err(e(
                    FaultKind::BarrierDivergence,
                    l as u32,
                    None,
                    "barrier.cluster.wait without a barrier.cluster.arrive before it (the thread would wait for itself)",
                ));
            }
            if cl.phase >= target {
                cl.waited[r][t] = target;
            } else {
                unready |= 1 << l;
            }
        }
        if unready == 0 {
            return Ok(false);
        }
        self.hop.parked[wi] |= unready;
        w.park(unready, mask, pc);
        Ok(true)
    }

    /// The rank and shared offset a `.shared::cluster` (or generic) address names, and whether
    /// it named a rank (`None`: a plain shared offset of this block).
    pub(super) fn dsmem_target(&self, a: u64) -> Option<(usize, u64)> {
        let a = if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&a) {
            a - SHARED_WINDOW
        } else {
            a
        };
        (a & CLUSTER_TAG != 0 && a < CLUSTER_TAG << 1)
            .then_some((((a & !CLUSTER_TAG) >> RANK_SHIFT) as usize, a & OFF_MASK))
    }

    /// A remote access by `lane` of `w` to rank `r`: the rank must exist and not have exited;
    /// the access is remembered for `r`'s exit check.
    pub(super) fn dsmem_note(&mut self, w: &Warp, lane: usize, r: usize, a: u64) -> R<()> {
        let size = self.c.cluster.size() as usize;
        if r >= size {
            return Err(e(
                FaultKind::OutOfBounds,
                lane as u32,
                Some(a),
                format!("distributed shared memory address names cluster rank {r}, but the cluster has {size} block(s)"),
            ));
        }
        let own = self.cluster_rank();
        if r == own {
            return Ok(());
        }
        let tid = w.idx * 32 + lane as u32;
        let cl = &mut self.c.cluster;
        if cl.done[r] {
            return Err(e(
                FaultKind::ClusterHazard,
                lane as u32,
                Some(a),
                format!("access to the shared memory of cluster rank {r}, whose threads have all exited (its shared memory is gone): the block must wait on barrier.cluster before exiting"),
            ));
        }
        let need = cl.arrived[own][tid as usize] + 1;
        if cl.need[r].is_none_or(|n| n.need < need) {
            cl.need[r] = Some(Need {
                need,
                ctaid: self.ctaid,
                tid,
                pc: w.pc,
            });
        }
        Ok(())
    }

    /// `mapa`: the address of the same shared byte in the block of rank `s[1]`.
    pub(super) fn exec_mapa(&mut self, w: &mut Warp, ins: &Instr, exec: u32) -> R<()> {
        let size = self.c.cluster.size() as usize;
        for l in lanes(exec) {
            let a = self.val(w, &ins.s[0], l);
            let rank = self.val(w, &ins.s[1], l) as u32 as usize;
            if rank >= size {
                return Err(e(
                    FaultKind::OutOfBounds,
                    l as u32,
                    Some(a),
                    format!("mapa to cluster rank {rank}: the cluster has {size} block(s)"),
                ));
            }
            let d = if size == 1 {
                a
            } else {
                let generic = (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&a);
                let off = match self.dsmem_target(a) {
                    Some((_, o)) => o,
                    None if generic => a - SHARED_WINDOW,
                    None => a,
                };
                let t = CLUSTER_TAG | (rank as u64) << RANK_SHIFT | off;
                if generic {
                    SHARED_WINDOW + t
                } else {
                    t
                }
            };
            Self::set(w, &ins.d[0], l, d);
        }
        Ok(())
    }

    /// `ld/st/atom/red .shared::cluster`: plain shared offsets go through the `.shared` path
    /// (all hazard checks), addresses naming a rank are accessed in that block's shared memory
    /// (bounds, alignment and bulk-copy guards checked; the race detector does not see them).
    pub(super) fn exec_dsmem(&mut self, w: &mut Warp, ins: &Instr, d: DsmemOp, exec: u32) -> R<()> {
        let mut local = 0u32;
        for l in lanes(exec) {
            let a = self.addr(w, &ins.s[0], l);
            let Some((r, off)) = self.dsmem_target(a) else {
                local |= 1 << l;
                continue;
            };
            self.dsmem_note(w, l, r, a)?;
            self.as_cta(r, |b| b.dsmem_lane(w, ins, d, l, off))?;
        }
        if local != 0 {
            let plain = Instr {
                op: d.local_op(),
                ..ins.clone()
            };
            self.exec(w, &plain, local)?;
        }
        Ok(())
    }

    /// One lane's DSMEM access at `off` of the current block's shared memory.
    fn dsmem_lane(&mut self, w: &mut Warp, ins: &Instr, d: DsmemOp, l: usize, off: u64) -> R<()> {
        let tid = w.idx * 32 + l as u32;
        let get = |b: &[u8], ty: Ty| {
            let mut x = [0u8; 8];
            let eb = ty.bytes();
            x[..eb].copy_from_slice(&b[..eb]);
            let v = u64::from_le_bytes(x);
            if ty.signed() {
                sext(v, ty.bits()) as u64
            } else {
                v
            }
        };
        match d {
            DsmemOp::Ld { ty, n } => {
                let (eb, n) = (ty.bytes(), n as usize);
                let o = self.shared_off(l, off, eb * n, true)?;
                self.guard_check(l, tid, o, eb * n, false)?;
                let parts = match &ins.d[0] {
                    Opnd::Vec(p) => p.to_vec(),
                    x => vec![x.clone()],
                };
                for (i, p) in parts.iter().enumerate().take(n) {
                    let v = get(&self.shared[o + i * eb..], ty);
                    Self::set(w, p, l, v);
                }
            }
            DsmemOp::St { ty, n } => {
                let (eb, n) = (ty.bytes(), n as usize);
                let o = self.shared_off(l, off, eb * n, true)?;
                self.guard_check(l, tid, o, eb * n, false)?;
                let parts = match &ins.s[1] {
                    Opnd::Vec(p) => p.to_vec(),
                    x => vec![x.clone()],
                };
                for (i, p) in parts.iter().enumerate().take(n) {
                    let v = self.val(w, p, l);
                    memory::put_le_at(&mut self.shared, o + i * eb, v, eb);
                }
                // initialised, and ordered for the race detector by the synchronisation that
                // makes remote writes visible (cluster barrier, mbarrier)
                self.async_shadow(o, eb * n);
            }
            DsmemOp::Atom { op, ty, red } => {
                let eb = ty.bytes();
                let o = self.shared_off(l, off, eb, true)?;
                self.guard_check(l, tid, o, eb, false)?;
                let old = get(&self.shared[o..], ty) & mask_bits(ty.bits());
                let b = self.val(w, &ins.s[1], l);
                let c = ins.s.get(2).map_or(0, |c| self.val(w, c, l));
                let new = atom_op(op, ty, old, b, c);
                memory::put_le_at(&mut self.shared, o, new, eb);
                self.async_shadow(o, eb);
                if !red {
                    Self::set(w, &ins.d[0], l, old);
                }
            }
        }
        Ok(())
    }

    /// `mbarrier.arrive{.expect_tx}.shared::cluster` on an address naming a rank: the arrival
    /// (count, and transaction bytes) lands on that block's barrier.
    pub(super) fn remote_arrive(
        &mut self,
        w: &mut Warp,
        l: usize,
        a: u64,
        count: u32,
        tx: u32,
    ) -> R<()> {
        let (r, off) = self
            .dsmem_target(a)
            .expect("remote_arrive on a rank address");
        self.dsmem_note(w, l, r, a)?;
        let (pc, tid) = (w.pc, w.idx * 32 + l as u32);
        self.as_cta(r, |b| {
            let off = b.shared_off(l, off, 8, true)? as u32;
            let bar = b.mbar_get(l, off)?;
            if tx > 0 {
                bar.tx += tx as i64;
                bar.tx_pc = pc;
                bar.tx_tid = tid;
            }
            if count == 0 || count > bar.pending {
                let detail = format!(
                    "remote mbarrier at shared offset {off:#x} of cluster rank {r}: arrive with count {count} but only {} of {} arrivals are pending in phase {}",
                    bar.pending, bar.expected, bar.phase
                );
                return Err(e(FaultKind::Trap, l as u32, Some(a), detail));
            }
            bar.pending -= count;
            b.hop.progress += 1;
            b.mbar_check_complete(off, None);
            Ok(())
        })
    }

    /// A multicast's ctaMask: a set of ranks of the cluster (exactly rank 0 without clusters).
    pub(super) fn cluster_mask(&self, mask: u64, l: usize) -> R<u32> {
        let size = self.c.cluster.size();
        let all = (1u64 << size) - 1;
        if mask == 0 || mask & !all != 0 {
            return Err(e(
                FaultKind::OutOfBounds,
                l as u32,
                None,
                format!("multicast ctaMask {mask:#06x} names ranks outside the cluster of {size} block(s) (valid bits {all:#06x})"),
            ));
        }
        Ok(mask as u32)
    }
}
