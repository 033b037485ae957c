//! CUDA backend (context, module and launch layer; the op launchers come later).
//!
//! Runs on any libcuda that cudarc 0.19 can load: a real NVIDIA driver, or the stand-in driver
//! `tools/ptx-emu-driver` that executes the same PTX on the `ptx-emu` interpreter (see
//! `docs/stand-in-driver.md`). [`CudaDevice::new`] never panics when no driver is present; it
//! returns [`NO_DRIVER_MSG`].

pub mod arena;
pub mod attention;
mod backend;
pub mod conv2d;
mod device;
mod elementwise;
mod fused;
pub mod gemm;
pub mod graph;
mod layout;
mod linalg;
mod norm;
mod pool;
pub mod profiling;
mod rca;
mod sampler;

pub use backend::{CudaBackend, CudaTensor};
pub use cyberhost_kernels::DType;
pub use device::{
    driver_present, find_stand_in_driver, load_driver_library, CudaDevice, DriverStats,
    LaunchObserver, PodArg, DRIVER_ENV, NO_DRIVER_MSG, STAND_IN_FILE,
};

/// The cudarc version the backend is built on (re-exported so tests and launchers use the same).
pub use cudarc;
