//! Per-launch counters named after Nsight Compute's metrics, and the accumulator an emulator
//! feeds one warp-level instruction at a time.
//!
//! Definitions follow Nsight Compute's Kernel Profiling Guide (see `docs/profiling.md`):
//! a *sector* is 32 aligned bytes; a *request* is one warp-level memory instruction with at least
//! one active lane; shared-memory *wavefronts* are the passes the L1 data pipe needs for one
//! instruction (32 banks of 4 bytes; 32-bit accesses served for the whole warp, 64-bit per
//! half-warp, 128-bit per quarter-warp; same-word reads broadcast); *bank conflicts* are the
//! wavefronts beyond the conflict-free count.
//!
//! Threading: an emulator that runs blocks in parallel gives every block its own
//! [`BlockAccumulator`] and hands it to [`LaunchAccumulator::add_block`]; every total is a sum or
//! a set union, so the result does not depend on the order blocks finish in.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Sector size of the L1/L2 (bytes).
pub const SECTOR: u64 = 32;
/// L1 cache line (bytes): one global-memory wavefront of the L1 data pipe per line touched.
pub const LINE: u64 = 128;
/// Shared memory: 32 banks of 4-byte words.
pub const BANKS: u64 = 32;

/// What a memory instruction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Load,
    Store,
    /// `atom` / `red` (read-modify-write).
    Atomic,
}

/// Tensor-core operand types (the dense rate differs per type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TensorDtype {
    F16,
    Bf16,
    Tf32,
    F8,
    Int8,
    F64,
}

impl TensorDtype {
    pub fn name(self) -> &'static str {
        match self {
            TensorDtype::F16 => "f16",
            TensorDtype::Bf16 => "bf16",
            TensorDtype::Tf32 => "tf32",
            TensorDtype::F8 => "f8",
            TensorDtype::Int8 => "int8",
            TensorDtype::F64 => "f64",
        }
    }

    pub fn from_name(s: &str) -> Option<TensorDtype> {
        Some(match s {
            "f16" => TensorDtype::F16,
            "bf16" => TensorDtype::Bf16,
            "tf32" => TensorDtype::Tf32,
            "f8" | "e4m3" | "e5m2" => TensorDtype::F8,
            "int8" | "s8" | "u8" => TensorDtype::Int8,
            "f64" => TensorDtype::F64,
            _ => return None,
        })
    }
}

