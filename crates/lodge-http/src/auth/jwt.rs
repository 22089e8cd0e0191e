//! JWT access tokens: reading the header and claims to pick the issuer's key, then
//! verifying the signature with it. The claims' meaning is checked in `claims`.

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::Value;

/// Signature algorithms accepted: public-key ones only. `none` does not parse, and
/// HS* are refused: with a public key as the "secret" anyone could sign.
const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Whether a token has a JWT's shape (three base64url parts); others are opaque.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.split('.').take(2).all(|p| !p.is_empty())
}

/// A JWT's header and claims, before any signature check: only to choose the key.
pub(crate) struct Unverified {
    pub header: Header,
    pub claims: Value,
}

pub(crate) fn read(token: &str) -> Result<Unverified, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| {
        format!("the token's header is unusable or names an unaccepted algorithm ({e})")
    })?;
    if !ACCEPTED.contains(&header.alg) {
        return Err(format!(
            "tokens signed with {:?} are not accepted",
            header.alg
        ));
    }
    let payload = token.split('.').nth(1).unwrap_or_default();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .filter(Value::is_object)
        .ok_or("the token's claims are not a JSON object")?;
    Ok(Unverified { header, claims })
}

/// Whether `key` may verify a token signed with `alg`: a signing key, of that
/// algorithm if it names one.
pub(crate) fn key_fits(key: &Jwk, alg: Algorithm) -> bool {
    let usable = !matches!(key.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature);
    let same_alg = key
        .common
        .key_algorithm
        .is_none_or(|k| key_algorithm(k) == Some(alg));
    usable && same_alg && DecodingKey::from_jwk(key).is_ok()
}

fn key_algorithm(k: KeyAlgorithm) -> Option<Algorithm> {
    Some(match k {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Verifies `token`'s signature with `key`; its claims if it holds.
pub(crate) fn verify(token: &str, key: &Jwk, alg: Algorithm) -> Result<Value, String> {
    let key =
        DecodingKey::from_jwk(key).map_err(|e| format!("the issuer's key is unusable: {e}"))?;
    let mut validation = Validation::new(alg);
    // Expiry, audience and issuer are checked with the rest of the claims.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                "the token's signature does not verify".to_string()
            }
            _ => format!("the token does not verify: {e}"),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use ring::signature::KeyPair;

    /// An Ed25519 key: a signer and its public JWK.
    pub(crate) struct TestKey {
        pub kid: String,
        pkcs8: Vec<u8>,
        public: Vec<u8>,
    }

    impl TestKey {
        pub fn new(kid: &str) -> Self {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            TestKey {
                kid: kid.into(),
                pkcs8: pkcs8.as_ref().to_vec(),
                public: pair.public_key().as_ref().to_vec(),
            }
        }

        pub fn jwk(&self) -> Jwk {
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.public);
            serde_json::from_value(serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"
            }))
            .unwrap()
        }

        pub fn sign(&self, claims: &Value) -> String {
            let mut header = Header::new(Algorithm::EdDSA);
            header.kid = Some(self.kid.clone());
            let key = jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8);
            jsonwebtoken::encode(&header, claims, &key).unwrap()
        }
    }

    fn b64(v: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn a_signed_token_verifies_and_a_tampered_one_does_not() {
        let key = TestKey::new("k1");
        let token = key.sign(&serde_json::json!({"sub": "alice"}));
        let read = read(&token).unwrap();
        assert_eq!(read.header.kid.as_deref(), Some("k1"));
        assert!(key_fits(&key.jwk(), read.header.alg));
        assert_eq!(
            verify(&token, &key.jwk(), read.header.alg).unwrap()["sub"],
            "alice"
        );

        let other = TestKey::new("k1");
        let e = verify(&token, &other.jwk(), Algorithm::EdDSA).unwrap_err();
        assert!(e.contains("signature does not verify"), "{e}");

        // The claims changed under the same signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64(r#"{"sub":"mallory"}"#), parts[2]);
        assert!(verify(&forged, &key.jwk(), Algorithm::EdDSA).is_err());
    }

    #[test]
    fn alg_none_and_hmac_tokens_are_refused_before_any_key_is_looked_up() {
        let claims = b64(r#"{"sub":"alice"}"#);
        let none = format!("{}.{claims}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
        assert!(looks_like_jwt(&none));
        assert!(read(&none).is_err());
        let hs = format!("{}.{claims}.c2ln", b64(r#"{"alg":"HS256","typ":"JWT"}"#));
        let e = read(&hs).err().unwrap();
        assert!(e.contains("HS256"), "{e}");
        // A key meant for another algorithm is not used.
        let key = TestKey::new("k");
        assert!(!key_fits(&key.jwk(), Algorithm::RS256));
    }

    #[test]
    fn only_three_part_tokens_are_read_as_jwts() {
        assert!(!looks_like_jwt("opaque-token-123"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt(".b.c"));
        assert!(read("a.b.c").is_err());
    }
}
