//! `kernels/cuda/upsample.cu`: nearest-neighbour 2-D upsampling. Params and launch rule are
//! `layout`'s (`kernels/cuda/layout.cuh`): `LayoutParams` over `(planes, oh, ow)` with `src_h`,
//! `src_w`, `scale_h`, `scale_w` set.

use crate::layout::{LAUNCH, PARAMS};
use crate::Entry;

pub use crate::layout::{launch_config, LayoutParams};

pub const ENTRIES: &[Entry] = crate::f32_bf16_entries!(PARAMS, LAUNCH; "upsample_nearest2d");