/// One launch's counters. JSON keys are Nsight Compute metric names where one exists; keys
/// starting with `emu__` are the model's own ingredients (documented in `docs/profiling.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub kernel: String,
    #[serde(rename = "launch__grid_size")]
    pub grid_size: u64,
    #[serde(rename = "launch__block_size")]
    pub block_size: u64,
    #[serde(rename = "launch__registers_per_thread")]
    pub registers_per_thread: Option<u32>,
    #[serde(rename = "launch__shared_mem_per_block_static")]
    pub smem_static: u64,
    #[serde(rename = "launch__shared_mem_per_block_dynamic")]
    pub smem_dynamic: u64,
    pub blocks_total: u64,
    pub blocks_executed: u64,

    #[serde(rename = "smsp__inst_executed.sum")]
    pub inst_executed: u64,
    #[serde(rename = "smsp__thread_inst_executed.sum")]
    pub thread_inst_executed: u64,

    #[serde(rename = "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum")]
    pub global_ld_requests: u64,
    #[serde(rename = "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum")]
    pub global_ld_sectors: u64,
    #[serde(rename = "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum")]
    pub global_st_requests: u64,
    #[serde(rename = "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum")]
    pub global_st_sectors: u64,
    #[serde(rename = "l1tex__t_requests_pipe_lsu_mem_global_op_atom.sum", default)]
    pub global_atom_requests: u64,
    #[serde(rename = "l1tex__t_sectors_pipe_lsu_mem_global_op_atom.sum", default)]
    pub global_atom_sectors: u64,
    #[serde(
        rename = "l1tex__t_requests_pipe_lsu_mem_global_op_ldgsts.sum",
        default
    )]
    pub global_ldgsts_requests: u64,
    #[serde(rename = "l1tex__t_sectors_pipe_lsu_mem_global_op_ldgsts.sum", default)]
    pub global_ldgsts_sectors: u64,

    #[serde(rename = "smsp__inst_executed_op_shared_ld.sum")]
    pub shared_ld_inst: u64,
    #[serde(rename = "smsp__inst_executed_op_shared_st.sum")]
    pub shared_st_inst: u64,
    #[serde(rename = "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum")]
    pub shared_ld_wavefronts: u64,
    #[serde(rename = "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum")]
    pub shared_st_wavefronts: u64,
    #[serde(rename = "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum")]
    pub shared_ld_bank_conflicts: u64,
    #[serde(rename = "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum")]
    pub shared_st_bank_conflicts: u64,
    #[serde(rename = "smsp__inst_executed_op_shared_atom.sum", default)]
    pub shared_atom_inst: u64,
    #[serde(
        rename = "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_atom.sum",
        default
    )]
    pub shared_atom_wavefronts: u64,
    #[serde(rename = "smsp__inst_executed_op_ldsm.sum", default)]
    pub ldsm_inst: u64,
    #[serde(
        rename = "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ldsm.sum",
        default
    )]
    pub ldsm_wavefronts: u64,

    #[serde(rename = "sm__inst_executed_pipe_tensor.sum")]
    pub tensor_inst: u64,
    pub flop_tensor: u64,
    pub flop_fp32: u64,
    /// The part of `tensor_inst` / `flop_tensor` that is sm_90 `wgmma.mma_async` (one
    /// instruction per warp of the warpgroup; included in the totals above).
    #[serde(rename = "emu__wgmma_inst", default)]
    pub wgmma_inst: u64,
    #[serde(rename = "emu__flop_tensor_wgmma", default)]
    pub flop_tensor_wgmma: u64,

    /// Modelled (needs the GPU's L2 size and residency): filled by [`crate::model::predict`].
    #[serde(rename = "dram__bytes_read.sum")]
    pub dram_bytes_read: Option<u64>,
    #[serde(rename = "dram__bytes_write.sum")]
    pub dram_bytes_write: Option<u64>,
    pub predicted_us: Option<f64>,
    pub bound: Option<String>,

    /// Tensor FLOPs split by operand type (their sum is `flop_tensor`).
    #[serde(rename = "emu__flop_tensor_by_dtype", default)]
    pub flop_tensor_by_dtype: BTreeMap<String, u64>,
    /// L1 data-pipe wavefronts of global accesses: distinct 128-B lines per request.
    #[serde(rename = "emu__l1_global_wavefronts", default)]
    pub l1_global_wavefronts: u64,
    /// Warp-level waits on memory, each weighted 1/n when n transfers of the block were in flight
    /// (a pipelined wait costs a fraction of a round trip). Waits: the first use of a register
    /// loaded from global memory, `cp.async.wait_*`, an `mbarrier` wait completed by a transfer.
    #[serde(rename = "emu__mem_round_trips", default)]
    pub mem_round_trips: f64,
    /// Bytes of the transfers waited for, weighted like `emu__mem_round_trips`.
    #[serde(rename = "emu__mem_wait_bytes", default)]
    pub mem_wait_bytes: f64,
    /// Warps that waited on memory at least once (the round trips are per such warp).
    #[serde(rename = "emu__waiting_warps", default)]
    pub waiting_warps: u64,
    /// Distinct sectors read (ld, atom, cp.async sources) by the whole launch.
    #[serde(rename = "emu__unique_read_sectors", default)]
    pub unique_read_sectors: u64,
    /// Distinct sectors written (st, atom) by the whole launch.
    #[serde(rename = "emu__unique_write_sectors", default)]
    pub unique_write_sectors: u64,
    /// Sum over executed blocks of the distinct sectors each block reads.
    #[serde(rename = "emu__block_unique_read_sectors", default)]
    pub block_unique_read_sectors: u64,
    /// Of `emu__unique_read_sectors`, the sectors that *every* executed block read (at least 2
    /// blocks ran): a broadcast operand (LayerNorm / GroupNorm gamma and beta, a bias every tile
    /// reads, a panel all tiles share). A sampled launch counts them once instead of
    /// extrapolating them by the grid ([`crate::sampling::extrapolate_unique_reads`]), and the
    /// DRAM model counts them once per wave, not once per block ([`crate::model::dram_bytes`]):
    /// on hardware the first blocks bring them into the L2 and the rest hit there.
    #[serde(rename = "emu__broadcast_read_sectors", default)]
    pub broadcast_read_sectors: u64,
    /// Upper bound on the launch's read footprint (bytes of the buffers it reads), when known:
    /// used to bound `emu__unique_read_sectors` extrapolated from sampled blocks.
    #[serde(rename = "emu__read_footprint_cap_bytes", default)]
    pub read_footprint_cap_bytes: Option<u64>,
    /// The executed blocks' distinct read sectors per allocation of
    /// [`LaunchInfo::read_allocations`] (distinct sectors, the allocation's size in sectors),
    /// then one entry (cap `u64::MAX`) for the sectors outside them; the broadcast sectors
    /// (`emu__broadcast_read_sectors`) are not in these counts. Empty when the allocations
    /// are unknown. Consumed by the extrapolation of a sampled launch (each allocation's share is
    /// capped by its size, [`crate::sampling::extrapolate_unique_reads`]); not serialized.
    #[serde(skip)]
    pub read_sectors_by_allocation: Vec<(u64, u64)>,
    /// `true` when only some blocks ran (`PTX_EMU_SAMPLE_BLOCKS`): the counters are scaled and the
    /// kernel's outputs are not valid.
    #[serde(rename = "emu__sampled", default)]
    pub sampled: bool,
    /// How a sampled launch's counts were scaled to its grid (`docs/profiling.md`): `uniform`
    /// (all times blocks / executed), `work_classes` (per work class of the launcher's
    /// [`crate::sampling::WorkSplit`], times its blocks / its executed blocks), `work_units`
    /// (times the launch's work units / the executed blocks'). Absent when every block ran.
    #[serde(
        rename = "emu__sample_weighting",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sample_weighting: Option<String>,
    /// Bytes moved global → shared by `cp.async.bulk[.tensor]` (TMA loads, OOB fill included).
    #[serde(rename = "emu__bulk_load_bytes", default)]
    pub bulk_load_bytes: u64,
    /// Bytes moved shared → global by `cp.async.bulk[.tensor]` (TMA stores).
    #[serde(rename = "emu__bulk_store_bytes", default)]
    pub bulk_store_bytes: u64,
}

