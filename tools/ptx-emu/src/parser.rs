//! PTX text → AST (functions, declarations, instructions with raw operands).

use crate::EmuError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Num(String),
    Str(String),
    P(char),
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: usize,
}

fn perr(line: usize, token: &str, msg: impl Into<String>) -> EmuError {
    EmuError::Parse {
        line,
        token: token.to_string(),
        msg: msg.into(),
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'%' || c == b'.'
}
fn is_ident_cont(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'.'
}

pub(crate) fn lex(src: &str) -> Result<Vec<Token>, EmuError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut line = 1;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                if b[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if c == b'"' {
            let s = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Str(src[s..i.min(b.len())].to_string()),
                line,
            });
            i += 1;
        } else if is_ident_start(c) {
            let s = i;
            i += 1;
            loop {
                if i < b.len() && is_ident_cont(b[i]) {
                    i += 1;
                } else if i + 1 < b.len() && b[i] == b':' && b[i + 1] == b':' {
                    i += 2;
                } else {
                    break;
                }
            }
            out.push(Token {
                tok: Tok::Ident(src[s..i].to_string()),
                line,
            });
        } else if c.is_ascii_digit() {
            let s = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                // decimal exponent with sign: 1.5e-3
                if (b[i] == b'e' || b[i] == b'E')
                    && i + 1 < b.len()
                    && (b[i + 1] == b'-' || b[i + 1] == b'+')
                    && !src[s..i].starts_with("0x")
                    && !src[s..i].starts_with("0X")
                    && !src[s..i].starts_with("0f")
                    && !src[s..i].starts_with("0F")
                    && !src[s..i].starts_with("0d")
                    && !src[s..i].starts_with("0D")
                {
                    i += 2;
                    continue;
                }
                i += 1;
            }
            out.push(Token {
                tok: Tok::Num(src[s..i].to_string()),
                line,
            });
        } else {
            out.push(Token {
                tok: Tok::P(c as char),
                line,
            });
            i += 1;
        }
    }
    Ok(out)
}

/// An operand as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AOp {
    /// Register, symbol, label or special register name.
    Name(String),
    /// `!%p`
    Not(String),
    /// Integer or float literal (text, possibly with a leading `-`).
    Num(String),
    /// `{a, b, ...}`
    Vec(Vec<AOp>),
    /// `[base+off]`; base is None for `[imm]`.
    Addr(Option<String>, i64),
    /// `(a, b)` argument list of `call`.
    List(Vec<AOp>),
    /// `p|q` (setp with two predicate destinations).
    Pair(String, String),
    /// `_`
    Sink,
}

#[derive(Clone, Debug)]
pub(crate) struct AInstr {
    pub line: usize,
    pub guard: Option<(String, bool)>,
    pub opcode: String,
    pub ops: Vec<AOp>,
}

