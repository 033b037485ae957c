//! The `fence.proxy.async` rule: shared memory written through the generic proxy (`st.shared`,
//! generic stores, atomics) and then read by the async proxy (the source of a bulk or TMA store)
//! must be ordered by a `fence.proxy.async` executed by the writing thread after its write (and a
//! barrier to the issuing thread). Full checks only: every generic shared write is remembered per
//! 4-byte word with its thread until that thread's next proxy fence; an async-proxy read of a
//! word still remembered is an `AsyncProxyRace`.

use super::*;
use std::collections::HashMap;

/// Words written through the generic proxy and not yet fenced.
#[derive(Default)]
pub(crate) struct ProxyState {
    /// Whether the kernel has async-proxy reads of shared memory (else nothing is tracked).
    on: Option<bool>,
    /// Word index → the thread that wrote it last (and has not fenced since).
    unfenced: HashMap<u32, (u32, u32)>,
    /// Per thread: the words it wrote since its last fence.
    by_thread: HashMap<u32, Vec<u32>>,
}

impl<'a, 'b> Block<'a, 'b> {
    fn proxy_on(&mut self) -> bool {
        if let Some(on) = self.hop.proxy.on {
            return on;
        }
        let on = self.c.prog.instrs.iter().any(|i| {
            matches!(
                i.op,
                Op::Hopper(HopOp::BulkS2G) | Op::Hopper(HopOp::TensorStore { .. })
            )
        });
        self.hop.proxy.on = Some(on);
        on
    }

    /// Thread `tid` wrote shared [off, off + len) through the generic proxy at `pc`.
    pub(super) fn proxy_note(&mut self, tid: u32, pc: u32, off: usize, len: usize) {
        if !self.proxy_on() {
            return;
        }
        let p = &mut self.hop.proxy;
        for wd in off / 4..(off + len).div_ceil(4) {
            let wd = wd as u32;
            if p.unfenced.insert(wd, (tid, pc)).map(|x| x.0) != Some(tid) {
                p.by_thread.entry(tid).or_default().push(wd);
            }
        }
    }

    /// `fence.proxy.async` by the lanes `exec` of `w`: their generic writes so far are ordered
    /// before later async-proxy accesses.
    pub(super) fn proxy_fence(&mut self, w: &Warp, exec: u32) {
        let p = &mut self.hop.proxy;
        for l in lanes(exec) {
            let tid = w.idx * 32 + l as u32;
            for wd in p.by_thread.remove(&tid).unwrap_or_default() {
                if p.unfenced.get(&wd).is_some_and(|x| x.0 == tid) {
                    p.unfenced.remove(&wd);
                }
            }
        }
    }

    /// The async proxy reads shared [off, off + len) (a bulk / TMA store source): fault when a
    /// generic write there has not been fenced.
    pub(super) fn proxy_check(&self, lane: usize, off: usize, len: usize, what: &str) -> R<()> {
        let p = &self.hop.proxy;
        if p.unfenced.is_empty() {
            return Ok(());
        }
        for wd in off / 4..(off + len).div_ceil(4) {
            if let Some(&(tid, pc)) = p.unfenced.get(&(wd as u32)) {
                let who = self.describe_tid(tid);
                let line = self.c.prog.instrs.get(pc as usize).map_or(0, |i| i.line);
                return Err(e(
                    FaultKind::AsyncProxyRace,
                    lane as u32,
                    Some(wd as u64 * 4),
                    format!(
                        "{what} reads shared bytes [{off}, {}) through the async proxy, but {who} wrote shared offset {:#x} through the generic proxy (PTX line {line}) without a fence.proxy.async after it: the copy may read stale data (fence.proxy.async.shared::cta after the writes, then a barrier)",
                        off + len,
                        wd * 4
                    ),
                ));
            }
        }
        Ok(())
    }
}