impl Counters {
    /// Blocks of the launch: `blocks_total`, or `launch__grid_size` when a row lacks it.
    pub fn blocks(&self) -> u64 {
        if self.blocks_total > 0 {
            self.blocks_total
        } else {
            self.grid_size
        }
    }

    pub fn warps_per_block(&self) -> u64 {
        self.block_size.div_ceil(32).max(1)
    }

    pub fn shared_mem_per_block(&self) -> u64 {
        self.smem_static + self.smem_dynamic
    }

    /// All shared-memory wavefronts (ld, st, atomics, ldmatrix): the L1 data pipe's shared work.
    pub fn shared_wavefronts(&self) -> u64 {
        self.shared_ld_wavefronts
            + self.shared_st_wavefronts
            + self.shared_atom_wavefronts
            + self.ldsm_wavefronts
    }

    pub fn bank_conflicts(&self) -> u64 {
        self.shared_ld_bank_conflicts + self.shared_st_bank_conflicts
    }

    pub fn global_requests(&self) -> u64 {
        self.global_ld_requests
            + self.global_st_requests
            + self.global_atom_requests
            + self.global_ldgsts_requests
    }

    pub fn global_sectors(&self) -> u64 {
        self.global_ld_sectors
            + self.global_st_sectors
            + self.global_atom_sectors
            + self.global_ldgsts_sectors
    }

    /// Global sectors per request (0 when there were no requests).
    pub fn sectors_per_request(&self) -> f64 {
        let r = self.global_requests();
        if r == 0 {
            0.0
        } else {
            self.global_sectors() as f64 / r as f64
        }
    }

    pub fn flops(&self) -> u64 {
        self.flop_fp32 + self.flop_tensor
    }
}

