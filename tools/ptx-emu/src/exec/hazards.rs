//! Shared-memory hazard detection: per-word shadow state (last write, two reads, initialised
//! bytes, outstanding cp.async), happens-before by barrier and warp-sync epochs.

use super::*;

/// One shared access to a 4-byte word, packed: bits 0..11 thread index + 1 (0 = none), bit 11
/// atomic, bits 12..16 byte mask within the word, bits 16..40 block barrier epoch, bits 40..64
/// warp-sync epoch of the accessing warp (epochs modulo 2^24).
pub(super) type Acc = u64;
pub(super) const NO_ACC: Acc = 0;
pub(super) const EPOCH_MASK: u32 = (1 << 24) - 1;

#[inline(always)]
pub(super) fn acc(tid: u32, epoch: u32, wepoch: u32, atomic: bool, bytes: u32) -> Acc {
    (tid as u64 + 1)
        | ((atomic as u64) << 11)
        | ((bytes as u64 & 0xf) << 12)
        | (((epoch & EPOCH_MASK) as u64) << 16)
        | (((wepoch & EPOCH_MASK) as u64) << 40)
}
#[inline(always)]
pub(super) fn acc_tid(a: Acc) -> u32 {
    ((a & 0x7ff) as u32).wrapping_sub(1)
}
#[inline(always)]
pub(super) fn acc_atomic(a: Acc) -> bool {
    a & (1 << 11) != 0
}
#[inline(always)]
pub(super) fn acc_bytes(a: Acc) -> u32 {
    ((a >> 12) & 0xf) as u32
}
#[inline(always)]
pub(super) fn acc_epoch(a: Acc) -> u32 {
    ((a >> 16) as u32) & EPOCH_MASK
}
#[inline(always)]
pub(super) fn acc_wepoch(a: Acc) -> u32 {
    (a >> 40) as u32 & EPOCH_MASK
}

