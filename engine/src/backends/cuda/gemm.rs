//! Launchers for `kernels/cuda/gemm.cu` (`linear_v1_bf16`, `matmul_v1_bf16`): bf16 tensor-core
//! GEMM with a fused `scale * (acc + bias [GEGLU] + residual)` epilogue; [`gemm_f32`] for its f32
//! entries (`linear_v1_f32`, `linear_wbf16_v1_f32`, `matmul_v1_f32`: f32 A split into bf16
//! hi + lo in registers, f32-accurate products, f32 epilogue operands and output). On an sm_90a
//! device [`launch`] hands the bf16 linears `gemm_sm90` supports to `gemm_sm90.rs`.

use anyhow::{ensure, Context, Result};
use cudarc::driver::DeviceRepr;
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use cyberhost_kernels::gemm::{
    launch_config, GemmEpilogue, GemmLayout, GemmOp, GemmParams, GemmPlan, GemmPtrs, GemmShape,
    GemmV2Params, SPLITK_ENTRY,
};
use cyberhost_kernels::{gemm_sm90, Arch, DType, KernelModule};

use super::context::CudaBackend;
use super::tensor::CudaTensor;
use super::util::check_len;
use super::CudaDevice;
use crate::backends::TensorLike;

/// gridDim.z limit of one launch of the f32 entries: larger batches run in chunks.
const MAX_BATCH: u64 = 65_535;

/// Operands of [`gemm_f32`]: f32 `a`, `b` f32 or bf16 (a bf16 `b` takes `linear_wbf16_v1_f32`;
/// matmul needs an f32 `b`), optional f32 `bias` / `residual`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GemmF32Operands<'a> {
    pub a: &'a CudaTensor,
    pub b: &'a CudaTensor,
    pub bias: Option<&'a CudaTensor>,
    pub residual: Option<&'a CudaTensor>,
}

impl<'a> GemmF32Operands<'a> {
    /// `a` and `b` without bias or residual.
    pub(crate) fn plain(a: &'a CudaTensor, b: &'a CudaTensor) -> Self {
        Self {
            a,
            b,
            bias: None,
            residual: None,
        }
    }
}

/// `C = scale * (A.B + bias [GEGLU] + residual)` on the f32 entries into a new f32 tensor of
/// `out_shape` (holding `batch * M * N` elements laid out by `layout.ldc` / `stride_c`); any row
/// and batch strides (0 broadcasts), batches beyond gridDim.z in chunks.
pub(crate) fn gemm_f32(
    be: &CudaBackend,
    op: GemmOp,
    t: GemmF32Operands<'_>,
    shape: GemmShape,
    layout: GemmLayout,
    epi: GemmEpilogue,
    out_shape: &[usize],
) -> Result<CudaTensor> {
    let entry = op.entry_f32(t.b.dtype())?;
    let f32s = [Some(t.a), t.bias, t.residual];
    ensure!(
        f32s.iter().flatten().all(|x| x.dtype() == DType::F32),
        "{entry}: A, bias and residual must be f32"
    );
    let out = be.alloc(out_shape, DType::F32)?;
    let last = |ld, stride, rows, cols| shape.extent(ld, stride, rows, cols);
    let (b_rows, (br, bc)) = shape.b_dims(op, epi.geglu);
    let fits = |what: &str, x: &CudaTensor, need: u64| -> Result<()> {
        ensure!(
            x.elem_count() as u64 >= need,
            "{entry} {what}: {} elements, the shape addresses {need}",
            x.elem_count()
        );
        Ok(())
    };
    fits(
        "a",
        t.a,
        last(layout.lda, layout.stride_a, shape.m, shape.k),
    )?;
    fits("b", t.b, last(layout.ldb, layout.stride_b, br, bc))?;
    fits(
        "out",
        &out,
        last(layout.ldc, layout.stride_c, shape.m, shape.n),
    )?;
    if let Some(bias) = t.bias {
        fits("bias", bias, b_rows)?;
    }
    if let Some(r) = t.residual {
        fits(
            "residual",
            r,
            last(layout.ldr, layout.stride_r, shape.m, shape.n),
        )?;
    }
    if shape.batch * shape.m * shape.n == 0 {
        return Ok(out);
    }
    let bsize = t.b.dtype().size_in_bytes() as u64;
    let (pa, pb, pc) = (be.ptr(t.a), be.ptr(t.b), be.ptr(&out));
    let pbias = t.bias.map_or(0, |x| be.ptr(x));
    let pres = t.residual.map_or(0, |x| be.ptr(x));
    let mut done = 0;
    while done < shape.batch {
        let chunk = GemmShape {
            batch: (shape.batch - done).min(MAX_BATCH),
            ..shape
        };
        let ptrs = GemmPtrs {
            a: pa + done * layout.stride_a * 4,
            b: pb + done * layout.stride_b * bsize,
            bias: pbias,
            residual: if pres == 0 {
                0
            } else {
                pres + done * layout.stride_r * 4
            },
            c: pc + done * layout.stride_c * 4,
        };
        let params = GemmParams::new_f32(op, t.b.dtype(), ptrs, chunk, layout, epi)?;
        // SAFETY: `GemmParams` mirrors gemm.cu's struct; every address is a live tensor of this
        // backend whose element count was checked above against the last element the shape and
        // strides address (the chunk offsets stay inside them).
        unsafe {
            be.device().launch(
                KernelModule::Gemm,
                entry,
                launch_config(chunk, epi.geglu),
                &params,
            )
        }
        .with_context(|| format!("{entry} M {} N {} K {}", shape.m, shape.n, shape.k))?;
        done += chunk.batch;
    }
    Ok(out)
}