/// Shared-memory wavefronts of one warp-level access and the conflict-free count.
///
/// Lanes are grouped the way the L1 data pipe serves them: the whole warp for accesses of at most
/// 4 bytes, half-warps for 8 bytes, quarter-warps for 16 bytes. In each group with an active lane,
/// the wavefronts are the largest number of *distinct* 4-byte words that fall in one bank (equal
/// words broadcast). The conflict-free count is the number of active groups.
pub fn shared_wavefronts(width_bytes: u32, lanes: &[Option<u64>]) -> (u64, u64) {
    let group = match width_bytes {
        0..=4 => 32,
        5..=8 => 16,
        _ => 8,
    };
    let width = u64::from(width_bytes.max(1));
    let mut wavefronts = 0u64;
    let mut ideal = 0u64;
    // At most 32 lanes x 4 words (16-byte accesses) per group: no allocation.
    let mut words = [0u64; 128];
    for chunk in lanes.chunks(group) {
        let mut n = 0;
        for &a in chunk.iter().flatten() {
            for w in a / 4..=(a + width - 1) / 4 {
                if n < words.len() {
                    words[n] = w;
                    n += 1;
                }
            }
        }
        if n == 0 {
            continue;
        }
        let ws = &mut words[..n];
        ws.sort_unstable();
        let mut per_bank = [0u32; BANKS as usize];
        let mut prev = u64::MAX;
        for &w in ws.iter() {
            if w != prev {
                per_bank[(w % BANKS) as usize] += 1;
                prev = w;
            }
        }
        wavefronts += u64::from(*per_bank.iter().max().unwrap_or(&1)).max(1);
        ideal += 1;
    }
    (wavefronts, ideal)
}

/// Distinct 32-B sectors and distinct 128-B lines one warp-level global access touches.
pub fn global_sectors_lines(
    width_bytes: u32,
    lanes: &[Option<u64>],
    sectors: &mut Vec<u64>,
) -> u64 {
    sectors.clear();
    let w = u64::from(width_bytes.max(1));
    for &a in lanes.iter().flatten() {
        let first = a / SECTOR;
        let last = (a + w - 1) / SECTOR;
        sectors.extend(first..=last);
    }
    sectors.sort_unstable();
    sectors.dedup();
    let mut lines = 0u64;
    let mut prev = u64::MAX;
    for s in sectors.iter() {
        let l = s * SECTOR / LINE;
        if l != prev {
            lines += 1;
            prev = l;
        }
    }
    lines
}

/// `addresses` with the lanes outside `mask` turned off.
pub fn masked(addresses: &[u64; 32], mask: u32) -> [Option<u64>; 32] {
    std::array::from_fn(|l| (mask >> l & 1 == 1).then_some(addresses[l]))
}

/// Counter totals of one block (or any set of blocks), fed by the emulator.
#[derive(Debug, Default, Clone)]
pub struct BlockAccumulator {
    pub c: Counters,
    read_sectors: HashSet<u64>,
    write_sectors: HashSet<u64>,
    scratch: Vec<u64>,
    waited: Vec<bool>,
}

