//! Lodge's view of MCP traffic: just enough of each JSON-RPC message to route it,
//! with the original bytes kept for forwarding.
//!
//! It owns the one classifying parse of a message, header names, JSON-RPC error codes,
//! protocol versions and the 2026-07-28 `_meta` rules, and the seal (with its key ring)
//! that `requestState` uses. It must not do I/O, hold state, or decide HTTP statuses.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod codes;
pub mod headers;
mod message;
pub mod modern;
mod rewrite;
pub mod seal;
pub mod version;

pub use message::{
    Id, Kind, MAX_NESTING, Message, ParseError, error_body, error_body_with_data, parse_batch,
    readable_id,
};
pub use rewrite::{replace_id, set_meta_field};
