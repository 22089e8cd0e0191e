use lodge_proto::{Id, codes};
use std::fmt;
use std::time::Duration;

/// Why a session ended. Shown to clients that use its id afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    IdleTimeout(Duration),
    MaxLifetime(Duration),
    /// The client sent DELETE.
    Deleted,
    /// An operator stopped it.
    Stopped,
    /// The MCP server exited on its own: how, and its last stderr line if any.
    ServerExited {
        how: String,
        last_stderr: Option<String>,
    },
    ShuttingDown,
    /// Lodge lost the session to an internal failure (its actor ended unexpectedly).
    Failed,
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
            EndReason::Stopped => f.write_str("an operator stopped it"),
            EndReason::ServerExited { how, last_stderr } => {
                write!(f, "the MCP server {how}")?;
                match last_stderr {
                    Some(line) => write!(f, " (last stderr line: {line})"),
                    None => Ok(()),
                }
            }
            EndReason::ShuttingDown => f.write_str("Lodge is shutting down"),
            EndReason::Failed => f.write_str("Lodge hit an internal error in this session"),
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
    /// A broken invariant inside Lodge: a bug, not the client's or the server's doing.
    #[error("internal error in Lodge: {0}")]
    Internal(String),
}

impl SessionError {
    pub fn code(&self) -> i64 {
        match self {
            SessionError::Gone => codes::SESSION_NOT_FOUND,
            SessionError::DuplicateRequestId(_)
            | SessionError::UnknownEvent(_)
            | SessionError::WrongEra(_) => codes::INVALID_REQUEST,
            SessionError::Internal(_) => codes::INTERNAL_ERROR,
            SessionError::StaleState(_) => codes::INVALID_PARAMS,
            SessionError::ServerBusy | SessionError::ShuttingDown => codes::UNAVAILABLE,
            SessionError::Upstream(_) => codes::SERVER_START_FAILED,
        }
    }
}
