//! `kernels/cuda/conv2d.cu`: NCHW convolution (rectangular kernels, per-axis stride / padding /
//! dilation, groups) as an implicit GEMM on tensor cores, one GEMM per (image, group), with a fused
//! `scale * (conv + bias + temb + residual)` epilogue, bf16 in/out.

use crate::{ceil_div, tiles, to_u32, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// Block tile: `CONV_BM` output channels x `CONV_BN` output pixels x `CONV_BK` of
/// `C_in / groups * kh * kw`.
pub const CONV_BM: u32 = 64;
pub const CONV_BN: u32 = 64;
pub const CONV_BK: u32 = 32;
pub const CONV_THREADS: u32 = 128;
pub const CONV_STAGES: u32 = 2;
pub const CONV_LDA: u32 = CONV_BK + 8;
pub const CONV_LDB: u32 = CONV_BN + 8;
pub const CONV_STATIC_SMEM_BYTES: u32 = CONV_STAGES * (CONV_BM * CONV_LDA + CONV_BK * CONV_LDB) * 2;
const _: () = assert!(CONV_STATIC_SMEM_BYTES <= 48 * 1024);

/// v2 block tile (`conv2d_v2_*`): `CONV2_BM` output channels x `CONV2_BN` output pixels x
/// `CONV2_BK`, 4 warps of 64 x 64, a table-driven X_col gather; kernels of at most
/// [`CONV2_MAX_TAPS`] taps.
pub const CONV2_BM: u32 = 128;
pub const CONV2_BN: u32 = 128;
pub const CONV2_BK: u32 = 32;
pub const CONV2_THREADS: u32 = 128;
pub const CONV2_LDB: u32 = CONV2_BN + 8;
/// `kh * kw` limit of v2 (one 32-bit tap mask per pixel, bit 31 = past K).
pub const CONV2_MAX_TAPS: u64 = 31;
/// v2's k table holds x offsets within a group's channels in 27 bits.
pub const CONV2_MAX_OFFSET: u64 = (1 << 27) - 1;
/// W tile stages of v2 (cp.async two k tiles ahead, `wait_group 1`).
pub const CONV2_WSTAGES: u32 = 3;
/// Three stages of a swizzled (unpadded) W tile, two of a padded X_col tile, two 32-row k tables.
pub const CONV2_STATIC_SMEM_BYTES: u32 =
    (CONV2_WSTAGES * CONV2_BM * CONV2_BK + 2 * CONV2_BK * CONV2_LDB) * 2 + 2 * CONV2_BK * 4;
const _: () = assert!(CONV2_STATIC_SMEM_BYTES <= 48 * 1024);

const fn entry_v2(name: &'static str, dtype: DType) -> Entry {
    Entry {
        name,
        op: "conv2d",
        version: 2,
        dtype,
        params: "Conv2dParams",
        params_size: 144,
        launch: "grid = (ceil(N * Ho * Wo / 128), ceil(C_out / groups / 128), groups), block = 128, static smem; kh * kw <= 31",
    }
}

pub const ENTRIES: &[Entry] = &[
    Entry::v1("conv2d_v1_bf16", "conv2d", DType::Bf16, ("Conv2dParams", 144), "grid = (ceil(Ho * Wo / 64), ceil(C_out / groups / 64), N * groups), block = 128, static smem"),
    // bf16 operands, f32 y (f32 activations)
    Entry::v1("conv2d_v1_f32", "conv2d", DType::F32, ("Conv2dParams", 144), "grid = (ceil(Ho * Wo / 64), ceil(C_out / groups / 64), N * groups), block = 128, static smem"),
    // f32 x and W split into bf16 hi + lo in registers; f32 bias / temb / residual / y
    Entry::v1("conv2d_xsplit_v1_f32", "conv2d_xsplit", DType::F32, ("Conv2dParams", 144), "grid = (ceil(Ho * Wo / 64), ceil(C_out / groups / 64), N * groups), block = 128, static smem"),
    // f32 x split in registers, bf16 W; f32 bias / temb / residual / y
    Entry::v1("conv2d_xsplit_wbf16_v1_f32", "conv2d_xsplit_wbf16", DType::F32, ("Conv2dParams", 144), "grid = (ceil(Ho * Wo / 64), ceil(C_out / groups / 64), N * groups), block = 128, static smem"),
    entry_v2("conv2d_v2_bf16", DType::Bf16),
    // bf16 operands, f32 y
    entry_v2("conv2d_v2_f32", DType::F32),
];

/// Which bf16-operand version runs a shape: 2 when `kh * kw <= 31` (every conv of the models but
/// wav2vec2's 1x128 positional conv), the largest x offset of a group's taps
/// ([`CONV2_MAX_OFFSET`]) fits the k table, and the batch's output pixels `N * Ho * Wo` (v2's
/// column count) and the weight's elements (v2's 32-bit row offsets) fit 31 bits, else 1.
pub fn version(s: Conv2dShape) -> u32 {
    let max_off = (s.c_in_g().max(1) - 1) * s.h * s.w
        + (s.kh.max(1) - 1) * s.dilation.0 * s.w
        + (s.kw.max(1) - 1) * s.dilation.1;
    if s.kh * s.kw <= CONV2_MAX_TAPS
        && max_off <= CONV2_MAX_OFFSET
        && s.n * s.h_out() * s.w_out() < 1 << 31
        && s.c_out * s.k() < 1 << 31
    {
        2
    } else {
        1
    }
}

/// The bf16-operand entry for `s` ([`version`]) with a bf16 (`out_f32` false) or f32 y, and its
/// launch configuration.
pub fn bf16_entry(s: Conv2dShape, out_f32: bool) -> (&'static str, LaunchConfig) {
    match (version(s), out_f32) {
        (2, false) => ("conv2d_v2_bf16", launch_config_v2(s)),
        (2, true) => ("conv2d_v2_f32", launch_config_v2(s)),
        (_, false) => ("conv2d_v1_bf16", launch_config(s)),
        (_, true) => ("conv2d_v1_f32", launch_config(s)),
    }
}

/// Static shared memory of the split entries: hi + lo X_col tiles, hi + lo (f32 W) or one (bf16
/// W) W tile.
pub const CONV_SPLIT_STATIC_SMEM_BYTES: u32 =
    CONV_STAGES * (2 * CONV_BM * CONV_LDA + 2 * CONV_BK * CONV_LDB) * 2;
pub const CONV_SPLIT_WBF16_STATIC_SMEM_BYTES: u32 =
    CONV_STAGES * (CONV_BM * CONV_LDA + 2 * CONV_BK * CONV_LDB) * 2;
const _: () = assert!(CONV_SPLIT_STATIC_SMEM_BYTES <= 48 * 1024);

/// The split entry (f32 x, f32 bias / temb / residual / y) for a weight of dtype `w`.
pub fn split_entry(w: DType) -> &'static str {
    match w {
        DType::F32 => ENTRIES[2].name,
        DType::Bf16 => ENTRIES[3].name,
    }
}

