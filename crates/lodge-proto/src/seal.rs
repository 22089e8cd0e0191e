//! Sealed tokens: a JSON payload encrypted and authenticated with an AEAD key
//! (ChaCha20-Poly1305), so a client can carry Lodge's state but not read or alter it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
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
        URL_SAFE_NO_PAD.encode(self.seal_bytes(&plain, b""))
    }

    pub fn open<T: DeserializeOwned>(&self, token: &str) -> Result<T, Unsealable> {
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| Unsealable)?;
        let plain = self.open_bytes(&raw, b"")?;
        serde_json::from_slice(&plain).map_err(|_| Unsealable)
    }

    /// `plain` sealed as nonce, ciphertext and tag; `context` is authenticated but not
    /// carried, so a token sealed for one use never opens as another's.
    pub fn seal_bytes(&self, plain: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption fails only for absurd lengths (> 256 GiB).
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open_bytes(&self, raw: &[u8], context: &[u8]) -> Result<Vec<u8>, Unsealable> {
        if raw.len() <= NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .map_err(|_| Unsealable)
    }
}

/// Sealing keys with ids, so keys can rotate and another node can open what this
/// one sealed: tokens are sealed with the current key and name it (`KID.SEALED`);
/// the previous key still opens the tokens it sealed.
///
/// Key files hold one key per line, `KEY_ID BASE64_OF_32_BYTES`: the first line is
/// the current key, a second line the previous one. Blank lines and `#` comments
/// are ignored.
#[derive(Clone)]
pub struct KeyRing {
    current: (String, Sealer),
    previous: Option<(String, Sealer)>,
}

/// Why a key file was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyFileError(pub String);

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyFileError {}

/// Key ids go into tokens before a `.`: short, and never containing one.
fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: key material never reaches a log.
        f.debug_struct("KeyRing")
            .field("current", &self.current.0)
            .field("previous", &self.previous.as_ref().map(|(id, _)| id))
            .finish()
    }
}

impl KeyRing {
    /// A ring with one fresh random key (id `local`): its tokens open in this process only.
    pub fn random() -> Self {
        KeyRing {
            current: ("local".to_string(), Sealer::random()),
            previous: None,
        }
    }

    /// Parses a key file's text.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| KeyFileError(format!("line {}: {why}", n + 1));
            let mut fields = line.split_whitespace();
            let (Some(id), Some(key), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad("expected `KEY_ID BASE64_OF_32_BYTES`"));
            };
            if !valid_key_id(id) {
                return Err(bad("a key id is 1 to 32 letters, digits, `-` or `_`"));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key)
                .map_err(|_| bad("the key is not valid base64"))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| bad("the key must be exactly 32 bytes"))?;
            keys.push((id.to_string(), Sealer::new(key)));
        }
        let mut keys = keys.into_iter();
        let current = keys
            .next()
            .ok_or_else(|| KeyFileError("the key file holds no key".into()))?;
        let previous = keys.next();
        if keys.next().is_some() {
            return Err(KeyFileError(
                "the key file holds more than two keys (current, previous)".into(),
            ));
        }
        if previous.as_ref().is_some_and(|(id, _)| *id == current.0) {
            return Err(KeyFileError(
                "the current and the previous key have the same id".into(),
            ));
        }
        Ok(KeyRing { current, previous })
    }

    /// The id of the key new tokens are sealed with.
    pub fn current_id(&self) -> &str {
        &self.current.0
    }

    pub fn seal(&self, payload: &impl Serialize) -> String {
        format!("{}.{}", self.current.0, self.current.1.seal(payload))
    }

    pub fn open<T: DeserializeOwned>(&self, token: &str) -> Result<T, Unsealable> {
        let (id, sealed) = token.split_once('.').ok_or(Unsealable)?;
        self.sealer(id)?.open(sealed)
    }

    /// `KID.BASE64URL` of `plain` sealed under the current key with `context`
    /// (see [`Sealer::seal_bytes`]).
    pub fn seal_bytes(&self, plain: &[u8], context: &[u8]) -> String {
        let sealed = self.current.1.seal_bytes(plain, context);
        format!("{}.{}", self.current.0, URL_SAFE_NO_PAD.encode(sealed))
    }

    pub fn open_bytes(&self, token: &str, context: &[u8]) -> Result<Vec<u8>, Unsealable> {
        let (id, sealed) = token.split_once('.').ok_or(Unsealable)?;
        let raw = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| Unsealable)?;
        self.sealer(id)?.open_bytes(&raw, context)
    }

    /// The current key, or the previous one while it is configured.
    fn sealer(&self, id: &str) -> Result<&Sealer, Unsealable> {
        match &self.previous {
            _ if id == self.current.0 => Ok(&self.current.1),
            Some((previous, sealer)) if id == previous => Ok(sealer),
            _ => Err(Unsealable),
        }
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

    fn key_line(id: &str, byte: u8) -> String {
        format!(
            "{id} {}\n",
            base64::engine::general_purpose::STANDARD.encode([byte; 32])
        )
    }

    #[test]
    fn a_key_ring_opens_its_current_and_previous_keys_tokens() {
        let old = KeyRing::parse(&key_line("k1", 1)).unwrap();
        let token = old.seal(&json!({"n": 1}));
        assert!(token.starts_with("k1."));
        let rotated = KeyRing::parse(&(key_line("k2", 2) + &key_line("k1", 1))).unwrap();
        assert_eq!(rotated.current_id(), "k2");
        assert_eq!(
            rotated.open::<serde_json::Value>(&token).unwrap(),
            json!({"n": 1})
        );
        assert!(rotated.seal(&json!({})).starts_with("k2."));
        let dropped = KeyRing::parse(&(key_line("k3", 3) + &key_line("k2", 2))).unwrap();
        assert!(
            dropped.open::<serde_json::Value>(&token).is_err(),
            "k1 is retired"
        );
        // A token naming a known id but sealed by another key does not open.
        let impostor = KeyRing::parse(&key_line("k1", 9)).unwrap();
        assert!(
            rotated
                .open::<serde_json::Value>(&impostor.seal(&json!({})))
                .is_err()
        );
        assert!(rotated.open::<serde_json::Value>("no-dot").is_err());
    }

    #[test]
    fn key_files_are_checked() {
        let err = |text: &str| KeyRing::parse(text).err().unwrap().0;
        assert_eq!(err(""), "the key file holds no key");
        assert_eq!(err("k1\n"), "line 1: expected `KEY_ID BASE64_OF_32_BYTES`");
        assert_eq!(
            err("k.1 AAAA\n"),
            "line 1: a key id is 1 to 32 letters, digits, `-` or `_`"
        );
        assert_eq!(err("# c\nk1 !!!\n"), "line 2: the key is not valid base64");
        assert_eq!(err("k1 AAAA\n"), "line 1: the key must be exactly 32 bytes");
        let three = key_line("a", 1) + &key_line("b", 2) + &key_line("c", 3);
        assert_eq!(
            err(&three),
            "the key file holds more than two keys (current, previous)"
        );
        assert_eq!(
            err(&(key_line("a", 1) + &key_line("a", 2))),
            "the current and the previous key have the same id"
        );
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
