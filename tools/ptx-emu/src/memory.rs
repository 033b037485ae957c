//! Device global memory: allocations with 64-bit device addresses.

use crate::{EmuError, Module};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// First device address handed out. Addresses are never reused, so a use after `free` is an
/// out-of-bounds access. Generic windows for shared/local/param memory live far above.
const GLOBAL_BASE: u64 = 0x0000_0002_0000_0000;
pub(crate) const GLOBAL_LIMIT: u64 = 0x0000_7000_0000_0000;

#[derive(Clone, PartialEq, Eq)]
struct Alloc {
    start: u64,
    data: Vec<u8>,
}

/// Device global memory: a set of allocations with 64-bit device addresses (never 0,
/// 256-byte aligned). Out-of-bounds = outside every live allocation.
pub struct Memory {
    /// Live allocations sorted by start address.
    allocs: Vec<Alloc>,
    next: u64,
    alloc_calls: u64,
    bytes: usize,
    /// (module id, symbol) → device address of module-scope `.global`/`.const` variables.
    symbols: HashMap<(u64, String), u64>,
    /// Undo log used while running the extra hazard-search schedules of a launch.
    journal: Option<Journal>,
    /// Index of the allocation the last lookup hit (a hint; atomic so blocks running on
    /// several threads can share a `&Memory`).
    last_hit: AtomicUsize,
}

impl Clone for Memory {
    fn clone(&self) -> Memory {
        Memory {
            allocs: self.allocs.clone(),
            next: self.next,
            alloc_calls: self.alloc_calls,
            bytes: self.bytes,
            symbols: self.symbols.clone(),
            journal: self.journal.clone(),
            last_hit: AtomicUsize::new(self.last_hit.load(Relaxed)),
        }
    }
}

/// Equal when the same allocations (addresses and contents) are live.
impl PartialEq for Memory {
    fn eq(&self, other: &Memory) -> bool {
        self.allocs == other.allocs
    }
}

impl Default for Memory {
    fn default() -> Self {
        Memory::new()
    }
}

impl Memory {
    pub fn new() -> Memory {
        Memory {
            allocs: Vec::new(),
            next: GLOBAL_BASE,
            alloc_calls: 0,
            bytes: 0,
            symbols: HashMap::new(),
            journal: None,
            last_hit: AtomicUsize::new(0),
        }
    }

    pub fn alloc(&mut self, bytes: usize) -> Result<u64, EmuError> {
        let start = self.next;
        let span = (bytes.max(1) as u64 + 255) & !255;
        if start + span >= GLOBAL_LIMIT {
            return Err(EmuError::Memory(format!(
                "out of device address space allocating {bytes} bytes"
            )));
        }
        // Leave a 256-byte gap after each allocation so off-by-one overruns are caught.
        self.next = start + span + 256;
        self.allocs.push(Alloc {
            start,
            data: vec![0u8; bytes],
        });
        self.alloc_calls += 1;
        self.bytes += bytes;
        Ok(start)
    }

    pub fn free(&mut self, addr: u64) -> Result<(), EmuError> {
        match self.allocs.binary_search_by_key(&addr, |a| a.start) {
            Ok(i) => {
                let a = self.allocs.remove(i);
                self.bytes -= a.data.len();
                self.last_hit.store(0, Relaxed);
                self.symbols.retain(|_, v| *v != addr);
                Ok(())
            }
            Err(_) => Err(EmuError::Memory(format!(
                "free of {addr:#x}: not the start of a live allocation"
            ))),
        }
    }

    /// Start and size of the live allocation containing `addr`, if any.
    pub fn allocation_containing(&self, addr: u64) -> Option<(u64, usize)> {
        self.find(addr, 1)
            .map(|i| (self.allocs[i].start, self.allocs[i].data.len()))
    }

    /// Index of the allocation containing `[addr, addr+len)`.
    #[inline]
    pub(crate) fn find(&self, addr: u64, len: usize) -> Option<usize> {
        let h = self.last_hit.load(Relaxed);
        let i = self.find_from(addr, len, h)?;
        if i != h {
            self.last_hit.store(i, Relaxed);
        }
        Some(i)
    }

