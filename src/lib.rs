//! Cross-crate test suite and benches live in tests/ and benches/.