impl BlockAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every warp-level instruction that issues (any opcode, including the memory and tensor
    /// instructions reported separately): `active_lanes` = lanes whose guard predicate is true.
    pub fn on_warp_inst(&mut self, active_lanes: u32) {
        self.c.inst_executed += 1;
        self.c.thread_inst_executed += u64::from(active_lanes);
    }

    /// A global-memory instruction (`ld.global`, `st.global`, `atom.global`, `red.global`;
    /// also generic `ld`/`st` that resolve to global memory). `lane_addresses[i]` = the byte
    /// address of lane `i`, `None` for inactive lanes; `width_bytes` = bytes per lane (vector
    /// width included: `ld.global.v4.f32` = 16). A request needs at least one active lane.
    pub fn on_global_access(
        &mut self,
        kind: Access,
        width_bytes: u32,
        lane_addresses: &[Option<u64>],
    ) {
        if lane_addresses.iter().all(Option::is_none) {
            return;
        }
        let sectors = self.sectors_of(width_bytes, lane_addresses);
        let n = sectors.len() as u64;
        match kind {
            Access::Load => {
                self.c.global_ld_requests += 1;
                self.c.global_ld_sectors += n;
                self.read_sectors.extend(sectors.iter().copied());
            }
            Access::Store => {
                self.c.global_st_requests += 1;
                self.c.global_st_sectors += n;
                self.write_sectors.extend(sectors.iter().copied());
            }
            Access::Atomic => {
                self.c.global_atom_requests += 1;
                self.c.global_atom_sectors += n;
                self.read_sectors.extend(sectors.iter().copied());
                self.write_sectors.extend(sectors.iter().copied());
            }
        }
        self.scratch = sectors;
    }

    /// The distinct sectors of one global access (in the reused scratch vector, to be put back);
    /// adds its 128-B lines to the L1 global wavefronts.
    fn sectors_of(&mut self, width_bytes: u32, lane_addresses: &[Option<u64>]) -> Vec<u64> {
        let mut sectors = std::mem::take(&mut self.scratch);
        self.c.l1_global_wavefronts +=
            global_sectors_lines(width_bytes, lane_addresses, &mut sectors);
        sectors
    }

    /// `cp.async` (LDGSTS): counted on the global side under Nsight's `op_ldgsts` metrics; the
    /// shared-memory fill is done by the L1 itself and is not a shared `st` instruction.
    pub fn on_cp_async(&mut self, width_bytes: u32, global_lane_addresses: &[Option<u64>]) {
        if global_lane_addresses.iter().all(Option::is_none) {
            return;
        }
        let sectors = self.sectors_of(width_bytes, global_lane_addresses);
        self.c.global_ldgsts_requests += 1;
        self.c.global_ldgsts_sectors += sectors.len() as u64;
        self.read_sectors.extend(sectors.iter().copied());
        self.scratch = sectors;
    }

    /// [`Self::on_global_access`] for a structure-of-arrays register file: lane `i` takes part
    /// when bit `i` of `mask` is set (its guard predicate true), `addresses[i]` its address.
    pub fn on_global_access_masked(
        &mut self,
        kind: Access,
        width_bytes: u32,
        addresses: &[u64; 32],
        mask: u32,
    ) {
        self.on_global_access(kind, width_bytes, &masked(addresses, mask));
    }

    /// [`Self::on_shared_access`] with an active-lane bit mask (see
    /// [`Self::on_global_access_masked`]).
    pub fn on_shared_access_masked(
        &mut self,
        kind: Access,
        width_bytes: u32,
        addresses: &[u64; 32],
        mask: u32,
    ) {
        self.on_shared_access(kind, width_bytes, &masked(addresses, mask));
    }

    /// A bulk (TMA-style) global→shared copy of `bytes` starting at `global_addr` issued by one
    /// thread: sectors counted like `cp.async`, one request per instruction.
    pub fn on_bulk_copy(&mut self, global_addr: u64, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let first = global_addr / SECTOR;
        let last = (global_addr + bytes - 1) / SECTOR;
        self.c.global_ldgsts_requests += 1;
        self.c.global_ldgsts_sectors += last - first + 1;
        self.c.l1_global_wavefronts += (last - first + 1).div_ceil(LINE / SECTOR);
        self.read_sectors.extend(first..=last);
    }

    /// A shared-memory instruction (`ld.shared`, `st.shared`, `atom.shared`), addresses are byte
    /// offsets in the block's shared window.
    pub fn on_shared_access(
        &mut self,
        kind: Access,
        width_bytes: u32,
        lane_addresses: &[Option<u64>],
    ) {
        if lane_addresses.iter().all(Option::is_none) {
            return;
        }
        let (wf, ideal) = shared_wavefronts(width_bytes, lane_addresses);
        match kind {
            Access::Load => {
                self.c.shared_ld_inst += 1;
                self.c.shared_ld_wavefronts += wf;
                self.c.shared_ld_bank_conflicts += wf - ideal;
            }
            Access::Store => {
                self.c.shared_st_inst += 1;
                self.c.shared_st_wavefronts += wf;
                self.c.shared_st_bank_conflicts += wf - ideal;
            }
            Access::Atomic => {
                self.c.shared_atom_inst += 1;
                self.c.shared_atom_wavefronts += wf;
            }
        }
    }

    /// `ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16`: `row_addresses[i]` = the
    /// 16-byte row address lane `i` supplies (lanes 0–7 for x1, 0–15 for x2, 0–31 for x4; the rest
    /// `None`). Each 8×8 matrix (8 rows of 16 B) is one quarter-warp group of 16-byte accesses, so
    /// a conflict-free x4 is 4 wavefronts.
    pub fn on_ldmatrix(&mut self, row_addresses: &[Option<u64>]) {
        if row_addresses.iter().all(Option::is_none) {
            return;
        }
        let (wf, _) = shared_wavefronts(16, row_addresses);
        self.c.ldsm_inst += 1;
        self.c.ldsm_wavefronts += wf;
    }

    /// One warp-level `mma.sync.aligned.mMnNkK` with operand type `dtype`:
    /// 1 tensor instruction and 2·M·N·K FLOPs.
    pub fn on_mma(&mut self, m: u32, n: u32, k: u32, dtype: TensorDtype) {
        self.add_tensor(1, 2 * u64::from(m) * u64::from(n) * u64::from(k), dtype);
    }

    /// `wgmma.mma_async` m64nNkK, called once per warp of the warpgroup (4 calls): each warp's
    /// instruction counts as one tensor instruction and a quarter of the 2·M·N·K FLOPs.
    pub fn on_wgmma_warp(&mut self, m: u32, n: u32, k: u32, dtype: TensorDtype) {
        let flops = 2 * u64::from(m) * u64::from(n) * u64::from(k) / 4;
        self.add_tensor(1, flops, dtype);
        self.c.wgmma_inst += 1;
        self.c.flop_tensor_wgmma += flops;
    }

    fn add_tensor(&mut self, inst: u64, flops: u64, dtype: TensorDtype) {
        self.c.tensor_inst += inst;
        self.c.flop_tensor += flops;
        *self
            .c
            .flop_tensor_by_dtype
            .entry(dtype.name().to_string())
            .or_default() += flops;
    }

    /// FP32 work of one warp-level instruction: `flops` = active lanes × (2 for `fma`/`mad`,
    /// 1 for `add`/`sub`/`mul`/`min`/`max`...). Packed `.f16x2`/`.bf16x2` math is not FP32.
    /// Bytes moved by a block's bulk / TMA copies (`emu__bulk_load_bytes`, `emu__bulk_store_bytes`).
    pub fn on_bulk_bytes(&mut self, load_bytes: u64, store_bytes: u64) {
        self.c.bulk_load_bytes += load_bytes;
        self.c.bulk_store_bytes += store_bytes;
    }

    pub fn on_fp32(&mut self, flops: u64) {
        self.c.flop_fp32 += flops;
    }

    /// Warp `warp_in_block` waits for `bytes` of memory transfers while `in_flight` transfer
    /// groups of its block are outstanding (1 for a plain load-use, the pipeline depth for a
    /// multi-stage `cp.async`/TMA pipeline): adds `1/in_flight` round trips and `bytes/in_flight`.
    pub fn on_mem_wait(&mut self, warp_in_block: u32, bytes: u64, in_flight: u32) {
        let n = f64::from(in_flight.max(1));
        self.c.mem_round_trips += 1.0 / n;
        self.c.mem_wait_bytes += bytes as f64 / n;
        let w = warp_in_block as usize;
        if self.waited.len() <= w {
            self.waited.resize(w + 1, false);
        }
        self.waited[w] = true;
    }
}

