//! Atomic read-modify-write on one value (`atom`/`red`); the order guarantees are in
//! `docs/emulator.md` (*Blocks*).

use super::*;

pub(super) fn atom_op(op: AtomOp, ty: Ty, old: u64, b: u64, c: u64) -> u64 {
    let bits = ty.bits();
    let m = mask_bits(bits);
    match op {
        AtomOp::Exch => return b & m,
        AtomOp::Cas => return if old == b & m { c & m } else { old },
        _ => {}
    }
    if ty.is_float() {
        let fmt = ty.fmt().unwrap();
        return match op {
            AtomOp::Add => {
                let (hi, lo) = float::two_sum(fmt.to_f64(old), fmt.to_f64(b));
                float::round(fmt, hi, lo, Rnd::Rn)
            }
            AtomOp::Min | AtomOp::Max => {
                let x = fmt.to_f64(old);
                let y = fmt.to_f64(b);
                let r = if op == AtomOp::Min {
                    x.min(y)
                } else {
                    x.max(y)
                };
                if r == x {
                    old
                } else {
                    b & m
                }
            }
            _ => old,
        };
    }
    let signed = ty.signed();
    match op {
        AtomOp::Add => old.wrapping_add(b) & m,
        AtomOp::Exch | AtomOp::Cas => unreachable!("handled above"),
        AtomOp::And => old & b & m,
        AtomOp::Or => (old | b) & m,
        AtomOp::Xor => (old ^ b) & m,
        AtomOp::Min | AtomOp::Max => {
            let less = if signed {
                sext(b, bits) < sext(old, bits)
            } else {
                (b & m) < old
            };
            if (op == AtomOp::Min) == less {
                b & m
            } else {
                old
            }
        }
        AtomOp::Inc => {
            if old >= b & m {
                0
            } else {
                old + 1
            }
        }
        AtomOp::Dec => {
            if old == 0 || old > b & m {
                b & m
            } else {
                old - 1
            }
        }
    }
}
