//! The end-to-end pipeline: inputs (image, audio, pose), conditions, output video.

pub mod audio;
pub mod checkpoint;
pub mod conditions;
pub mod generate;
pub mod image;
pub mod presets;
pub mod video;
