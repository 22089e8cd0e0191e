//! Every way a request can fail at the front, as one typed enum, and the JSON-RPC error
//! response it becomes. What each failure is answered with (status, code, headers,
//! metric label) is chosen in one place: [`crate::error_table`].

use crate::error_table::{Answer, ErrorLabel};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use lodge_proto::modern::ModernError;
use lodge_proto::{Id, ParseError, error_body_with_data, version};
use lodge_runtime::metrics::Method as RpcMethod;
use lodge_runtime::{EndReason, Lookup, RuntimeError, SessionError, StateError};
use std::fmt;

/// Why the front refused or could not serve a request.
#[derive(Debug)]
pub(crate) enum FrontError {
    /// `Host` is not loopback nor in `allowed_hosts` (DNS rebinding protection).
    HostNotAllowed(String),
    /// `Origin` is not loopback nor in `allowed_origins`.
    OriginNotAllowed(String),
    /// The path names no hosted server; the names it could have used.
    UnknownServer(Vec<String>),
    MethodNotAllowed(Method),
    /// A POST whose `Accept` allows neither JSON nor SSE.
    PostNotAcceptable,
    /// A GET whose `Accept` does not allow SSE.
    GetNotAcceptable,
    UnsupportedMediaType,
    /// A legacy-era request with an `MCP-Protocol-Version` this endpoint does not speak.
    UnsupportedProtocolVersion(String),
    /// `Mcp-Session-Id` is not visible ASCII.
    InvalidSessionId,
    MissingSessionId,
    /// A session header (`Mcp-Session-Id`, `Lodge-Session-Id`, `Last-Event-ID`) sent twice.
    RepeatedHeader(&'static str),
    InvalidLastEventId,
    BodyTooLarge {
        limit: usize,
    },
    BodyUnreadable(String),
    /// The body did not arrive within `body_read_timeout`.
    BodyTimeout {
        limit: std::time::Duration,
    },
    /// The body, or one member of a batch, is not a JSON-RPC message.
    Parse(ParseError),
    /// A batch sent without a session (initialize cannot be batched).
    BatchWithoutSession,
    /// A batch in a session whose protocol version has no batches.
    BatchNotAllowed(String),
    BatchWithInitialize,
    /// `Mcp-Session-Id` (or, for 2026-07-28, `Lodge-Session-Id`) names no session of
    /// this server.
    UnknownSession,
    /// `Mcp-Session-Id` names a legacy session that ended.
    SessionEnded(EndReason),
    /// `Lodge-Session-Id` names no runtime session of this server.
    UnknownRuntimeSession,
    /// `Lodge-Session-Id` names a runtime session that ended.
    RuntimeSessionEnded(EndReason),
    /// `Lodge-Session-Id` names a session started with initialize.
    LegacySessionAsRuntime,
    /// A 2026-07-28 request that breaks the spec's rules.
    Modern(ModernError),
    /// A Lodge-minted `requestState` that fails verification.
    BadRequestState(StateError),
    Runtime(RuntimeError),
    Session(SessionError),
    /// Cluster: the session's owner node is not among the live members (or refused
    /// the connection): it died, and its sessions with it.
    NodeGone(String),
    /// Cluster: a forwarded request reached a node that does not own the session
    /// (a node's `advertise` points at another node).
    ForwardLoop {
        owner: String,
        here: String,
    },
    /// Cluster: a request on the internal listener without a valid hop header.
    HopRefused(lodge_cluster::HopError),
    /// Cluster: the owner node failed while answering a forwarded request.
    OwnerFailed {
        owner: String,
        why: String,
    },
    /// The request's credentials were refused; `challenge` is its `WWW-Authenticate`.
    Auth {
        refusal: crate::auth::AuthRefusal,
        challenge: Option<String>,
    },
}

impl FrontError {
    /// A legacy session error, told with why the session ended where the runtime knows.
    pub fn from_session(e: SessionError, lookup: Lookup) -> Self {
        match (e, lookup) {
            (SessionError::Gone, Lookup::Ended(reason)) => FrontError::SessionEnded(reason),
            (SessionError::Gone, _) => FrontError::UnknownSession,
            (e, _) => FrontError::Session(e),
        }
    }

    /// A runtime session (`Lodge-Session-Id`) error, worded for 2026-07-28 clients.
    pub fn from_runtime_session(e: SessionError, lookup: Lookup) -> Self {
        match e {
            SessionError::Gone => FrontError::runtime_session_missing(lookup),
            e => FrontError::Session(e),
        }
    }

