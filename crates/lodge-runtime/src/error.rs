//! What can go wrong starting a session or delivering to one, why a session ended, and
//! whose fault each error is ([`ErrorSource`]). Which HTTP status and JSON-RPC code an
//! error becomes is the front's choice (lodge-http's error table), not made here.

use lodge_proto::Id;
use std::fmt;
use std::time::Duration;

/// Why a session ended. Shown to clients that use its id afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    IdleTimeout(Duration),
    MaxLifetime(Duration),
    /// The client sent DELETE.
    Deleted,
    /// An operator stopped it (`DELETE /admin/sessions/{id}`).
    Stopped,
    /// Lodge ended a session nobody had used yet, for the reason given: one it could
    /// not set up for its client, or one it started only to check a server.
    Discarded(&'static str),
    /// The MCP server exited on its own: how, its last stderr line if any, and whether
    /// it was killed for going over its memory limit.
    ServerExited {
        how: String,
        last_stderr: Option<String>,
        oom: bool,
    },
    ShuttingDown,
    /// The client went away before its initialize was answered.
    Abandoned,
    /// Lodge lost the session to an internal failure (its actor ended unexpectedly).
    Failed,
    /// It kept more unread server messages than its byte budget allows.
    OverBudget(crate::session::OverBudget),
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::IdleTimeout(d) => {
                write!(f, "it was idle for {} (the idle timeout)", humanize(*d))
            }
            EndReason::MaxLifetime(d) => {
                write!(f, "it reached its maximum lifetime of {}", humanize(*d))
            }
            EndReason::Deleted => f.write_str("the client ended it with DELETE"),
            EndReason::Stopped => f.write_str("it was stopped by an operator"),
            EndReason::Discarded(why) => write!(f, "Lodge ended it: {why}"),
            EndReason::ServerExited {
                how, last_stderr, ..
            } => {
                write!(f, "the MCP server {how}")?;
                match last_stderr {
                    Some(line) => write!(f, " (last stderr line: {line})"),
                    None => Ok(()),
                }
            }
            EndReason::ShuttingDown => f.write_str("Lodge is shutting down"),
            EndReason::Abandoned => {
                f.write_str("the client went away before its initialize was answered")
            }
            EndReason::Failed => f.write_str("Lodge hit an internal error in this session"),
            EndReason::OverBudget(over) => over.fmt(f),
        }
    }
}

impl EndReason {
    /// Whose doing the end is, as the source of the errors it gives calls still
    /// pending: the client's (it ended the session), the server's (it exited), or else
    /// Lodge's (its timeouts, limits, operators and shutdown).
    pub fn source(&self) -> ErrorSource {
        match self {
            EndReason::Deleted | EndReason::Abandoned => ErrorSource::Client,
            EndReason::ServerExited { .. } => ErrorSource::Server,
            EndReason::IdleTimeout(_)
            | EndReason::MaxLifetime(_)
            | EndReason::Stopped
            | EndReason::Discarded(_)
            | EndReason::ShuttingDown
            | EndReason::Failed
            | EndReason::OverBudget(_) => ErrorSource::Lodge,
        }
    }
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        _ if d.subsec_millis() != 0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Who an error is about. The front's error table answers by it (a client's mistake
/// is a 4xx, a failing server a 502 or 503, Lodge's own limits a 503, a broken invariant a
/// 500) and it is the `source` label of error metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorSource {
    /// The client sent something wrong, or named something that is not there (any more).
    Client,
    /// The MCP server or its sandbox: it could not start, refused, or is not reading.
    Server,
    /// Lodge itself: its limits, its shutdown, the host it runs on, or a broken
    /// invariant inside it.
    Lodge,
    /// Authentication or authorization of the client.
    Auth,
}

impl ErrorSource {
    /// The stable label value for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::Client => "client",
            ErrorSource::Server => "server",
            ErrorSource::Lodge => "lodge",
            ErrorSource::Auth => "auth",
        }
    }
}

impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors creating a session.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("Lodge is at its limit of {0} live sessions; try again later")]
    AtCapacity(usize),
    #[error("Lodge is shutting down and accepts no new sessions")]
    ShuttingDown,
    #[error("could not start the MCP server: {0}")]
    Spawn(lodge_sandbox::SandboxError),
    /// The host is out of open files, processes or memory: no server can start now.
    #[error(
        "Lodge cannot start another session now: the host is out of resources ({0}); try again later"
    )]
    HostExhausted(lodge_sandbox::SandboxError),
    #[error("could not set up the MCP server for a 2026-07-28 client: {0}")]
    Prepare(String),
    #[error("{0}")]
    Quota(crate::QuotaExceeded),
    /// Refused by the cluster's limits, or they could not be checked.
    #[error("{0}")]
    Cluster(crate::Refused),
}

