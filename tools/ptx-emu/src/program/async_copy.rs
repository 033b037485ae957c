//! Decoding of the sm_90 asynchronous-copy kit: `mbarrier.*`, `cp.async.bulk[.tensor]`, bulk
//! groups, `elect.sync`, `setmaxnreg`, `griddepcontrol`, `fence.proxy.async` /
//! `fence.mbarrier_init`. Executed by `exec/mbarrier.rs`, `exec/tma.rs`.

use super::instr::expect_operands;
use super::*;

/// An instruction's operation, destinations and sources.
type Decoded = (Op, Vec<Opnd>, Vec<Opnd>);

/// One sm_90 asynchronous-copy / barrier operation (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum HopOp {
    /// `mbarrier.init [a], count`. s: [addr, count]
    MbarInit,
    /// `mbarrier.arrive{.expect_tx}{_drop}` d: [state | Sink], s: [addr, count-or-tx {, count}].
    /// `remote`: the `.shared::cluster` form (no state result).
    MbarArrive {
        expect_tx: bool,
        drop: bool,
        /// Number of operands after the address: 0 (count 1), 1 (count, or tx with expect_tx).
        has_arg: bool,
    },
    /// `mbarrier.expect_tx [a], tx` (`complete: false`) / `mbarrier.complete_tx`.
    MbarTx { complete: bool },
    /// `mbarrier.test_wait` / `try_wait` {`.parity`}. d: [pred], s: [addr, state-or-parity]
    MbarWait { try_wait: bool, parity: bool },
    /// `mbarrier.inval [a]`.
    MbarInval,
    /// `cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes{.multicast::cluster}
    /// {.L2::cache_hint} [dst], [src], size, [mbar] {, ctaMask} {, policy}`.
    /// s: [dst, src, size, mbar, ctaMask (0 without multicast: this block)]
    BulkG2S,
    /// `cp.async.bulk.global.shared::cta.bulk_group [dst], [src], size`. s: [dst, src, size]
    BulkS2G,
    /// `cp.async.bulk.commit_group`.
    BulkCommit,
    /// `cp.async.bulk.wait_group{.read} N`.
    BulkWait { n: u32, read: bool },
    /// `cp.async.bulk.tensor.Nd.shared::cluster.global.tile.mbarrier::complete_tx::bytes
    /// {.multicast::cluster}{.L2::cache_hint} [dst], [tmap, {c...}], [mbar] {, ctaMask} {, policy}`.
    /// s: [dst, tmap, coords (Vec), mbar, ctaMask (0 without multicast: this block)]
    TensorLoad { dims: u8 },
    /// `cp.async.bulk.tensor.Nd.global.shared::cta.tile.bulk_group [tmap, {c...}], [src]`.
    /// s: [tmap, coords (Vec), src]
    TensorStore { dims: u8 },
    /// `elect.sync d|p, membermask`. d: [d-or-Sink, p], s: [membermask]
    Elect,
    /// `setmaxnreg.{inc,dec}.sync.aligned.u32 N`.
    Setmaxnreg { inc: bool, n: u32 },
    /// `mapa{.shared::cluster}.{u32,u64} d, a, rank`. d: [d], s: [a, rank]
    Mapa,
    /// `barrier.cluster.arrive{.relaxed}{.aligned}`.
    ClusterArrive,
    /// `fence.proxy.async{.shared::cta|.shared::cluster|.global}` (exec/proxy.rs).
    ProxyFence,
    /// `cp.reduce.async.bulk.global.shared::cta.bulk_group{.L2::cache_hint}.op.type [dst], [src],
    /// size {, policy}`: element-wise `op` of the shared source into global memory when the copy
    /// lands. s: [dst, src, size]
    BulkReduce { op: AtomOp, ty: Ty },
    /// `barrier.cluster.wait{.aligned}`.
    ClusterWait,
    /// `ld/st/atom/red .shared::cluster`: an access to the shared memory of any block of the
    /// cluster (distributed shared memory); operands as the plain `.shared` instruction's.
    Dsmem(DsmemOp),
}

/// The access of a [`HopOp::Dsmem`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum DsmemOp {
    Ld { ty: Ty, n: u8 },
    St { ty: Ty, n: u8 },
    Atom { op: AtomOp, ty: Ty, red: bool },
}

