//! Lodge's test kit: what the integration tests and `lodge-bench` both need to drive a
//! Lodge from outside.
//!
//! It owns the raw Streamable HTTP client ([`http`] for callers that handle errors,
//! [`raw`] for tests that panic on them), the SSE reader ([`sse`], on the `sse-stream`
//! parser the workspace uses), the JSON-RPC messages of a session's setup ([`messages`]),
//! the harness that runs the real `lodge serve` binary ([`server`]), and, with the
//! `in-process` feature, one that runs Lodge in the test's own tokio runtime, on a clock
//! the test can pause (`in_process`).
//!
//! It must not ship in the `lodge` binary: it is a dev-dependency of `lodge` and a
//! dependency of `lodge-bench` only, and it is not published.
#![forbid(unsafe_code)]

pub mod http;
#[cfg(feature = "in-process")]
pub mod in_process;
pub mod messages;
pub mod raw;
pub mod server;
pub mod sse;

use std::time::Duration;
use tokio::time::Instant;

/// Polls `check` every 25 ms until it returns true; panics (a failed test) naming `what`
/// once `timeout` has passed.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
