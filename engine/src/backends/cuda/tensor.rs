//! `CudaTensor`: a device buffer + shape + storage dtype (bf16 or f32), and the dtype rule of ops
//! with several tensor operands. The lowest layer of the CUDA backend with `util.rs`: op files and
//! `context.rs` use it, it uses neither.

use std::sync::Arc;

use anyhow::Result;
use cudarc::driver::CudaSlice;
use cyberhost_kernels::DType;

use super::arena::DeviceBuffer;
use crate::backends::TensorLike;

/// A contiguous row-major tensor on the device. Cheap to clone (the buffer is shared).
#[derive(Clone)]
pub struct CudaTensor {
    /// At least one element is allocated, so the address is never null (even for empty shapes).
    pub(super) buf: Arc<DeviceBuffer>,
    pub(super) shape: Vec<usize>,
    pub(super) dtype: DType,
}

impl CudaTensor {
    /// Storage dtype of the elements.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes the elements occupy (`elem_count * dtype size`).
    pub fn size_in_bytes(&self) -> usize {
        self.elem_count() * self.dtype.size_in_bytes()
    }

    /// The device bytes (at least one element, even for empty shapes).
    pub(crate) fn buf(&self) -> &CudaSlice<u8> {
        &self.buf
    }

    /// The [`Memo`](super::arena::Memo) of the tensor's bytes (shared by clones and reshapes).
    pub(crate) fn memo(&self) -> &super::arena::Memo {
        self.buf.memo()
    }

    /// Mutable device bytes of a tensor no clone shares yet (a fresh output).
    pub(crate) fn buf_mut(&mut self) -> Result<&mut CudaSlice<u8>> {
        Arc::get_mut(&mut self.buf)
            .map(|b| &mut **b)
            .ok_or_else(|| anyhow::anyhow!("CudaTensor{:?}: output buffer is shared", self.shape))
    }

    /// Same buffer, new shape (the caller checked the element count).
    pub(crate) fn with_shape(&self, shape: Vec<usize>) -> CudaTensor {
        CudaTensor {
            buf: self.buf.clone(),
            shape,
            dtype: self.dtype,
        }
    }
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaTensor{:?}<{}>", self.shape, self.dtype.suffix())
    }
}

impl TensorLike for CudaTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

/// The dtype several tensor operands are computed in: theirs when equal, else f32.
pub(crate) fn promote(ts: &[&CudaTensor]) -> DType {
    match ts.first() {
        Some(f) if ts.iter().all(|t| t.dtype == f.dtype) => f.dtype,
        Some(_) => DType::F32,
        None => DType::Bf16,
    }
}
