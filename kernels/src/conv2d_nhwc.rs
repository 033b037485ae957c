//! `kernels/cuda/conv2d_nhwc.cu`: channels-last (NHWC = the token layout `(N, H * W, C)`) 2-D
//! convolution as an implicit GEMM on the v2 GEMM mainloop (`gemm_tiles.cuh`, `gemm_v2.cuh`):
//! `M = N * Ho * Wo` output pixels, `N = C_out`, `K = kh * kw * C` tap-major; an im2col A loader
//! (16-byte cp.async chunks of 8 channels, zero-filled for padding, when `C % 8 == 0`; element
//! loads otherwise), the weight pre-permuted once to `(C_out, kh, kw, C)` rows padded to
//! `K_pad` ([`pack_weights`]); the v2 tile configs, schedule, split-K and fused epilogue
//! `scale * (conv + temb + bias + residual)` (temb `(N, C_out)` per image) with an optional
//! channel-slice output (row stride > C_out).

use crate::conv2d::{Conv2dShape, ConvWindow};
use crate::gemm::{
    GemmOperandParams, GemmParams, GemmPlan, GemmShape, GemmTile, GemmV2Params, GEMM_V2_BK,
};
use crate::{ceil_div, to_u32, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

const LAUNCH: &str = "GemmPlan of the conv's GEMM (M = N * Ho * Wo, N = C_out, K = kh * kw * C): \
     persistent grid = (ctas, 1, 1) or split-K grid = (ceil(C_out / BN), ceil(M / BM), splits); \
     block = 32 * warps, dynamic smem GemmTile::smem_bytes";
const LAUNCH_SPLITK: &str = "grid = (ceil(M * ceil(C_out / 8) / 256), 1), block = 256, no smem";

const fn entry(name: &'static str, op: &'static str, launch: &'static str) -> Entry {
    Entry {
        name,
        op,
        version: 1,
        dtype: DType::Bf16,
        params: "ConvNhwcParams",
        params_size: 224,
        launch,
    }
}

pub const ENTRIES: &[Entry] = &[
    entry("conv2d_nhwc_128x256_v1_bf16", "conv2d_nhwc_128x256", LAUNCH),
    entry("conv2d_nhwc_256x128_v1_bf16", "conv2d_nhwc_256x128", LAUNCH),
    entry("conv2d_nhwc_128x128_v1_bf16", "conv2d_nhwc_128x128", LAUNCH),
    entry("conv2d_nhwc_64x64_v1_bf16", "conv2d_nhwc_64x64", LAUNCH),
    // element-wise im2col loads: C % 8 != 0, or an unaligned x
    entry(
        "conv2d_nhwc_scalar_64x64_v1_bf16",
        "conv2d_nhwc_scalar_64x64",
        LAUNCH,
    ),
    entry(
        "conv2d_nhwc_splitk_v1_bf16",
        "conv2d_nhwc_splitk",
        LAUNCH_SPLITK,
    ),
];

/// The split-K reduction pass.
pub const SPLITK_ENTRY: &str = "conv2d_nhwc_splitk_v1_bf16";

/// The mainloop entry of `tile` with the vector (`vec`) or the element-wise im2col loader (the
/// latter only with [`GemmTile::T64x64`]).
pub fn entry_name(tile: GemmTile, vec: bool) -> Result<&'static str> {
    Ok(match (tile, vec) {
        (GemmTile::T128x256, true) => ENTRIES[0].name,
        (GemmTile::T256x128, true) => ENTRIES[1].name,
        (GemmTile::T128x128, true) => ENTRIES[2].name,
        (GemmTile::T64x64, true) => ENTRIES[3].name,
        (GemmTile::T64x64, false) => ENTRIES[4].name,
        (t, false) => {
            anyhow::bail!("conv2d_nhwc: the element-wise loader runs 64x64 tiles, not {t:?}")
        }
    })
}

/// `K_pad`: the packed weight's row length, `K = kh * kw * C` rounded up to 8 (16-byte rows).
pub fn k_pad(s: Conv2dShape) -> u64 {
    ceil_div(s.k(), 8) * 8
}

