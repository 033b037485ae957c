//! Pure helpers of the CUDA op files: size checks and `u32` kernel fields. Uses nothing of the
//! backend (dim collapsing and strides are `crate::backends::strides`, shape rules
//! `crate::backends::shape`).

use anyhow::{ensure, Result};
use cudarc::driver::CudaSlice;
use cyberhost_kernels::DType;

/// A size as the `u32` a kernel field holds, naming the op and the quantity in the error.
pub(crate) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| anyhow::anyhow!("{what} = {v} does not fit the kernel's u32 field"))
}

/// Buffers may be typed `CudaSlice<u8>` (the backend's byte buffers), `<u16>` (bf16 bits) or
/// `<half::bf16>`: sizes are checked in bytes, 2 per bf16 element.
pub(crate) fn check_len<T>(what: &str, buf: &CudaSlice<T>, need_elems: u64) -> Result<()> {
    check_bytes(what, buf, need_elems, DType::Bf16)
}

/// [`check_len`] for `need_elems` elements of `dtype`.
pub(crate) fn check_bytes<T>(
    what: &str,
    buf: &CudaSlice<T>,
    need_elems: u64,
    dtype: DType,
) -> Result<()> {
    let have = buf.len() as u64 * std::mem::size_of::<T>() as u64;
    let need = need_elems * dtype.size_in_bytes() as u64;
    ensure!(
        have >= need,
        "{what}: buffer holds {have} bytes, the shape needs {need_elems} {dtype:?} elements ({need} bytes)"
    );
    Ok(())
}
