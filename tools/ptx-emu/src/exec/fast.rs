//! The decoded fast path: the common register-only instructions (integer, predicate and f32 ALU
//! ops, `setp`, `selp`, `mov`, integer and bf16/f16 `cvt`) pre-decoded once per module into a
//! compact [`FOp`] (sources resolved to register rows or immediates, the operation and its type
//! folded into one small enum), executed warp-wide over the structure-of-arrays register file:
//! every lane is computed with a straight loop (the operations are pure and cannot fault), then
//! the lanes of the executing mask are written to the destination row.
//!
//! These instructions touch no memory, so they need no hazard checks and run the same way at both
//! checking levels; everything else (`FOp::Slow`) goes through [`Block::exec`]. The results are
//! bit for bit those of the general path (`tests::fast_ops_match_alu` checks each operation
//! against `alu`/`compare`/`cvt` on awkward bit patterns; `tests/fast_path.rs` runs every test
//! kernel at both levels and compares the outputs).

use super::*;
use std::mem::MaybeUninit;

/// A source operand: a register row or an immediate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Src {
    R(u32),
    I(u64),
}

/// Unary operations (`d = f(a)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Un {
    /// `a & m`: mov, zero-extending/truncating integer cvt.
    Mask(u64),
    /// `sext(a, bits) & m`: sign-extending integer cvt.
    Sext(u32, u64),
    /// Integer `not`.
    Not(u64),
    /// Integer `neg`.
    Neg(u32, u64),
    /// Predicate `not`.
    PNot,
    /// f32 `neg`/`abs`/`ex2.approx` (flag: `.ftz`).
    FNeg(bool),
    FAbs(bool),
    FEx2(bool),
    /// `cvt.rn.bf16.f32` / `cvt.rn.f16.f32` (no other modifiers).
    CvtBf16F32,
    CvtF16F32,
    /// `cvt.f32.bf16` / `cvt.f32.f16` (exact widening).
    CvtF32Bf16,
    CvtF32F16,
    /// `cvt.rn.f32.u32` / `cvt.rn.f32.s32`.
    CvtF32U32,
    CvtF32S32,
}

/// Binary operations (`d = f(a, b)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Bin {
    Add(u64),
    Sub(u64),
    Mul(u64),
    And(u64),
    Or(u64),
    Xor(u64),
    /// Shifts: (bits, mask).
    Shl(u32, u64),
    ShrU(u32, u64),
    ShrS(u32, u64),
    MinU(u64),
    MaxU(u64),
    MinS(u32, u64),
    MaxS(u32, u64),
    MulWideU32,
    MulWideS32,
    MulWideU16,
    MulWideS16,
    PAnd,
    POr,
    PXor,
    /// f32 `.rn` ops (flag: `.ftz`).
    FAdd(bool),
    FSub(bool),
    FMul(bool),
    FMin(bool),
    FMax(bool),
    /// f32 `div.rn` (IEEE division is correctly rounded to nearest even).
    FDiv(bool),
    /// Integer `div`/`rem` (by zero: all ones / the dividend): (bits, mask).
    DivU(u64),
    DivS(u32, u64),
    RemU(u64),
    RemS(u32, u64),
    /// `mov.b32 d, {a, b}` of two 16-bit halves (a → low half).
    Pack16,
    /// `cvt.rn.bf16x2.f32 d, a, b` (a → high half).
    CvtBf16x2,
}

/// Ternary operations (`d = f(a, b, c)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Tri {
    MadLo(u64),
    /// Integer selp: `(c & 1 ? a : b) & m`.
    Selp(u64),
    /// Float selp: the register bits unmasked.
    SelpRaw,
    /// f32 `fma.rn`/`mad.rn` (flag: `.ftz`).
    Fma(bool),
}

/// What a `setp` compares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum SetpKind {
    Int(Ty),
    F32(bool),
}

/// One pre-decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum FOp {
    /// Not covered: the general path.
    Slow,
    /// `ld` of `n` ≤ 4 elements of `eb` ≤ 8 bytes from `[base + off]` (global, const, shared,
    /// param or generic) into rows `d` (u32::MAX: sink), sign-extended when `sign`.
    Ld {
        space: Space,
        eb: u8,
        n: u8,
        sign: bool,
        base: Src,
        off: u64,
        d: [u32; 4],
    },
    /// `st` of `n` ≤ 4 elements of `eb` ≤ 8 bytes from `v` to `[base + off]` (global, shared or
    /// generic).
    St {
        space: Space,
        eb: u8,
        n: u8,
        base: Src,
        off: u64,
        v: [Src; 4],
    },
    Un(Un, u32, Src),
    Bin(Bin, u32, Src, Src),
    Tri(Tri, u32, Src, Src, Src),
    Setp {
        cmp: Cmp,
        kind: SetpKind,
        /// Destinations `p` and `q` (u32::MAX: none).
        p: u32,
        q: u32,
        a: Src,
        b: Src,
        /// `.and/.or/.xor` with a third predicate source.
        comb: Option<(BoolOp, Src)>,
    },
}

/// Decode the fast form of every instruction of a kernel with `nregs` register slots.
pub(crate) fn decode_fast(instrs: &[Instr], nregs: usize) -> Vec<FOp> {
    instrs.iter().map(|i| decode_one(i, nregs)).collect()
}

fn decode_one(ins: &Instr, nregs: usize) -> FOp {
    let f = decode_op(ins).unwrap_or(FOp::Slow);
    // Every register the fast form touches is a row of the register file (the executor relies
    // on it for its unchecked row pointers).
    let ok = |s: &Src| match *s {
        Src::R(r) => (r as usize) < nregs,
        Src::I(_) => true,
    };
    let okd = |d: u32| d == u32::MAX || (d as usize) < nregs;
    let valid = match &f {
        FOp::Slow => true,
        FOp::Ld { base, d, .. } => ok(base) && d.iter().all(|&d| okd(d)),
        FOp::St { base, v, .. } => ok(base) && v.iter().all(ok),
        FOp::Un(_, d, a) => okd(*d) && *d != u32::MAX && ok(a),
        FOp::Bin(_, d, a, b) => okd(*d) && *d != u32::MAX && ok(a) && ok(b),
        FOp::Tri(_, d, a, b, c) => okd(*d) && *d != u32::MAX && ok(a) && ok(b) && ok(c),
        FOp::Setp {
            p, q, a, b, comb, ..
        } => okd(*p) && okd(*q) && ok(a) && ok(b) && comb.as_ref().is_none_or(|(_, c)| ok(c)),
    };
    if valid {
        f
    } else {
        FOp::Slow
    }
}

