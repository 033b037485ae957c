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
