//! sm_90 bulk asynchronous copies: `cp.async.bulk` (global → shared with mbarrier completion,
//! shared → global with bulk groups), `cp.async.bulk.commit_group` / `wait_group[.read]`, and
//! TMA tile copies `cp.async.bulk.tensor.{1..5}d` (load with mbarrier completion, store with
//! bulk groups) through the 128-byte tensor map of `crate::tensor_map`.
//!
//! Asynchrony: the source is read when the copy is issued; the destination is written when the
//! copy lands — after the issuing warp's time slice at the earliest (see `hop_tick`), at the
//! latest when no warp can run or a `wait_group` needs it. A load's bytes then count against
//! the mbarrier's tx-count, which may complete its phase. Shared bytes a load writes are
//! guarded from its issue until the mbarrier phase it lands in completes: any thread access in
//! between is an `AsyncProxyRace`.

use super::*;
use crate::tensor_map::TensorMap;

/// One copy in flight.
pub(crate) struct Inflight {
    kind: Kind,
    data: Vec<u8>,
    /// Issuing instruction and thread (reports).
    pc: u32,
    tid: u32,
}

#[derive(Clone)]
enum Kind {
    /// Into shared memory at `off`, signalling the mbarrier at `bar`.
    Smem { off: u32, bar: u32 },
    /// Into shared memory element by element (a tensor tile: swizzled offsets).
    SmemScatter {
        offs: Vec<u32>,
        esize: u32,
        bar: u32,
    },
    /// Into global memory (`addrs`: one per `esize` bytes of data, or one contiguous run),
    /// in bulk group `group` of thread `tid`.
    Gmem {
        addrs: Vec<u64>,
        esize: u32,
        group: u32,
        /// `cp.reduce.async.bulk`: combine each element into global memory with this op.
        red: Option<(AtomOp, Ty)>,
    },
}

