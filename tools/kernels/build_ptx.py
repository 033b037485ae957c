#!/usr/bin/env python3
"""Compile kernels/cuda/*.cu to committed PTX with the pinned NVRTC, write ptxas reports and the manifest.

    tools/kernels/setup_toolchain.sh          # once: pinned NVRTC + headers + ptxas in .toolchain/cuda
    tools/kernels/build_ptx.py                # rebuild kernels/ptx, kernels/reports, kernels/manifest.json
    tools/kernels/build_ptx.py --check        # rebuild into a temp dir; fail if anything committed differs
    tools/kernels/build_ptx.py --only gemm_bf16

Per `kernels/cuda/<name>.cu`:
  * `kernels/ptx/<name>.ptx`            NVRTC, --gpu-architecture=compute_80, fixed flags below;
  * `kernels/ptx/<name>_sm90a.ptx`      also, when the .cu has a line `// arch: sm_90a` (an sm_90a
                                        twin of an sm_80 module); none of the kernels needs it yet;
  * a .cu with a line `// arch: sm_90a only` (Hopper-only modules: wgmma, TMA, setmaxnreg) gets
    only `kernels/ptx/<name>.ptx`, from --gpu-architecture=compute_90a (`.target sm_90a`), and a
    report with sm_90a rows only; the CUDA backend loads such a module only on CC 9.0 devices;
  * `kernels/reports/<name>.txt`        `ptxas -v` for sm_80 and sm_90a: per entry registers, shared
                                        memory, stack, spill stores/loads;
  * an entry in `kernels/manifest.json` SHA-256 of the .cu and of every local header it includes
                                        (transitively), SHA-256 of the PTX, toolchain versions, flags.

Local headers (`kernels/cuda/*.cuh`) are handed to NVRTC in memory under their include names, the
runtime headers come from `-I` on the pinned toolchain: the PTX carries no machine path, and the same
inputs give byte-identical PTX. `cargo build` never runs this; the kernels crate embeds the committed
PTX, and its test `ptx_is_fresh` fails (without needing this toolchain) when a source hash no longer
matches the manifest.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CUDA_DIR = ROOT / "kernels" / "cuda"
PTX_DIR = ROOT / "kernels" / "ptx"
REPORT_DIR = ROOT / "kernels" / "reports"
MANIFEST = ROOT / "kernels" / "manifest.json"
TOOLCHAIN = ROOT / ".toolchain" / "cuda"
NVRTC_LIB = TOOLCHAIN / "nvidia" / "cuda_nvrtc" / "lib" / "libnvrtc.so.12"
RUNTIME_INCLUDE = TOOLCHAIN / "nvidia" / "cuda_runtime" / "include"
PTXAS = TOOLCHAIN / "nvidia" / "cuda_nvcc" / "bin" / "ptxas"

# Pinned by tools/kernels/setup_toolchain.sh; recorded in the manifest.
TOOLCHAIN_PINS = {
    "nvidia-cuda-nvrtc-cu12": "12.4.127",
    "nvidia-cuda-runtime-cu12": "12.4.127",
    "nvidia-cuda-nvcc-cu12": "12.4.131",
}

# Fixed NVRTC flags (the include dir is added at compile time and recorded symbolically).
COMMON_FLAGS = ["-std=c++17", "--fmad=true", "--extra-device-vectorization"]
VARIANTS = {
    # variant suffix -> (virtual arch flag, ptxas target archs for the report)
    "": "--gpu-architecture=compute_80",
    "_sm90a": "--gpu-architecture=compute_90a",
}
REPORT_ARCHS = ["sm_80", "sm_90a"]
INCLUDE_FLAG_RECORDED = "-I$TOOLCHAIN/nvidia/cuda_runtime/include"

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
ARCH_RE = re.compile(r"^//\s*arch:\s*sm_90a\s*$", re.M)
ARCH_ONLY_RE = re.compile(r"^//\s*arch:\s*sm_90a\s+only\s*$", re.M)
ENTRY_RE = re.compile(r"^\.visible \.entry (\w+)\(", re.M)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def die(msg: str) -> None:
    print(f"build_ptx: error: {msg}", file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------------------------------------
# NVRTC through ctypes
# ------------------------------------------------------------------------------------------------


class Nvrtc:
    def __init__(self, path: Path):
        if not path.exists():
            die(f"{path.relative_to(ROOT)} not found: run tools/kernels/setup_toolchain.sh first")
        self.lib = ctypes.CDLL(str(path))
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            raise RuntimeError(f"{what}: {self.lib.nvrtcGetErrorString(rc).decode()}")

    def version(self) -> str:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return f"{major.value}.{minor.value}"

    def compile(self, name: str, src: str, headers: dict[str, str], flags: list[str]) -> str:
        prog = ctypes.c_void_p()
        hnames = list(headers)
        hsrc = (ctypes.c_char_p * len(hnames))(*[headers[h].encode() for h in hnames])
        hinc = (ctypes.c_char_p * len(hnames))(*[h.encode() for h in hnames])
        self._check(
            self.lib.nvrtcCreateProgram(
                ctypes.byref(prog), src.encode(), name.encode(), len(hnames), hsrc, hinc
            ),
            f"nvrtcCreateProgram({name})",
        )
        try:
            opts = (ctypes.c_char_p * len(flags))(*[f.encode() for f in flags])
            rc = self.lib.nvrtcCompileProgram(prog, len(flags), opts)
            log_size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(log_size))
            log = ctypes.create_string_buffer(log_size.value)
            self.lib.nvrtcGetProgramLog(prog, log)
            log_text = log.value.decode(errors="replace").strip()
            if rc != 0:
                raise RuntimeError(f"NVRTC failed to compile {name}:\n{log_text}")
            if log_text:
                print(f"build_ptx: NVRTC log for {name}:\n{log_text}", file=sys.stderr)
            size = ctypes.c_size_t()
            self._check(self.lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
            buf = ctypes.create_string_buffer(size.value)
            self._check(self.lib.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
            return buf.value.decode()
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


# ------------------------------------------------------------------------------------------------
# sources
# ------------------------------------------------------------------------------------------------


def local_headers(src: str, seen: dict[str, str] | None = None) -> dict[str, str]:
    """Transitive `#include "x.cuh"` closure within kernels/cuda, name -> text (sorted later)."""
    seen = {} if seen is None else seen
    for inc in INCLUDE_RE.findall(src):
        if inc in seen:
            continue
        path = CUDA_DIR / inc
        if not path.exists():
            die(f'#include "{inc}" not found in kernels/cuda')
        text = path.read_text(encoding="utf-8")
        seen[inc] = text
        local_headers(text, seen)
    return seen


def ptxas_version() -> str:
    out = subprocess.run([str(PTXAS), "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


# ------------------------------------------------------------------------------------------------
# ptxas report
# ------------------------------------------------------------------------------------------------


def ptxas_report(ptx_path: Path, arch: str) -> dict[str, dict]:
    """Run `ptxas -v` and parse per-entry registers / smem / stack / spills."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [str(PTXAS), "-v", f"--gpu-name={arch}", str(ptx_path), "-o", os.path.join(tmp, "out.cubin")],
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas --gpu-name={arch} {ptx_path.name} failed:\n{proc.stderr}")
    entries: dict[str, dict] = {}
    current = None
    for line in proc.stderr.splitlines():
        m = re.search(r"Compiling entry function '(\w+)' for '(\w+)'", line)
        if m:
            current = entries.setdefault(
                m.group(1), {"registers": 0, "smem": 0, "stack": 0, "spill_stores": 0, "spill_loads": 0}
            )
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            current["stack"], current["spill_stores"], current["spill_loads"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
            sm = re.search(r"(\d+) bytes smem", line)
            current["smem"] = int(sm.group(1)) if sm else 0
    return entries


def format_report(name: str, per_arch: dict[str, dict[str, dict]], ptxas_ver: str) -> str:
    lines = [
        f"# ptxas -v report for kernels/ptx/{name}.ptx ({ptxas_ver})",
        "# generated by tools/kernels/build_ptx.py; smem = static shared bytes (dynamic smem not included)",
        "",
        f"{'entry':<32} {'arch':<7} {'regs':>5} {'smem':>7} {'stack':>6} {'spill_st':>9} {'spill_ld':>9}",
    ]
    entries = sorted({e for rep in per_arch.values() for e in rep})
    for entry in entries:
        for arch in REPORT_ARCHS:
            r = per_arch.get(arch, {}).get(entry)
            if r is None:
                continue
            lines.append(
                f"{entry:<32} {arch:<7} {r['registers']:>5} {r['smem']:>7} {r['stack']:>6} "
                f"{r['spill_stores']:>9} {r['spill_loads']:>9}"
            )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# build
# ------------------------------------------------------------------------------------------------


def build(out_root: Path, only: list[str] | None) -> dict:
    nvrtc = Nvrtc(NVRTC_LIB)
    if not PTXAS.exists():
        die(f"{PTXAS.relative_to(ROOT)} not found: run tools/kernels/setup_toolchain.sh first")
    nvrtc_ver = nvrtc.version()
    ptxas_ver = ptxas_version()
    ptx_dir = out_root / "ptx"
    rep_dir = out_root / "reports"
    ptx_dir.mkdir(parents=True, exist_ok=True)
    rep_dir.mkdir(parents=True, exist_ok=True)

    old = json.loads(MANIFEST.read_text(encoding="utf-8")) if MANIFEST.exists() else {}
    kernels_out = {}
    sources = sorted(CUDA_DIR.glob("*.cu"))
    if not sources:
        die("no kernels/cuda/*.cu found")
    for cu in sources:
        name = cu.stem
        if only and name not in only:
            if name in old.get("kernels", {}):
                kernels_out[name] = old["kernels"][name]
                for f in [f"{name}.ptx", f"{name}_sm90a.ptx"]:
                    if (PTX_DIR / f).exists():
                        (ptx_dir / f).write_bytes((PTX_DIR / f).read_bytes())
                if (REPORT_DIR / f"{name}.txt").exists():
                    (rep_dir / f"{name}.txt").write_bytes((REPORT_DIR / f"{name}.txt").read_bytes())
                continue
        src = cu.read_text(encoding="utf-8")
        headers = dict(sorted(local_headers(src).items()))
        hopper_only = bool(ARCH_ONLY_RE.search(src))
        variants = [""] + (["_sm90a"] if ARCH_RE.search(src) and not hopper_only else [])
        per_arch: dict[str, dict[str, dict]] = {}
        ptx_files = {}
        entries = []
        for var in variants:
            arch_flag = VARIANTS["_sm90a"] if hopper_only else VARIANTS[var]
            flags = [arch_flag, *COMMON_FLAGS, f"-I{RUNTIME_INCLUDE}"]
            ptx = nvrtc.compile(cu.name, src, headers, flags)
            if str(ROOT) in ptx or "/work/" in ptx:
                die(f"PTX for {cu.name} contains a machine path; check the NVRTC flags")
            out = ptx_dir / f"{name}{var}.ptx"
            out.write_text(ptx, encoding="utf-8")
            ptx_files[f"{name}{var}.ptx"] = sha256(ptx.encode())
            if var == "":
                entries = ENTRY_RE.findall(ptx)
                for arch in ["sm_90a"] if hopper_only else REPORT_ARCHS:
                    per_arch[arch] = ptxas_report(out, arch)
            else:
                per_arch["sm_90a"] = ptxas_report(out, "sm_90a")
        report = format_report(name, per_arch, ptxas_ver)
        if len(variants) > 1:
            report = report.replace("\n\n", f"\n# sm_90a rows: ptxas on kernels/ptx/{name}_sm90a.ptx\n\n", 1)
        (rep_dir / f"{name}.txt").write_text(report, encoding="utf-8")
        kernels_out[name] = {
            "source": f"kernels/cuda/{cu.name}",
            "source_sha256": sha256(cu.read_bytes()),
            "headers": {h: sha256((CUDA_DIR / h).read_bytes()) for h in headers},
            "ptx": ptx_files,
            "entries": entries,
            "flags": {
                f"{name}{v}.ptx": [VARIANTS["_sm90a" if hopper_only else v], *COMMON_FLAGS, INCLUDE_FLAG_RECORDED]
                for v in variants
            },
            "ptxas": {arch: per_arch.get(arch, {}) for arch in REPORT_ARCHS if arch in per_arch or not hopper_only},
        }
        print(f"build_ptx: {cu.name} -> {', '.join(ptx_files)} ({len(entries)} entries)")

    manifest = {
        "generated_by": "tools/kernels/build_ptx.py",
        "toolchain": {"pip": TOOLCHAIN_PINS, "nvrtc": nvrtc_ver, "ptxas": ptxas_ver},
        "kernels": kernels_out,
    }
    (out_root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def committed_files() -> dict[str, Path]:
    files = {"manifest.json": MANIFEST}
    for p in PTX_DIR.glob("*.ptx"):
        files[f"ptx/{p.name}"] = p
    for p in REPORT_DIR.glob("*.txt"):
        files[f"reports/{p.name}"] = p
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="rebuild into a temp dir and diff against the committed files")
    ap.add_argument("--only", nargs="*", help="rebuild only these kernel names (others keep their committed output)")
    args = ap.parse_args()

    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_root = Path(tmp)
            build(tmp_root, None)
            fresh = {"manifest.json": tmp_root / "manifest.json"}
            fresh.update({f"ptx/{p.name}": p for p in (tmp_root / "ptx").glob("*.ptx")})
            fresh.update({f"reports/{p.name}": p for p in (tmp_root / "reports").glob("*.txt")})
            committed = committed_files()
            bad = []
            for rel in sorted(set(fresh) | set(committed)):
                if rel not in committed:
                    bad.append(f"kernels/{rel}: missing from the committed tree")
                elif rel not in fresh:
                    bad.append(f"kernels/{rel}: committed but no longer produced by any kernels/cuda/*.cu")
                elif fresh[rel].read_bytes() != committed[rel].read_bytes():
                    bad.append(f"kernels/{rel}: differs from a fresh build")
            if bad:
                print("build_ptx --check: FAILED\n  " + "\n  ".join(bad), file=sys.stderr)
                print("fix: run tools/kernels/build_ptx.py and commit kernels/ptx, kernels/reports, "
                      "kernels/manifest.json", file=sys.stderr)
                sys.exit(1)
            print(f"build_ptx --check: ok ({len(fresh)} files identical)")
        return

    # Build into a temp dir first so a failed compile leaves the committed tree untouched.
    with tempfile.TemporaryDirectory() as tmp:
        tmp_root = Path(tmp)
        build(tmp_root, args.only)
        for p in PTX_DIR.glob("*.ptx"):
            if not (tmp_root / "ptx" / p.name).exists():
                p.unlink()
        for p in REPORT_DIR.glob("*.txt"):
            if not (tmp_root / "reports" / p.name).exists():
                p.unlink()
        PTX_DIR.mkdir(parents=True, exist_ok=True)
        REPORT_DIR.mkdir(parents=True, exist_ok=True)
        for p in (tmp_root / "ptx").glob("*.ptx"):
            (PTX_DIR / p.name).write_bytes(p.read_bytes())
        for p in (tmp_root / "reports").glob("*.txt"):
            (REPORT_DIR / p.name).write_bytes(p.read_bytes())
        MANIFEST.write_bytes((tmp_root / "manifest.json").read_bytes())


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, subprocess.CalledProcessError) as e:
        die(str(e))
