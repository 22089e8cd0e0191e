//! How a session's server is spoken to, and why: decided once per session, from the
//! server's own answers (or the server's `protocol` setting), and readable by the
//! front, `lodge check` and the logs.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// The pairing of client era and server era a session runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostingKind {
    /// Legacy client, legacy server: messages relayed as they are.
    Relayed,
    /// Legacy client, 2026-07-28 server: Lodge speaks 2026-07-28 for the client.
    SpokenFor,
    /// 2026-07-28 client, legacy session with the server, bridged over MRTR.
    Bridged,
    /// 2026-07-28 client, 2026-07-28 server: requests passed through.
    Passthrough,
}

impl HostingKind {
    /// Whether the server itself runs a legacy (`initialize`) session.
    pub fn server_is_legacy(self) -> bool {
        matches!(self, HostingKind::Relayed | HostingKind::Bridged)
    }
}

/// A session's [`HostingKind`] and the reason for it, in words for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hosting {
    pub kind: HostingKind,
    pub why: String,
}

impl Hosting {
    pub fn new(kind: HostingKind, why: impl Into<String>) -> Self {
        Hosting {
            kind,
            why: why.into(),
        }
    }
}

impl fmt::Display for Hosting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.kind {
            HostingKind::Relayed => "legacy session, relayed",
            HostingKind::SpokenFor => {
                "2026-07-28 server; Lodge speaks 2026-07-28 for legacy clients"
            }
            HostingKind::Bridged => {
                "legacy session; 2026-07-28 clients are bridged to it over MRTR"
            }
            HostingKind::Passthrough => "2026-07-28 server; 2026-07-28 requests passed through",
        };
        write!(f, "{how} ({})", self.why)
    }
}

/// What the sessions of one server have learned, so the log says each way a server
/// is hosted once, not once per session.
#[derive(Clone, Default)]
pub(crate) struct ServerHosting(Arc<AtomicU8>);

impl ServerHosting {
    pub fn learned(&self, server: &str, hosting: &Hosting) {
        let bit = 1u8 << hosting.kind as u8;
        if self.0.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
            tracing::info!(server, "hosted as: {hosting}");
        }
    }
}
