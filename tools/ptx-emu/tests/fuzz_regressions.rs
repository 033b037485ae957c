//! Inputs the `ptx` fuzz target found (fuzz/regressions/ptx/): each must be a prompt parse
//! error, never a hang, an out-of-memory or a panic.

use std::time::{Duration, Instant};

fn kernel(decl: &str) -> String {
    format!(
        ".version 8.4\n.target sm_80\n.address_size 64\n.visible .entry k()\n{{\n\t{decl}\n\tret;\n}}\n"
    )
}

fn rejected_quickly(ptx: &str, needle: &str) {
    let t = Instant::now();
    let e = match ptx_emu::Module::parse(ptx) {
        Ok(_) => panic!("accepted:\n{ptx}"),
        Err(e) => e.to_string(),
    };
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(e.contains(needle), "{e}");
}

#[test]
fn negative_register_count_is_an_error_not_a_hang() {
    // The fuzzer's input: `%p<-20>` wrapped to 2^64 − 20 registers.
    let found = include_str!("../../../fuzz/regressions/ptx/timeout-negative-reg-count.ptx");
    rejected_quickly(found, "out of range");
    rejected_quickly(&kernel(".reg .pred %p<-20>;"), "out of range");
    rejected_quickly(&kernel(".reg .b32 %a, %q<-1>;"), "out of range");
}

#[test]
fn huge_counts_and_arrays_are_errors() {
    rejected_quickly(&kernel(".reg .b32 %r<99999999999>;"), "out of range");
    rejected_quickly(
        &kernel(".local .align 4 .b8 buf[4294967296][4294967296];"),
        "out of range",
    );
    rejected_quickly(&kernel(".local .align -8 .b8 buf[4];"), "out of range");
}

#[test]
fn ordinary_declarations_still_parse() {
    let m = ptx_emu::Module::parse(&kernel(
        ".reg .b32 %r<4>;\n\t.local .align 4 .b8 buf[16][2];",
    ))
    .unwrap();
    assert_eq!(m.kernel_names(), vec!["k".to_string()]);
}

#[test]
fn millions_of_declared_registers_parse_in_constant_time() {
    // The fuzzer's input: `.reg .pred %p<14324555>;` took 32 s (one map entry per register).
    // A `%p<N>` declaration is one range entry now, whatever N.
    for ptx in [
        include_str!("../../../fuzz/regressions/ptx/timeout-14m-predicates.ptx").to_string(),
        kernel(".reg .b32 %r<16777216>;\n\tmov.u32 %r16777215, 7;"),
    ] {
        let t = Instant::now();
        let m = ptx_emu::Module::parse(&ptx).unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
        assert_eq!(m.kernel_names().len(), 1);
    }
}

#[test]
fn range_registers_resolve_by_canonical_index_only() {
    // `%r<4>` declares %r0 … %r3: %r4, %r01 and %r are unknown names (the instruction is marked
    // unsupported, and `launch` fails on it), and an inner scope's declaration shadows the outer
    // one.
    let problems = |body: &str| {
        let m = ptx_emu::Module::parse(&kernel(body)).unwrap();
        m.unsupported("k")
    };
    assert!(problems(".reg .b32 %r<4>;\n\tmov.u32 %r3, 1;").is_empty());
    for bad in ["mov.u32 %r4, 1;", "mov.u32 %r01, 1;", "mov.u32 %r, 1;"] {
        let p = problems(&format!(".reg .b32 %r<4>;\n\t{bad}"));
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert!(p[0].2.contains("unknown name"), "{bad}: {p:?}");
    }
    assert!(
        problems(".reg .b32 %r<2>;\n\t{\n\t.reg .b64 %r<8>;\n\tmov.u64 %r7, 1;\n\t}").is_empty()
    );
}

#[test]
fn a_launch_with_millions_of_registers_is_refused_not_allocated() {
    // 16 M registers × 32 lanes × 8 bytes = 4 GiB per warp: the launch names the problem.
    let m = ptx_emu::Module::parse(&kernel(".reg .b32 %r<16777216>;\n\tmov.u32 %r16777215, 7;"))
        .unwrap();
    let mut mem = ptx_emu::Memory::default();
    let cfg = ptx_emu::LaunchConfig {
        grid: [1, 1, 1],
        block: [32, 1, 1],
        dynamic_smem_bytes: 0,
    };
    let opts = ptx_emu::LaunchOptions::default();
    let e = ptx_emu::launch(&m, "k", &cfg, &[], &mut mem, &opts)
        .expect_err("launched")
        .to_string();
    assert!(e.contains("virtual registers"), "{e}");
    assert!(e.contains("declare fewer registers"), "{e}");
}