    /// A runtime session that is not there (any more), by what its id refers to now.
    pub fn runtime_session_missing(lookup: Lookup) -> Self {
        match lookup {
            Lookup::Ended(reason) => FrontError::RuntimeSessionEnded(reason),
            Lookup::Live(_) | Lookup::Unknown => FrontError::UnknownRuntimeSession,
        }
    }

    /// The answer to the JSON-RPC request `id`.
    pub fn with_id(self, id: Option<&Id>) -> HttpError {
        HttpError::from(self).with_id(id)
    }

    /// The JSON-RPC error's `data` member, where the spec defines one.
    pub fn data(&self) -> Option<serde_json::Value> {
        match self {
            FrontError::Modern(e) => e.data(),
            _ => None,
        }
    }
}

const REINITIALIZE: &str = "Send a new initialize request to start a new session.";
const RESTART_RUNTIME_SESSION: &str =
    "Send the request without Lodge-Session-Id to start a new one.";

impl fmt::Display for FrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontError::HostNotAllowed(host) => write!(
                f,
                "Host {host:?} is not allowed (DNS rebinding protection); add it to allowed_hosts"
            ),
            FrontError::OriginNotAllowed(origin) => write!(
                f,
                "Origin {origin:?} is not allowed; add it to allowed_origins"
            ),
            FrontError::UnknownServer(names) => write!(
                f,
                "No such MCP server here. This Lodge serves: {}",
                names.join(", ")
            ),
            FrontError::MethodNotAllowed(method) => {
                write!(f, "{method} is not supported; use POST, GET or DELETE")
            }
            FrontError::PostNotAcceptable => {
                f.write_str("Accept must include application/json and text/event-stream")
            }
            FrontError::GetNotAcceptable => {
                f.write_str("GET opens an event stream: Accept must include text/event-stream")
            }
            FrontError::UnsupportedMediaType => f.write_str("Content-Type must be application/json"),
            FrontError::UnsupportedProtocolVersion(value) => write!(
                f,
                "Unsupported MCP-Protocol-Version {value:?}; this endpoint supports {}",
                version::LEGACY.join(", ")
            ),
            FrontError::InvalidSessionId => f.write_str("Mcp-Session-Id must be visible ASCII"),
            FrontError::MissingSessionId => f.write_str(
                "Missing Mcp-Session-Id header: send an initialize request first, then send its Mcp-Session-Id on every request",
            ),
            FrontError::RepeatedHeader(name) => {
                write!(f, "the {name} header appears more than once; send it once")
            }
            FrontError::InvalidLastEventId => {
                f.write_str("Last-Event-ID is not an event id this server issued")
            }
            FrontError::BodyTooLarge { limit } => {
                write!(f, "Request body is larger than the {limit}-byte limit")
            }
            FrontError::BodyTimeout { limit } => write!(
                f,
                "the request body did not arrive within {}s",
                limit.as_secs_f64()
            ),
            FrontError::BodyUnreadable(why) => write!(f, "Could not read the request body: {why}"),
            FrontError::Parse(e) => write!(f, "{e}"),
            FrontError::BatchWithoutSession => f.write_str(
                "JSON-RPC batches are not accepted here: initialize must be sent on its own",
            ),
            FrontError::BatchNotAllowed(version) => write!(
                f,
                "JSON-RPC batches are not supported in protocol version {version} (removed in 2025-06-18); send one message per POST"
            ),
            FrontError::BatchWithInitialize => {
                f.write_str("initialize must not be part of a JSON-RPC batch")
            }
            FrontError::UnknownSession => write!(
                f,
                "Session not found: this server has no session with that Mcp-Session-Id. {REINITIALIZE}"
            ),
            FrontError::SessionEnded(reason) => write!(
                f,
                "Session not found: it ended because {reason}. {REINITIALIZE}"
            ),
            FrontError::UnknownRuntimeSession => write!(
                f,
                "Runtime session not found: no runtime session of this server has that Lodge-Session-Id. {RESTART_RUNTIME_SESSION}"
            ),
            FrontError::RuntimeSessionEnded(reason) => write!(
                f,
                "Runtime session not found: it ended because {reason}. {RESTART_RUNTIME_SESSION}"
            ),
            FrontError::LegacySessionAsRuntime => f.write_str(
                "this session was started with initialize: send its id as Mcp-Session-Id, not Lodge-Session-Id",
            ),
            FrontError::Modern(e) => write!(f, "{e}"),
            FrontError::BadRequestState(e) => write!(f, "{e}"),
            FrontError::NodeGone(node) => write!(
                f,
                "Session not found: the node that held this session ({node}) is gone; initialize again"
            ),
            FrontError::ForwardLoop { owner, here } => write!(
                f,
                "a request forwarded for node {owner}'s session reached node {here}: check [cluster] advertise on {owner}"
            ),
            FrontError::HopRefused(e) => write!(
                f,
                "the internal listener serves other Lodge nodes only: {e}"
            ),
            FrontError::OwnerFailed { owner, why } => {
                write!(f, "node {owner}, which holds this session, failed to answer: {why}")
            }
            FrontError::Auth { refusal, .. } => write!(f, "{refusal}"),
            FrontError::Runtime(e) => write!(f, "{e}"),
            FrontError::Session(e) => write!(f, "{e}"),
        }
    }
}

