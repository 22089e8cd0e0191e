//! Lodge's view of MCP traffic: just enough of each JSON-RPC message to route it,
//! with the original bytes kept for forwarding. No I/O lives here.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod codes;
pub mod headers;
mod message;
pub mod version;

pub use message::{Id, Kind, Message, ParseError, error_body, parse_batch};
