//! Lodge's runtime: the session registry, one actor per session, and the relay
//! between a client's streams and the session's sandboxed MCP server.
//!
//! Nothing here knows about HTTP: the front hands in parsed [`Message`]s and reads
//! [`Event`]s back from per-stream channels.
#![forbid(unsafe_code)]

mod config;
mod error;
mod registry;
mod session;
mod upstream;
mod upstream_http;

pub use config::{Anonymous, ServerSpec, SessionConfig, Transport};
pub use error::{EndReason, ErrorSource, RuntimeError, SessionError};
pub use lodge_proto::Message;
pub use registry::{Lookup, Runtime, Server};
pub use session::{
    BridgeState, CallStream, Event, EventId, EventStream, ModernCall, Protocol, SessionHandle,
    StateError,
};
