//! Shape rules, and a backend whose tensors carry only shapes.
//!
//! The free functions (`check_vec`, `group_norm_channels`, `conv2d_dims`, `last_dim`,
//! `linear_shape`, `reshape_shape`, `permute_shape`, `concat_shape`, `narrow_shape`,
//! `index_select_shape`, `pad2d_shape`, `upsample_nearest2d_shape`, `mean_dim_shape`,
//! `max_pool2d_shape`, `matmul_shape`, `attention_dims`, `broadcast_shape`) are the one place an
//! op's operands are checked and its output shape inferred: the CPU backend, the CUDA backend and
//! [`ShapeBackend`] (hence the tracer, `graph::trace`) all call them, so the three agree on what is
//! an error and say it in the same words.
//!
//! [`ShapeBackend`]: every op checks its operands and infers the output shape, and nothing is
//! computed or stored. The fused primitives and the RCA ops keep the trait's default bodies: the
//! composition of the unfused ops checks and infers the same. Uses: listing the parameters a model
//! config requests without allocating them (synthetic checkpoints of any size), and dry-running a
//! forward pass to validate shapes cheaply.

use super::{Backend, Binary, Conv2dParams, TensorLike, Unary};
use anyhow::{bail, ensure, Result};

/// Shape-only tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeTensor {
    shape: Vec<usize>,
}

impl ShapeTensor {
    pub fn new(shape: &[usize]) -> Self {
        ShapeTensor {
            shape: shape.to_vec(),
        }
    }
}

impl TensorLike for ShapeTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

/// See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShapeBackend;

fn t(shape: Vec<usize>) -> Result<ShapeTensor> {
    Ok(ShapeTensor { shape })
}

/// An optional per-channel vector of `op` (`what`: gamma, beta, bias) has exactly `n` elements.
pub fn check_vec<T: TensorLike>(op: &str, what: &str, t: Option<&T>, n: usize) -> Result<()> {
    if let Some(t) = t {
        if t.elem_count() != n {
            bail!(
                "{op}: {what} has shape {:?}, expected {n} elements",
                t.shape()
            );
        }
    }
    Ok(())
}

/// `group_norm` of `(N, C, *spatial)`: `groups` divides C; returns C.
pub fn group_norm_channels(shape: &[usize], groups: usize) -> Result<usize> {
    if shape.len() < 2 {
        bail!("group_norm: x must be (N, C, *spatial), got shape {shape:?}");
    }
    let c = shape[1];
    if groups == 0 || c % groups != 0 {
        bail!("group_norm: {c} channels of x {shape:?} are not divisible into {groups} groups");
    }
    Ok(c)
}

/// Ops over the last dim (`op`: softmax_last, layer_norm): at least one dim; returns its size.
pub fn last_dim(op: &str, shape: &[usize]) -> Result<usize> {
    match shape.last() {
        Some(&d) => Ok(d),
        None => bail!("{op}: needs at least one dim, got a scalar"),
    }
}

/// `linear` (`op` names it in errors) of `x (.., K)` and `w (N, K)` → `(.., N)`.
pub fn linear_shape(op: &str, x: &[usize], w: &[usize]) -> Result<Vec<usize>> {
    if w.len() != 2 || x.last() != Some(&w[1]) {
        bail!("{op}: x {x:?} · w {w:?}ᵀ needs w (out, in) with in = the last dim of x");
    }
    let mut out = x.to_vec();
    *out.last_mut().unwrap() = w[0];
    Ok(out)
}

/// `conv2d` (`op` names it in errors) of x `(N, C, H, W)` and w `(O, C/groups, kh, kw)`.
fn check_conv2d_operands(op: &str, x: &[usize], w: &[usize], groups: usize) -> Result<()> {
    if x.len() != 4 || w.len() != 4 || groups == 0 || x[1] != w[1] * groups {
        bail!(
            "{op}: x {x:?} and w {w:?} must be (N, C, H, W) and (O, C/groups, kh, kw) with groups \
             {groups}"
        );
    }
    Ok(())
}

/// The sizes of a `conv2d`: x `(n, c, h, w)`, w `(o, c / groups, kh, kw)` → `(n, o, ho, wo)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dDims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Conv2dDims {
    /// The output shape `(N, O, Ho, Wo)`.
    pub fn out_shape(&self) -> Vec<usize> {
        vec![self.n, self.o, self.ho, self.wo]
    }
}