impl<'a, 'b> Block<'a, 'b> {
    /// The lane-by-lane bulk-copy operations.
    pub(super) fn exec_tma(&mut self, w: &mut Warp, ins: &Instr, op: &HopOp, exec: u32) -> R<()> {
        for l in lanes(exec) {
            let tid = w.idx * 32 + l as u32;
            match op {
                HopOp::BulkG2S => {
                    let mask = self.multicast_mask(w, &ins.s[4], l)?;
                    let dst = self.addr(w, &ins.s[0], l);
                    let src = self.addr(w, &ins.s[1], l);
                    let size = self.val(w, &ins.s[2], l) as u32 as usize;
                    let bar = self.mbar_off(w, &ins.s[3], Space::Shared, l)?;
                    self.check_bulk_args(l, dst, src, size)?;
                    let off =
                        self.shared_off(l, self.resolve(Space::Shared, dst).1, size, false)?;
                    let mut data = vec![0u8; size];
                    self.global_read(l, src, &mut data)?;
                    if let Some(p) = self.prof.as_mut() {
                        p.on_bulk_read(src, size as u64);
                    }
                    self.issue_to_cluster(
                        mask,
                        w,
                        l,
                        tid,
                        Kind::Smem {
                            off: off as u32,
                            bar,
                        },
                        data,
                        off as u32,
                        size as u32,
                        bar,
                    )?;
                }
                HopOp::BulkS2G => {
                    let dst = self.addr(w, &ins.s[0], l);
                    let src = self.addr(w, &ins.s[1], l);
                    let size = self.val(w, &ins.s[2], l) as u32 as usize;
                    self.check_bulk_args(l, src, dst, size)?;
                    let off = self.shared_off(l, src, size, false)?;
                    self.guard_check(l, tid, off, size, false)?;
                    self.proxy_check(l, off, size, "cp.async.bulk (shared to global)")?;
                    let data = self.shared[off..off + size].to_vec();
                    let group = *self.hop.bulk_committed.get(&tid).unwrap_or(&0);
                    self.hop.bytes_s2g += size as u64;
                    self.hop.inflight.push(Inflight {
                        kind: Kind::Gmem {
                            addrs: vec![dst],
                            esize: size as u32,
                            group,
                            red: None,
                        },
                        data,
                        pc: w.pc,
                        tid,
                    });
                }
                HopOp::BulkReduce { op, ty } => {
                    let dst = self.addr(w, &ins.s[0], l);
                    let src = self.addr(w, &ins.s[1], l);
                    let size = self.val(w, &ins.s[2], l) as u32 as usize;
                    self.check_bulk_args(l, src, dst, size)?;
                    let off = self.shared_off(l, src, size, false)?;
                    self.guard_check(l, tid, off, size, false)?;
                    self.proxy_check(l, off, size, "cp.reduce.async.bulk")?;
                    let eb = ty.bytes();
                    let data = self.shared[off..off + size].to_vec();
                    let group = *self.hop.bulk_committed.get(&tid).unwrap_or(&0);
                    self.hop.bytes_s2g += size as u64;
                    self.hop.inflight.push(Inflight {
                        kind: Kind::Gmem {
                            addrs: (0..size / eb).map(|k| dst + (k * eb) as u64).collect(),
                            esize: eb as u32,
                            group,
                            red: Some((*op, *ty)),
                        },
                        data,
                        pc: w.pc,
                        tid,
                    });
                }
                HopOp::BulkCommit => {
                    *self.hop.bulk_committed.entry(tid).or_insert(0) += 1;
                }
                HopOp::BulkWait { n, read } => {
                    if *read {
                        // sources are read at issue: nothing left to wait for
                        continue;
                    }
                    let committed = *self.hop.bulk_committed.get(&tid).unwrap_or(&0);
                    let mut i = 0;
                    while i < self.hop.inflight.len() {
                        let c = &self.hop.inflight[i];
                        let done = c.tid == tid
                            && matches!(c.kind, Kind::Gmem { group, .. } if group + n < committed);
                        if done {
                            let c = self.hop.inflight.remove(i);
                            self.land_async(c)
                                .map_err(|f| e(f.kind, l as u32, f.address, f.detail))?;
                        } else {
                            i += 1;
                        }
                    }
                }
                HopOp::TensorLoad { dims } => {
                    let mask = self.multicast_mask(w, &ins.s[4], l)?;
                    let dst = self.addr(w, &ins.s[0], l);
                    let tm = self.tensor_map(w, &ins.s[1], l)?;
                    let coords = self.coords(w, &ins.s[2], l, *dims)?;
                    let bar = self.mbar_off(w, &ins.s[3], Space::Shared, l)?;
                    let bytes = tm.box_bytes();
                    let sbase = self.resolve(Space::Shared, dst).1;
                    if !sbase.is_multiple_of(128) {
                        return Err(e(FaultKind::Misaligned, l as u32, Some(dst), "cp.async.bulk.tensor: the shared-memory destination must be 128-byte aligned"));
                    }
                    let base = self.shared_off(l, sbase, bytes, false)?;
                    let es = tm.elem_size as usize;
                    let fill = tm.oob_element().to_le_bytes();
                    let mut data = vec![0u8; bytes];
                    let mut offs = Vec::with_capacity(bytes / es);
                    // contiguous global runs read (profiler: requests and sectors)
                    let mut run: Option<(u64, u64)> = None;
                    for (k, a) in tm.box_elements(&coords).into_iter().enumerate() {
                        let chunk = &mut data[k * es..(k + 1) * es];
                        match a {
                            Some(a) => {
                                self.global_read(l, a, chunk)?;
                                run = match run {
                                    Some((s, n)) if s + n == a => Some((s, n + es as u64)),
                                    r => {
                                        if let (Some((s, n)), Some(p)) = (r, self.prof.as_mut()) {
                                            p.on_bulk_read(s, n);
                                        }
                                        Some((a, es as u64))
                                    }
                                };
                            }
                            None => chunk.copy_from_slice(&fill[..es]),
                        }
                        offs.push(tm.swizzle.apply(base + k * es) as u32);
                    }
                    if let (Some((s, n)), Some(p)) = (run, self.prof.as_mut()) {
                        p.on_bulk_read(s, n);
                    }
                    if offs.iter().any(|&o| o as usize + es > self.shared.len()) {
                        return Err(e(
                            FaultKind::OutOfBounds,
                            l as u32,
                            Some(dst),
                            "cp.async.bulk.tensor: the swizzled box does not fit in shared memory",
                        ));
                    }
                    self.issue_to_cluster(
                        mask,
                        w,
                        l,
                        tid,
                        Kind::SmemScatter {
                            offs,
                            esize: es as u32,
                            bar,
                        },
                        data,
                        base as u32,
                        bytes as u32,
                        bar,
                    )?;
                }
                HopOp::TensorStore { dims } => {
                    let tm = self.tensor_map(w, &ins.s[0], l)?;
                    let coords = self.coords(w, &ins.s[1], l, *dims)?;
                    let src = self.addr(w, &ins.s[2], l);
                    let bytes = tm.box_bytes();
                    let sbase = self.resolve(Space::Shared, src).1;
                    if !sbase.is_multiple_of(128) {
                        return Err(e(FaultKind::Misaligned, l as u32, Some(src), "cp.async.bulk.tensor: the shared-memory source must be 128-byte aligned"));
                    }
                    let base = self.shared_off(l, sbase, bytes, false)?;
                    self.guard_check(l, tid, base, bytes, false)?;
                    self.proxy_check(l, base, bytes, "cp.async.bulk.tensor (store)")?;
                    let es = tm.elem_size as usize;
                    let mut data = Vec::with_capacity(bytes);
                    let mut addrs = Vec::new();
                    for (k, a) in tm.box_elements(&coords).into_iter().enumerate() {
                        // out-of-bounds elements are not written
                        if let Some(a) = a {
                            let o = tm.swizzle.apply(base + k * es);
                            if o + es > self.shared.len() {
                                return Err(e(FaultKind::OutOfBounds, l as u32, Some(src), "cp.async.bulk.tensor: the swizzled box does not fit in shared memory"));
                            }
                            data.extend_from_slice(&self.shared[o..o + es]);
                            addrs.push(a);
                        }
                    }
                    let group = *self.hop.bulk_committed.get(&tid).unwrap_or(&0);
                    self.hop.bytes_s2g += data.len() as u64;
                    self.hop.inflight.push(Inflight {
                        kind: Kind::Gmem {
                            addrs,
                            esize: es as u32,
                            group,
                            red: None,
                        },
                        data,
                        pc: w.pc,
                        tid,
                    });
                }
                _ => unreachable!(),
            }
        }
        Ok(())
    }

