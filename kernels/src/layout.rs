//! `kernels/cuda/layout.cu`: strided copy (permute, narrow, concat), index_select, pad2d. The
//! params struct and launch rule also serve `upsample.cu` (`kernels/cuda/layout.cuh`).

use crate::{grid_stride, DType, Entry, LaunchConfig};

/// Threads per block (`LAYOUT_THREADS` in the `.cu`).
pub const LAYOUT_THREADS: u32 = 256;
/// Elements per thread the launch rule aims for before the grid is capped.
pub const LAYOUT_ITEMS_PER_THREAD: u64 = 4;
/// Grid cap; the kernels' grid-stride loops cover the rest.
pub const LAYOUT_MAX_BLOCKS: u64 = crate::MAX_GRID_STRIDE_BLOCKS;
/// Dims of the copy index (`LAYOUT_MAX_RANK`); leading dims are padded with 1.
pub const LAYOUT_MAX_RANK: usize = 6;

pub(crate) const LAUNCH: &str =
    "grid = clamp(ceil(n / 1024), 1, 65535), block = 256, grid-stride loop";

/// The params struct of every layout entry (and upsample's).
pub(crate) const PARAMS: (&str, usize) = ("LayoutParams", 192);

const LAUNCH_COPY: &str = "16-byte vectors: grid = clamp(ceil(n / vec / 512), 1, 65535), else \
                           clamp(ceil(n / 1024), 1, 65535); block = 256, grid-stride loop";

pub const ENTRIES: &[Entry] = crate::f32_bf16_entries!(
    PARAMS, LAUNCH; "index_select", "pad2d";
    Entry::versioned(2, "copy_v2_f32", "copy", DType::F32, PARAMS, LAUNCH_COPY),
    Entry::versioned(2, "copy_v2_bf16", "copy", DType::Bf16, PARAMS, LAUNCH_COPY)
);

/// Mirrors `struct LayoutParams` in `layout.cu` field for field (192 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LayoutParams {
    pub src: u64,
    pub dst: u64,
    /// index_select: `(len)` u32 indices into the source dim; 0 otherwise.
    pub index: u64,
    /// Elements written: the product of `shape`.
    pub n: u64,
    /// copy: elements.
    pub src_offset: u64,
    pub dst_offset: u64,
    /// copy: element strides per dim of `shape`.
    pub src_strides: [u64; LAYOUT_MAX_RANK],
    pub dst_strides: [u64; LAYOUT_MAX_RANK],
    /// Iteration shape, leading dims padded with 1; index_select / pad2d / upsample use the last
    /// three: `(outer, len, inner)` or `(planes, out_h, out_w)`.
    pub shape: [u32; LAYOUT_MAX_RANK],
    /// pad2d / upsample: source rows; index_select: size of the indexed source dim.
    pub src_h: u32,
    /// pad2d / upsample: source columns.
    pub src_w: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    /// upsample: `src_h as f32 / out_h as f32` (PyTorch's f32 scale).
    pub scale_h: f32,
    pub scale_w: f32,
}

impl LayoutParams {
    /// All-zero params with `src`, `dst` and a shape (padded in front with 1 to rank 6).
    pub fn new(src: u64, dst: u64, shape: &[u32]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            shape.len() <= LAYOUT_MAX_RANK,
            "layout: rank {} exceeds the kernel's {LAYOUT_MAX_RANK} dims",
            shape.len()
        );
        let mut padded = [1u32; LAYOUT_MAX_RANK];
        padded[LAYOUT_MAX_RANK - shape.len()..].copy_from_slice(shape);
        let mut p: LayoutParams = bytemuck::Zeroable::zeroed();
        p.src = src;
        p.dst = dst;
        p.shape = padded;
        p.n = shape.iter().map(|&d| d as u64).product();
        Ok(p)
    }
}

/// `grid = clamp(ceil(n / (256 * 4)), 1, 65535)`, `block = 256`, no dynamic smem.
pub fn launch_config(n: u64) -> LaunchConfig {
    grid_stride(n, LAYOUT_THREADS, LAYOUT_ITEMS_PER_THREAD)
}

/// The copy entry's launch: over 16-byte vectors when the last dim is a whole number of them and
/// src and dst are contiguous and aligned along it (`copy_v2`'s own test,
/// [`crate::vec16_operand`]), else [`launch_config`].
pub fn launch_config_copy(p: &LayoutParams, dtype: DType) -> LaunchConfig {
    let vec = 16 / dtype.size_in_bytes() as u64;
    let vectors = p.shape[LAYOUT_MAX_RANK - 1] as u64 % vec == 0
        && crate::vec16_operand(p.src, p.src_offset, &p.src_strides, vec, false)
        && crate::vec16_operand(p.dst, p.dst_offset, &p.dst_strides, vec, false);
    crate::grid_stride_vec16(p.n, vec, vectors, LAYOUT_THREADS, LAYOUT_ITEMS_PER_THREAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::params_layout_test!(LayoutParams, 192, align 8);

    #[test]
    fn new_pads_shape_in_front() {
        let p = LayoutParams::new(8, 16, &[2, 3, 5]).unwrap();
        assert_eq!(p.shape, [1, 1, 1, 2, 3, 5]);
        assert_eq!(p.n, 30);
        assert!(LayoutParams::new(8, 16, &[1; 7]).is_err());
    }
}
