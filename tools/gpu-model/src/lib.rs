//! GPU-free speed-of-light profiler (see `docs/profiling.md`).
//!
//! * [`counters`]: Nsight-Compute-named per-launch counters and the accumulator an emulator feeds
//!   per warp-level instruction.
//! * [`sampling`]: `PTX_EMU_SAMPLE_BLOCKS` block choice and scaling to the grid.
//! * [`gpu`]: the cited table of GPUs (`PTX_EMU_GPU`).
//! * [`model`]: occupancy, waves, unit busy times, predicted time and bound.
//! * [`report`]: the per-kernel table, JSON and roofline SVG of `cyberhost bench --gpu`.
//! * [`calibration`]: published optimisation series and their counters.

pub mod calibration;
pub mod counters;
pub mod gpu;
pub mod model;
pub mod report;
pub mod sampling;

pub use counters::{
    Access, BlockAccumulator, Counters, LaunchAccumulator, LaunchInfo, TensorDtype,
};
pub use gpu::GpuSpec;
pub use model::{predict, Prediction};
