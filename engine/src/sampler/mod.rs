//! Diffusion samplers. `ddim` ports diffusers' `DDIMScheduler` (0.42.1).

pub mod ddim;

pub use ddim::{
    BetaSchedule, DdimConfig, DdimScheduler, DdimStepCoeffs, PredictionType, TimestepSpacing,
};
