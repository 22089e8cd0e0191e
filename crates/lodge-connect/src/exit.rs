//! Exit codes of `lodge connect` (contract: documented in the README and `--help`).

use rmcp::ServiceError;

/// The call succeeded (or `--list` printed the lists).
pub const OK: u8 = 0;
/// The tool ran and reported an error (`isError: true`); the result is still printed.
pub const TOOL_ERROR: u8 = 1;
/// Bad command line: unknown flag, bad `--args` JSON, arguments that do not match the
/// tool's input schema, an unknown tool, an unreadable `--answers` file.
pub const USAGE: u8 = 2;
/// Could not connect, or the connection failed (network, HTTP, handshake, authorization).
pub const CONNECTION: u8 = 3;
/// The server answered the request with a JSON-RPC error.
pub const REQUEST_FAILED: u8 = 4;
/// The session ended on the server side (HTTP 404); the message says why.
pub const SESSION_ENDED: u8 = 5;
/// Interrupted with Ctrl-C; a running call was cancelled first.
pub const INTERRUPTED: u8 = 130;

/// The exit code for a failed request.
pub fn for_service_error(error: &ServiceError, session_ended: bool) -> u8 {
    if session_ended {
        return SESSION_ENDED;
    }
    match error {
        ServiceError::McpError(_) | ServiceError::UnexpectedResponse => REQUEST_FAILED,
        ServiceError::InputRequiredRoundsExceeded { .. } => REQUEST_FAILED,
        _ => CONNECTION,
    }
}

/// "outer: inner: innermost" for an error and its sources.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
