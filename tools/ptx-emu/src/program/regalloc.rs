//! Register compaction: the virtual registers of a kernel whose live ranges never overlap share
//! one register row.
//!
//! `nvcc` writes PTX in near-SSA form: thousands of virtual registers (the bf16 GEMM declares
//! about 3,300), each live for a few instructions. The emulator gives every register a 32-lane
//! row of 8 bytes per warp, so such a kernel's register file is megabytes per block and every
//! instruction streams fresh rows from far caches. Here, once per kernel at decode, a liveness
//! analysis over the instruction list (per thread: each lane has its own slot in a row, and a lane
//! only ever writes its own slot, so what matters is whether two registers can be live at once in
//! one thread) gives each register the hull of the program points where it is live or written,
//! and registers with disjoint hulls are packed onto the same row (interval partitioning: as few
//! rows as the most hulls overlapping at one point).
//!
//! Conservative by construction: every instruction may fall through and every branch may be taken
//! (more successors only grow the live sets), a guarded write does not end a live range, and the
//! hull covers any holes of a range. Kernels using an instruction whose registers are not all in
//! its operand lists (wgmma, the sm_90 kit, calls) are left as they are, as are kernels with too
//! many registers or instructions for the analysis to be cheap. The special registers keep their
//! slots. A register read before any write (undefined in PTX) may see another register's stale
//! value instead of its own stale value: defined kernels compute the same bits.

use super::*;

/// Bits of liveness state (registers × instructions) above which a kernel is left uncompacted.
const MAX_ANALYSIS_BITS: usize = 1 << 28;
/// Registers above which a kernel is left uncompacted (real kernels declare a few thousand; one
/// declaring millions is refused at launch with a message, `exec::launch`).
const MAX_REGS: usize = 1 << 16;

/// Compact the registers of `instrs` (numbered `0..nregs`, the special registers first); returns
/// the new register count.
pub(super) fn compact(instrs: &mut [Instr], nregs: u32) -> u32 {
    let nspec = SPECIALS.len() as u32;
    let n = instrs.len();
    let nr = nregs as usize;
    if nregs <= nspec || n == 0 || nr > MAX_REGS || nr.saturating_mul(n) > MAX_ANALYSIS_BITS {
        return nregs;
    }
    if !instrs.iter().all(|i| supported(&i.op)) {
        return nregs;
    }
    let words = nr.div_ceil(64);
    // uses and (killing) definitions per instruction
    let mut uses: Vec<Vec<u32>> = Vec::with_capacity(n);
    let mut defs: Vec<Vec<u32>> = Vec::with_capacity(n);
    for ins in instrs.iter() {
        let mut u = Vec::new();
        let mut d = Vec::new();
        if let Some((p, _)) = ins.guard {
            u.push(p);
        }
        for o in &ins.s {
            regs_of(o, &mut u);
        }
        for o in &ins.d {
            regs_of(o, &mut d);
        }
        if u.iter().chain(&d).any(|&r| r >= nregs) {
            return nregs;
        }
        uses.push(u);
        defs.push(d);
    }
    let kills = |i: usize| instrs[i].guard.is_none() && !matches!(instrs[i].op, Op::BarRed(..));
    // live_in[i], backwards to a fixed point
    let mut live = vec![0u64; n * words];
    let mut out = vec![0u64; words];
    let mut changed = true;
    while changed {
        changed = false;
        for i in (0..n).rev() {
            live_out(&live, instrs, i, words, &mut out);
            if kills(i) {
                for &r in &defs[i] {
                    out[r as usize / 64] &= !(1u64 << (r % 64));
                }
            }
            for &r in &uses[i] {
                out[r as usize / 64] |= 1u64 << (r % 64);
            }
            let row = &mut live[i * words..(i + 1) * words];
            if row != &out[..] {
                row.copy_from_slice(&out);
                changed = true;
            }
        }
    }
    // hull of the points where each register is live (in or out) or written
    let mut hull = vec![(usize::MAX, 0usize); nr];
    let mut grow = |r: usize, i: usize| {
        let h = &mut hull[r];
        h.0 = h.0.min(i);
        h.1 = h.1.max(i);
    };
    for i in 0..n {
        live_out(&live, instrs, i, words, &mut out);
        for (wi, (&a, &b)) in live[i * words..(i + 1) * words]
            .iter()
            .zip(&out)
            .enumerate()
        {
            let mut m = a | b;
            while m != 0 {
                grow(wi * 64 + m.trailing_zeros() as usize, i);
                m &= m - 1;
            }
        }
        for &r in defs[i].iter().chain(&uses[i]) {
            grow(r as usize, i);
        }
    }
    // interval partitioning, registers by start point; a row is free again after its last hull
    let mut order: Vec<u32> = (nspec..nregs)
        .filter(|&r| hull[r as usize].0 != usize::MAX)
        .collect();
    order.sort_by_key(|&r| (hull[r as usize].0, r));
    let mut map = vec![u32::MAX; nr];
    for r in 0..nspec {
        map[r as usize] = r;
    }
    // (end, row) of the rows in use, and the free rows
    let mut busy = std::collections::BinaryHeap::new();
    let mut free: std::collections::BinaryHeap<std::cmp::Reverse<u32>> = Default::default();
    let mut next = nspec;
    for r in order {
        let (start, end) = hull[r as usize];
        while let Some(&std::cmp::Reverse((e, row))) = busy.peek() {
            if e >= start {
                break;
            }
            busy.pop();
            free.push(std::cmp::Reverse(row));
        }
        let row = match free.pop() {
            Some(std::cmp::Reverse(row)) => row,
            None => {
                next += 1;
                next - 1
            }
        };
        map[r as usize] = row;
        busy.push(std::cmp::Reverse((end, row)));
    }
    for ins in instrs.iter_mut() {
        if let Some((p, _)) = &mut ins.guard {
            *p = map[*p as usize];
        }
        for o in ins.s.iter_mut().chain(ins.d.iter_mut()) {
            remap(o, &map);
        }
    }
    next
}

