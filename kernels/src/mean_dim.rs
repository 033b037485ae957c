//! `kernels/cuda/mean_dim.cu`: mean over one dim, kept with size 1. Params and launch rule are
//! `pool`'s (`kernels/cuda/pool.cuh`): `PoolParams` with `d` and `inner` set.

use crate::{DType, Entry};

pub use crate::pool::{launch_config, PoolParams};

pub const ENTRIES: &[Entry] = &[
    crate::pool::entry("mean_dim_v1_f32", "mean_dim", DType::F32),
    crate::pool::entry("mean_dim_v1_bf16", "mean_dim", DType::Bf16),
];
