//! Lodge as an OAuth resource server, per the MCP authorization spec (2025-11-25 and
//! 2026-07-28 alike): every MCP request carries `Authorization: Bearer`, validated as
//! a JWT against its issuer's keys or, if opaque, by the issuer's introspection; the
//! principal it names owns the sessions it creates. Refusals carry the
//! `WWW-Authenticate` challenge that leads a client to the RFC 9728 metadata.
//!
//! Tokens are read only from the header (never the query string), never logged, and
//! never passed on to a sandboxed server.

mod cache;
mod claims;
mod fetch;
mod introspect;
mod jwt;
mod keys;

pub use introspect::IntrospectionConfig;

use axum::http::{HeaderMap, header};
use lodge_runtime::Principal;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest token accepted.
const MAX_TOKEN: usize = 8 << 10;
/// How long a JWT whose signature verified is trusted without checking it again
/// (its claims are checked on every request). No longer than the keys themselves are
/// trusted without fetching them again, so it opens no new window for a removed key.
const VERIFIED_JWT_TTL: Duration = Duration::from_secs(60);

/// `[auth]` with `mode = "oauth"`, as the `lodge` binary read it.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Lodge's canonical resource URI (RFC 8707), e.g. `https://lodge.example/mcp`.
    /// A token is for Lodge if its audience names this, or this plus `/{server}`
    /// for that server's endpoint.
    pub resource: String,
    /// Issuers whose tokens are accepted (their keys found by discovery).
    pub issuers: Vec<String>,
    /// The key set to use instead of discovery.
    pub jwks_url: Option<String>,
    /// For opaque tokens.
    pub introspection: Option<IntrospectionConfig>,
    /// Scopes every MCP request's token must have.
    pub scopes: Vec<String>,
    /// If not empty, the only clients (`azp` / `client_id`) whose tokens are accepted.
    pub allowed_clients: Vec<String>,
    /// The claim naming the principal (`client_id` when a token has none).
    pub principal_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// How long an introspected token is trusted without asking again.
    pub introspection_cache: Duration,
}

/// Why a request's credentials were refused.
#[derive(Debug)]
pub(crate) enum AuthRefusal {
    /// No token at all.
    Missing,
    /// A token that is not valid here (malformed, unverifiable, expired, for another
    /// resource or issuer, revoked).
    Invalid(String),
    /// A valid token without a required scope.
    InsufficientScope(String),
    /// A valid token of a client not in `allowed_clients`.
    ClientNotAllowed(String),
    /// The issuer could not be asked (unreachable, or answered nonsense).
    Unavailable(String),
}

