//! Pointwise ops on CUDA (`kernels/cuda/pointwise.cu`): unary, NumPy-broadcast binary, affine and
//! the f32 <-> bf16 casts.

use anyhow::{bail, Result};
use cyberhost_kernels::pointwise::{
    binary_op, launch_config, launch_config_binary, unary_op, PointwiseParams, POINTWISE_MAX_RANK,
};
use cyberhost_kernels::{DType, KernelModule};

use super::context::CudaBackend;
use super::tensor::{promote, CudaTensor};
use super::util::u32_of;
use crate::backends::shape::{broadcast_shape, check_vec};
use crate::backends::strides::broadcast_strides;
use crate::backends::strides::collapse_dims;
use crate::backends::{Binary, TensorLike, Unary};

fn unary_code(op: Unary) -> u32 {
    match op {
        Unary::Silu => unary_op::SILU,
        Unary::Gelu => unary_op::GELU,
        Unary::GeluTanh => unary_op::GELU_TANH,
        Unary::Relu => unary_op::RELU,
        Unary::Sigmoid => unary_op::SIGMOID,
        Unary::Tanh => unary_op::TANH,
        Unary::Exp => unary_op::EXP,
        Unary::Neg => unary_op::NEG,
        Unary::Sqrt => unary_op::SQRT,
    }
}

fn binary_code(op: Binary) -> u32 {
    match op {
        Binary::Add => binary_op::ADD,
        Binary::Sub => binary_op::SUB,
        Binary::Mul => binary_op::MUL,
        Binary::Div => binary_op::DIV,
    }
}

pub(crate) fn unary(be: &CudaBackend, t: &CudaTensor, op: Unary) -> Result<CudaTensor> {
    let out = be.alloc(t.shape(), t.dtype())?;
    if t.elem_count() == 0 {
        return Ok(out);
    }
    let mut p = PointwiseParams::flat(be.ptr(t), be.ptr(&out), t.elem_count() as u64);
    p.op = unary_code(op);
    // SAFETY: unary_v1_<dtype>(PointwiseParams): a and y both hold n elements of t's dtype.
    unsafe {
        be.launch_to(
            KernelModule::Pointwise,
            "unary",
            launch_config(p.n),
            &p,
            out,
        )
    }
}

pub(crate) fn affine(be: &CudaBackend, t: &CudaTensor, mul: f32, add: f32) -> Result<CudaTensor> {
    let out = be.alloc(t.shape(), t.dtype())?;
    if t.elem_count() == 0 {
        return Ok(out);
    }
    let mut p = PointwiseParams::flat(be.ptr(t), be.ptr(&out), t.elem_count() as u64);
    p.mul = mul;
    p.add = add;
    // SAFETY: affine_v1_<dtype>(PointwiseParams): a and y both hold n elements of t's dtype.
    unsafe {
        be.launch_to(
            KernelModule::Pointwise,
            "affine",
            launch_config(p.n),
            &p,
            out,
        )
    }
}

/// `t` converted to `dtype` (a clone when it already has it).
pub(crate) fn cast(be: &CudaBackend, t: &CudaTensor, dtype: DType) -> Result<CudaTensor> {
    if t.dtype() == dtype {
        return Ok(t.clone());
    }
    if t.is_channels_last() {
        // Elementwise: the storage cast, in the same format.
        return cast(be, &t.storage_view(), dtype)?.nhwc_as_channels_last();
    }
    let out = be.alloc(t.shape(), dtype)?;
    if t.elem_count() == 0 {
        return Ok(out);
    }
    let p = PointwiseParams::flat(be.ptr(t), be.ptr(&out), t.elem_count() as u64);
    // The entry is named after the output dtype, suffixed with the input dtype.
    let op = match dtype {
        DType::F32 => "cast_f32",
        DType::Bf16 => "cast_bf16",
    };
    // SAFETY: cast_<out>_v1_<in>(PointwiseParams): a holds n elements of t's dtype, y n elements
    // of `dtype`.
    unsafe {
        be.launch(
            KernelModule::Pointwise,
            op,
            t.dtype(),
            launch_config(p.n),
            &p,
        )
    }?;
    Ok(out)
}

pub(crate) fn binary(
    be: &CudaBackend,
    a: &CudaTensor,
    b: &CudaTensor,
    op: Binary,
) -> Result<CudaTensor> {
    let shape =
        broadcast_shape(a.shape(), b.shape()).map_err(|e| anyhow::anyhow!("binary {op:?}: {e}"))?;
    let dtype = promote(&[a, b]);
    let (a, b) = (be.as_dtype(a, dtype)?, be.as_dtype(b, dtype)?);
    let out = be.alloc(&shape, dtype)?;
    let n: usize = shape.iter().product();
    if n == 0 {
        return Ok(out);
    }
    let sa = broadcast_strides(a.shape(), &shape);
    let sb = broadcast_strides(b.shape(), &shape);
    let (sizes, st) = collapse_dims(&shape, &[sa, sb]);
    if sizes.len() > POINTWISE_MAX_RANK {
        bail!(
            "binary {:?}: broadcasting {:?} with {:?} needs {} index dims, the CUDA kernel takes at \
             most {POINTWISE_MAX_RANK}",
            op,
            a.shape(),
            b.shape(),
            sizes.len()
        );
    }
    let mut p = PointwiseParams::flat(be.ptr(&a), be.ptr(&out), n as u64);
    p.b = be.ptr(&b);
    p.op = binary_code(op);
    let off = POINTWISE_MAX_RANK - sizes.len();
    for (i, &s) in sizes.iter().enumerate() {
        p.shape[off + i] = u32_of(s, "binary dim")?;
        p.a_strides[off + i] = st[0][i] as u64;
        p.b_strides[off + i] = st[1][i] as u64;
    }
    // SAFETY: binary_v2_<dtype>(PointwiseParams): y holds n elements; a and b are read at
    // Σ c·strides for c inside `shape`, strides derived from their own contiguous shapes (0 on
    // broadcast dims), so every read stays inside them; all three share `dtype`.
    unsafe {
        be.launch_version(
            KernelModule::Pointwise,
            "binary",
            2,
            dtype,
            launch_config_binary(&p, dtype),
            &p,
        )?;
    }
    Ok(out)
}

impl CudaBackend {
    /// The tensor converted to `dtype` (a clone when it already has it).
    pub fn to_dtype(&self, t: &CudaTensor, dtype: DType) -> Result<CudaTensor> {
        cast(self, t, dtype)
    }

    /// Bring `t` to `dtype` when it differs (per-channel vectors following `x`).
    pub(crate) fn as_dtype(&self, t: &CudaTensor, dtype: DType) -> Result<CudaTensor> {
        if t.dtype == dtype {
            Ok(t.clone())
        } else {
            cast(self, t, dtype)
        }
    }
}

/// Checks an optional per-channel vector has exactly `n` elements and brings it to `x`'s dtype.
pub(crate) fn channel_vec(
    be: &CudaBackend,
    op: &str,
    what: &str,
    t: Option<&CudaTensor>,
    n: usize,
    x: &CudaTensor,
) -> Result<Option<CudaTensor>> {
    check_vec(op, what, t, n)?;
    t.map(|t| be.as_dtype(t, x.dtype())).transpose()
}
