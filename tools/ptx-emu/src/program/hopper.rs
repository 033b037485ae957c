//! Decoding of the sm_90 instructions executed by `exec/wgmma.rs` and `exec/fp8.rs`:
//! `wgmma.mma_async` / `fence` / `commit_group` / `wait_group`, `stmatrix`, and the FP8 forms
//! of `cvt` (`.e4m3x2` / `.e5m2x2`).

use super::*;

/// Element type of a wgmma A or B operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MmaTy {
    BF16,
    F16,
    E4M3,
    E5M2,
}

impl MmaTy {
    fn parse(s: &str) -> Option<MmaTy> {
        Some(match s {
            "bf16" => MmaTy::BF16,
            "f16" => MmaTy::F16,
            "e4m3" => MmaTy::E4M3,
            "e5m2" => MmaTy::E5M2,
            _ => return None,
        })
    }
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            MmaTy::BF16 | MmaTy::F16 => 2,
            MmaTy::E4M3 | MmaTy::E5M2 => 1,
        }
    }
}

/// The static part of one `wgmma.mma_async` (operands: `d[0]` the accumulator vector; `s[0]` A:
/// a register vector or a 64-bit descriptor, `s[1]` the B descriptor, `s[2]` scale-d).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WgmmaSpec {
    /// N of m64nNk{K}.
    pub n: u32,
    /// 16 (f16/bf16) or 32 (fp8).
    pub k: u32,
    pub ta: MmaTy,
    pub tb: MmaTy,
    /// `.f16` accumulator (f16x2 registers) instead of `.f32`.
    pub acc_f16: bool,
    /// A comes from a shared-memory descriptor (else from four registers per thread).
    pub a_desc: bool,
    /// imm-scale-a / imm-scale-b = -1.
    pub neg_a: bool,
    pub neg_b: bool,
    /// imm-trans-a / imm-trans-b = 1 (M/N-major operand in shared memory).
    pub trans_a: bool,
    pub trans_b: bool,
}

/// An FP8 conversion of `cvt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum F8Cvt {
    /// `cvt.rn.satfinite{.relu}.{e4m3x2|e5m2x2}.f32 d, a, b` (a → upper byte).
    FromF32 { e5m2: bool, relu: bool },
    /// `cvt.rn.satfinite{.relu}.{e4m3x2|e5m2x2}.f16x2 d, a`.
    FromF16x2 { e5m2: bool, relu: bool },
    /// `cvt.rn{.relu}.f16x2.{e4m3x2|e5m2x2} d, a` (upper byte → upper half).
    ToF16x2 { e5m2: bool, relu: bool },
}

fn imm_of(o: &AOp) -> Option<i64> {
    match o {
        AOp::Num(s) => parse_int_signed(s).map(|v| v as i64),
        _ => None,
    }
}

