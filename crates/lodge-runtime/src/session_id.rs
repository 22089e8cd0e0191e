//! The public handle of a session: what clients send back as `Mcp-Session-Id`
//! (legacy era) or `Lodge-Session-Id` (2026-07-28). Opaque to clients and to the rest
//! of Lodge: today 128 random bits; the cluster mode will make it a sealed token. It
//! is never a sandbox's id, scratch directory or cgroup name (lodge-sandbox mints
//! those from its own `SandboxId`), so changing one never changes the others.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// 128 random bits from the OS-seeded CSPRNG, as 32 lowercase hex characters.
    pub(crate) fn mint() -> Self {
        let bytes: [u8; 16] = rand::random();
        let hex = bytes.iter().fold(String::with_capacity(32), |mut s, b| {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
            s
        });
        SessionId(hex.into())
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
    fn minted_ids_are_32_hex_digits_and_distinct() {
        let (a, b) = (SessionId::mint(), SessionId::mint());
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        let map: std::collections::HashMap<SessionId, u8> = [(a.clone(), 1)].into();
        assert_eq!(map.get(a.as_str()), Some(&1), "found by the client's text");
    }
}