    /// [`Self::find`] with the caller's own hint (no shared state written).
    #[inline]
    pub(crate) fn find_from(&self, addr: u64, len: usize, h: usize) -> Option<usize> {
        if let Some(a) = self.allocs.get(h) {
            if addr >= a.start && addr + len as u64 <= a.start + a.data.len() as u64 {
                return Some(h);
            }
        }
        let i = match self.allocs.binary_search_by_key(&addr, |a| a.start) {
            Ok(i) => i,
            Err(0) => return None,
            Err(i) => i - 1,
        };
        let a = &self.allocs[i];
        if addr >= a.start && addr + len as u64 <= a.start + a.data.len() as u64 {
            Some(i)
        } else {
            None
        }
    }

    /// Describes where `addr` lies relative to the allocations (for fault messages).
    pub(crate) fn describe(&self, addr: u64, len: usize) -> String {
        let i = match self.allocs.binary_search_by_key(&addr, |a| a.start) {
            Ok(i) => Some(i),
            Err(0) => None,
            Err(i) => Some(i - 1),
        };
        let mut s = format!("{len}-byte access at {addr:#x} is outside every live allocation");
        if let Some(i) = i {
            let a = &self.allocs[i];
            s += &format!(
                "; nearest allocation below: [{:#x}, {:#x}) ({} bytes), access starts {} bytes past its start",
                a.start,
                a.start + a.data.len() as u64,
                a.data.len(),
                addr - a.start
            );
        }
        if let Some(a) = self.allocs.get(i.map(|i| i + 1).unwrap_or(0)) {
            s += &format!("; next allocation starts at {:#x}", a.start);
        }
        s
    }

    #[inline]
    pub(crate) fn slice(&self, idx: usize, addr: u64, len: usize) -> &[u8] {
        let a = &self.allocs[idx];
        let o = (addr - a.start) as usize;
        &a.data[o..o + len]
    }

    #[inline]
    pub(crate) fn slice_mut(&mut self, idx: usize, addr: u64, len: usize) -> &mut [u8] {
        let a = &mut self.allocs[idx];
        let o = (addr - a.start) as usize;
        if let Some(j) = self.journal.as_mut() {
            j.save(a.start, &a.data, o, len);
        }
        &mut a.data[o..o + len]
    }

    /// Start address and bytes of allocation `idx` (direct reads of a range known to lie in it).
    #[inline(always)]
    pub(crate) fn alloc_bytes(&self, idx: usize) -> (u64, &[u8]) {
        let a = &self.allocs[idx];
        (a.start, &a.data)
    }

    /// Start address and bytes of allocation `idx` for direct writes of a range known to lie in
    /// it; `journal(addr, len)` must be called for each write while a journal is open
    /// ([`Self::journaling`]).
    #[inline(always)]
    pub(crate) fn alloc_bytes_mut(&mut self, idx: usize) -> (u64, &mut [u8]) {
        let a = &mut self.allocs[idx];
        (a.start, &mut a.data)
    }

    /// Whether the undo journal is open (writes must be recorded).
    #[inline(always)]
    pub(crate) fn journaling(&self) -> bool {
        self.journal.is_some()
    }

    /// Record the old contents of `[addr, addr + len)` in allocation `idx` in the open journal.
    #[inline(always)]
    pub(crate) fn journal(&mut self, idx: usize, addr: u64, len: usize) {
        if let Some(j) = self.journal.as_mut() {
            let a = &self.allocs[idx];
            j.save(a.start, &a.data, (addr - a.start) as usize, len);
        }
    }

