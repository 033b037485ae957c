//! One PTX instruction → `Op` with resolved operands; modifier validation.

use super::*;

/// An instruction's operation, destinations and sources.
type Decoded = (Op, Vec<Opnd>, Vec<Opnd>);

/// Error unless the instruction has exactly `n` operands.
pub(super) fn expect_operands(ins: &AInstr, n: usize) -> Result<(), String> {
    if ins.ops.len() != n {
        Err(format!(
            "`{}` expects {n} operands, got {}",
            ins.opcode,
            ins.ops.len()
        ))
    } else {
        Ok(())
    }
}

impl<'a> Decoder<'a> {
    pub(super) fn decode_instr(&self, ins: &AInstr) -> Result<Decoded, String> {
        if let Some(r) = self.decode_async_copy(ins)? {
            return Ok(r);
        }
        if let Some(r) = self.decode_dsmem(ins)? {
            return Ok(r);
        }
        let parts: Vec<&str> = ins.opcode.split('.').collect();
        let mnem = parts[0];
        let mut m = Mods::new(&parts[1..]);
        let ops = &ins.ops;
        let need = |n: usize| expect_operands(ins, n);
        let r = match mnem {
            "mov" => {
                need(2)?;
                let ty = m.ty1()?;
                self.with_operands(Op::Mov(ty), ops, &[ty])?
            }
            "add" | "sub" | "mul" | "div" | "rem" | "min" | "max" | "and" | "or" | "xor"
            | "shl" | "shr" | "copysign" => {
                need(3)?;
                let ty = m.ty1()?;
                let mut f = m.flags();
                let alu = match mnem {
                    "add" => Alu::Add,
                    "sub" => Alu::Sub,
                    "mul" => {
                        if m.take("hi") {
                            Alu::MulHi
                        } else if m.take("wide") {
                            Alu::MulWide
                        } else {
                            m.take("lo");
                            Alu::MulLo
                        }
                    }
                    "div" => {
                        if m.take("full") {
                            f.approx = true;
                        }
                        Alu::Div
                    }
                    "rem" => Alu::Rem,
                    "min" => Alu::Min,
                    "max" => Alu::Max,
                    "and" => Alu::And,
                    "or" => Alu::Or,
                    "xor" => Alu::Xor,
                    "shl" => Alu::Shl,
                    "shr" => Alu::Shr,
                    _ => Alu::Copysign,
                };
                if ty.is_float() && (m.take("NaN") || m.take("xorsign")) {
                    return Err(format!(
                        "modifier .NaN/.xorsign of `{}` is not supported",
                        ins.opcode
                    ));
                }
                if (mnem == "add" || mnem == "sub") && (m.take("cc")) {
                    return Err("add.cc/sub.cc (carry) is not supported".into());
                }
                let sty = if alu == Alu::Shl || alu == Alu::Shr {
                    Ty::U32
                } else {
                    ty
                };
                self.with_operands(Op::Alu(alu, ty, f), ops, &[ty, sty])?
            }
            "not" | "cnot" | "neg" | "abs" | "popc" | "clz" | "brev" | "sqrt" | "rsqrt" | "rcp"
            | "ex2" | "lg2" | "sin" | "cos" | "tanh" | "bfind" => {
                need(2)?;
                let ty = m.ty1()?;
                let f = m.flags();
                let alu = match mnem {
                    "not" => Alu::Not,
                    "cnot" => Alu::Cnot,
                    "neg" => Alu::Neg,
                    "abs" => Alu::Abs,
                    "popc" => Alu::Popc,
                    "clz" => Alu::Clz,
                    "brev" => Alu::Brev,
                    "sqrt" => Alu::Sqrt,
                    "rsqrt" => Alu::Rsqrt,
                    "rcp" => Alu::Rcp,
                    "ex2" => Alu::Ex2,
                    "lg2" => Alu::Lg2,
                    "sin" => Alu::Sin,
                    "cos" => Alu::Cos,
                    "tanh" => Alu::Tanh,
                    _ => {
                        if m.take("shiftamt") {
                            return Err("bfind.shiftamt is not supported".into());
                        }
                        Alu::Bfind
                    }
                };
                if matches!(
                    alu,
                    Alu::Rsqrt | Alu::Ex2 | Alu::Lg2 | Alu::Sin | Alu::Cos | Alu::Tanh
                ) && !f.approx
                {
                    return Err(format!("`{}` requires .approx", ins.opcode));
                }
                if alu == Alu::Bfind && ty.bits() < 32 {
                    return Err("bfind needs a 32/64-bit type".into());
                }
                self.with_operands(Op::Alu(alu, ty, f), ops, &[ty])?
            }
            "testp" => {
                need(2)?;
                let Some(mode) = m.pick(&[
                    ("finite", 0),
                    ("infinite", 1),
                    ("number", 2),
                    ("notanumber", 3),
                    ("normal", 4),
                    ("subnormal", 5),
                ]) else {
                    return Err("unknown testp mode".into());
                };
                let ty = m.ty1()?;
                (
                    Op::Alu(Alu::Testp, ty, AluFlags::default()),
                    vec![self.reg(&ops[0])?],
                    vec![self.src(&ops[1], ty)?, Opnd::Imm(mode)],
                )
            }
            "mad" | "fma" => {
                need(4)?;
                let alu = if mnem == "fma" {
                    Alu::Fma
                } else if m.take("hi") {
                    Alu::MadHi
                } else if m.take("wide") {
                    Alu::MadWide
                } else {
                    m.take("lo");
                    Alu::MadLo
                };
                let ty = m.ty1()?;
                let f = m.flags();
                let alu = if ty.is_float() { Alu::Fma } else { alu };
                if ty.is_float() && mnem == "mad" && !f.has_rnd && ty != Ty::F32 {
                    return Err("mad.f64 without rounding is not supported".into());
                }
                let cty = if alu == Alu::MadWide { wide(ty) } else { ty };
                self.with_operands(Op::Alu(alu, ty, f), ops, &[ty, ty, cty])?
            }
            "sad" => {
                need(4)?;
                let ty = m.ty1()?;
                self.with_operands(
                    Op::Alu(Alu::Sad, ty, AluFlags::default()),
                    ops,
                    &[ty, ty, ty],
                )?
            }
            "dp4a" => {
                need(4)?;
                let t1 = m.ty1()?;
                let t2 = m.ty1()?;
                let signs = (t1.signed() as u64) | ((t2.signed() as u64) << 1);
                let op = Op::Alu(Alu::Dp4a, Ty::B32, AluFlags::default());
                let (op, d, mut s) = self.with_operands(op, ops, &[Ty::B32; 3])?;
                s.push(Opnd::Imm(signs));
                (op, d, s)
            }
            "selp" => {
                need(4)?;
                let ty = m.ty1()?;
                let op = Op::Alu(Alu::Selp, ty, AluFlags::default());
                let (op, d, mut s) = self.with_operands(op, ops, &[ty, ty])?;
                s.push(self.reg(&ops[3])?);
                (op, d, s)
            }
            "bfe" => {
                need(4)?;
                let ty = m.ty1()?;
                self.with_operands(
                    Op::Alu(Alu::Bfe, ty, AluFlags::default()),
                    ops,
                    &[ty, Ty::U32, Ty::U32],
                )?
            }
            "bfi" => {
                need(5)?;
                let ty = m.ty1()?;
                self.with_operands(
                    Op::Alu(Alu::Bfi, ty, AluFlags::default()),
                    ops,
                    &[ty, ty, Ty::U32, Ty::U32],
                )?
            }
            "prmt" => {
                need(4)?;
                let ty = m.ty1()?;
                for mode in ["f4e", "b4e", "rc8", "ecl", "ecr", "rc16"] {
                    if m.take(mode) {
                        return Err(format!("prmt mode .{mode} is not supported"));
                    }
                }
                self.with_operands(
                    Op::Alu(Alu::Prmt, ty, AluFlags::default()),
                    ops,
                    &[ty, ty, ty],
                )?
            }
            "lop3" => {
                need(5)?;
                let ty = m.ty1()?;
                self.with_operands(
                    Op::Alu(Alu::Lop3, ty, AluFlags::default()),
                    ops,
                    &[ty, ty, ty, ty],
                )?
            }
            "shf" => {
                need(4)?;
                let alu = if m.take("l") {
                    Alu::ShfL
                } else if m.take("r") {
                    Alu::ShfR
                } else {
                    return Err("shf needs .l or .r".into());
                };
                let mut f = AluFlags::default();
                if m.take("clamp") {
                    f.clamp = true;
                } else if !m.take("wrap") {
                    return Err("shf needs .wrap or .clamp".into());
                }
                let ty = m.ty1()?;
                self.with_operands(Op::Alu(alu, ty, f), ops, &[ty, ty, Ty::U32])?
            }
            "wgmma" | "stmatrix" => {
                m.parts.clear();
                self.decode_hopper(ins)?
            }
            "cvt" if ins.opcode.contains(".e4m3") || ins.opcode.contains(".e5m2") => {
                m.parts.clear();
                self.decode_hopper(ins)?
            }
            "cvt" => {
                let f = m.flags();
                let d = m.ty1()?;
                let s = m.ty1()?;
                if d.packed() {
                    need(3)?;
                    self.with_operands(Op::Cvt { d, s, f }, ops, &[s, s])?
                } else {
                    need(2)?;
                    self.with_operands(Op::Cvt { d, s, f }, ops, &[s])?
                }
            }
            "cvta" => {
                need(2)?;
                let to = m.take("to");
                let space = m.space().ok_or("cvta needs a state space")?;
                let _ = m.ty1()?;
                (
                    Op::Cvta { to, space },
                    vec![self.reg(&ops[0])?],
                    vec![self.reg(&ops[1])?],
                )
            }
            "setp" => {
                let cmp = m.cmp().ok_or("setp without a comparison")?;
                let bop = m.pick(&[
                    ("and", BoolOp::And),
                    ("or", BoolOp::Or),
                    ("xor", BoolOp::Xor),
                ]);
                let ftz = m.take("ftz");
                let ty = m.ty1()?;
                if ty.packed() {
                    return Err("setp on packed .f16x2/.bf16x2 is not supported".into());
                }
                need(if bop.is_some() { 4 } else { 3 })?;
                let d = match &ops[0] {
                    AOp::Pair(p, q) => vec![
                        self.reg(&AOp::Name(p.clone()))?,
                        self.reg(&AOp::Name(q.clone()))?,
                    ],
                    o => vec![self.reg(o)?],
                };
                let mut s = vec![self.src(&ops[1], ty)?, self.src(&ops[2], ty)?];
                if bop.is_some() {
                    s.push(self.reg(&ops[3])?);
                }
                (Op::Setp { cmp, ty, bop, ftz }, d, s)
            }
            "ld" | "ldu" => {
                need(2)?;
                let mut space = m.space().unwrap_or(Space::Generic);
                m.ignore_hints();
                m.take("nc");
                let n = m.vec();
                let ty = m.ty1()?;
                let a = self.addr(&ops[1], &mut space)?;
                (Op::Ld { space, ty, n }, vec![self.reg(&ops[0])?], vec![a])
            }
            "st" => {
                need(2)?;
                let mut space = m.space().unwrap_or(Space::Generic);
                m.ignore_hints();
                let n = m.vec();
                let ty = m.ty1()?;
                let a = self.addr(&ops[0], &mut space)?;
                (
                    Op::St { space, ty, n },
                    vec![],
                    vec![a, self.src(&ops[1], ty)?],
                )
            }
            "atom" | "red" => {
                let red = mnem == "red";
                let mut space = m.space().unwrap_or(Space::Generic);
                m.ignore_hints();
                let Some(op) = m.pick(&[
                    ("add", AtomOp::Add),
                    ("min", AtomOp::Min),
                    ("max", AtomOp::Max),
                    ("exch", AtomOp::Exch),
                    ("cas", AtomOp::Cas),
                    ("and", AtomOp::And),
                    ("or", AtomOp::Or),
                    ("xor", AtomOp::Xor),
                    ("inc", AtomOp::Inc),
                    ("dec", AtomOp::Dec),
                ]) else {
                    return Err(format!("unknown atomic operation in `{}`", ins.opcode));
                };
                m.take("noftz");
                if m.vec() != 1 {
                    return Err("vector atomics are not supported".into());
                }
                let ty = m.ty1()?;
                if ty.packed() || matches!(ty, Ty::F16 | Ty::BF16) {
                    return Err(format!("atomic on {ty:?} is not supported"));
                }
                if red {
                    need(2)?;
                    let a = self.addr(&ops[0], &mut space)?;
                    (
                        Op::Atom { space, op, ty, red },
                        vec![],
                        vec![a, self.src(&ops[1], ty)?],
                    )
                } else {
                    need(if op == AtomOp::Cas { 4 } else { 3 })?;
                    let a = self.addr(&ops[1], &mut space)?;
                    let mut s = vec![a, self.src(&ops[2], ty)?];
                    if op == AtomOp::Cas {
                        s.push(self.src(&ops[3], ty)?);
                    }
                    (Op::Atom { space, op, ty, red }, vec![self.reg(&ops[0])?], s)
                }
            }
            "exit" | "ret" => {
                m.take("uni");
                (Op::Exit, vec![], vec![])
            }
            "trap" => (Op::Trap, vec![], vec![]),
            "bar" | "barrier" => {
                if mnem == "bar" && m.take("warp") {
                    m.take("sync");
                    need(1)?;
                    (Op::WarpSync, vec![], vec![self.src(&ops[0], Ty::B32)?])
                } else if m.take("sync") || (mnem == "barrier" && m.parts.is_empty()) {
                    m.take("aligned");
                    if ops.len() == 2 {
                        return Err("barrier with an explicit thread count is not supported".into());
                    }
                    need(1)?;
                    match self.src(&ops[0], Ty::U32)? {
                        Opnd::Imm(0) => {}
                        _ => return Err("only barrier 0 (__syncthreads) is supported".into()),
                    }
                    (Op::BarSync, vec![], vec![])
                } else if m.take("red") {
                    m.take("aligned");
                    let popc = m.take("popc");
                    let bop = if popc || m.take("and") {
                        BoolOp::And
                    } else if m.take("or") {
                        BoolOp::Or
                    } else {
                        return Err("unknown bar.red operation".into());
                    };
                    let _ = m.ty1()?;
                    if ops.len() != 3 {
                        return Err("bar.red with a thread count is not supported".into());
                    }
                    match self.src(&ops[1], Ty::U32)? {
                        Opnd::Imm(0) => {}
                        _ => return Err("only barrier 0 is supported".into()),
                    }
                    (
                        Op::BarRed(bop, popc),
                        vec![self.reg(&ops[0])?],
                        vec![self.reg(&ops[2])?],
                    )
                } else {
                    return Err(format!("`{}` is not supported", ins.opcode));
                }
            }
            "membar" | "fence" => {
                m.parts.clear();
                (Op::Membar, vec![], vec![])
            }
            "shfl" => {
                m.take("sync");
                let Some(mode) = m.pick(&[
                    ("up", ShflMode::Up),
                    ("down", ShflMode::Down),
                    ("bfly", ShflMode::Bfly),
                    ("idx", ShflMode::Idx),
                ]) else {
                    return Err("shfl needs a mode".into());
                };
                let _ = m.ty1()?;
                need(5)?;
                let d = match &ops[0] {
                    AOp::Pair(p, q) => vec![
                        self.reg(&AOp::Name(p.clone()))?,
                        self.reg(&AOp::Name(q.clone()))?,
                    ],
                    o => vec![self.reg(o)?],
                };
                (
                    Op::Shfl(mode),
                    d,
                    vec![
                        self.src(&ops[1], Ty::B32)?,
                        self.src(&ops[2], Ty::B32)?,
                        self.src(&ops[3], Ty::B32)?,
                        self.src(&ops[4], Ty::B32)?,
                    ],
                )
            }
            "vote" => {
                m.take("sync");
                let Some(mode) = m.pick(&[
                    ("all", VoteMode::All),
                    ("any", VoteMode::Any),
                    ("uni", VoteMode::Uni),
                    ("ballot", VoteMode::Ballot),
                ]) else {
                    return Err("vote needs a mode".into());
                };
                let _ = m.ty1()?;
                need(3)?;
                (
                    Op::Vote(mode),
                    vec![self.reg(&ops[0])?],
                    vec![self.reg(&ops[1])?, self.src(&ops[2], Ty::B32)?],
                )
            }
            "redux" => {
                m.take("sync");
                let Some(alu) = m.pick(&[
                    ("add", Alu::Add),
                    ("min", Alu::Min),
                    ("max", Alu::Max),
                    ("and", Alu::And),
                    ("or", Alu::Or),
                    ("xor", Alu::Xor),
                ]) else {
                    return Err("unknown redux op".into());
                };
                let ty = m.ty1()?;
                need(3)?;
                self.with_operands(Op::Redux(alu, ty), ops, &[ty, Ty::B32])?
            }
            "activemask" => {
                let _ = m.ty1()?;
                need(1)?;
                (Op::Activemask, vec![self.reg(&ops[0])?], vec![])
            }
            "cp" => {
                if !m.take("async") {
                    return Err(format!("`{}` is not supported", ins.opcode));
                }
                if m.take("commit_group") {
                    (Op::CpCommit, vec![], vec![])
                } else if m.take("wait_group") {
                    need(1)?;
                    match self.src(&ops[0], Ty::U32)? {
                        Opnd::Imm(n) => (Op::CpWait(n as u32), vec![], vec![]),
                        _ => return Err("cp.async.wait_group needs an immediate".into()),
                    }
                } else if m.take("wait_all") {
                    (Op::CpWait(u32::MAX), vec![], vec![])
                } else {
                    let ca = m.take("ca");
                    let cg = m.take("cg");
                    if !(ca || cg) {
                        return Err("cp.async needs .ca or .cg".into());
                    }
                    if !(m.take("shared") && m.take("global")) {
                        return Err("cp.async must be .shared.global".into());
                    }
                    m.ignore_hints();
                    if m.parts.iter().any(|p| p.starts_with("L2::cache_hint")) {
                        return Err("cp.async cache_hint is not supported".into());
                    }
                    if ops.len() < 3 || ops.len() > 4 {
                        return Err("cp.async expects 3 or 4 operands".into());
                    }
                    let mut sp = Space::Shared;
                    let dst = self.addr(&ops[0], &mut sp)?;
                    let mut gp = Space::Global;
                    let src = self.addr(&ops[1], &mut gp)?;
                    let size = match self.src(&ops[2], Ty::U32)? {
                        Opnd::Imm(n) if n == 4 || n == 8 || n == 16 => n as u32,
                        _ => return Err("cp.async cp-size must be 4, 8 or 16".into()),
                    };
                    if cg && size != 16 {
                        return Err("cp.async.cg requires cp-size 16".into());
                    }
                    let mut s = vec![dst, src];
                    if ops.len() == 4 {
                        s.push(self.src(&ops[3], Ty::U32)?);
                    }
                    (
                        Op::CpAsync {
                            size,
                            src_size: ops.len() == 4,
                        },
                        vec![],
                        s,
                    )
                }
            }
            "ldmatrix" => {
                m.take("sync");
                m.take("aligned");
                if !m.take("m8n8") {
                    return Err("only ldmatrix .m8n8 is supported".into());
                }
                let Some(num) = m.pick(&[("x1", 1), ("x2", 2), ("x4", 4)]) else {
                    return Err("ldmatrix needs .x1/.x2/.x4".into());
                };
                let trans = m.take("trans");
                let mut space = m.space().unwrap_or(Space::Generic);
                let ty = m.ty1()?;
                if ty != Ty::B16 {
                    return Err("ldmatrix only .b16 is supported".into());
                }
                need(2)?;
                let d = self.reg(&ops[0])?;
                match &d {
                    Opnd::Vec(v) if v.len() == num as usize => {}
                    _ => return Err("ldmatrix destination vector size does not match .xN".into()),
                }
                let a = self.addr(&ops[1], &mut space)?;
                if !matches!(space, Space::Shared | Space::Generic) {
                    return Err("ldmatrix must read shared memory".into());
                }
                (
                    Op::Ldmatrix { num, trans },
                    vec![d],
                    vec![a, Opnd::Imm(space as u64)],
                )
            }
            "mma" => {
                m.take("sync");
                m.take("aligned");
                let k = if m.take("m16n8k16") {
                    16
                } else if m.take("m16n8k8") {
                    8
                } else {
                    return Err("only mma shapes m16n8k16 and m16n8k8 are supported".into());
                };
                if !(m.take("row") && m.take("col")) {
                    return Err("mma must be .row.col".into());
                }
                let td = m.ty1()?;
                let ta = m.ty1()?;
                let tb = m.ty1()?;
                let tc = m.ty1()?;
                if td != Ty::F32 || tc != Ty::F32 || ta != tb || !matches!(ta, Ty::F16 | Ty::BF16) {
                    return Err(format!("mma types {td:?}.{ta:?}.{tb:?}.{tc:?} are not supported (f32 accumulate from f16/bf16 only)"));
                }
                need(4)?;
                let d = self.reg(&ops[0])?;
                let a = self.reg(&ops[1])?;
                let b = self.reg(&ops[2])?;
                let c = self.src(&ops[3], Ty::F32)?;
                let (na, nb) = if k == 16 { (4, 2) } else { (2, 1) };
                let ok = |o: &Opnd, n: usize| matches!(o, Opnd::Vec(v) if v.len() == n);
                if !ok(&d, 4) || !ok(&a, na) || !ok(&b, nb) || !ok(&c, 4) {
                    return Err("mma operand vector sizes do not match the shape".into());
                }
                (Op::Mma { k, ab: ta }, vec![d], vec![a, b, c])
            }
            "prefetch" | "prefetchu" | "nanosleep" | "pmevent" | "discard" => {
                m.parts.clear();
                (Op::Nop, vec![], vec![])
            }
            _ => return Err(format!("instruction `{}` is not supported", ins.opcode)),
        };
        if let Some(left) = m.parts.first() {
            return Err(format!(
                "modifier `.{left}` of `{}` is not supported",
                ins.opcode
            ));
        }
        if let Op::Alu(alu, ty, f) = &r.0 {
            validate_alu(*alu, *ty, f).map_err(|e| format!("`{}`: {e}", ins.opcode))?;
        }
        Ok(r)
    }

