//! Criterion benches, one file per kernel module (`kernels/cuda/NAME.cu` ->
//! `benches/kernels/NAME.rs`, the layout contract of docs/kernels.md). Each times the module's
//! kernels through the CUDA backend at small shapes, synchronising after every launch: on the
//! stand-in driver (the default; no GPU needed) that is the PTX emulator's time, with
//! `CYBERHOST_KERNEL_TEST_DEVICE=cuda` on a GPU it is the kernel's.
//!
//!   cargo bench --bench kernels                 # all modules (about a minute on the emulator)
//!   cargo bench --bench kernels -- softmax      # one module
//!   CYBERHOST_KERNEL_TEST_DEVICE=cuda cargo bench --bench kernels

use std::sync::OnceLock;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use cyberhost_engine::backends::cuda::{CudaBackend, CudaTensor};
use cyberhost_engine::backends::Backend;

#[allow(dead_code)]
#[path = "../../tests/common/mod.rs"]
mod common;

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

/// The CUDA backend the benches time: a GPU with `CYBERHOST_KERNEL_TEST_DEVICE=cuda`, else the
/// stand-in driver; bf16 storage (outputs not poisoned: no extra memset in the timings).
pub fn backend() -> &'static CudaBackend {
    static BE: OnceLock<CudaBackend> = OnceLock::new();
    BE.get_or_init(common::open_cuda_backend)
}

/// Seeded values in [-1, 1) (`common::random`) on the device, in the backend's storage dtype.
pub fn tensor(shape: &[usize], seed: u64) -> CudaTensor {
    let n: usize = shape.iter().product();
    backend()
        .from_f32(shape, &common::random(n, seed))
        .expect("upload")
}

/// Times `op` (one or a few launches) as `module/case`, waiting for the device after each run.
pub fn bench(
    c: &mut Criterion,
    module: &str,
    case: &str,
    op: impl Fn() -> anyhow::Result<CudaTensor>,
) {
    let dev = backend().device();
    c.bench_function(&format!("{module}/{case}"), |b| {
        b.iter(|| {
            let y = op().expect("launch");
            dev.synchronize().expect("synchronize");
            y
        })
    });
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = kernels;
    config = config();
    targets = attention::benches, attention_sm90::benches, cfg_ddim::benches, conv2d::benches,
        conv2d_nhwc::benches, conv2d_sm90::benches, gemm::benches, gemm_bf16::benches, gemm_fp8_sm90::benches, gemm_sm90::benches,
        group_norm::benches, group_norm_sm90::benches, layer_norm::benches, layout::benches,
        mean_dim::benches, pointwise::benches, pool::benches, rca::benches, softmax::benches,
        timestep_embedding::benches, upsample::benches
}
criterion_main!(kernels);
