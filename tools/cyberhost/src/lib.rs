//! The `cyberhost` command-line tool's subcommands, as a library: `src/main.rs` dispatches to
//! them, and the HTTP fuzz target (`fuzz/fuzz_targets/http.rs`) drives `serve`'s router in
//! process.

pub mod args;
pub mod bench;
pub mod check_fixture;
pub mod generate;
pub mod inspect;
pub mod make_weights;
pub mod plan;
pub mod profile;
pub mod selftest;
pub mod serve;
