//! Conv2d: x (N, C, H, W), w (O, C/groups, kh, kw), bias (O,) → (N, O, Ho, Wo),
//! Ho = (H + 2·ph − dh·(kh − 1) − 1) / sh + 1 (PyTorch semantics, zero padding).
//!
//! Per (image, group): `out_g (Og, Ho·Wo) = w_g (Og, Cg·kh·kw) · cols`, where
//! `cols (Cg·kh·kw, Ho·Wo)` is the im2col matrix, built a band of output rows at a
//! time so its size stays under `IM2COL_BUDGET`. A 1×1, stride-1, unpadded conv
//! multiplies straight from x.

use anyhow::Result;
use rayon::prelude::*;

use super::gemm::{run_units, sgemm, sgemm_rows, Mat, Threads};
use super::{check_vec, CpuTensor};
use crate::backends::shape::{conv2d_dims, Conv2dDims};
use crate::backends::{Conv2dParams, TensorLike};

/// Max floats in one im2col band (16 MiB).
const IM2COL_BUDGET: usize = 1 << 22;
/// Per-(image, group) products below this many multiply-adds run one per thread.
const SMALL_UNIT_MACS: usize = 1 << 24;

#[derive(Clone, Copy)]
struct Geom {
    cg: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    p: Conv2dParams,
}

/// Fills `cols` ((Cg·kh·kw) × (rows·Wo), row-major) for output rows y0..y0+rows.
fn im2col(x: &[f32], g: Geom, y0: usize, rows: usize, cols: &mut [f32], parallel: bool) {
    let n_cols = rows * g.wo;
    let fill = |r: usize, dst: &mut [f32]| {
        let c = r / (g.kh * g.kw);
        let ky = (r / g.kw) % g.kh;
        let kx = r % g.kw;
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for oy in 0..rows {
            let row = &mut dst[oy * g.wo..(oy + 1) * g.wo];
            let iy =
                ((y0 + oy) * g.p.stride.0 + ky * g.p.dilation.0) as isize - g.p.padding.0 as isize;
            if iy < 0 || iy >= g.h as isize {
                row.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
            let x_off = (kx * g.p.dilation.1) as isize - g.p.padding.1 as isize;
            let sx = g.p.stride.1;
            for (ox, o) in row.iter_mut().enumerate() {
                let ix = (ox * sx) as isize + x_off;
                *o = if ix >= 0 && (ix as usize) < g.w {
                    src[ix as usize]
                } else {
                    0.0
                };
            }
        }
    };
    if parallel {
        cols.par_chunks_mut(n_cols)
            .enumerate()
            .for_each(|(r, d)| fill(r, d));
    } else {
        cols.chunks_mut(n_cols)
            .enumerate()
            .for_each(|(r, d)| fill(r, d));
    }
}

/// One (image, group): x_g (Cg, H, W), w_g (Og, Cg·kh·kw) → out_g (Og, Ho·Wo),
/// accumulated onto whatever `out` holds (bias or zeros).
fn conv_unit(
    x: &[f32],
    w: &[f32],
    og: usize,
    g: Geom,
    out: &mut [f32],
    threads: Threads,
) -> Result<()> {
    let kc = g.cg * g.kh * g.kw;
    let hw = g.ho * g.wo;
    let direct = g.kh == 1 && g.kw == 1 && g.p.stride == (1, 1) && g.p.padding == (0, 0);
    if direct {
        return sgemm_rows((og, hw, kc), w, x, out, true, threads);
    }
    let rows = (IM2COL_BUDGET / (kc * g.wo).max(1)).clamp(1, g.ho);
    let mut cols = vec![0.0f32; kc * rows * g.wo];
    let mut y0 = 0;
    while y0 < g.ho {
        let r = rows.min(g.ho - y0);
        let n = r * g.wo;
        im2col(x, g, y0, r, &mut cols[..kc * n], threads == Threads::Auto);
        sgemm(
            og,
            n,
            kc,
            Mat::rows(w, kc),
            Mat::rows(&cols[..kc * n], n),
            &mut out[y0 * g.wo..],
            hw,
            true,
            1.0,
            threads,
        )?;
        y0 += r;
    }
    Ok(())
}

pub(crate) fn conv2d(
    x: &CpuTensor,
    w: &CpuTensor,
    bias: Option<&CpuTensor>,
    p: Conv2dParams,
) -> Result<CpuTensor> {
    let Conv2dDims {
        n,
        c,
        h,
        w: wd,
        o,
        kh,
        kw,
        ho,
        wo,
    } = conv2d_dims("conv2d", x.shape(), w.shape(), p)?;
    check_vec("conv2d", "bias", bias, o)?;
    let groups = p.groups;
    let cg = c / groups;
    let og = o / groups;
    let geom = Geom {
        cg,
        h,
        w: wd,
        kh,
        kw,
        ho,
        wo,
        p,
    };
    let hw = ho * wo;
    let mut out = vec![0.0f32; n * o * hw];
    if out.is_empty() {
        return Ok(CpuTensor::new_unchecked(vec![n, o, ho, wo], out));
    }
    if let Some(b) = bias {
        out.par_chunks_mut(hw)
            .enumerate()
            .for_each(|(i, d)| d.fill(b.data()[i % o]));
    }
    let kc = cg * kh * kw;
    let (xd, wdat) = (x.data(), w.data());
    let unit = |i: usize, dst: &mut [f32], threads: Threads| {
        let (img, g) = (i / groups, i % groups);
        let xs = &xd[(img * c + g * cg) * h * wd..(img * c + (g + 1) * cg) * h * wd];
        let ws = &wdat[g * og * kc..(g + 1) * og * kc];
        conv_unit(xs, ws, og, geom, dst, threads)
    };
    let units = n * groups;
    run_units(
        &mut out,
        og * hw,
        units,
        og * hw * kc < SMALL_UNIT_MACS,
        unit,
    )?;
    Ok(CpuTensor::new_unchecked(vec![n, o, ho, wo], out))
}
