//! Give the cdylib the soname of the real driver so that, once it is loaded by path, a later
//! `dlopen("libcuda.so")` (cudarc's first candidate) returns it instead of searching the disk.
//!
//! Also embeds the pinned ptxas reports (`kernels/reports/<name>.txt`) keyed by a hash of the
//! committed PTX they describe (`kernels/ptx/<name>.ptx`): a profiled launch
//! (`PTX_EMU_STATS`) of a module whose text is exactly a committed one reports
//! `launch__registers_per_thread` from them.
use std::fmt::Write;
use std::path::Path;

/// FNV-1a, 64 bit (the same function is in `src/profile.rs`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcuda.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernels");
    println!("cargo:rerun-if-changed={}", root.join("reports").display());
    println!("cargo:rerun-if-changed={}", root.join("ptx").display());
    let mut out = String::from("pub(crate) const REPORTS: &[(u64, &str)] = &[\n");
    let mut names: Vec<_> = std::fs::read_dir(root.join("reports"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    for report in names {
        let Some(stem) = report.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let ptx = root.join("ptx").join(format!("{stem}.ptx"));
        let (Ok(ptx_text), Ok(rep)) = (std::fs::read(&ptx), std::fs::read_to_string(&report))
        else {
            continue;
        };
        println!("cargo:rerun-if-changed={}", report.display());
        println!("cargo:rerun-if-changed={}", ptx.display());
        writeln!(out, "    ({:#x}, {:?}),", fnv1a(&ptx_text), rep).unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("reports.rs");
    std::fs::write(dest, out).unwrap();
}