/// `conv2d` (`op` names it in errors) of x `(N, C, H, W)` and w `(O, C/groups, kh, kw)` with `p`
/// (PyTorch: `Ho = (H + 2·ph − dh·(kh − 1) − 1) / sh + 1`): `groups` divides C and O, stride,
/// dilation and kernel are positive, and the dilated kernel fits the padded input.
pub fn conv2d_dims(op: &str, x: &[usize], w: &[usize], p: Conv2dParams) -> Result<Conv2dDims> {
    check_conv2d_operands(op, x, w, p.groups)?;
    let (n, c, h, wd) = (x[0], x[1], x[2], x[3]);
    let (o, kh, kw) = (w[0], w[2], w[3]);
    if o % p.groups != 0 {
        bail!(
            "{op}: {o} output channels (w {w:?}) are not divisible by groups {}",
            p.groups
        );
    }
    if p.stride.0 == 0
        || p.stride.1 == 0
        || p.dilation.0 == 0
        || p.dilation.1 == 0
        || kh == 0
        || kw == 0
    {
        bail!("{op}: kernel {kh}x{kw} with {p:?} needs positive kernel sizes, stride and dilation");
    }
    let (eh, ew) = (p.dilation.0 * (kh - 1) + 1, p.dilation.1 * (kw - 1) + 1);
    if h + 2 * p.padding.0 < eh || wd + 2 * p.padding.1 < ew {
        bail!("{op}: kernel {kh}x{kw} with {p:?} does not fit the input {x:?}");
    }
    Ok(Conv2dDims {
        n,
        c,
        h,
        w: wd,
        o,
        kh,
        kw,
        ho: (h + 2 * p.padding.0 - eh) / p.stride.0 + 1,
        wo: (wd + 2 * p.padding.1 - ew) / p.stride.1 + 1,
    })
}

/// `reshape`: the element counts must agree.
pub fn reshape_shape(from: &[usize], to: &[usize]) -> Result<()> {
    let (a, b) = (from.iter().product::<usize>(), to.iter().product::<usize>());
    if a != b {
        bail!("reshape: cannot view {from:?} ({a} elements) as {to:?} ({b} elements)");
    }
    Ok(())
}

/// `permute`: `dims` must be a permutation of `0..rank`; returns the permuted shape.
pub fn permute_shape(shape: &[usize], dims: &[usize]) -> Result<Vec<usize>> {
    let r = shape.len();
    let mut seen = vec![false; r];
    if dims.len() != r
        || dims
            .iter()
            .any(|&d| d >= r || std::mem::replace(&mut seen[d], true))
    {
        bail!("permute: {dims:?} is not a permutation of the {r} dims of {shape:?}");
    }
    Ok(dims.iter().map(|&d| shape[d]).collect())
}

/// `concat` along `dim`: at least one tensor, equal ranks, equal sizes outside `dim`.
pub fn concat_shape(shapes: &[&[usize]], dim: usize) -> Result<Vec<usize>> {
    let Some(first) = shapes.first() else {
        bail!("concat: no tensors given");
    };
    let r = first.len();
    if dim >= r {
        bail!("concat: dim {dim} out of range for shape {first:?}");
    }
    for s in shapes {
        if s.len() != r || (0..r).any(|d| d != dim && s[d] != first[d]) {
            bail!("concat: shapes {shapes:?} differ outside dim {dim}");
        }
    }
    let mut out = first.to_vec();
    out[dim] = shapes.iter().map(|s| s[dim]).sum();
    Ok(out)
}

/// `narrow`: `start..start + len` must lie inside `dim`.
pub fn narrow_shape(shape: &[usize], dim: usize, start: usize, len: usize) -> Result<Vec<usize>> {
    if dim >= shape.len() || start + len > shape[dim] {
        bail!(
            "narrow: range {start}..{} of dim {dim} is outside shape {shape:?}",
            start + len
        );
    }
    let mut out = shape.to_vec();
    out[dim] = len;
    Ok(out)
}

/// `index_select`: every index inside `dim`.
pub fn index_select_shape(shape: &[usize], dim: usize, idx: &[usize]) -> Result<Vec<usize>> {
    if dim >= shape.len() {
        bail!("index_select: dim {dim} out of range for shape {shape:?}");
    }
    if let Some(&bad) = idx.iter().find(|&&i| i >= shape[dim]) {
        bail!("index_select: index {bad} out of range for dim {dim} of shape {shape:?}");
    }
    let mut out = shape.to_vec();
    out[dim] = idx.len();
    Ok(out)
}

/// `pad2d` of the last two dims by `(left, right, top, bottom)`.
pub fn pad2d_shape(
    shape: &[usize],
    left: usize,
    right: usize,
    top: usize,
    bottom: usize,
) -> Result<Vec<usize>> {
    let r = shape.len();
    if r < 2 {
        bail!("pad2d: needs at least 2 dims, got shape {shape:?}");
    }
    let mut out = shape.to_vec();
    out[r - 2] += top + bottom;
    out[r - 1] += left + right;
    Ok(out)
}

