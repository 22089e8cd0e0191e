//! Per-principal quotas on one server: live sessions, and sessions started per
//! minute. The ledger is pure bookkeeping (time is passed in), so its rules are
//! tested on exact instants.

use crate::principal::Principal;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);
/// What a principal at its live-session limit is told to wait: sessions end on
/// their own (idle timeout) or when the client deletes one, neither foreseeable.
const RETRY_AT_SESSION_LIMIT: Duration = Duration::from_secs(60);

/// One principal's allowance on one server; 0 means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub max_sessions: u32,
    pub sessions_per_minute: u32,
}

/// Which limit a new session would break, and when to try again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    #[error(
        "you already have {limit} live sessions of this server (quota max_sessions); end one or try again later"
    )]
    Sessions { limit: u32, retry_after: Duration },
    #[error("you started {limit} sessions of this server in the last minute (quota sessions_per_minute); try again in {}s", whole_seconds(*retry_after))]
    Rate { limit: u32, retry_after: Duration },
}

impl QuotaExceeded {
    /// Whole seconds to wait (`Retry-After`), rounded up and at least 1: a client
    /// that waits exactly this long is admitted.
    pub fn retry_after_secs(&self) -> u64 {
        let (QuotaExceeded::Sessions { retry_after, .. } | QuotaExceeded::Rate { retry_after, .. }) =
            self;
        whole_seconds(*retry_after)
    }
}

fn whole_seconds(d: Duration) -> u64 {
    u64::try_from(d.as_millis().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

type Key = (Arc<str>, Principal);

#[derive(Default)]
struct Usage {
    live: u32,
    /// When this principal's recent sessions started, oldest first (at most a minute's).
    started: VecDeque<Instant>,
}

/// What every principal uses of every server with a quota.
#[derive(Default)]
pub(crate) struct Ledger {
    usage: HashMap<Key, Usage>,
}

impl Ledger {
    /// Counts a new session of `server` for `principal`, or says which limit it breaks.
    pub fn admit(
        &mut self,
        server: &Arc<str>,
        principal: &Principal,
        quota: Quota,
        now: Instant,
    ) -> Result<(), QuotaExceeded> {
        let usage = self
            .usage
            .entry((server.clone(), principal.clone()))
            .or_default();
        while usage.started.front().is_some_and(|t| now - *t >= MINUTE) {
            usage.started.pop_front();
        }
        if quota.max_sessions > 0 && usage.live >= quota.max_sessions {
            return Err(QuotaExceeded::Sessions {
                limit: quota.max_sessions,
                retry_after: RETRY_AT_SESSION_LIMIT,
            });
        }
        if quota.sessions_per_minute > 0
            && usage.started.len() >= quota.sessions_per_minute as usize
        {
            let oldest = usage.started.front().copied().unwrap_or(now);
            return Err(QuotaExceeded::Rate {
                limit: quota.sessions_per_minute,
                retry_after: (oldest + MINUTE).saturating_duration_since(now),
            });
        }
        usage.live += 1;
        if quota.sessions_per_minute > 0 {
            usage.started.push_back(now);
        }
        Ok(())
    }

    /// A session `admit` counted has ended.
    pub fn release(&mut self, server: &Arc<str>, principal: &Principal, now: Instant) {
        let key = (server.clone(), principal.clone());
        if let Some(usage) = self.usage.get_mut(&key) {
            usage.live = usage.live.saturating_sub(1);
            // Forget principals with nothing left to count, so the ledger stays small.
            if usage.live == 0 && usage.started.back().is_none_or(|t| now - *t >= MINUTE) {
                self.usage.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.usage.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn setup() -> (Ledger, Arc<str>, Principal, Principal) {
        (
            Ledger::default(),
            "py".into(),
            Principal::new("https://idp", "alice"),
            Principal::new("https://idp", "bob"),
        )
    }

    #[test]
    fn live_sessions_are_capped_per_principal_and_freed_on_release() {
        let (mut ledger, py, alice, bob) = setup();
        let quota = Quota {
            max_sessions: 2,
            sessions_per_minute: 0,
        };
        let now = Instant::now();
        assert!(ledger.admit(&py, &alice, quota, now).is_ok());
        assert!(ledger.admit(&py, &alice, quota, now).is_ok());
        let refused = ledger.admit(&py, &alice, quota, now).unwrap_err();
        assert!(matches!(refused, QuotaExceeded::Sessions { limit: 2, .. }));
        assert!(refused.to_string().contains("max_sessions"), "{refused}");
        // Another principal, and another server, have their own allowance.
        assert!(ledger.admit(&py, &bob, quota, now).is_ok());
        assert!(ledger.admit(&"js".into(), &alice, quota, now).is_ok());
        ledger.release(&py, &alice, now);
        assert!(ledger.admit(&py, &alice, quota, now).is_ok());
    }

    #[test]
    fn the_rate_says_when_the_oldest_start_leaves_the_minute() {
        let (mut ledger, py, alice, _) = setup();
        let quota = Quota {
            max_sessions: 0,
            sessions_per_minute: 2,
        };
        let t0 = Instant::now();
        assert!(ledger.admit(&py, &alice, quota, t0).is_ok());
        ledger.release(&py, &alice, t0);
        let t1 = t0 + Duration::from_secs(20);
        assert!(ledger.admit(&py, &alice, quota, t1).is_ok());
        let refused = ledger
            .admit(&py, &alice, quota, t0 + Duration::from_secs(45))
            .unwrap_err();
        assert_eq!(
            refused,
            QuotaExceeded::Rate {
                limit: 2,
                retry_after: Duration::from_secs(15)
            }
        );
        assert!(
            refused.to_string().contains("try again in 15s"),
            "{refused}"
        );
        assert!(ledger.admit(&py, &alice, quota, t0 + MINUTE).is_ok());
    }

    #[test]
    fn principals_with_nothing_counted_are_forgotten() {
        let (mut ledger, py, alice, _) = setup();
        let quota = Quota {
            max_sessions: 1,
            sessions_per_minute: 10,
        };
        let t0 = Instant::now();
        ledger.admit(&py, &alice, quota, t0).unwrap();
        ledger.release(&py, &alice, t0 + Duration::from_secs(1));
        assert_eq!(ledger.tracked(), 1, "its start still counts for a minute");
        ledger.admit(&py, &alice, quota, t0 + MINUTE).unwrap();
        ledger.release(&py, &alice, t0 + MINUTE * 2);
        assert_eq!(ledger.tracked(), 0);
    }
}
