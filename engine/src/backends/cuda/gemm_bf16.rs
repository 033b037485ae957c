//! Launcher of `kernels/cuda/gemm_bf16.cu`: `C[b] = A[b]·B[b]ᵀ + bias` with bf16 operands and an
//! f32 or bf16 C (the f32-output path of `linear` / `matmul`, see `linalg.rs`).

use anyhow::Result;
use cyberhost_kernels::gemm_bf16::{launch_config, GemmLayout, GemmParams, GemmPtrs, GemmShape};
use cyberhost_kernels::{DType, KernelModule};

use super::context::CudaBackend;
use super::tensor::CudaTensor;

/// gridDim.z limit: larger batches run in chunks.
pub(crate) const MAX_BATCH: usize = 65_535;

/// `C[b] = A[b]·B[b]ᵀ + bias` for bf16 A `(batch, m, k)` and B `(batch or 1, n, k)` into a new
/// `(batch, m, n)` tensor of `out` dtype (`out_shape` gives its logical shape).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_nt(
    be: &CudaBackend,
    a: &CudaTensor,
    b: &CudaTensor,
    bias: Option<&CudaTensor>,
    (batch, m, n, k): (usize, usize, usize, usize),
    broadcast_b: bool,
    out: DType,
    out_shape: &[usize],
) -> Result<CudaTensor> {
    debug_assert!(a.dtype() == DType::Bf16 && b.dtype() == DType::Bf16);
    let c = be.alloc(out_shape, out)?;
    if batch * m * n == 0 {
        return Ok(c);
    }
    let (pa, pb, pc) = (be.ptr(a), be.ptr(b), be.ptr(&c));
    let pbias = bias.map_or(0, |t| be.ptr(t));
    let mut done = 0;
    while done < batch {
        let chunk = (batch - done).min(MAX_BATCH);
        let shape = GemmShape::new(chunk, m, n, k);
        let lay = GemmLayout::contiguous(shape, broadcast_b);
        let ptrs = GemmPtrs {
            a: pa + (done * m * k * 2) as u64,
            b: pb
                + if broadcast_b {
                    0
                } else {
                    (done * n * k * 2) as u64
                },
            bias: pbias,
            c: pc + (done * m * n * out.size_in_bytes()) as u64,
        };
        let p = GemmParams::new(ptrs, shape, lay)?;
        // SAFETY: gemm_bf16_v1_<out>(GemmParams): A holds (batch, m, k) bf16 and B (batch or 1,
        // n, k) bf16, contiguous; bias (n) bf16 or null; C (batch, m, n) of `out`; the chunk
        // offsets stay inside them.
        unsafe {
            be.launch(
                KernelModule::GemmBf16,
                "gemm_bf16",
                out,
                launch_config(shape),
                &p,
            )
        }?;
        done += chunk;
    }
    Ok(c)
}
