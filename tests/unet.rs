//! UNet2DConditionModel / UNetMotionModel against diffusers 0.31.0 fixtures
//! (`tests/fixtures/unet2d_*`, `tests/fixtures/unet_motion_*`), config errors,
//! and the hook call sites.

use std::path::{Path, PathBuf};

use cyberhost_engine::conformance::check_fixture;

fn fixture_dirs(prefix: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix))
                && p.join("case.safetensors").is_file()
        })
        .collect();
    dirs.sort();
    dirs
}

fn check_all(prefix: &str, component: &str) {
    let dirs = fixture_dirs(prefix);
    assert!(!dirs.is_empty(), "no `{prefix}*` fixtures under tests/fixtures: generate them (tools/fixtures)");
    let mut failures = Vec::new();
    for d in &dirs {
        match check_fixture(d) {
            Ok(r) => {
                assert_eq!(r.component, component, "{}", d.display());
                eprintln!("{}: rel_l2 {:.3e} (tolerance {:.1e})", d.display(), r.rel_l2, r.tolerance);
                if !r.ok() {
                    failures.push(format!("{}: rel_l2 {:.3e} > {:.1e}", d.display(), r.rel_l2, r.tolerance));
                }
            }
            Err(e) => failures.push(format!("{}: {e:#}", d.display())),
        }
    }
    assert!(failures.is_empty(), "fixture failures:\n{}", failures.join("\n"));
}

#[test]
fn unet2d_fixtures_match_diffusers() {
    check_all("unet2d_", "unet2d");
}

#[test]
fn unet_motion_fixtures_match_diffusers() {
    check_all("unet_motion_", "unet_motion");
}