    /// A load's destination ranks: its multicast ctaMask (1 << this block's rank without
    /// `.multicast::cluster`).
    fn multicast_mask(&self, w: &Warp, o: &Opnd, l: usize) -> R<u32> {
        if let Opnd::Imm(0) = o {
            return Ok(1 << self.cluster_rank());
        }
        self.cluster_mask(self.val(w, o, l) & 0xffff, l)
    }

    /// [`Self::issue_to_shared`] in every block of `mask` (a multicast: the same shared offset
    /// and the mbarrier at the same offset in each destination block).
    #[allow(clippy::too_many_arguments)]
    fn issue_to_cluster(
        &mut self,
        mask: u32,
        w: &Warp,
        l: usize,
        tid: u32,
        kind: Kind,
        data: Vec<u8>,
        off: u32,
        len: u32,
        bar: u32,
    ) -> R<()> {
        let own = self.cluster_rank();
        for r in lanes(mask & !(1 << own)) {
            self.dsmem_note(w, l, r, off as u64)?;
            let (k, d) = (kind.clone(), data.clone());
            self.as_cta(r, |b| b.issue_to_shared(w, l, tid, k, d, off, len, bar))?;
        }
        if mask & (1 << own) != 0 {
            self.issue_to_shared(w, l, tid, kind, data, off, len, bar)?;
        }
        Ok(())
    }