impl DsmemOp {
    /// The plain shared-memory instruction this access is to this block's shared memory.
    pub(crate) fn local_op(self) -> Op {
        let space = Space::Shared;
        match self {
            DsmemOp::Ld { ty, n } => Op::Ld { space, ty, n },
            DsmemOp::St { ty, n } => Op::St { space, ty, n },
            DsmemOp::Atom { op, ty, red } => Op::Atom { space, op, ty, red },
        }
    }
}

impl HopOp {
    /// Whether the operation may have to wait (the dispatcher parks lanes on it): mbarrier
    /// waits, and `setmaxnreg.inc` until other warpgroups release registers.
    pub(crate) fn waits(&self) -> bool {
        matches!(
            self,
            HopOp::MbarWait { .. } | HopOp::Setmaxnreg { inc: true, .. } | HopOp::ClusterWait
        )
    }
}

/// Whether the PTX targets sm_90 or later (`sm_90`, `sm_90a`, ...).
fn targets_sm90(ast: &AModule) -> bool {
    ast.targets.iter().any(|t| {
        t.strip_prefix("sm_")
            .map(|n| n.trim_end_matches(|c: char| c.is_ascii_alphabetic()))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|v| v >= 90)
    })
}

impl<'a> Decoder<'a> {
    /// `ld/st/atom/red .shared::cluster` (distributed shared memory): decoded as the `.shared`
    /// instruction (the `.cluster` scope dropped), wrapped in [`HopOp::Dsmem`]; `Ok(None)` for
    /// every other instruction.
    pub(super) fn decode_dsmem(&self, ins: &AInstr) -> Result<Option<Decoded>, String> {
        let parts: Vec<&str> = ins.opcode.split('.').collect();
        if !matches!(parts[0], "ld" | "st" | "atom" | "red") || !parts.contains(&"shared::cluster")
        {
            return Ok(None);
        }
        if !targets_sm90(self.ast) {
            return Err(format!("`{}` requires .target sm_90 or later", ins.opcode));
        }
        let local: Vec<&str> = parts
            .iter()
            .filter(|p| **p != "cluster")
            .map(|p| if *p == "shared::cluster" { "shared" } else { p })
            .collect();
        let plain = AInstr {
            opcode: local.join("."),
            ..ins.clone()
        };
        let (op, d, s) = self.decode_instr(&plain)?;
        let ds = match op {
            Op::Ld { ty, n, .. } => DsmemOp::Ld { ty, n },
            Op::St { ty, n, .. } => DsmemOp::St { ty, n },
            Op::Atom { op, ty, red, .. } => DsmemOp::Atom { op, ty, red },
            _ => return Err(format!("`{}` is not supported", ins.opcode)),
        };
        Ok(Some((Op::Hopper(HopOp::Dsmem(ds)), d, s)))
    }

