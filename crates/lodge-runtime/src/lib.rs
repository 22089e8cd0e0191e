//! Lodge's runtime: the session registry, one actor per session, and the relay
//! between a client's streams and the session's sandboxed MCP server.
//!
//! It owns: the registry of live and ended sessions and the `max_sessions` slots
//! (`registry`); per session, the routing core without I/O (`session::core`), one
//! adapter per pairing of client era and server era (`session::era`), the actor that
//! is the session's I/O shell (`session::actor`), the event streams with their replay
//! buffers (`session::streams`) and the sealed `requestState` codec
//! (`session::request_state`); and the links to a server (`upstream`: stdio,
//! `upstream_http`: Streamable HTTP inside the sandbox).
//!
//! It must not know about HTTP routing, status codes or auth protocols: the front
//! hands in parsed [`Message`]s and reads [`Event`]s back from per-stream channels,
//! and turns the runtime's errors into responses itself.
#![forbid(unsafe_code)]

mod admission;
mod audit;
mod config;
mod continuity;
mod error;
pub mod metrics;
mod principal;
mod quota;
mod registry;
mod session;
mod session_id;
mod storage;
pub mod trace;
mod upstream;
mod upstream_http;

pub use admission::{Admission, Admitting, Refused};
pub use audit::{Audit, AuditConfig};
pub use config::{Anonymous, Continuity, ServerSpec, SessionConfig, Transport};
pub use error::{EndReason, ErrorSource, RuntimeError, SessionError};
pub use lodge_proto::Message;
pub use lodge_proto::seal::KeyRing;
pub use metrics::Metrics;
pub use principal::Principal;
pub use quota::{Quota, QuotaExceeded};
pub use registry::{Lookup, Runtime, Server};
pub use session::{
    BridgeState, BudgetLimits, CallStream, Charge, Direction, Event, EventId, EventStream, Hosting,
    HostingKind, ModernCall, OverBudget, Protocol, ProtocolEvent, SessionHandle, SessionReport,
    SessionState, StateCodec, StateError, WaitingOn,
};
pub use session_id::SessionId;
pub use storage::{DEFAULT_STORAGE_TTL, Storage};
#[doc(hidden)]
pub use upstream::fuzz_read_lines;
