//! Lodge's view of MCP traffic: just enough of each JSON-RPC message to route it,
//! with the original bytes kept for forwarding. No I/O lives here.
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