    /// Size and alignment rules of `cp.async.bulk` (16-byte multiples, 16-byte aligned).
    fn check_bulk_args(&self, l: usize, a: u64, b: u64, size: usize) -> R<()> {
        if size == 0 || !size.is_multiple_of(16) {
            return Err(e(
                FaultKind::Misaligned,
                l as u32,
                None,
                format!("cp.async.bulk size {size} must be a non-zero multiple of 16"),
            ));
        }
        for x in [a, b] {
            if x % 16 != 0 {
                return Err(e(
                    FaultKind::Misaligned,
                    l as u32,
                    Some(x),
                    "cp.async.bulk addresses must be 16-byte aligned",
                ));
            }
        }
        Ok(())
    }

    /// A load into shared memory leaves: its region is guarded until its mbarrier phase
    /// completes.
    #[allow(clippy::too_many_arguments)]
    fn issue_to_shared(
        &mut self,
        w: &Warp,
        l: usize,
        tid: u32,
        kind: Kind,
        data: Vec<u8>,
        off: u32,
        len: u32,
        bar: u32,
    ) -> R<()> {
        self.guard_check(l, tid, off as usize, len as usize, true)?;
        if !self.hop.mbars.contains_key(&bar) {
            return Err(e(FaultKind::Trap, l as u32, Some(bar as u64), format!("bulk copy signals the mbarrier at shared offset {bar:#x}, which is not initialised")));
        }
        self.hop.bytes_g2s += data.len() as u64;
        self.hop.guards.push((off, len, bar, None, w.pc, tid));
        self.hop.inflight.push(Inflight {
            kind,
            data,
            pc: w.pc,
            tid,
        });
        Ok(())
    }

    /// The tensor map a `[tmap, {..}]` operand points at (param space, or global memory).
    fn tensor_map(&self, w: &Warp, o: &Opnd, l: usize) -> R<TensorMap> {
        let a = self.addr(w, o, l);
        let mut b = [0u8; 128];
        let (sp, off) = self.resolve(Space::Generic, a);
        let ok = match sp {
            Space::Param if off as usize + 128 <= self.c.params.len() => {
                b.copy_from_slice(&self.c.params[off as usize..off as usize + 128]);
                true
            }
            Space::Global => self.mem.read(a, &mut b),
            _ => false,
        };
        if !ok {
            return Err(e(FaultKind::OutOfBounds, l as u32, Some(a), "cp.async.bulk.tensor: the tensor map address is not a kernel parameter or global memory"));
        }
        TensorMap::from_bytes(&b).ok_or_else(|| {
            e(FaultKind::Trap, l as u32, Some(a), "cp.async.bulk.tensor: the tensor map was not made by cuTensorMapEncodeTiled (bad magic)")
        })
    }

    fn coords(&self, w: &Warp, o: &Opnd, l: usize, dims: u8) -> R<Vec<i32>> {
        let Opnd::Vec(cs) = o else { unreachable!() };
        let v: Vec<i32> = cs.iter().map(|c| self.val(w, c, l) as i32).collect();
        debug_assert_eq!(v.len(), dims as usize);
        Ok(v)
    }

