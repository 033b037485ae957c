//! Embedded PTX modules, one constant per `.cu` file.
