//! Lodge's HTTP front: the MCP Streamable HTTP endpoint (both eras on one URL), the
//! admin API, and [`serve`] / [`serve_admin`], which run them on a listener and drain
//! the runtime on shutdown.
//!
//! It owns the HTTP rules: it validates what arrives (Host, Origin, headers, size,
//! JSON-RPC shape), resolves the session a request names, hands parsed messages to the
//! runtime, frames what comes back as JSON or SSE, and chooses every error's status
//! code and JSON-RPC code in one table.
//!
//! It must not hold session state (the runtime does), nor start or know about
//! sandboxes, nor read configuration files (the `lodge` binary does).
#![forbid(unsafe_code)]

mod accept;
mod admin;
pub mod auth;
mod drain;
mod error_table;
mod errors;
mod forward;
mod guard;
mod mcp;
mod modern;
mod phase;
mod serve;
mod sse;
mod unanswered;

pub use admin::{AdminAccess, AdminConfig, ClusterAdmin, admin_router, session_rows};
pub use drain::Drain;
pub use forward::Cluster;
pub use guard::FrontConfig;
pub use mcp::{internal_router, router};
pub use serve::{LISTEN_BACKLOG, bind, serve, serve_admin, serve_internal};

/// Runs the front's header parsers (Host, Origin, Accept, Content-Type,
/// `Mcp-Session-Id`, `MCP-Protocol-Version`, `Last-Event-ID`, repeated headers) on
/// `headers` and drops what they decide. Only for the `headers` fuzz target in
/// `fuzz/`, which checks that no header value makes them panic; not an API.
#[doc(hidden)]
pub fn fuzz_header_parsers(headers: &axum::http::HeaderMap) {
    mcp::parse_headers(headers);
}
