//! Each issuer's signing keys: found through its metadata (RFC 8414, else OpenID
//! Connect discovery) or `jwks_url`, cached, and fetched again when a token names a
//! key Lodge does not know (the issuer rotated), at most once a second per issuer so
//! that tokens naming made-up keys cannot make Lodge hammer the issuer: such a token
//! waits out the second, and one fetch answers every token waiting for it.

use super::{AuthRefusal, fetch};
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Keys older than this are fetched again even when every token finds its key.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// The least time between two fetches of one issuer's keys.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Keys kept per issuer; a key set with more is cut.
const MAX_KEYS: usize = 64;

pub(crate) struct IssuerKeys {
    issuer: String,
    /// `jwks_url` from the configuration, else learned from discovery.
    jwks_url: Option<String>,
    /// What tokens are checked against; never held across a fetch, so tokens whose
    /// key is known never wait for one.
    cached: std::sync::Mutex<Cached>,
    /// Held by the one request fetching the keys; the others wait for its result.
    fetching: Mutex<Option<String>>,
}

#[derive(Default, Clone)]
struct Cached {
    keys: Vec<Jwk>,
    fetched: Option<Instant>,
}

impl IssuerKeys {
    pub fn new(issuer: String, jwks_url: Option<String>) -> Self {
        IssuerKeys {
            issuer,
            jwks_url,
            cached: std::sync::Mutex::default(),
            fetching: Mutex::new(None),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn cached(&self) -> Cached {
        self.cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The key `kid` names (or, for a token without `kid`, the issuer's only key
    /// usable with `accepts`), fetching the key set when it is stale or lacks it.
    pub async fn find(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
        accepts: impl Fn(&Jwk) -> bool,
    ) -> Result<Jwk, AuthRefusal> {
        let pick = |keys: &[Jwk]| -> Option<Jwk> {
            let mut usable = keys.iter().filter(|k| accepts(k));
            match kid {
                Some(kid) => usable
                    .find(|k| k.common.key_id.as_deref() == Some(kid))
                    .cloned(),
                None => {
                    let only = usable.next()?;
                    usable.next().is_none().then(|| only.clone())
                }
            }
        };
        let fresh = |c: &Cached| c.fetched.is_some_and(|t| t.elapsed() < MAX_AGE);
        let cached = self.cached();
        if fresh(&cached)
            && let Some(key) = pick(&cached.keys)
        {
            return Ok(key);
        }
        // The slow path: one fetch at a time, and at most one a second, however many
        // tokens name keys the issuer does not have.
        let asked = Instant::now();
        let mut jwks_url = self.fetching.lock().await;
        let cached = self.cached();
        let fetched_since = cached.fetched.is_some_and(|t| t >= asked);
        if !fetched_since {
            if let Some(last) = cached.fetched {
                tokio::time::sleep_until(last + MIN_REFRESH).await;
            }
            match self.fetch(http, &mut jwks_url).await {
                Ok(keys) => {
                    *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Cached {
                        keys,
                        fetched: Some(Instant::now()),
                    };
                }
                // Keep serving with the keys Lodge has; say why none was found if none is.
                Err(e) if cached.keys.is_empty() => return Err(AuthRefusal::Unavailable(e)),
                Err(e) => {
                    tracing::warn!(issuer = %self.issuer, error = %e, "cannot refresh the issuer's keys; using the ones cached");
                }
            }
        }
        pick(&self.cached().keys).ok_or_else(|| {
            AuthRefusal::Invalid(match kid {
                Some(kid) => format!("the issuer has no key {kid:?} for this token"),
                None => "the token names no key and the issuer has none or several".to_string(),
            })
        })
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        learned: &mut Option<String>,
    ) -> Result<Vec<Jwk>, String> {
        let url = match (&self.jwks_url, &*learned) {
            (Some(url), _) | (None, Some(url)) => url.clone(),
            (None, None) => {
                let url = discover_jwks_url(http, &self.issuer).await?;
                *learned = Some(url.clone());
                url
            }
        };
        let set = fetch::json(http.get(&url), "the issuer's keys").await?;
        // Keys of kinds Lodge cannot use (and malformed ones) are skipped, not fatal.
        let keys: Vec<Jwk> = set
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the issuer's key set has no \"keys\" list")?
            .iter()
            .filter_map(|k| serde_json::from_value(k.clone()).ok())
            .take(MAX_KEYS)
            .collect();
        Ok(keys)
    }
}

/// The metadata URLs an issuer may publish, in the order MCP clients try them.
pub(crate) fn metadata_urls(issuer: &str) -> Vec<String> {
    let issuer = issuer.trim_end_matches('/');
    // RFC 8414 inserts the well-known segment between the host and the issuer's path.
    let (origin, path) = match issuer.find("://").map(|i| i + 3) {
        Some(start) => match issuer[start..].find('/') {
            Some(slash) => issuer.split_at(start + slash),
            None => (issuer, ""),
        },
        None => (issuer, ""),
    };
    vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{issuer}/.well-known/openid-configuration"),
    ]
}

async fn discover_jwks_url(http: &reqwest::Client, issuer: &str) -> Result<String, String> {
    let mut errors = Vec::new();
    for url in metadata_urls(issuer) {
        match fetch::json(http.get(&url), "the issuer's metadata").await {
            Ok(metadata) => {
                // RFC 8414 §3.3: metadata for another issuer is not this one's.
                if metadata.get("issuer").and_then(Value::as_str) != Some(issuer) {
                    errors.push(format!("{url} names another issuer"));
                    continue;
                }
                return metadata
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| format!("{url} has no jwks_uri"));
            }
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(format!(
        "cannot discover the keys of {issuer}: {}",
        errors.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_follow_rfc_8414_then_openid_connect() {
        assert_eq!(
            metadata_urls("https://idp.example"),
            [
                "https://idp.example/.well-known/oauth-authorization-server",
                "https://idp.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("https://idp.example/tenant/1"),
            [
                "https://idp.example/.well-known/oauth-authorization-server/tenant/1",
                "https://idp.example/tenant/1/.well-known/openid-configuration"
            ]
        );
    }
}
