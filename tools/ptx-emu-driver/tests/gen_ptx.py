#!/usr/bin/env python3
"""Regenerate tests/ptx/*.ptx from tests/cuda/*.cu with the pinned NVRTC (tools/kernels/setup_toolchain.sh).

    python3 tools/ptx-emu-driver/tests/gen_ptx.py
"""
import ctypes
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
NVRTC = ROOT / ".toolchain" / "cuda" / "nvidia" / "cuda_nvrtc" / "lib" / "libnvrtc.so.12"
FLAGS = ["--gpu-architecture=compute_80", "-std=c++17"]


def main() -> None:
    if not NVRTC.exists():
        sys.exit(f"{NVRTC.relative_to(ROOT)} missing: run tools/kernels/setup_toolchain.sh")
    lib = ctypes.CDLL(str(NVRTC))
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    for cu in sorted((HERE / "cuda").glob("*.cu")):
        prog = ctypes.c_void_p()
        rc = lib.nvrtcCreateProgram(ctypes.byref(prog), cu.read_bytes(), cu.name.encode(), 0, None, None)
        assert rc == 0, lib.nvrtcGetErrorString(rc)
        opts = (ctypes.c_char_p * len(FLAGS))(*[f.encode() for f in FLAGS])
        rc = lib.nvrtcCompileProgram(prog, len(FLAGS), opts)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        if rc != 0:
            sys.exit(f"{cu.name}: {log.value.decode()}")
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(prog, ptx)
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
        out = HERE / "ptx" / (cu.stem + ".ptx")
        out.write_bytes(ptx.value)
        print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