/// The `(C_out, C, kh, kw)` weight `w` as the kernel's `(C_out, K_pad)` operand: row `o` holds
/// `w[o, c, ky, kx]` at `(ky * kw + kx) * C + c`, zeros from `K` to `K_pad`.
pub fn pack_weights<T: Copy + Default>(w: &[T], s: Conv2dShape) -> Result<Vec<T>> {
    let (o, c, kh, kw) = (
        s.c_out as usize,
        s.c_in as usize,
        s.kh as usize,
        s.kw as usize,
    );
    ensure!(
        s.groups == 1,
        "conv2d_nhwc: groups = {} (only groups = 1; use conv2d for grouped convolutions)",
        s.groups
    );
    ensure!(
        w.len() == o * c * kh * kw,
        "conv2d_nhwc weight: {} elements, (C_out {o}, C {c}, kh {kh}, kw {kw}) needs {}",
        w.len(),
        o * c * kh * kw
    );
    let kp = k_pad(s) as usize;
    let mut out = vec![T::default(); o * kp];
    for oo in 0..o {
        for cc in 0..c {
            for t in 0..kh * kw {
                out[oo * kp + t * c + cc] = w[(oo * c + cc) * kh * kw + t];
            }
        }
    }
    Ok(out)
}

/// The convolution's GEMM: `batch 1, M = N * Ho * Wo, N = C_out, K = kh * kw * C`.
pub fn gemm_shape(s: Conv2dShape) -> GemmShape {
    GemmShape {
        batch: 1,
        m: s.n * s.h_out() * s.w_out(),
        n: s.c_out,
        k: s.k(),
    }
}

/// Device addresses (bias / residual 0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvNhwcPtrs {
    /// `(N, H, W, ldx)` bf16.
    pub x: u64,
    /// `(C_out, K_pad)` bf16 ([`pack_weights`]), 16-byte aligned.
    pub w: u64,
    /// `(C_out)` bf16, or 0.
    pub bias: u64,
    /// `(N, C_out)` bf16 (ResNet time embedding, added per image), or 0.
    pub temb: u64,
    /// `(N * Ho * Wo, ldr)` bf16, or 0 (may equal `y` when `ldr == ldy`).
    pub residual: u64,
    /// `(N * Ho * Wo, ldy)` bf16, columns `[0, C_out)` written.
    pub y: u64,
}

/// Row strides (elements between consecutive pixels) of x, the residual and y; each at least its
/// channel count (x: `C`; residual, y: `C_out`). Larger: a channel slice of a wider tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvNhwcLayout {
    pub ldx: u64,
    pub ldr: u64,
    pub ldy: u64,
}

impl ConvNhwcLayout {
    /// Dense x `(N, H, W, C)`, residual and y `(N, Ho, Wo, C_out)`.
    pub fn contiguous(s: Conv2dShape) -> ConvNhwcLayout {
        ConvNhwcLayout {
            ldx: s.c_in,
            ldr: s.c_out,
            ldy: s.c_out,
        }
    }
}

/// Whether the vector im2col loader takes x: `C % 8 == 0`, `ldx % 8 == 0`, x 16-byte aligned.
pub fn vectorized(s: Conv2dShape, x: u64, ldx: u64) -> bool {
    s.c_in % 8 == 0 && ldx % 8 == 0 && x % 16 == 0
}

/// Relative mainloop efficiency of a tile config in [`plan`]'s cost (the profiler's ratio of
/// the 64 x 64 tile's shared-memory-bound rate to the big tiles' tensor-bound one, about half;
/// 128 x 128 a little under the big tiles).
fn tile_efficiency(t: GemmTile) -> f64 {
    match t {
        GemmTile::T128x256 | GemmTile::T256x128 => 1.0,
        GemmTile::T128x128 => 0.9,
        GemmTile::T64x64 => 0.5,
    }
}

