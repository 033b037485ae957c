#!/usr/bin/env python3
"""Regenerate the NVRTC-compiled test PTX files from the .cu sources next to this script.

Usage: NVRTC_LIB=/path/to/libnvrtc.so.12 CUDA_INCLUDE=/path/to/cuda/include python3 gen_ptx.py [file.cu ...]
(NVRTC 12.4: `pip install nvidia-cuda-nvrtc-cu12==12.4.127 nvidia-cuda-runtime-cu12==12.4.127`;
the runtime wheel provides the cuda_fp16.h / cuda_bf16.h headers.)
"""
import glob
import os
import sys
from pathlib import Path

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, str(Path(here).parents[3] / "tools" / "kernels"))
from build_ptx import Nvrtc  # noqa: E402  (NVRTC through ctypes, shared)


def main() -> None:
    nvrtc = Nvrtc(Path(os.environ["NVRTC_LIB"]))
    inc = os.environ.get("CUDA_INCLUDE")
    flags = ["--gpu-architecture=compute_80"] + (["-I" + inc] if inc else [])
    for path in sys.argv[1:] or sorted(glob.glob(os.path.join(here, "*.cu"))):
        out = path[:-3] + ".ptx"
        with open(path) as src:
            ptx = nvrtc.compile(os.path.basename(path), src.read(), {}, flags)
        with open(out, "w") as f:
            f.write(ptx)
        print("wrote", out)


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(str(e))
