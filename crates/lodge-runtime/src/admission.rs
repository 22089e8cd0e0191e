//! Limits beyond this node: in cluster mode, a cluster-wide `max_sessions` and each
//! principal's quota counted over every node. The runtime asks before a session
//! starts and tells when it is gone; `lodge` implements it over Redis.

use crate::principal::Principal;
use std::future::Future;
use std::pin::Pin;

pub type Admitting<'a> = Pin<Box<dyn Future<Output = Result<(), Refused>> + Send + 'a>>;

/// Admits sessions against limits this node cannot count alone.
pub trait Admission: Send + Sync + std::fmt::Debug {
    /// Counts a new session of `server` for `principal`, whose quota allows it
    /// `principal_limit` live sessions of the server (0: no quota), or refuses it.
    fn admit<'a>(
        &'a self,
        server: &'a str,
        principal: &'a Principal,
        principal_limit: u32,
    ) -> Admitting<'a>;

    /// A session [`Admission::admit`] counted is gone.
    fn release(&self, server: &str, principal: &Principal);
}

/// Why a session was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A limit is reached.
    #[error("{0}")]
    OverQuota(String),
    /// The limits cannot be checked now (their store is unreachable): refused rather
    /// than let a limit be broken.
    #[error("{0}")]
    Unavailable(String),
}
