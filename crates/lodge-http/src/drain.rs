//! Draining a node on request (`POST /admin/drain`, and `lodge serve` on SIGTERM in
//! cluster mode): it takes no new sessions, keeps serving its live ones until they end
//! or the deadline passes, then shuts down.

use std::time::Duration;
use tokio::sync::watch;

/// The switch the admin API flips and `lodge serve` waits on. Clones share it.
#[derive(Clone, Debug)]
pub struct Drain {
    deadline: watch::Sender<Option<Duration>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            deadline: watch::channel(None).0,
        }
    }
}

impl Drain {
    /// Asks for a drain with live sessions served up to `deadline`; a second request
    /// does not move the first one's deadline.
    pub fn request(&self, deadline: Duration) {
        self.deadline.send_if_modified(|current| match current {
            Some(_) => false,
            None => {
                *current = Some(deadline);
                true
            }
        });
    }

    /// Resolves when a drain is asked for, with its deadline.
    pub async fn requested(&self) -> Duration {
        let mut seen = self.deadline.subscribe();
        loop {
            if let Some(deadline) = *seen.borrow_and_update() {
                return deadline;
            }
            if seen.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_request_sets_the_deadline() {
        let drain = Drain::default();
        let waiting = tokio::spawn({
            let drain = drain.clone();
            async move { drain.requested().await }
        });
        tokio::task::yield_now().await;
        drain.request(Duration::from_secs(5));
        drain.request(Duration::from_secs(9));
        assert_eq!(waiting.await.ok(), Some(Duration::from_secs(5)));
        assert_eq!(drain.requested().await, Duration::from_secs(5));
    }
}
