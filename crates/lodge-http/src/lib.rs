//! Lodge's HTTP front: the MCP Streamable HTTP endpoint (legacy, stateful era).
//!
//! It validates what arrives (Host, Origin, headers, size, JSON-RPC shape), resolves
//! the session, and hands parsed messages to the runtime. It holds no session state.
#![forbid(unsafe_code)]

mod admin;
mod errors;
mod guard;
mod mcp;
mod modern;
mod sse;

pub use admin::admin_router;
pub use guard::FrontConfig;
pub use mcp::router;