/// A shape of rank ≥ 2 as `(planes, h, w)`: its last two dims and the product of the others.
pub fn planes_hw(shape: &[usize]) -> (usize, usize, usize) {
    let r = shape.len();
    (shape[..r - 2].iter().product(), shape[r - 2], shape[r - 1])
}

/// `upsample_nearest2d` of `(N, C, H, W)` to `(N, C, out_h, out_w)`; empty spatial dims cannot
/// be resized to a non-empty plane.
pub fn upsample_nearest2d_shape(shape: &[usize], out_h: usize, out_w: usize) -> Result<Vec<usize>> {
    if shape.len() != 4 {
        bail!("upsample_nearest2d: x must be (N, C, H, W), got shape {shape:?}");
    }
    if (shape[2] == 0 || shape[3] == 0) && out_h * out_w > 0 {
        bail!(
            "upsample_nearest2d: cannot resize empty spatial dims of {shape:?} to {out_h}x{out_w}"
        );
    }
    Ok(vec![shape[0], shape[1], out_h, out_w])
}

/// `mean_dim`: the dim exists; it is kept with size 1.
pub fn mean_dim_shape(shape: &[usize], dim: usize) -> Result<Vec<usize>> {
    if dim >= shape.len() {
        bail!("mean_dim: dim {dim} out of range for shape {shape:?}");
    }
    let mut out = shape.to_vec();
    out[dim] = 1;
    Ok(out)
}

/// `max_pool2d` of `(N, C, H, W)` (PyTorch: kernel, stride > 0, padding ≤ kernel / 2, floor
/// mode) → `(N, C, Ho, Wo)`.
pub fn max_pool2d_shape(
    shape: &[usize],
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Vec<usize>> {
    if shape.len() != 4 {
        bail!("max_pool2d: expected x (N, C, H, W), got {shape:?}");
    }
    if kernel == 0 || stride == 0 || 2 * padding > kernel {
        bail!(
            "max_pool2d: kernel {kernel}, stride {stride}, padding {padding} is invalid (PyTorch \
             needs kernel, stride > 0 and padding ≤ kernel/2)"
        );
    }
    let (h, w) = (shape[2], shape[3]);
    if h + 2 * padding < kernel || w + 2 * padding < kernel {
        bail!("max_pool2d: input {shape:?} is smaller than the {kernel}×{kernel} kernel");
    }
    let o = |i: usize| (i + 2 * padding - kernel) / stride + 1;
    Ok(vec![shape[0], shape[1], o(h), o(w)])
}

/// `matmul` of `a (.., M, K)` and `b (.., K, N)` with equal batch dims → `(.., M, N)`.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let (ra, rb) = (a.len(), b.len());
    if ra < 2 || ra != rb || a[..ra - 2] != b[..rb - 2] || a[ra - 1] != b[rb - 2] {
        bail!(
            "matmul: a {a:?} and b {b:?} must be (.., M, K) and (.., K, N) with equal batch dims"
        );
    }
    let mut out = a.to_vec();
    out[ra - 1] = b[rb - 1];
    Ok(out)
}

/// The sizes of an `attention`: q `(b, h, lq, d)`, k `(b, h, lk, d)`, v `(b, h, lk, dv)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    pub b: usize,
    pub h: usize,
    pub lq: usize,
    pub lk: usize,
    pub d: usize,
    pub dv: usize,
}

impl AttentionDims {
    /// The output shape `(B, H, Lq, Dv)`.
    pub fn out_shape(&self) -> Vec<usize> {
        vec![self.b, self.h, self.lq, self.dv]
    }
}

/// `attention` of q `(B, H, Lq, D)`, k `(B, H, Lk, D)`, v `(B, H, Lk, Dv)`: its sizes.
pub fn attention_dims(q: &[usize], k: &[usize], v: &[usize]) -> Result<AttentionDims> {
    let ok = q.len() == 4
        && k.len() == 4
        && v.len() == 4
        && q[..2] == k[..2]
        && k[..3] == v[..3]
        && q[3] == k[3];
    if !ok {
        bail!(
            "attention: expected q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv); got q {q:?}, k {k:?}, v {v:?}"
        );
    }
    Ok(AttentionDims {
        b: q[0],
        h: q[1],
        lq: q[2],
        lk: k[2],
        d: q[3],
        dv: v[3],
    })
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => bail!("shapes {a:?} and {b:?} do not broadcast"),
        };
    }
    Ok(out)
}

/// [`Backend`] methods of the shape backend: a row `name(arg: Type, ..) => shape;` checks the
/// operands and returns a tensor of `shape`, an expression over the arguments (through the shape
/// rules above; `?` returns their errors).
macro_rules! shape_ops {
    ($($name:ident($($arg:ident: $ty:ty),*) => $shape:expr;)*) => {
        $(
            fn $name(&self, $($arg: $ty),*) -> Result<ShapeTensor> {
                t($shape)
            }
        )*
    };
}

