#!/usr/bin/env python3
"""Regenerate the NVRTC-compiled test PTX files from the .cu sources next to this script.

Usage: NVRTC_LIB=/path/to/libnvrtc.so.12 CUDA_INCLUDE=/path/to/cuda/include python3 gen_ptx.py [file.cu ...]
(NVRTC 12.4: `pip install nvidia-cuda-nvrtc-cu12==12.4.127 nvidia-cuda-runtime-cu12==12.4.127`;
the runtime wheel provides the cuda_fp16.h / cuda_bf16.h headers.)
"""
import ctypes, os, sys, glob

here = os.path.dirname(os.path.abspath(__file__))
lib = ctypes.CDLL(os.environ["NVRTC_LIB"])
inc = os.environ.get("CUDA_INCLUDE")

def compile_cu(path):
    src = open(path).read()
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), os.path.basename(path).encode(), 0, None, None) == 0
    opts = [b"--gpu-architecture=compute_80"] + ([("-I" + inc).encode()] if inc else [])
    arr = (ctypes.c_char_p * len(opts))(*opts)
    r = lib.nvrtcCompileProgram(prog, len(opts), arr)
    n = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
    log = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetProgramLog(prog, log)
    if r != 0:
        sys.exit(f"{path}: {log.value.decode()}")
    lib.nvrtcGetPTXSize(prog, ctypes.byref(n))
    buf = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetPTX(prog, buf)
    out = path[:-3] + ".ptx"
    open(out, "w").write(buf.value.decode())
    print("wrote", out)

for f in sys.argv[1:] or sorted(glob.glob(os.path.join(here, "*.cu"))):
    compile_cu(f)
