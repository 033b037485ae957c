//! `CudaTensor`: a device buffer + shape + storage dtype (bf16 or f32), and the dtype rule of ops
//! with several tensor operands. The lowest layer of the CUDA backend with `util.rs`: op files and
//! `context.rs` use it, it uses neither.

use std::sync::Arc;

use anyhow::Result;
use cudarc::driver::CudaSlice;
use cyberhost_kernels::DType;

use super::arena::DeviceBuffer;
use crate::backends::TensorLike;

/// How a tensor's elements are laid out in its buffer (PyTorch's `memory_format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MemoryFormat {
    /// Row-major in the logical shape (every op takes this).
    #[default]
    Contiguous,
    /// A rank-4 tensor of logical shape `(N, C, H, W)` stored `(N, H, W, C)` (NHWC, the token
    /// layout `(N, H·W, C)`): the sm_80 U-Net trunk's activations (`conv2d_nhwc`). Only the ops
    /// listed in `memory_format.rs` read it; every other op gets a contiguous copy at its entry.
    ChannelsLast,
}

/// A row-major tensor on the device: contiguous in its logical shape, or (rank 4 only)
/// channels-last ([`MemoryFormat`]). Cheap to clone (the buffer is shared).
#[derive(Clone)]
pub struct CudaTensor {
    /// At least one element is allocated, so the address is never null (even for empty shapes).
    pub(super) buf: Arc<DeviceBuffer>,
    /// The logical shape (NCHW for images, whatever the storage order).
    pub(super) shape: Vec<usize>,
    pub(super) dtype: DType,
    pub(super) format: MemoryFormat,
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

    /// How the elements are stored ([`MemoryFormat`]).
    pub fn memory_format(&self) -> MemoryFormat {
        self.format
    }

    /// Whether the tensor is stored channels-last.
    pub fn is_channels_last(&self) -> bool {
        self.format == MemoryFormat::ChannelsLast
    }

    /// The shape of the bytes as stored: the logical shape, or `(N, H, W, C)` for a
    /// channels-last `(N, C, H, W)`.
    pub fn storage_shape(&self) -> Vec<usize> {
        match (self.format, self.shape.as_slice()) {
            (MemoryFormat::ChannelsLast, &[n, c, h, w]) => vec![n, h, w, c],
            _ => self.shape.clone(),
        }
    }

    /// Same buffer, new shape, contiguous (the caller checked the element count, and that the
    /// bytes are row-major in `shape`).
    pub(crate) fn with_shape(&self, shape: Vec<usize>) -> CudaTensor {
        CudaTensor {
            buf: self.buf.clone(),
            shape,
            dtype: self.dtype,
            format: MemoryFormat::Contiguous,
        }
    }

    /// The bytes as a contiguous tensor of their storage shape (a channels-last tensor as its
    /// `(N, H, W, C)`; a contiguous one unchanged), for launchers that address the storage.
    pub(crate) fn storage_view(&self) -> CudaTensor {
        self.with_shape(self.storage_shape())
    }

    /// A contiguous `(N, H, W, C)` tensor read as the channels-last `(N, C, H, W)` it stores.
    pub(crate) fn nhwc_as_channels_last(&self) -> anyhow::Result<CudaTensor> {
        match (self.format, self.shape.as_slice()) {
            (MemoryFormat::Contiguous, &[n, h, w, c]) => Ok(CudaTensor {
                buf: self.buf.clone(),
                shape: vec![n, c, h, w],
                dtype: self.dtype,
                format: MemoryFormat::ChannelsLast,
            }),
            _ => anyhow::bail!("{self:?} is not a contiguous (N, H, W, C) tensor"),
        }
    }
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaTensor{:?}<{}>", self.shape, self.dtype.suffix())?;
        if self.is_channels_last() {
            write!(f, "(channels-last)")?;
        }
        Ok(())
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
