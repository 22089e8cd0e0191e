//! The hop header a node puts on a request it forwards to the session's owner, and the
//! routing decision that reads it. Pure: the forwarding itself is I/O at the edges.
//!
//! `Lodge-Hop: FROM_NODE UNIX_MS KID.SEAL`, where SEAL is an AEAD tag under the cluster
//! key over the sender, the time, the HTTP method and the session token: only a node
//! holding the key makes one, it is good for [`MAX_SKEW`] either side of its time, and
//! for that method on that session only.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lodge_proto::seal::KeyRing;

use crate::node::NodeId;
use crate::token::SessionToken;

/// The header's name.
pub const HOP_HEADER: &str = "lodge-hop";
/// How far a hop's time may be from the receiver's clock (both ways).
pub const MAX_SKEW: Duration = Duration::from_secs(30);
/// Longer headers are refused unread: a node id (63), a time (20), a key id (32) and
/// the base64 of nonce and tag (38), with spaces and the dot.
const MAX_HEADER: usize = 160;

/// Signs this node's forwarded requests and checks the ones it receives.
#[derive(Clone, Debug)]
pub struct HopSigner {
    keys: Arc<KeyRing>,
    node: NodeId,
}

/// A checked hop: which node sent the request on.
#[derive(Debug, PartialEq, Eq)]
pub struct Hop {
    pub from: NodeId,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HopError {
    /// Not `FROM_NODE UNIX_MS KID.SEAL`, or too long.
    Malformed,
    /// Not sealed by a configured cluster key for this method and session.
    Forged,
    /// Its time is more than [`MAX_SKEW`] away from this node's clock.
    Stale,
}

impl std::fmt::Display for HopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HopError::Malformed => "the Lodge-Hop header is missing or malformed",
            HopError::Forged => "the Lodge-Hop header is not sealed by this cluster's key",
            HopError::Stale => "the Lodge-Hop header's time is over 30 s from this node's clock",
        })
    }
}

impl std::error::Error for HopError {}

fn context(from: &str, ms: u64, method: &str, session: &str) -> Vec<u8> {
    // Lengths first: no two inputs give the same bytes.
    format!(
        "lodge hop v1\n{}:{from}{ms}\n{}:{method}{session}",
        from.len(),
        method.len()
    )
    .into_bytes()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl HopSigner {
    pub fn new(keys: Arc<KeyRing>, node: NodeId) -> Self {
        HopSigner { keys, node }
    }

    /// The header for forwarding `method` on `session` now.
    pub fn sign(&self, method: &str, session: &str, now: SystemTime) -> String {
        let ms = unix_ms(now);
        let seal = self
            .keys
            .seal_bytes(&[], &context(self.node.as_str(), ms, method, session));
        format!("{} {ms} {seal}", self.node)
    }

    pub fn verify(
        &self,
        header: &str,
        method: &str,
        session: &str,
        now: SystemTime,
    ) -> Result<Hop, HopError> {
        if header.len() > MAX_HEADER {
            return Err(HopError::Malformed);
        }
        let mut fields = header.split(' ');
        let (Some(from), Some(ms), Some(seal), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(HopError::Malformed);
        };
        let from = NodeId::parse(from).map_err(|_| HopError::Malformed)?;
        let ms: u64 = ms.parse().map_err(|_| HopError::Malformed)?;
        self.keys
            .open_bytes(seal, &context(from.as_str(), ms, method, session))
            .map_err(|_| HopError::Forged)?;
        if unix_ms(now).abs_diff(ms) > MAX_SKEW.as_millis() as u64 {
            return Err(HopError::Stale);
        }
        Ok(Hop { from })
    }
}

/// Where a request for a session goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// This node owns the session.
    Here,
    /// Forward it to the owner.
    Forward(NodeId),
    /// It already came through another node, yet this one is not the owner: forwarding
    /// again could loop. Refused.
    Loop,
}

/// The loop guard: a request forwarded once is served by the node it reached or not
/// at all.
pub fn route(token: &SessionToken, this_node: &NodeId, hop: Option<&Hop>) -> Route {
    match (token.node == *this_node, hop) {
        (true, _) => Route::Here,
        (false, None) => Route::Forward(token.node.clone()),
        (false, Some(_)) => Route::Loop,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    fn signer(lines: &[(&str, u8)], node: &str) -> HopSigner {
        let text: String = lines
            .iter()
            .map(|(id, byte)| format!("{id} {}\n", STANDARD.encode([*byte; 32])))
            .collect();
        HopSigner::new(
            Arc::new(KeyRing::parse(&text).unwrap()),
            NodeId::parse(node).unwrap(),
        )
    }

    #[test]
    fn a_hop_is_good_for_its_method_session_and_time_only() {
        let (a, b) = (signer(&[("k1", 1)], "a"), signer(&[("k1", 1)], "b"));
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let header = a.sign("POST", "k1.session", now);
        assert!(header.len() <= MAX_HEADER, "{header}");
        let from_a = Hop {
            from: NodeId::parse("a").unwrap(),
        };
        assert_eq!(b.verify(&header, "POST", "k1.session", now), Ok(from_a));
        assert_eq!(
            b.verify(&header, "DELETE", "k1.session", now),
            Err(HopError::Forged)
        );
        assert_eq!(
            b.verify(&header, "POST", "k1.other", now),
            Err(HopError::Forged)
        );
        let later = now + MAX_SKEW + Duration::from_millis(1);
        assert_eq!(
            b.verify(&header, "POST", "k1.session", later),
            Err(HopError::Stale)
        );
        // Another node's name put on a's seal does not verify.
        let renamed = header.replacen("a ", "c ", 1);
        assert_eq!(
            b.verify(&renamed, "POST", "k1.session", now),
            Err(HopError::Forged)
        );
        // Another cluster's key, and junk.
        let outsider = signer(&[("k1", 9)], "a").sign("POST", "k1.session", now);
        assert_eq!(
            b.verify(&outsider, "POST", "k1.session", now),
            Err(HopError::Forged)
        );
        for junk in [
            "",
            "a",
            "a 1",
            "a x k1.AAAA",
            "a 1 k1.AAAA extra",
            &"a".repeat(200),
        ] {
            assert_eq!(
                b.verify(junk, "POST", "k1.session", now),
                Err(HopError::Malformed),
                "{junk:?}"
            );
        }
        // The previous key still verifies during a rotation.
        let rotated = signer(&[("k2", 2), ("k1", 1)], "b");
        assert!(rotated.verify(&header, "POST", "k1.session", now).is_ok());
    }

    #[test]
    fn a_forwarded_request_is_never_forwarded_again() {
        let token = |node: &str| SessionToken {
            node: NodeId::parse(node).unwrap(),
            sandbox: [0; 16],
            created: UNIX_EPOCH,
            principal: [0; 16],
        };
        let here = NodeId::parse("a").unwrap();
        let hop = Hop {
            from: NodeId::parse("b").unwrap(),
        };
        assert_eq!(route(&token("a"), &here, None), Route::Here);
        assert_eq!(route(&token("a"), &here, Some(&hop)), Route::Here);
        assert_eq!(
            route(&token("c"), &here, None),
            Route::Forward(NodeId::parse("c").unwrap())
        );
        assert_eq!(route(&token("c"), &here, Some(&hop)), Route::Loop);
    }
}