    /// `op` with its destination register `ops[0]` and its sources `ops[1..]`, source `i` read
    /// as type `tys[i]`.
    fn with_operands(&self, op: Op, ops: &[AOp], tys: &[Ty]) -> Result<Decoded, String> {
        let d = vec![self.reg(&ops[0])?];
        let s = (tys.iter().zip(&ops[1..]))
            .map(|(&ty, o)| self.src(o, ty))
            .collect::<Result<_, _>>()?;
        Ok((op, d, s))
    }
}

/// Reject type/modifier combinations the ALU would not execute faithfully.
pub(super) fn validate_alu(alu: Alu, ty: Ty, f: &AluFlags) -> Result<(), String> {
    use Alu::*;
    if ty.is_float() {
        let ok = matches!(
            alu,
            Add | Sub
                | MulLo
                | Div
                | Min
                | Max
                | Neg
                | Abs
                | Copysign
                | Sqrt
                | Rsqrt
                | Rcp
                | Ex2
                | Lg2
                | Sin
                | Cos
                | Tanh
                | Fma
                | Selp
                | Testp
        );
        if !ok {
            return Err(format!("{alu:?} on a floating-point type is not supported"));
        }
        if matches!(alu, Min | Max) && (f.has_rnd || f.sat) {
            return Err("rounding/saturation modifiers on min/max are not supported".into());
        }
    } else {
        if f.relu || f.ftz || f.approx || f.has_rnd || f.satfinite {
            return Err(format!(
                "floating-point modifiers on integer type {ty:?} are not supported"
            ));
        }
        if f.sat && !(matches!(alu, Add | Sub) && ty == Ty::S32) {
            return Err(".sat is only supported on add/sub.s32".into());
        }
        if matches!(
            alu,
            Copysign | Sqrt | Rsqrt | Rcp | Ex2 | Lg2 | Sin | Cos | Tanh | Fma | Testp
        ) {
            return Err(format!("{alu:?} on integer type {ty:?} is not supported"));
        }
        if ty == Ty::Pred && !matches!(alu, And | Or | Xor | Not | Selp) {
            return Err(format!("{alu:?} on .pred is not supported"));
        }
    }
    Ok(())
}