impl<'a> Decoder<'a> {
    /// `wgmma.*`, `stmatrix.*` and FP8 `cvt`: (op, destinations, sources).
    pub(super) fn decode_hopper(&self, ins: &AInstr) -> Result<(Op, Vec<Opnd>, Vec<Opnd>), String> {
        let parts: Vec<&str> = ins.opcode.split('.').collect();
        let mut rest: Vec<&str> = parts[1..].to_vec();
        let mut take = |s: &str| -> bool {
            if let Some(i) = rest.iter().position(|p| *p == s) {
                rest.remove(i);
                true
            } else {
                false
            }
        };
        let ops = &ins.ops;
        let r = match parts[0] {
            "wgmma" => {
                if take("fence") {
                    take("sync");
                    take("aligned");
                    (Op::WgFence, vec![], vec![])
                } else if take("commit_group") {
                    take("sync");
                    take("aligned");
                    (Op::WgCommit, vec![], vec![])
                } else if take("wait_group") {
                    take("sync");
                    take("aligned");
                    match ops.first().and_then(imm_of) {
                        Some(n) if ops.len() == 1 && (0..=7).contains(&n) => {
                            (Op::WgWait(n as u32), vec![], vec![])
                        }
                        _ => return Err("wgmma.wait_group needs one immediate 0..7".into()),
                    }
                } else if take("mma_async") {
                    if !(take("sync") && take("aligned")) {
                        return Err("wgmma.mma_async must be .sync.aligned".into());
                    }
                    return self.decode_wgmma(ins, rest);
                } else {
                    return Err(format!("`{}` is not supported", ins.opcode));
                }
            }
            "stmatrix" => {
                take("sync");
                take("aligned");
                if !take("m8n8") {
                    return Err("only stmatrix .m8n8 is supported".into());
                }
                let num = if take("x1") {
                    1
                } else if take("x2") {
                    2
                } else if take("x4") {
                    4
                } else {
                    return Err("stmatrix needs .x1/.x2/.x4".into());
                };
                let trans = take("trans");
                let mut space = if take("shared") || take("shared::cta") {
                    Space::Shared
                } else {
                    Space::Generic
                };
                if !take("b16") {
                    return Err("stmatrix only .b16 is supported".into());
                }
                if ops.len() != 2 {
                    return Err("stmatrix expects 2 operands".into());
                }
                let a = self.addr(&ops[0], &mut space)?;
                let v = self.reg(&ops[1])?;
                match &v {
                    Opnd::Vec(x) if x.len() == num as usize => {}
                    _ => return Err("stmatrix source vector size does not match .xN".into()),
                }
                (
                    Op::Stmatrix { num, trans },
                    vec![],
                    vec![a, Opnd::Imm(space as u64), v],
                )
            }
            _ => {
                // cvt with an FP8 type
                let relu = take("relu");
                let rn = take("rn");
                let sat = take("satfinite");
                let relu = relu || take("relu");
                if !rn {
                    return Err(format!("`{}`: FP8 cvt needs .rn", ins.opcode));
                }
                let tys: Vec<&str> = std::mem::take(&mut rest);
                let f8 = |s: &str| match s {
                    "e4m3x2" => Some(false),
                    "e5m2x2" => Some(true),
                    _ => None,
                };
                let (op, n) = match tys.as_slice() {
                    [d, "f32"] if f8(d).is_some() => {
                        (F8Cvt::FromF32 { e5m2: f8(d).unwrap(), relu }, 3)
                    }
                    [d, "f16x2"] if f8(d).is_some() => {
                        (F8Cvt::FromF16x2 { e5m2: f8(d).unwrap(), relu }, 2)
                    }
                    ["f16x2", s] if f8(s).is_some() => {
                        (F8Cvt::ToF16x2 { e5m2: f8(s).unwrap(), relu }, 2)
                    }
                    _ => {
                        return Err(format!(
                            "`{}`: FP8 cvt forms supported: .e4m3x2/.e5m2x2 from .f32 or .f16x2, .f16x2 from .e4m3x2/.e5m2x2",
                            ins.opcode
                        ))
                    }
                };
                let to_f8 = !matches!(op, F8Cvt::ToF16x2 { .. });
                if to_f8 != sat {
                    return Err(format!(
                        "`{}`: .satfinite is {} for this FP8 cvt",
                        ins.opcode,
                        if to_f8 { "required" } else { "not allowed" }
                    ));
                }
                if ops.len() != n {
                    return Err(format!("`{}` expects {n} operands", ins.opcode));
                }
                let sty = if n == 3 { Ty::F32 } else { Ty::B32 };
                let s = ops[1..]
                    .iter()
                    .map(|o| self.src(o, sty))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok((Op::CvtF8(op), vec![self.reg(&ops[0])?], s));
            }
        };
        if let Some(left) = rest.first() {
            return Err(format!(
                "modifier `.{left}` of `{}` is not supported",
                ins.opcode
            ));
        }
        Ok(r)
    }