    fn checked(&self, addr: u64, len: usize, what: &str) -> Result<usize, EmuError> {
        if len == 0 {
            return Ok(usize::MAX);
        }
        self.find(addr, len)
            .ok_or_else(|| EmuError::Memory(format!("{what}: {}", self.describe(addr, len))))
    }

    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), EmuError> {
        let i = self.checked(addr, data.len(), "write")?;
        if i != usize::MAX {
            self.slice_mut(i, addr, data.len()).copy_from_slice(data);
        }
        Ok(())
    }

    pub fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), EmuError> {
        let i = self.checked(addr, out.len(), "read")?;
        if i != usize::MAX {
            out.copy_from_slice(self.slice(i, addr, out.len()));
        }
        Ok(())
    }

    pub fn memset_d8(&mut self, addr: u64, value: u8, bytes: usize) -> Result<(), EmuError> {
        let i = self.checked(addr, bytes, "memset_d8")?;
        if i != usize::MAX {
            self.slice_mut(i, addr, bytes).fill(value);
        }
        Ok(())
    }

    pub fn memset_d32(&mut self, addr: u64, value: u32, count: usize) -> Result<(), EmuError> {
        if !addr.is_multiple_of(4) {
            return Err(EmuError::Memory(format!(
                "memset_d32 at {addr:#x}: address not 4-byte aligned"
            )));
        }
        let i = self.checked(addr, count * 4, "memset_d32")?;
        if i != usize::MAX {
            for c in self.slice_mut(i, addr, count * 4).chunks_exact_mut(4) {
                c.copy_from_slice(&value.to_le_bytes());
            }
        }
        Ok(())
    }

    /// Total alloc calls so far.
    pub fn alloc_count(&self) -> u64 {
        self.alloc_calls
    }

    pub fn bytes_in_use(&self) -> usize {
        self.bytes
    }

    /// Allocate and initialise the module-scope `.global`/`.const` variables of `module` (once per
    /// module); returns (name, device address) for each. Called by `launch` on first use.
    pub fn load_module_globals(&mut self, module: &Module) -> Result<Vec<(String, u64)>, EmuError> {
        let mut out = Vec::new();
        for g in &module.globals {
            let key = (module.id, g.name.clone());
            let addr = match self.symbols.get(&key) {
                Some(&a) => a,
                None => {
                    let a = self.alloc(g.size.max(1))?;
                    self.write(a, &g.init)?;
                    self.symbols.insert(key, a);
                    a
                }
            };
            out.push((g.name.clone(), addr));
        }
        Ok(out)
    }

    /// Device address of a module-scope `.global`/`.const` variable (after `load_module_globals`).
    pub fn global_address(&self, module: &Module, name: &str) -> Option<u64> {
        self.symbols.get(&(module.id, name.to_string())).copied()
    }

    pub(crate) fn start_journal(&mut self) {
        self.journal = Some(Journal::default());
    }

    /// Undo every write made since `start_journal`.
    pub(crate) fn rollback_journal(&mut self) {
        if let Some(j) = self.journal.take() {
            // each block was saved once, before its first write: restoring them in any order
            // gives the contents from before the journal opened
            for (addr, len, old) in j.blocks.into_iter().rev() {
                let len = len as usize;
                if let Some(i) = self.find(addr, len) {
                    let a = &mut self.allocs[i];
                    let o = (addr - a.start) as usize;
                    a.data[o..o + len].copy_from_slice(&old[..len]);
                }
            }
        }
    }
}

/// Bytes per journal block.
const JBLOCK: usize = 64;

/// The undo log of global memory: the old contents of every 64-byte block (aligned within its
/// allocation, which is 256-byte aligned) saved once, before its first write. Which blocks are
/// saved is a bitset per written allocation.
#[derive(Clone, Default)]
struct Journal {
    /// (allocation start, bit per 64-byte block of it: saved).
    saved: Vec<(u64, Vec<u64>)>,
    /// Index in `saved` of the allocation of the last write.
    last: usize,
    blocks: Vec<(u64, u8, [u8; JBLOCK])>,
}

