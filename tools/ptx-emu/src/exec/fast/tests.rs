//! The fast forms against the general path (`alu`/`compare`/`cvt`) on awkward bit patterns.

use super::decode::{decode_alu, decode_one};
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