    fn decode_wgmma(
        &self,
        ins: &AInstr,
        mut rest: Vec<&str>,
    ) -> Result<(Op, Vec<Opnd>, Vec<Opnd>), String> {
        // .shape.dtype.atype.btype in that order
        if rest.len() != 4 {
            return Err(format!(
                "`{}`: expected .shape.dtype.atype.btype (integer, tf32, sparse and .satfinite forms are not supported)",
                ins.opcode
            ));
        }
        let shape = rest.remove(0);
        let (n, k) = shape
            .strip_prefix("m64n")
            .and_then(|s| s.split_once('k'))
            .and_then(|(n, k)| Some((n.parse::<u32>().ok()?, k.parse::<u32>().ok()?)))
            .ok_or_else(|| format!("bad wgmma shape `.{shape}`"))?;
        let acc_f16 = match rest[0] {
            "f32" => false,
            "f16" => true,
            d => return Err(format!("wgmma accumulator type .{d} is not supported")),
        };
        let (Some(ta), Some(tb)) = (MmaTy::parse(rest[1]), MmaTy::parse(rest[2])) else {
            return Err(format!(
                "wgmma operand types .{}.{} are not supported",
                rest[1], rest[2]
            ));
        };
        let fp8 = |t: MmaTy| matches!(t, MmaTy::E4M3 | MmaTy::E5M2);
        let ok_types = if fp8(ta) { fp8(tb) } else { ta == tb };
        let want_k = if fp8(ta) { 32 } else { 16 };
        if !ok_types || k != want_k || n == 0 || n > 256 || n % 8 != 0 {
            return Err(format!(
                "wgmma shape/type `.{shape}.{}.{}` is not supported (m64nNk16 for f16/bf16, m64nNk32 for e4m3/e5m2, N = 8..256 step 8)",
                rest[1], rest[2]
            ));
        }
        let ops = &ins.ops;
        let a_desc = !matches!(ops.get(1), Some(AOp::Vec(_)));
        let trans_ok = !fp8(ta);
        // d, a, b, scale-d, imm-scale-a, imm-scale-b[, imm-trans-a][, imm-trans-b]
        let want = 6 + if trans_ok { 1 + a_desc as usize } else { 0 };
        if ops.len() != want {
            return Err(format!(
                "`{}` expects {want} operands, got {}",
                ins.opcode,
                ops.len()
            ));
        }
        let imm = |i: usize, ok: &[i64]| -> Result<i64, String> {
            match imm_of(&ops[i]) {
                Some(v) if ok.contains(&v) => Ok(v),
                _ => Err(format!(
                    "operand {} of wgmma must be an immediate in {ok:?}",
                    i + 1
                )),
            }
        };
        let neg_a = imm(4, &[1, -1])? == -1;
        let neg_b = imm(5, &[1, -1])? == -1;
        let (trans_a, trans_b) = if !trans_ok {
            (false, false)
        } else if a_desc {
            (imm(6, &[0, 1])? == 1, imm(7, &[0, 1])? == 1)
        } else {
            (false, imm(6, &[0, 1])? == 1)
        };
        let d = self.reg(&ops[0])?;
        let nacc = if acc_f16 { n / 4 } else { n / 2 } as usize;
        if !matches!(&d, Opnd::Vec(v) if v.len() == nacc && v.iter().all(|r| matches!(r, Opnd::Reg(_))))
        {
            return Err(format!(
                "wgmma accumulator must be a vector of {nacc} registers"
            ));
        }
        let a = if a_desc {
            self.src(&ops[1], Ty::B64)?
        } else {
            let a = self.reg(&ops[1])?;
            if !matches!(&a, Opnd::Vec(v) if v.len() == 4 && v.iter().all(|r| matches!(r, Opnd::Reg(_))))
            {
                return Err("wgmma A from registers must be a vector of 4 registers".into());
            }
            a
        };
        let b = self.src(&ops[2], Ty::B64)?;
        let scale_d = self.src(&ops[3], Ty::Pred)?;
        Ok((
            Op::Wgmma(Box::new(WgmmaSpec {
                n,
                k,
                ta,
                tb,
                acc_f16,
                a_desc,
                neg_a,
                neg_b,
                trans_a,
                trans_b,
            })),
            vec![d],
            vec![a, b, scale_d],
        ))
    }
}