impl Journal {
    /// Save the blocks of `[o, o + len)` of an allocation (bytes `data`, at device address
    /// `start`) not saved yet.
    #[inline(always)]
    fn save(&mut self, start: u64, data: &[u8], o: usize, len: usize) {
        if len == 0 {
            return;
        }
        let k = match self.saved.get(self.last) {
            Some((s, _)) if *s == start => self.last,
            _ => {
                let k = match self.saved.iter().position(|(s, _)| *s == start) {
                    Some(k) => k,
                    None => {
                        let nblocks = data.len().div_ceil(JBLOCK);
                        self.saved.push((start, vec![0u64; nblocks.div_ceil(64)]));
                        self.saved.len() - 1
                    }
                };
                self.last = k;
                k
            }
        };
        let bits = &mut self.saved[k].1;
        let first = o / JBLOCK;
        let last = (o + len - 1) / JBLOCK;
        for b in first..=last {
            let (word, bit) = (b / 64, 1u64 << (b % 64));
            if bits[word] & bit != 0 {
                continue;
            }
            bits[word] |= bit;
            let lo = b * JBLOCK;
            let hi = (lo + JBLOCK).min(data.len());
            let mut old = [0u8; JBLOCK];
            old[..hi - lo].copy_from_slice(&data[lo..hi]);
            self.blocks.push((start + lo as u64, (hi - lo) as u8, old));
        }
    }
}

/// Bytes per overlay page.
const PAGE: usize = 4096;

/// One page of a block's writes: the bytes and a bit per byte written.
struct Page {
    base: u64,
    data: Box<[u8; PAGE]>,
    mask: Box<[u64; PAGE / 64]>,
}

/// The global-memory writes of one block that runs concurrently with other blocks of its launch:
/// 4 KiB pages over a read-only [`Memory`], each with a bit per byte written. Reads of the block
/// see its own writes; [`Memory::apply_overlay`] lands them after the block.
#[derive(Default)]
pub(crate) struct Overlay {
    /// Page base address → index in `list`.
    pages: HashMap<u64, usize, BuildFx>,
    list: Vec<Page>,
    /// Index + 1 of the page the last lookup hit (0 = none).
    last: std::cell::Cell<usize>,
    /// Written address range `[lo, hi)` (reads outside it skip the page lookup).
    lo: u64,
    hi: u64,
    /// Allocation hint of this block's lookups.
    pub(crate) hint: std::cell::Cell<usize>,
}

impl Overlay {
    #[inline(always)]
    fn page(&self, base: u64) -> Option<usize> {
        let l = self.last.get();
        if l != 0 && self.list[l - 1].base == base {
            return Some(l - 1);
        }
        let i = *self.pages.get(&base)?;
        self.last.set(i + 1);
        Some(i)
    }

    /// Record `data` written at `addr` (the caller checked the bounds).
    pub(crate) fn write(&mut self, addr: u64, data: &[u8]) {
        if self.list.is_empty() {
            self.lo = addr;
            self.hi = addr;
        }
        self.lo = self.lo.min(addr);
        self.hi = self.hi.max(addr + data.len() as u64);
        let mut a = addr;
        let mut rest = data;
        while !rest.is_empty() {
            let base = a & !(PAGE as u64 - 1);
            let o = (a - base) as usize;
            let n = (PAGE - o).min(rest.len());
            let i = match self.page(base) {
                Some(i) => i,
                None => {
                    self.list.push(Page {
                        base,
                        data: Box::new([0; PAGE]),
                        mask: Box::new([0; PAGE / 64]),
                    });
                    let i = self.list.len() - 1;
                    self.pages.insert(base, i);
                    self.last.set(i + 1);
                    i
                }
            };
            let p = &mut self.list[i];
            p.data[o..o + n].copy_from_slice(&rest[..n]);
            for b in o..o + n {
                p.mask[b / 64] |= 1 << (b % 64);
            }
            a += n as u64;
            rest = &rest[n..];
        }
    }

    /// Whether `[addr, addr + len)` may overlap this block's writes.
    #[inline(always)]
    pub(crate) fn may_hold(&self, addr: u64, len: usize) -> bool {
        !self.list.is_empty() && addr < self.hi && addr + len as u64 > self.lo
    }

