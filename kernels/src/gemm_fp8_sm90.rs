//! `kernels/cuda/gemm_fp8_sm90.cu` (Hopper only, `.target sm_90a`): FP8 (e4m3) `linear`.
//! `quantize_rows_e4m3_v1_bf16` quantises bf16 activations per row (scale `amax / 448`);
//! `linear_fp8_sm90_v1_bf16` is gemm_sm90.cu's persistent warp-specialised TMA + wgmma GEMM on
//! e4m3 operands (wgmma `m64n256k32 .e4m3`), the row and output-channel f32 scales applied in the
//! fused epilogue `scale * (sa sb acc + bias [GEGLU] + residual)`. The operands reach the kernel as
//! two uint8 TMA tensor maps ([`TmaTile`], rank 3 with a batch of one) inside the params struct.

use crate::gemm_sm90::TmaTile;
use crate::{ceil_div, to_u32, DType, Entry, LaunchConfig};
use anyhow::{ensure, Result};

/// CTA tile rows (two consumer warpgroups of 64).
pub const BM: u32 = 128;
/// CTA tile rows of QB (GEGLU: 128 value + 128 gate rows -> 128 output columns).
pub const BN: u32 = 256;
/// k per pipeline stage: one 128-byte swizzle row of e4m3.
pub const BK: u32 = 128;
/// Producer warpgroup + two consumer warpgroups.
pub const THREADS: u32 = 384;
/// Threads of a `quantize_rows` CTA.
pub const Q_THREADS: u32 = 256;
/// 16-byte chunks (8 bf16) a `quantize_rows` lane keeps in registers: rows of K <= 32 x 8 x
/// `Q_CHUNKS` = 1280 are read once.
pub const Q_CHUNKS: u32 = 5;
/// Dynamic shared memory: 4 stages of (128 + 256) x 128 bytes, 8 warp epilogue buffers of 16 x 40
/// f32, 8 mbarriers, 1 KiB alignment slack (`static_assert` in the `.cu`).
pub const SMEM_BYTES: u32 = 4 * (BM + BN) * BK + 8 * 16 * 40 * 4 + 8 * 8 + 1024;
/// `CU_TENSOR_MAP_DATA_TYPE_UINT8`: the e4m3 bytes.
pub const TMA_DTYPE_UINT8: u32 = 0;
/// The largest finite e4m3 magnitude: scales are `amax / E4M3_MAX`.
pub const E4M3_MAX: f32 = 448.0;

/// The GEMM entry.
pub const ENTRY: &str = "linear_fp8_sm90_v1_bf16";
/// The activation quantiser entry.
pub const QUANTIZE_ENTRY: &str = "quantize_rows_e4m3_v1_bf16";

pub const ENTRIES: &[Entry] = &[
    Entry::v1(
        QUANTIZE_ENTRY,
        "quantize_rows_e4m3",
        DType::Bf16,
        ("QuantizeRowsParams", 40),
        "grid = ceil(rows / (256 / lanes)), block = 256; lanes per row 8 | 16 | 32 by K",
    ),
    Entry::v1(
        ENTRY,
        "linear_fp8_sm90",
        DType::Bf16,
        ("GemmFp8Params", 384),
        "persistent: grid = min(ceil(M / 128) * ceil(N / (256 | GEGLU 128)), SMs), block = 384, \
         dynamic smem 218176",
    ),
];

/// Mirrors `struct QuantizeRowsParams` in `gemm_fp8_sm90.cu`: bf16 `x (rows, ldx)` -> e4m3
/// `q (rows, ldq)` and f32 row scales `sa (rows)`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct QuantizeRowsParams {
    pub x: u64,
    pub q: u64,
    pub sa: u64,
    pub rows: u32,
    pub k: u32,
    pub ldx: u32,
    pub ldq: u32,
}

/// Mirrors `struct GemmFp8Params` in `gemm_fp8_sm90.cu` (384 bytes, 64-byte aligned: the tensor
/// maps are `__grid_constant__` params the TMA reads in place).
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmFp8Params {
    pub tma_a: [u64; 16],
    pub tma_b: [u64; 16],
    pub sa: u64,
    pub sb: u64,
    pub bias: u64,
    pub residual: u64,
    pub c: u64,
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub ldr: u32,
    pub ldc: u32,
    pub scale: f32,
    pub geglu: u32,
    pub tiles_m: u32,
    pub tiles_n: u32,
    pub _pad: [u32; 13],
}

