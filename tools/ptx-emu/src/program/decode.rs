//! Kernel decoding: shared/local/param layout, register slots, labels, `.func` inlining.

use super::*;

impl<'a> Decoder<'a> {
    pub(super) fn decode_kernel(
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
        d.nregs = super::regalloc::compact(&mut d.instrs, d.nregs);
        Ok(Program {
            name: f.name.clone(),
            params,
            param_offsets,
            param_size: poff,
            fast: crate::exec::decode_fast(&d.instrs, d.nregs as usize),
            wg_touch: crate::exec::wgmma_touch_map(&d.instrs),
            first_unsupported: d
                .instrs
                .iter()
                .position(|i| matches!(i.op, Op::Unsupported(_))),
            global_atomics: d
                .instrs
                .iter()
                .any(|i| matches!(i.op, Op::Atom { space, .. } if space != Space::Shared)),
            instrs: d.instrs,
            texts: d.texts,
            nregs: d.nregs as usize,
            static_shared: off as usize,
            dyn_shared_align: dyn_align as usize,
            local_size: align_up(d.local_size, 16) as usize,
            req_cluster: f.req_cluster,
            explicit_cluster: f.explicit_cluster,
        })
    }

    /// A `.param` copy of a call's arguments or results.
    fn push_copy(&mut self, dst: u32, src: u32, size: u32, line: usize, text: &str) {
        let op = Op::LocalCopy { dst, src, size };
        self.push(op, None, vec![], vec![], line, text.to_string());
    }

    /// A branch whose target is patched once the labels are known.
    fn push_branch(&mut self, guard: Option<(u32, bool)>, line: usize) {
        let text = self.text(line);
        self.push(Op::Bra(u32::MAX), guard, vec![], vec![], line, text);
    }

