#!/usr/bin/env python3
"""Compile tools/gpu-model/calibration/*.cu to PTX with the pinned NVRTC and write ptxas reports.

    tools/gpu-model/calibration/build.py          # writes calibration/ptx/*.ptx, calibration/reports/*.txt
    tools/gpu-model/calibration/build.py --check  # fail if the committed files differ from a fresh build

Same toolchain and flags as tools/kernels/build_ptx.py (whose helpers this imports). A `.cu` with a
line `// arch: sm_90a` is compiled for compute_90a only (Hopper instructions) and reported for
sm_90a; the others for compute_80, reported for sm_80 and sm_90a.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tools" / "kernels"))
import build_ptx as bp  # noqa: E402


def build(out: Path) -> None:
    nvrtc = bp.Nvrtc(bp.NVRTC_LIB)
    ver = bp.ptxas_version()
    (out / "ptx").mkdir(parents=True, exist_ok=True)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    for cu in sorted(HERE.glob("*.cu")):
        src = cu.read_text(encoding="utf-8")
        hopper = bool(bp.ARCH_RE.search(src))
        var = "_sm90a" if hopper else ""
        flags = [bp.VARIANTS[var], *bp.COMMON_FLAGS, f"-I{bp.RUNTIME_INCLUDE}"]
        ptx = nvrtc.compile(cu.name, src, {}, flags)
        if str(ROOT) in ptx or "/work/" in ptx:
            bp.die(f"PTX for {cu.name} contains a machine path")
        p = out / "ptx" / f"{cu.stem}.ptx"
        p.write_text(ptx, encoding="utf-8")
        archs = ["sm_90a"] if hopper else bp.REPORT_ARCHS
        per_arch = {a: bp.ptxas_report(p, a) for a in archs}
        rep = bp.format_report(cu.stem, per_arch, ver).replace(
            "kernels/ptx/", "tools/gpu-model/calibration/ptx/"
        ).replace("tools/kernels/build_ptx.py", "tools/gpu-model/calibration/build.py")
        (out / "reports" / f"{cu.stem}.txt").write_text(rep, encoding="utf-8")
        print(f"calibration: {cu.name} -> ptx/{p.name} ({', '.join(archs)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if not args.check:
        build(HERE)
        return
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        build(t)
        bad = [
            str(f.relative_to(t))
            for f in sorted(t.rglob("*.*"))
            if not (HERE / f.relative_to(t)).exists() or (HERE / f.relative_to(t)).read_bytes() != f.read_bytes()
        ]
        if bad:
            sys.exit("calibration --check: differs from a fresh build: " + ", ".join(bad))
        print("calibration --check: ok")


if __name__ == "__main__":
    main()
