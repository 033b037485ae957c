//! `kernels/cuda/upsample.cu`: nearest-neighbour 2-D upsampling. Params and launch rule are
//! `layout`'s (`kernels/cuda/layout.cuh`): `LayoutParams` over `(planes, oh, ow)` with `src_h`,
//! `src_w`, `scale_h`, `scale_w` set; the channels-last entry iterates `(N, oh, ow, C)` rows
//! (`shape[2..6]`), one 16-byte vector per thread step, launched over those vectors.

use crate::layout::{LAUNCH, PARAMS};
use crate::{DType, Entry};

pub use crate::layout::{launch_config, LayoutParams};

const LAUNCH_NHWC: &str =
    "grid = clamp(ceil(N * oh * ow * ceil(C / VEC) / 1024), 1, 65535), block = 256, grid-stride loop";

pub const ENTRIES: &[Entry] = crate::f32_bf16_entries!(
    PARAMS, LAUNCH; "upsample_nearest2d";
    Entry::v1("upsample_nearest2d_nhwc_v1_f32", "upsample_nearest2d_nhwc", DType::F32, PARAMS, LAUNCH_NHWC),
    Entry::v1("upsample_nearest2d_nhwc_v1_bf16", "upsample_nearest2d_nhwc", DType::Bf16, PARAMS, LAUNCH_NHWC)
);