pub(super) fn wide(t: Ty) -> Ty {
    match t {
        Ty::U16 => Ty::U32,
        Ty::S16 => Ty::S32,
        Ty::U32 => Ty::U64,
        Ty::S32 => Ty::S64,
        t => t,
    }
}

pub(super) struct Mods<'a> {
    parts: Vec<&'a str>,
}

impl<'a> Mods<'a> {
    fn new(p: &[&'a str]) -> Self {
        Mods { parts: p.to_vec() }
    }
    /// The value of the first of `choices` whose modifier is present (that one removed).
    fn pick<T: Copy>(&mut self, choices: &[(&str, T)]) -> Option<T> {
        choices.iter().find(|(s, _)| self.take(s)).map(|&(_, v)| v)
    }
    fn take(&mut self, s: &str) -> bool {
        if let Some(i) = self.parts.iter().position(|p| *p == s) {
            self.parts.remove(i);
            true
        } else {
            false
        }
    }
    /// First type modifier (removed).
    fn ty1(&mut self) -> Result<Ty, String> {
        for i in 0..self.parts.len() {
            if let Some(t) = Ty::parse(self.parts[i]) {
                if t == Ty::B128 {
                    return Err("128-bit (.b128) operands are not supported".into());
                }
                self.parts.remove(i);
                return Ok(t);
            }
        }
        Err("missing type modifier".into())
    }
    fn vec(&mut self) -> u8 {
        if self.take("v2") {
            2
        } else if self.take("v4") {
            4
        } else if self.parts.contains(&"v8") {
            // left in place: reported as an unsupported modifier
            1
        } else {
            1
        }
    }
    fn space(&mut self) -> Option<Space> {
        self.pick(&[
            ("global", Space::Global),
            ("shared", Space::Shared),
            ("shared::cta", Space::Shared),
            // a cluster of one block: shared::cluster addresses are this CTA's shared memory
            ("shared::cluster", Space::Shared),
            ("local", Space::Local),
            ("param", Space::Param),
            ("param::entry", Space::Param),
            ("param::func", Space::Param),
            ("const", Space::Const),
        ])
    }
    fn ignore_hints(&mut self) {
        self.parts.retain(|p| {
            !(p.starts_with("L1::")
                || (p.starts_with("L2::") && !p.starts_with("L2::cache_hint"))
                || matches!(
                    *p,
                    "ca" | "cg"
                        | "cs"
                        | "lu"
                        | "cv"
                        | "wb"
                        | "wt"
                        | "volatile"
                        | "relaxed"
                        | "acquire"
                        | "release"
                        | "weak"
                        | "sys"
                        | "gpu"
                        | "cta"
                        | "acq_rel"
                        | "mmio"
                ))
        });
    }
    fn flags(&mut self) -> AluFlags {
        let mut f = AluFlags::default();
        for (n, r, int) in [
            ("rn", Rnd::Rn, false),
            ("rz", Rnd::Rz, false),
            ("rm", Rnd::Rm, false),
            ("rp", Rnd::Rp, false),
            ("rni", Rnd::Rn, true),
            ("rzi", Rnd::Rz, true),
            ("rmi", Rnd::Rm, true),
            ("rpi", Rnd::Rp, true),
        ] {
            if self.take(n) {
                f.rnd = r;
                f.int_rnd = int;
                f.has_rnd = true;
            }
        }
        f.approx = self.take("approx");
        f.ftz = self.take("ftz");
        f.sat = self.take("sat");
        f.satfinite = self.take("satfinite");
        f.relu = self.take("relu");
        self.take("full");
        f
    }
    fn cmp(&mut self) -> Option<Cmp> {
        self.pick(&[
            ("eq", Cmp::Eq),
            ("ne", Cmp::Ne),
            ("lt", Cmp::Lt),
            ("le", Cmp::Le),
            ("gt", Cmp::Gt),
            ("ge", Cmp::Ge),
            ("lo", Cmp::Lo),
            ("ls", Cmp::Ls),
            ("hi", Cmp::Hi),
            ("hs", Cmp::Hs),
            ("equ", Cmp::Equ),
            ("neu", Cmp::Neu),
            ("ltu", Cmp::Ltu),
            ("leu", Cmp::Leu),
            ("gtu", Cmp::Gtu),
            ("geu", Cmp::Geu),
            ("num", Cmp::Num),
            ("nan", Cmp::Nan),
        ])
    }
}