/// The union of the live-in sets of the successors of instruction `i` (fall-through and, for a
/// branch, the target) into `out`.
fn live_out(live: &[u64], instrs: &[Instr], i: usize, words: usize, out: &mut [u64]) {
    out.fill(0);
    let n = instrs.len();
    let mut add = |j: usize| {
        if j < n {
            for (o, &l) in out.iter_mut().zip(&live[j * words..(j + 1) * words]) {
                *o |= l;
            }
        }
    };
    add(i + 1);
    if let Op::Bra(t) = instrs[i].op {
        add(t as usize);
    }
}

/// Instructions whose registers all appear in their operand lists (and guard).
fn supported(op: &Op) -> bool {
    matches!(
        op,
        Op::Nop
            | Op::Mov(_)
            | Op::Alu(..)
            | Op::Cvt { .. }
            | Op::Cvta { .. }
            | Op::Setp { .. }
            | Op::Ld { .. }
            | Op::St { .. }
            | Op::Atom { .. }
            | Op::Bra(_)
            | Op::Exit
            | Op::BarSync
            | Op::BarRed(..)
            | Op::WarpSync
            | Op::Membar
            | Op::Shfl(_)
            | Op::Vote(_)
            | Op::Redux(..)
            | Op::Activemask
            | Op::CpAsync { .. }
            | Op::CpCommit
            | Op::CpWait(_)
            | Op::Ldmatrix { .. }
            | Op::Mma { .. }
            | Op::Trap
    )
}

fn regs_of(o: &Opnd, out: &mut Vec<u32>) {
    match o {
        Opnd::Reg(r) | Opnd::NotReg(r) | Opnd::Addr(Base::Reg(r), _) => out.push(*r),
        Opnd::Vec(parts) => parts.iter().for_each(|p| regs_of(p, out)),
        _ => {}
    }
}

fn remap(o: &mut Opnd, map: &[u32]) {
    match o {
        Opnd::Reg(r) | Opnd::NotReg(r) | Opnd::Addr(Base::Reg(r), _) => *r = map[*r as usize],
        Opnd::Vec(parts) => parts.iter_mut().for_each(|p| remap(p, map)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::{launch, LaunchConfig, LaunchOptions, Memory, Module};

    /// A loop-carried sum with short-lived temporaries and a register written (guarded) in the
    /// first iteration only but read in every one, a chain of 34 temporaries, and a register
    /// written before the chain, then overwritten by a guarded `mov` on even lanes only and read
    /// after: the temporaries share rows, the loop-carried and guarded registers keep theirs.
    const PTX: &str = r#".version 8.4
.target sm_80
.address_size 64
.visible .entry k(.param .u64 out)
{
    .reg .pred %p<4>;
    .reg .b32 %r<128>;
    .reg .b64 %rd<4>;
    ld.param.u64 %rd1, [out];
    mov.u32 %r1, %tid.x;
    mov.u32 %r50, 9;
    mov.u32 %r2, 0;
    mov.u32 %r3, 0;
$L1:
    add.s32 %r10, %r3, 100;
    add.s32 %r11, %r10, 1;
    add.s32 %r2, %r2, %r11;
    setp.eq.s32 %p3, %r3, 0;
    @%p3 mov.u32 %r20, %r1;
    add.s32 %r2, %r2, %r20;
    add.s32 %r3, %r3, 1;
    setp.lt.s32 %p1, %r3, 5;
    @%p1 bra $L1;
    add.s32 %r6, %r2, 7;
CHAIN
    and.b32 %r51, %r1, 1;
    setp.eq.s32 %p2, %r51, 0;
    @%p2 mov.u32 %r50, 5;
    add.s32 %r41, %r93, %r50;
    mul.wide.u32 %rd2, %r1, 4;
    add.s64 %rd3, %rd1, %rd2;
    st.global.u32 [%rd3], %r41;
    ret;
}
"#;

    #[test]
    fn compacted_kernel_keeps_live_values() {
        let chain: String = (60..=93)
            .map(|i| {
                format!(
                    "    add.s32 %r{i}, %r{}, 1;\n",
                    if i == 60 { 6 } else { i - 1 }
                )
            })
            .collect();
        let m = Module::parse(&PTX.replace("CHAIN\n", &chain)).unwrap();
        let nregs = m.kernel("k").unwrap().nregs;
        let nspec = super::SPECIALS.len();
        // declared: 4 + 128 + 4; the chain needs one or two rows at a time
        assert!(nregs < nspec + 16, "{nregs} rows (specials: {nspec})");
        let mut mem = Memory::new();
        let out = mem.alloc(64 * 4).unwrap();
        let cfg = LaunchConfig {
            grid: [1, 1, 1],
            block: [64, 1, 1],
            dynamic_smem_bytes: 0,
        };
        let p = out.to_le_bytes();
        launch(&m, "k", &cfg, &[&p], &mut mem, &LaunchOptions::default()).unwrap();
        let mut got = [0u8; 64 * 4];
        mem.read(out, &mut got).unwrap();
        for t in 0..64u32 {
            let v = u32::from_le_bytes(got[4 * t as usize..4 * t as usize + 4].try_into().unwrap());
            // sum over i < 5 of (i + 101 + t), + 7, + 34, + (5 on even lanes, 9 on odd ones)
            let want = 515 + 5 * t + 41 + if t % 2 == 0 { 5 } else { 9 };
            assert_eq!(v, want, "thread {t}");
        }
    }
}
