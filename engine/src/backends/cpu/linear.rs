//! `linear` (x · wᵀ + b) and batched `matmul`, both through `gemm::sgemm`.

use anyhow::Result;
use rayon::prelude::*;

use super::gemm::{run_units, sgemm, sgemm_rows, Mat, Threads};
use super::{check_vec, CpuTensor};
use crate::backends::shape::{linear_shape, matmul_shape};
use crate::backends::TensorLike;

/// x (.., K) · wᵀ with w (N, K), plus optional bias (N,) → (.., N).
pub(crate) fn linear(x: &CpuTensor, w: &CpuTensor, bias: Option<&CpuTensor>) -> Result<CpuTensor> {
    let shape = linear_shape("linear", x.shape(), w.shape())?;
    let (n, k) = (w.shape()[0], w.shape()[1]);
    check_vec("linear", "bias", bias, n)?;
    let m: usize = x.shape()[..x.rank() - 1].iter().product();
    let mut out = vec![0.0f32; m * n];
    if let Some(b) = bias {
        if n > 0 {
            out.par_chunks_mut(n)
                .for_each(|row| row.copy_from_slice(b.data()));
        }
    }
    sgemm(
        m,
        n,
        k,
        Mat::rows(x.data(), k),
        Mat::transposed(w.data(), k),
        &mut out,
        n,
        bias.is_some(),
        1.0,
        Threads::Auto,
    )?;
    Ok(CpuTensor::new_unchecked(shape, out))
}

/// Products smaller than this (multiply-adds) are spread over the batch instead
/// of inside one GEMM.
const SMALL_GEMM_MACS: usize = 1 << 21;

/// a (.., M, K) · b (.., K, N) with equal batch dims → (.., M, N).
pub(crate) fn matmul(a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
    let shape = matmul_shape(a.shape(), b.shape())?;
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let batch: usize = a.shape()[..ra - 2].iter().product();
    let mut out = vec![0.0f32; batch * m * n];
    if m * n == 0 {
        return Ok(CpuTensor::new_unchecked(shape, out));
    }
    let (ad, bd) = (a.data(), b.data());
    let one = |i: usize, c: &mut [f32], threads: Threads| {
        let (ai, bi) = (
            &ad[i * m * k..(i + 1) * m * k],
            &bd[i * k * n..(i + 1) * k * n],
        );
        sgemm_rows((m, n, k), ai, bi, c, false, threads)
    };
    run_units(&mut out, m * n, batch, m * n * k < SMALL_GEMM_MACS, one)?;
    Ok(CpuTensor::new_unchecked(shape, out))
}
