#!/usr/bin/env python3
"""Drive the stand-in driver through its raw C ABI with ctypes (no cudarc involved).

    python3 tools/ptx-emu-driver/tests/driver_ctypes.py target/debug/libptx_emu_driver.so \
        tools/ptx-emu-driver/tests/ptx/driver_test_kernels.ptx

Run by `cargo test -p ptx-emu-driver --test ctypes_abi`. Exits non-zero on the first failure.
"""
import ctypes as C
import math
import random
import sys

CUDA_SUCCESS = 0
INVALID_VALUE = 1
NOT_FOUND = 500
ILLEGAL_ADDRESS = 700
LAUNCH_FAILED = 719
NOT_SUPPORTED = 801


class Fail(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise Fail(msg)


class Driver:
    def __init__(self, path):
        self.lib = C.CDLL(path)
        for name in ("cuGetErrorName", "cuGetErrorString"):
            getattr(self.lib, name).argtypes = [C.c_uint, C.POINTER(C.c_char_p)]
        self.lib.cuMemcpyHtoD_v2.argtypes = [C.c_uint64, C.c_void_p, C.c_size_t]
        self.lib.cuMemcpyDtoH_v2.argtypes = [C.c_void_p, C.c_uint64, C.c_size_t]
        self.lib.cuMemAlloc_v2.argtypes = [C.POINTER(C.c_uint64), C.c_size_t]
        self.lib.cuMemFree_v2.argtypes = [C.c_uint64]
        self.lib.cuMemsetD32_v2.argtypes = [C.c_uint64, C.c_uint, C.c_size_t]
        self.lib.cuModuleLoadData.argtypes = [C.POINTER(C.c_void_p), C.c_char_p]
        self.lib.cuModuleGetFunction.argtypes = [C.POINTER(C.c_void_p), C.c_void_p, C.c_char_p]
        self.lib.cuModuleGetGlobal_v2.argtypes = [
            C.POINTER(C.c_uint64), C.POINTER(C.c_size_t), C.c_void_p, C.c_char_p]
        self.lib.cuLaunchKernel.argtypes = [C.c_void_p] + [C.c_uint] * 7 + [
            C.c_void_p, C.POINTER(C.c_void_p), C.c_void_p]
        self.lib.cuCtxDestroy_v2.argtypes = [C.c_void_p]
        self.lib.cuFuncSetAttribute.argtypes = [C.c_void_p, C.c_int, C.c_int]
        self.lib.cuFuncGetAttribute.argtypes = [C.POINTER(C.c_int), C.c_int, C.c_void_p]

    def name(self, code):
        p = C.c_char_p()
        self.lib.cuGetErrorName(code, C.byref(p))
        return p.value.decode() if p.value else f"<{code}>"

    def ok(self, rc, what):
        expect(rc == CUDA_SUCCESS, f"{what} returned {rc} ({self.name(rc)})")

    def alloc(self, nbytes):
        p = C.c_uint64()
        self.ok(self.lib.cuMemAlloc_v2(C.byref(p), nbytes), "cuMemAlloc_v2")
        return p.value

    def htod(self, dptr, floats):
        buf = (C.c_float * len(floats))(*floats)
        self.ok(self.lib.cuMemcpyHtoD_v2(dptr, buf, C.sizeof(buf)), "cuMemcpyHtoD_v2")

    def dtoh(self, dptr, n):
        buf = (C.c_float * n)()
        self.ok(self.lib.cuMemcpyDtoH_v2(buf, dptr, C.sizeof(buf)), "cuMemcpyDtoH_v2")
        return list(buf)

    def ctx_create(self):
        ctx = C.c_void_p()
        self.ok(self.lib.cuCtxCreate_v2(C.byref(ctx), 0, 0), "cuCtxCreate_v2")
        return ctx

    def load(self, ptx):
        mod = C.c_void_p()
        self.ok(self.lib.cuModuleLoadData(C.byref(mod), ptx), "cuModuleLoadData")
        return mod

    def func(self, mod, name):
        f = C.c_void_p()
        self.ok(self.lib.cuModuleGetFunction(C.byref(f), mod, name.encode()), f"cuModuleGetFunction({name})")
        return f

    def launch(self, f, grid, block, args, smem=0):
        """args: list of ctypes scalars; returns the raw CUresult."""
        ptrs = (C.c_void_p * max(1, len(args)))(*[C.cast(C.pointer(a), C.c_void_p) for a in args])
        return self.lib.cuLaunchKernel(f, grid, 1, 1, block, 1, 1, smem, None, ptrs, None)


def rel_l2(got, want):
    num = math.sqrt(sum((g - w) ** 2 for g, w in zip(got, want)))
    den = math.sqrt(sum(w * w for w in want)) or 1.0
    return num / den


def main():
    lib_path, ptx_path = sys.argv[1], sys.argv[2]
    d = Driver(lib_path)
    lib = d.lib
    ptx = open(ptx_path, "rb").read()
    rng = random.Random(1234)

    # --- before init ---------------------------------------------------------------------------
    count = C.c_int()
    expect(lib.cuDeviceGetCount(C.byref(count)) == 3, "cuDeviceGetCount before cuInit must be NOT_INITIALIZED")
    d.ok(lib.cuInit(0), "cuInit")

    # --- device ----------------------------------------------------------------------------------
    d.ok(lib.cuDeviceGetCount(C.byref(count)), "cuDeviceGetCount")
    expect(count.value == 1, f"device count {count.value}")
    version = C.c_int()
    d.ok(lib.cuDriverGetVersion(C.byref(version)), "cuDriverGetVersion")
    expect(version.value >= 12040, f"driver version {version.value}")
    name = C.create_string_buffer(128)
    d.ok(lib.cuDeviceGetName(name, 128, 0), "cuDeviceGetName")
    expect(b"ptx-emu" in name.value, f"device name {name.value!r}")
    attrs = {75: 9, 76: 0, 16: 132, 81: 228 * 1024, 1: 1024, 10: 32, 97: 227 * 1024, 115: 1}
    for attr, want in attrs.items():
        v = C.c_int()
        d.ok(lib.cuDeviceGetAttribute(C.byref(v), attr, 0), f"cuDeviceGetAttribute({attr})")
        expect(v.value == want, f"attribute {attr} = {v.value}, want {want}")
    v = C.c_int()
    expect(lib.cuDeviceGetAttribute(C.byref(v), 100000, 0) == INVALID_VALUE, "bogus attribute accepted")
    dev = C.c_int()
    expect(lib.cuDeviceGet(C.byref(dev), 1) == 101, "device 1 must be CUDA_ERROR_INVALID_DEVICE")
    total = C.c_size_t()
    d.ok(lib.cuDeviceTotalMem_v2(C.byref(total), 0), "cuDeviceTotalMem_v2")
    expect(total.value >= 16 << 30, f"total mem {total.value}")

    # --- error strings ---------------------------------------------------------------------------
    expect(d.name(700) == "CUDA_ERROR_ILLEGAL_ADDRESS", d.name(700))
    expect(d.name(719) == "CUDA_ERROR_LAUNCH_FAILED", d.name(719))
    s = C.c_char_p()
    expect(lib.cuGetErrorString(123456, C.byref(s)) == INVALID_VALUE, "unknown code must be INVALID_VALUE")

    # --- a correct kernel ------------------------------------------------------------------------
    ctx = d.ctx_create()
    mod = d.load(ptx)
    missing = C.c_void_p()
    expect(lib.cuModuleGetFunction(C.byref(missing), mod, b"no_such_kernel") == NOT_FOUND,
           "unknown kernel must be CUDA_ERROR_NOT_FOUND")
    axpy = d.func(mod, "axpy_f32")
    n = 1000  # not a multiple of the block size
    a = [rng.uniform(-1, 1) for _ in range(n)]
    b = [rng.uniform(-1, 1) for _ in range(n)]
    da, db, dout = d.alloc(4 * n), d.alloc(4 * n), d.alloc(4 * n)
    d.htod(da, a)
    d.htod(db, b)
    d.ok(lib.cuMemsetD32_v2(dout, 0x7FC00000, n), "cuMemsetD32_v2")  # NaN fill
    alpha = 1.5
    rc = d.launch(axpy, (n + 127) // 128, 128,
                  [C.c_uint64(da), C.c_uint64(db), C.c_uint64(dout), C.c_float(alpha), C.c_int(n)])
    d.ok(rc, "cuLaunchKernel(axpy_f32)")
    got = d.dtoh(dout, n)
    want = [alpha * x + y for x, y in zip(a, b)]
    err = rel_l2(got, want)
    expect(err < 1e-6, f"axpy_f32 relative L2 error {err}")
    print(f"axpy_f32: rel L2 {err:.2e}")

    # --- shared memory + barriers ----------------------------------------------------------------
    block_sum = d.func(mod, "block_sum_f32")
    n = 1000
    blocks = (n + 255) // 256
    x = [rng.uniform(-1, 1) for _ in range(n)]
    dx, dpart = d.alloc(4 * n), d.alloc(4 * blocks)
    d.htod(dx, x)
    d.ok(d.launch(block_sum, blocks, 256, [C.c_uint64(dx), C.c_uint64(dpart), C.c_int(n)]),
         "cuLaunchKernel(block_sum_f32)")
    got = d.dtoh(dpart, blocks)
    want = [sum(x[i * 256:(i + 1) * 256]) for i in range(blocks)]
    err = rel_l2(got, want)
    expect(err < 1e-5, f"block_sum_f32 relative L2 error {err}")
    print(f"block_sum_f32: rel L2 {err:.2e}")
    shared = C.c_int()
    d.ok(lib.cuFuncGetAttribute(C.byref(shared), 1, block_sum), "cuFuncGetAttribute(SHARED_SIZE_BYTES)")
    expect(shared.value == 1024, f"block_sum_f32 static smem {shared.value}")

    # --- module global ---------------------------------------------------------------------------
    gptr, gsize = C.c_uint64(), C.c_size_t()
    d.ok(lib.cuModuleGetGlobal_v2(C.byref(gptr), C.byref(gsize), mod, b"g_scale"), "cuModuleGetGlobal_v2")
    expect(gsize.value == 4, f"g_scale size {gsize.value}")
    d.htod(gptr.value, [-2.5])
    scale = d.func(mod, "scale_by_global_f32")
    d.htod(dx, x)
    d.ok(d.launch(scale, (n + 127) // 128, 128, [C.c_uint64(dx), C.c_int(n)]), "cuLaunchKernel(scale)")
    err = rel_l2(d.dtoh(dx, n), [-2.5 * v for v in x])
    expect(err < 1e-6, f"scale_by_global_f32 relative L2 error {err}")

    # --- dynamic shared memory and its limit ----------------------------------------------------
    rev = d.func(mod, "reverse_block_f32")
    nb, bs = 3, 96
    x = [C.c_float(rng.uniform(-1, 1)).value for _ in range(nb * bs)]  # exact f32 values
    dxr, dyr = d.alloc(4 * nb * bs), d.alloc(4 * nb * bs)
    d.htod(dxr, x)
    d.ok(d.launch(rev, nb, bs, [C.c_uint64(dxr), C.c_uint64(dyr)], smem=4 * bs), "cuLaunchKernel(reverse)")
    want = [x[blk * bs + bs - 1 - t] for blk in range(nb) for t in range(bs)]
    expect(d.dtoh(dyr, nb * bs) == want, "reverse_block_f32 wrong")
    big = 100 * 1024
    expect(d.launch(rev, 1, bs, [C.c_uint64(dxr), C.c_uint64(dyr)], smem=big) == INVALID_VALUE,
           "dynamic smem above 48 KiB without opt-in must be rejected")
    d.ok(lib.cuFuncSetAttribute(rev, 8, big), "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)")
    d.ok(d.launch(rev, 1, bs, [C.c_uint64(dxr), C.c_uint64(dyr)], smem=big), "launch with opted-in smem")
    expect(lib.cuFuncSetAttribute(rev, 8, 300 * 1024) == INVALID_VALUE, "smem opt-in above 227 KiB accepted")
    expect(d.launch(rev, 1, 2048, [C.c_uint64(dxr), C.c_uint64(dyr)]) == INVALID_VALUE,
           "2048 threads per block accepted")

    # --- unsupported entry points ----------------------------------------------------------------
    expect(lib.cuMemAllocManaged() == NOT_SUPPORTED, "cuMemAllocManaged must be NOT_SUPPORTED")

    d.ok(lib.cuCtxDestroy_v2(ctx), "cuCtxDestroy_v2")

    # --- broken kernels: each in a fresh context ------------------------------------------------
    cases = [
        ("oob_write_f32", 700, lambda buf: [C.c_uint64(buf), C.c_int(64)]),
        ("smem_race_f32", 719, lambda buf: [C.c_uint64(buf)]),
        ("barrier_divergence_f32", 719, lambda buf: [C.c_uint64(buf)]),
        ("uninit_smem_f32", 719, lambda buf: [C.c_uint64(buf)]),
    ]
    for kernel, code, args in cases:
        ctx = d.ctx_create()
        mod = d.load(ptx)
        f = d.func(mod, kernel)
        buf = d.alloc(4 * 64)
        rc = d.launch(f, 1, 64, args(buf))
        expect(rc == code, f"{kernel}: launch returned {rc} ({d.name(rc)}), want {code} ({d.name(code)})")
        # Sticky: the context is unusable afterwards, like on hardware.
        p = C.c_uint64()
        rc2 = lib.cuMemAlloc_v2(C.byref(p), 16)
        expect(rc2 == code, f"{kernel}: call after the fault returned {rc2}, want sticky {code}")
        d.ok(lib.cuCtxDestroy_v2(ctx), "cuCtxDestroy_v2 after fault")
        print(f"{kernel}: {d.name(rc)} as expected")

    # A fresh context works again after the faults.
    ctx = d.ctx_create()
    d.alloc(16)
    d.ok(lib.cuCtxDestroy_v2(ctx), "cuCtxDestroy_v2")

    # --- counters ----------------------------------------------------------------------------------
    class Stats(C.Structure):
        _fields_ = [(f, C.c_uint64) for f in (
            "struct_size", "alloc_calls", "free_calls", "bytes_in_use", "kernel_launches",
            "graph_launches", "memcpy_calls", "memset_calls", "faults", "module_loads")]

    st = Stats()
    d.ok(lib.ptxemu_stats(C.byref(st)), "ptxemu_stats")
    expect(st.struct_size == C.sizeof(Stats), f"PtxEmuStats size {st.struct_size} != {C.sizeof(Stats)}")
    expect(st.faults == 4, f"faults {st.faults}")
    # 7 buffers above, 1 per broken kernel, 1 in the last context; rejected launches never run.
    expect(st.alloc_calls == 12, f"alloc_calls {st.alloc_calls}, want 12")
    expect(st.kernel_launches == 9, f"kernel_launches {st.kernel_launches}, want 9")
    expect(st.module_loads == 5, f"module_loads {st.module_loads}, want 5")
    print("stats:", {f: getattr(st, f) for f, _ in Stats._fields_})
    print("driver_ctypes: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        print(f"driver_ctypes: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
