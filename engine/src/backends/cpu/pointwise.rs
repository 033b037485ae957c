//! Elementwise ops: unary activations, NumPy-broadcast binary ops, affine.

use anyhow::Result;
use rayon::prelude::*;

use super::layout::{collapse_dims, row_offset};
use super::CpuTensor;
use crate::backends::shape::broadcast_shape;
use crate::backends::strides::{broadcast_strides, contiguous_strides};
use crate::backends::{Binary, TensorLike, Unary};

/// Elements per rayon task for cheap pointwise loops.
const CHUNK: usize = 1 << 14;

/// erf in f32 (musl's `erff`, < 1 ulp).
#[inline]
pub fn erf_f32(x: f32) -> f32 {
    libm::erff(x)
}

/// Exact GELU: 0.5 x (1 + erf(x / √2)), as `torch.nn.functional.gelu`.
#[inline]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU, tanh approximation (`approximate="tanh"`).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + (K * (x + 0.044715 * x * x * x)).tanh())
}

/// SiLU: x · sigmoid(x).
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn map(src: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; src.len()];
    out.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(o, s)| {
            for (o, &s) in o.iter_mut().zip(s) {
                *o = f(s);
            }
        });
    out
}

pub(crate) fn unary(t: &CpuTensor, op: Unary) -> CpuTensor {
    let x = t.data();
    let data = match op {
        Unary::Silu => map(x, silu),
        Unary::Gelu => map(x, gelu_erf),
        Unary::GeluTanh => map(x, gelu_tanh),
        Unary::Relu => map(x, |v| if v > 0.0 { v } else { 0.0 }),
        Unary::Sigmoid => map(x, sigmoid),
        Unary::Tanh => map(x, f32::tanh),
        Unary::Exp => map(x, f32::exp),
        Unary::Neg => map(x, |v| -v),
        Unary::Sqrt => map(x, f32::sqrt),
    };
    CpuTensor::new_unchecked(t.shape().to_vec(), data)
}

pub(crate) fn affine(t: &CpuTensor, mul: f32, add: f32) -> CpuTensor {
    CpuTensor::new_unchecked(t.shape().to_vec(), map(t.data(), |v| v * mul + add))
}

#[inline(always)]
fn apply(op: Binary, a: f32, b: f32) -> f32 {
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
    }
}

fn binary_op<const OP: u8>(
    a: &[f32],
    b: &[f32],
    out_shape: &[usize],
    sa: Vec<usize>,
    sb: Vec<usize>,
) -> Vec<f32> {
    let op = match OP {
        0 => Binary::Add,
        1 => Binary::Sub,
        2 => Binary::Mul,
        _ => Binary::Div,
    };
    let n: usize = out_shape.iter().product();
    let mut out = vec![0.0f32; n];
    if n == 0 {
        return out;
    }
    let so = contiguous_strides(out_shape);
    let (sizes, st) = collapse_dims(out_shape, &[sa, sb, so]);
    let inner = *sizes.last().unwrap();
    let (ia, ib) = (*st[0].last().unwrap(), *st[1].last().unwrap());
    out.par_chunks_mut(inner)
        .with_min_len(1.max(CHUNK / inner))
        .enumerate()
        .for_each(|(r, o)| {
            let oa = row_offset(r, &sizes, &st[0]);
            let ob = row_offset(r, &sizes, &st[1]);
            match (ia, ib) {
                (1, 1) => {
                    for ((o, &x), &y) in
                        o.iter_mut().zip(&a[oa..oa + inner]).zip(&b[ob..ob + inner])
                    {
                        *o = apply(op, x, y);
                    }
                }
                (1, 0) => {
                    let y = b[ob];
                    for (o, &x) in o.iter_mut().zip(&a[oa..oa + inner]) {
                        *o = apply(op, x, y);
                    }
                }
                (0, 1) => {
                    let x = a[oa];
                    for (o, &y) in o.iter_mut().zip(&b[ob..ob + inner]) {
                        *o = apply(op, x, y);
                    }
                }
                _ => {
                    for (j, o) in o.iter_mut().enumerate() {
                        *o = apply(op, a[oa + j * ia], b[ob + j * ib]);
                    }
                }
            }
        });
    out
}

pub(crate) fn binary(a: &CpuTensor, b: &CpuTensor, op: Binary) -> Result<CpuTensor> {
    let shape =
        broadcast_shape(a.shape(), b.shape()).map_err(|e| anyhow::anyhow!("binary {op:?}: {e}"))?;
    let sa = broadcast_strides(a.shape(), &shape);
    let sb = broadcast_strides(b.shape(), &shape);
    let data = match op {
        Binary::Add => binary_op::<0>(a.data(), b.data(), &shape, sa, sb),
        Binary::Sub => binary_op::<1>(a.data(), b.data(), &shape, sa, sb),
        Binary::Mul => binary_op::<2>(a.data(), b.data(), &shape, sa, sb),
        Binary::Div => binary_op::<3>(a.data(), b.data(), &shape, sa, sb),
    };
    Ok(CpuTensor::new_unchecked(shape, data))
}
