//! AST → decoded program: registers resolved to slot indices, symbols to offsets, `.func` calls
//! inlined, labels to instruction indices. Decoding happens once per module.

use crate::float::Rnd;
use crate::parser::{self, parse_int, type_size, AFunc, AInstr, AModule, AOp, Stmt, VarDecl};
use crate::{EmuError, GlobalInfo, Module, ParamInfo};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod async_copy;
mod decode;
mod hopper;
mod instr;
mod regalloc;

pub(crate) use async_copy::{DsmemOp, HopOp};
pub(crate) use hopper::{F8Cvt, MmaTy, WgmmaSpec};

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
    /// `wgmma.mma_async` (exec/wgmma.rs).
    Wgmma(Box<WgmmaSpec>),
    WgFence,
    WgCommit,
    WgWait(u32),
    /// `stmatrix.sync.aligned.m8n8.xN[.trans]`: sources [address, space, register vector].
    Stmatrix {
        num: u8,
        trans: bool,
    },
    /// `cvt` to or from packed FP8 (exec/fp8.rs).
    CvtF8(F8Cvt),
    /// The sm_90 asynchronous-copy / mbarrier kit (`program/hopper.rs`, `exec/mbarrier.rs`).
    Hopper(HopOp),
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
    // sm_90 clusters (every launch here is of 1×1×1 clusters): exec/mbarrier.rs fills them
    "%cluster_ctaid.x",
    "%cluster_ctaid.y",
    "%cluster_ctaid.z",
    "%cluster_nctaid.x",
    "%cluster_nctaid.y",
    "%cluster_nctaid.z",
    "%cluster_ctarank",
    "%cluster_nctarank",
    "%clusterid.x",
    "%clusterid.y",
    "%clusterid.z",
    "%nclusterid.x",
    "%nclusterid.y",
    "%nclusterid.z",
    "%is_explicit_cluster",
];

pub(crate) struct Program {
    pub name: String,
    pub params: Vec<ParamInfo>,
    /// Offset of each param in the packed param buffer.
    pub param_offsets: Vec<usize>,
    pub param_size: usize,
    pub instrs: Vec<Instr>,
    /// The decoded fast form of each instruction (`exec/fast/`; `FOp::Slow` where none).
    pub fast: Vec<crate::exec::FOp>,
    /// Index of the first `Op::Unsupported` instruction (checked once here, not per launch).
    pub first_unsupported: Option<usize>,
    /// Whether the kernel has atomics outside shared memory (its blocks then run in order).
    pub global_atomics: bool,
    pub texts: Vec<String>,
    pub nregs: usize,
    pub static_shared: usize,
    /// Alignment of the dynamic shared region (start offset = align_up(static_shared, this)).
    pub dyn_shared_align: usize,
    pub local_size: usize,
    /// Per instruction: whether it names a register that some `wgmma.mma_async` uses as
    /// accumulator or A fragment (empty when the kernel has no wgmma; exec/wgmma.rs).
    pub wg_touch: Vec<bool>,
    /// `.reqnctapercluster` (the cluster shape every launch uses) and `.explicitcluster`.
    pub req_cluster: Option<[u32; 3]>,
    pub explicit_cluster: bool,
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
        target: ast
            .targets
            .iter()
            .find(|t| t.starts_with("sm_") || t.starts_with("compute_"))
            .cloned()
            .unwrap_or_default(),
        ptx_isa: ast.version.clone(),
    })
}

#[derive(Clone, Debug)]
enum Sym {
    Reg(u32),
    /// `name<N>`: registers `base .. base + N`, looked up as `name0 … name{N-1}`.
    RegRange(u32, u32),
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

pub(super) fn parse_int_signed(s: &str) -> Option<u64> {
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
pub(super) fn typed_imm(s: &str, ty: Ty) -> Option<u64> {
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
                Ty::F16 => crate::float::f16_rn(x) as u64,
                Ty::BF16 => crate::float::bf16_rn(x) as u64,
                _ => parse_int_signed(s)?,
            });
        }
    }
    parse_int_signed(s)
}

pub(super) fn imm_bits(s: &str, ty: &str) -> Option<u64> {
    let t = Ty::parse(ty.trim_start_matches('.'))?;
    typed_imm(s, t)
}

pub(super) fn collect_names(
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