/// Optional epilogue operands of [`linear`] / [`matmul`]:
/// `out = scale * (acc + bias [, GEGLU] + residual)`.
#[derive(Debug)]
pub struct GemmExtras<'a, T: DeviceRepr> {
    /// `(N)` (GEGLU: `(2N)`, value then gate).
    pub bias: Option<&'a CudaSlice<T>>,
    /// Same shape as the output.
    pub residual: Option<&'a CudaSlice<T>>,
    /// Output scale, 1.0 = none (diffusers' `1 / rescale_output_factor`).
    pub scale: f32,
    /// FeedForward GEGLU: `w` has `2N` rows, `out = (x.w[n] + b[n]) * gelu(x.w[N + n] + b[N + n])`.
    pub geglu: bool,
    /// Split-K workspace of at least [`splitk_workspace_len`] f32 (any element type `T`, checked
    /// in bytes); `None`: no split-K.
    pub workspace: Option<&'a CudaSlice<T>>,
}

/// f32 elements of the split-K workspace the sm_80 GEMM plan uses for `shape` on `dev` (0: the
/// plan does not split K; pass no workspace).
pub fn splitk_workspace_len(dev: &CudaDevice, shape: GemmShape, geglu: bool) -> usize {
    plan_for(dev, shape, geglu, true).workspace_len(shape, geglu) as usize
}

/// The sm_80 GEMM plan for `shape` on `dev` ([`GemmPlan::choose`] with its SMs and L2).
fn plan_for(dev: &CudaDevice, shape: GemmShape, geglu: bool, allow_split: bool) -> GemmPlan {
    GemmPlan::choose(shape, geglu, dev.sm_count(), dev.l2_bytes(), allow_split)
}

/// f32 elements of the split-K workspace [`launch`] uses for `op` over `shape` / `layout` with
/// operands at `ptrs` on `dev`: [`splitk_workspace_len`], or 0 when the GEMM goes to `gemm_sm90`
/// (a linear on sm_90a that it supports: it never splits K).
pub fn launch_workspace_len(
    dev: &CudaDevice,
    op: GemmOp,
    ptrs: GemmPtrs,
    shape: GemmShape,
    layout: GemmLayout,
    geglu: bool,
) -> usize {
    if takes_sm90(dev, op, ptrs, shape, layout, geglu) {
        0
    } else {
        splitk_workspace_len(dev, shape, geglu)
    }
}

/// Whether [`launch`] hands this GEMM to the Hopper kernel (`gemm_sm90`): a linear on an sm_90a
/// device that `gemm_sm90::supports` and `gemm_sm90::prefers` (not a few rows on a few tiles).
fn takes_sm90(
    dev: &CudaDevice,
    op: GemmOp,
    ptrs: GemmPtrs,
    shape: GemmShape,
    layout: GemmLayout,
    geglu: bool,
) -> bool {
    op == GemmOp::Linear
        && dev.arch() == Arch::Sm90a
        && gemm_sm90::supports(ptrs, shape, layout)
        && gemm_sm90::prefers(shape, geglu, dev.sm_count())
}

copy_with_defaults!(GemmExtras<T: DeviceRepr> {
    bias: None,
    residual: None,
    scale: 1.0,
    geglu: false,
    workspace: None,
});

/// `out (M, N) = x (M, K) . w^T + ...` with `w (N, K)` (nn.Linear `(out, in)`; GEGLU `(2N, K)`);
/// `M` = all leading dims of `x` flattened, e.g. `M = 32 * 4096, K = 320, N = 1280`.
pub fn linear<T: DeviceRepr>(
    dev: &CudaDevice,
    x: &CudaSlice<T>,
    w: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
    m: usize,
    n: usize,
    k: usize,
    extras: GemmExtras<'_, T>,
) -> Result<()> {
    let shape = GemmShape::new(1, m, n, k);
    let layout = GemmLayout::contiguous(GemmOp::Linear, shape, extras.geglu, true);
    launch(dev, GemmOp::Linear, x, w, out, shape, layout, extras)
}

/// `out (batch, M, N) = a (batch, M, K) . b (batch | 1, K, N) + ...`; `broadcast_b` shares one `b`
/// (e.g. a weight) across the batch.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: DeviceRepr>(
    dev: &CudaDevice,
    a: &CudaSlice<T>,
    b: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    broadcast_b: bool,
    extras: GemmExtras<'_, T>,
) -> Result<()> {
    let shape = GemmShape::new(batch, m, n, k);
    let layout = GemmLayout::contiguous(GemmOp::Matmul, shape, false, broadcast_b);
    launch(dev, GemmOp::Matmul, a, b, out, shape, layout, extras)
}