/// Mirrors `struct Conv2dParams` in `conv2d.cu` (144 bytes): its first six fields are the
/// [`Conv2dPtrs`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Conv2dParams {
    pub ptrs: Conv2dPtrs,
    pub n: u32,
    pub c_in: u32,
    pub h: u32,
    pub w_in: u32,
    pub c_out: u32,
    pub h_out: u32,
    pub w_out: u32,
    /// kh, kw, stride, padding, dilation (the `.cu`'s eight fields from `kh` to `dil_w`).
    pub win: ConvWindow,
    pub groups: u32,
    /// `C_in / groups`.
    pub c_in_g: u32,
    /// `C_out / groups`.
    pub c_out_g: u32,
    /// `C_in / groups * kh * kw`.
    pub k: u32,
    pub scale: f32,
    pub aligned: u32,
    /// 1: the residual is `(1, C_out, Ho, Wo)`, broadcast over the batch (batch stride 0).
    pub res_bcast: u32,
    /// Channels of one `y` image (`C_out`, or more with [`Conv2dParams::into_channels`]: `y` is
    /// then a channel slice of a wider `(N, y_c, Ho, Wo)` tensor).
    pub y_c: u32,
    pub _pad: u32,
}

/// Convolution geometry, e.g. SD1.5 ResNet `conv1`: `n 32, c_in 320, h 64, w 64, c_out 320,
/// kh 3, kw 3, stride (1, 1), pad (1, 1), dilation (1, 1), groups 1`; wav2vec2's positional conv
/// embedding: `h 1, kh 1, kw 128, pad (0, 64), groups 16`. Pairs are (height, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: u64,
    pub c_in: u64,
    pub h: u64,
    pub w: u64,
    pub c_out: u64,
    pub kh: u64,
    pub kw: u64,
    pub stride: (u64, u64),
    pub pad: (u64, u64),
    pub dilation: (u64, u64),
    pub groups: u64,
}