/// Totals of one launch.
#[derive(Debug, Default)]
pub struct LaunchAccumulator {
    total: Counters,
    /// Distinct sectors read, with the number of executed blocks that read each.
    read_sectors: HashMap<u64, u32>,
    write_sectors: HashSet<u64>,
    /// A weighted sample ([`LaunchAccumulator::with_plan`]).
    weighted: Option<Weighted>,
}

/// The per-class sums of a weighted sample: blocks fold into their class as well as the total.
#[derive(Debug)]
struct Weighted {
    plan: crate::sampling::SamplePlan,
    /// Per class: the raw sums of its blocks; `unique_write_sectors` holds the sum of the
    /// blocks' distinct written sectors.
    sums: Vec<Counters>,
}

/// Static facts of a launch (from the launch call and the ptxas report).
#[derive(Debug, Clone, Default)]
pub struct LaunchInfo {
    pub kernel: String,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub registers_per_thread: Option<u32>,
    pub smem_static: u64,
    pub smem_dynamic: u64,
    /// Bytes of the buffers the kernel reads, if the caller knows them (bounds the extrapolated
    /// footprint of a sampled launch).
    pub read_footprint_cap_bytes: Option<u64>,
    /// The allocations (start address, bytes; disjoint) the kernel may read, if the caller knows
    /// them. With them, the extrapolated footprint is bounded per allocation, and only the
    /// allocations the executed blocks read count toward `emu__read_footprint_cap_bytes` (a
    /// write-only output is not read traffic).
    pub read_allocations: Vec<(u64, u64)>,
}

impl LaunchInfo {
    /// `kernel` launched on `grid` blocks of `block` threads; the other facts unknown.
    pub fn new(kernel: impl Into<String>, grid: [u32; 3], block: [u32; 3]) -> Self {
        LaunchInfo {
            kernel: kernel.into(),
            grid,
            block,
            ..Default::default()
        }
    }
}

