//! Opaque access tokens, asked about at the issuer's RFC 7662 introspection
//! endpoint, with a short positive cache (a revoked token stays usable until its
//! entry expires, at most `introspection_cache`, itself at most 60 s).

use super::cache::TrustCache;
use super::fetch;
use serde_json::Value;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct IntrospectionConfig {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
}

pub(crate) struct Introspector {
    config: IntrospectionConfig,
    /// Tokens the issuer called active, with its answer.
    cache: TrustCache,
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
            cache: TrustCache::new(ttl),
        }
    }

    pub async fn ask(&self, http: &reqwest::Client, token: &str) -> Result<Verdict, String> {
        if let Some(claims) = self.cache.get(token) {
            return Ok(Verdict::Active(claims));
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
        self.cache.put(token, &answer);
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
