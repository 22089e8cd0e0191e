//! Opaque access tokens, asked about at the issuer's RFC 7662 introspection
//! endpoint, with a short positive cache (a revoked token stays usable until its
//! entry expires, at most `introspection_cache`, itself at most 60 s).

use super::fetch;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Tokens remembered at once; past it, expired entries go, then all of them.
const MAX_CACHED: usize = 10_000;

#[derive(Clone, Debug)]
pub struct IntrospectionConfig {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
}

pub(crate) struct Introspector {
    config: IntrospectionConfig,
    ttl: Duration,
    /// By the token's SHA-256 (the token itself is not kept): its active claims.
    cache: Mutex<HashMap<[u8; 32], (Value, Instant)>>,
}

/// What the issuer said of a token.
pub(crate) enum Verdict {
    Active(Value),
    Inactive,
}

impl Introspector {
    pub fn new(config: IntrospectionConfig, ttl: Duration) -> Self {
        Introspector {
            config,
            ttl,
            cache: Mutex::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Value, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn ask(&self, http: &reqwest::Client, token: &str) -> Result<Verdict, String> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some((claims, until)) = self.cache().get(&key)
            && now < *until
        {
            return Ok(Verdict::Active(claims.clone()));
        }
        let request = http
            .post(&self.config.url)
            .basic_auth(&self.config.client_id, Some(&self.config.client_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form(&[
                ("token", token),
                ("token_type_hint", "access_token"),
            ]));
        let answer = fetch::json(request, "the issuer's introspection").await?;
        if answer.get("active").and_then(Value::as_bool) != Some(true) {
            return Ok(Verdict::Inactive);
        }
        let mut until = now + self.ttl;
        if let Some(exp) = answer.get("exp").and_then(Value::as_u64) {
            let left = exp.saturating_sub(super::unix_now());
            until = until.min(now + Duration::from_secs(left));
        }
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, t)| now < *t);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (answer.clone(), until));
        Ok(Verdict::Active(answer))
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    out.push(b as char)
                }
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_encoding_escapes_what_it_must() {
        assert_eq!(
            super::form(&[("token", "a+b/c= d"), ("x", "~ok-_.")]),
            "token=a%2Bb%2Fc%3D%20d&x=~ok-_."
        );
    }
}
