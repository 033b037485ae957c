//! Where a [`CudaTensor`](super::CudaTensor)'s bytes live, and the planned activation arena of a
//! replayed sampler step.
//!
//! ```text
//! Plain     alloc = cuMemAllocAsync, drop = cuMemFreeAsync (stream-ordered)
//! Record    dry run of one step: no memory, no launches; every alloc/free is logged
//!           (`Recorder`) → lifetimes → placement::place_all → offsets, arena size
//! Replay    the k-th alloc of the step is arena + offset[k] (size checked); drop is a no-op
//! ```
//!
//! The step is deterministic, so the k-th allocation of the captured run is the k-th of the
//! recorded run; any difference (count or size) is an error, never a silent overlap. Two live
//! buffers never share bytes: the planner's offsets come from the recorded lifetimes, and
//! frees are stream-ordered (one stream), so a buffer reused after a free is written only by
//! kernels enqueued after the last reader of its previous tenant.

use std::any::Any;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Result};
use cudarc::driver::{CudaSlice, CudaStream};

use crate::placement::{self, align_up};

/// First fake device address handed out by a dry run (never dereferenced: launches are skipped).
const PHANTOM_BASE: u64 = 0x7f00_0000_0000;

/// Something computed from a buffer's bytes and kept as long as they are (the e4m3 rows of
/// `gemm_fp8_sm90::linear`): set once, dropped with the buffer, cleared by any mutable access.
pub(crate) type Memo = OnceLock<Box<dyn Any + Send + Sync>>;

/// The device bytes of a tensor and who owns them.
pub struct DeviceBuffer {
    slice: ManuallyDrop<CudaSlice<u8>>,
    owner: Owner,
    memo: Memo,
}

enum Owner {
    /// A driver allocation, freed on drop.
    Driver,
    /// A range of a planned arena (kept alive by the `Arc`); nothing to free.
    Arena(#[allow(dead_code)] Arc<CudaSlice<u8>>),
    /// A dry-run allocation: no memory; the drop is logged.
    Recorded { rec: Arc<Recorder>, id: usize },
}

impl DeviceBuffer {
    pub(crate) fn driver(slice: CudaSlice<u8>) -> Self {
        DeviceBuffer {
            slice: ManuallyDrop::new(slice),
            owner: Owner::Driver,
            memo: Memo::new(),
        }
    }

    /// The bytes `offset..offset + len` of `arena`.
    fn arena_range(
        stream: &Arc<CudaStream>,
        arena: &Arc<CudaSlice<u8>>,
        offset: u64,
        len: usize,
    ) -> Self {
        let (base, _sync) = cudarc::driver::DevicePtr::device_ptr(arena.as_ref(), stream);
        // SAFETY: `offset + len <= arena.len()` (checked by the caller against the plan); the view
        // is never freed (ManuallyDrop, owner `Arena`) and the arena outlives it through the Arc.
        let slice = unsafe { stream.upgrade_device_ptr::<u8>(base + offset, len) };
        DeviceBuffer {
            slice: ManuallyDrop::new(slice),
            owner: Owner::Arena(arena.clone()),
            memo: Memo::new(),
        }
    }

    fn phantom(
        stream: &Arc<CudaStream>,
        rec: Arc<Recorder>,
        id: usize,
        addr: u64,
        len: usize,
    ) -> Self {
        // SAFETY: a fake address that no kernel, copy or free ever touches: the device is in dry
        // mode while it exists (launches skipped, host reads refused) and the drop never frees it.
        let slice = unsafe { stream.upgrade_device_ptr::<u8>(addr, len) };
        DeviceBuffer {
            slice: ManuallyDrop::new(slice),
            owner: Owner::Recorded { rec, id },
            memo: Memo::new(),
        }
    }

    /// The buffer's [`Memo`] (the bytes cannot change while it is shared: see `DerefMut`).
    pub(crate) fn memo(&self) -> &Memo {
        &self.memo
    }
}

impl std::ops::Deref for DeviceBuffer {
    type Target = CudaSlice<u8>;
    fn deref(&self) -> &CudaSlice<u8> {
        &self.slice
    }
}

impl std::ops::DerefMut for DeviceBuffer {
    fn deref_mut(&mut self) -> &mut CudaSlice<u8> {
        // the bytes may change: what was derived from them goes
        self.memo.take();
        &mut self.slice
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        match &self.owner {
            // SAFETY: dropped exactly once, here; the slice owns its driver allocation.
            Owner::Driver => unsafe { ManuallyDrop::drop(&mut self.slice) },
            Owner::Arena(_) => {}
            Owner::Recorded { rec, id } => rec.free(*id),
        }
    }
}

/// The allocation log of a dry run.
#[derive(Debug, Default)]
pub struct Recorder {
    state: Mutex<RecState>,
}

#[derive(Debug, Default)]
struct RecState {
    /// Per allocation: bytes, event index of the alloc, of the free (None: still live).
    allocs: Vec<(usize, usize, Option<usize>)>,
    events: usize,
    next_addr: u64,
}

impl Recorder {
    fn alloc(self: &Arc<Self>, stream: &Arc<CudaStream>, bytes: usize) -> DeviceBuffer {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = s.allocs.len();
        let at = s.events;
        s.allocs.push((bytes, at, None));
        s.events += 1;
        let addr = PHANTOM_BASE + s.next_addr;
        s.next_addr += align_up(bytes as u64);
        drop(s);
        DeviceBuffer::phantom(stream, self.clone(), id, addr, bytes)
    }