impl Conv2dShape {
    /// Square kernel `k`, square `stride` / `pad`, dilation 1, groups 1.
    #[allow(clippy::too_many_arguments)]
    pub fn square(
        n: u64,
        c_in: u64,
        h: u64,
        w: u64,
        c_out: u64,
        k: u64,
        stride: u64,
        pad: u64,
    ) -> Self {
        Conv2dShape {
            n,
            c_in,
            h,
            w,
            c_out,
            kh: k,
            kw: k,
            stride: (stride, stride),
            pad: (pad, pad),
            dilation: (1, 1),
            groups: 1,
        }
    }
    /// Kernel extent along H with dilation: `dh * (kh - 1) + 1`.
    pub fn kh_eff(&self) -> u64 {
        self.dilation.0 * self.kh.saturating_sub(1) + 1
    }
    pub fn kw_eff(&self) -> u64 {
        self.dilation.1 * self.kw.saturating_sub(1) + 1
    }
    pub fn h_out(&self) -> u64 {
        (self.h + 2 * self.pad.0).saturating_sub(self.kh_eff()) / self.stride.0.max(1) + 1
    }
    pub fn w_out(&self) -> u64 {
        (self.w + 2 * self.pad.1).saturating_sub(self.kw_eff()) / self.stride.1.max(1) + 1
    }
    /// `C_in / groups`.
    pub fn c_in_g(&self) -> u64 {
        self.c_in / self.groups.max(1)
    }
    /// `C_out / groups`.
    pub fn c_out_g(&self) -> u64 {
        self.c_out / self.groups.max(1)
    }
    /// GEMM depth: `C_in / groups * kh * kw`.
    pub fn k(&self) -> u64 {
        self.c_in_g() * self.kh * self.kw
    }
    /// The kernel window as the kernels' u32 fields; errors name `op` and the field.
    pub fn window(&self, op: &str) -> Result<ConvWindow> {
        let u = |v: u64, what: &str| to_u32(v, &format!("{op} {what}"));
        Ok(ConvWindow {
            kh: u(self.kh, "kh")?,
            kw: u(self.kw, "kw")?,
            stride_h: u(self.stride.0, "stride")?,
            stride_w: u(self.stride.1, "stride")?,
            pad_h: u(self.pad.0, "padding")?,
            pad_w: u(self.pad.1, "padding")?,
            dil_h: u(self.dilation.0, "dilation")?,
            dil_w: u(self.dilation.1, "dilation")?,
        })
    }
}

/// Kernel extent, stride, padding and dilation (height, width) as a kernel's params hold them
/// (this order, 32 bytes: the eight fields `kh` .. `dil_w` of `Conv2dParams` in `conv2d_common.cuh`
/// and of `ConvNhwcParams` in `conv2d_nhwc.cu`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvWindow {
    pub kh: u32,
    pub kw: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_h: u32,
    pub pad_w: u32,
    pub dil_h: u32,
    pub dil_w: u32,
}

/// Device addresses (bias / temb / residual 0 = none), the head of [`Conv2dParams`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Conv2dPtrs {
    /// `(N, C_in, H, W)` bf16.
    pub x: u64,
    /// `(C_out, C_in / groups, kh, kw)` bf16.
    pub w: u64,
    /// `(C_out)` bf16, or 0.
    pub bias: u64,
    /// `(N, C_out)` bf16, or 0.
    pub temb: u64,
    /// `(N, C_out, Ho, Wo)` bf16 (or `(1, C_out, Ho, Wo)` with `res_bcast`), or 0.
    pub residual: u64,
    /// `(N, C_out, Ho, Wo)` bf16.
    pub y: u64,
}