    pub(super) fn push(
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

    pub(super) fn lookup(&self, name: &str) -> Option<Sym> {
        // `%r123` may come from a parameterised declaration `%r<N>`, kept as one range entry
        // under the key `%r<>` (no identifier contains `<`), so that declaring millions of
        // registers costs no more than declaring one.
        let indexed = split_register_index(name);
        for s in self.scopes.iter().rev() {
            if let Some(v) = s.get(name) {
                return Some(v.clone());
            }
            if let Some((prefix, i)) = indexed {
                if let Some(&Sym::RegRange(base, n)) = s.get(&range_key(prefix)) {
                    if i < n {
                        return Some(Sym::Reg(base + i));
                    }
                }
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

    pub(super) fn declare(&mut self, v: &VarDecl) -> Result<(), EmuError> {
        let scope = self.scopes.last_mut().unwrap();
        match v.space.as_str() {
            ".reg" => {
                if let Some(n) = v.count {
                    let n = u32::try_from(n).map_err(|_| EmuError::Parse {
                        line: v.line,
                        token: v.name.clone(),
                        msg: "register count out of range".into(),
                    })?;
                    let total = self.nregs.checked_add(n).ok_or_else(|| EmuError::Parse {
                        line: v.line,
                        token: v.name.clone(),
                        msg: "too many registers in one kernel".into(),
                    })?;
                    scope.insert(range_key(&v.name), Sym::RegRange(self.nregs, n));
                    self.nregs = total;
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

    pub(super) fn text(&self, line: usize) -> String {
        let l = self
            .lines
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or_default();
        l.split("//").next().unwrap_or_default().trim().to_string()
    }

    /// Decode a function body. `ret_target`: Some(fixup list) when inlined (ret → bra end).
    pub(super) fn decode_body(
        &mut self,
        body: &[Stmt],
        ret_fix: Option<&mut Vec<usize>>,
    ) -> Result<(), EmuError> {
        // Labels are scoped like registers (PTX: a `{ }` block is a scope): a branch goes to the
        // label of that name in the innermost enclosing block that declares it, before or after
        // the branch. Inline-asm blocks repeated by the compiler (CUTLASS's mbarrier wait loops)
        // each declare their own `LAB_WAIT` / `DONE`.
        let mut labels: HashMap<(usize, String), u32> = HashMap::new();
        let mut fix: Vec<(usize, String, usize, Vec<usize>)> = Vec::new();
        let mut block_ids: Vec<usize> = vec![0];
        let mut next_block = 1usize;
        let mut ret_fix = ret_fix;
        let depth0 = self.scopes.len();
        self.scopes.push(HashMap::new());
        for st in body {
            match st {
                Stmt::Open => {
                    self.scopes.push(HashMap::new());
                    block_ids.push(next_block);
                    next_block += 1;
                }
                Stmt::Close => {
                    self.scopes.pop();
                    if block_ids.len() > 1 {
                        block_ids.pop();
                    }
                }
                Stmt::Decl(v) => self.declare(v)?,
                Stmt::Label(l) => {
                    let block = *block_ids.last().unwrap_or(&0);
                    labels.insert((block, l.clone()), self.instrs.len() as u32);
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
                        self.push_branch(guard, ins.line);
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
                        fix.push((self.instrs.len(), target, ins.line, block_ids.clone()));
                        self.push_branch(guard, ins.line);
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
        for (at, l, line, blocks) in fix {
            let t = blocks
                .iter()
                .rev()
                .find_map(|&b| labels.get(&(b, l.clone())).copied())
                .ok_or_else(|| EmuError::Parse {
                    line,
                    token: l.clone(),
                    msg: "branch to an undefined label".into(),
                })?;
            self.instrs[at].op = Op::Bra(t);
        }
        self.scopes.truncate(depth0);
        Ok(())
    }

    pub(super) fn guard(&self, ins: &AInstr) -> Result<Option<(u32, bool)>, EmuError> {
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

    pub(super) fn decode_call(&mut self, ins: &AInstr) -> Result<(), EmuError> {
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
        // The caller's `.param` variable that a call operand names: (local offset, size).
        let param_var = |d: &Self, o: &AOp, what: &str| {
            let sym = match o {
                AOp::Name(n) => d.lookup(n),
                _ => None,
            };
            match sym {
                Some(Sym::Local(off, size)) => Ok((off, size)),
                _ => Err(err(what)),
            }
        };
        for (a, &(off, size)) in args.iter().zip(&callee_params) {
            let (src, ssize) = param_var(self, a, "call arguments must be .param variables")?;
            self.push_copy(off, src, size.min(ssize), ins.line, &text);
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
            let (dst, dsize) = param_var(self, r, "call return values must be .param variables")?;
            self.push_copy(dst, off, size.min(dsize), ins.line, &text);
        }
        // marks the reconvergence point after the inlined body
        self.push(Op::Nop, None, vec![], vec![], ins.line, text);
        Ok(())
    }

    pub(super) fn reg(&self, o: &AOp) -> Result<Opnd, String> {
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
                    // (`lookup` turns ranges into single registers.)
                    Some(Sym::RegRange(..)) | None => Err(format!("unknown name `{n}`")),
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
    pub(super) fn src(&self, o: &AOp, ty: Ty) -> Result<Opnd, String> {
        match o {
            AOp::Num(s) => Ok(Opnd::Imm(
                typed_imm(s, ty).ok_or_else(|| format!("bad literal `{s}`"))?,
            )),
            _ => self.reg(o),
        }
    }

    pub(super) fn addr(&self, o: &AOp, space: &mut Space) -> Result<Opnd, String> {
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
                Some(Sym::RegRange(..)) | None => Err(format!("unknown name `{n}` in address")),
            },
            _ => Err("expected an address operand `[...]`".into()),
        }
    }
}

/// The scope key of the register range declared by `.reg .T name<N>;`.
fn range_key(name: &str) -> String {
    format!("{name}<>")
}

/// `%r123` → (`%r`, 123): the name of register 123 of a `%r<N>` declaration. Only the canonical
/// spelling (no leading zeros, as the expansion `%r0 … %r{N-1}` spells them) matches.
fn split_register_index(name: &str) -> Option<(&str, u32)> {
    let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits == name.len() {
        return None;
    }
    let (prefix, num) = name.split_at(name.len() - digits);
    if num.len() > 1 && num.starts_with('0') {
        return None;
    }
    num.parse().ok().map(|i| (prefix, i))
}
