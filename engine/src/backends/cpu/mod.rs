//! CPU reference backend (plain f32, multi-threaded). The oracle for every op.
