//! sm_90a through the stand-in: device attributes of the emulated architecture, `.target`
//! checks at `cuModuleLoadData`, `cuTensorMapEncodeTiled` and `cuLaunchKernelEx` running a TMA
//! kernel (tools/ptx-emu/tests/ptx/hopper.ptx). `PTX_EMU_ARCH` is left unset here: the default
//! architecture (sm_90a); tests/arch_sm80.rs runs with `PTX_EMU_ARCH=sm_80`.

use std::ffi::{c_int, c_void};
use std::ptr::null_mut;

use ptx_emu_driver::errors::*;
use ptx_emu_driver::*;

const HOPPER: &str = concat!(include_str!("../../ptx-emu/tests/ptx/hopper.ptx"), "\0");

fn ok(rc: CUresult, what: &str) {
    assert_eq!(
        rc,
        CUDA_SUCCESS,
        "{what} returned {rc} ({})",
        errors::name(rc)
    );
}

fn attr(a: c_int) -> c_int {
    let mut v = 0;
    ok(
        unsafe { cuDeviceGetAttribute(&mut v, a, 0) },
        "cuDeviceGetAttribute",
    );
    v
}

fn context() -> *mut c_void {
    unsafe {
        ok(cuInit(0), "cuInit");
        let mut ctx = null_mut();
        ok(cuCtxCreate_v2(&mut ctx, 0, 0), "cuCtxCreate_v2");
        ctx
    }
}

fn load(ptx: &str) -> Result<*mut c_void, CUresult> {
    let mut m = null_mut();
    let rc = unsafe { cuModuleLoadData(&mut m, ptx.as_ptr() as *const c_void) };
    if rc == CUDA_SUCCESS {
        Ok(m)
    } else {
        Err(rc)
    }
}

#[test]
fn default_arch_is_sm90a_with_h100_limits() {
    let _ctx = context();
    assert_eq!(
        device::arch(),
        ptx_emu::Arch::Sm90a,
        "PTX_EMU_ARCH must be unset for this test"
    );
    assert_eq!((attr(75), attr(76)), (9, 0), "compute capability");
    assert_eq!(attr(16), 132, "SM count");
    assert_eq!(attr(97), 227 * 1024, "opt-in shared memory per block");
    assert_eq!(attr(81), 228 * 1024, "shared memory per SM");
    assert_eq!(attr(8), 48 * 1024, "default shared memory per block");
    assert_eq!(attr(82), 65536, "registers per SM");
    assert_eq!(attr(39), 2048, "threads per SM");
    let mut name = [0i8; 64];
    ok(unsafe { cuDeviceGetName(name.as_mut_ptr(), 64, 0) }, "name");
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    assert!(name.contains("sm_90a") && name.contains("H100"), "{name}");
}

#[test]
fn target_checks_at_module_load() {
    let ctx = context();
    assert!(load(HOPPER).is_ok(), "sm_90a PTX loads on sm_90a");
    let sm80 = HOPPER.replace(".target sm_90a", ".target sm_80");
    // sm_80 PTX loads (forward compatible) — its kernels using sm_90 instructions are then
    // unsupported at launch, as ptxas would reject them.
    assert!(load(&sm80).is_ok());
    let sm100 = HOPPER.replace(".target sm_90a", ".target sm_100");
    assert_eq!(load(&sm100).unwrap_err(), CUDA_ERROR_INVALID_PTX);
    let sm100a = HOPPER.replace(".target sm_90a", ".target sm_100a");
    assert_eq!(load(&sm100a).unwrap_err(), CUDA_ERROR_INVALID_PTX);
    let _ = cuCtxDestroy_v2(ctx);
}

#[repr(C, align(64))]
struct TMap([u8; 128]);

#[allow(clippy::too_many_arguments)]
fn encode(
    m: &mut TMap,
    dtype: u32,
    ga: u64,
    dims: &[u64],
    strides: &[u64],
    boxd: &[u32],
    swz: u32,
    oob: u32,
) -> CUresult {
    let es = vec![1u32; dims.len()];
    unsafe {
        cuTensorMapEncodeTiled(
            m.0.as_mut_ptr(),
            dtype,
            dims.len() as u32,
            ga as *mut c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxd.as_ptr(),
            es.as_ptr(),
            0,
            swz,
            0,
            oob,
        )
    }
}

#[test]
fn tensor_map_encode_rules() {
    let _ctx = context();
    let mut m = TMap([0; 128]);
    let ga = 0x1000u64;
    ok(
        encode(&mut m, 9, ga, &[64, 16], &[128], &[64, 8], 3, 0),
        "valid bf16 SW128 map",
    );
    assert_eq!(&m.0[0..4], b"PXTM");
    assert_eq!(
        encode(&mut m, 9, ga + 8, &[64, 16], &[128], &[64, 8], 3, 0),
        CUDA_ERROR_INVALID_VALUE,
        "unaligned address"
    );
    assert_eq!(
        encode(&mut m, 9, ga, &[64, 16], &[120], &[64, 8], 3, 0),
        CUDA_ERROR_INVALID_VALUE,
        "stride not a multiple of 16"
    );
    assert_eq!(
        encode(&mut m, 9, ga, &[128, 16], &[256], &[128, 8], 3, 0),
        CUDA_ERROR_INVALID_VALUE,
        "inner box > swizzle span"
    );
    assert_eq!(
        encode(&mut m, 9, ga, &[64, 16], &[128], &[64, 300], 0, 0),
        CUDA_ERROR_INVALID_VALUE,
        "box > 256"
    );
    assert_eq!(
        encode(&mut m, 0, ga, &[64, 16], &[64], &[64, 8], 0, 1),
        CUDA_ERROR_INVALID_VALUE,
        "NaN fill of an integer type"
    );
    assert_eq!(
        encode(&mut m, 99, ga, &[64, 16], &[128], &[64, 8], 0, 0),
        CUDA_ERROR_INVALID_VALUE,
        "unknown type"
    );
}

