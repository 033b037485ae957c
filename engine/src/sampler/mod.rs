//! Diffusion samplers. `ddim` ports diffusers' `DDIMScheduler` (0.31.0).

pub mod ddim;

pub use ddim::{
    BetaSchedule, DdimConfig, DdimScheduler, DdimStepCoeffs, PredictionType, TimestepSpacing,
};