    /// Patch `out` (read from the base memory at `addr`) with this block's writes.
    #[inline]
    pub(crate) fn patch(&self, addr: u64, out: &mut [u8]) {
        if !self.may_hold(addr, out.len()) {
            return;
        }
        let mut a = addr;
        let mut k = 0;
        while k < out.len() {
            let base = a & !(PAGE as u64 - 1);
            let o = (a - base) as usize;
            let n = (PAGE - o).min(out.len() - k);
            if let Some(i) = self.page(base) {
                let p = &self.list[i];
                for b in 0..n {
                    if p.mask[(o + b) / 64] & (1 << ((o + b) % 64)) != 0 {
                        out[k + b] = p.data[o + b];
                    }
                }
            }
            a += n as u64;
            k += n;
        }
    }
}

impl Memory {
    /// Land the writes of one block (see [`Overlay`]); bytes outside every live allocation
    /// cannot occur (each write was bounds-checked against this memory).
    pub(crate) fn apply_overlay(&mut self, ov: &Overlay) {
        for p in &ov.list {
            let mut i = 0;
            while i < PAGE {
                if p.mask[i / 64] == 0 {
                    i = (i / 64 + 1) * 64;
                    continue;
                }
                if p.mask[i / 64] & (1 << (i % 64)) == 0 {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j < PAGE && p.mask[j / 64] & (1 << (j % 64)) != 0 {
                    j += 1;
                }
                let addr = p.base + i as u64;
                if let Some(idx) = self.find(addr, j - i) {
                    self.slice_mut(idx, addr, j - i)
                        .copy_from_slice(&p.data[i..j]);
                } else {
                    // a run can span two adjacent allocations' bytes only through the guard
                    // gap, which is never written; land byte by byte to be safe
                    for b in i..j {
                        if let Some(idx) = self.find(p.base + b as u64, 1) {
                            self.slice_mut(idx, p.base + b as u64, 1)[0] = p.data[b];
                        }
                    }
                }
                i = j;
            }
        }
    }
}

/// A fast multiplicative hasher for the chunk keys (addresses / 16).
#[derive(Default, Clone, Copy)]
pub(crate) struct BuildFx;

impl std::hash::BuildHasher for BuildFx {
    type Hasher = Fx;
    fn build_hasher(&self) -> Fx {
        Fx(0)
    }
}

pub(crate) struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The undo journal (64-byte blocks saved once) restores every byte, including the ragged
    /// tail block of an allocation whose size is not a multiple of 64, and overlapping writes.
    #[test]
    fn journal_rolls_back_every_write() {
        let mut m = Memory::new();
        let a = m.alloc(1000).unwrap();
        let b = m.alloc(37).unwrap();
        let init_a: Vec<u8> = (0..1000).map(|i| (i * 7 + 3) as u8).collect();
        let init_b: Vec<u8> = (0..37).map(|i| (i * 5 + 1) as u8).collect();
        m.write(a, &init_a).unwrap();
        m.write(b, &init_b).unwrap();
        let before = m.clone();
        m.start_journal();
        m.write(a + 60, &[0xaa; 10]).unwrap(); // straddles two blocks
        m.write(a + 62, &[0xbb; 3]).unwrap(); // same blocks again
        m.write(a + 990, &[0xcc; 10]).unwrap(); // ragged tail
        m.write(b, &[0xdd; 37]).unwrap();
        m.memset_d8(a + 128, 0xee, 300).unwrap();
        let i = m.find(a + 512, 4).unwrap();
        m.journal(i, a + 512, 4);
        let (start, data) = m.alloc_bytes_mut(i);
        data[(a + 512 - start) as usize..][..4].copy_from_slice(&[1, 2, 3, 4]);
        assert!(m != before);
        m.rollback_journal();
        assert!(m == before);
        assert!(!m.journaling());
    }
}