    fn free(&self, id: usize) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let at = s.events;
        s.events += 1;
        s.allocs[id].2 = Some(at);
    }

    /// Place the logged allocations: buffers still live at the end live to the end.
    pub fn plan(&self) -> Result<ArenaPlan> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let end = s.events;
        let buffers: Vec<placement::Buffer> = s
            .allocs
            .iter()
            .enumerate()
            .map(|(k, &(bytes, first, freed))| placement::Buffer {
                tensor: k,
                bytes: bytes as u64,
                size: align_up(bytes as u64),
                first,
                last: freed.unwrap_or(end),
                offset: 0,
            })
            .collect();
        let placed = placement::place_all(buffers, end + 1);
        if let Some((a, b)) = first_overlap(&placed.buffers) {
            // The planner's invariant; checked because a violation would corrupt results silently.
            bail!("step arena plan: allocations #{a} and #{b} are live together and overlap");
        }
        Ok(ArenaPlan {
            sizes: s.allocs.iter().map(|a| a.0).collect(),
            offsets: placed.buffers.iter().map(|b| b.offset).collect(),
            arena_bytes: placed.peak_bytes,
            naive_bytes: placed.naive_bytes,
            max_live_bytes: placed.max_live.aligned_bytes,
        })
    }
}

/// Two buffers live at the same time whose bytes overlap, if any (sweep over first use).
fn first_overlap(buffers: &[placement::Buffer]) -> Option<(usize, usize)> {
    let mut order: Vec<usize> = (0..buffers.len()).collect();
    order.sort_by_key(|&i| buffers[i].first);
    let mut live: Vec<usize> = Vec::new();
    for &i in &order {
        let b = &buffers[i];
        live.retain(|&j| buffers[j].last >= b.first);
        if let Some(&j) = live.iter().find(|&&j| buffers[j].overlaps_in_memory(b)) {
            return Some((j.min(i), j.max(i)));
        }
        live.push(i);
    }
    None
}

/// Offsets of one step's allocations in its arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaPlan {
    /// Bytes of allocation k, in allocation order.
    pub sizes: Vec<usize>,
    /// Offset of allocation k in the arena.
    pub offsets: Vec<u64>,
    /// Arena size.
    pub arena_bytes: u64,
    /// Every allocation separately (aligned).
    pub naive_bytes: u64,
    /// The largest set of simultaneously live allocations (aligned): the lower bound.
    pub max_live_bytes: u64,
}

/// Hands out the ranges of a planned arena in allocation order.
#[derive(Debug)]
pub struct ArenaCursor {
    plan: Arc<ArenaPlan>,
    arena: Arc<CudaSlice<u8>>,
    next: usize,
}

impl ArenaCursor {
    pub fn new(plan: Arc<ArenaPlan>, arena: Arc<CudaSlice<u8>>) -> Self {
        ArenaCursor {
            plan,
            arena,
            next: 0,
        }
    }

    /// Allocations handed out so far.
    pub fn used(&self) -> usize {
        self.next
    }

    fn take(&mut self, stream: &Arc<CudaStream>, bytes: usize) -> Result<DeviceBuffer> {
        let k = self.next;
        let Some(&want) = self.plan.sizes.get(k) else {
            bail!(
                "replayed step: allocation #{k} ({bytes} bytes) was not in the recorded step ({} \
                 allocations): the step must allocate the same way every time",
                self.plan.sizes.len()
            );
        };
        if want != bytes {
            bail!(
                "replayed step: allocation #{k} is {bytes} bytes but the recorded step allocated \
                 {want}: the step must allocate the same way every time"
            );
        }
        let offset = self.plan.offsets[k];
        if offset + bytes as u64 > self.arena.len() as u64 {
            bail!(
                "arena plan out of bounds: #{k} at {offset} + {bytes} > {}",
                self.arena.len()
            );
        }
        self.next += 1;
        Ok(DeviceBuffer::arena_range(
            stream,
            &self.arena,
            offset,
            bytes,
        ))
    }
}

/// How [`super::CudaBackend`] allocates right now.
#[derive(Debug, Default)]
pub enum AllocMode {
    #[default]
    Plain,
    Record(Arc<Recorder>),
    Replay(ArenaCursor),
}

impl AllocMode {
    /// `None`: allocate from the driver.
    pub(crate) fn take(
        &mut self,
        stream: &Arc<CudaStream>,
        bytes: usize,
    ) -> Result<Option<DeviceBuffer>> {
        match self {
            AllocMode::Plain => Ok(None),
            AllocMode::Record(rec) => Ok(Some(rec.alloc(stream, bytes))),
            AllocMode::Replay(cur) => cur.take(stream, bytes).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(first: usize, last: usize, offset: u64, size: u64) -> placement::Buffer {
        placement::Buffer {
            tensor: 0,
            bytes: size,
            size,
            first,
            last,
            offset,
        }
    }

    #[test]
    fn overlap_sweep_finds_live_overlaps_only() {
        // disjoint in time, same bytes: fine
        assert_eq!(first_overlap(&[buf(0, 1, 0, 256), buf(2, 3, 0, 256)]), None);
        // live together, disjoint bytes: fine
        assert_eq!(
            first_overlap(&[buf(0, 3, 0, 256), buf(1, 2, 256, 256)]),
            None
        );
        // live together, overlapping bytes
        assert_eq!(
            first_overlap(&[buf(0, 3, 0, 512), buf(5, 6, 0, 256), buf(2, 4, 256, 256)]),
            Some((0, 2))
        );
    }
}