/// The plan of a conv on a GPU of `sms` SMs and `l2_bytes` of L2. Vector loader: the tile config
/// of least cost `waves * BM * BN * r / efficiency` ([`tile_efficiency`]; r = CTAs sharing an
/// SM, at most CTAs per SM; waves = `ceil(tiles / (SMs * r))`; ties to the larger tile), which
/// counts the padding of C_out to the tile width (C_out 640 takes 256 x 128 tiles, not 128 x 256
/// ones that pad it to 768) and partial waves (8x8 latents: one wave of big tiles rather than two
/// of 64 x 64); 128 x 256 / 256 x 128 persistent on `sms` CTAs, 128 x 128 one CTA per tile,
/// 64 x 64 by [`GemmPlan::choose`] (which splits K when its grid is under one wave and
/// `allow_split`). The element-wise loader runs one 64 x 64 CTA per tile.
pub fn plan(s: Conv2dShape, vec: bool, sms: u32, l2_bytes: u64, allow_split: bool) -> GemmPlan {
    let g = gemm_shape(s);
    if !vec {
        return GemmPlan::persistent(GemmTile::T64x64, g, false, u32::MAX, l2_bytes);
    }
    let cost = |t: GemmTile| {
        let (bm, bn, ..) = t.geometry();
        let tiles = t.tiles(g, false).max(1);
        // CTAs sharing an SM: up to CTAs per SM, fewer when the grid does not fill them
        let per_sm = (t.ctas_per_sm() as u64).min(ceil_div(tiles, sms.max(1) as u64));
        let waves = ceil_div(tiles, sms.max(1) as u64 * per_sm);
        (waves * (bm * bn) as u64 * per_sm) as f64 / tile_efficiency(t)
    };
    let best = GemmTile::ALL
        .into_iter()
        .min_by(|a, b| cost(*a).total_cmp(&cost(*b)))
        .unwrap_or(GemmTile::T64x64);
    match best {
        GemmTile::T64x64 => GemmPlan::choose(g, false, sms, l2_bytes, allow_split),
        GemmTile::T128x128 => GemmPlan::persistent(best, g, false, u32::MAX, l2_bytes),
        _ => GemmPlan::persistent(best, g, false, sms, l2_bytes),
    }
}

/// Mirrors `struct ConvNhwcParams` in `conv2d_nhwc.cu` (224 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvNhwcParams {
    /// The conv's GEMM: `ops.a` = x, `ops.b` = packed weight, `c` = y.
    pub gemm: GemmV2Params,
    /// `(N, C_out)` bf16, or 0.
    pub temb: u64,
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub c: u32,
    pub ldx: u32,
    pub h_out: u32,
    pub w_out: u32,
    /// kh, kw, stride, padding, dilation.
    pub win: ConvWindow,
    pub _pad: u32,
}

impl ConvNhwcParams {
    /// Params of `s` (groups 1) over `ptrs` / `layout`,
    /// `y = scale * (conv + temb + bias + residual)`, launched by `plan` (split-K: `workspace`
    /// holds [`GemmPlan::workspace_len`] f32 of [`gemm_shape`]).
    pub fn new(
        ptrs: ConvNhwcPtrs,
        s: Conv2dShape,
        layout: ConvNhwcLayout,
        scale: f32,
        plan: GemmPlan,
        workspace: u64,
    ) -> Result<Self> {
        ensure!(
            s.groups == 1,
            "conv2d_nhwc: groups = {} (only groups = 1; use conv2d for grouped convolutions)",
            s.groups
        );
        ensure!(
            s.kh >= 1 && s.kw >= 1 && s.stride.0 >= 1 && s.stride.1 >= 1,
            "conv2d_nhwc: kernel {}x{} and stride {:?} must be at least 1",
            s.kh,
            s.kw,
            s.stride
        );
        ensure!(
            s.dilation.0 >= 1 && s.dilation.1 >= 1,
            "conv2d_nhwc: dilation {:?} must be at least 1",
            s.dilation
        );
        ensure!(
            s.h + 2 * s.pad.0 >= s.kh_eff() && s.w + 2 * s.pad.1 >= s.kw_eff(),
            "conv2d_nhwc: the {}x{} kernel (dilated) is larger than the padded {}x{} input",
            s.kh,
            s.kw,
            s.h,
            s.w
        );
        ensure!(
            layout.ldx >= s.c_in && layout.ldy >= s.c_out && layout.ldr >= s.c_out,
            "conv2d_nhwc: row strides {layout:?} must hold C {} (x) and C_out {} (y, residual)",
            s.c_in,
            s.c_out
        );
        ensure!(
            ptrs.w % 16 == 0,
            "conv2d_nhwc: the packed weight must be 16-byte aligned"
        );
        let g = gemm_shape(s);
        ensure!(
            g.m < 1 << 31 && s.n * s.h * s.w < 1 << 31,
            "conv2d_nhwc: {} output pixels / {} input pixels exceed 2^31; split the batch",
            g.m,
            s.n * s.h * s.w
        );
        let kp = k_pad(s);
        let ops = GemmOperandParams {
            a: ptrs.x,
            b: ptrs.w,
            stride_a: 0,
            stride_b: 0,
            m: to_u32(g.m, "conv2d_nhwc N * Ho * Wo")?,
            n: to_u32(g.n, "conv2d_nhwc C_out")?,
            k: to_u32(g.k, "conv2d_nhwc kh * kw * C")?,
            lda: to_u32(layout.ldx, "conv2d_nhwc ldx")?,
            ldb: to_u32(kp, "conv2d_nhwc K_pad")?,
            aligned: 1,
        };
        let gp = GemmParams {
            ops,
            bias: ptrs.bias,
            residual: ptrs.residual,
            c: ptrs.y,
            stride_r: 0,
            stride_c: 0,
            ldr: to_u32(layout.ldr, "conv2d_nhwc ldr")?,
            ldc: to_u32(layout.ldy, "conv2d_nhwc ldy")?,
            scale,
            geglu: 0,
        };
        let u = |v: u64, what| to_u32(v, what);
        Ok(ConvNhwcParams {
            gemm: GemmV2Params::new(gp, plan, g, workspace)?,
            temb: ptrs.temb,
            n: u(s.n, "conv2d_nhwc N")?,
            h: u(s.h, "conv2d_nhwc H")?,
            w: u(s.w, "conv2d_nhwc W")?,
            c: u(s.c_in, "conv2d_nhwc C")?,
            ldx: u(layout.ldx, "conv2d_nhwc ldx")?,
            h_out: u(s.h_out(), "conv2d_nhwc Ho")?,
            w_out: u(s.w_out(), "conv2d_nhwc Wo")?,
            win: s.window("conv2d_nhwc")?,
            _pad: 0,
        })
    }
}

