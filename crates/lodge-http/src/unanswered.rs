//! A session whose `initialize` was never answered. Until the client has the
//! initialize result it cannot use the session (and, if the request failed, it never
//! even learnt the id), so a client that goes away before then (a dropped connection
//! cancels the handler or drops the SSE body) must not leave a live sandbox holding a
//! `max_sessions` slot until the idle timeout.

use lodge_runtime::{EndReason, SessionHandle};

/// Ends its session when dropped, unless [`Unanswered::answered`] was called first.
pub(crate) struct Unanswered(Option<SessionHandle>);

impl Unanswered {
    pub fn new(session: SessionHandle) -> Self {
        Unanswered(Some(session))
    }

    /// The initialize response is on its way to the client: the session is theirs.
    pub fn answered(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some(session) = self.0.take() else {
            return;
        };
        // Drop cannot await; the stop runs on its own. Outside a runtime (only at
        // process exit) the session ends with the runtime anyway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tracing::debug!(
                session = session.id(),
                "the client left before initialize was answered; ending the session"
            );
            runtime.spawn(async move { session.stop(EndReason::Abandoned).await });
        }
    }
}
