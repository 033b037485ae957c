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
//!
//! Layout: this file holds the decoded forms; `decode.rs` turns an [`Instr`] into its [`FOp`],
//! `ops.rs` runs the register-only forms warp-wide, `ldst.rs` the whole-warp `ld`/`st` forms
//! (a method of [`Block`]), and `tests.rs` checks them against the general path.

use super::*;

mod decode;
mod ldst;
mod ops;
#[cfg(test)]
mod tests;

pub(crate) use decode::decode_fast;
pub(super) use ops::exec_fast;

/// One register row.
type Row = [u64; 32];

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