impl Conv2dParams {
    pub fn new(ptrs: Conv2dPtrs, s: Conv2dShape, scale: f32) -> Result<Self> {
        ensure!(
            s.stride.0 >= 1 && s.stride.1 >= 1,
            "conv2d: stride {:?} must be >= 1",
            s.stride
        );
        ensure!(
            s.dilation.0 >= 1 && s.dilation.1 >= 1,
            "conv2d: dilation {:?} must be >= 1",
            s.dilation
        );
        ensure!(
            s.groups >= 1 && s.c_in % s.groups == 0 && s.c_out % s.groups == 0,
            "conv2d: groups {} must divide C_in {} and C_out {}",
            s.groups,
            s.c_in,
            s.c_out
        );
        ensure!(
            s.kh >= 1 && s.kw >= 1,
            "conv2d: empty kernel {}x{}",
            s.kh,
            s.kw
        );
        ensure!(
            s.h + 2 * s.pad.0 >= s.kh_eff() && s.w + 2 * s.pad.1 >= s.kw_eff(),
            "conv2d: kernel {}x{} (dilation {:?}) larger than the padded input {}x{} (pad {:?})",
            s.kh,
            s.kw,
            s.dilation,
            s.h,
            s.w,
            s.pad
        );
        ensure!(
            (1..=65_535).contains(&(s.n * s.groups)),
            "conv2d: batch {} x groups {} must be in 1..=65535 (gridDim.z)",
            s.n,
            s.groups
        );
        ensure!(
            ceil_div(s.c_out_g(), CONV_BM as u64) <= 65_535,
            "conv2d: C_out / groups {} needs more than 65535 blocks",
            s.c_out_g()
        );
        // Pixel offsets within one image are 32-bit in the kernel.
        ensure!(
            s.c_in * s.h * s.w < 1 << 31 && s.c_out * s.h_out() * s.w_out() < 1 << 31,
            "conv2d: one image exceeds 2^31 elements"
        );
        let k = s.k();
        Ok(Conv2dParams {
            ptrs,
            n: to_u32(s.n, "conv2d N")?,
            c_in: to_u32(s.c_in, "conv2d C_in")?,
            h: to_u32(s.h, "conv2d H")?,
            w_in: to_u32(s.w, "conv2d W")?,
            c_out: to_u32(s.c_out, "conv2d C_out")?,
            h_out: to_u32(s.h_out(), "conv2d Ho")?,
            w_out: to_u32(s.w_out(), "conv2d Wo")?,
            win: s.window("conv2d")?,
            groups: to_u32(s.groups, "conv2d groups")?,
            c_in_g: to_u32(s.c_in_g(), "conv2d C_in / groups")?,
            c_out_g: to_u32(s.c_out_g(), "conv2d C_out / groups")?,
            k: to_u32(k, "conv2d C_in / groups * kh * kw")?,
            scale,
            // Group offsets in W are multiples of K elements: 16-byte aligned when K % 8 == 0.
            aligned: (ptrs.w % 16 == 0 && k % 8 == 0) as u32,
            res_bcast: 0,
            y_c: to_u32(s.c_out, "conv2d C_out")?,
            _pad: 0,
        })
    }

    /// The residual is one image `(1, C_out, Ho, Wo)` added to every image of the batch (e.g. the
    /// movement map after the denoiser's `conv_in`).
    /// Params of [`split_entry`]`(w)`: the checks of [`Conv2dParams::new`]; `aligned` for an f32
    /// W is float4 loads (W 16-byte aligned, K % 4 == 0), for a bf16 W cp.async as before.
    pub fn new_split(ptrs: Conv2dPtrs, s: Conv2dShape, scale: f32, w: DType) -> Result<Self> {
        let mut p = Conv2dParams::new(ptrs, s, scale)?;
        if w == DType::F32 {
            p.aligned = (ptrs.w % 16 == 0 && s.k() % 4 == 0) as u32;
        }
        Ok(p)
    }