#[derive(Clone, Debug)]
pub(crate) struct VarDecl {
    pub line: usize,
    pub space: String, // ".reg", ".local", ".shared", ".param", ".global", ".const"
    pub align: usize,
    pub ty: String,
    pub vec: usize,
    pub name: String,
    /// `%r<6>` declares 6 registers.
    pub count: Option<usize>,
    /// Array dims product (None = scalar; Some(0) = unsized `[]`).
    pub array: Option<usize>,
    pub init: Vec<AOp>,
    pub is_extern: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum Stmt {
    Decl(VarDecl),
    Label(String),
    Instr(AInstr),
    Open,
    Close,
}

#[derive(Clone, Debug)]
pub(crate) struct AFunc {
    pub name: String,
    pub is_entry: bool,
    pub line: usize,
    pub rets: Vec<VarDecl>,
    pub params: Vec<VarDecl>,
    /// None for a declaration without body (`.extern .func`).
    pub body: Option<Vec<Stmt>>,
    /// `.reqnctapercluster X, Y, Z` (missing dimensions are 1).
    pub req_cluster: Option<[u32; 3]>,
    /// `.explicitcluster`.
    pub explicit_cluster: bool,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct AModule {
    pub funcs: Vec<AFunc>,
    pub vars: Vec<VarDecl>,
    /// The `.target` architectures (e.g. `["sm_90a"]`; other entries such as `texmode_*` kept).
    pub targets: Vec<String>,
    /// The `.version` text (e.g. `8.4`).
    pub version: String,
}

pub(crate) fn type_size(ty: &str) -> Option<usize> {
    Some(match ty {
        ".pred" => 1,
        ".b8" | ".u8" | ".s8" => 1,
        ".b16" | ".u16" | ".s16" | ".f16" | ".bf16" => 2,
        ".b32" | ".u32" | ".s32" | ".f32" | ".f16x2" | ".bf16x2" | ".tf32" => 4,
        ".b64" | ".u64" | ".s64" | ".f64" => 8,
        ".b128" => 16,
        _ => return None,
    })
}

struct P<'a> {
    t: &'a [Token],
    i: usize,
}

impl<'a> P<'a> {
    fn peek(&self) -> Option<&'a Tok> {
        self.t.get(self.i).map(|t| &t.tok)
    }
    fn line(&self) -> usize {
        self.t
            .get(self.i)
            .or(self.t.last())
            .map(|t| t.line)
            .unwrap_or(0)
    }
    fn tokstr(&self) -> String {
        match self.peek() {
            Some(Tok::Ident(s)) | Some(Tok::Num(s)) => s.clone(),
            Some(Tok::Str(s)) => format!("\"{s}\""),
            Some(Tok::P(c)) => c.to_string(),
            None => "<end of file>".into(),
        }
    }
    fn err(&self, msg: impl Into<String>) -> EmuError {
        perr(self.line(), &self.tokstr(), msg)
    }
    fn next(&mut self) -> Option<&'a Tok> {
        let t = self.t.get(self.i).map(|t| &t.tok);
        self.i += 1;
        t
    }
    fn is_p(&self, c: char) -> bool {
        self.peek() == Some(&Tok::P(c))
    }
    fn eat_p(&mut self, c: char) -> bool {
        if self.is_p(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect_p(&mut self, c: char) -> Result<(), EmuError> {
        if self.eat_p(c) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{c}`")))
        }
    }
    fn ident(&mut self) -> Result<String, EmuError> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                self.i += 1;
                Ok(s.clone())
            }
            _ => Err(self.err("expected an identifier")),
        }
    }
    /// A count, array length or alignment in a declaration: 0 ..= 2^24, so that a negative or
    /// huge value is a parse error instead of a hang or an out-of-memory (found by fuzzing).
    fn size(&mut self) -> Result<usize, EmuError> {
        const MAX: i64 = 1 << 24;
        let v = self.num()?;
        if !(0..=MAX).contains(&v) {
            return Err(self.err(format!("size {v} out of range (0..={MAX})")));
        }
        Ok(v as usize)
    }

    fn num(&mut self) -> Result<i64, EmuError> {
        let neg = self.eat_p('-');
        match self.peek() {
            Some(Tok::Num(s)) => {
                let v = parse_int(s).ok_or_else(|| self.err("bad integer literal"))?;
                self.i += 1;
                Ok(if neg {
                    (v as i64).wrapping_neg()
                } else {
                    v as i64
                })
            }
            _ => Err(self.err("expected a number")),
        }
    }
    fn is_ident(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(x)) if x == s)
    }
    /// Skip the rest of the source line (for `.loc`, `.file`, ...).
    fn skip_line(&mut self, line: usize) {
        while self.i < self.t.len() && self.t[self.i].line == line {
            self.i += 1;
        }
    }
    fn skip_to_semi(&mut self) {
        while let Some(t) = self.next() {
            if *t == Tok::P(';') {
                break;
            }
        }
    }
}

pub(crate) fn parse_int(s: &str) -> Option<u64> {
    let s = s.trim_end_matches(['U', 'u']);
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        u64::from_str_radix(b, 2).ok()
    } else if s.len() > 1 && s.starts_with('0') && s.bytes().all(|c| c.is_ascii_digit()) {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse::<u64>().ok()
    }
}

pub(crate) fn parse(src: &str) -> Result<AModule, EmuError> {
    let toks = lex(src)?;
    let mut p = P { t: &toks, i: 0 };
    let mut m = AModule::default();
    while let Some(t) = p.peek() {
        let line = p.line();
        match t {
            Tok::Ident(s) => match s.as_str() {
                ".version" | ".address_size" => {
                    p.i += 1;
                    if let (".version", Some(Tok::Num(v))) = (s.as_str(), p.next()) {
                        m.version = v.clone();
                    }
                }
                ".target" => {
                    p.i += 1;
                    m.targets.push(p.ident()?);
                    while p.eat_p(',') {
                        m.targets.push(p.ident()?);
                    }
                }
                ".file" | ".loc" => {
                    p.i += 1;
                    p.skip_line(line);
                }
                ".section" => {
                    p.i += 1;
                    p.ident()?;
                    p.expect_p('{')?;
                    let mut depth = 1;
                    while depth > 0 {
                        match p.next() {
                            Some(Tok::P('{')) => depth += 1,
                            Some(Tok::P('}')) => depth -= 1,
                            None => return Err(p.err("unterminated .section")),
                            _ => {}
                        }
                    }
                }
                ".pragma" => p.skip_to_semi(),
                _ => parse_toplevel(&mut p, &mut m)?,
            },
            _ => return Err(p.err("unexpected token at module scope")),
        }
    }
    Ok(m)
}

fn parse_toplevel(p: &mut P, m: &mut AModule) -> Result<(), EmuError> {
    let mut is_extern = false;
    loop {
        if p.is_ident(".visible") || p.is_ident(".weak") || p.is_ident(".common") {
            p.i += 1;
        } else if p.is_ident(".extern") {
            is_extern = true;
            p.i += 1;
        } else {
            break;
        }
    }
    if p.is_ident(".entry") || p.is_ident(".func") {
        let is_entry = p.is_ident(".entry");
        let line = p.line();
        p.i += 1;
        let mut rets = Vec::new();
        if !is_entry && p.is_p('(') {
            rets = parse_param_list(p)?;
        }
        let name = p.ident()?;
        let params = if p.is_p('(') {
            parse_param_list(p)?
        } else {
            Vec::new()
        };
        // performance directives
        let (mut req_cluster, mut explicit_cluster) = (None, false);
        loop {
            match p.peek() {
                Some(Tok::Ident(s)) if s == ".reqnctapercluster" => {
                    p.i += 1;
                    let mut d = [1u32; 3];
                    for (k, x) in d.iter_mut().enumerate() {
                        if k > 0 && !p.eat_p(',') {
                            break;
                        }
                        *x = p.num()? as u32;
                    }
                    req_cluster = Some(d);
                }
                Some(Tok::Ident(s)) if s == ".explicitcluster" => {
                    p.i += 1;
                    explicit_cluster = true;
                }
                Some(Tok::Ident(s))
                    if matches!(
                        s.as_str(),
                        ".maxntid"
                            | ".reqntid"
                            | ".minnctapersm"
                            | ".maxnreg"
                            | ".maxclusterrank"
                            | ".reqnctapercluster"
                            | ".explicitcluster"
                    ) =>
                {
                    p.i += 1;
                    while matches!(p.peek(), Some(Tok::Num(_))) || p.is_p(',') {
                        p.i += 1;
                    }
                }
                Some(Tok::Ident(s)) if s == ".noreturn" => p.i += 1,
                Some(Tok::Ident(s)) if s == ".pragma" => p.skip_to_semi(),
                _ => break,
            }
        }
        let body = if p.eat_p(';') {
            None
        } else {
            p.expect_p('{')?;
            Some(parse_body(p)?)
        };
        m.funcs.push(AFunc {
            name,
            is_entry,
            line,
            rets,
            params,
            body,
            req_cluster,
            explicit_cluster,
        });
        return Ok(());
    }
    let mut d = parse_decl(p)?;
    d.is_extern = is_extern;
    m.vars.push(d);
    Ok(())
}

fn parse_param_list(p: &mut P) -> Result<Vec<VarDecl>, EmuError> {
    p.expect_p('(')?;
    let mut v = Vec::new();
    if p.eat_p(')') {
        return Ok(v);
    }
    loop {
        v.push(parse_decl_inner(p)?);
        if p.eat_p(')') {
            break;
        }
        p.expect_p(',')?;
    }
    Ok(v)
}

/// `.space [.align N] [.vN] .type name[<N>|[dims]] [= init] ;`
fn parse_decl(p: &mut P) -> Result<VarDecl, EmuError> {
    let first = parse_decl_inner(p)?;
    if p.eat_p(';') {
        return Ok(first);
    }
    Err(p.err("expected `;` after declaration"))
}

fn parse_decl_inner(p: &mut P) -> Result<VarDecl, EmuError> {
    let line = p.line();
    let space = p.ident()?;
    if !matches!(
        space.as_str(),
        ".reg" | ".local" | ".shared" | ".param" | ".global" | ".const" | ".tex"
    ) {
        return Err(perr(line, &space, "unknown directive or state space"));
    }
    let mut align = 0;
    let mut vec = 1;
    let mut ty = String::new();
    loop {
        match p.peek() {
            Some(Tok::Ident(s)) if s == ".align" => {
                p.i += 1;
                align = p.size()?;
            }
            Some(Tok::Ident(s)) if s == ".v2" || s == ".v4" || s == ".v8" => {
                vec = s[2..].parse().unwrap();
                p.i += 1;
            }
            Some(Tok::Ident(s)) if s.starts_with('.') && type_size(s).is_some() => {
                ty = s.clone();
                p.i += 1;
            }
            Some(Tok::Ident(s))
                if s == ".ptr"
                    || s == ".global"
                    || s == ".shared"
                    || s == ".const"
                    || s == ".local" =>
            {
                // `.param .u64 .ptr .global .align 8 name`
                p.i += 1;
            }
            _ => break,
        }
    }
    if ty.is_empty() {
        return Err(p.err("declaration without a type"));
    }
    let name = p.ident()?;
    let mut d = VarDecl {
        line,
        space,
        align,
        ty,
        vec,
        name,
        count: None,
        array: None,
        init: Vec::new(),
        is_extern: false,
    };
    if p.eat_p('<') {
        d.count = Some(p.size()?);
        p.expect_p('>')?;
    }
    while p.eat_p('[') {
        if p.eat_p(']') {
            d.array = Some(0);
            continue;
        }
        let n = p.size()?;
        p.expect_p(']')?;
        d.array = Some(array_len(p, d.array, n)?);
    }
    if p.eat_p('=') {
        d.init = parse_init(p)?;
    }
    // multiple names in one .reg declaration: `.reg .b32 a, b;` handled by caller via Decl list
    Ok(d)
}

fn parse_init(p: &mut P) -> Result<Vec<AOp>, EmuError> {
    let mut out = Vec::new();
    if p.eat_p('{') {
        loop {
            if p.is_p('{') {
                out.extend(parse_init(p)?);
            } else {
                out.push(parse_operand(p)?);
            }
            if p.eat_p('}') {
                break;
            }
            p.expect_p(',')?;
        }
    } else {
        out.push(parse_operand(p)?);
    }
    Ok(out)
}

fn parse_body(p: &mut P) -> Result<Vec<Stmt>, EmuError> {
    let mut out = Vec::new();
    let mut depth = 1;
    loop {
        let line = p.line();
        match p.peek() {
            None => return Err(p.err("unterminated function body")),
            Some(Tok::P('{')) => {
                p.i += 1;
                depth += 1;
                out.push(Stmt::Open);
            }
            Some(Tok::P('}')) => {
                p.i += 1;
                depth -= 1;
                if depth == 0 {
                    return Ok(out);
                }
                out.push(Stmt::Close);
            }
            Some(Tok::Ident(s)) if s == ".loc" || s == ".file" => {
                p.i += 1;
                p.skip_line(line);
            }
            Some(Tok::Ident(s)) if s == ".pragma" => p.skip_to_semi(),
            Some(Tok::Ident(s))
                if matches!(
                    s.as_str(),
                    ".reg" | ".local" | ".shared" | ".param" | ".global" | ".const"
                ) =>
            {
                let d = parse_decl_inner(p)?;
                let base = d.clone();
                out.push(Stmt::Decl(d));
                while p.eat_p(',') {
                    let name = p.ident()?;
                    let mut d2 = base.clone();
                    d2.name = name;
                    d2.count = None;
                    d2.array = None;
                    if p.eat_p('<') {
                        d2.count = Some(p.size()?);
                        p.expect_p('>')?;
                    }
                    while p.eat_p('[') {
                        let n = p.size()?;
                        p.expect_p(']')?;
                        d2.array = Some(array_len(p, d2.array, n)?);
                    }
                    out.push(Stmt::Decl(d2));
                }
                p.expect_p(';')?;
            }
            Some(Tok::Ident(s)) if p.t.get(p.i + 1).map(|t| &t.tok) == Some(&Tok::P(':')) => {
                let s = s.clone();
                p.i += 2;
                if p.is_ident(".callprototype") {
                    return Err(perr(
                        line,
                        &s,
                        "indirect calls (.callprototype) are not supported",
                    ));
                }
                out.push(Stmt::Label(s));
            }
            Some(Tok::P('@')) | Some(Tok::Ident(_)) => out.push(Stmt::Instr(parse_instr(p)?)),
            _ => return Err(p.err("unexpected token in function body")),
        }
    }
}

/// The element count of `x[a][b]...` so far times `n`, at most 2^24.
fn array_len(p: &P, so_far: Option<usize>, n: usize) -> Result<usize, EmuError> {
    so_far
        .unwrap_or(1)
        .checked_mul(n)
        .filter(|&v| v <= 1 << 24)
        .ok_or_else(|| p.err("array size out of range (at most 2^24 elements)"))
}

fn parse_instr(p: &mut P) -> Result<AInstr, EmuError> {
    let line = p.line();
    let mut guard = None;
    if p.eat_p('@') {
        let neg = p.eat_p('!');
        guard = Some((p.ident()?, neg));
    }
    let opcode = p.ident()?;
    if opcode.starts_with('.') {
        return Err(perr(line, &opcode, "unknown directive"));
    }
    let mut ops = Vec::new();
    if !p.eat_p(';') {
        loop {
            ops.push(parse_operand(p)?);
            if p.eat_p(';') {
                break;
            }
            p.expect_p(',')?;
        }
    }
    Ok(AInstr {
        line,
        guard,
        opcode,
        ops,
    })
}

/// Comma-separated operands up to `close` (the opening bracket already eaten).
fn parse_operand_list(p: &mut P, close: char) -> Result<Vec<AOp>, EmuError> {
    let mut v = Vec::new();
    if !p.eat_p(close) {
        loop {
            v.push(parse_operand(p)?);
            if p.eat_p(close) {
                break;
            }
            p.expect_p(',')?;
        }
    }
    Ok(v)
}

fn parse_operand(p: &mut P) -> Result<AOp, EmuError> {
    if p.eat_p('{') {
        return Ok(AOp::Vec(parse_operand_list(p, '}')?));
    }
    if p.eat_p('(') {
        return Ok(AOp::List(parse_operand_list(p, ')')?));
    }
    if p.eat_p('[') {
        let mut base = None;
        let mut off: i64 = 0;
        loop {
            if p.eat_p(']') {
                break;
            }
            if p.eat_p('+') {
                continue;
            }
            // `[tensorMap, {c0, c1, ...}]` (cp.async.bulk.tensor): the address and the
            // coordinates, as List[Addr, Vec].
            if p.eat_p(',') {
                p.expect_p('{')?;
                let coords = parse_operand_list(p, '}')?;
                p.expect_p(']')?;
                return Ok(AOp::List(vec![AOp::Addr(base, off), AOp::Vec(coords)]));
            }
            match p.peek() {
                Some(Tok::Ident(s)) => {
                    if base.is_some() {
                        return Err(p.err("address with two base names"));
                    }
                    base = Some(s.clone());
                    p.i += 1;
                }
                Some(Tok::Num(_)) | Some(Tok::P('-')) => {
                    off = off.wrapping_add(p.num()?);
                }
                _ => return Err(p.err("bad address expression")),
            }
        }
        return Ok(AOp::Addr(base, off));
    }
    if p.eat_p('!') {
        return Ok(AOp::Not(p.ident()?));
    }
    if p.eat_p('-') {
        return match p.next() {
            Some(Tok::Num(s)) => Ok(AOp::Num(format!("-{s}"))),
            _ => Err(p.err("expected a number after `-`")),
        };
    }
    match p.next() {
        Some(Tok::Ident(s)) => {
            if s == "_" && !p.is_p('|') {
                return Ok(AOp::Sink);
            }
            if p.eat_p('|') {
                let q = p.ident()?;
                return Ok(AOp::Pair(s.clone(), q));
            }
            // `sym+off` outside brackets (mov.u64 %rd, sym+8)
            if p.is_p('+') {
                if let Some(Tok::Num(_)) = p.t.get(p.i + 1).map(|t| &t.tok) {
                    p.i += 1;
                    let off = p.num()?;
                    return Ok(AOp::Addr(Some(s.clone()), off).into_symoff());
                }
            }
            Ok(AOp::Name(s.clone()))
        }
        Some(Tok::Num(s)) => Ok(AOp::Num(s.clone())),
        _ => {
            p.i -= 1;
            Err(p.err("bad operand"))
        }
    }
}

impl AOp {
    /// `sym+off` as a plain operand is represented as a List of [Name, Num] marker.
    fn into_symoff(self) -> AOp {
        match self {
            AOp::Addr(Some(s), off) => AOp::List(vec![AOp::Name(s), AOp::Num(off.to_string())]),
            o => o,
        }
    }
}
