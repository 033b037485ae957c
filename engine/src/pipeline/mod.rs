//! The end-to-end pipeline: inputs (image, audio, pose), conditions, output video.

pub mod audio;
pub mod conditions;
pub mod image;
pub mod video;
pub mod presets;
pub mod checkpoint;
pub mod generate;