    /// `y` is the channel slice `[c0, c0 + C_out)` of a `(N, y_c, Ho, Wo)` tensor (`ptrs.y`
    /// pointing at channel `c0` of image 0): the images of the output are `y_c * Ho * Wo`
    /// elements apart. No residual may alias `y` then.
    pub fn into_channels(mut self, y_c: u64) -> Result<Self> {
        ensure!(
            y_c >= self.c_out as u64,
            "conv2d: the output tensor's {y_c} channels cannot hold C_out {}",
            self.c_out
        );
        ensure!(
            y_c * (self.h_out as u64) * (self.w_out as u64) < 1 << 31,
            "conv2d: one output image of {y_c} channels exceeds 2^31 elements"
        );
        self.y_c = to_u32(y_c, "conv2d output channels")?;
        Ok(self)
    }

    pub fn with_broadcast_residual(mut self) -> Self {
        self.res_bcast = 1;
        self
    }

    /// Forces the plain-load path for the weight tiles.
    pub fn without_cp_async(mut self) -> Self {
        self.aligned = 0;
        self
    }
}

/// `grid = (ceil(Ho * Wo / 64), ceil(C_out / groups / 64), N * groups)`, `block = 128`, static
/// smem only.
pub fn launch_config(s: Conv2dShape) -> LaunchConfig {
    let grid = [
        tiles(s.h_out() * s.w_out(), CONV_BN),
        tiles(s.c_out_g(), CONV_BM),
        (s.n * s.groups).max(1) as u32,
    ];
    LaunchConfig::blocks(grid, CONV_THREADS)
}

/// `conv2d_v2_*`: `grid = (ceil(N * Ho * Wo / 128), ceil(C_out / groups / 128), groups)` (the
/// batch folded into the pixel columns), `block = 256`, static smem only.
pub fn launch_config_v2(s: Conv2dShape) -> LaunchConfig {
    let grid = [
        tiles(s.n * s.h_out() * s.w_out(), CONV2_BN),
        tiles(s.c_out_g(), CONV2_BM),
        s.groups.max(1) as u32,
    ];
    LaunchConfig::blocks(grid, CONV2_THREADS)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(Conv2dParams, 144; assert_eq!(CONV_STATIC_SMEM_BYTES, 19_456));

    #[test]
    fn v2_smem_and_version() {
        assert_eq!(CONV2_STATIC_SMEM_BYTES, 42_240);
        let s = Conv2dShape::square(2, 3, 9, 7, 70, 3, 2, 1);
        assert_eq!(version(s), 2);
        assert_eq!(bf16_entry(s, false).0, "conv2d_v2_bf16");
        // N 2 x 20 pixels in one column tile
        assert_eq!(launch_config_v2(s).grid, [1, 1, 1]);
        let big = Conv2dShape { kh: 1, kw: 32, ..s };
        assert_eq!(version(big), 1);
        assert_eq!(bf16_entry(big, true).0, "conv2d_v1_f32");
        // x offsets past 27 bits: 2^27 / (64 * 64) = 32768 channels of 64x64
        let deep = Conv2dShape::square(1, 32_769, 64, 64, 8, 1, 1, 0);
        assert_eq!(version(deep), 1);
        assert_eq!(
            version(Conv2dShape {
                c_in: 32_768,
                ..deep
            }),
            2
        );
    }

    #[test]
    fn split_smem_matches_report() {
        assert_eq!(CONV_SPLIT_STATIC_SMEM_BYTES, 38_912);
        assert_eq!(CONV_SPLIT_WBF16_STATIC_SMEM_BYTES, 28_672);
    }

    #[test]
    fn output_size_and_grid() {
        let s = Conv2dShape::square(2, 3, 9, 7, 70, 3, 2, 1);
        assert_eq!((s.h_out(), s.w_out()), (5, 4));
        assert_eq!(launch_config(s).grid, [1, 2, 2]);
        // wav2vec2 positional conv: 1x8, padding (0, 4), groups 4 -> one extra output column.
        let g = Conv2dShape {
            n: 2,
            c_in: 32,
            h: 1,
            w: 50,
            c_out: 32,
            kh: 1,
            kw: 8,
            stride: (1, 1),
            pad: (0, 4),
            dilation: (1, 1),
            groups: 4,
        };
        assert_eq!((g.h_out(), g.w_out(), g.k()), (1, 51, 64));
        assert_eq!(launch_config(g).grid, [1, 1, 8]);
        // Dilation 2: effective 5x5.
        let d = Conv2dShape {
            dilation: (2, 2),
            ..s
        };
        assert_eq!((d.h_out(), d.w_out()), (4, 3));
    }
}
