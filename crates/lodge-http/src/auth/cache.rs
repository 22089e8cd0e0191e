//! Tokens already found good, by their SHA-256 (the token itself is not kept), with
//! their claims, for a short while: an introspected opaque token is not asked about
//! on every request, and a JWT's signature is not checked again on every request.
//! Claims are still checked against each request's rules; only the issuer's word
//! (active, or a valid signature) is remembered.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Tokens remembered at once; past it, expired entries go, then all of them.
const MAX_CACHED: usize = 10_000;

pub(crate) struct TrustCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Value, Instant)>>,
}

impl TrustCache {
    pub fn new(ttl: Duration) -> Self {
        TrustCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Value, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The claims of `token` if it was found good less than the TTL ago.
    pub fn get(&self, token: &str) -> Option<Value> {
        let key = Self::key(token);
        let entries = self.entries();
        let (claims, until) = entries.get(&key)?;
        (Instant::now() < *until).then(|| claims.clone())
    }

    /// Remembers `token` as good, until the TTL passes or its `exp`, whichever is first.
    pub fn put(&self, token: &str, claims: &Value) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut until = now + self.ttl;
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            let left = exp.saturating_sub(super::unix_now());
            until = until.min(now + Duration::from_secs(left));
        }
        let mut entries = self.entries();
        if entries.len() >= MAX_CACHED {
            entries.retain(|_, (_, t)| now < *t);
            if entries.len() >= MAX_CACHED {
                entries.clear();
            }
        }
        entries.insert(Self::key(token), (claims.clone(), until));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn entries_last_the_ttl_or_until_the_token_expires() {
        let cache = TrustCache::new(Duration::from_secs(30));
        let far = json!({"sub": "a", "exp": super::super::unix_now() + 3600});
        cache.put("t1", &far);
        assert_eq!(cache.get("t1"), Some(far));
        assert_eq!(cache.get("t2"), None);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(cache.get("t1"), None, "kept past the TTL");

        let soon = json!({"sub": "a", "exp": super::super::unix_now() + 5});
        cache.put("t3", &soon);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(cache.get("t3"), None, "kept past the token's exp");
    }

    #[test]
    fn a_zero_ttl_keeps_nothing_and_the_size_is_bounded() {
        let off = TrustCache::new(Duration::ZERO);
        off.put("t", &json!({}));
        assert_eq!(off.get("t"), None);
        let cache = TrustCache::new(Duration::from_secs(30));
        for i in 0..MAX_CACHED + 5 {
            cache.put(&format!("t{i}"), &json!({}));
        }
        assert!(cache.len() <= MAX_CACHED);
    }
}
