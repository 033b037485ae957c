//! Arithmetic, conversion and rounding spot checks: each case runs one instruction in a tiny
//! generated kernel (operands loaded from params into %a %b %c, result %d stored to memory) and
//! compares the bits with a value worked out by hand from the PTX ISA semantics.
use ptx_emu::*;

fn f32b(x: f32) -> u64 {
    x.to_bits() as u64
}
fn f64b(x: f64) -> u64 {
    x.to_bits()
}

/// Run `body` (an instruction using %a %b %c → %d, or predicate %p) for one thread.
fn run1(body: &str, a: u64, b: u64, c: u64) -> u64 {
    let src = format!(
        ".version 8.4\n.target sm_80\n.address_size 64\n\
         .visible .entry t(.param .u64 out, .param .u64 pa, .param .u64 pb, .param .u64 pc)\n{{\n\
         \t.reg .b64 %a, %b, %c, %d, %o;\n\t.reg .pred %p, %q;\n\
         \tld.param.u64 %a, [pa];\n\tld.param.u64 %b, [pb];\n\tld.param.u64 %c, [pc];\n\tmov.u64 %d, 0;\n\
         \t{body}\n\
         \tld.param.u64 %o, [out];\n\tst.global.u64 [%o], %d;\n\tret;\n}}\n"
    );
    let m = Module::parse(&src).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert!(
        m.unsupported("t").is_empty(),
        "{body}: {:?}",
        m.unsupported("t")
    );
    let mut mem = Memory::new();
    let o = mem.alloc(8).unwrap();
    let cfg = LaunchConfig {
        grid: [1, 1, 1],
        block: [1, 1, 1],
        dynamic_smem_bytes: 0,
    };
    let mut res = [0u64; 2];
    for (r, level) in res.iter_mut().zip([Checks::Full, Checks::Fast]) {
        launch(
            &m,
            "t",
            &cfg,
            &[
                &o.to_le_bytes(),
                &a.to_le_bytes(),
                &b.to_le_bytes(),
                &c.to_le_bytes(),
            ],
            &mut mem,
            &LaunchOptions::with_checks(level),
        )
        .unwrap_or_else(|f| panic!("{body} ({level:?}): {f}"));
        let mut out = [0u8; 8];
        mem.read(o, &mut out).unwrap();
        *r = u64::from_le_bytes(out);
    }
    assert_eq!(
        res[0], res[1],
        "{body}: PTX_EMU_CHECKS=full and fast differ"
    );
    res[0]
}