impl From<RuntimeError> for FrontError {
    fn from(e: RuntimeError) -> Self {
        FrontError::Runtime(e)
    }
}

impl From<ModernError> for FrontError {
    fn from(e: ModernError) -> Self {
        FrontError::Modern(e)
    }
}

impl From<ParseError> for FrontError {
    fn from(e: ParseError) -> Self {
        FrontError::Parse(e)
    }
}

/// A failed request as it is answered: the failure, and the id of the JSON-RPC
/// request it answers where known.
#[derive(Debug)]
pub(crate) struct HttpError {
    pub error: FrontError,
    pub id: Option<Id>,
    /// The method of the JSON-RPC request refused, where it was read.
    pub method: RpcMethod,
}

/// What the metrics layer counts an error answer as (a response extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CountedError {
    pub method: RpcMethod,
    pub code: i64,
    pub source: lodge_runtime::ErrorSource,
}

impl From<FrontError> for HttpError {
    fn from(error: FrontError) -> Self {
        HttpError {
            error,
            id: None,
            method: RpcMethod::OTHER,
        }
    }
}

impl From<RuntimeError> for HttpError {
    fn from(e: RuntimeError) -> Self {
        FrontError::from(e).into()
    }
}

impl From<ParseError> for HttpError {
    fn from(e: ParseError) -> Self {
        FrontError::from(e).into()
    }
}

impl HttpError {
    pub fn with_id(mut self, id: Option<&Id>) -> Self {
        self.id = id.cloned();
        self
    }

    /// The refused request was a call of `method`.
    pub fn with_method(mut self, method: RpcMethod) -> Self {
        self.method = method;
        self
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let Answer {
            status,
            code,
            headers,
            label,
        } = self.error.answer();
        let message = self.error.to_string();
        if status.is_server_error() {
            tracing::warn!(%status, source = %label.source, reason = label.reason, %message, "request failed");
        } else {
            tracing::debug!(%status, source = %label.source, reason = label.reason, %message, "request rejected");
        }
        let body =
            error_body_with_data(self.id.as_ref(), code, &message, self.error.data().as_ref());
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        response.headers_mut().extend(headers);
        // For whatever counts errors (a metrics layer): what failed, in stable words.
        response.extensions_mut().insert::<ErrorLabel>(label);
        response.extensions_mut().insert(CountedError {
            method: self.method,
            code,
            source: label.source,
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_errors_keep_their_own_words() {
        assert_eq!(
            FrontError::Session(SessionError::ServerBusy).to_string(),
            "the MCP server is not reading its input; try again later"
        );
        assert_eq!(
            FrontError::Modern(ModernError::HeaderMismatch("x".into())).to_string(),
            "Header mismatch: x"
        );
        assert_eq!(
            FrontError::Runtime(RuntimeError::AtCapacity(2)).to_string(),
            "Lodge is at its limit of 2 live sessions; try again later"
        );
    }

    #[test]
    fn a_gone_session_is_told_by_why_it_ended() {
        let ended = |reason| Lookup::Ended(reason);
        assert!(matches!(
            FrontError::from_session(SessionError::Gone, ended(EndReason::Deleted)),
            FrontError::SessionEnded(EndReason::Deleted)
        ));
        assert!(matches!(
            FrontError::from_session(SessionError::Gone, Lookup::Unknown),
            FrontError::UnknownSession
        ));
        assert!(matches!(
            FrontError::from_runtime_session(SessionError::Gone, ended(EndReason::Stopped)),
            FrontError::RuntimeSessionEnded(EndReason::Stopped)
        ));
        assert!(matches!(
            FrontError::from_runtime_session(SessionError::ServerBusy, Lookup::Unknown),
            FrontError::Session(SessionError::ServerBusy)
        ));
    }
}
