//! A warp-level PTX interpreter.
