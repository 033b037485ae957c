//! Every symbol that `cudarc` 0.19 can load resolves in the stand-in driver, and the ones it does
//! not emulate return `CUDA_ERROR_NOT_SUPPORTED`.
//!
//! The list is derived from the cudarc source this workspace builds against (located with `cargo
//! metadata`): every `load::<_F>("cu...")` in `src/driver/sys/mod.rs`, for all CUDA versions cudarc
//! supports. A cudarc upgrade that adds a symbol makes this test fail until the stand-in exports it.

use std::ffi::{c_char, c_int, c_void, CString};
use std::path::Path;
use std::process::Command;

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}
const RTLD_NOW: c_int = 2;
const RTLD_LOCAL: c_int = 0;

mod util;
use util::driver_path;

/// cudarc's `driver/sys/mod.rs`, from the package `cargo metadata` resolves for this workspace.
fn cudarc_sys_source() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only the host's packages: a fresh machine's cache holds no crate that only another platform
    // needs (Windows console crates), and `--offline` cannot fetch them.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let vv = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let vv = String::from_utf8_lossy(&vv.stdout).into_owned();
    let host = vv
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host triple")
        .trim()
        .to_string();
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(&host)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = String::from_utf8(out.stdout).expect("utf-8 metadata");
    // Find `"manifest_path":".../cudarc-0.19.x/Cargo.toml"` without a JSON dependency.
    let manifest = meta
        .split("\"manifest_path\":\"")
        .skip(1)
        .map(|s| &s[..s.find('"').expect("closing quote")])
        .find(|p| {
            Path::new(p)
                .parent()
                .and_then(|d| d.file_name())
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cudarc-0.19"))
        })
        .expect("cudarc 0.19 is in the workspace's dependency graph");
    let sys = Path::new(manifest)
        .parent()
        .unwrap()
        .join("src/driver/sys/mod.rs");
    std::fs::read_to_string(&sys).unwrap_or_else(|e| panic!("reading {}: {e}", sys.display()))
}

/// Every symbol name cudarc's dynamic loader asks for.
fn cudarc_symbols(src: &str) -> Vec<String> {
    let marker = "load::<_F>(\"";
    let mut names: Vec<String> = src
        .match_indices(marker)
        .map(|(i, _)| {
            let rest = &src[i + marker.len()..];
            rest[..rest.find('"').expect("closing quote")].to_string()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn open_driver() -> *mut c_void {
    let path = CString::new(driver_path().to_str().unwrap()).unwrap();
    // SAFETY: loading our own cdylib; its initialisers only set up Rust statics.
    let h = unsafe { dlopen(path.as_ptr(), RTLD_NOW | RTLD_LOCAL) };
    assert!(!h.is_null(), "dlopen of the stand-in driver failed");
    h
}

fn symbol(h: *mut c_void, name: &str) -> *mut c_void {
    let c = CString::new(name).unwrap();
    // SAFETY: `h` is a live handle from dlopen.
    unsafe { dlsym(h, c.as_ptr()) }
}

#[test]
fn every_symbol_cudarc_can_load_resolves() {
    let names = cudarc_symbols(&cudarc_sys_source());
    // cudarc 0.19.10 lists 514; a parse that finds far fewer is broken, not a pass.
    assert!(names.len() > 400, "only {} symbols parsed", names.len());
    assert!(names.iter().any(|n| n == "cuLaunchKernel"));
    let h = open_driver();
    let missing: Vec<&String> = names.iter().filter(|n| symbol(h, n).is_null()).collect();
    assert!(
        missing.is_empty(),
        "{} of {} cudarc symbols are missing from the stand-in driver (add them to \
         tools/ptx-emu-driver/src/unsupported.rs): {missing:?}",
        missing.len(),
        names.len()
    );
}

#[test]
fn unemulated_entry_points_return_not_supported() {
    let h = open_driver();
    for name in ptx_emu_driver::unsupported::NOT_EMULATED {
        let p = symbol(h, name);
        assert!(!p.is_null(), "{name} not exported");
        // SAFETY: the stubs take no arguments and return a u32 code (see unsupported.rs).
        let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(p) };
        assert_eq!(f(), 801, "{name} should return CUDA_ERROR_NOT_SUPPORTED");
    }
    assert!(ptx_emu_driver::unsupported::NOT_EMULATED.len() > 300);
}

#[test]
fn unsupported_list_holds_only_cudarc_symbols_and_no_duplicates() {
    let names = cudarc_symbols(&cudarc_sys_source());
    let list = ptx_emu_driver::unsupported::NOT_EMULATED;
    let mut sorted = list.to_vec();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), list.len(), "duplicate names in NOT_EMULATED");
    for n in list {
        assert!(
            names.iter().any(|c| c == n),
            "{n} is not a cudarc symbol (stale entry)"
        );
    }
}
