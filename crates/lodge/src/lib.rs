//! The `lodge` command's configuration (file format, flags, `LODGE_*` variables and their
//! checks), as a library: the binary is its user, and `fuzz/` feeds it arbitrary text.
//! Everything else of the command lives in the binary (`main.rs`).
#![forbid(unsafe_code)]

pub mod config;