impl fmt::Display for AuthRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthRefusal::Missing => f.write_str(
                "authentication required: send an OAuth access token as Authorization: Bearer",
            ),
            AuthRefusal::Invalid(why) => write!(f, "invalid access token: {why}"),
            AuthRefusal::InsufficientScope(scope) => {
                write!(f, "the access token lacks the scope {scope:?}")
            }
            AuthRefusal::ClientNotAllowed(client) => {
                write!(f, "tokens of client {client:?} are not accepted here")
            }
            AuthRefusal::Unavailable(why) => {
                write!(f, "cannot validate the access token now: {why}")
            }
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Validates tokens for one Lodge.
pub struct Auth {
    config: AuthConfig,
    keys: Vec<keys::IssuerKeys>,
    /// JWTs whose signature verified, with their claims.
    verified: cache::TrustCache,
    introspector: Option<introspect::Introspector>,
    http: reqwest::Client,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("resource", &self.config.resource)
            .field("issuers", &self.config.issuers)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(config: AuthConfig) -> std::sync::Arc<Self> {
        let keys = config
            .issuers
            .iter()
            .map(|i| keys::IssuerKeys::new(i.clone(), config.jwks_url.clone()))
            .collect();
        let introspector = config
            .introspection
            .clone()
            .map(|c| introspect::Introspector::new(c, config.introspection_cache));
        std::sync::Arc::new(Auth {
            config,
            keys,
            verified: cache::TrustCache::new(VERIFIED_JWT_TTL),
            introspector,
            http: fetch::client(),
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The audiences a token for `server`'s endpoint may name.
    fn audiences(&self, server: Option<&str>) -> Vec<String> {
        let resource = self.config.resource.trim_end_matches('/');
        let mut audiences = vec![self.config.resource.clone()];
        if resource != self.config.resource {
            audiences.push(resource.to_string());
        }
        if let Some(server) = server {
            audiences.push(format!("{resource}/{server}"));
        }
        audiences
    }

    /// The resource `server`'s endpoint is (`None`: the default endpoint `/mcp`).
    pub(crate) fn resource_of(&self, server: Option<&str>) -> String {
        match server {
            Some(server) => format!("{}/{server}", self.config.resource.trim_end_matches('/')),
            None => self.config.resource.clone(),
        }
    }

    /// Where the RFC 9728 metadata of the endpoint at `path` (`/mcp`, `/mcp/{server}`)
    /// is served: on Lodge's public origin, as the resource names it.
    pub(crate) fn metadata_url(&self, path: &str) -> String {
        let resource = &self.config.resource;
        let origin = match resource.find("://").map(|i| i + 3) {
            Some(start) => match resource[start..].find('/') {
                Some(slash) => &resource[..start + slash],
                None => resource.as_str(),
            },
            None => resource.as_str(),
        };
        format!("{origin}/.well-known/oauth-protected-resource{path}")
    }

    /// The `WWW-Authenticate` value for `refusal` on the endpoint at `path`.
    pub(crate) fn challenge(&self, refusal: &AuthRefusal, path: &str) -> Option<String> {
        let metadata = self.metadata_url(path);
        // `scope` only when Lodge requires some (an empty one would ask for nothing).
        let scope = match self.config.scopes.is_empty() {
            true => String::new(),
            false => format!(r#", scope="{}""#, self.config.scopes.join(" ")),
        };
        // Quoted-string values: the texts are Lodge's own, but keep them quotable.
        let quote = |s: &str| s.replace(['"', '\\'], "'");
        Some(match refusal {
            AuthRefusal::Missing => format!(r#"Bearer resource_metadata="{metadata}"{scope}"#),
            AuthRefusal::Invalid(why) => format!(
                r#"Bearer resource_metadata="{metadata}"{scope}, error="invalid_token", error_description="{}""#,
                quote(why)
            ),
            AuthRefusal::InsufficientScope(_) => format!(
                r#"Bearer error="insufficient_scope"{scope}, resource_metadata="{metadata}", error_description="{}""#,
                quote(&refusal.to_string())
            ),
            AuthRefusal::ClientNotAllowed(_) => {
                format!(r#"Bearer resource_metadata="{metadata}""#)
            }
            AuthRefusal::Unavailable(_) => return None,
        })
    }

    /// Who sent a request to `server`'s endpoint (`None`: the default one).
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        server: Option<&str>,
    ) -> Result<Principal, AuthRefusal> {
        let token = bearer_token(headers)?.ok_or(AuthRefusal::Missing)?;
        self.validate(token, &self.audiences(server), &self.config.scopes)
            .await
    }

    /// Validates `token` for one of `audiences`, with every scope in `scopes`.
    pub(crate) async fn validate(
        &self,
        token: &str,
        audiences: &[String],
        scopes: &[String],
    ) -> Result<Principal, AuthRefusal> {
        let rules = claims::Rules {
            issuers: &self.config.issuers,
            audiences,
            scopes,
            allowed_clients: &self.config.allowed_clients,
            principal_claim: &self.config.principal_claim,
            leeway: self.config.leeway,
            now: unix_now(),
            require_exp: true,
        };
        if jwt::looks_like_jwt(token) {
            if let Some(claims) = self.verified.get(token) {
                return claims::check(&claims, &rules, None);
            }
            let unverified = jwt::read(token).map_err(AuthRefusal::Invalid)?;
            let issuer = unverified.claims.get("iss").and_then(|i| i.as_str());
            let Some(keys) = self.keys.iter().find(|k| Some(k.issuer()) == issuer) else {
                return Err(AuthRefusal::Invalid(format!(
                    "tokens from issuer {:?} are not accepted",
                    issuer.unwrap_or("(none)")
                )));
            };
            let alg = unverified.header.alg;
            let key = keys
                .find(&self.http, unverified.header.kid.as_deref(), |k| {
                    jwt::key_fits(k, alg)
                })
                .await?;
            let claims = jwt::verify(token, &key, alg).map_err(AuthRefusal::Invalid)?;
            let principal = claims::check(&claims, &rules, None)?;
            self.verified.put(token, &claims);
            return Ok(principal);
        }
        let Some(introspector) = &self.introspector else {
            return Err(AuthRefusal::Invalid(
                "the token is not a JWT, and Lodge has no introspection endpoint for opaque tokens"
                    .into(),
            ));
        };
        match introspector
            .ask(&self.http, token)
            .await
            .map_err(AuthRefusal::Unavailable)?
        {
            introspect::Verdict::Active(claims) => {
                let rules = claims::Rules {
                    require_exp: false,
                    ..rules
                };
                claims::check(
                    &claims,
                    &rules,
                    self.config.issuers.first().map(String::as_str),
                )
            }
            introspect::Verdict::Inactive => Err(AuthRefusal::Invalid(
                "the token is not active (revoked, expired or unknown to its issuer)".into(),
            )),
        }
    }

    /// The RFC 9728 document for `server`'s endpoint (`None`: the default one).
    pub(crate) fn metadata(&self, server: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "resource": self.resource_of(server),
            "authorization_servers": self.config.issuers,
            "scopes_supported": self.config.scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": "Lodge",
        })
    }
}

/// The token of `Authorization: Bearer`, if the request has one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthRefusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthRefusal::Invalid(
            "more than one Authorization header".into(),
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthRefusal::Invalid("the Authorization header is not text".into()))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthRefusal::Invalid(
            "only Bearer tokens are accepted (Authorization: Bearer TOKEN)".into(),
        ));
    }
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN || token.contains(' ') {
        return Err(AuthRefusal::Invalid(format!(
            "the bearer token is empty, longer than {MAX_TOKEN} bytes, or not one word"
        )));
    }
    Ok(Some(token))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
