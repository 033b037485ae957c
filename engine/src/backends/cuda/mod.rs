//! CUDA backend: `CudaBackend` implements [`Backend`](crate::backends::Backend) with our PTX
//! (`kernels/`) launched through `cudarc`.
//!
//! Runs on any libcuda that cudarc 0.19 can load: a real NVIDIA driver, or the stand-in driver
//! `tools/ptx-emu-driver` that executes the same PTX on the `ptx-emu` interpreter (see
//! `docs/stand-in-driver.md`). [`CudaDevice::new`] never panics when no driver is present; it
//! returns [`NO_DRIVER_MSG`].
//!
//! Layout (docs/architecture.md; `tools/check_layout.sh` keeps the arrows one way):
//! - `backend.rs`: `impl Backend for CudaBackend`, dispatching to the files below;
//! - one launcher file per kernel module `kernels/cuda/NAME.cu`: `NAME.rs` (`attention`,
//!   `cfg_ddim`, `conv2d`, `conv2d_nhwc`, `gemm`, `gemm_bf16`, `gemm_sm90`, `group_norm`, `group_norm_sm90`, `layer_norm`, `layout`, `mean_dim`,
//!   `pointwise`, `pool`, `rca`, `softmax`, `timestep_embedding`, `upsample`);
//! - compositions over several launchers: `linalg.rs` (linear / matmul / attention), `fused.rs`
//!   (the fused primitives), `graph.rs` (`run_steps`:
//!   captured sampler steps), `memory_format.rs` (channels-last tensors: the convs that take
//!   them on `conv2d_nhwc`, the conversion every other op's operands get);
//! - the layer they all launch through: `context.rs` (`CudaBackend`'s state, allocation,
//!   uploads, `launch`), `tensor.rs` (`CudaTensor`, dtype promotion), `util.rs` (size checks),
//!   `device.rs` (driver, modules, launches), `arena.rs` (planned step memory), `profiling.rs`.

pub mod arena;
pub mod attention;
mod attention_sm90;
mod backend;
mod cfg_ddim;
mod context;
pub mod conv2d;
pub mod conv2d_nhwc;
mod conv2d_sm90;
mod device;
mod fused;
pub mod gemm;
mod gemm_bf16;
pub mod gemm_fp8_sm90;
pub mod gemm_sm90;
pub mod graph;
mod group_norm;
mod group_norm_sm90;
mod layer_norm;
mod layout;
mod linalg;
mod mean_dim;
mod memory_format;
mod pointwise;
mod pool;
pub mod profiling;
mod rca;
mod softmax;
mod tensor;
mod timestep_embedding;
mod upsample;
mod util;

pub use context::{default_activations, CudaBackend};
pub use cyberhost_kernels::DType;
pub use device::{
    driver_present, find_stand_in_driver, load_driver_library, CudaDevice, DriverStats,
    LaunchObserver, PodArg, DRIVER_ENV, NO_DRIVER_MSG, STAND_IN_FILE,
};
pub use tensor::{CudaTensor, MemoryFormat};

/// The cudarc version the backend is built on (re-exported so tests and launchers use the same).
pub use cudarc;
