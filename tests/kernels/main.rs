//! Kernel tests, one file per kernel module (`kernels/cuda/NAME.cu` -> `tests/kernels/NAME.rs`,
//! the layout contract of docs/kernels.md): every entry of the committed PTX (the bytes that ship)
//! on random inputs with ragged shapes and several warp schedules, against the engine's CPU
//! backend (the one CPU reference); edge shapes and bad arguments through `backend_test!` bodies
//! run on the CPU and the CUDA backend.
//!
//!   cargo test --test kernels                      # all kernels
//!   cargo test --test kernels gemm_bf16            # one module
//!   CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test --test kernels   # via cudarc + stand-in driver
//!   CYBERHOST_KERNEL_TEST_DEVICE=cuda cargo test --test kernels       # via cudarc on a real GPU

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod attention;
mod attention_sm90;
mod cfg_ddim;
mod conv2d;
mod conv2d_nhwc;
mod conv2d_sm90;
mod gemm;
mod gemm_bf16;
mod gemm_fp8_sm90;
mod gemm_sm90;
mod group_norm;
mod group_norm_sm90;
mod layer_norm;
mod layout;
mod mean_dim;
mod pointwise;
mod pool;
mod rca;
mod softmax;
mod timestep_embedding;
mod upsample;
