//! `PTX_EMU_ARCH=sm_80`: the stand-in is an A100-like device (compute capability 8.0, 108 SMs,
//! 163 KB opt-in shared memory per block) and refuses sm_90a PTX at `cuModuleLoadData` with
//! `CUDA_ERROR_INVALID_PTX`, as the real driver's JIT does. One test: the variable is set
//! before the first driver call of this process.

use std::ffi::{c_int, c_void};
use std::ptr::null_mut;

use ptx_emu_driver::errors::*;
use ptx_emu_driver::*;

const HOPPER: &str = concat!(include_str!("../../ptx-emu/tests/ptx/hopper.ptx"), "\0");
const SM80: &str = concat!(include_str!("ptx/driver_test_kernels.ptx"), "\0");

fn attr(a: c_int) -> c_int {
    let mut v = 0;
    assert_eq!(unsafe { cuDeviceGetAttribute(&mut v, a, 0) }, CUDA_SUCCESS);
    v
}

#[test]
fn sm80_device_and_target_checks() {
    // the only test of this binary: no other thread reads the environment yet
    std::env::set_var("PTX_EMU_ARCH", "sm_80");
    unsafe {
        assert_eq!(cuInit(0), CUDA_SUCCESS);
        let mut ctx = null_mut();
        assert_eq!(cuCtxCreate_v2(&mut ctx, 0, 0), CUDA_SUCCESS);
        assert_eq!((attr(75), attr(76)), (8, 0));
        assert_eq!(attr(16), 108);
        assert_eq!(attr(97), 163 * 1024);
        assert_eq!(attr(81), 164 * 1024);
        let mut m = null_mut();
        assert_eq!(
            cuModuleLoadData(&mut m, HOPPER.as_ptr() as *const c_void),
            CUDA_ERROR_INVALID_PTX
        );
        let sm89 = HOPPER.replace(".target sm_90a", ".target sm_89");
        assert_eq!(
            cuModuleLoadData(&mut m, sm89.as_ptr() as *const c_void),
            CUDA_ERROR_INVALID_PTX
        );
        assert_eq!(
            cuModuleLoadData(&mut m, SM80.as_ptr() as *const c_void),
            CUDA_SUCCESS
        );
        let _ = cuCtxDestroy_v2(ctx);
    }
}
