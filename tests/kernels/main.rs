//! Kernel tests: every entry of `kernels/ptx/*.ptx` (the committed bytes that ship) runs in the PTX
//! emulator on random inputs with ragged shapes and several warp schedules, against the CPU
//! references in `cyberhost_kernels::reference`.
//!
//!   cargo test --test kernels                      # all kernels
//!   cargo test --test kernels gemm_bf16            # one kernel
//!   CYBERHOST_KERNEL_TEST_DEVICE=stand-in cargo test --test kernels   # via cudarc + stand-in driver
//!   CYBERHOST_KERNEL_TEST_DEVICE=cuda cargo test --test kernels       # via cudarc on a real GPU

mod harness;

mod cfg_ddim;
mod elementwise;
mod gemm_bf16;
mod group_norm;
mod rca;
mod softmax;
mod timestep_embedding;
