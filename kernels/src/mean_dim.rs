//! `kernels/cuda/mean_dim.cu`: mean over one dim, kept with size 1. Params and launch rule are
//! `pool`'s (`kernels/cuda/pool.cuh`): `PoolParams` with `d` and `inner` set.

use crate::pool::{LAUNCH, PARAMS};
use crate::Entry;

pub use crate::pool::{launch_config, PoolParams};

pub const ENTRIES: &[Entry] = crate::f32_bf16_entries!(PARAMS, LAUNCH; "mean_dim");