/// The main launch of `plan` over the conv `s`.
pub fn launch_config(plan: &GemmPlan, s: Conv2dShape) -> LaunchConfig {
    plan.launch_config(gemm_shape(s), false)
}

/// The split-K pass of `s` ([`SPLITK_ENTRY`]).
pub fn splitk_launch_config(s: Conv2dShape) -> LaunchConfig {
    GemmPlan::splitk_launch_config(gemm_shape(s))
}

const _: () = assert!(GEMM_V2_BK == 32);

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(ConvNhwcParams, 224, align 8);

    #[test]
    fn packed_weight_is_tap_major() {
        // C_out 2, C 3, 2x2 taps: w[o, c, t] = 100 o + 10 c + t
        let s = Conv2dShape {
            kh: 2,
            kw: 2,
            ..Conv2dShape::square(1, 3, 4, 4, 2, 2, 1, 0)
        };
        let w: Vec<u32> = (0..2 * 3 * 4)
            .map(|i| 100 * (i / 12) + 10 * ((i / 4) % 3) + i % 4)
            .collect();
        let p = pack_weights(&w, s).unwrap();
        assert_eq!(k_pad(s), 16);
        assert_eq!(
            &p[..16],
            &[0, 10, 20, 1, 11, 21, 2, 12, 22, 3, 13, 23, 0, 0, 0, 0]
        );
        assert_eq!(p[16 + 4], 111);
    }

    #[test]
    fn entries_and_plans() {
        let s = Conv2dShape::square(2, 320, 64, 64, 320, 3, 1, 1);
        let p = plan(s, true, 108, 40 << 20, true);
        assert!(p.splits == 1 && entry_name(p.tile, true).is_ok());
        // the paper's convs (N 32) on an A100: C_out 640 without padding to 768; 8x8 1280 on big
        // tiles (80 CTAs, one wave) rather than two waves of 64 x 64
        let paper = |c, hw, o| {
            plan(
                Conv2dShape::square(32, c, hw, hw, o, 3, 1, 1),
                true,
                108,
                40 << 20,
                true,
            )
        };
        assert_eq!(paper(640, 64, 640).tile, GemmTile::T256x128);
        assert_eq!(paper(640, 32, 640).tile, GemmTile::T256x128);
        assert_eq!(paper(1280, 16, 1280).tile, GemmTile::T128x256);
        assert_eq!(paper(1280, 8, 1280).tile, GemmTile::T128x256);
        // small: 64 x 64, split-K when allowed and under one wave
        let small = Conv2dShape::square(1, 64, 5, 4, 40, 3, 1, 1);
        assert_eq!(
            plan(small, true, 108, 40 << 20, true).tile,
            GemmTile::T64x64
        );
        assert!(plan(small, true, 108, 40 << 20, true).splits > 1);
        let sc = plan(Conv2dShape { c_in: 4, ..s }, false, 108, 40 << 20, true);
        assert_eq!(entry_name(sc.tile, false).unwrap(), ENTRIES[4].name);
        assert!(entry_name(GemmTile::T128x128, false).is_err());
        assert!(vectorized(s, 256, 320) && !vectorized(s, 8, 320) && !vectorized(s, 256, 324));
    }
}
