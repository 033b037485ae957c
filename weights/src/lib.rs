//! Checkpoints: memory-mapped safetensors, diffusers/transformers directory layouts, validation.
//!
//! - [`SafetensorsFile`]: one file, mapped with `memmap2`, header parsed and checked at open;
//!   [`TensorView`] borrows a tensor's bytes zero-copy and converts them with `to_f32`.
//! - [`Checkpoint`]: a `save_pretrained(..., safe_serialization=True)` folder (config +
//!   single or sharded weights), names canonicalised (weight-norm aliases).
//! - [`ValidationError`]: every missing / mis-shaped / unreadable / unexpected tensor at once.
//! - [`write_safetensors`], [`write_sharded_safetensors`]: the writer for synthetic checkpoints.
//! - [`weight_norm`]: `g · v / ‖v‖` as PyTorch computes it.
//! - [`inspect`]: the text of `cyberhost inspect`.

pub mod checkpoint;
pub mod dtype;
pub mod inspect;
pub mod limits;
pub mod safetensors_file;
pub mod synthetic;
pub mod validate;
pub mod weight_norm;
pub mod writer;

pub use checkpoint::{canonical_name, Checkpoint};
pub use dtype::{fmt_shape, DType};
pub use inspect::{inspect, inspect_path};
pub use safetensors_file::{SafetensorsFile, TensorInfo, TensorView};
pub use validate::{ShapeMismatch, ValidationError};
pub use weight_norm::{weight_norm, weight_norm_g_shape};
pub use writer::{write_safetensors, write_sharded_safetensors, WriteTensor};