impl RuntimeError {
    pub fn source(&self) -> ErrorSource {
        match self {
            RuntimeError::AtCapacity(_) | RuntimeError::ShuttingDown => ErrorSource::Lodge,
            RuntimeError::Quota(_) | RuntimeError::Cluster(crate::Refused::OverQuota(_)) => {
                ErrorSource::Client
            }
            RuntimeError::Cluster(crate::Refused::Unavailable(_)) => ErrorSource::Lodge,
            // Out of descriptors, processes or memory: the host is full, whichever
            // server was about to start.
            RuntimeError::HostExhausted(_) => ErrorSource::Lodge,
            RuntimeError::Spawn(_) | RuntimeError::Prepare(_) => ErrorSource::Server,
        }
    }
}

impl From<lodge_sandbox::SandboxError> for RuntimeError {
    fn from(e: lodge_sandbox::SandboxError) -> Self {
        if e.is_host_exhausted() {
            RuntimeError::HostExhausted(e)
        } else {
            RuntimeError::Spawn(e)
        }
    }
}

/// Errors delivering a client message to a live session.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SessionError {
    /// The session ended (between lookup and delivery, or during it).
    #[error("the session has ended")]
    Gone,
    #[error("request id {0} is already in flight in this session")]
    DuplicateRequestId(Id),
    #[error("the MCP server is not reading its input; try again later")]
    ServerBusy,
    #[error("Lodge is shutting down and accepts no new requests")]
    ShuttingDown,
    #[error("Last-Event-ID {0:?} names no stream of this session that can be resumed")]
    UnknownEvent(String),
    /// The server would not do what Lodge asked on the client's behalf.
    #[error("{0}")]
    Upstream(String),
    /// An MRTR retry whose `requestState` no longer (or never did) match a waiting call.
    #[error("{0}")]
    StaleState(String),
    /// A request of one era sent to a session of the other.
    #[error("{0}")]
    WrongEra(&'static str),
    /// An invariant inside Lodge does not hold: a bug, never the client's or the
    /// server's doing. Not to be reported as [`SessionError::Gone`].
    #[error("internal error in Lodge: {0}")]
    Internal(String),
}

impl SessionError {
    pub fn source(&self) -> ErrorSource {
        match self {
            // The request names a session that is over; why it ended is told separately.
            SessionError::Gone
            | SessionError::DuplicateRequestId(_)
            | SessionError::UnknownEvent(_)
            | SessionError::StaleState(_)
            | SessionError::WrongEra(_) => ErrorSource::Client,
            SessionError::ServerBusy | SessionError::Upstream(_) => ErrorSource::Server,
            SessionError::ShuttingDown | SessionError::Internal(_) => ErrorSource::Lodge,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_knows_its_source() {
        let sandbox = || lodge_sandbox::SandboxError::EmptyCommand;
        let runtime = [
            (RuntimeError::AtCapacity(3), ErrorSource::Lodge),
            (RuntimeError::ShuttingDown, ErrorSource::Lodge),
            (RuntimeError::HostExhausted(sandbox()), ErrorSource::Lodge),
            (RuntimeError::Spawn(sandbox()), ErrorSource::Server),
            (RuntimeError::Prepare("refused".into()), ErrorSource::Server),
        ];
        for (error, source) in runtime {
            assert_eq!(error.source(), source, "{error:?}");
        }
        let session = [
            (SessionError::Gone, ErrorSource::Client),
            (
                SessionError::DuplicateRequestId(Id::from_json_text("1")),
                ErrorSource::Client,
            ),
            (
                SessionError::UnknownEvent("1-2".into()),
                ErrorSource::Client,
            ),
            (SessionError::StaleState("used".into()), ErrorSource::Client),
            (SessionError::ServerBusy, ErrorSource::Server),
            (
                SessionError::Upstream("refused".into()),
                ErrorSource::Server,
            ),
            (SessionError::ShuttingDown, ErrorSource::Lodge),
            (SessionError::Internal("no call".into()), ErrorSource::Lodge),
        ];
        for (error, source) in session {
            assert_eq!(error.source(), source, "{error:?}");
        }
        assert_eq!(ErrorSource::Server.to_string(), "server");
        let exited = EndReason::ServerExited {
            how: "was killed".into(),
            last_stderr: None,
            oom: true,
        };
        assert_eq!(exited.source(), ErrorSource::Server);
        assert_eq!(EndReason::Deleted.source(), ErrorSource::Client);
        assert_eq!(EndReason::Stopped.source(), ErrorSource::Lodge);
        assert_eq!(ErrorSource::Auth.as_str(), "auth");
    }
}