fn check(cases: &[(&str, u64, u64, u64, u64)]) {
    let mut bad = Vec::new();
    for &(body, a, b, c, want) in cases {
        let got = run1(body, a, b, c);
        if got != want {
            bad.push(format!(
                "{body} (a={a:#x} b={b:#x} c={c:#x}): got {got:#x}, want {want:#x}"
            ));
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

const P: &str = "selp.u64 %d, 1, 0, %p;";

#[test]
fn float_rounding_modes() {
    let one_p = f32b(1.0 + 2f32.powi(-12)); // 0x3f800800
    let tiny = f32b(2f32.powi(-30));
    check(&[
        ("add.rn.f32 %d, %a, %b;", f32b(1.0), tiny, 0, 0x3f80_0000),
        ("add.rz.f32 %d, %a, %b;", f32b(1.0), tiny, 0, 0x3f80_0000),
        ("add.rp.f32 %d, %a, %b;", f32b(1.0), tiny, 0, 0x3f80_0001),
        (
            "add.rm.f32 %d, %a, %b;",
            f32b(-1.0),
            f32b(-(2f32.powi(-30))),
            0,
            0xbf80_0001,
        ),
        ("add.rm.f32 %d, %a, %b;", f32b(1.0), tiny, 0, 0x3f80_0000),
        ("sub.rp.f32 %d, %a, %b;", f32b(1.0), tiny, 0, 0x3f80_0000),
        ("sub.rm.f32 %d, %a, %b;", f32b(1.0), tiny, 0, 0x3f7f_ffff),
        // (1+2^-12)^2 = 1 + 2^-11 + 2^-24: exactly half an ulp above 1+2^-11 (ties to even)
        ("mul.rn.f32 %d, %a, %b;", one_p, one_p, 0, 0x3f80_1000),
        ("mul.rz.f32 %d, %a, %b;", one_p, one_p, 0, 0x3f80_1000),
        ("mul.rp.f32 %d, %a, %b;", one_p, one_p, 0, 0x3f80_1001),
        ("mul.f32 %d, %a, %b;", one_p, one_p, 0, 0x3f80_1000),
        // fma rounds once: (1+2^-12)^2 - (1+2^-11) = 2^-24 exactly
        (
            "fma.rn.f32 %d, %a, %b, %c;",
            one_p,
            one_p,
            f32b(-(1.0 + 2f32.powi(-11))),
            f32b(2f32.powi(-24)),
        ),
        (
            "mad.rn.f32 %d, %a, %b, %c;",
            one_p,
            one_p,
            f32b(-(1.0 + 2f32.powi(-11))),
            f32b(2f32.powi(-24)),
        ),
        (
            "div.rn.f32 %d, %a, %b;",
            f32b(1.0),
            f32b(3.0),
            0,
            0x3eaa_aaab,
        ),
        (
            "div.rz.f32 %d, %a, %b;",
            f32b(1.0),
            f32b(3.0),
            0,
            0x3eaa_aaaa,
        ),
        (
            "div.rm.f32 %d, %a, %b;",
            f32b(-1.0),
            f32b(3.0),
            0,
            0xbeaa_aaab,
        ),
        ("rcp.rn.f32 %d, %a;", f32b(3.0), 0, 0, 0x3eaa_aaab),
        ("sqrt.rn.f32 %d, %a;", f32b(2.0), 0, 0, 0x3fb5_04f3),
        ("sqrt.rz.f32 %d, %a;", f32b(2.0), 0, 0, 0x3fb5_04f3),
        ("sqrt.rp.f32 %d, %a;", f32b(2.0), 0, 0, 0x3fb5_04f4),
        (
            "fma.rn.sat.f32 %d, %a, %b, %c;",
            f32b(2.0),
            f32b(2.0),
            0,
            f32b(1.0),
        ),
        ("add.sat.f32 %d, %a, %b;", f32b(-2.0), f32b(1.0), 0, 0),
        (
            "add.rn.f64 %d, %a, %b;",
            f64b(1.0),
            f64b(2f64.powi(-60)),
            0,
            f64b(1.0),
        ),
        (
            "add.rp.f64 %d, %a, %b;",
            f64b(1.0),
            f64b(2f64.powi(-60)),
            0,
            f64b(1.0) + 1,
        ),
        (
            "fma.rz.f64 %d, %a, %b, %c;",
            f64b(1.0 + 2f64.powi(-30)),
            f64b(1.0 + 2f64.powi(-30)),
            f64b(0.0),
            f64b(1.0 + 2f64.powi(-29)),
        ),
        (
            "fma.rp.f64 %d, %a, %b, %c;",
            f64b(1.0 + 2f64.powi(-30)),
            f64b(1.0 + 2f64.powi(-30)),
            f64b(0.0),
            f64b(1.0 + 2f64.powi(-29)) + 1,
        ),
        // ftz flushes subnormal inputs and results
        ("add.ftz.f32 %d, %a, %b;", 1, 0, 0, 0),
        ("add.f32 %d, %a, %b;", 1, 0, 0, 1),
        ("mul.ftz.f32 %d, %a, %b;", f32b(1e-20), f32b(1e-20), 0, 0),
        // min/max: NaN loses, -0 < +0
        ("min.f32 %d, %a, %b;", 0x7fc0_0000, f32b(2.0), 0, f32b(2.0)),
        ("max.f32 %d, %a, %b;", f32b(-0.0), f32b(0.0), 0, f32b(0.0)),
        ("min.f32 %d, %a, %b;", f32b(0.0), f32b(-0.0), 0, f32b(-0.0)),
        ("neg.f32 %d, %a;", f32b(1.0), 0, 0, 0xbf80_0000),
        ("abs.f32 %d, %a;", f32b(-3.5), 0, 0, f32b(3.5)),
        (
            "copysign.f32 %d, %a, %b;",
            f32b(-1.0),
            f32b(2.0),
            0,
            f32b(-2.0),
        ),
    ]);
}

#[test]
fn half_and_packed_arithmetic() {
    let h = |x: f32| half::f16::from_f32(x).to_bits() as u64;
    let bh = |x: f32| half::bf16::from_f32(x).to_bits() as u64;
    check(&[
        (
            "add.rn.f16x2 %d, %a, %b;",
            h(1.0) | h(2.0) << 16,
            h(0.5) | h(0.25) << 16,
            0,
            h(1.5) | h(2.25) << 16,
        ),
        (
            "mul.rn.bf16x2 %d, %a, %b;",
            bh(3.0) | bh(-2.0) << 16,
            bh(0.5) | bh(4.0) << 16,
            0,
            bh(1.5) | bh(-8.0) << 16,
        ),
        (
            "fma.rn.bf16x2 %d, %a, %b, %c;",
            bh(3.0) | bh(1.0) << 16,
            bh(2.0) | bh(1.0) << 16,
            bh(1.0) | bh(-1.0) << 16,
            bh(7.0),
        ),
        (
            "fma.rn.f16 %d, %a, %b, %c;",
            h(1.5),
            h(2.0),
            h(0.25),
            h(3.25),
        ),
        // 1 + 2^-11 is a tie in f16 (ulp 2^-10): rn → even (1.0), rz → 1.0, rp → 1 + 2^-10
        (
            "add.rn.f16 %d, %a, %b;",
            h(1.0),
            h(2f32.powi(-11)),
            0,
            0x3c00,
        ),
        (
            "add.rz.f16 %d, %a, %b;",
            h(1.0),
            h(2f32.powi(-11)),
            0,
            0x3c00,
        ),
        (
            "add.rp.f16 %d, %a, %b;",
            h(1.0),
            h(2f32.powi(-11)),
            0,
            0x3c01,
        ),
        ("neg.bf16 %d, %a;", bh(1.0), 0, 0, bh(-1.0)),
        (
            "max.f16x2 %d, %a, %b;",
            h(1.0) | h(-5.0) << 16,
            h(2.0) | h(-6.0) << 16,
            0,
            h(2.0) | h(-5.0) << 16,
        ),
    ]);
}

#[test]
fn conversions() {
    let nan = 0x7fc0_0000u64;
    check(&[
        (
            "cvt.rn.f16.f32 %d, %a;",
            f32b(1.0 + 2f32.powi(-11)),
            0,
            0,
            0x3c00,
        ),
        (
            "cvt.rp.f16.f32 %d, %a;",
            f32b(1.0 + 2f32.powi(-11)),
            0,
            0,
            0x3c01,
        ),
        (
            "cvt.rn.f16.f32 %d, %a;",
            f32b(1.0 + 2f32.powi(-11) + 2f32.powi(-20)),
            0,
            0,
            0x3c01,
        ),
        ("cvt.rz.f16.f32 %d, %a;", f32b(70000.0), 0, 0, 0x7bff),
        ("cvt.rn.f16.f32 %d, %a;", f32b(70000.0), 0, 0, 0x7c00),
        (
            "cvt.rn.satfinite.f16.f32 %d, %a;",
            f32b(70000.0),
            0,
            0,
            0x7bff,
        ),
        ("cvt.rn.bf16.f32 %d, %a;", 0x3f80_8000, 0, 0, 0x3f80),
        ("cvt.rn.bf16.f32 %d, %a;", 0x3f81_8000, 0, 0, 0x3f82),
        // just above a tie rounds up (was double-rounded down through half::bf16::from_f64)
        ("cvt.rn.bf16.f32 %d, %a;", 0x3f80_8001, 0, 0, 0x3f81),
        ("cvt.rn.bf16.f32 %d, %a;", 0xbf80_8001, 0, 0, 0xbf81),
        ("cvt.rn.bf16.f32 %d, %a;", 0x3f80_7fff, 0, 0, 0x3f80),
        ("cvt.rn.f16.f32 %d, %a;", 0x3f80_1001, 0, 0, 0x3c01),
        ("cvt.rz.bf16.f32 %d, %a;", 0x3f81_ffff, 0, 0, 0x3f81),
        ("cvt.rn.relu.bf16.f32 %d, %a;", f32b(-1.0), 0, 0, 0),
        (
            "cvt.rn.f16x2.f32 %d, %a, %b;",
            f32b(1.0),
            f32b(2.0),
            0,
            0x3c00_4000,
        ),
        (
            "cvt.rn.bf16x2.f32 %d, %a, %b;",
            f32b(1.0),
            f32b(-2.0),
            0,
            0x3f80_c000,
        ),
        ("cvt.f32.f16 %d, %a;", 0x3c00, 0, 0, f32b(1.0)),
        ("cvt.f32.bf16 %d, %a;", 0xc040, 0, 0, f32b(-3.0)),
        ("cvt.f64.f32 %d, %a;", f32b(0.1), 0, 0, f64b(0.1f32 as f64)),
        ("cvt.rn.f32.f64 %d, %a;", f64b(0.1), 0, 0, f32b(0.1)),
        ("cvt.rz.f32.f64 %d, %a;", f64b(0.1), 0, 0, f32b(0.1) - 1),
        ("cvt.rzi.s32.f32 %d, %a;", f32b(-2.7), 0, 0, 0xffff_fffe),
        ("cvt.rmi.s32.f32 %d, %a;", f32b(-2.7), 0, 0, 0xffff_fffd),
        ("cvt.rni.s32.f32 %d, %a;", f32b(2.5), 0, 0, 2),
        ("cvt.rni.s32.f32 %d, %a;", f32b(3.5), 0, 0, 4),
        ("cvt.rpi.s32.f32 %d, %a;", f32b(2.1), 0, 0, 3),
        ("cvt.rzi.s32.f32 %d, %a;", f32b(1e10), 0, 0, 0x7fff_ffff),
        ("cvt.rzi.s32.f32 %d, %a;", f32b(-1e10), 0, 0, 0x8000_0000),
        ("cvt.rzi.s32.f32 %d, %a;", nan, 0, 0, 0),
        ("cvt.rzi.u32.f32 %d, %a;", f32b(-5.0), 0, 0, 0),
        ("cvt.rni.u8.f32 %d, %a;", f32b(300.0), 0, 0, 255),
        ("cvt.rzi.s64.f64 %d, %a;", f64b(-3.9), 0, 0, (-3i64) as u64),
        ("cvt.rni.f32.f32 %d, %a;", f32b(2.5), 0, 0, f32b(2.0)),
        ("cvt.rmi.f32.f32 %d, %a;", f32b(-2.5), 0, 0, f32b(-3.0)),
        ("cvt.rn.f32.s32 %d, %a;", 16_777_217, 0, 0, 0x4b80_0000),
        ("cvt.rz.f32.u32 %d, %a;", 0xffff_ffff, 0, 0, 0x4f7f_ffff),
        ("cvt.rn.f32.u32 %d, %a;", 0xffff_ffff, 0, 0, 0x4f80_0000),
        ("cvt.rn.f32.s64 %d, %a;", (-1i64) as u64, 0, 0, f32b(-1.0)),
        (
            "cvt.rn.f64.u64 %d, %a;",
            u64::MAX,
            0,
            0,
            f64b(18446744073709551616.0),
        ),
        ("cvt.sat.f32.f32 %d, %a;", f32b(1.5), 0, 0, f32b(1.0)),
        ("cvt.sat.f32.f32 %d, %a;", f32b(-0.5), 0, 0, 0),
        ("cvt.sat.f32.f32 %d, %a;", nan, 0, 0, 0),
        ("cvt.s32.s8 %d, %a;", 0x80, 0, 0, 0xffff_ff80),
        ("cvt.u32.u8 %d, %a;", 0x1ff, 0, 0, 0xff),
        ("cvt.u16.u32 %d, %a;", 0x12345, 0, 0, 0x2345),
        ("cvt.sat.s8.s32 %d, %a;", 300, 0, 0, 127),
        ("cvt.sat.u8.s32 %d, %a;", (-3i32) as u32 as u64, 0, 0, 0),
        ("cvt.s64.s32 %d, %a;", 0xffff_ffff, 0, 0, u64::MAX),
        ("cvt.u64.u32 %d, %a;", 0xffff_ffff, 0, 0, 0xffff_ffff),
        ("cvt.u32.u64 %d, %a;", 0x1_2345_6789, 0, 0, 0x2345_6789),
    ]);
}

#[test]
fn comparisons_and_predicates() {
    let nan = 0x7fc0_0000u64;
    let s = |op: &str| format!("setp.{op} %p, %a, %b; {P}");
    let cases: Vec<(String, u64, u64, u64, u64)> = vec![
        (s("lt.f32"), nan, f32b(1.0), 0, 0),
        (s("ltu.f32"), nan, f32b(1.0), 0, 1),
        (s("ne.f32"), nan, f32b(1.0), 0, 0),
        (s("neu.f32"), nan, nan, 0, 1),
        (s("equ.f32"), f32b(1.0), f32b(1.0), 0, 1),
        (s("geu.f32"), f32b(0.5), f32b(1.0), 0, 0),
        (s("num.f32"), f32b(0.5), nan, 0, 0),
        (s("nan.f32"), f32b(0.5), nan, 0, 1),
        (s("eq.f32"), f32b(0.0), f32b(-0.0), 0, 1),
        (s("lt.s32"), 0xffff_ffff, 1, 0, 1),
        (s("lo.u32"), 0xffff_ffff, 1, 0, 0),
        (s("hi.u32"), 0xffff_ffff, 1, 0, 1),
        (s("ls.u64"), 5, 5, 0, 1),
        (s("gt.s64"), (-1i64) as u64, 0, 0, 0),
        (s("ge.u16"), 0x1_0000, 1, 0, 0),
        ("setp.lt.and.s32 %p, %a, %b, %q; selp.u64 %d, 1, 0, %p;".into(), 1, 2, 0, 0),
        ("setp.eq.s32 %q, %c, 7; setp.lt.or.s32 %p, %a, %b, %q; selp.u64 %d, 1, 0, %p;".into(), 3, 2, 7, 1),
        ("setp.eq.s32 %q, %c, 7; setp.lt.xor.s32 %p, %a, %b, !%q; selp.u64 %d, 1, 0, %p;".into(), 1, 2, 7, 1),
        ("setp.lt.s32 %p|%q, %a, %b; selp.u64 %d, 1, 0, %q;".into(), 1, 2, 0, 0),
        ("setp.lt.s32 %p, %a, %b; not.pred %q, %p; selp.u64 %d, 1, 0, %q;".into(), 1, 2, 0, 0),
        ("setp.lt.s32 %p, %a, %b; setp.lt.s32 %q, %b, %a; xor.pred %p, %p, %q; selp.u64 %d, 1, 0, %p;".into(), 1, 2, 0, 1),
        ("setp.gt.s32 %p, %a, %b; @%p mov.u64 %d, 11; @!%p mov.u64 %d, 22;".into(), 1, 2, 0, 22),
        ("testp.notanumber.f32 %p, %a; selp.u64 %d, 1, 0, %p;".into(), nan, 0, 0, 1),
    ];
    let refs: Vec<(&str, u64, u64, u64, u64)> = cases
        .iter()
        .map(|(b, a, bb, c, w)| (b.as_str(), *a, *bb, *c, *w))
        .collect();
    check(&refs);
}

#[test]
fn integer_and_bit_operations() {
    let m32 = |x: i64| (x as u64) & 0xffff_ffff;
    check(&[
        ("add.s32 %d, %a, %b;", 0xffff_ffff, 2, 0, 1),
        ("add.sat.s32 %d, %a, %b;", 0x7fff_ffff, 1, 0, 0x7fff_ffff),
        ("sub.sat.s32 %d, %a, %b;", 0x8000_0000, 1, 0, 0x8000_0000),
        ("mul.lo.s32 %d, %a, %b;", 0x10000, 0x10000, 0, 0),
        ("mul.hi.s32 %d, %a, %b;", 0x8000_0000, 2, 0, 0xffff_ffff),
        (
            "mul.hi.u32 %d, %a, %b;",
            0xffff_ffff,
            0xffff_ffff,
            0,
            0xffff_fffe,
        ),
        ("mul.wide.s32 %d, %a, %b;", m32(-3), 5, 0, (-15i64) as u64),
        ("mul.wide.u32 %d, %a, %b;", 0xffff_ffff, 2, 0, 0x1_ffff_fffe),
        ("mul.wide.u16 %d, %a, %b;", 0xffff, 0xffff, 0, 0xfffe_0001),
        ("mad.lo.s32 %d, %a, %b, %c;", 3, 4, m32(-20), m32(-8)),
        (
            "mad.wide.u32 %d, %a, %b, %c;",
            0xffff_ffff,
            2,
            5,
            0x2_0000_0003,
        ),
        (
            "mad.hi.u32 %d, %a, %b, %c;",
            0xffff_ffff,
            0xffff_ffff,
            2,
            0x1_0000_0000 & 0xffff_ffff,
        ),
        ("div.s32 %d, %a, %b;", m32(-7), 2, 0, m32(-3)),
        ("rem.s32 %d, %a, %b;", m32(-7), 2, 0, m32(-1)),
        ("div.u32 %d, %a, %b;", 7, 2, 0, 3),
        ("rem.u64 %d, %a, %b;", 17, 5, 0, 2),
        ("min.s32 %d, %a, %b;", m32(-1), 1, 0, m32(-1)),
        ("min.u32 %d, %a, %b;", m32(-1), 1, 0, 1),
        ("max.s16 %d, %a, %b;", 0x8000, 1, 0, 1),
        ("abs.s32 %d, %a;", m32(-5), 0, 0, 5),
        ("neg.s32 %d, %a;", 5, 0, 0, m32(-5)),
        ("shl.b32 %d, %a, %b;", 1, 33, 0, 0),
        ("shl.b64 %d, %a, %b;", 1, 40, 0, 1 << 40),
        ("shr.s32 %d, %a, %b;", 0x8000_0000, 40, 0, 0xffff_ffff),
        ("shr.u32 %d, %a, %b;", 0x8000_0000, 31, 0, 1),
        ("shr.s64 %d, %a, %b;", 1 << 63, 3, 0, 0xf000_0000_0000_0000),
        (
            "and.b32 %d, %a, %b;",
            0xff00_ff00,
            0x0ff0_0ff0,
            0,
            0x0f00_0f00,
        ),
        (
            "or.b32 %d, %a, %b;",
            0xff00_0000,
            0x0000_00ff,
            0,
            0xff00_00ff,
        ),
        ("xor.b64 %d, %a, %b;", u64::MAX, 1, 0, u64::MAX - 1),
        ("not.b32 %d, %a;", 0x0f0f_0f0f, 0, 0, 0xf0f0_f0f0),
        ("cnot.b32 %d, %a;", 0, 0, 0, 1),
        ("popc.b32 %d, %a;", 0xf0f0_f0f0, 0, 0, 16),
        ("popc.b64 %d, %a;", u64::MAX, 0, 0, 64),
        ("clz.b32 %d, %a;", 0x0001_0000, 0, 0, 15),
        ("clz.b64 %d, %a;", 0, 0, 0, 64),
        ("brev.b32 %d, %a;", 1, 0, 0, 0x8000_0000),
        ("bfind.u32 %d, %a;", 0x0001_0000, 0, 0, 16),
        ("bfind.s32 %d, %a;", 0xffff_ffff, 0, 0, 0xffff_ffff),
        ("bfind.u32 %d, %a;", 0, 0, 0, 0xffff_ffff),
        ("bfe.u32 %d, %a, %b, %c;", 0xf0f0_f0f0, 4, 8, 0x0f),
        ("bfe.s32 %d, %a, %b, %c;", 0x0000_0f00, 8, 4, 0xffff_ffff),
        ("bfe.s32 %d, %a, %b, %c;", 0x0000_0700, 8, 4, 7),
        ("bfe.u32 %d, %a, %b, %c;", 0xffff_ffff, 28, 8, 0xf),
        (
            "bfi.b32 %d, %a, %b, %c, 8;",
            0xab,
            0xffff_0000,
            8,
            0xffff_ab00,
        ),
        (
            "prmt.b32 %d, %a, %b, %c;",
            0x3322_1100,
            0x7766_5544,
            0x5140,
            0x5511_4400,
        ),
        ("prmt.b32 %d, %a, %b, %c;", 0x0000_0080, 0, 0x4448, 0xff),
        ("shf.l.wrap.b32 %d, %a, %b, %c;", 0x8000_0001, 1, 4, 0x18),
        ("shf.r.wrap.b32 %d, %a, %b, %c;", 0x10, 0x1, 36, 0x1000_0001),
        ("shf.r.clamp.b32 %d, %a, %b, %c;", 1, 2, 40, 2),
        (
            "lop3.b32 %d, %a, %b, %c, 0xe8;",
            0b1100,
            0b1010,
            0b1001,
            0b1000,
        ),
        (
            "lop3.b32 %d, %a, %b, %c, 0x96;",
            0b1100,
            0b1010,
            0b1001,
            0b1100 ^ 0b1010 ^ 0b1001,
        ),
        ("selp.b32 %d, %a, %b, 1;", 5, 6, 0, 5),
        ("sad.u32 %d, %a, %b, %c;", 3, 10, 100, 107),
        (
            "dp4a.u32.u32 %d, %a, %b, %c;",
            0x0102_0304,
            0x0101_0101,
            10,
            20,
        ),
        (
            "dp4a.s32.s32 %d, %a, %b, %c;",
            0xff02_0304,
            0x0101_0101,
            0,
            8,
        ),
        ("mov.b64 %d, {%a, %b};", 0x1111, 0x2222, 0, 0x2222_0000_1111),
        ("mov.b32 %d, {%a, %b};", 0x1111, 0x2222, 0, 0x2222_1111),
    ]);
}

#[test]
fn approximate_math() {
    check(&[
        ("ex2.approx.f32 %d, %a;", f32b(3.0), 0, 0, f32b(8.0)),
        ("ex2.approx.ftz.f32 %d, %a;", f32b(-1.0), 0, 0, f32b(0.5)),
        ("lg2.approx.f32 %d, %a;", f32b(8.0), 0, 0, f32b(3.0)),
        (
            "lg2.approx.f32 %d, %a;",
            f32b(0.0),
            0,
            0,
            f32b(f32::NEG_INFINITY),
        ),
        ("rsqrt.approx.f32 %d, %a;", f32b(4.0), 0, 0, f32b(0.5)),
        ("rcp.approx.ftz.f32 %d, %a;", f32b(4.0), 0, 0, f32b(0.25)),
        ("sqrt.approx.f32 %d, %a;", f32b(16.0), 0, 0, f32b(4.0)),
        ("tanh.approx.f32 %d, %a;", f32b(0.0), 0, 0, 0),
        ("sin.approx.f32 %d, %a;", f32b(0.0), 0, 0, 0),
        ("cos.approx.f32 %d, %a;", f32b(0.0), 0, 0, f32b(1.0)),
        (
            "div.approx.f32 %d, %a, %b;",
            f32b(1.0),
            f32b(4.0),
            0,
            f32b(0.25),
        ),
        (
            "div.full.f32 %d, %a, %b;",
            f32b(1.0),
            f32b(3.0),
            0,
            0x3eaa_aaab,
        ),
        ("rcp.rn.f64 %d, %a;", f64b(3.0), 0, 0, f64b(1.0 / 3.0)),
    ]);
}

#[test]
fn unsupported_modifiers_are_rejected() {
    for body in [
        "mul24.lo.s32 %d, %a, %b;",
        "add.cc.u32 %d, %a, %b;",
        "prmt.b32.f4e %d, %a, %b, %c;",
        "cvt.rna.tf32.f32 %d, %a;",
        "min.NaN.f32 %d, %a, %b;",
        "bar.sync 1;",
        "ld.global.b128 %d, [%a];",
        "ld.global.v8.f32 {%d, %d, %d, %d, %d, %d, %d, %d}, [%a];",
        "setp.lt.f16x2 %p|%q, %a, %b;",
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%d, %d, %d, %d}, {%a, %a, %a, %a}, {%b, %b}, {%c, %c, %c, %c};",
    ] {
        let src = format!(
            ".version 8.4\n.target sm_80\n.address_size 64\n.visible .entry t()\n{{\n\t.reg .b64 %a, %b, %c, %d;\n\t.reg .pred %p, %q;\n\t{body}\n\tret;\n}}\n"
        );
        let m = Module::parse(&src).unwrap_or_else(|e| panic!("{body}: {e}"));
        let u = m.unsupported("t");
        assert_eq!(u.len(), 1, "{body} must be reported unsupported");
        assert_eq!(u[0].0, 8, "{body}: line");
        let mut mem = Memory::new();
        let cfg = LaunchConfig { grid: [1, 1, 1], block: [32, 1, 1], dynamic_smem_bytes: 0 };
        let f = launch(&m, "t", &cfg, &[], &mut mem, &LaunchOptions::default()).unwrap_err();
        assert_eq!(f.kind, FaultKind::Unsupported, "{body}");
        assert_eq!(f.ptx_line, 8);
        assert_eq!(f.instruction, body);
    }
}
