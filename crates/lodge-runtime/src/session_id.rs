//! The public handle of a session: what clients send back as `Mcp-Session-Id`
//! (legacy era) or `Lodge-Session-Id` (2026-07-28). Opaque to clients and to the rest
//! of Lodge: the text of a sealed `lodge_cluster` session token, which the registry
//! mints and opens. It is never a sandbox's id, scratch directory or cgroup name
//! (lodge-sandbox mints those from its own `SandboxId`), so changing one never changes
//! the others.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// A minted token's text.
    pub(crate) fn new(token: String) -> Self {
        SessionId(token.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For log fields and tasks that only print it.
    pub(crate) fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

/// Looks sessions up by the text a client sent.
impl Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_the_clients_text() {
        let id = SessionId::new("k1.abc".into());
        let map: std::collections::HashMap<SessionId, u8> = [(id.clone(), 1)].into();
        assert_eq!(map.get("k1.abc"), Some(&1));
    }
}
