//! The bytes of server messages a session keeps for its clients (held until a stream
//! opens, buffered for `Last-Event-ID` replay, queued on a stream nobody reads), counted
//! per session and for the whole Lodge.
//!
//! Counts alone do not bound memory: 1,024 replay events of 16 MiB each are 16 GiB. Each
//! kept message carries a [`Charge`] shared by all its copies (buffer, stream queue, the
//! front's write), so the count falls exactly when Lodge lets go of the bytes. A session
//! over its budget first sheds the replay logs of its finished streams; if what is left
//! (messages no client has read yet) is still over, the session ends with a reason that
//! says so, rather than growing Lodge without bound.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The limits, and the Lodge-wide count every session's budget shares.
#[derive(Clone, Debug)]
pub struct BudgetLimits {
    /// Bytes one session may keep.
    pub per_session: usize,
    /// Bytes all sessions together may keep.
    pub total: usize,
    total_used: Arc<AtomicUsize>,
}

impl BudgetLimits {
    pub fn new(per_session: usize, total: usize) -> Self {
        BudgetLimits {
            per_session,
            total,
            total_used: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// What every session keeps right now, together.
    pub fn total_used(&self) -> usize {
        self.total_used.load(Ordering::Relaxed)
    }
}

/// One session's count.
#[derive(Clone)]
pub(crate) struct Budget {
    limits: BudgetLimits,
    used: Arc<AtomicUsize>,
}

/// Bytes counted against a session and the Lodge until the last copy is dropped.
pub struct Charge {
    bytes: usize,
    session: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Charge({} bytes)", self.bytes)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.session.fetch_sub(self.bytes, Ordering::Relaxed);
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Which budget a session went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverBudget {
    /// Its own (`max_buffered_bytes`).
    Session(usize),
    /// Lodge's (`max_buffered_bytes_total`), while this session kept a large share.
    Lodge(usize),
}

impl fmt::Display for OverBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverBudget::Session(cap) => write!(
                f,
                "it kept more than {} of server messages no client read (the session's max_buffered_bytes)",
                mib(*cap)
            ),
            OverBudget::Lodge(cap) => write!(
                f,
                "Lodge's sessions together kept more than {} of unread server messages (max_buffered_bytes_total), and this one held a large share",
                mib(*cap)
            ),
        }
    }
}

fn mib(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

impl Budget {
    pub fn new(limits: BudgetLimits) -> Self {
        Budget {
            limits,
            used: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// No limit worth the name: for tests that are about something else.
    #[cfg(test)]
    pub fn unlimited() -> Self {
        Budget::new(BudgetLimits::new(usize::MAX / 4, usize::MAX / 2))
    }

    pub fn charge(&self, bytes: usize) -> Arc<Charge> {
        self.used.fetch_add(bytes, Ordering::Relaxed);
        self.limits.total_used.fetch_add(bytes, Ordering::Relaxed);
        Arc::new(Charge {
            bytes,
            session: self.used.clone(),
            total: self.limits.total_used.clone(),
        })
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether this session is over its own budget, or over the Lodge's while holding
    /// more than a 64th of it: a light session never pays for a heavy one.
    pub fn over(&self) -> Option<OverBudget> {
        let used = self.used();
        if used > self.limits.per_session {
            return Some(OverBudget::Session(self.limits.per_session));
        }
        if self.limits.total_used() > self.limits.total && used > self.limits.total / 64 {
            return Some(OverBudget::Lodge(self.limits.total));
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn charges_count_until_the_last_copy_is_dropped() {
        let limits = BudgetLimits::new(100, 1000);
        let budget = Budget::new(limits.clone());
        let charge = budget.charge(60);
        let copy = charge.clone();
        assert_eq!((budget.used(), limits.total_used()), (60, 60));
        drop(charge);
        assert_eq!(budget.used(), 60, "a copy still holds the bytes");
        drop(copy);
        assert_eq!((budget.used(), limits.total_used()), (0, 0));
    }

    #[test]
    fn a_session_over_its_own_budget_is_told_so() {
        let budget = Budget::new(BudgetLimits::new(100, 1000));
        let _a = budget.charge(100);
        assert_eq!(budget.over(), None, "the budget itself is allowed");
        let _b = budget.charge(1);
        assert_eq!(budget.over(), Some(OverBudget::Session(100)));
    }

    #[test]
    fn over_the_lodge_budget_only_heavy_sessions_end() {
        let limits = BudgetLimits::new(1 << 20, 6400);
        let heavy = Budget::new(limits.clone());
        let light = Budget::new(limits.clone());
        let _h = heavy.charge(6400);
        let _l = light.charge(100); // exactly a 64th: not more
        assert_eq!(heavy.over(), Some(OverBudget::Lodge(6400)));
        assert_eq!(light.over(), None);
        assert_eq!(
            heavy.over().unwrap().to_string(),
            "Lodge's sessions together kept more than 6400 bytes of unread server messages (max_buffered_bytes_total), and this one held a large share"
        );
    }
}