impl LaunchAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// An accumulator for the blocks of `plan` ([`crate::sampling::plan`]): when the plan is
    /// weighted, [`Self::finish`] scales each class by its factor; else as [`Self::new`].
    pub fn with_plan(plan: &crate::sampling::SamplePlan) -> Self {
        LaunchAccumulator {
            weighted: plan.is_weighted().then(|| Weighted {
                plan: plan.clone(),
                sums: vec![Counters::default(); plan.factors.len()],
            }),
            ..Self::default()
        }
    }

    /// Fold executed block `block` (linear index) in (any order). With a weighted plan the block
    /// must be one of the plan's.
    pub fn add_block_at(&mut self, block: u64, b: BlockAccumulator) {
        if let Some(w) = &mut self.weighted {
            match w.plan.blocks.binary_search(&block) {
                Ok(i) => {
                    let sum = &mut w.sums[w.plan.class_of[i]];
                    fold_block(sum, &b);
                    sum.unique_write_sectors += b.write_sectors.len() as u64;
                }
                Err(_) => debug_assert!(false, "block {block} is not in the sample plan"),
            }
        }
        self.add_block(b);
    }

    /// Fold one executed block in (any order).
    pub fn add_block(&mut self, b: BlockAccumulator) {
        fold_block(&mut self.total, &b);
        for s in b.read_sectors {
            *self.read_sectors.entry(s).or_default() += 1;
        }
        self.write_sectors.extend(b.write_sectors);
    }

    /// The launch's counters; scaled to the whole grid when fewer blocks ran than the grid has
    /// (see [`crate::sampling::scale_to_grid`]).
    pub fn finish(mut self, info: &LaunchInfo) -> Counters {
        let t = &mut self.total;
        t.kernel = info.kernel.clone();
        t.grid_size = info.grid.iter().map(|&g| u64::from(g)).product();
        t.block_size = info.block.iter().map(|&g| u64::from(g)).product();
        t.registers_per_thread = info.registers_per_thread;
        t.smem_static = info.smem_static;
        t.smem_dynamic = info.smem_dynamic;
        t.blocks_total = t.grid_size;
        t.unique_read_sectors = self.read_sectors.len() as u64;
        t.unique_write_sectors = self.write_sectors.len() as u64;
        t.read_footprint_cap_bytes = info.read_footprint_cap_bytes;
        // The sectors every executed block read (2 or more ran) are a broadcast operand: a
        // sampled launch counts them once and extrapolates the rest (by allocation when the
        // allocations are known); the DRAM model counts them once per wave.
        let (n, total) = (t.blocks_executed, t.blocks_total);
        let broadcast = |k: u32| n >= 2 && u64::from(k) == n;
        t.broadcast_read_sectors = self
            .read_sectors
            .values()
            .filter(|&&k| broadcast(k))
            .count() as u64;
        if !info.read_allocations.is_empty() {
            let all: Vec<u64> = self.read_sectors.keys().copied().collect();
            let by_all = reads_by_allocation(all.iter().copied(), &info.read_allocations);
            let by = reads_by_allocation(
                self.read_sectors
                    .iter()
                    .filter(|&(_, &k)| !broadcast(k))
                    .map(|(&s, _)| s),
                &info.read_allocations,
            );
            let read_bytes: u64 = info
                .read_allocations
                .iter()
                .zip(&by_all)
                .filter(|(_, (d, _))| *d > 0)
                .map(|(a, _)| a.1)
                .sum();
            // reads outside the listed allocations (a pointer the caller did not list): keep
            // the caller's cap
            if by_all.last().is_some_and(|o| o.0 == 0) {
                t.read_footprint_cap_bytes = Some(read_bytes);
            }
            t.read_sectors_by_allocation = by;
        }
        let mut c = std::mem::take(&mut self.total);
        match self.weighted {
            Some(w) if c.blocks_executed > 0 && c.blocks_executed < c.blocks_total => {
                finish_weighted(&mut c, w)
            }
            _ => crate::sampling::scale_to_grid(&mut c),
        }
        c
    }
}

