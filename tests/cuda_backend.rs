//! `CudaBackend` as a whole on the stand-in CUDA driver (`tools/ptx-emu-driver`: cudarc runs the
//! committed PTX on the `ptx-emu` interpreter): uploads and casts, ops running as kernels, the
//! no-driver error. The op-by-op comparisons against the CPU reference live with their kernel
//! module in `tests/kernels/NAME.rs` (docs/kernels.md).
//!
//! Every test uploads seeded random inputs (never all-zero) to both backends, runs the op and
//! compares by relative L2: ≤ 1e-2 with bf16 storage, tighter with f32 storage. Layout ops move
//! bits, so they must match the CPU exactly on the bf16-rounded inputs. The backend poisons every
//! new output (0xFF bytes = NaN) before the kernel writes it, so an element a kernel skips fails
//! the comparison. Shapes are small and ragged (odd sizes, not multiples of any block).
//!
//! ```sh
//! cargo test --test cuda_backend
//! ```

mod common;
use common::{check, cuda_backend as gpu, cuda_serial as serial, rand_pair, random, CPU};

use cyberhost_engine::backends::cuda::{CudaBackend, DType, NO_DRIVER_MSG};
use cyberhost_engine::backends::{Backend, Unary};

#[test]
fn from_f32_to_f32_roundtrip_and_zeros() {
    let _g = serial();
    let data = random(37, 1);
    let be32 = gpu().with_storage(DType::F32);
    let t = be32.from_f32(&[37], &data).unwrap();
    assert_eq!(t.dtype(), DType::F32);
    assert_eq!(be32.to_f32(&t).unwrap(), data);
    let b = gpu().from_f32(&[37], &data).unwrap();
    assert_eq!(b.dtype(), DType::Bf16);
    let back = gpu().to_f32(&b).unwrap();
    for (x, y) in back.iter().zip(&data) {
        assert_eq!(*x, half::bf16::from_f32(*y).to_f32());
    }
    // f32 <-> bf16 casts on the device agree with the host conversion
    let cast = gpu().to_dtype(&t, DType::Bf16).unwrap();
    assert_eq!(gpu().to_f32(&cast).unwrap(), back);
    let up = gpu().to_dtype(&b, DType::F32).unwrap();
    assert_eq!(gpu().to_f32(&up).unwrap(), back);
    let z = gpu().zeros(&[3, 5]).unwrap();
    assert_eq!(gpu().to_f32(&z).unwrap(), vec![0.0; 15]);
    assert!(gpu().from_f32(&[2, 2], &data[..3]).is_err());
}

#[test]
fn ops_run_as_kernels_on_the_stand_in() {
    let _g = serial();
    let stats = || gpu().device().emulator_stats().expect("stand-in stats");
    let before = stats();
    let (x, xc) = rand_pair(gpu(), &[4, 33], 7);
    let y = gpu().unary(&x, Unary::Silu).unwrap();
    let y = gpu().layer_norm(&y, None, None, 1e-5).unwrap();
    let y = gpu().permute(&y, &[1, 0]).unwrap();
    let want = CPU
        .permute(
            &CPU.layer_norm(&CPU.unary(&xc, Unary::Silu).unwrap(), None, None, 1e-5)
                .unwrap(),
            &[1, 0],
        )
        .unwrap();
    check("silu -> layer_norm -> permute", gpu(), &y, &want, 1e-2);
    let after = stats();
    assert!(
        after.kernel_launches >= before.kernel_launches + 3,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.faults, before.faults, "the emulator reported a fault");
}

#[test]
fn no_driver_is_a_clear_error_not_a_panic() {
    // A fresh process that never loads the stand-in, with nothing on LD_LIBRARY_PATH.
    common::assert_no_driver_is_reported(
        "child_new_backend",
        "CUDA_BACKEND_TEST_CHILD",
        &["CHILD-RESULT: Err(", NO_DRIVER_MSG],
    );
}

/// Runs only as the child of the test above.
#[test]
fn child_new_backend() {
    if std::env::var_os("CUDA_BACKEND_TEST_CHILD").is_none() {
        return;
    }
    if cyberhost_engine::backends::cuda::driver_present().unwrap_or(false) {
        println!("CHILD-SYSTEM-DRIVER");
    }
    match CudaBackend::new(0) {
        Ok(b) => println!("CHILD-RESULT: Ok({})", b.device().name()),
        Err(e) => println!("CHILD-RESULT: Err({e:#})"),
    }
}