/// Device addresses of one FP8 linear: e4m3 `qa (M, ldq)` with f32 `sa (M)`, e4m3 `qb (N | 2N,
/// ldq)` with f32 `sb (N | 2N)`, bf16 `bias` / `residual (M, ldr)` (0 = none), bf16 `c (M, ldc)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fp8Ptrs {
    pub qa: u64,
    pub sa: u64,
    pub qb: u64,
    pub sb: u64,
    pub bias: u64,
    pub residual: u64,
    pub c: u64,
}

/// Shape and strides of one FP8 linear: `C (M, N) = A (M, K) . B (N, K)^T`; `ldq` is the row
/// stride (bytes) of both quantised operands, a multiple of 16 (TMA) `>= K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fp8Shape {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub ldq: u64,
    pub ldr: u64,
    pub ldc: u64,
}

/// The fused epilogue: `scale * (acc + bias [GEGLU] + residual)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fp8Epilogue {
    pub scale: f32,
    pub geglu: bool,
}

/// The row stride (bytes) of quantised rows of `k` e4m3: `k` rounded up to 16 (TMA strides).
pub fn ldq(k: u64) -> u64 {
    k.div_ceil(16) * 16
}

/// Output columns of one CTA tile.
pub fn bn_out(geglu: bool) -> u32 {
    if geglu {
        BN / 2
    } else {
        BN
    }
}

/// Output tiles of the problem (the persistent CTAs' work list).
pub fn tiles(s: Fp8Shape, geglu: bool) -> u64 {
    ceil_div(s.m, BM as u64) * ceil_div(s.n, bn_out(geglu) as u64)
}

/// The tensor maps of QA `(M, ldq)` and QB `(N | 2N, ldq)`: uint8, dims `(K, rows, 1)`, boxes
/// `(128, 128 | 256 | 128, 1)`.
pub fn tensor_maps(p: Fp8Ptrs, s: Fp8Shape, geglu: bool) -> [TmaTile; 2] {
    let map = |base: u64, rows: u64, box_rows: u32| {
        TmaTile::rank3(
            base,
            [s.k, rows, 1],
            [s.ldq, rows.max(1) * s.ldq],
            [BK, box_rows, 1],
        )
    };
    let b_rows = if geglu { 2 * s.n } else { s.n };
    [map(p.qa, s.m, BM), map(p.qb, b_rows, bn_out(geglu))]
}

impl GemmFp8Params {
    /// The params of one FP8 linear with the encoded maps `[a, b]` of [`tensor_maps`].
    pub fn new(p: Fp8Ptrs, s: Fp8Shape, epi: Fp8Epilogue, maps: [[u64; 16]; 2]) -> Result<Self> {
        ensure!(s.m > 0 && s.n > 0 && s.k > 0, "{ENTRY}: empty shape {s:?}");
        ensure!(
            s.ldq % 16 == 0 && s.ldq >= s.k && p.qa % 16 == 0 && p.qb % 16 == 0,
            "{ENTRY}: quantised rows must be 16-byte aligned with a stride >= K: {s:?}"
        );
        ensure!(s.ldc >= s.n, "{ENTRY}: ldc {} < N {}", s.ldc, s.n);
        ensure!(
            p.residual == 0 || s.ldr >= s.n,
            "{ENTRY}: residual row stride {} < N {}",
            s.ldr,
            s.n
        );
        let [tma_a, tma_b] = maps;
        Ok(GemmFp8Params {
            tma_a,
            tma_b,
            sa: p.sa,
            sb: p.sb,
            bias: p.bias,
            residual: p.residual,
            c: p.c,
            m: to_u32(s.m, "M")?,
            n: to_u32(2 * s.n, "2N")? / 2,
            k: to_u32(s.k, "K")?,
            ldr: to_u32(s.ldr, "ldr")?,
            ldc: to_u32(s.ldc, "ldc")?,
            scale: epi.scale,
            geglu: epi.geglu as u32,
            tiles_m: to_u32(ceil_div(s.m, BM as u64), "tiles_m")?,
            tiles_n: to_u32(ceil_div(s.n, bn_out(epi.geglu) as u64), "tiles_n")?,
            _pad: [0; 13],
        })
    }
}