/// The distinct sectors of `sectors` in each of `allocs` (start, bytes; disjoint) with the
/// allocation's size in sectors, then (cap `u64::MAX`) those in none of them.
fn reads_by_allocation(
    sectors: impl IntoIterator<Item = u64>,
    allocs: &[(u64, u64)],
) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64, usize)> = allocs
        .iter()
        .enumerate()
        .map(|(i, &(start, len))| (start / SECTOR, (start + len).div_ceil(SECTOR), i))
        .collect();
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = allocs
        .iter()
        .map(|&(_, len)| (0, len.div_ceil(SECTOR)))
        .collect();
    out.push((0, u64::MAX));
    let outside = allocs.len();
    for s in sectors {
        // the last span starting at or before s
        let i = spans.partition_point(|sp| sp.0 <= s);
        let slot = match i.checked_sub(1).map(|j| spans[j]) {
            Some((_, end, k)) if s < end => k,
            _ => outside,
        };
        out[slot].0 += 1;
    }
    out
}

/// Add block `b`'s counts to the sums `t` (not its sector sets: the caller's).
fn fold_block(t: &mut Counters, b: &BlockAccumulator) {
    let c = &b.c;
    t.blocks_executed += 1;
    t.block_unique_read_sectors += b.read_sectors.len() as u64;
    macro_rules! add {
        ($($f:ident),*) => { $( t.$f += c.$f; )* };
    }
    add!(bulk_load_bytes, bulk_store_bytes);
    add!(
        inst_executed,
        thread_inst_executed,
        global_ld_requests,
        global_ld_sectors,
        global_st_requests,
        global_st_sectors,
        global_atom_requests,
        global_atom_sectors,
        global_ldgsts_requests,
        global_ldgsts_sectors,
        shared_ld_inst,
        shared_st_inst,
        shared_ld_wavefronts,
        shared_st_wavefronts,
        shared_ld_bank_conflicts,
        shared_st_bank_conflicts,
        shared_atom_inst,
        shared_atom_wavefronts,
        ldsm_inst,
        ldsm_wavefronts,
        tensor_inst,
        flop_tensor,
        flop_fp32,
        wgmma_inst,
        flop_tensor_wgmma,
        l1_global_wavefronts,
        mem_round_trips,
        mem_wait_bytes
    );
    t.waiting_warps += b.waited.iter().filter(|&&w| w).count() as u64;
    for (k, v) in &c.flop_tensor_by_dtype {
        *t.flop_tensor_by_dtype.entry(k.clone()).or_default() += v;
    }
}

/// The sums of `c` (the executed blocks') replaced by the classes' sums of `w`, each scaled by
/// its class factor; the distinct read sectors extrapolated by the growth of the per-block read
/// sum. Sets `emu__sampled` and `emu__sample_weighting`.
fn finish_weighted(c: &mut Counters, w: Weighted) {
    use crate::sampling::{block_sums, extrapolate_unique_reads, scale_sums};
    let raw_reads = c.block_unique_read_sectors;
    let mut out = Counters::default();
    for (mut k, f) in w.sums.into_iter().zip(w.plan.factors) {
        scale_sums(&mut k, f);
        for (o, v) in block_sums(&mut out).into_iter().zip(block_sums(&mut k)) {
            *o += *v;
        }
        out.mem_round_trips += k.mem_round_trips;
        out.mem_wait_bytes += k.mem_wait_bytes;
        for (d, v) in k.flop_tensor_by_dtype {
            *out.flop_tensor_by_dtype.entry(d).or_default() += v;
        }
    }
    for (o, v) in block_sums(c).into_iter().zip(block_sums(&mut out)) {
        *o = *v;
    }
    c.mem_round_trips = out.mem_round_trips;
    c.mem_wait_bytes = out.mem_wait_bytes;
    c.flop_tensor_by_dtype = out.flop_tensor_by_dtype;
    let f = if raw_reads > 0 {
        c.block_unique_read_sectors as f64 / raw_reads as f64
    } else {
        c.blocks_total as f64 / c.blocks_executed as f64
    };
    extrapolate_unique_reads(c, f);
    c.sampled = true;
    c.sample_weighting = Some(w.plan.weighting.name().to_string());
}

/// Registers per thread of `entry` for `arch` (`sm_80`, `sm_90a`) from a ptxas report as
/// `tools/kernels/build_ptx.py` writes it (`kernels/reports/<name>.txt`: columns entry, arch,
/// regs, ...). `None` when the report has no such row.
pub fn registers_from_report(report: &str, entry: &str, arch: &str) -> Option<u32> {
    report
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == entry && f.next()? == arch).then(|| f.next()?.parse().ok())?
        })
}
