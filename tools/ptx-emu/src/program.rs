//! AST → decoded program: registers resolved to slot indices, symbols to offsets, `.func` calls
//! inlined, labels to instruction indices. Decoding happens once per module.

use crate::float::Rnd;
use crate::parser::{self, parse_int, type_size, AFunc, AInstr, AModule, AOp, Stmt, VarDecl};
use crate::{EmuError, GlobalInfo, Module, ParamInfo};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Pred,
    B8,
    B16,
    B32,
    B64,
    B128,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    F16x2,
    BF16,
    BF16x2,
    F32,
    F64,
}

impl Ty {
    pub fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "pred" => Ty::Pred,
            "b8" => Ty::B8,
            "b16" => Ty::B16,
            "b32" => Ty::B32,
            "b64" => Ty::B64,
            "b128" => Ty::B128,
            "u8" => Ty::U8,
            "u16" => Ty::U16,
            "u32" => Ty::U32,
            "u64" => Ty::U64,
            "s8" => Ty::S8,
            "s16" => Ty::S16,
            "s32" => Ty::S32,
            "s64" => Ty::S64,
            "f16" => Ty::F16,
            "f16x2" => Ty::F16x2,
            "bf16" => Ty::BF16,
            "bf16x2" => Ty::BF16x2,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            _ => return None,
        })
    }
    pub fn bits(self) -> u32 {
        match self {
            Ty::Pred => 1,
            Ty::B8 | Ty::U8 | Ty::S8 => 8,
            Ty::B16 | Ty::U16 | Ty::S16 | Ty::F16 | Ty::BF16 => 16,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 | Ty::F16x2 | Ty::BF16x2 => 32,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 64,
            Ty::B128 => 128,
        }
    }
    pub fn bytes(self) -> usize {
        (self.bits() as usize).div_ceil(8)
    }
    pub fn signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Ty::F16 | Ty::F16x2 | Ty::BF16 | Ty::BF16x2 | Ty::F32 | Ty::F64
        )
    }
    pub fn fmt(self) -> Option<crate::float::Fmt> {
        use crate::float::Fmt;
        match self {
            Ty::F16 | Ty::F16x2 => Some(Fmt::F16),
            Ty::BF16 | Ty::BF16x2 => Some(Fmt::BF16),
            Ty::F32 => Some(Fmt::F32),
            Ty::F64 => Some(Fmt::F64),
            _ => None,
        }
    }
    pub fn packed(self) -> bool {
        matches!(self, Ty::F16x2 | Ty::BF16x2)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Space {
    Global,
    Shared,
    Local,
    /// The kernel parameter buffer.
    Param,
    Const,
    Generic,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Opnd {
    Reg(u32),
    NotReg(u32),
    Imm(u64),
    Vec(Box<[Opnd]>),
    /// `[base + off]`
    Addr(Base, i64),
    /// Address of a module-scope `.global`/`.const` variable plus offset.
    GSym(u32, i64),
    Clock,
    Sink,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Base {
    None,
    Reg(u32),
    GSym(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alu {
    Add,
    Sub,
    MulLo,
    MulHi,
    MulWide,
    Div,
    Rem,
    Min,
    Max,
    And,
    Or,
    Xor,
    Shl,
    Shr,
    Copysign,
    Not,
    Cnot,
    Neg,
    Abs,
    Popc,
    Clz,
    Brev,
    Bfind,
    Sqrt,
    Rsqrt,
    Rcp,
    Ex2,
    Lg2,
    Sin,
    Cos,
    Tanh,
    MadLo,
    MadHi,
    MadWide,
    Fma,
    Selp,
    Bfe,
    Bfi,
    Prmt,
    Lop3,
    ShfL,
    ShfR,
    Sad,
    Dp4a,
    Testp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BoolOp {
    And,
    Or,
    Xor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtomOp {
    Add,
    Min,
    Max,
    Exch,
    Cas,
    And,
    Or,
    Xor,
    Inc,
    Dec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShflMode {
    Up,
    Down,
    Bfly,
    Idx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteMode {
    All,
    Any,
    Uni,
    Ballot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AluFlags {
    pub rnd: Rnd,
    /// `.rni` style integer rounding (cvt) or `.approx` (math).
    pub approx: bool,
    pub ftz: bool,
    pub sat: bool,
    /// shf `.clamp`, prmt mode etc.
    pub clamp: bool,
    /// `.relu` on cvt/min/max/fma
    pub relu: bool,
    /// cvt float→int/float-int rounding given as `.rni` etc.
    pub int_rnd: bool,
    /// rounding mode explicitly given
    pub has_rnd: bool,
    /// `.satfinite`: ±inf → ±max finite (NaN stays NaN)
    pub satfinite: bool,
}

impl Default for AluFlags {
    fn default() -> Self {
        AluFlags {
            rnd: Rnd::Rn,
            approx: false,
            ftz: false,
            sat: false,
            clamp: false,
            relu: false,
            int_rnd: false,
            has_rnd: false,
            satfinite: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    Nop,
    Mov(Ty),
    Alu(Alu, Ty, AluFlags),
    Cvt {
        d: Ty,
        s: Ty,
        f: AluFlags,
    },
    Cvta {
        to: bool,
        space: Space,
    },
    Setp {
        cmp: Cmp,
        ty: Ty,
        bop: Option<BoolOp>,
        ftz: bool,
    },
    Ld {
        space: Space,
        ty: Ty,
        n: u8,
    },
    St {
        space: Space,
        ty: Ty,
        n: u8,
    },
    Atom {
        space: Space,
        op: AtomOp,
        ty: Ty,
        red: bool,
    },
    Bra(u32),
    Exit,
    BarSync,
    BarRed(BoolOp, bool),
    WarpSync,
    Membar,
    Shfl(ShflMode),
    Vote(VoteMode),
    Redux(Alu, Ty),
    Activemask,
    CpAsync {
        size: u32,
        src_size: bool,
    },
    CpCommit,
    CpWait(u32),
    Ldmatrix {
        num: u8,
        trans: bool,
    },
    Mma {
        k: u8,
        ab: Ty,
    },
    /// Copy `size` bytes of this thread's local memory (call argument/return passing).
    LocalCopy {
        dst: u32,
        src: u32,
        size: u32,
    },
    Trap,
    Unsupported(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Instr {
    pub op: Op,
    pub guard: Option<(u32, bool)>,
    pub d: Vec<Opnd>,
    pub s: Vec<Opnd>,
    pub line: u32,
}

/// Special registers, pre-filled per warp in the first register slots.
pub(crate) const SPECIALS: &[&str] = &[
    "%tid.x",
    "%tid.y",
    "%tid.z",
    "%ntid.x",
    "%ntid.y",
    "%ntid.z",
    "%ctaid.x",
    "%ctaid.y",
    "%ctaid.z",
    "%nctaid.x",
    "%nctaid.y",
    "%nctaid.z",
    "%laneid",
    "%warpid",
    "%nwarpid",
    "%smid",
    "%nsmid",
    "%gridid",
    "%lanemask_eq",
    "%lanemask_le",
    "%lanemask_lt",
    "%lanemask_ge",
    "%lanemask_gt",
    "%dynamic_smem_size",
    "%total_smem_size",
    "%warpsize",
];

pub(crate) struct Program {
    pub name: String,
    pub params: Vec<ParamInfo>,
    /// Offset of each param in the packed param buffer.
    pub param_offsets: Vec<usize>,
    pub param_size: usize,
    pub instrs: Vec<Instr>,
    pub texts: Vec<String>,
    pub nregs: usize,
    pub static_shared: usize,
    /// Alignment of the dynamic shared region (start offset = align_up(static_shared, this)).
    pub dyn_shared_align: usize,
    pub local_size: usize,
}

impl Program {
    pub fn dyn_shared_offset(&self) -> usize {
        self.static_shared.div_ceil(self.dyn_shared_align) * self.dyn_shared_align
    }
}

static MODULE_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn build_module(src: &str) -> Result<Module, EmuError> {
    let ast = parser::parse(src)?;
    let lines: Vec<&str> = src.lines().collect();
    let mut globals = Vec::new();
    let mut gindex = HashMap::new();
    for v in &ast.vars {
        if v.space == ".global" || v.space == ".const" {
            let esz = type_size(&v.ty).unwrap_or(1) * v.vec;
            let n = v
                .array
                .unwrap_or(1)
                .max(if v.array == Some(0) { v.init.len() } else { 0 });
            let size = esz * n.max(1);
            let mut init = vec![0u8; size];
            for (i, it) in v.init.iter().enumerate() {
                let val = match it {
                    AOp::Num(s) => imm_bits(s, &v.ty).ok_or_else(|| EmuError::Parse {
                        line: v.line,
                        token: s.clone(),
                        msg: "bad initializer literal".into(),
                    })?,
                    other => {
                        return Err(EmuError::Parse {
                            line: v.line,
                            token: format!("{other:?}"),
                            msg: "only numeric initializers are supported".into(),
                        })
                    }
                };
                let o = i * esz;
                if o + esz <= size {
                    init[o..o + esz].copy_from_slice(&val.to_le_bytes()[..esz.min(8)]);
                }
            }
            gindex.insert(v.name.clone(), globals.len() as u32);
            globals.push(GlobalInfo {
                name: v.name.clone(),
                size,
                align: v.align.max(esz.min(8)).max(1),
                is_const: v.space == ".const",
                init,
            });
        }
    }
    let mut kernels = Vec::new();
    for f in ast.funcs.iter().filter(|f| f.is_entry) {
        let prog = Decoder::decode_kernel(&ast, f, &gindex, &lines)?;
        kernels.push(Arc::new(prog));
    }
    Ok(Module {
        id: MODULE_ID.fetch_add(1, Ordering::Relaxed),
        globals,
        kernels,
    })
}

#[derive(Clone, Debug)]
enum Sym {
    Reg(u32),
    Local(u32, u32),
    Shared(u32),
    KParam(u32),
    Global(u32),
}

struct Decoder<'a> {
    ast: &'a AModule,
    lines: &'a [&'a str],
    gindex: &'a HashMap<String, u32>,
    shared: HashMap<String, u32>,
    instrs: Vec<Instr>,
    texts: Vec<String>,
    nregs: u32,
    local_size: u32,
    scopes: Vec<HashMap<String, Sym>>,
    call_stack: Vec<String>,
}

fn align_up(x: u32, a: u32) -> u32 {
    x.div_ceil(a.max(1)) * a.max(1)
}

fn decl_size(d: &VarDecl) -> u32 {
    (type_size(&d.ty).unwrap_or(1) * d.vec * d.array.unwrap_or(1).max(1)) as u32
}
fn decl_align(d: &VarDecl) -> u32 {
    if d.align > 0 {
        d.align as u32
    } else {
        (type_size(&d.ty).unwrap_or(1) * d.vec) as u32
    }
}

impl<'a> Decoder<'a> {
    fn decode_kernel(
        ast: &'a AModule,
        f: &'a AFunc,
        gindex: &'a HashMap<String, u32>,
        lines: &'a [&'a str],
    ) -> Result<Program, EmuError> {
        // Shared layout: module-scope .shared variables referenced by this kernel (or its callees).
        let mut names = HashSet::new();
        let mut seen = HashSet::new();
        collect_names(ast, f, &mut names, &mut seen);
        let mut shared = HashMap::new();
        let mut off = 0u32;
        let mut dyn_align = 16u32;
        let mut externs = Vec::new();
        for v in ast
            .vars
            .iter()
            .filter(|v| v.space == ".shared" && names.contains(&v.name))
        {
            if v.is_extern || v.array == Some(0) {
                dyn_align = dyn_align.max(decl_align(v));
                externs.push(v.name.clone());
            } else {
                off = align_up(off, decl_align(v));
                shared.insert(v.name.clone(), off);
                off += decl_size(v);
            }
        }
        // function-scope .shared declarations (any function reachable)
        for fname in seen.iter() {
            if let Some(func) = ast.funcs.iter().find(|g| &g.name == fname) {
                for st in func.body.iter().flatten() {
                    if let Stmt::Decl(v) = st {
                        if v.space == ".shared" {
                            off = align_up(off, decl_align(v));
                            shared.insert(v.name.clone(), off);
                            off += decl_size(v);
                        }
                    }
                }
            }
        }
        let dyn_off = align_up(off, dyn_align);
        for e in externs {
            shared.insert(e, dyn_off);
        }
        let mut params = Vec::new();
        let mut param_offsets = Vec::new();
        let mut poff = 0usize;
        let mut top = HashMap::new();
        for p in &f.params {
            let size = decl_size(p) as usize;
            let align = decl_align(p) as usize;
            poff = poff.div_ceil(align) * align;
            top.insert(p.name.clone(), Sym::KParam(poff as u32));
            params.push(ParamInfo {
                name: p.name.clone(),
                size,
                align,
            });
            param_offsets.push(poff);
            poff += size;
        }
        let mut d = Decoder {
            ast,
            lines,
            gindex,
            shared,
            instrs: Vec::new(),
            texts: Vec::new(),
            nregs: SPECIALS.len() as u32,
            local_size: 0,
            scopes: vec![top],
            call_stack: vec![f.name.clone()],
        };
        let body = f.body.as_ref().ok_or_else(|| EmuError::Parse {
            line: f.line,
            token: f.name.clone(),
            msg: "kernel without a body".into(),
        })?;
        d.decode_body(body, None)?;
        d.push(
            Op::Exit,
            None,
            vec![],
            vec![],
            f.line,
            "(end of kernel)".into(),
        );
        Ok(Program {
            name: f.name.clone(),
            params,
            param_offsets,
            param_size: poff,
            instrs: d.instrs,
            texts: d.texts,
            nregs: d.nregs as usize,
            static_shared: off as usize,
            dyn_shared_align: dyn_align as usize,
            local_size: align_up(d.local_size, 16) as usize,
        })
    }

    fn push(
        &mut self,
        op: Op,
        guard: Option<(u32, bool)>,
        d: Vec<Opnd>,
        s: Vec<Opnd>,
        line: usize,
        text: String,
    ) {
        self.instrs.push(Instr {
            op,
            guard,
            d,
            s,
            line: line as u32,
        });
        self.texts.push(text);
    }

    fn lookup(&self, name: &str) -> Option<Sym> {
        for s in self.scopes.iter().rev() {
            if let Some(v) = s.get(name) {
                return Some(v.clone());
            }
        }
        if let Some(&o) = self.shared.get(name) {
            return Some(Sym::Shared(o));
        }
        if let Some(&g) = self.gindex.get(name) {
            return Some(Sym::Global(g));
        }
        None
    }

    fn declare(&mut self, v: &VarDecl) -> Result<(), EmuError> {
        let scope = self.scopes.last_mut().unwrap();
        match v.space.as_str() {
            ".reg" => {
                if let Some(n) = v.count {
                    for i in 0..n {
                        scope.insert(format!("{}{}", v.name, i), Sym::Reg(self.nregs));
                        self.nregs += 1;
                    }
                } else {
                    let n = v.vec.max(1) as u32;
                    if v.vec > 1 || v.array.is_some() {
                        return Err(EmuError::Parse {
                            line: v.line,
                            token: v.name.clone(),
                            msg: "vector/array registers are not supported".into(),
                        });
                    }
                    scope.insert(v.name.clone(), Sym::Reg(self.nregs));
                    self.nregs += n;
                }
            }
            ".local" | ".param" => {
                let a = decl_align(v).max(1);
                self.local_size = align_up(self.local_size, a);
                let size = decl_size(v);
                scope.insert(v.name.clone(), Sym::Local(self.local_size, size));
                self.local_size += size;
            }
            ".shared" => {} // laid out up front
            _ => {
                return Err(EmuError::Parse {
                    line: v.line,
                    token: v.space.clone(),
                    msg: "declaration not supported inside a function".into(),
                })
            }
        }
        Ok(())
    }

    fn text(&self, line: usize) -> String {
        let l = self
            .lines
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or_default();
        l.split("//").next().unwrap_or_default().trim().to_string()
    }

    /// Decode a function body. `ret_target`: Some(fixup list) when inlined (ret → bra end).
    fn decode_body(
        &mut self,
        body: &[Stmt],
        ret_fix: Option<&mut Vec<usize>>,
    ) -> Result<(), EmuError> {
        let mut labels: HashMap<String, u32> = HashMap::new();
        let mut fix: Vec<(usize, String, usize)> = Vec::new();
        let mut ret_fix = ret_fix;
        let depth0 = self.scopes.len();
        self.scopes.push(HashMap::new());
        for st in body {
            match st {
                Stmt::Open => self.scopes.push(HashMap::new()),
                Stmt::Close => {
                    self.scopes.pop();
                }
                Stmt::Decl(v) => self.declare(v)?,
                Stmt::Label(l) => {
                    labels.insert(l.clone(), self.instrs.len() as u32);
                }
                Stmt::Instr(ins) => {
                    let mnem = ins.opcode.split('.').next().unwrap_or("");
                    if mnem == "call" {
                        self.decode_call(ins)?;
                        continue;
                    }
                    if mnem == "ret" && ret_fix.is_some() {
                        let guard = self.guard(ins)?;
                        let at = self.instrs.len();
                        if let Some(f) = ret_fix.as_mut() {
                            f.push(at);
                        }
                        self.push(
                            Op::Bra(u32::MAX),
                            guard,
                            vec![],
                            vec![],
                            ins.line,
                            self.text(ins.line),
                        );
                        continue;
                    }
                    if mnem == "bra" {
                        let guard = self.guard(ins)?;
                        let target = match ins.ops.first() {
                            Some(AOp::Name(l)) => l.clone(),
                            _ => {
                                return Err(EmuError::Parse {
                                    line: ins.line,
                                    token: ins.opcode.clone(),
                                    msg: "bra needs a label".into(),
                                })
                            }
                        };
                        fix.push((self.instrs.len(), target, ins.line));
                        self.push(
                            Op::Bra(u32::MAX),
                            guard,
                            vec![],
                            vec![],
                            ins.line,
                            self.text(ins.line),
                        );
                        continue;
                    }
                    let guard = self.guard(ins)?;
                    let text = self.text(ins.line);
                    let (op, d, s) = match self.decode_instr(ins) {
                        Ok(x) => x,
                        Err(msg) => (Op::Unsupported(msg), vec![], vec![]),
                    };
                    self.push(op, guard, d, s, ins.line, text);
                }
            }
        }
        for (at, l, line) in fix {
            let t = *labels.get(&l).ok_or_else(|| EmuError::Parse {
                line,
                token: l.clone(),
                msg: "branch to an undefined label".into(),
            })?;
            self.instrs[at].op = Op::Bra(t);
        }
        self.scopes.truncate(depth0);
        Ok(())
    }

    fn guard(&self, ins: &AInstr) -> Result<Option<(u32, bool)>, EmuError> {
        match &ins.guard {
            None => Ok(None),
            Some((p, neg)) => match self.lookup(p) {
                Some(Sym::Reg(r)) => Ok(Some((r, *neg))),
                _ => Err(EmuError::Parse {
                    line: ins.line,
                    token: p.clone(),
                    msg: "unknown guard predicate".into(),
                }),
            },
        }
    }

    fn decode_call(&mut self, ins: &AInstr) -> Result<(), EmuError> {
        let err = |m: &str| EmuError::Parse {
            line: ins.line,
            token: ins.opcode.clone(),
            msg: m.to_string(),
        };
        let mut rets = Vec::new();
        let mut args = Vec::new();
        let mut callee = None;
        for o in &ins.ops {
            match o {
                AOp::List(v) if callee.is_none() => rets = v.clone(),
                AOp::List(v) => args = v.clone(),
                AOp::Name(n) if callee.is_none() => callee = Some(n.clone()),
                _ => return Err(err("unsupported call operand")),
            }
        }
        let callee = callee.ok_or_else(|| err("call without a callee"))?;
        let text = self.text(ins.line);
        let unsupported = |d: &mut Self, msg: String| {
            d.push(
                Op::Unsupported(msg),
                None,
                vec![],
                vec![],
                ins.line,
                text.clone(),
            );
        };
        if ins.guard.is_some() {
            unsupported(self, "predicated call is not supported".into());
            return Ok(());
        }
        let f = match self
            .ast
            .funcs
            .iter()
            .find(|f| f.name == callee && f.body.is_some())
        {
            Some(f) => f,
            None => {
                unsupported(
                    self,
                    format!(
                        "call to `{callee}` which has no body in this module (extern function)"
                    ),
                );
                return Ok(());
            }
        };
        if self.call_stack.contains(&callee) {
            unsupported(
                self,
                format!("recursive call to `{callee}` is not supported"),
            );
            return Ok(());
        }
        // callee frame: params and return values in local memory
        let mut frame = HashMap::new();
        let mut callee_params = Vec::new();
        let mut callee_rets = Vec::new();
        for (list, out) in [(&f.params, &mut callee_params), (&f.rets, &mut callee_rets)] {
            for p in list.iter() {
                if p.space != ".param" {
                    return Err(err("only .param function parameters are supported"));
                }
                let a = decl_align(p).max(1);
                self.local_size = align_up(self.local_size, a);
                let size = decl_size(p);
                frame.insert(p.name.clone(), Sym::Local(self.local_size, size));
                out.push((self.local_size, size));
                self.local_size += size;
            }
        }
        if args.len() != callee_params.len() || rets.len() != callee_rets.len() {
            return Err(err("call argument count does not match the callee"));
        }
        for (a, &(off, size)) in args.iter().zip(&callee_params) {
            match a {
                AOp::Name(n) => match self.lookup(n) {
                    Some(Sym::Local(src, ssize)) => self.push(
                        Op::LocalCopy {
                            dst: off,
                            src,
                            size: size.min(ssize),
                        },
                        None,
                        vec![],
                        vec![],
                        ins.line,
                        text.clone(),
                    ),
                    _ => return Err(err("call arguments must be .param variables")),
                },
                _ => return Err(err("call arguments must be .param variables")),
            }
        }
        // inline the callee
        let saved_scopes = std::mem::replace(&mut self.scopes, vec![frame]);
        self.call_stack.push(callee.clone());
        let mut ret_fix = Vec::new();
        let body = f.body.as_ref().unwrap();
        self.decode_body(body, Some(&mut ret_fix))?;
        self.call_stack.pop();
        self.scopes = saved_scopes;
        let end = self.instrs.len() as u32;
        for at in ret_fix {
            self.instrs[at].op = Op::Bra(end);
        }
        for (r, &(off, size)) in rets.iter().zip(&callee_rets) {
            match r {
                AOp::Name(n) => match self.lookup(n) {
                    Some(Sym::Local(dst, dsize)) => self.push(
                        Op::LocalCopy {
                            dst,
                            src: off,
                            size: size.min(dsize),
                        },
                        None,
                        vec![],
                        vec![],
                        ins.line,
                        text.clone(),
                    ),
                    _ => return Err(err("call return values must be .param variables")),
                },
                _ => return Err(err("call return values must be .param variables")),
            }
        }
        // marks the reconvergence point after the inlined body
        self.push(Op::Nop, None, vec![], vec![], ins.line, text);
        Ok(())
    }

    fn reg(&self, o: &AOp) -> Result<Opnd, String> {
        match o {
            AOp::Name(n) => {
                if n == "%clock" || n == "%clock64" || n == "%globaltimer" || n == "%globaltimer_lo"
                {
                    return Ok(Opnd::Clock);
                }
                if let Some(i) = SPECIALS.iter().position(|s| s == n) {
                    return Ok(Opnd::Reg(i as u32));
                }
                match self.lookup(n) {
                    Some(Sym::Reg(r)) => Ok(Opnd::Reg(r)),
                    Some(Sym::Shared(o)) => Ok(Opnd::Imm(o as u64)),
                    Some(Sym::Local(o, _)) => Ok(Opnd::Imm(o as u64)),
                    Some(Sym::KParam(o)) => Ok(Opnd::Imm(o as u64)),
                    Some(Sym::Global(g)) => Ok(Opnd::GSym(g, 0)),
                    None => Err(format!("unknown name `{n}`")),
                }
            }
            AOp::Not(n) => match self.lookup(n) {
                Some(Sym::Reg(r)) => Ok(Opnd::NotReg(r)),
                _ => Err(format!("unknown predicate `{n}`")),
            },
            AOp::Num(s) => Ok(Opnd::Imm(
                parse_int_signed(s).ok_or_else(|| format!("bad literal `{s}`"))?,
            )),
            AOp::Vec(v) => Ok(Opnd::Vec(
                v.iter()
                    .map(|x| self.reg(x))
                    .collect::<Result<Vec<_>, _>>()?
                    .into(),
            )),
            AOp::Sink => Ok(Opnd::Sink),
            AOp::List(v) if v.len() == 2 => {
                // sym+off
                let base = self.reg(&v[0])?;
                let off = match &v[1] {
                    AOp::Num(s) => parse_int_signed(s).ok_or("bad offset")? as i64,
                    _ => return Err("bad sym+off".into()),
                };
                match base {
                    Opnd::Imm(b) => Ok(Opnd::Imm(b.wrapping_add(off as u64))),
                    Opnd::GSym(g, o) => Ok(Opnd::GSym(g, o + off)),
                    _ => Err("bad sym+off".into()),
                }
            }
            other => Err(format!("unexpected operand {other:?}")),
        }
    }

    /// Operand typed by the instruction type (float literals).
    fn src(&self, o: &AOp, ty: Ty) -> Result<Opnd, String> {
        match o {
            AOp::Num(s) => Ok(Opnd::Imm(
                typed_imm(s, ty).ok_or_else(|| format!("bad literal `{s}`"))?,
            )),
            _ => self.reg(o),
        }
    }

    fn addr(&self, o: &AOp, space: &mut Space) -> Result<Opnd, String> {
        match o {
            AOp::Addr(None, off) => Ok(Opnd::Addr(Base::None, *off)),
            AOp::Addr(Some(n), off) => match self.lookup(n) {
                Some(Sym::Reg(r)) => Ok(Opnd::Addr(Base::Reg(r), *off)),
                Some(Sym::Shared(o)) => {
                    if !matches!(*space, Space::Shared) {
                        return Err(format!(
                            "shared variable `{n}` used with a non-shared state space"
                        ));
                    }
                    Ok(Opnd::Addr(Base::None, o as i64 + off))
                }
                Some(Sym::Local(o, _)) => {
                    // .param variables inside functions and .local arrays live in local memory
                    if matches!(*space, Space::Param | Space::Local) {
                        *space = Space::Local;
                        Ok(Opnd::Addr(Base::None, o as i64 + off))
                    } else {
                        Err(format!(
                            "local/param variable `{n}` used with another state space"
                        ))
                    }
                }
                Some(Sym::KParam(o)) => {
                    if *space != Space::Param {
                        return Err(format!(
                            "kernel parameter `{n}` accessed outside .param space"
                        ));
                    }
                    Ok(Opnd::Addr(Base::None, o as i64 + off))
                }
                Some(Sym::Global(g)) => {
                    if matches!(*space, Space::Global | Space::Const | Space::Generic) {
                        Ok(Opnd::Addr(Base::GSym(g), *off))
                    } else {
                        Err(format!(
                            "global variable `{n}` used with the wrong state space"
                        ))
                    }
                }
                None => Err(format!("unknown name `{n}` in address")),
            },
            _ => Err("expected an address operand `[...]`".into()),
        }
    }

    fn decode_instr(&self, ins: &AInstr) -> Result<(Op, Vec<Opnd>, Vec<Opnd>), String> {
        let parts: Vec<&str> = ins.opcode.split('.').collect();
        let mnem = parts[0];
        let mut m = Mods::new(&parts[1..]);
        let ops = &ins.ops;
        let need = |n: usize| -> Result<(), String> {
            if ops.len() != n {
                Err(format!(
                    "`{}` expects {n} operands, got {}",
                    ins.opcode,
                    ops.len()
                ))
            } else {
                Ok(())
            }
        };
        let r = match mnem {
            "mov" => {
                need(2)?;
                let ty = m.ty1()?;
                (
                    Op::Mov(ty),
                    vec![self.reg(&ops[0])?],
                    vec![self.src(&ops[1], ty)?],
                )
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
                (
                    Op::Alu(alu, ty, f),
                    vec![self.reg(&ops[0])?],
                    vec![self.src(&ops[1], ty)?, self.src(&ops[2], sty)?],
                )
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
                (
                    Op::Alu(alu, ty, f),
                    vec![self.reg(&ops[0])?],
                    vec![self.src(&ops[1], ty)?],
                )
            }
            "testp" => {
                need(2)?;
                let mode = if m.take("finite") {
                    0
                } else if m.take("infinite") {
                    1
                } else if m.take("number") {
                    2
                } else if m.take("notanumber") {
                    3
                } else if m.take("normal") {
                    4
                } else if m.take("subnormal") {
                    5
                } else {
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
                (
                    Op::Alu(alu, ty, f),
                    vec![self.reg(&ops[0])?],
                    vec![
                        self.src(&ops[1], ty)?,
                        self.src(&ops[2], ty)?,
                        self.src(&ops[3], cty)?,
                    ],
                )
            }
            "sad" => {
                need(4)?;
                let ty = m.ty1()?;
                (
                    Op::Alu(Alu::Sad, ty, AluFlags::default()),
                    vec![self.reg(&ops[0])?],
                    vec![
                        self.src(&ops[1], ty)?,
                        self.src(&ops[2], ty)?,
                        self.src(&ops[3], ty)?,
                    ],
                )
            }
            "dp4a" => {
                need(4)?;
                let t1 = m.ty1()?;
                let t2 = m.ty1()?;
                let signs = (t1.signed() as u64) | ((t2.signed() as u64) << 1);
                (
                    Op::Alu(Alu::Dp4a, Ty::B32, AluFlags::default()),
                    vec![self.reg(&ops[0])?],
                    vec![
                        self.src(&ops[1], Ty::B32)?,
                        self.src(&ops[2], Ty::B32)?,
                        self.src(&ops[3], Ty::B32)?,
                        Opnd::Imm(signs),
                    ],
                )
            }
            "selp" => {
                need(4)?;
                let ty = m.ty1()?;
                (
                    Op::Alu(Alu::Selp, ty, AluFlags::default()),
                    vec![self.reg(&ops[0])?],
                    vec![
                        self.src(&ops[1], ty)?,
                        self.src(&ops[2], ty)?,
                        self.reg(&ops[3])?,
                    ],
                )
            }
            "bfe" => {
                need(4)?;
                let ty = m.ty1()?;
                (
                    Op::Alu(Alu::Bfe, ty, AluFlags::default()),
                    vec![self.reg(&ops[0])?],
                    vec![
                        self.src(&ops[1], ty)?,
                        self.src(&ops[2], Ty::U32)?,
                        self.src(&ops[3], Ty::U32)?,
                    ],
                )
            }
            "bfi" => {
                need(5)?;
                let ty = m.ty1()?;
                (
                    Op::Alu(Alu::Bfi, ty, AluFlags::default()),
                    vec![self.reg(&ops[0])?],
                    vec![
                        self.src(&ops[1], ty)?,
                        self.src(&ops[2], ty)?,
                        self.src(&ops[3], Ty::U32)?,
                        self.src(&ops[4], Ty::U32)?,
                    ],
                )
            }
            "prmt" => {
                need(4)?;
                let ty = m.ty1()?;
                for mode in ["f4e", "b4e", "rc8", "ecl", "ecr", "rc16"] {
                    if m.take(mode) {
                        return Err(format!("prmt mode .{mode} is not supported"));
                    }
                }
                (
                    Op::Alu(Alu::Prmt, ty, AluFlags::default()),
                    vec![self.reg(&ops[0])?],
                    vec![
                        self.src(&ops[1], ty)?,
                        self.src(&ops[2], ty)?,
                        self.src(&ops[3], ty)?,
                    ],
                )
            }
            "lop3" => {
                need(5)?;
                let ty = m.ty1()?;
                (
                    Op::Alu(Alu::Lop3, ty, AluFlags::default()),
                    vec![self.reg(&ops[0])?],
                    vec![
                        self.src(&ops[1], ty)?,
                        self.src(&ops[2], ty)?,
                        self.src(&ops[3], ty)?,
                        self.src(&ops[4], ty)?,
                    ],
                )
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
                (
                    Op::Alu(alu, ty, f),
                    vec![self.reg(&ops[0])?],
                    vec![
                        self.src(&ops[1], ty)?,
                        self.src(&ops[2], ty)?,
                        self.src(&ops[3], Ty::U32)?,
                    ],
                )
            }
            "cvt" => {
                let f = m.flags();
                let d = m.ty1()?;
                let s = m.ty1()?;
                if d.packed() {
                    need(3)?;
                    (
                        Op::Cvt { d, s, f },
                        vec![self.reg(&ops[0])?],
                        vec![self.src(&ops[1], s)?, self.src(&ops[2], s)?],
                    )
                } else {
                    need(2)?;
                    (
                        Op::Cvt { d, s, f },
                        vec![self.reg(&ops[0])?],
                        vec![self.src(&ops[1], s)?],
                    )
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
                let bop = if m.take("and") {
                    Some(BoolOp::And)
                } else if m.take("or") {
                    Some(BoolOp::Or)
                } else if m.take("xor") {
                    Some(BoolOp::Xor)
                } else {
                    None
                };
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
                let op = if m.take("add") {
                    AtomOp::Add
                } else if m.take("min") {
                    AtomOp::Min
                } else if m.take("max") {
                    AtomOp::Max
                } else if m.take("exch") {
                    AtomOp::Exch
                } else if m.take("cas") {
                    AtomOp::Cas
                } else if m.take("and") {
                    AtomOp::And
                } else if m.take("or") {
                    AtomOp::Or
                } else if m.take("xor") {
                    AtomOp::Xor
                } else if m.take("inc") {
                    AtomOp::Inc
                } else if m.take("dec") {
                    AtomOp::Dec
                } else {
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
                let mode = if m.take("up") {
                    ShflMode::Up
                } else if m.take("down") {
                    ShflMode::Down
                } else if m.take("bfly") {
                    ShflMode::Bfly
                } else if m.take("idx") {
                    ShflMode::Idx
                } else {
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
                let mode = if m.take("all") {
                    VoteMode::All
                } else if m.take("any") {
                    VoteMode::Any
                } else if m.take("uni") {
                    VoteMode::Uni
                } else if m.take("ballot") {
                    VoteMode::Ballot
                } else {
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
                let alu = if m.take("add") {
                    Alu::Add
                } else if m.take("min") {
                    Alu::Min
                } else if m.take("max") {
                    Alu::Max
                } else if m.take("and") {
                    Alu::And
                } else if m.take("or") {
                    Alu::Or
                } else if m.take("xor") {
                    Alu::Xor
                } else {
                    return Err("unknown redux op".into());
                };
                let ty = m.ty1()?;
                need(3)?;
                (
                    Op::Redux(alu, ty),
                    vec![self.reg(&ops[0])?],
                    vec![self.src(&ops[1], ty)?, self.src(&ops[2], Ty::B32)?],
                )
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
                let num = if m.take("x1") {
                    1
                } else if m.take("x2") {
                    2
                } else if m.take("x4") {
                    4
                } else {
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
}

/// Reject type/modifier combinations the ALU would not execute faithfully.
fn validate_alu(alu: Alu, ty: Ty, f: &AluFlags) -> Result<(), String> {
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

fn wide(t: Ty) -> Ty {
    match t {
        Ty::U16 => Ty::U32,
        Ty::S16 => Ty::S32,
        Ty::U32 => Ty::U64,
        Ty::S32 => Ty::S64,
        t => t,
    }
}

struct Mods<'a> {
    parts: Vec<&'a str>,
}

impl<'a> Mods<'a> {
    fn new(p: &[&'a str]) -> Self {
        Mods { parts: p.to_vec() }
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
        for (n, s) in [
            ("global", Space::Global),
            ("shared", Space::Shared),
            ("shared::cta", Space::Shared),
            ("local", Space::Local),
            ("param", Space::Param),
            ("param::entry", Space::Param),
            ("param::func", Space::Param),
            ("const", Space::Const),
        ] {
            if self.take(n) {
                return Some(s);
            }
        }
        None
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
        for (n, c) in [
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
        ] {
            if self.take(n) {
                return Some(c);
            }
        }
        None
    }
}

fn parse_int_signed(s: &str) -> Option<u64> {
    if let Some(r) = s.strip_prefix('-') {
        parse_int(r).map(|v| v.wrapping_neg())
    } else if s.starts_with("0f") || s.starts_with("0F") {
        u32::from_str_radix(&s[2..], 16).ok().map(|v| v as u64)
    } else if s.starts_with("0d") || s.starts_with("0D") {
        u64::from_str_radix(&s[2..], 16).ok()
    } else {
        parse_int(s)
    }
}

/// Literal → register bits for an instruction of type `ty` (decimal floats converted).
fn typed_imm(s: &str, ty: Ty) -> Option<u64> {
    let neg = s.starts_with('-');
    let body = s.trim_start_matches('-');
    let is_hexfloat = body.starts_with("0f")
        || body.starts_with("0F")
        || body.starts_with("0d")
        || body.starts_with("0D");
    let is_dec_float = !is_hexfloat
        && !body.starts_with("0x")
        && (body.contains('.') || body.contains('e') || body.contains('E'));
    if ty.is_float() {
        if is_hexfloat {
            let v = if body.starts_with("0f") || body.starts_with("0F") {
                let b = u32::from_str_radix(&body[2..], 16).ok()?;
                if ty == Ty::F64 {
                    (f32::from_bits(b) as f64).to_bits()
                } else {
                    b as u64
                }
            } else {
                let b = u64::from_str_radix(&body[2..], 16).ok()?;
                if ty == Ty::F64 {
                    b
                } else {
                    (f64::from_bits(b) as f32).to_bits() as u64
                }
            };
            let sign = if ty == Ty::F64 {
                1u64 << 63
            } else {
                1u64 << 31
            };
            return Some(if neg { v ^ sign } else { v });
        }
        if is_dec_float || ty == Ty::F32 || ty == Ty::F64 {
            let x: f64 = s
                .parse()
                .ok()
                .or_else(|| parse_int_signed(s).map(|v| v as i64 as f64))?;
            return Some(match ty {
                Ty::F64 => x.to_bits(),
                Ty::F32 => (x as f32).to_bits() as u64,
                Ty::F16 => half::f16::from_f64(x).to_bits() as u64,
                Ty::BF16 => half::bf16::from_f64(x).to_bits() as u64,
                _ => parse_int_signed(s)?,
            });
        }
    }
    parse_int_signed(s)
}

fn imm_bits(s: &str, ty: &str) -> Option<u64> {
    let t = Ty::parse(ty.trim_start_matches('.'))?;
    typed_imm(s, t)
}

fn collect_names(
    ast: &AModule,
    f: &AFunc,
    names: &mut HashSet<String>,
    seen: &mut HashSet<String>,
) {
    if !seen.insert(f.name.clone()) {
        return;
    }
    fn walk(o: &AOp, names: &mut HashSet<String>) {
        match o {
            AOp::Name(n) | AOp::Not(n) => {
                names.insert(n.clone());
            }
            AOp::Addr(Some(n), _) => {
                names.insert(n.clone());
            }
            AOp::Vec(v) | AOp::List(v) => v.iter().for_each(|x| walk(x, names)),
            _ => {}
        }
    }
    let mut callees = Vec::new();
    for st in f.body.iter().flatten() {
        if let Stmt::Instr(i) = st {
            for o in &i.ops {
                walk(o, names);
            }
            if i.opcode.starts_with("call") {
                for o in &i.ops {
                    if let AOp::Name(n) = o {
                        callees.push(n.clone());
                    }
                }
            }
        }
    }
    for c in callees {
        if let Some(g) = ast.funcs.iter().find(|g| g.name == c) {
            collect_names(ast, g, names, seen);
        }
    }
}
