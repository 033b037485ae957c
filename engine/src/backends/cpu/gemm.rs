//! Safe wrapper over the `gemm` crate for strided f32 matrices.
//!
//! `C (m×n, row stride ldc, unit column stride) = [C +] alpha · A·B`, where
//! `A[i, p] = a[i·a.rs + p·a.cs]` and `B[p, j] = b[p·b.rs + j·b.cs]`. Transposed
//! operands are just swapped strides (e.g. `wᵀ` for a row-major `(N, K)` weight
//! is `rs = 1, cs = K`).

use anyhow::{bail, Result};
use rayon::prelude::*;

/// A read-only strided view of an `rows × cols` matrix inside `data`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major matrix with row stride `ld`.
    pub fn rows(data: &'a [f32], ld: usize) -> Self {
        Mat {
            data,
            rs: ld,
            cs: 1,
        }
    }
    /// Transpose of a row-major matrix with row stride `ld`.
    pub fn transposed(data: &'a [f32], ld: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: ld,
        }
    }
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Whether `sgemm` may use the rayon pool itself. Callers already inside a
/// parallel loop pass `Threads::Single`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    Auto,
    Single,
}

/// Runs `unit(i, chunk, threads)` on the `units` chunks of `chunk_len` elements of `out`
/// (`chunk_len > 0`): one unit per pool thread when there are enough of them or they are `small`,
/// otherwise one after the other, each spreading its GEMM over the pool itself.
pub(crate) fn run_units(
    out: &mut [f32],
    chunk_len: usize,
    units: usize,
    small: bool,
    unit: impl Fn(usize, &mut [f32], Threads) -> Result<()> + Sync,
) -> Result<()> {
    if units >= rayon::current_num_threads() || (units > 1 && small) {
        out.par_chunks_mut(chunk_len)
            .enumerate()
            .try_for_each(|(i, d)| unit(i, d, Threads::Single))
    } else {
        for (i, d) in out.chunks_mut(chunk_len).enumerate() {
            unit(i, d, Threads::Auto)?;
        }
        Ok(())
    }
}

/// Below this many multiply-adds a product runs on one thread.
const PARALLEL_MIN_MACS: usize = 1 << 17;

/// [`sgemm`] of dense row-major operands: `c (M, N) (= or +=) a (M, K) · b (K, N)`.
pub(crate) fn sgemm_rows(
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
    threads: Threads,
) -> Result<()> {
    let (a, b) = (Mat::rows(a, k), Mat::rows(b, n));
    sgemm(m, n, k, a, b, c, n, accumulate, 1.0, threads)
}

/// `c[i*ldc + j] (= or +=) alpha · Σ_p A[i,p]·B[p,j]` for `i < m, j < n`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    alpha: f32,
    threads: Threads,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if !a.fits(m, k) || !b.fits(k, n) || (m - 1) * ldc + n > c.len() || ldc < n {
        bail!("sgemm: operand buffers too small for m={m} n={n} k={k} (internal error)");
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[i * ldc..i * ldc + n].fill(0.0);
            }
        }
        return Ok(());
    }
    let par = if threads == Threads::Auto
        && m * n * k >= PARALLEL_MIN_MACS
        && rayon::current_num_threads() > 1
    {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `fits` checked above that every element addressed by the strides
    // (max index (rows-1)·rs + (cols-1)·cs) lies inside each slice, and `c` is
    // borrowed mutably so nothing else aliases the destination.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}
