//! Decoding an instruction into its fast form ([`FOp`]), or `FOp::Slow` when it has none.

use super::*;

/// Decode the fast form of every instruction of a kernel with `nregs` register slots.
pub(crate) fn decode_fast(instrs: &[Instr], nregs: usize) -> Vec<FOp> {
    instrs.iter().map(|i| decode_one(i, nregs)).collect()
}

pub(super) fn decode_one(ins: &Instr, nregs: usize) -> FOp {
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
pub(super) fn decode_alu(op: Alu, ty: Ty, f: &AluFlags, d: u32, s: &[Opnd]) -> Option<FOp> {
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