pub(super) enum Hazard {
    Pending,
    Uninit,
    Race(&'static str),
    Wgmma,
}

/// Shadow state of one 4-byte word of shared memory.
#[derive(Clone, Copy)]
pub(super) struct Shadow {
    /// Last write.
    pub(super) w: Acc,
    /// Up to two reads since (kept preferring readers of different warps).
    pub(super) r1: Acc,
    pub(super) r2: Acc,
    /// Bytes of the word ever written in this block (uninitialised-read detection).
    pub(super) init: u8,
    /// Outstanding cp.async copies into the word.
    pub(super) pending: u8,
    /// Outstanding `wgmma.mma_async` ops reading the word (exec/wgmma.rs).
    pub(super) wg: u16,
}

pub(super) const NO_SHADOW: Shadow = Shadow {
    w: NO_ACC,
    r1: NO_ACC,
    r2: NO_ACC,
    init: 0,
    pending: 0,
    wg: 0,
};

impl<'a, 'b> Block<'a, 'b> {
    /// Hazard checks and shadow update for one shared access by thread `tid`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn shared_check(
        &mut self,
        w: &Warp,
        lane: usize,
        tid: u32,
        off: usize,
        len: usize,
        write: bool,
        atomic: bool,
        data: Option<&[u8]>,
    ) -> R<()> {
        if self.shadow.is_empty() {
            // `PTX_EMU_CHECKS=fast`: no shadow state
            return Ok(());
        }
        self.guard_check(lane, tid, off, len, false)?;
        if write {
            self.proxy_note(tid, w.pc, off, len);
        }
        let races = self.c.opts.detect_races;
        let uninit = self.c.opts.detect_uninit_shared;
        let ep = self.epoch & EPOCH_MASK;
        let wep = w.wepoch & EPOCH_MASK;
        let end = off + len;
        let first = off / 4;
        let last = end.div_ceil(4);
        let shadow = &mut self.shadow[first..last];
        let mut hazard = None;
        let whole = off.is_multiple_of(4) && len.is_multiple_of(4);
        let me_whole = acc(tid, ep, wep, atomic, 0xf);
        for (k, sh) in shadow.iter_mut().enumerate() {
            let wb = (first + k) * 4;
            let (lo, hi, bytes, me) = if whole {
                (0, 4, 0xf, me_whole)
            } else {
                let lo = off.max(wb) - wb;
                let hi = end.min(wb + 4) - wb;
                let bytes = ((1u32 << hi) - 1) & !((1u32 << lo) - 1);
                (lo, hi, bytes, acc(tid, ep, wep, atomic, bytes))
            };
            // Is the earlier access `p` unordered with this one (a potential race)?
            let unordered = |p: Acc| -> bool {
                p != NO_ACC
                    && acc_epoch(p) == ep
                    && p != me
                    && acc_tid(p) != tid
                    && acc_bytes(p) & bytes != 0
                    && !(acc_tid(p) / 32 == tid / 32 && acc_wepoch(p) != wep)
                    && !(acc_atomic(p) && atomic)
            };
            if sh.pending != 0 && races {
                hazard = Some((Hazard::Pending, wb + lo, 0));
                break;
            }
            if write && sh.wg != 0 && races {
                hazard = Some((Hazard::Wgmma, wb + lo, 0));
                break;
            }
            if write {
                if races {
                    if unordered(sh.w) {
                        // Same-value writes (e.g. every lane storing one flag) are benign.
                        let same = !atomic
                            && !acc_atomic(sh.w)
                            && data.is_some_and(|d| {
                                (lo..hi).all(|b| d[wb + b - off] == self.shared[wb + b])
                            });
                        if !same {
                            hazard =
                                Some((Hazard::Race("write-after-write"), wb + lo, acc_tid(sh.w)));
                            break;
                        }
                    }
                    if unordered(sh.r1) {
                        hazard = Some((Hazard::Race("write-after-read"), wb + lo, acc_tid(sh.r1)));
                        break;
                    }
                    if unordered(sh.r2) {
                        hazard = Some((Hazard::Race("write-after-read"), wb + lo, acc_tid(sh.r2)));
                        break;
                    }
                }
                sh.w = me;
                sh.init |= bytes as u8;
            } else {
                if uninit && (sh.init as u32 & bytes) != bytes {
                    let b = (0..4)
                        .find(|b| bytes & (1 << b) != 0 && sh.init & (1 << b) == 0)
                        .unwrap_or(0);
                    hazard = Some((Hazard::Uninit, wb + b, 0));
                    break;
                }
                if races {
                    if unordered(sh.w) {
                        hazard = Some((Hazard::Race("read-after-write"), wb + lo, acc_tid(sh.w)));
                        break;
                    }
                    if sh.r1 == me {
                        continue;
                    }
                    let r1t = acc_tid(sh.r1);
                    if sh.r1 == NO_ACC
                        || acc_epoch(sh.r1) != ep
                        || (r1t == tid && acc_bytes(sh.r1) & !bytes == 0)
                    {
                        sh.r1 = me;
                    } else if sh.r2 == NO_ACC
                        || acc_epoch(sh.r2) != ep
                        || (acc_tid(sh.r2) == tid && acc_bytes(sh.r2) & !bytes == 0)
                        || (acc_tid(sh.r2) / 32 == r1t / 32 && tid / 32 != r1t / 32)
                    {
                        sh.r2 = me;
                    }
                }
            }
        }
        match hazard {
            None => Ok(()),
            Some((Hazard::Pending, at, _)) => Err(e(
                FaultKind::SharedRace,
                lane as u32,
                Some(at as u64),
                format!(
                    "{} of shared bytes [{off}, {end}) while a cp.async into them is outstanding: its data lands only at cp.async.wait_group/wait_all",
                    if write { "write" } else { "read" },
                ),
            )),
            Some((Hazard::Uninit, at, _)) => Err(e(
                FaultKind::UninitSharedRead,
                lane as u32,
                Some(at as u64),
                format!("shared byte {at} (offset in the block's shared memory) was never written in this block"),
            )),
            Some((Hazard::Race(what), at, other)) => Err(self.race(lane, at, what, other)),
            Some((Hazard::Wgmma, at, _)) => Err(e(
                FaultKind::AsyncHazard,
                lane as u32,
                Some(at as u64),
                format!(
                    "write of shared bytes [{off}, {end}) that an outstanding wgmma.mma_async reads: it may read them any time until the wgmma.wait_group that completes it"
                ),
            )),
        }
    }

    pub(super) fn race(&self, lane: usize, off: usize, what: &str, other: u32) -> Err1 {
        e(
            FaultKind::SharedRace,
            lane as u32,
            Some(off as u64),
            format!(
                "{what} race on shared byte {off} with {} with no bar.sync (or bar.warp.sync within a warp) in between",
                self.describe_tid(other)
            ),
        )
    }
}
