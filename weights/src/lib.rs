//! Checkpoints: memory-mapped safetensors, diffusers/transformers directory layouts, validation.
