//! cyberhost-engine: config, backends, models, sampler, pipeline.

pub mod backends;
pub mod conformance;
pub mod error;
pub mod graph;
pub mod models;
pub mod pipeline;
pub mod placement;
pub mod planner;
pub mod sampler;
pub mod var_builder;