    /// A copy lands: its data is written; a load's bytes complete on its mbarrier.
    pub(super) fn land_async(&mut self, c: Inflight) -> Result<(), Fault> {
        let wi = (c.tid / 32) as usize;
        let lane = c.tid % 32;
        let (bar, n) = match c.kind {
            Kind::Smem { off, bar } => {
                let o = off as usize;
                self.shared[o..o + c.data.len()].copy_from_slice(&c.data);
                self.async_shadow(o, c.data.len());
                (bar, c.data.len())
            }
            Kind::SmemScatter { offs, esize, bar } => {
                let es = esize as usize;
                for (k, &o) in offs.iter().enumerate() {
                    let o = o as usize;
                    self.shared[o..o + es].copy_from_slice(&c.data[k * es..(k + 1) * es]);
                    self.async_shadow(o, es);
                }
                (bar, c.data.len())
            }
            Kind::Gmem {
                addrs, esize, red, ..
            } => {
                let es = esize as usize;
                for (k, &a) in addrs.iter().enumerate() {
                    let mut chunk = c.data[k * es..(k + 1) * es].to_vec();
                    if let Some((op, ty)) = red {
                        // read-modify-write of one element (`ty`-sized) of global memory
                        let mut old = [0u8; 8];
                        if self.mem.read(a, &mut old[..es]) {
                            let mut src = [0u8; 8];
                            src[..es].copy_from_slice(&chunk);
                            let v = atomics::atom_op(
                                op,
                                ty,
                                u64::from_le_bytes(old),
                                u64::from_le_bytes(src),
                                0,
                            );
                            chunk.copy_from_slice(&v.to_le_bytes()[..es]);
                        }
                    }
                    if !self.mem.write(a, &chunk) {
                        let er = e(
                            FaultKind::OutOfBounds,
                            lane,
                            Some(a),
                            self.mem.base().describe(a, es),
                        );
                        return Err(self.fault(wi, c.pc as usize, er));
                    }
                }
                self.hop.progress += 1;
                return Ok(());
            }
        };
        let Some(b) = self.hop.mbars.get_mut(&bar) else {
            let er = e(FaultKind::Trap, lane, Some(bar as u64), format!("the mbarrier at shared offset {bar:#x} this copy signals was invalidated before the copy landed"));
            return Err(self.fault(wi, c.pc as usize, er));
        };
        // the guard of this copy now waits for the phase it lands in
        let phase = b.phase;
        b.tx -= n as i64;
        b.phase_bytes += n as u64;
        for g in self.hop.guards.iter_mut() {
            if g.2 == bar && g.3.is_none() && g.4 == c.pc && g.5 == c.tid {
                g.3 = Some(phase);
                break;
            }
        }
        self.mbar_check_complete(bar, None);
        self.hop.progress += 1;
        Ok(())
    }

    /// Shadow state of shared bytes the async proxy wrote: initialised, no thread access.
    pub(super) fn async_shadow(&mut self, off: usize, len: usize) {
        if self.shadow.is_empty() {
            return;
        }
        for wd in off / 4..(off + len).div_ceil(4) {
            let sh = &mut self.shadow[wd];
            sh.init = 0xf;
            sh.w = NO_SHADOW.w;
            sh.r1 = NO_SHADOW.r1;
            sh.r2 = NO_SHADOW.r2;
        }
    }

    /// A thread (or a new copy, `copy`) touches shared [off, off + len): fault when a bulk
    /// copy's destination there has not completed its mbarrier phase yet.
    pub(super) fn guard_check(
        &mut self,
        lane: usize,
        tid: u32,
        off: usize,
        len: usize,
        copy: bool,
    ) -> R<()> {
        if self.hop.guards.is_empty() {
            return Ok(());
        }
        let mbars = &self.hop.mbars;
        self.hop.guards.retain(|g| match (mbars.get(&g.2), g.3) {
            (None, Some(_)) => false,
            (Some(b), Some(p)) => b.phase <= p,
            _ => true,
        });
        let (s, t) = (off as u32, (off + len) as u32);
        if let Some(g) = self.hop.guards.iter().find(|g| g.0 < t && s < g.0 + g.1) {
            let who = self.describe_tid(g.5);
            let line = self.c.prog.instrs[g.4 as usize].line;
            let state = match g.3 {
                None => "has not landed yet".to_string(),
                Some(p) => format!("landed in phase {p}, which has not completed"),
            };
            let what = if copy {
                "a new bulk copy writes"
            } else {
                "this thread accesses"
            };
            return Err(e(
                FaultKind::AsyncProxyRace,
                lane as u32,
                Some(off as u64),
                format!(
                    "{what} shared bytes [{s}, {t}) that the bulk/TMA copy issued by {who} at PTX line {line} writes, and that copy {state} on its mbarrier (shared offset {:#x}): wait on the mbarrier phase first",
                    g.2
                ),
            ));
        }
        let _ = tid;
        Ok(())
    }
}
