//! `kernels/cuda/upsample.cu`: nearest-neighbour 2-D upsampling. Params and launch rule are
//! `layout`'s (`kernels/cuda/layout.cuh`): `LayoutParams` over `(planes, oh, ow)` with `src_h`,
//! `src_w`, `scale_h`, `scale_w` set.

use crate::{DType, Entry};

pub use crate::layout::{launch_config, LayoutParams};

pub const ENTRIES: &[Entry] = &[
    crate::layout::entry(
        "upsample_nearest2d_v1_f32",
        "upsample_nearest2d",
        DType::F32,
    ),
    crate::layout::entry(
        "upsample_nearest2d_v1_bf16",
        "upsample_nearest2d",
        DType::Bf16,
    ),
];
