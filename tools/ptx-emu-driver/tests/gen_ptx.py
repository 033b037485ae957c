#!/usr/bin/env python3
"""Regenerate tests/ptx/*.ptx from tests/cuda/*.cu with the pinned NVRTC (tools/kernels/setup_toolchain.sh).

    python3 tools/ptx-emu-driver/tests/gen_ptx.py
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tools" / "kernels"))
from build_ptx import NVRTC_LIB, Nvrtc  # noqa: E402  (NVRTC through ctypes, shared)

FLAGS = ["--gpu-architecture=compute_80", "-std=c++17"]


def main() -> None:
    nvrtc = Nvrtc(NVRTC_LIB)
    for cu in sorted((HERE / "cuda").glob("*.cu")):
        out = HERE / "ptx" / (cu.stem + ".ptx")
        out.write_text(nvrtc.compile(cu.name, cu.read_text(), {}, FLAGS))
        print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(str(e))
