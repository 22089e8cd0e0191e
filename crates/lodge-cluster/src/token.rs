//! The public session id (`Mcp-Session-Id`, `Lodge-Session-Id`) as a sealed token:
//! any node holding the cluster key reads which node owns the session, its sandbox,
//! when it was made and a digest of its principal, without asking anyone; nobody
//! without the key can read, forge or alter one. A text that does not open is not a
//! session: it is answered 404 before any lookup.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lodge_proto::seal::KeyRing;
use sha2::{Digest, Sha256};

use crate::node::{MAX_NODE_ID, NodeId};

/// Authenticated with every token and never carried: a token sealed for another use
/// of the same key (a `requestState`) never opens as a session id.
const CONTEXT: &[u8] = b"lodge session token v1";
const VERSION: u8 = 1;
/// version, creation time (ms since the epoch), sandbox id, principal digest, node id
/// length; then the node id.
const FIXED: usize = 1 + 8 + 16 + 16 + 1;
/// Longer texts are refused unread: a key id (32), `.`, and the base64 of nonce (12),
/// the longest plaintext and tag (16) come to 211.
const MAX_TEXT: usize = 256;

/// What a session token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionToken {
    /// The node whose sandbox holds the session.
    pub node: NodeId,
    pub sandbox: [u8; 16],
    /// When the session was made, to the millisecond.
    pub created: SystemTime,
    /// [`principal_digest`] of the principal it belongs to.
    pub principal: [u8; 16],
}

/// A text that is no session token of this cluster (forged, altered, sealed by a key
/// that is not configured, or not a token at all).
#[derive(Debug, PartialEq, Eq)]
pub struct Forged;

/// Mints this node's session tokens and opens anyone's.
#[derive(Clone, Debug)]
pub struct TokenCodec {
    keys: Arc<KeyRing>,
    node: NodeId,
}

/// The first 128 bits of SHA-256 of a principal's unambiguous key: a node can refuse
/// a request from another principal without knowing the session, and the token does
/// not reveal who its user is.
pub fn principal_digest(principal_key: &str) -> [u8; 16] {
    let hash = Sha256::digest(principal_key.as_bytes());
    let mut digest = [0; 16];
    digest.copy_from_slice(&hash[..16]);
    digest
}

impl TokenCodec {
    pub fn new(keys: Arc<KeyRing>, node: NodeId) -> Self {
        TokenCodec { keys, node }
    }

