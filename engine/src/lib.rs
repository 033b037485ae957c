//! cyberhost-engine: config, backends, models, sampler, pipeline.

pub mod backends;
pub mod conformance;
pub mod error;
pub mod models;
pub mod pipeline;
pub mod sampler;
pub mod var_builder;