fn src(o: &Opnd) -> Option<Src> {
    match *o {
        Opnd::Reg(r) => Some(Src::R(r)),
        Opnd::Imm(v) => Some(Src::I(v)),
        _ => None,
    }
}

fn dst(o: Option<&Opnd>) -> Option<u32> {
    match o {
        Some(Opnd::Reg(r)) => Some(*r),
        _ => None,
    }
}

fn plain(f: &AluFlags) -> bool {
    !(f.sat || f.relu || f.satfinite || f.ftz || f.int_rnd)
}

fn decode_op(ins: &Instr) -> Option<FOp> {
    let s = &ins.s;
    match &ins.op {
        Op::Alu(op, ty, f) => decode_alu(*op, *ty, f, dst(ins.d.first())?, s),
        Op::Mov(ty) => {
            let d = dst(ins.d.first())?;
            match s.first()? {
                Opnd::Vec(parts) if parts.len() == 2 && ty.bits() == 32 => {
                    Some(FOp::Bin(Bin::Pack16, d, src(&parts[0])?, src(&parts[1])?))
                }
                o => Some(FOp::Un(Un::Mask(mask_bits(ty.bits())), d, src(o)?)),
            }
        }
        Op::Setp { cmp, ty, bop, ftz } => {
            let kind = if ty.fmt().is_none() {
                SetpKind::Int(*ty)
            } else if *ty == Ty::F32 {
                SetpKind::F32(*ftz)
            } else {
                return None;
            };
            let p = dst(ins.d.first())?;
            let q = match ins.d.get(1) {
                None | Some(Opnd::Sink) => u32::MAX,
                Some(o) => dst(Some(o))?,
            };
            let comb = match bop {
                None => None,
                Some(b) => Some((*b, src(s.get(2)?)?)),
            };
            Some(FOp::Setp {
                cmp: *cmp,
                kind,
                p,
                q,
                a: src(s.first()?)?,
                b: src(s.get(1)?)?,
                comb,
            })
        }
        Op::Ld { space, ty, n } | Op::St { space, ty, n }
            if ty.bytes() <= 8
                && (1..=4).contains(n)
                && matches!(
                    space,
                    Space::Global | Space::Const | Space::Shared | Space::Param | Space::Generic
                ) =>
        {
            let (base, off) = match s.first()? {
                Opnd::Addr(Base::Reg(r), off) => (Src::R(*r), *off as u64),
                Opnd::Addr(Base::None, off) => (Src::I(0), *off as u64),
                _ => return None,
            };
            let (eb, n) = (ty.bytes() as u8, *n);
            if let Op::Ld { .. } = ins.op {
                let mut d = [u32::MAX; 4];
                match ins.d.first()? {
                    Opnd::Reg(r) if n == 1 => d[0] = *r,
                    Opnd::Vec(parts) if parts.len() == n as usize => {
                        for (k, p) in parts.iter().enumerate() {
                            match p {
                                Opnd::Reg(r) => d[k] = *r,
                                Opnd::Sink => {}
                                _ => return None,
                            }
                        }
                    }
                    _ => return None,
                }
                Some(FOp::Ld {
                    space: *space,
                    eb,
                    n,
                    sign: ty.signed(),
                    base,
                    off,
                    d,
                })
            } else {
                if *space == Space::Param || *space == Space::Const {
                    return None;
                }
                let mut v = [Src::I(0); 4];
                match s.get(1)? {
                    Opnd::Vec(parts) if parts.len() == n as usize => {
                        for (k, p) in parts.iter().enumerate() {
                            v[k] = src(p)?;
                        }
                    }
                    o if n == 1 => v[0] = src(o)?,
                    _ => return None,
                }
                Some(FOp::St {
                    space: *space,
                    eb,
                    n,
                    base,
                    off,
                    v,
                })
            }
        }
        Op::Cvt { d: dt, s: st, f } => {
            let d = dst(ins.d.first())?;
            let a = src(s.first()?)?;
            if !dt.is_float() && !st.is_float() && !f.sat {
                let (sb, db) = (st.bits(), dt.bits());
                let un = if st.signed() {
                    Un::Sext(sb, mask_bits(db))
                } else {
                    Un::Mask(mask_bits(sb) & mask_bits(db))
                };
                return Some(FOp::Un(un, d, a));
            }
            if !plain(f) {
                return None;
            }
            let rn = f.rnd == Rnd::Rn;
            match (*dt, *st) {
                (Ty::BF16x2, Ty::F32) if rn => {
                    Some(FOp::Bin(Bin::CvtBf16x2, d, a, src(s.get(1)?)?))
                }
                (Ty::BF16, Ty::F32) if rn => Some(FOp::Un(Un::CvtBf16F32, d, a)),
                (Ty::F16, Ty::F32) if rn => Some(FOp::Un(Un::CvtF16F32, d, a)),
                (Ty::F32, Ty::BF16) => Some(FOp::Un(Un::CvtF32Bf16, d, a)),
                (Ty::F32, Ty::F16) => Some(FOp::Un(Un::CvtF32F16, d, a)),
                (Ty::F32, Ty::U32) if rn => Some(FOp::Un(Un::CvtF32U32, d, a)),
                (Ty::F32, Ty::S32) if rn => Some(FOp::Un(Un::CvtF32S32, d, a)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The fast form of an ALU op, mirroring the coverage of `Block::fast_alu` (and thus its
/// semantics, which `alu::tests` checks against `alu`).
fn decode_alu(op: Alu, ty: Ty, f: &AluFlags, d: u32, s: &[Opnd]) -> Option<FOp> {
    let n = s.len();
    let a = || src(s.first()?);
    let b = || src(s.get(1)?);
    let c = || src(s.get(2)?);
    if op == Alu::Selp && ty.is_float() && !ty.packed() {
        return Some(FOp::Tri(Tri::SelpRaw, d, a()?, b()?, c()?));
    }
    if ty == Ty::F32 {
        if f.rnd != Rnd::Rn || f.sat || f.relu || f.satfinite {
            return None;
        }
        let z = f.ftz;
        return Some(match op {
            Alu::Add => FOp::Bin(Bin::FAdd(z), d, a()?, b()?),
            Alu::Sub => FOp::Bin(Bin::FSub(z), d, a()?, b()?),
            Alu::MulLo => FOp::Bin(Bin::FMul(z), d, a()?, b()?),
            Alu::Min => FOp::Bin(Bin::FMin(z), d, a()?, b()?),
            Alu::Max => FOp::Bin(Bin::FMax(z), d, a()?, b()?),
            Alu::Div if !f.approx => FOp::Bin(Bin::FDiv(z), d, a()?, b()?),
            Alu::Fma | Alu::MadLo => FOp::Tri(Tri::Fma(z), d, a()?, b()?, c()?),
            Alu::Neg if n == 1 => FOp::Un(Un::FNeg(z), d, a()?),
            Alu::Abs if n == 1 => FOp::Un(Un::FAbs(z), d, a()?),
            Alu::Ex2 if f.approx => FOp::Un(Un::FEx2(z), d, a()?),
            _ => return None,
        });
    }
    if ty == Ty::Pred {
        return Some(match op {
            Alu::Not => FOp::Un(Un::PNot, d, a()?),
            Alu::And => FOp::Bin(Bin::PAnd, d, a()?, b()?),
            Alu::Or => FOp::Bin(Bin::POr, d, a()?, b()?),
            Alu::Xor => FOp::Bin(Bin::PXor, d, a()?, b()?),
            _ => return None,
        });
    }
    if ty.is_float() || f.sat {
        return None;
    }
    let bits = ty.bits();
    let m = mask_bits(bits);
    let sg = ty.signed();
    let bin = |k: Bin| -> Option<FOp> {
        if n < 2 {
            return None;
        }
        Some(FOp::Bin(k, d, a()?, b()?))
    };
    match op {
        Alu::Add => bin(Bin::Add(m)),
        Alu::Sub => bin(Bin::Sub(m)),
        Alu::MulLo => bin(Bin::Mul(m)),
        Alu::And => bin(Bin::And(m)),
        Alu::Or => bin(Bin::Or(m)),
        Alu::Xor => bin(Bin::Xor(m)),
        Alu::Min if sg => bin(Bin::MinS(bits, m)),
        Alu::Max if sg => bin(Bin::MaxS(bits, m)),
        Alu::Min => bin(Bin::MinU(m)),
        Alu::Max => bin(Bin::MaxU(m)),
        Alu::MulWide if bits == 32 && sg => bin(Bin::MulWideS32),
        Alu::MulWide if bits == 32 => bin(Bin::MulWideU32),
        Alu::MulWide if bits == 16 && sg => bin(Bin::MulWideS16),
        Alu::MulWide if bits == 16 => bin(Bin::MulWideU16),
        Alu::Shl => bin(Bin::Shl(bits, m)),
        Alu::Shr if sg => bin(Bin::ShrS(bits, m)),
        Alu::Shr => bin(Bin::ShrU(bits, m)),
        Alu::Div if sg => bin(Bin::DivS(bits, m)),
        Alu::Div => bin(Bin::DivU(m)),
        Alu::Rem if sg => bin(Bin::RemS(bits, m)),
        Alu::Rem => bin(Bin::RemU(m)),
        Alu::MadLo => Some(FOp::Tri(Tri::MadLo(m), d, a()?, b()?, c()?)),
        Alu::Selp => Some(FOp::Tri(Tri::Selp(m), d, a()?, b()?, c()?)),
        Alu::Neg if n == 1 => Some(FOp::Un(Un::Neg(bits, m), d, a()?)),
        Alu::Not if n == 1 => Some(FOp::Un(Un::Not(m), d, a()?)),
        _ => None,
    }
}

use super::alu::{canon32, fin, fminmax, ftz32};
use super::memory::{lane_span, put_le_at, store_span};

/// f32 result bits (flushed with `.ftz`).
#[inline(always)]
fn fout(r: u64, ftz: bool) -> u64 {
    if ftz {
        ftz32(r)
    } else {
        r
    }
}

#[inline(always)]
fn fv(b: u64, ftz: bool) -> f32 {
    f32::from_bits(fin(b, ftz) as u32)
}

/// `cvt.rn.<half>.f32` with `from_f32` the conversion to the half type's bits: the f32 input is
/// exact, so its round-to-nearest-even conversion is `cvt`'s result; NaN gives the canonical NaN.
#[inline(always)]
fn half_of(x: u64, from_f32: impl Fn(f32) -> u16) -> u64 {
    let x = f32::from_bits(x as u32);
    if x.is_nan() {
        0x7fff
    } else {
        from_f32(x) as u64
    }
}

/// `cvt.rn.bf16.f32`.
#[inline(always)]
fn bf16_of(x: u64) -> u64 {
    half_of(x, |v| half::bf16::from_f32(v).to_bits())
}

/// `cvt.rn.f16.f32`.
#[inline(always)]
fn f16_of(x: u64) -> u64 {
    half_of(x, |v| half::f16::from_f32(v).to_bits())
}

/// One register row.
type Row = [u64; 32];

/// The 32 lane values of `s`: a pointer to its register row, or to `tmp` filled with the
/// immediate.
#[inline(always)]
fn row_ptr(base: *const u64, s: Src, tmp: &mut MaybeUninit<Row>) -> *const Row {
    match s {
        // SAFETY (of the pointer arithmetic): `decode_fast` only emits `R(r)` with r < nregs,
        // and the register file of every warp holds nregs * 32 slots (`run_block`).
        Src::R(r) => unsafe { base.add(r as usize * 32) as *const Row },
        Src::I(v) => tmp.write([v; 32]) as *const Row,
    }
}

/// Write the lanes of `exec` of `r` to row `d`.
///
/// # Safety
/// `d` < nregs of the program whose register file `base` points to (nregs * 32 slots), and no
/// live reference points into row `d`.
#[inline(always)]
unsafe fn put(base: *mut u64, d: u32, r: &Row, exec: u32) {
    // SAFETY: as documented above, the destination row lies inside the register file and
    // nothing else borrows it while this exclusive reference lives.
    let dst = unsafe { &mut *(base.add(d as usize * 32) as *mut Row) };
    if exec == u32::MAX {
        *dst = *r;
    } else {
        for l in 0..32 {
            dst[l] = if (exec >> l) & 1 != 0 { r[l] } else { dst[l] };
        }
    }
}

/// Execute the fast form `f` (not `Slow`) for the lanes of `exec` of a warp's register file.
///
/// Direct row access: the sources are read in place through their rows (no copies). When every
/// lane executes and no source is the destination, the result is computed straight into the
/// destination row; otherwise into a local row whose `exec` lanes are then written back.
#[inline(always)]
pub(super) fn exec_fast(regs: &mut [u64], f: &FOp, exec: u32) {
    let base = regs.as_mut_ptr();
    let cbase = base as *const u64;
    let (mut ta, mut tb, mut tc) = (
        MaybeUninit::<Row>::uninit(),
        MaybeUninit::<Row>::uninit(),
        MaybeUninit::<Row>::uninit(),
    );
    // The loop `out[l] = e` over sources `srcs`, into row `d`.
    macro_rules! lanes {
        ($d:expr, [$($s:expr),*], |$l:ident, $out:ident| $body:block) => {{
            let d: u32 = $d;
            let direct = exec == u32::MAX $(&& $s != Src::R(d))*;
            let mut local: Row;
            let $out: &mut Row = if direct {
                // SAFETY: row d is inside the register file (decode_fast checked d < nregs,
                // the file has nregs * 32 slots) and no source reference points into it (no
                // source is row d; immediates live in locals), so this exclusive reference is
                // the only one to that row while it lives.
                unsafe { &mut *(base.add(d as usize * 32) as *mut Row) }
            } else {
                local = [0; 32];
                &mut local
            };
            for $l in 0..32 $body
            if !direct {
                // SAFETY: d < nregs; the source references are dead (the loop is done) and
                // `out` is the local row.
                unsafe { put(base, d, $out, exec) };
            }
        }};
    }
    macro_rules! un {
        ($d:expr, $a:expr, |$x:ident| $e:expr) => {{
            // SAFETY: `row_ptr` points at a whole row of the register file (decode_fast checked
            // the index) or at a local; only shared reads happen through it.
            let a = unsafe { &*row_ptr(cbase, $a, &mut ta) };
            lanes!($d, [$a], |l, out| {
                let $x = a[l];
                out[l] = $e;
            })
        }};
    }
    macro_rules! bin {
        ($d:expr, $a:expr, $b:expr, |$x:ident, $y:ident| $e:expr) => {{
            // SAFETY: as in `un!`.
            let (a, b) = unsafe { (&*row_ptr(cbase, $a, &mut ta), &*row_ptr(cbase, $b, &mut tb)) };
            lanes!($d, [$a, $b], |l, out| {
                let $x = a[l];
                let $y = b[l];
                out[l] = $e;
            })
        }};
    }
    macro_rules! tri {
        ($d:expr, $a:expr, $b:expr, $c:expr, |$x:ident, $y:ident, $z:ident| $e:expr) => {{
            // SAFETY: as in `un!`.
            let (a, b, c) = unsafe {
                (
                    &*row_ptr(cbase, $a, &mut ta),
                    &*row_ptr(cbase, $b, &mut tb),
                    &*row_ptr(cbase, $c, &mut tc),
                )
            };
            lanes!($d, [$a, $b, $c], |l, out| {
                let $x = a[l];
                let $y = b[l];
                let $z = c[l];
                out[l] = $e;
            })
        }};
    }
    match *f {
        FOp::Slow | FOp::Ld { .. } | FOp::St { .. } => {}
        FOp::Un(k, d, a) => match k {
            Un::Mask(m) => un!(d, a, |x| x & m),
            Un::Sext(sb, m) => un!(d, a, |x| sext(x, sb) as u64 & m),
            Un::Not(m) => un!(d, a, |x| !x & m),
            Un::Neg(bits, m) => un!(d, a, |x| (sext(x, bits).wrapping_neg() as u64) & m),
            Un::PNot => un!(d, a, |x| !x & 1),
            Un::FNeg(z) => un!(d, a, |x| fout(fin(x, z) ^ 0x8000_0000, z)),
            Un::FAbs(z) => un!(d, a, |x| fout(fin(x, z) & 0x7fff_ffff, z)),
            Un::FEx2(z) => un!(d, a, |x| fout(canon32((fv(x, z) as f64).exp2() as f32), z)),
            Un::CvtBf16F32 => un!(d, a, |x| bf16_of(x)),
            Un::CvtF16F32 => un!(d, a, |x| f16_of(x)),
            Un::CvtF32Bf16 => un!(d, a, |x| {
                let v = f32::from_bits((x as u32 & 0xffff) << 16);
                canon32(v)
            }),
            Un::CvtF32F16 => un!(d, a, |x| canon32(half::f16::from_bits(x as u16).to_f32())),
            Un::CvtF32U32 => un!(d, a, |x| ((x as u32) as f32).to_bits() as u64),
            Un::CvtF32S32 => un!(d, a, |x| ((x as u32 as i32) as f32).to_bits() as u64),
        },
        FOp::Bin(k, d, a, b) => match k {
            Bin::Add(m) => bin!(d, a, b, |x, y| x.wrapping_add(y) & m),
            Bin::Sub(m) => bin!(d, a, b, |x, y| x.wrapping_sub(y) & m),
            Bin::Mul(m) => bin!(d, a, b, |x, y| x.wrapping_mul(y) & m),
            Bin::And(m) => bin!(d, a, b, |x, y| x & y & m),
            Bin::Or(m) => bin!(d, a, b, |x, y| (x | y) & m),
            Bin::Xor(m) => bin!(d, a, b, |x, y| (x ^ y) & m),
            Bin::Shl(bits, m) => bin!(d, a, b, |x, y| {
                let sh = y & 0xffff_ffff;
                if sh >= bits as u64 {
                    0
                } else {
                    (x << sh) & m
                }
            }),
            Bin::ShrU(bits, m) => bin!(d, a, b, |x, y| {
                let sh = y & 0xffff_ffff;
                if sh >= bits as u64 {
                    0
                } else {
                    (x & m) >> sh
                }
            }),
            Bin::ShrS(bits, m) => bin!(d, a, b, |x, y| {
                let sh = (y & 0xffff_ffff).min(bits as u64 - 1);
                (sext(x, bits) >> sh.min(63)) as u64 & m
            }),
            Bin::MinU(m) => bin!(d, a, b, |x, y| (x & m).min(y & m)),
            Bin::MaxU(m) => bin!(d, a, b, |x, y| (x & m).max(y & m)),
            Bin::MinS(bits, m) => {
                bin!(d, a, b, |x, y| sext(x, bits).min(sext(y, bits)) as u64 & m)
            }
            Bin::MaxS(bits, m) => {
                bin!(d, a, b, |x, y| sext(x, bits).max(sext(y, bits)) as u64 & m)
            }
            Bin::MulWideU32 => bin!(d, a, b, |x, y| (x & 0xffff_ffff) * (y & 0xffff_ffff)),
            Bin::MulWideS32 => {
                bin!(
                    d,
                    a,
                    b,
                    |x, y| (x as i32 as i64).wrapping_mul(y as i32 as i64) as u64
                )
            }
            Bin::MulWideU16 => bin!(d, a, b, |x, y| (x & 0xffff) * (y & 0xffff)),
            Bin::MulWideS16 => {
                bin!(
                    d,
                    a,
                    b,
                    |x, y| ((x as i16 as i32) * (y as i16 as i32)) as u32 as u64
                )
            }
            Bin::PAnd => bin!(d, a, b, |x, y| x & y & 1),
            Bin::POr => bin!(d, a, b, |x, y| (x | y) & 1),
            Bin::PXor => bin!(d, a, b, |x, y| (x ^ y) & 1),
            Bin::FAdd(z) => bin!(d, a, b, |x, y| fout(canon32(fv(x, z) + fv(y, z)), z)),
            Bin::FSub(z) => bin!(d, a, b, |x, y| fout(canon32(fv(x, z) - fv(y, z)), z)),
            Bin::FMul(z) => bin!(d, a, b, |x, y| fout(canon32(fv(x, z) * fv(y, z)), z)),
            Bin::FMin(z) => bin!(d, a, b, |x, y| fout(fminmax(x, y, z, true), z)),
            Bin::FMax(z) => bin!(d, a, b, |x, y| fout(fminmax(x, y, z, false), z)),
            Bin::FDiv(z) => bin!(d, a, b, |x, y| fout(canon32(fv(x, z) / fv(y, z)), z)),
            Bin::DivU(m) => bin!(d, a, b, |x, y| (x & m).checked_div(y & m).unwrap_or(m)),
            Bin::RemU(m) => bin!(d, a, b, |x, y| (x & m).checked_rem(y & m).unwrap_or(x & m)),
            Bin::DivS(bits, m) => bin!(d, a, b, |x, y| if y & m == 0 {
                m
            } else {
                sext(x, bits).wrapping_div(sext(y, bits)) as u64 & m
            }),
            Bin::RemS(bits, m) => bin!(d, a, b, |x, y| if y & m == 0 {
                x & m
            } else {
                sext(x, bits).wrapping_rem(sext(y, bits)) as u64 & m
            }),
            Bin::Pack16 => bin!(d, a, b, |x, y| (x & 0xffff) | ((y & 0xffff) << 16)),
            Bin::CvtBf16x2 => bin!(d, a, b, |x, y| (bf16_of(x) << 16) | bf16_of(y)),
        },
        FOp::Tri(k, d, a, b, c) => match k {
            Tri::MadLo(m) => tri!(d, a, b, c, |x, y, w| (x & m)
                .wrapping_mul(y & m)
                .wrapping_add(w)
                & m),
            Tri::Selp(m) => tri!(d, a, b, c, |x, y, w| if w & 1 != 0 { x & m } else { y & m }),
            Tri::SelpRaw => tri!(d, a, b, c, |x, y, w| if w & 1 != 0 { x } else { y }),
            Tri::Fma(z) => tri!(d, a, b, c, |x, y, w| fout(
                canon32(fv(x, z).mul_add(fv(y, z), fv(w, z))),
                z
            )),
        },
        FOp::Setp {
            cmp,
            kind,
            p,
            q,
            a,
            b,
            comb,
        } => {
            // SAFETY: as in `un!`.
            let (a, b) = unsafe { (&*row_ptr(cbase, a, &mut ta), &*row_ptr(cbase, b, &mut tb)) };
            let mut r: Row = [0; 32];
            match kind {
                SetpKind::Int(ty) => {
                    setp_int(cmp, ty, a, b, &mut r);
                }
                SetpKind::F32(z) => setp_f32(cmp, z, a, b, &mut r),
            }
            let mut qv: Row = [0; 32];
            for l in 0..32 {
                qv[l] = r[l] ^ 1;
            }
            if let Some((bop, c)) = comb {
                // SAFETY: as in `un!`.
                let c = unsafe { &*row_ptr(cbase, c, &mut tc) };
                for l in 0..32 {
                    let c = c[l] & 1;
                    let g = |x: u64| match bop {
                        BoolOp::And => x & c,
                        BoolOp::Or => x | c,
                        BoolOp::Xor => x ^ c,
                    };
                    r[l] = g(r[l]);
                    qv[l] = g(qv[l]);
                }
            }
            // SAFETY: p, q < nregs (decode_fast); the source references are dead.
            // (p first, then q, as the general path writes them)
            unsafe {
                put(base, p, &r, exec);
                if q != u32::MAX {
                    put(base, q, &qv, exec);
                }
            }
        }
    }
}

/// Where the bytes of a fast `ld`/`st` live.
enum Region {
    /// Allocation index in global memory.
    Global(usize),
    Shared,
    Param,
}

impl<'a, 'b> Block<'a, 'b> {
    /// A fast `ld`/`st` (`FOp::Ld`/`FOp::St`) for the lanes of `exec`, when every lane's access is
    /// aligned and inside one region (one global allocation; the block's shared memory when no
    /// shadow state is kept, i.e. at `PTX_EMU_CHECKS=fast`; the parameter buffer): no per-lane
    /// lookup, values straight from/to the register rows, lanes in order. Returns false (nothing
    /// done) otherwise: the general path then runs the instruction, checks each lane and reports
    /// the first fault.
    #[inline(always)]
    pub(super) fn ldst_fast(&mut self, w: &mut Warp, f: &FOp, exec: u32) -> bool {
        let (space, eb, n, base, off, store) = match *f {
            FOp::Ld {
                space,
                eb,
                n,
                base,
                off,
                ..
            } => (space, eb as usize, n as usize, base, off, false),
            FOp::St {
                space,
                eb,
                n,
                base,
                off,
                ..
            } => (space, eb as usize, n as usize, base, off, true),
            _ => return false,
        };
        let total = eb * n;
        if !total.is_power_of_two() {
            return false;
        }
        let mut addrs = [0u64; 32];
        match base {
            Src::R(r) => {
                let i = r as usize * 32;
                let row: &Row = w.regs[i..i + 32].try_into().unwrap();
                for l in 0..32 {
                    addrs[l] = row[l].wrapping_add(off);
                }
            }
            Src::I(v) => addrs = [v.wrapping_add(off); 32],
        }
        let (lo, hi, bits) = lane_span(&addrs, exec);
        if bits & (total as u64 - 1) != 0 || hi >= u64::MAX - 64 || lo > hi {
            return false;
        }
        let in_window = |start: u64| lo >= start && hi < start + WINDOW_SIZE;
        let (region, start) = match space {
            Space::Shared => (Region::Shared, 0),
            Space::Param => (Region::Param, 0),
            Space::Generic if in_window(SHARED_WINDOW) => (Region::Shared, SHARED_WINDOW),
            Space::Global | Space::Const => (Region::Global(0), 0),
            Space::Generic if hi < GLOBAL_LIMIT => (Region::Global(0), 0),
            _ => return false,
        };
        let end = hi - start + total as u64;
        let region = match region {
            Region::Shared => {
                if !self.shadow.is_empty() || end > self.shared.len() as u64 {
                    return false;
                }
                Region::Shared
            }
            Region::Param => {
                if store || end > self.c.params.len() as u64 {
                    return false;
                }
                Region::Param
            }
            Region::Global(_) => {
                let len = (hi - lo) as usize + total;
                let i = match &self.mem {
                    GMem::Seq(m) => m.find(lo, len),
                    GMem::Par(m, ov) => {
                        let i = m.find_from(lo, len, ov.hint.get());
                        if let Some(i) = i {
                            ov.hint.set(i);
                        }
                        if !store && ov.may_hold(lo, len) {
                            return false;
                        }
                        i
                    }
                };
                match i {
                    Some(i) => Region::Global(i),
                    None => return false,
                }
            }
        };
        if let FOp::Ld { sign, d, .. } = *f {
            let (data, start) = match region {
                Region::Shared => (&self.shared[..], start),
                Region::Param => (self.c.params, start),
                Region::Global(i) => {
                    let (s, d) = self.mem.base().alloc_bytes(i);
                    (d, s)
                }
            };
            for (k, &dr) in d.iter().enumerate().take(n) {
                if dr == u32::MAX {
                    continue;
                }
                let i = dr as usize * 32;
                let row: &mut Row = (&mut w.regs[i..i + 32]).try_into().unwrap();
                for l in lanes(exec) {
                    let o = (addrs[l] - start) as usize + k * eb;
                    let v = le_at(data, o, eb);
                    row[l] = if sign {
                        sext(v, eb as u32 * 8) as u64
                    } else {
                        v
                    };
                }
            }
            return true;
        }
        let FOp::St { v, .. } = *f else {
            return false;
        };
        static ZERO: Row = [0; 32];
        let mut rows: [&Row; 4] = [&ZERO; 4];
        let mut imm = [0u64; 4];
        let mut is_imm = [false; 4];
        for (k, s) in v.iter().enumerate().take(n) {
            match *s {
                Src::R(r) => {
                    let i = r as usize * 32;
                    rows[k] = w.regs[i..i + 32].try_into().unwrap();
                }
                Src::I(x) => {
                    imm[k] = x;
                    is_imm[k] = true;
                }
            }
        }
        let val = |k: usize, l: usize| if is_imm[k] { imm[k] } else { rows[k][l] };
        match region {
            Region::Shared => {
                for l in lanes(exec) {
                    let o = (addrs[l] - start) as usize;
                    for k in 0..n {
                        put_le_at(&mut self.shared, o + k * eb, val(k, l), eb);
                    }
                }
            }
            Region::Param => return false,
            Region::Global(i) => store_span(&mut self.mem, i, &addrs, exec, total, (n, eb), val),
        }
        true
    }
}

/// The `eb`-byte (1, 2, 4 or 8) little-endian value at `data[o..]`.
#[inline(always)]
fn le_at(data: &[u8], o: usize, eb: usize) -> u64 {
    match eb {
        1 => data[o] as u64,
        2 => u16::from_le_bytes([data[o], data[o + 1]]) as u64,
        4 => u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) as u64,
        _ => u64::from_le_bytes(data[o..o + 8].try_into().unwrap()),
    }
}

/// f32 `setp` over all 32 lanes (`compare`'s rules: flushed with `.ftz`, ordered comparisons
/// false on NaN, unordered ones true).
#[inline(always)]
fn setp_f32(cmp: Cmp, z: bool, a: &Row, b: &Row, r: &mut Row) {
    macro_rules! lp {
        (|$x:ident, $y:ident, $nan:ident| $e:expr) => {
            for l in 0..32 {
                let $x = fv(a[l], z);
                let $y = fv(b[l], z);
                let $nan = $x.is_nan() || $y.is_nan();
                r[l] = ($e) as u64;
            }
        };
    }
    match cmp {
        Cmp::Eq => lp!(|x, y, nan| !nan && x == y),
        Cmp::Ne => lp!(|x, y, nan| !nan && x != y),
        Cmp::Lt | Cmp::Lo => lp!(|x, y, nan| !nan && x < y),
        Cmp::Le | Cmp::Ls => lp!(|x, y, nan| !nan && x <= y),
        Cmp::Gt | Cmp::Hi => lp!(|x, y, nan| !nan && x > y),
        Cmp::Ge | Cmp::Hs => lp!(|x, y, nan| !nan && x >= y),
        Cmp::Equ => lp!(|x, y, nan| nan || x == y),
        Cmp::Neu => lp!(|x, y, nan| nan || x != y),
        Cmp::Ltu => lp!(|x, y, nan| nan || x < y),
        Cmp::Leu => lp!(|x, y, nan| nan || x <= y),
        Cmp::Gtu => lp!(|x, y, nan| nan || x > y),
        Cmp::Geu => lp!(|x, y, nan| nan || x >= y),
        Cmp::Num => lp!(|_x, _y, nan| !nan),
        Cmp::Nan => lp!(|_x, _y, nan| nan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::float_ops::cvt;

    /// Awkward bit patterns: zeros, subnormals, NaNs, infinities, extremes, bf16/f16 rounding
    /// ties, and pseudo-random values with garbage in the upper bits.
    fn patterns() -> Vec<u64> {
        let mut v = EDGE_BITS.to_vec();
        v.extend([
            0x7fc0_0001,
            0xffc0_0000,
            0x3f80_8000,
            0x3f80_8001,
            0x3f81_8000,
            0x477f_f000,
            0x477f_efff,
            0x3380_0000,
            0x3380_0001,
            0xffff,
            0x8000,
            0x7fff,
            0x1_0000_0000,
        ]);
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        while v.len() < 160 {
            let s = lcg(&mut s);
            v.push(if v.len().is_multiple_of(2) {
                s
            } else {
                s >> 32
            });
        }
        v
    }

    /// Operand rows for a chunk of the patterns: `a` cycles through the chunk, `b[l]` is `b(l)`
    /// and `c[l]` is `c(l)`.
    fn rows(chunk: &[u64], b: impl Fn(usize) -> u64, c: impl Fn(usize) -> u64) -> (Row, Row, Row) {
        let a = std::array::from_fn(|l| chunk[l % chunk.len()]);
        (a, std::array::from_fn(b), std::array::from_fn(c))
    }

    /// Run `f` on rows of `a`, `b`, `c` and return the destination row (registers: 0..3
    /// sources, 4 and 5 destinations, preset to a marker so masked lanes show).
    fn run(f: FOp, a: &Row, b: &Row, c: &Row, exec: u32) -> (Row, Row) {
        let mut regs = vec![0xdead_beefu64; 6 * 32];
        regs[..32].copy_from_slice(a);
        regs[32..64].copy_from_slice(b);
        regs[64..96].copy_from_slice(c);
        exec_fast(&mut regs, &f, exec);
        (
            regs[128..160].try_into().unwrap(),
            regs[160..192].try_into().unwrap(),
        )
    }

    #[test]
    fn fast_ops_match_alu() {
        let p = patterns();
        let f = AluFlags::default();
        let fz = AluFlags {
            ftz: true,
            ..AluFlags::default()
        };
        let approx = AluFlags {
            approx: true,
            ..AluFlags::default()
        };
        let approx_z = AluFlags {
            approx: true,
            ftz: true,
            ..AluFlags::default()
        };
        // (op, alu op, type, flags, operand count)
        let mut cases: Vec<(Alu, Ty, AluFlags, usize)> = Vec::new();
        for ty in INT_TYS {
            for op in TWO_SOURCE_INT_OPS.into_iter().chain([Alu::Div, Alu::Rem]) {
                cases.push((op, ty, f, 2));
            }
            cases.push((Alu::MadLo, ty, f, 3));
            cases.push((Alu::Selp, ty, f, 3));
            cases.push((Alu::Neg, ty, f, 1));
            cases.push((Alu::Not, ty, f, 1));
        }
        for fl in [f, fz] {
            for op in [Alu::Add, Alu::Sub, Alu::MulLo, Alu::Min, Alu::Max, Alu::Div] {
                cases.push((op, Ty::F32, fl, 2));
            }
            cases.push((Alu::Fma, Ty::F32, fl, 3));
            cases.push((Alu::Neg, Ty::F32, fl, 1));
            cases.push((Alu::Abs, Ty::F32, fl, 1));
        }
        cases.push((Alu::Ex2, Ty::F32, approx, 1));
        cases.push((Alu::Ex2, Ty::F32, approx_z, 1));
        cases.push((Alu::Selp, Ty::F32, f, 3));
        cases.push((Alu::Selp, Ty::F64, f, 3));
        for op in [Alu::And, Alu::Or, Alu::Xor] {
            cases.push((op, Ty::Pred, f, 2));
        }
        cases.push((Alu::Not, Ty::Pred, f, 1));
        let srcs = [Opnd::Reg(0), Opnd::Reg(1), Opnd::Reg(2)];
        let mut covered = 0;
        for (op, ty, fl, n) in cases {
            let Some(fop) = decode_alu(op, ty, &fl, 4, &srcs[..n]) else {
                continue;
            };
            covered += 1;
            for (i, chunk) in p.chunks(32).enumerate() {
                let (a, b, c) = rows(
                    chunk,
                    |l| p[(i * 7 + l * 13) % p.len()],
                    |l| p[(i * 3 + l * 5 + 1) % p.len()],
                );
                let exec = if i % 2 == 0 { u32::MAX } else { 0x5a5a_f00f };
                let (got, _) = run(fop, &a, &b, &c, exec);
                // the general path's warp loops (upper register bits included), else `alu`
                let mut regs = vec![0u64; 3 * 32];
                regs[..32].copy_from_slice(&a);
                regs[32..64].copy_from_slice(&b);
                regs[64..].copy_from_slice(&c);
                let mut loops: Row = [0; 32];
                let have = if ty == Ty::F32 && op != Alu::Selp {
                    super::alu::f32_alu(&regs, &[], 0, op, fl, &srcs[..n], &mut loops)
                } else if ty.is_float() || ty == Ty::Pred {
                    false
                } else {
                    super::alu::int_alu(&regs, &[], 0, op, ty, &srcs[..n], &mut loops)
                };
                for l in 0..32 {
                    let want = if exec & (1 << l) == 0 {
                        0xdead_beef
                    } else if have {
                        loops[l]
                    } else {
                        alu(op, ty, fl, a[l], b[l], c[l], 0)
                    };
                    if ty == Ty::F32 && exec & (1 << l) != 0 {
                        // `alu` agrees on the low 32 bits (the f32 value)
                        assert_eq!(
                            got[l] & 0xffff_ffff,
                            alu(op, ty, fl, a[l], b[l], c[l], 0) & 0xffff_ffff,
                            "{op:?}.{ty:?} vs alu"
                        );
                    }
                    assert_eq!(
                        got[l], want,
                        "{op:?}.{ty:?} {fl:?} a={:#x} b={:#x} c={:#x}",
                        a[l], b[l], c[l]
                    );
                }
            }
        }
        assert!(covered > 100, "only {covered} cases have a fast form");
    }

    /// f32 division and int → f32 conversion on many random operands (all exponent ranges,
    /// subnormal quotients included) against the general path.
    #[test]
    fn fast_div_and_int_cvt_match_on_random_operands() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for ftz in [false, true] {
            let fl = AluFlags {
                ftz,
                has_rnd: true,
                ..AluFlags::default()
            };
            let fop = decode_alu(Alu::Div, Ty::F32, &fl, 4, &[Opnd::Reg(0), Opnd::Reg(1)]).unwrap();
            for _ in 0..2000 {
                let mut a: Row = [0; 32];
                let mut b: Row = [0; 32];
                for l in 0..32 {
                    let (x, y) = (next(), next());
                    a[l] = x & 0xffff_ffff;
                    // divisor exponents spread so that quotients hit every range
                    b[l] = (y & 0x807f_ffff) | (((y >> 40) % 255) << 23);
                }
                let (got, _) = run(fop, &a, &b, &[0; 32], u32::MAX);
                for l in 0..32 {
                    assert_eq!(
                        got[l],
                        alu(Alu::Div, Ty::F32, fl, a[l], b[l], 0, 0),
                        "div ftz={ftz} {:#x} / {:#x}",
                        a[l],
                        b[l]
                    );
                }
            }
        }
        let f = AluFlags {
            has_rnd: true,
            ..AluFlags::default()
        };
        for (k, st) in [(Un::CvtF32U32, Ty::U32), (Un::CvtF32S32, Ty::S32)] {
            for _ in 0..500 {
                let mut a: Row = [0; 32];
                for x in a.iter_mut() {
                    *x = next() >> (next() % 64);
                }
                let (got, _) = run(FOp::Un(k, 4, Src::R(0)), &a, &a, &a, u32::MAX);
                for l in 0..32 {
                    assert_eq!(got[l], cvt(Ty::F32, st, f, a[l]), "{k:?} {:#x}", a[l]);
                }
            }
        }
    }

    #[test]
    fn fast_setp_and_cvt_match() {
        let p = patterns();
        let cmps = [
            Cmp::Eq,
            Cmp::Ne,
            Cmp::Lt,
            Cmp::Le,
            Cmp::Gt,
            Cmp::Ge,
            Cmp::Lo,
            Cmp::Ls,
            Cmp::Hi,
            Cmp::Hs,
            Cmp::Equ,
            Cmp::Neu,
            Cmp::Ltu,
            Cmp::Leu,
            Cmp::Gtu,
            Cmp::Geu,
            Cmp::Num,
            Cmp::Nan,
        ];
        for ty in [
            Ty::U32,
            Ty::S32,
            Ty::U64,
            Ty::S64,
            Ty::U16,
            Ty::S16,
            Ty::F32,
        ] {
            for ftz in [false, true] {
                for cmp in cmps {
                    if ty != Ty::F32
                        && !matches!(
                            cmp,
                            Cmp::Eq
                                | Cmp::Ne
                                | Cmp::Lt
                                | Cmp::Le
                                | Cmp::Gt
                                | Cmp::Ge
                                | Cmp::Lo
                                | Cmp::Ls
                                | Cmp::Hi
                                | Cmp::Hs
                        )
                    {
                        continue;
                    }
                    for bop in [None, Some(BoolOp::And), Some(BoolOp::Or), Some(BoolOp::Xor)] {
                        let kind = if ty == Ty::F32 {
                            SetpKind::F32(ftz)
                        } else {
                            SetpKind::Int(ty)
                        };
                        let fop = FOp::Setp {
                            cmp,
                            kind,
                            p: 4,
                            q: 5,
                            a: Src::R(0),
                            b: Src::R(1),
                            comb: bop.map(|b| (b, Src::R(2))),
                        };
                        for (i, chunk) in p.chunks(32).enumerate() {
                            let (a, b, c) = rows(
                                chunk,
                                |l| p[(i * 11 + l * 3) % p.len()],
                                |l| (l as u64 * 7 + i as u64) & 1,
                            );
                            let (gp, gq) = run(fop, &a, &b, &c, u32::MAX);
                            for l in 0..32 {
                                let r = compare(cmp, ty, ftz, a[l], b[l]) as u64;
                                let comb = |x: u64| match bop {
                                    None => x,
                                    Some(BoolOp::And) => x & c[l],
                                    Some(BoolOp::Or) => x | c[l],
                                    Some(BoolOp::Xor) => x ^ c[l],
                                };
                                assert_eq!(gp[l], comb(r), "setp {cmp:?} {ty:?} {ftz}");
                                assert_eq!(gq[l], comb(r ^ 1), "setp q {cmp:?} {ty:?} {ftz}");
                            }
                        }
                    }
                }
            }
        }
        // conversions
        let f = AluFlags {
            has_rnd: true,
            ..AluFlags::default()
        };
        let convs = [
            (Un::CvtBf16F32, Ty::BF16, Ty::F32),
            (Un::CvtF16F32, Ty::F16, Ty::F32),
            (Un::CvtF32Bf16, Ty::F32, Ty::BF16),
            (Un::CvtF32F16, Ty::F32, Ty::F16),
            (Un::CvtF32U32, Ty::F32, Ty::U32),
            (Un::CvtF32S32, Ty::F32, Ty::S32),
        ];
        let mut vals = p.clone();
        for h in (0..0x1_0000u64).step_by(7) {
            vals.push(h);
            vals.push(h << 16 | 0x8000);
        }
        for (k, dt, st) in convs {
            for chunk in vals.chunks(32) {
                let mut a: Row = [0; 32];
                for l in 0..32 {
                    a[l] = chunk[l % chunk.len()];
                }
                let (got, _) = run(FOp::Un(k, 4, Src::R(0)), &a, &a, &a, u32::MAX);
                for l in 0..32 {
                    assert_eq!(got[l], cvt(dt, st, f, a[l]), "{k:?} {:#x}", a[l]);
                }
            }
        }
        for (dt, st) in [
            (Ty::U64, Ty::U32),
            (Ty::U32, Ty::U64),
            (Ty::S64, Ty::S32),
            (Ty::U64, Ty::S32),
            (Ty::S32, Ty::S64),
            (Ty::U16, Ty::U32),
            (Ty::S16, Ty::S32),
            (Ty::U32, Ty::U16),
            (Ty::S32, Ty::S16),
            (Ty::S32, Ty::U16),
            (Ty::U8, Ty::S32),
            (Ty::S8, Ty::U32),
        ] {
            let ins = Instr {
                op: Op::Cvt {
                    d: dt,
                    s: st,
                    f: AluFlags::default(),
                },
                guard: None,
                d: vec![Opnd::Reg(4)],
                s: vec![Opnd::Reg(0)],
                line: 0,
            };
            let fop = decode_one(&ins, 6);
            assert!(matches!(fop, FOp::Un(..)));
            for chunk in p.chunks(32) {
                let mut a: Row = [0; 32];
                for l in 0..32 {
                    a[l] = chunk[l % chunk.len()];
                }
                let (got, _) = run(fop, &a, &a, &a, u32::MAX);
                for l in 0..32 {
                    assert_eq!(
                        got[l],
                        cvt(dt, st, AluFlags::default(), a[l]),
                        "cvt {dt:?} {st:?}"
                    );
                }
            }
        }
        // bf16x2 and pack
        let (got, _) = run(
            FOp::Bin(Bin::CvtBf16x2, 4, Src::R(0), Src::R(1)),
            &p[..32].try_into().unwrap(),
            &p[32..64].try_into().unwrap(),
            &[0; 32],
            u32::MAX,
        );
        for l in 0..32 {
            let want =
                (cvt(Ty::BF16x2, Ty::F32, f, p[l]) << 16) | cvt(Ty::BF16x2, Ty::F32, f, p[32 + l]);
            assert_eq!(got[l], want);
        }
        // immediates and register bound checks
        let ins = Instr {
            op: Op::Alu(Alu::Add, Ty::U32, AluFlags::default()),
            guard: None,
            d: vec![Opnd::Reg(9)],
            s: vec![Opnd::Reg(0), Opnd::Imm(1)],
            line: 0,
        };
        assert_eq!(decode_one(&ins, 9), FOp::Slow);
        assert_eq!(
            decode_one(&ins, 10),
            FOp::Bin(Bin::Add(0xffff_ffff), 9, Src::R(0), Src::I(1))
        );
    }
}