#[test]
fn tma_kernel_through_cu_launch_kernel_ex() {
    let ctx = context();
    let module = load(HOPPER).unwrap();
    let mut f = null_mut();
    ok(
        unsafe { cuModuleGetFunction(&mut f, module, c"tma_load_2d".as_ptr()) },
        "get function",
    );
    // a 64 × 16 bf16 tensor (row pitch 128 bytes), values = element index
    let (w, h) = (64usize, 16usize);
    let host: Vec<u16> = (0..w * h).map(|i| i as u16).collect();
    let mut g = 0u64;
    ok(unsafe { cuMemAlloc_v2(&mut g, w * h * 2) }, "alloc");
    ok(
        unsafe { cuMemcpyHtoD_v2(g, host.as_ptr() as *const c_void, w * h * 2) },
        "HtoD",
    );
    let mut out = 0u64;
    ok(unsafe { cuMemAlloc_v2(&mut out, 1024) }, "alloc out");
    let mut m = TMap([0; 128]);
    // box 64 × 8 at (0, 4), no swizzle: out = rows 4..12
    ok(
        encode(
            &mut m,
            9,
            g,
            &[w as u64, h as u64],
            &[(w * 2) as u64],
            &[64, 8],
            0,
            0,
        ),
        "encode",
    );
    let mut coords = [0i32, 4, 0, 0, 0];
    let mut bytes = 1024u32;
    let mut o = out;
    let mut params: [*mut c_void; 4] = [
        m.0.as_mut_ptr() as *mut c_void,
        &mut o as *mut u64 as *mut c_void,
        coords.as_mut_ptr() as *mut c_void,
        &mut bytes as *mut u32 as *mut c_void,
    ];
    let mut attrs = [CUlaunchAttribute {
        id: LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION,
        pad: [0; 4],
        value: [0; 8],
    }];
    attrs[0].value[0] = 1 | (1 << 32);
    attrs[0].value[1] = 1;
    let mut cfg = CUlaunchConfig {
        grid_dim: [1, 1, 1],
        block_dim: [128, 1, 1],
        shared_mem_bytes: 0,
        h_stream: null_mut(),
        attrs: attrs.as_mut_ptr(),
        num_attrs: 1,
    };
    ok(
        unsafe { cuLaunchKernelEx(&cfg, f, params.as_mut_ptr(), null_mut()) },
        "cuLaunchKernelEx",
    );
    let mut got = vec![0u16; 512];
    ok(
        unsafe { cuMemcpyDtoH_v2(got.as_mut_ptr() as *mut c_void, out, 1024) },
        "DtoH",
    );
    assert_eq!(got, host[4 * w..12 * w].to_vec());
    // a cluster of 2 blocks (both load the same box: the same output)
    ok(cuMemsetD8_v2(out, 0, 1024), "memset");
    unsafe { (*cfg.attrs).value[0] = 2 | (1 << 32) };
    cfg.grid_dim = [2, 1, 1];
    ok(
        unsafe { cuLaunchKernelEx(&cfg, f, params.as_mut_ptr(), null_mut()) },
        "cuLaunchKernelEx (cluster of 2)",
    );
    ok(
        unsafe { cuMemcpyDtoH_v2(got.as_mut_ptr() as *mut c_void, out, 1024) },
        "DtoH",
    );
    assert_eq!(got, host[4 * w..12 * w].to_vec());
    // a cluster that does not divide the grid is invalid, as is one over the portable 8 blocks
    // unless the function allows non-portable sizes (then up to 16)
    unsafe { (*cfg.attrs).value[0] = 3 | (1 << 32) };
    assert_eq!(
        unsafe { cuLaunchKernelEx(&cfg, f, params.as_mut_ptr(), null_mut()) },
        CUDA_ERROR_INVALID_VALUE
    );
    unsafe { (*cfg.attrs).value[0] = 16 | (1 << 32) };
    cfg.grid_dim = [16, 1, 1];
    assert_eq!(
        unsafe { cuLaunchKernelEx(&cfg, f, params.as_mut_ptr(), null_mut()) },
        CUDA_ERROR_INVALID_VALUE
    );
    ok(cuFuncSetAttribute(f, 14, 1), "non-portable cluster size");
    ok(
        unsafe { cuLaunchKernelEx(&cfg, f, params.as_mut_ptr(), null_mut()) },
        "cuLaunchKernelEx (cluster of 16)",
    );
    assert_eq!(std::mem::size_of::<CUlaunchAttribute>(), 72);
    assert_eq!(std::mem::size_of::<CUlaunchConfig>(), 56);
    let _ = cuCtxDestroy_v2(ctx);
}
