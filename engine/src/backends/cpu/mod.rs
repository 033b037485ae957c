//! CPU reference backend (plain f32, multi-threaded). The oracle for every op.
//!
//! `CpuTensor` is a shape plus a contiguous, row-major `Arc<Vec<f32>>`: clones and
//! `reshape` share the buffer; every other op writes a fresh buffer. Work is spread
//! over the rayon pool; matrix products go through the `gemm` crate (`gemm.rs`).
//!
//! One op per file, named after the trait method:
//! `layout.rs` (reshape, permute, concat, narrow, index_select, pad2d),
//! `pointwise.rs` (unary, binary, affine), `softmax.rs`, `group_norm.rs`,
//! `layer_norm.rs`, `linear.rs` (linear, matmul), `conv2d.rs`, `attention.rs`,
//! `upsample.rs`, `mean_dim.rs`, `pool.rs` (max_pool2d).

mod attention;
mod conv2d;
pub mod conv2d_nhwc;
mod gemm;
pub mod gemm_fp8_sm90;
mod group_norm;
mod layer_norm;
mod layout;
mod linear;
mod mean_dim;
mod pointwise;
mod pool;
mod softmax;
mod upsample;

use std::sync::Arc;

use anyhow::{bail, Result};

use super::{Backend, Binary, Conv2dParams, TensorLike, Unary};

pub use pointwise::{erf_f32, gelu_erf, gelu_tanh, silu};

pub(crate) use super::shape::check_vec;

/// A contiguous row-major f32 tensor. Cheap to clone (the data is shared).
#[derive(Clone)]
pub struct CpuTensor {
    shape: Vec<usize>,
    data: Arc<Vec<f32>>,
}

impl CpuTensor {
    /// Wrap `data` as a tensor of `shape`; errors when the element count differs.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            bail!(
                "CpuTensor::from_vec: shape {:?} needs {} elements, got {}",
                shape,
                n,
                data.len()
            );
        }
        Ok(CpuTensor {
            shape: shape.to_vec(),
            data: Arc::new(data),
        })
    }

    /// Internal constructor for ops that computed a buffer of the right size.
    pub(crate) fn new_unchecked(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        CpuTensor {
            shape,
            data: Arc::new(data),
        }
    }

    /// The row-major data.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Same data, new shape (no copy).
    pub(crate) fn with_shape(&self, shape: Vec<usize>) -> Self {
        CpuTensor {
            shape,
            data: self.data.clone(),
        }
    }
}

impl std::fmt::Debug for CpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuTensor{:?}", self.shape)
    }
}

impl TensorLike for CpuTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

/// The op functions under the names of the [`Backend`] methods they implement.
mod ops {
    use anyhow::Result;

    use super::{pointwise, CpuTensor};
    use crate::backends::Unary;

    pub(super) use super::attention::attention;
    pub(super) use super::conv2d::conv2d;
    pub(super) use super::group_norm::group_norm;
    pub(super) use super::layer_norm::layer_norm;
    pub(super) use super::layout::{concat, index_select, narrow, pad2d, permute, reshape};
    pub(super) use super::linear::{linear, matmul};
    pub(super) use super::mean_dim::mean_dim;
    pub(super) use super::pointwise::binary;
    pub(super) use super::pool::max_pool2d;
    pub(super) use super::softmax::softmax_last;
    pub(super) use super::upsample::upsample_nearest2d;

    pub(super) fn unary(t: &CpuTensor, op: Unary) -> Result<CpuTensor> {
        Ok(pointwise::unary(t, op))
    }

    pub(super) fn affine(t: &CpuTensor, mul: f32, add: f32) -> Result<CpuTensor> {
        Ok(pointwise::affine(t, mul, add))
    }
}

/// The CPU reference backend. Stateless; threads come from the global rayon pool.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn from_f32(&self, shape: &[usize], data: &[f32]) -> Result<CpuTensor> {
        CpuTensor::from_vec(shape, data.to_vec())
    }

    fn to_f32(&self, t: &CpuTensor) -> Result<Vec<f32>> {
        Ok(t.data.as_ref().clone())
    }

    fn zeros(&self, shape: &[usize]) -> Result<CpuTensor> {
        let n: usize = shape.iter().product();
        Ok(CpuTensor::new_unchecked(shape.to_vec(), vec![0.0; n]))
    }

    primitive_ops!(forward_ops!(to ops;));
}