impl QuantizeRowsParams {
    /// `rows` bf16 rows of `k` at `x` (row stride `ldx` elements, a multiple of 8, 16-byte
    /// aligned) into e4m3 rows of stride [`ldq`]`(k)` at `q` and their scales at `sa`.
    pub fn new(x: u64, q: u64, sa: u64, rows: u64, k: u64, ldx: u64) -> Result<Self> {
        ensure!(
            x % 16 == 0 && ldx % 8 == 0 && ldx >= k,
            "{QUANTIZE_ENTRY}: bf16 rows must be 16-byte aligned with a stride >= K (rows {rows}, K {k}, ldx {ldx})"
        );
        Ok(QuantizeRowsParams {
            x,
            q,
            sa,
            rows: to_u32(rows, "rows")?,
            k: to_u32(k, "K")?,
            ldx: to_u32(ldx, "ldx")?,
            ldq: to_u32(ldq(k), "ldq")?,
        })
    }
}

/// Lanes per row of `quantize_rows` (mirrors the `.cu`): rows of whole 16-byte chunks with
/// K <= 32 x 8 x [`Q_CHUNKS`] = 1280 are read once from registers by 8, 16 or 32 lanes, the
/// fewest whose [`Q_CHUNKS`] chunks a lane hold the row (K 320 / 640 / 1280: 8 / 16 / 32); other
/// rows by a warp in two passes.
pub fn quantize_lanes(k: u64) -> u32 {
    let chunks = Q_CHUNKS as u64 * 8;
    match k {
        k if k % 8 != 0 || k > 32 * chunks => 32,
        k if k <= 8 * chunks => 8,
        k if k <= 16 * chunks => 16,
        _ => 32,
    }
}

/// [`quantize_lanes`]`(k)` lanes per row: `ceil(rows / (Q_THREADS / lanes))` CTAs of [`Q_THREADS`].
pub fn quantize_launch_config(rows: u64, k: u64) -> LaunchConfig {
    let rows_per_cta = (Q_THREADS / quantize_lanes(k)) as u64;
    LaunchConfig {
        grid: [ceil_div(rows, rows_per_cta) as u32, 1, 1],
        block: [Q_THREADS, 1, 1],
        dynamic_smem_bytes: 0,
        persistent_tiles: 0,
        tile_work: crate::TileWork::Equal,
    }
}

/// Persistent launch: `min(tiles, sm_count)` CTAs of [`THREADS`], [`SMEM_BYTES`] dynamic smem.
pub fn launch_config(s: Fp8Shape, geglu: bool, sm_count: u32) -> LaunchConfig {
    let ctas = tiles(s, geglu).min(sm_count.max(1) as u64) as u32;
    LaunchConfig {
        grid: [ctas, 1, 1],
        block: [THREADS, 1, 1],
        dynamic_smem_bytes: SMEM_BYTES,
        persistent_tiles: tiles(s, geglu),
        tile_work: crate::TileWork::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(GemmFp8Params, 384, align 64;
        assert_eq!(SMEM_BYTES, 218_176);
        assert_eq!(std::mem::size_of::<QuantizeRowsParams>(), 40);
        assert_eq!(std::mem::offset_of!(GemmFp8Params, sa), 256);
        assert_eq!(std::mem::offset_of!(GemmFp8Params, tiles_n), 328);
    );

    #[test]
    fn grid_and_maps() {
        let s = Fp8Shape {
            m: 300,
            n: 520,
            k: 72,
            ldq: ldq(72),
            ldr: 0,
            ldc: 520,
        };
        assert_eq!(s.ldq, 80);
        assert_eq!(tiles(s, false), 3 * 3);
        assert_eq!(tiles(s, true), 3 * 5);
        assert_eq!(launch_config(s, true, 8).grid, [8, 1, 1]);
        let p = Fp8Ptrs {
            qa: 0x1000,
            sa: 0,
            qb: 0x8000,
            sb: 0,
            bias: 0,
            residual: 0,
            c: 0,
        };
        let [a, b] = tensor_maps(p, s, true);
        assert_eq!(a.used().0, [72, 300, 1]);
        assert_eq!(a.used().1, [80, 300 * 80]);
        assert_eq!(b.used().0, [72, 1040, 1]);
        assert_eq!(b.used().2, [128, 128, 1]);
    }
}