impl Backend for ShapeBackend {
    type Tensor = ShapeTensor;

    fn name(&self) -> &'static str {
        "shape"
    }

    fn from_f32(&self, shape: &[usize], data: &[f32]) -> Result<ShapeTensor> {
        ensure!(
            shape.iter().product::<usize>() == data.len(),
            "from_f32: {} values for shape {shape:?}",
            data.len()
        );
        t(shape.to_vec())
    }

    fn to_f32(&self, _t: &ShapeTensor) -> Result<Vec<f32>> {
        bail!("the shape backend holds no values")
    }

    fn zeros(&self, shape: &[usize]) -> Result<ShapeTensor> {
        t(shape.to_vec())
    }

    fn concat(&self, ts: &[&ShapeTensor], dim: usize) -> Result<ShapeTensor> {
        let shapes: Vec<&[usize]> = ts.iter().map(|x| x.shape()).collect();
        t(concat_shape(&shapes, dim)?)
    }

    shape_ops! {
        reshape(x: &ShapeTensor, shape: &[usize]) => {
            reshape_shape(&x.shape, shape)?;
            shape.to_vec()
        };
        permute(x: &ShapeTensor, dims: &[usize]) => permute_shape(&x.shape, dims)?;
        narrow(x: &ShapeTensor, dim: usize, start: usize, len: usize)
            => narrow_shape(&x.shape, dim, start, len)?;
        index_select(x: &ShapeTensor, dim: usize, idx: &[usize])
            => index_select_shape(&x.shape, dim, idx)?;
        unary(x: &ShapeTensor, _op: Unary) => x.shape.clone();
        binary(a: &ShapeTensor, b: &ShapeTensor, _op: Binary) => broadcast_shape(&a.shape, &b.shape)?;
        affine(x: &ShapeTensor, _mul: f32, _add: f32) => x.shape.clone();
        softmax_last(x: &ShapeTensor) => x.shape.clone();
        group_norm(x: &ShapeTensor, groups: usize, gamma: Option<&ShapeTensor>,
            beta: Option<&ShapeTensor>, _eps: f32) => {
            let c = group_norm_channels(&x.shape, groups)?;
            check_vec("group_norm", "gamma", gamma, c)?;
            check_vec("group_norm", "beta", beta, c)?;
            x.shape.clone()
        };
        layer_norm(x: &ShapeTensor, _gamma: Option<&ShapeTensor>, _beta: Option<&ShapeTensor>,
            _eps: f32) => x.shape.clone();
        linear(x: &ShapeTensor, w: &ShapeTensor, bias: Option<&ShapeTensor>) => {
            let s = linear_shape("linear", &x.shape, &w.shape)?;
            check_vec("linear", "bias", bias, w.shape[0])?;
            s
        };
        matmul(a: &ShapeTensor, b: &ShapeTensor) => matmul_shape(&a.shape, &b.shape)?;
        conv2d(x: &ShapeTensor, w: &ShapeTensor, bias: Option<&ShapeTensor>, p: Conv2dParams) => {
            let d = conv2d_dims("conv2d", &x.shape, &w.shape, p)?;
            check_vec("conv2d", "bias", bias, d.o)?;
            d.out_shape()
        };
        attention(q: &ShapeTensor, k: &ShapeTensor, v: &ShapeTensor, _scale: f32)
            => attention_dims(&q.shape, &k.shape, &v.shape)?.out_shape();
        upsample_nearest2d(x: &ShapeTensor, out_h: usize, out_w: usize)
            => upsample_nearest2d_shape(&x.shape, out_h, out_w)?;
        pad2d(x: &ShapeTensor, l: usize, r: usize, top: usize, bottom: usize)
            => pad2d_shape(&x.shape, l, r, top, bottom)?;
        mean_dim(x: &ShapeTensor, dim: usize) => mean_dim_shape(&x.shape, dim)?;
        max_pool2d(x: &ShapeTensor, kernel: usize, stride: usize, padding: usize)
            => max_pool2d_shape(&x.shape, kernel, stride, padding)?;
        timestep_embedding(ts: &ShapeTensor, dim: usize, _flip_sin_to_cos: bool,
            _downscale_freq_shift: f32) => {
            ensure!(ts.rank() == 1, "timestep_embedding: t {:?} must be (N,)", ts.shape);
            vec![ts.shape[0], dim]
        };
        cfg_ddim_step(out: &ShapeTensor, z: &ShapeTensor, frame_offset: usize,
            coeffs: &ShapeTensor) => {
            super::composed::check_cfg_ddim(&out.shape, &z.shape, frame_offset, &coeffs.shape)?;
            z.shape.clone()
        };
    }
}