    /// A Lodge on its own: a fresh key valid in this process only.
    pub fn single() -> Self {
        TokenCodec::new(Arc::new(KeyRing::random()), NodeId::single())
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// A token for a session of this node. Every call gives a different text (the
    /// nonce is random), even for the same fields.
    pub fn mint(&self, sandbox: [u8; 16], principal: [u8; 16], created: SystemTime) -> String {
        let node = self.node.as_str().as_bytes();
        let ms = created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut plain = Vec::with_capacity(FIXED + node.len());
        plain.push(VERSION);
        plain.extend_from_slice(&ms.to_be_bytes());
        plain.extend_from_slice(&sandbox);
        plain.extend_from_slice(&principal);
        // NodeId keeps to MAX_NODE_ID (63) bytes.
        plain.push(node.len() as u8);
        plain.extend_from_slice(node);
        self.keys.seal_bytes(&plain, CONTEXT)
    }

    pub fn open(&self, text: &str) -> Result<SessionToken, Forged> {
        if text.len() > MAX_TEXT {
            return Err(Forged);
        }
        let plain = self.keys.open_bytes(text, CONTEXT).map_err(|_| Forged)?;
        // Authentic but unreadable (a later version): still not a session here.
        decode(&plain).ok_or(Forged)
    }
}

fn decode(plain: &[u8]) -> Option<SessionToken> {
    let (fixed, node) = plain.split_at_checked(FIXED)?;
    let (&version, rest) = fixed.split_first()?;
    let (ms, rest) = rest.split_at_checked(8)?;
    let (sandbox, rest) = rest.split_at_checked(16)?;
    let (principal, len) = rest.split_at_checked(16)?;
    if version != VERSION || usize::from(*len.first()?) != node.len() || node.len() > MAX_NODE_ID {
        return None;
    }
    let ms = u64::from_be_bytes(ms.try_into().ok()?);
    Some(SessionToken {
        node: NodeId::parse(std::str::from_utf8(node).ok()?).ok()?,
        sandbox: sandbox.try_into().ok()?,
        created: UNIX_EPOCH.checked_add(Duration::from_millis(ms))?,
        principal: principal.try_into().ok()?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use proptest::prelude::*;

    fn ring(lines: &[(&str, u8)]) -> Arc<KeyRing> {
        let text: String = lines
            .iter()
            .map(|(id, byte)| format!("{id} {}\n", STANDARD.encode([*byte; 32])))
            .collect();
        Arc::new(KeyRing::parse(&text).unwrap())
    }

    fn codec(lines: &[(&str, u8)], node: &str) -> TokenCodec {
        TokenCodec::new(ring(lines), NodeId::parse(node).unwrap())
    }

    fn at_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    /// Node ids as the config accepts them.
    fn node_id() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            proptest::sample::select(
                b"abcxyzABZ019.-_"
                    .iter()
                    .map(|b| char::from(*b))
                    .collect::<Vec<_>>(),
            ),
            1..=MAX_NODE_ID,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn a_token_opens_to_what_was_minted(
            node in node_id(),
            sandbox in any::<[u8; 16]>(),
            principal in any::<[u8; 16]>(),
            ms in 0u64..(1 << 45),
        ) {
            let codec = codec(&[("k1", 1)], &node);
            let text = codec.mint(sandbox, principal, at_ms(ms));
            prop_assert!(text.len() <= MAX_TEXT);
            prop_assert!(text.bytes().all(|b| b.is_ascii_graphic()), "fits a header");
            // Another node of the cluster (same key, other id) reads it too.
            let other = TokenCodec::new(codec.keys.clone(), NodeId::single());
            let token = other.open(&text).unwrap();
            prop_assert_eq!(token, SessionToken {
                node: NodeId::parse(&node).unwrap(),
                sandbox,
                created: at_ms(ms),
                principal,
            });
        }

        #[test]
        fn any_flipped_bit_is_refused(bit in 0usize..(8 * 200), node in node_id()) {
            let codec = codec(&[("k1", 1)], &node);
            let text = codec.mint([7; 16], [9; 16], at_ms(1));
            let (kid, sealed) = text.split_once('.').unwrap();
            let mut raw = URL_SAFE_NO_PAD.decode(sealed).unwrap();
            let bit = bit % (8 * raw.len());
            raw[bit / 8] ^= 1 << (bit % 8);
            let altered = format!("{kid}.{}", URL_SAFE_NO_PAD.encode(raw));
            prop_assert_eq!(codec.open(&altered), Err(Forged));
        }

        #[test]
        fn any_flipped_bit_of_the_text_is_refused(bit in 0usize..(8 * 120)) {
            let codec = codec(&[("k1", 1)], "a");
            let text = codec.mint([7; 16], [9; 16], at_ms(1));
            let mut bytes = text.into_bytes();
            let bit = bit % (8 * bytes.len());
            bytes[bit / 8] ^= 1 << (bit % 8);
            // Base64 ignores nothing here: a different text never opens.
            if let Ok(altered) = String::from_utf8(bytes) {
                prop_assert_eq!(codec.open(&altered), Err(Forged));
            }
        }

        #[test]
        fn junk_is_refused(text in ".{0,300}") {
            prop_assert_eq!(codec(&[("k1", 1)], "a").open(&text), Err(Forged));
        }
    }

    #[test]
    fn an_old_key_opens_only_while_it_is_the_previous_one() {
        let before = codec(&[("k1", 1)], "a");
        let text = before.mint([1; 16], [2; 16], at_ms(5));
        assert!(text.starts_with("k1."));
        let rotated = codec(&[("k2", 2), ("k1", 1)], "a");
        assert_eq!(rotated.open(&text).unwrap().sandbox, [1; 16]);
        assert!(rotated.mint([1; 16], [2; 16], at_ms(5)).starts_with("k2."));
        let retired = codec(&[("k3", 3), ("k2", 2)], "a");
        assert_eq!(
            retired.open(&text),
            Err(Forged),
            "k1 is no longer configured"
        );
        // Another cluster's key under the same id opens nothing of this one.
        assert_eq!(codec(&[("k1", 9)], "a").open(&text), Err(Forged));
    }

    #[test]
    fn tokens_are_distinct_and_sealed_for_sessions_only() {
        let codec = codec(&[("k1", 1)], "a");
        let (one, two) = (
            codec.mint([0; 16], [0; 16], at_ms(0)),
            codec.mint([0; 16], [0; 16], at_ms(0)),
        );
        assert_ne!(one, two);
        // The same key sealing something else (a requestState) makes no session id.
        let other_use = codec.keys.seal_bytes(b"\x01", b"request state");
        assert_eq!(codec.open(&other_use), Err(Forged));
        assert_eq!(codec.open(&"a".repeat(MAX_TEXT + 1)), Err(Forged));
    }

    #[test]
    fn a_principal_digest_tells_principals_apart() {
        assert_eq!(principal_digest("1:ab"), principal_digest("1:ab"));
        assert_ne!(principal_digest("1:ab"), principal_digest("2:ab"));
    }
}
