//! Sealed tokens: a JSON payload encrypted and authenticated with an AEAD key
//! (ChaCha20-Poly1305), so a client can carry Lodge's state but not read or alter it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Unsealable;

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// A sealer with a fresh random key: its tokens are valid in this process only.
    pub fn random() -> Self {
        Sealer {
            cipher: ChaCha20Poly1305::new(&ChaCha20Poly1305::generate_key(&mut OsRng)),
        }
    }

    pub fn seal(&self, payload: &impl Serialize) -> String {
        let plain = serde_json::to_vec(payload).unwrap_or_default();
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption fails only for absurd lengths (> 256 GiB).
        let sealed = self
            .cipher
            .encrypt(&nonce, plain.as_slice())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open<T: DeserializeOwned>(&self, token: &str) -> Result<T, Unsealable> {
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| Unsealable)?;
        if raw.len() <= NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| Unsealable)?;
        serde_json::from_slice(&plain).map_err(|_| Unsealable)
    }
}

/// Hex SHA-256 of a JSON value (serde_json writes object keys sorted, so equal
/// values digest equally).
pub fn digest(value: &serde_json::Value) -> String {
    let hash = Sha256::digest(value.to_string().as_bytes());
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_rejects_tampering_and_other_keys() {
        let s = Sealer::random();
        let token = s.seal(&json!({"a":1}));
        assert_eq!(s.open::<serde_json::Value>(&token).unwrap(), json!({"a":1}));
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(
            s.open::<serde_json::Value>(&URL_SAFE_NO_PAD.encode(bytes))
                .is_err()
        );
        assert!(Sealer::random().open::<serde_json::Value>(&token).is_err());
        assert!(s.open::<serde_json::Value>("not-base64!").is_err());
        assert!(s.open::<serde_json::Value>("").is_err());
    }

    #[test]
    fn digest_ignores_key_order() {
        assert_eq!(
            digest(&json!({"a":1,"b":2})),
            digest(&serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap())
        );
        assert_ne!(digest(&json!({"a":1})), digest(&json!({"a":2})));
    }
}
