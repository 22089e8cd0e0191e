//! The `requestState` Lodge mints when it bridges MRTR for a legacy server: what a
//! 2026-07-28 client carries from one round of a call to the next. Sealed (the
//! client can neither read nor alter it), bound to its session, call, round, request
//! and principal, and short-lived. One codec seals and opens it, under keys with ids
//! (from `[session] request_state_key_file`, else a random key per process), so keys
//! can rotate and another node can open what this one sealed.

use lodge_proto::seal::KeyRing;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Marks a `requestState` Lodge minted (anything else belongs to the server).
pub const STATE_PREFIX: &str = "lodge1.";

/// What Lodge seals into a `requestState`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BridgeState {
    /// The public id of the session whose server waits.
    pub session: String,
    /// Lodge's id of the call upstream.
    pub(crate) call: String,
    pub(crate) round: u32,
    pub(crate) method: String,
    /// Digest of the request's salient params.
    pub(crate) digest: String,
    /// Who made the call (empty without authentication).
    pub(crate) principal: String,
    /// Unix seconds after which the state is refused.
    pub(crate) expires: u64,
}

impl BridgeState {
    /// Whether this state may continue a call for `principal` in the runtime session
    /// the request names (`None`: it names none, and the state's own is used).
    pub fn issued_to(&self, session: Option<&str>, principal: &crate::Principal) -> bool {
        session.is_none_or(|s| s == self.session) && self.principal == principal.key()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("requestState failed verification: it was not issued by this Lodge or was altered")]
    Tampered,
    #[error("requestState has expired; send the original request again without it")]
    Expired,
    #[error("requestState was issued for another session or user")]
    Misdirected,
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seals and opens `requestState`s.
pub struct StateCodec {
    keys: KeyRing,
}

impl StateCodec {
    pub fn new(keys: KeyRing) -> Self {
        StateCodec { keys }
    }

    pub fn seal(&self, state: &BridgeState) -> String {
        format!("{STATE_PREFIX}{}", self.keys.seal(state))
    }

    /// `Ok(None)` if the token is not one Lodge minted (it belongs to the server and
    /// passes through); an error if it is Lodge's but forged, altered or expired.
    pub fn open(&self, token: &str) -> Result<Option<BridgeState>, StateError> {
        self.open_at(token, unix_now())
    }

    fn open_at(&self, token: &str, now: u64) -> Result<Option<BridgeState>, StateError> {
        let Some(sealed) = token.strip_prefix(STATE_PREFIX) else {
            return Ok(None);
        };
        let state: BridgeState = self.keys.open(sealed).map_err(|_| StateError::Tampered)?;
        if now >= state.expires {
            return Err(StateError::Expired);
        }
        Ok(Some(state))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state(expires: u64) -> BridgeState {
        BridgeState {
            session: "s".into(),
            call: "\"lodge:1\"".into(),
            round: 2,
            method: "tools/call".into(),
            digest: "d".into(),
            principal: "alice".into(),
            expires,
        }
    }

    #[test]
    fn round_trips_until_it_expires() {
        let codec = StateCodec::new(KeyRing::random());
        let token = codec.seal(&state(100));
        assert!(token.starts_with("lodge1.local."));
        assert_eq!(codec.open_at(&token, 99).unwrap(), Some(state(100)));
        assert_eq!(codec.open_at(&token, 100), Err(StateError::Expired));
    }

    #[test]
    fn foreign_states_pass_and_forged_ones_are_refused() {
        let codec = StateCodec::new(KeyRing::random());
        assert_eq!(codec.open("the-server's-own-state").unwrap(), None);
        let other = StateCodec::new(KeyRing::random()).seal(&state(u64::MAX));
        assert_eq!(codec.open(&other), Err(StateError::Tampered));
        assert_eq!(codec.open("lodge1.local.AAAA"), Err(StateError::Tampered));
    }
}
