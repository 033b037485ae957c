#!/usr/bin/env python3
"""Regenerate the CuTe/CUTLASS SM90 test PTX in this folder (independent PTX for issue 17).

    python3 tools/ptx-emu/tests/ptx/sm90/build_cute_sm90.py

Inputs (exact versions; the PTX depends on all of them):
  * NVRTC 12.4.127 (`nvidia-cuda-nvrtc-cu12==12.4.127`, the pinned toolchain in .toolchain/cuda,
    installed by tools/kernels/setup_toolchain.sh) and the CUDA 12.4.127 runtime headers;
  * CUTLASS 4.2.0 headers (`nvidia-cutlass==4.2.0.0` from PyPI: cutlass_library/source/include);
  * libcu++ from `nvidia-cuda-cccl-cu12==12.8.90` (CCCL 2.8). The 12.4.127 wheel matching the
    toolchain is yanked upstream ("Broken release") and indeed ships no cuda/std headers, so CuTe's
    `#include <cuda/std/cassert>` fails with it; 12.8.90 is what CUTLASS 4.2 is released against,
    and NVRTC 12.4 compiles it.
Both wheels are fetched with `pip download --no-deps` into $CUTE_SM90_CACHE (default
~/.cache/cyberhost/cute-sm90) on first use. Flags: -std=c++17 --gpu-architecture=compute_90a -default-device (CUTLASS's host/device
annotations need it under NVRTC) -DNDEBUG -diag-suppress=64,1055 and the three include dirs.
Output: one .ptx per .cu here (.version 8.4, .target sm_90a), written verbatim:
  cute_wgmma_sm90.ptx (cp.async + wgmma tutorial GEMM), cute_wgmma_tma_sm90.ptx (TMA + mbarrier +
  wgmma tutorial GEMM), cute_tma_copy_sm90.ptx (TMA load / store copy, SW128/SW64/SW32).
"""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[4]
sys.path.insert(0, str(ROOT / "tools" / "kernels"))
from build_ptx import NVRTC_LIB, RUNTIME_INCLUDE, Nvrtc  # noqa: E402

CACHE = Path(os.environ.get("CUTE_SM90_CACHE", Path.home() / ".cache" / "cyberhost" / "cute-sm90"))
WHEELS = {
    "nvidia-cutlass==4.2.0.0": "cutlass_library/source/include",
    "nvidia-cuda-cccl-cu12==12.8.90": "nvidia/cuda_cccl/include",
}
FLAGS = ["-std=c++17", "--gpu-architecture=compute_90a", "-default-device", "-DNDEBUG",
         "-diag-suppress=64,1055"]


def include_dir(spec: str, sub: str) -> Path:
    name = spec.split("==")[0]
    dest = CACHE / spec.replace("==", "-")
    if not (dest / sub).is_dir():
        dl = CACHE / "wheels"
        dl.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d",
                        str(dl), spec], check=True)
        whl = sorted(dl.glob(name.replace("-", "_") + "-" + spec.split("==")[1] + "-*.whl"))[0]
        with zipfile.ZipFile(whl) as z:
            z.extractall(dest)
    return dest / sub


def main() -> None:
    incs = [include_dir(s, sub) for s, sub in WHEELS.items()] + [RUNTIME_INCLUDE]
    nvrtc = Nvrtc(NVRTC_LIB)
    for cu in sorted(HERE.glob("*.cu")):
        flags = FLAGS + [f"-I{i}" for i in incs]
        ptx = nvrtc.compile(cu.name, cu.read_text(), {}, flags)
        out = cu.with_suffix(".ptx")
        out.write_text(ptx)
        print(f"wrote {out.relative_to(ROOT)} (NVRTC {nvrtc.version()})")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(str(e))
