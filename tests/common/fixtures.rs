//! The committed conformance fixtures (`tests/fixtures/<name>/case.safetensors`, from
//! `tools/fixtures`) and the one loop that checks them.

use std::path::{Path, PathBuf};

use cyberhost_engine::conformance::{check_fixture, FixtureResult};

/// `tests/fixtures`.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture directory (one holding `case.safetensors`) that `keep` accepts, sorted.
pub fn dirs(keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let root = root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.safetensors").is_file() && keep(p))
        .collect();
    dirs.sort();
    dirs
}

/// Runs [`check_fixture`] on each of `dirs`, printing every error and handing each result to
/// `each` (which may assert on it), and fails naming every fixture over its tolerance or in error.
pub fn check_each(what: &str, dirs: &[PathBuf], mut each: impl FnMut(&Path, &FixtureResult)) {
    let mut failures = Vec::new();
    for d in dirs {
        match check_fixture(d) {
            Ok(r) => {
                each(d, &r);
                eprintln!(
                    "{} {}: rel L2 {:.3e} (tolerance {:.1e})",
                    d.display(),
                    r.component,
                    r.rel_l2,
                    r.tolerance
                );
                if !r.ok() {
                    failures.push(format!(
                        "{} {}: rel L2 {:.3e} > {:.1e}",
                        d.display(),
                        r.component,
                        r.rel_l2,
                        r.tolerance
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e:#}", d.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{what} fixture failures:\n{}",
        failures.join("\n")
    );
}