/// Strided form of [`linear`] / [`matmul`]: any row strides and batch strides (0 broadcasts).
#[allow(clippy::too_many_arguments)]
pub fn launch<T: DeviceRepr>(
    dev: &CudaDevice,
    op: GemmOp,
    a: &CudaSlice<T>,
    b: &CudaSlice<T>,
    out: &mut CudaSlice<T>,
    shape: GemmShape,
    layout: GemmLayout,
    extras: GemmExtras<'_, T>,
) -> Result<()> {
    let entry = op.entry();
    let last = |ld, stride, rows, cols| shape.extent(ld, stride, rows, cols);
    let (b_rows, (br, bc)) = shape.b_dims(op, extras.geglu);
    check_len(
        &format!("{entry} a"),
        a,
        last(layout.lda, layout.stride_a, shape.m, shape.k),
    )?;
    check_len(
        &format!("{entry} b"),
        b,
        last(layout.ldb, layout.stride_b, br, bc),
    )?;
    check_len(
        &format!("{entry} out"),
        out,
        last(layout.ldc, layout.stride_c, shape.m, shape.n),
    )?;
    if let Some(bias) = extras.bias {
        check_len(&format!("{entry} bias"), bias, b_rows)?;
    }
    if let Some(r) = extras.residual {
        check_len(
            &format!("{entry} residual"),
            r,
            last(layout.ldr, layout.stride_r, shape.m, shape.n),
        )?;
    }
    let stream = dev.stream();
    let (pa, _ga) = a.device_ptr(stream);
    let (pb, _gb) = b.device_ptr(stream);
    let pbias = extras.bias.map(|s| s.device_ptr(stream));
    let pres = extras.residual.map(|s| s.device_ptr(stream));
    let (pc, _gc) = out.device_ptr_mut(stream);
    let ptrs = GemmPtrs {
        a: pa,
        b: pb,
        bias: pbias.as_ref().map_or(0, |p| p.0),
        residual: pres.as_ref().map_or(0, |p| p.0),
        c: pc,
    };
    let epi = GemmEpilogue {
        scale: extras.scale,
        geglu: extras.geglu,
    };
    let params = GemmParams::new(op, ptrs, shape, layout, epi)?;
    // v2 (templated mainloop, tile by GemmPlan::choose) when the operands take cp.async.
    let plan = plan_for(dev, shape, extras.geglu, extras.workspace.is_some());
    let v2 = plan.fits(&params, shape);
    let ws = match extras.workspace {
        Some(w) if v2 && plan.splits > 1 => {
            let need = plan.workspace_len(shape, extras.geglu) * 4;
            ensure!(
                w.num_bytes() as u64 >= need,
                "{entry} split-K workspace: {} bytes, the plan needs {need}",
                w.num_bytes()
            );
            Some(w.device_ptr(stream))
        }
        _ => None,
    };
    // Hopper: the persistent TMA + wgmma kernel for the linears it takes (no split-K: its CTAs
    // stay resident and loop over the tiles; a given workspace is checked above all the same).
    if takes_sm90(dev, op, ptrs, shape, layout, extras.geglu) {
        return super::gemm_sm90::launch(dev, ptrs, shape, layout, epi);
    }
    if v2 {
        let p = GemmV2Params::new(params, plan, shape, ws.as_ref().map_or(0, |w| w.0))?;
        let entry = plan.tile.entry(op);
        let what = || format!("{entry} M {} N {} K {}", shape.m, shape.n, shape.k);
        // SAFETY: `GemmV2Params` mirrors gemm.cu's struct (size asserted in cyberhost-kernels);
        // the pointers are those checked above, the workspace holds `workspace_len` f32.
        unsafe {
            dev.launch(
                KernelModule::Gemm,
                entry,
                plan.launch_config(shape, extras.geglu),
                &p,
            )
        }
        .with_context(what)?;
        if plan.splits > 1 {
            // SAFETY: as above; the split-K pass reads the workspace the first launch wrote.
            unsafe {
                dev.launch(
                    KernelModule::Gemm,
                    SPLITK_ENTRY,
                    GemmPlan::splitk_launch_config(shape),
                    &p,
                )
            }
            .with_context(what)?;
        }
        return Ok(());
    }
    let cfg = launch_config(shape, extras.geglu);
    // SAFETY: `GemmParams` mirrors `struct GemmParams` of gemm.cu (size asserted in
    // cyberhost-kernels); every pointer comes from a live `CudaSlice` of this device whose length
    // was checked above against the last element the shape and strides address.
    unsafe { dev.launch(KernelModule::Gemm, entry, cfg, &params) }
        .with_context(|| format!("{entry} M {} N {} K {}", shape.m, shape.n, shape.k))
}