    /// The sm_90 kit's instructions; `Ok(None)` for every other instruction.
    pub(super) fn decode_async_copy(&self, ins: &AInstr) -> Result<Option<Decoded>, String> {
        let parts: Vec<&str> = ins.opcode.split('.').collect();
        let mnem = parts[0];
        let mods = &parts[1..];
        let has = |m: &str| mods.contains(&m);
        let is_bulk =
            mnem == "cp" && mods.first() == Some(&"async") && mods.get(1) == Some(&"bulk");
        let cluster_bar = mnem == "barrier" && mods.first() == Some(&"cluster");
        let is_reduce = mnem == "cp"
            && mods.len() > 3
            && mods[..3] == ["reduce", "async", "bulk"]
            && !mods.contains(&"tensor");
        let known = matches!(
            mnem,
            "mbarrier" | "elect" | "setmaxnreg" | "griddepcontrol" | "mapa"
        ) || cluster_bar
            || is_bulk
            || is_reduce
            || (mnem == "fence" && (has("proxy") || has("mbarrier_init")));
        if !known {
            return Ok(None);
        }
        let ops = &ins.ops;
        let need = |n: usize| expect_operands(ins, n);
        let sm90 = |what: &str| -> Result<(), String> {
            if targets_sm90(self.ast) {
                Ok(())
            } else {
                Err(format!("{what} requires .target sm_90 or later"))
            }
        };
        // Allowed modifiers of each form; anything else is reported as unsupported.
        let check_mods = |allowed: &[&str]| -> Result<(), String> {
            for m in mods {
                let ok = allowed.contains(m)
                    || matches!(
                        *m,
                        "release"
                            | "acquire"
                            | "relaxed"
                            | "cta"
                            | "cluster"
                            | "b64"
                            | "shared"
                            | "shared::cta"
                    );
                if !ok {
                    return Err(format!(
                        "modifier `.{m}` of `{}` is not supported",
                        ins.opcode
                    ));
                }
            }
            Ok(())
        };
        let space_of = |remote_ok: bool| -> Result<Space, String> {
            if has("shared::cluster") {
                if !remote_ok {
                    return Err(format!(
                        "`{}`: .shared::cluster is not supported here",
                        ins.opcode
                    ));
                }
                Ok(Space::Shared)
            } else if has("shared") || has("shared::cta") {
                Ok(Space::Shared)
            } else {
                Ok(Space::Generic)
            }
        };
        let addr = |o: &AOp, sp: Space| -> Result<Opnd, String> {
            let mut s = sp;
            self.addr(o, &mut s)
        };
        if is_reduce {
            sm90("cp.reduce.async.bulk")?;
            let rest = &mods[3..];
            let mut op = None;
            let mut ty = None;
            for m in rest {
                match *m {
                    "global" | "shared::cta" | "bulk_group" | "L2::cache_hint" | "noftz" => {}
                    "add" => op = Some(AtomOp::Add),
                    "min" => op = Some(AtomOp::Min),
                    "max" => op = Some(AtomOp::Max),
                    "and" => op = Some(AtomOp::And),
                    "or" => op = Some(AtomOp::Or),
                    "xor" => op = Some(AtomOp::Xor),
                    "inc" => op = Some(AtomOp::Inc),
                    "dec" => op = Some(AtomOp::Dec),
                    t => match Ty::parse(t) {
                        Some(t) if ty.is_none() && !t.packed() && t != Ty::Pred => ty = Some(t),
                        _ => return Err(format!("`{}` is not supported", ins.opcode)),
                    },
                }
            }
            let (Some(op), Some(ty)) = (op, ty) else {
                return Err(format!("`{}` is not supported", ins.opcode));
            };
            if !(rest.contains(&"global") && rest.contains(&"bulk_group")) {
                return Err(format!(
                    "`{}` is not supported (only the shared::cta → global bulk_group form)",
                    ins.opcode
                ));
            }
            need(3 + rest.contains(&"L2::cache_hint") as usize)?;
            let s = vec![
                addr(&ops[0], Space::Global)?,
                addr(&ops[1], Space::Shared)?,
                self.src(&ops[2], Ty::U32)?,
            ];
            return Ok(Some((Op::Hopper(HopOp::BulkReduce { op, ty }), vec![], s)));
        }
        if cluster_bar {
            // barrier.cluster.arrive / .wait (exec/cluster.rs; in a cluster of one block the
            // wait is a block-wide barrier and the arrive a no-op).
            sm90("barrier.cluster")?;
            let rest: Vec<&str> = mods[1..]
                .iter()
                .copied()
                .filter(|m| !matches!(*m, "aligned" | "release" | "relaxed" | "acquire"))
                .collect();
            need(0)?;
            return match rest.as_slice() {
                ["arrive"] => Ok(Some((Op::Hopper(HopOp::ClusterArrive), vec![], vec![]))),
                ["wait"] => Ok(Some((Op::Hopper(HopOp::ClusterWait), vec![], vec![]))),
                _ => Err(format!("`{}` is not supported", ins.opcode)),
            };
        }
        let r: (HopOp, Vec<Opnd>, Vec<Opnd>) = match mnem {
            "fence" if has("proxy") && has("async") => {
                // fence.proxy.async{.shared::cta|.global|...}: writes land immediately in the
                // emulator; the fence only clears the generic writes the async proxy may read
                // (the fence.proxy.async rule, exec/proxy.rs)
                return Ok(Some((Op::Hopper(HopOp::ProxyFence), vec![], vec![])));
            }
            "fence" => {
                // fence.mbarrier_init.release.cluster, other proxy fences: writes land
                // immediately in the emulator, so these order nothing further.
                return Ok(Some((Op::Membar, vec![], vec![])));
            }
            "griddepcontrol" => {
                // launch_dependents / wait: programmatic dependent launch; launches run in
                // stream order here, so both are no-ops.
                sm90("griddepcontrol")?;
                if !(has("launch_dependents") || has("wait")) || mods.len() != 1 {
                    return Err(format!("`{}` is not supported", ins.opcode));
                }
                return Ok(Some((Op::Nop, vec![], vec![])));
            }
            "mapa" => {
                sm90("mapa")?;
                let ok = mods
                    .iter()
                    .all(|m| matches!(*m, "shared::cluster" | "u32" | "u64"));
                if !ok || mods.len() > 2 {
                    return Err(format!("`{}` is not supported", ins.opcode));
                }
                need(3)?;
                let ty = if has("u64") { Ty::U64 } else { Ty::U32 };
                (
                    HopOp::Mapa,
                    vec![self.reg(&ops[0])?],
                    vec![self.src(&ops[1], ty)?, self.src(&ops[2], Ty::U32)?],
                )
            }
            "elect" => {
                sm90("elect.sync")?;
                if !has("sync") || mods.len() != 1 {
                    return Err(format!("`{}` is not supported", ins.opcode));
                }
                need(2)?;
                let d = match &ops[0] {
                    AOp::Pair(a, b) => {
                        let da = if a == "_" {
                            Opnd::Sink
                        } else {
                            self.reg(&AOp::Name(a.clone()))?
                        };
                        vec![da, self.reg(&AOp::Name(b.clone()))?]
                    }
                    _ => return Err("elect.sync needs a `d|p` destination".into()),
                };
                (HopOp::Elect, d, vec![self.src(&ops[1], Ty::B32)?])
            }
            "setmaxnreg" => {
                sm90("setmaxnreg")?;
                let inc = has("inc");
                if !(inc || has("dec"))
                    || !has("sync")
                    || !has("aligned")
                    || !has("u32")
                    || mods.len() != 4
                {
                    return Err(format!("`{}` is not supported", ins.opcode));
                }
                need(1)?;
                let n = match self.src(&ops[0], Ty::U32)? {
                    Opnd::Imm(n) => n as u32,
                    _ => return Err("setmaxnreg needs an immediate register count".into()),
                };
                if !(24..=256).contains(&n) || n % 8 != 0 {
                    return Err(format!(
                        "setmaxnreg count {n} must be a multiple of 8 in 24..=256"
                    ));
                }
                (HopOp::Setmaxnreg { inc, n }, vec![], vec![])
            }
            "mbarrier" => {
                let kind = mods.first().copied().unwrap_or("");
                let msp = if has("shared") || has("shared::cta") || has("shared::cluster") {
                    Space::Shared
                } else {
                    Space::Generic
                };
                let mut r = match kind {
                    "init" => {
                        check_mods(&["init"])?;
                        need(2)?;
                        let sp = space_of(false)?;
                        (
                            HopOp::MbarInit,
                            vec![],
                            vec![addr(&ops[0], sp)?, self.src(&ops[1], Ty::U32)?],
                        )
                    }
                    "inval" => {
                        check_mods(&["inval"])?;
                        need(1)?;
                        let sp = space_of(false)?;
                        (HopOp::MbarInval, vec![], vec![addr(&ops[0], sp)?])
                    }
                    "arrive" | "arrive_drop" => {
                        let expect_tx = mods.get(1) == Some(&"expect_tx");
                        if expect_tx || has("shared::cluster") || has("cluster") {
                            sm90("mbarrier.arrive.expect_tx / .cluster")?;
                        }
                        check_mods(&[kind, "expect_tx", "shared::cluster"])?;
                        if has("noComplete") {
                            return Err("mbarrier.arrive.noComplete is not supported".into());
                        }
                        let sp = space_of(true)?;
                        if ops.len() < 2 || ops.len() > 3 {
                            return Err(format!("`{}` expects 2 or 3 operands", ins.opcode));
                        }
                        if expect_tx && ops.len() != 3 {
                            return Err("mbarrier.arrive.expect_tx needs a tx-count".into());
                        }
                        let d = match &ops[0] {
                            AOp::Sink => Opnd::Sink,
                            o => self.reg(o)?,
                        };
                        let mut s = vec![addr(&ops[1], sp)?];
                        if ops.len() == 3 {
                            s.push(self.src(&ops[2], Ty::U32)?);
                        }
                        (
                            HopOp::MbarArrive {
                                expect_tx,
                                drop: kind == "arrive_drop",
                                has_arg: ops.len() == 3,
                            },
                            vec![d],
                            s,
                        )
                    }
                    "expect_tx" | "complete_tx" => {
                        sm90("mbarrier.expect_tx/complete_tx")?;
                        check_mods(&[kind])?;
                        need(2)?;
                        let sp = space_of(false)?;
                        (
                            HopOp::MbarTx {
                                complete: kind == "complete_tx",
                            },
                            vec![],
                            vec![addr(&ops[0], sp)?, self.src(&ops[1], Ty::U32)?],
                        )
                    }
                    "test_wait" | "try_wait" => {
                        let try_wait = kind == "try_wait";
                        let parity = mods.get(1) == Some(&"parity");
                        if try_wait {
                            sm90("mbarrier.try_wait")?;
                        }
                        check_mods(&[kind, "parity"])?;
                        let sp = space_of(false)?;
                        let n = ops.len();
                        if !(n == 3 || (try_wait && n == 4)) {
                            return Err(format!(
                                "`{}` expects 3 operands (4 with a suspend-time hint)",
                                ins.opcode
                            ));
                        }
                        let sty = if parity { Ty::B32 } else { Ty::B64 };
                        (
                            HopOp::MbarWait { try_wait, parity },
                            vec![self.reg(&ops[0])?],
                            vec![addr(&ops[1], sp)?, self.src(&ops[2], sty)?],
                        )
                    }
                    _ => return Err(format!("`{}` is not supported", ins.opcode)),
                };
                // the address space of the barrier operand, last source (exec/mbarrier.rs)
                r.2.push(Opnd::Imm((msp == Space::Shared) as u64));
                r
            }
            _ => {
                // cp.async.bulk...
                sm90("cp.async.bulk")?;
                let rest = &mods[2..];
                let rhas = |m: &str| rest.contains(&m);
                if rest.first() == Some(&"commit_group") && rest.len() == 1 {
                    (HopOp::BulkCommit, vec![], vec![])
                } else if rest.first() == Some(&"wait_group") {
                    let read = rhas("read");
                    if rest.len() != 1 + read as usize {
                        return Err(format!("`{}` is not supported", ins.opcode));
                    }
                    need(1)?;
                    let n = match self.src(&ops[0], Ty::U32)? {
                        Opnd::Imm(n) => n as u32,
                        _ => return Err("cp.async.bulk.wait_group needs an immediate".into()),
                    };
                    (HopOp::BulkWait { n, read }, vec![], vec![])
                } else if rest.first() == Some(&"tensor") {
                    let dims = match rest.get(1).copied() {
                        Some("1d") => 1,
                        Some("2d") => 2,
                        Some("3d") => 3,
                        Some("4d") => 4,
                        Some("5d") => 5,
                        _ => return Err("cp.async.bulk.tensor needs .1d … .5d".into()),
                    };
                    let rest = &rest[2..];
                    let only = |allowed: &[&str]| -> Result<(), String> {
                        for m in rest {
                            if !allowed.contains(m) {
                                return Err(format!(
                                    "modifier `.{m}` of `{}` is not supported",
                                    ins.opcode
                                ));
                            }
                        }
                        Ok(())
                    };
                    let coords_of = |o: &AOp| -> Result<(Opnd, Opnd), String> {
                        match o {
                            AOp::List(v) if v.len() == 2 => {
                                let AOp::Vec(cs) = &v[1] else {
                                    return Err("tensor coordinates must be `{c0, ...}`".into());
                                };
                                if cs.len() != dims as usize {
                                    return Err(format!(
                                        "{dims}d tensor copy needs {dims} coordinates, got {}",
                                        cs.len()
                                    ));
                                }
                                let c = cs
                                    .iter()
                                    .map(|x| self.src(x, Ty::S32))
                                    .collect::<Result<Vec<_>, _>>()?;
                                let mut sp = Space::Generic;
                                Ok((
                                    self.addr(&v[0], &mut sp).or_else(|_| {
                                        // a `.param` tensor map named directly: `[tmap_param, {..}]`
                                        let mut p = Space::Param;
                                        self.addr(&v[0], &mut p).map(|a| match a {
                                            Opnd::Addr(Base::None, off) => {
                                                Opnd::Addr(Base::None, off + PARAM_TAG as i64)
                                            }
                                            a => a,
                                        })
                                    })?,
                                    Opnd::Vec(c.into()),
                                ))
                            }
                            _ => Err("expected `[tensorMap, {coordinates}]`".into()),
                        }
                    };
                    if rest.first() == Some(&"shared::cluster")
                        || rest.first() == Some(&"shared::cta")
                    {
                        // load: global -> shared
                        only(&[
                            "shared::cluster",
                            "shared::cta",
                            "global",
                            "tile",
                            "mbarrier::complete_tx::bytes",
                            "multicast::cluster",
                            "L2::cache_hint",
                        ])?;
                        if !rest.contains(&"mbarrier::complete_tx::bytes") {
                            return Err(
                                "cp.async.bulk.tensor loads need .mbarrier::complete_tx::bytes"
                                    .into(),
                            );
                        }
                        let mc = rest.contains(&"multicast::cluster");
                        need(3 + mc as usize + rest.contains(&"L2::cache_hint") as usize)?;
                        let dst = addr(&ops[0], Space::Shared)?;
                        let (tm, cs) = coords_of(&ops[1])?;
                        let bar = addr(&ops[2], Space::Shared)?;
                        let mask = if mc {
                            self.src(&ops[3], Ty::U16)?
                        } else {
                            Opnd::Imm(0)
                        };
                        (
                            HopOp::TensorLoad { dims },
                            vec![],
                            vec![dst, tm, cs, bar, mask],
                        )
                    } else if rest.first() == Some(&"global") {
                        only(&[
                            "global",
                            "shared::cta",
                            "tile",
                            "bulk_group",
                            "L2::cache_hint",
                        ])?;
                        if !rest.contains(&"bulk_group") {
                            return Err("cp.async.bulk.tensor stores need .bulk_group".into());
                        }
                        need(2 + rest.contains(&"L2::cache_hint") as usize)?;
                        let (tm, cs) = coords_of(&ops[0])?;
                        let src = addr(&ops[1], Space::Shared)?;
                        (HopOp::TensorStore { dims }, vec![], vec![tm, cs, src])
                    } else {
                        return Err(format!("`{}` is not supported", ins.opcode));
                    }
                } else if rest.first() == Some(&"shared::cluster")
                    || rest.first() == Some(&"shared::cta")
                {
                    for m in rest {
                        if !matches!(
                            *m,
                            "shared::cluster"
                                | "shared::cta"
                                | "global"
                                | "mbarrier::complete_tx::bytes"
                                | "multicast::cluster"
                                | "L2::cache_hint"
                        ) {
                            return Err(format!(
                                "modifier `.{m}` of `{}` is not supported",
                                ins.opcode
                            ));
                        }
                    }
                    if !rhas("global") || !rhas("mbarrier::complete_tx::bytes") {
                        return Err(format!(
                            "`{}` is not supported (global → shared with mbarrier completion only)",
                            ins.opcode
                        ));
                    }
                    let mc = rhas("multicast::cluster");
                    need(4 + mc as usize + rhas("L2::cache_hint") as usize)?;
                    let mask = if mc {
                        self.src(&ops[4], Ty::U16)?
                    } else {
                        Opnd::Imm(0)
                    };
                    (
                        HopOp::BulkG2S,
                        vec![],
                        vec![
                            addr(&ops[0], Space::Shared)?,
                            addr(&ops[1], Space::Global)?,
                            self.src(&ops[2], Ty::U32)?,
                            addr(&ops[3], Space::Shared)?,
                            mask,
                        ],
                    )
                } else if rest.first() == Some(&"global") {
                    for m in rest {
                        if !matches!(
                            *m,
                            "global" | "shared::cta" | "bulk_group" | "L2::cache_hint"
                        ) {
                            return Err(format!(
                                "modifier `.{m}` of `{}` is not supported",
                                ins.opcode
                            ));
                        }
                    }
                    if !rhas("shared::cta") || !rhas("bulk_group") {
                        return Err(format!(
                            "`{}` is not supported (shared::cta → global with bulk_group only)",
                            ins.opcode
                        ));
                    }
                    need(3 + rhas("L2::cache_hint") as usize)?;
                    (
                        HopOp::BulkS2G,
                        vec![],
                        vec![
                            addr(&ops[0], Space::Global)?,
                            addr(&ops[1], Space::Shared)?,
                            self.src(&ops[2], Ty::U32)?,
                        ],
                    )
                } else {
                    return Err(format!("`{}` is not supported", ins.opcode));
                }
            }
        };
        Ok(Some((Op::Hopper(r.0), r.1, r.2)))
    }
}

/// Added to the offset of a tensor map named directly as a kernel `.param` (`[tmap, {..}]`), so
/// that the executor reads it from the parameter buffer (the generic param window).
pub(crate) const PARAM_TAG: u64 = crate::exec::PARAM_WINDOW;
