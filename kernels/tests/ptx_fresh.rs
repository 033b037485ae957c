//! The committed PTX must come from the committed sources: every `kernels/cuda/*.cu` and the local
//! headers it includes hash to what `kernels/manifest.json` recorded when `tools/kernels/build_ptx.py`
//! last ran, and every PTX file hashes to its manifest entry. Needs no CUDA toolchain.
//! Fix for a failure: `tools/kernels/setup_toolchain.sh && tools/kernels/build_ptx.py`, then commit
//! `kernels/ptx`, `kernels/reports` and `kernels/manifest.json`.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Transitive `#include "x"` closure within kernels/cuda (what build_ptx.py hands NVRTC).
fn local_includes(src: &str, cuda: &Path, seen: &mut BTreeSet<String>) {
    for line in src.lines() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix('#') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("include") else {
            continue;
        };
        let rest = rest.trim();
        if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
            if seen.insert(name.to_string()) {
                let text = std::fs::read_to_string(cuda.join(name)).unwrap_or_else(|e| {
                    panic!("#include \"{name}\" not found in kernels/cuda: {e}")
                });
                local_includes(&text, cuda, seen);
            }
        }
    }
}

const FIX: &str = "run tools/kernels/setup_toolchain.sh && tools/kernels/build_ptx.py and commit kernels/ptx, kernels/reports, kernels/manifest.json";

#[test]
fn ptx_is_fresh() {
    let root = root();
    let cuda = root.join("cuda");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("manifest.json")).expect("kernels/manifest.json"),
    )
    .expect("manifest json");
    let kernels = manifest["kernels"].as_object().expect("manifest.kernels");

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&cuda)
        .expect("kernels/cuda")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    sources.sort();
    assert!(!sources.is_empty());

    let mut problems = Vec::new();
    let mut expected_ptx = BTreeSet::new();
    for cu in &sources {
        let name = cu.file_stem().unwrap().to_str().unwrap().to_string();
        let Some(entry) = kernels.get(&name) else {
            problems.push(format!(
                "kernels/cuda/{name}.cu has no manifest entry (never built)"
            ));
            continue;
        };
        if entry["source_sha256"].as_str() != Some(sha256_file(cu).as_str()) {
            problems.push(format!(
                "kernels/cuda/{name}.cu changed since its PTX was built"
            ));
        }
        let mut includes = BTreeSet::new();
        local_includes(&std::fs::read_to_string(cu).unwrap(), &cuda, &mut includes);
        let recorded: BTreeMap<String, String> = entry["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if includes.iter().cloned().collect::<BTreeSet<_>>() != recorded.keys().cloned().collect() {
            problems.push(format!(
                "{name}: includes {includes:?} but the manifest recorded {:?}",
                recorded.keys()
            ));
        }
        for (h, sha) in &recorded {
            let path = cuda.join(h);
            if !path.exists() || &sha256_file(&path) != sha {
                problems.push(format!(
                    "kernels/cuda/{h} (included by {name}.cu) changed since its PTX was built"
                ));
            }
        }
        for (ptx, sha) in entry["ptx"].as_object().expect("manifest ptx map") {
            expected_ptx.insert(ptx.clone());
            let path = root.join("ptx").join(ptx);
            if !path.exists() {
                problems.push(format!("kernels/ptx/{ptx} is missing"));
            } else if Some(sha256_file(&path).as_str()) != sha.as_str() {
                problems.push(format!("kernels/ptx/{ptx} was edited by hand or is stale"));
            }
        }
    }
    for name in kernels.keys() {
        if !cuda.join(format!("{name}.cu")).exists() {
            problems.push(format!(
                "manifest lists {name} but kernels/cuda/{name}.cu does not exist"
            ));
        }
    }
    for e in std::fs::read_dir(root.join("ptx")).expect("kernels/ptx") {
        let f = e.unwrap().file_name().into_string().unwrap();
        if f.ends_with(".ptx") && !expected_ptx.contains(&f) {
            problems.push(format!("kernels/ptx/{f} has no source in kernels/cuda"));
        }
    }
    assert!(
        problems.is_empty(),
        "stale kernels:\n  {}\nfix: {FIX}",
        problems.join("\n  ")
    );
}

/// Every embedded module is listed, and every PTX file is embedded.
#[test]
fn every_ptx_is_embedded() {
    let names: BTreeSet<&str> = cyberhost_kernels::KernelModule::ALL
        .iter()
        .map(|m| m.name())
        .collect();
    for e in std::fs::read_dir(root().join("ptx")).unwrap() {
        let f = e.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = f.strip_suffix(".ptx") {
            assert!(
                names.contains(stem),
                "kernels/ptx/{f} is not in KernelModule::ALL / kernels/src/lib.rs"
            );
        }
    }
    for m in cyberhost_kernels::KernelModule::ALL {
        let on_disk =
            std::fs::read_to_string(root().join("ptx").join(format!("{}.ptx", m.name()))).unwrap();
        assert_eq!(
            on_disk,
            m.ptx(),
            "{} embedded text differs from the file",
            m.name()
        );
    }
}
