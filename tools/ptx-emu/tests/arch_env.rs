//! `PTX_EMU_ARCH` at launch: the shared-memory limit and the `.target` check follow the
//! emulated architecture. One test (it sets the variable, which the emulator reads per launch).
#![allow(clippy::result_large_err)]
mod common;
use common::*;
use ptx_emu::*;

#[test]
fn arch_sets_shared_limit_and_target_check() {
    let hopper = module("hopper.ptx");
    let sm80 = module("add.ptx");
    let opts = LaunchOptions::with_checks(Checks::Fast);
    let mut mem = Memory::new();
    let out = mem.alloc(14 * 8).unwrap();
    let p = [p64(out)];
    let run = |m: &Module, k: &str, smem: u32, mem: &mut Memory| {
        let c = cfg([1, 1, 1], [1, 1, 1], smem);
        launch(m, k, &c, &slices(&p), mem, &opts)
    };
    for (arch, limit) in [
        ("sm_90a", 227 * 1024),
        ("sm_80", 163 * 1024),
        ("sm_89", 99 * 1024),
    ] {
        std::env::set_var("PTX_EMU_ARCH", arch);
        // mbar_states has 8 bytes of static shared memory; the dynamic region starts at 16
        let ok = run(&hopper, "mbar_states", limit - 16, &mut mem);
        let too_big = run(&hopper, "mbar_states", limit - 15, &mut mem);
        if arch == "sm_90a" {
            ok.unwrap_or_else(|f| panic!("{arch}: {f}"));
        } else {
            // sm_90a PTX does not run on an older architecture
            let f = ok.unwrap_err();
            assert_eq!(f.kind, FaultKind::Unsupported, "{arch}: {f}");
            assert!(f.detail.contains("sm_90a"), "{f}");
        }
        let f = too_big.unwrap_err();
        assert_eq!(f.kind, FaultKind::InvalidParams, "{arch}: {f}");
        assert!(f.detail.contains(&format!("the limit is {limit}")), "{f}");
    }
    // sm_80 PTX runs everywhere
    let names = sm80.kernel_names();
    assert!(!names.is_empty());
    assert!(sm80.check_arch(Arch::Sm80).is_ok() && sm80.check_arch(Arch::Sm90a).is_ok());
    std::env::remove_var("PTX_EMU_ARCH");
}
