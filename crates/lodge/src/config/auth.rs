//! `[auth]`, `[admin]` and `[quota]` checked and resolved: who may use Lodge, who may
//! steer it, and how much one principal may start.

use super::file::{AdminSection, AuthSection, QuotaSection};
use anyhow::bail;
use lodge_http::auth::{AuthConfig, IntrospectionConfig};
use lodge_runtime::Quota;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The longest `introspection_cache`: a revoked token must stop working soon.
const MAX_INTROSPECTION_CACHE: Duration = Duration::from_secs(60);
/// The most clock skew allowed.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// `[auth]`: `None` for `mode = "none"` (the default).
pub(super) fn auth(
    section: AuthSection,
    listen: SocketAddr,
    file_dir: &Path,
) -> anyhow::Result<Option<AuthConfig>> {
    match section.mode.as_deref() {
        None | Some("none") => {
            if !section.issuers.is_empty() || section.introspection.is_some() {
                bail!("[auth] names issuers but mode is not \"oauth\"; set mode = \"oauth\"");
            }
            return Ok(None);
        }
        Some("oauth") => {}
        Some(other) => bail!("[auth] mode {other:?}: expected \"none\" or \"oauth\""),
    }
    if section.issuers.is_empty() {
        bail!("[auth] mode = \"oauth\" needs issuers = [\"https://your-idp\"]");
    }
    for issuer in &section.issuers {
        url("[auth] issuers", issuer)?;
    }
    if let Some(jwks) = &section.jwks_url {
        url("[auth] jwks_url", jwks)?;
    }
    let resource = section
        .resource
        .unwrap_or_else(|| format!("http://{listen}/mcp"));
    url("[auth] resource", &resource)?;
    if resource.contains(['?', '#']) {
        bail!("[auth] resource {resource:?} must not have a query or fragment (RFC 8707)");
    }
    let introspection = match section.introspection {
        Some(i) => {
            url("[auth] introspection.url", &i.url)?;
            Some(IntrospectionConfig {
                url: i.url,
                client_id: i.client_id,
                client_secret: read_secret(
                    &file_dir.join(&i.client_secret_file),
                    "[auth] introspection.client_secret_file",
                )?,
            })
        }
        None => None,
    };
    let leeway = section.leeway.unwrap_or(Duration::from_secs(60));
    if leeway > MAX_LEEWAY {
        bail!("[auth] leeway may be at most 5m");
    }
    let introspection_cache = section
        .introspection_cache
        .unwrap_or(Duration::from_secs(30));
    if introspection_cache > MAX_INTROSPECTION_CACHE {
        bail!(
            "[auth] introspection_cache may be at most 60s (a revoked token must stop working soon)"
        );
    }
    Ok(Some(AuthConfig {
        resource,
        issuers: section.issuers,
        jwks_url: section.jwks_url,
        introspection,
        scopes: section.scopes,
        allowed_clients: section.allowed_clients,
        principal_claim: section.principal_claim.unwrap_or_else(|| "sub".into()),
        leeway,
        introspection_cache,
    }))
}

fn url(key: &str, value: &str) -> anyhow::Result<()> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => bail!("{key}: {value:?} is not an http(s) URL"),
    }
}

/// Who may use the admin listener.
#[derive(Clone, Debug, Default)]
pub struct AdminSettings {
    /// `[admin] token_file`'s token.
    pub token: Option<String>,
    /// `[admin] scope`: an `[auth]` token with it is accepted too.
    pub scope: Option<String>,
}

pub(super) fn admin(
    section: AdminSection,
    auth: Option<&AuthConfig>,
    file_dir: &Path,
) -> anyhow::Result<AdminSettings> {
    if section.scope.is_some() && auth.is_none() {
        bail!("[admin] scope needs [auth] mode = \"oauth\" (it names a scope of its tokens)");
    }
    let token = match section.token_file {
        Some(path) => {
            let token = read_secret(&file_dir.join(path), "[admin] token_file")?;
            if token.len() < 16 {
                bail!("[admin] token_file: the token is shorter than 16 characters");
            }
            Some(token)
        }
        None => None,
    };
    Ok(AdminSettings {
        token,
        scope: section.scope,
    })
}

/// A server's quota: its own `quota` over `[quota]`, key by key.
pub(super) fn quota(global: QuotaSection, server: Option<QuotaSection>) -> Quota {
    let own = server.unwrap_or_default();
    Quota {
        max_sessions: own.max_sessions.or(global.max_sessions).unwrap_or(0),
        sessions_per_minute: own
            .sessions_per_minute
            .or(global.sessions_per_minute)
            .unwrap_or(0),
    }
}

/// A one-line secret file, trimmed.
fn read_secret(path: &Path, key: &str) -> anyhow::Result<String> {
    let text = super::read_small_file(path, key)?;
    let secret = text.trim();
    if secret.is_empty() || secret.contains(char::is_whitespace) {
        bail!("{key}: {} must hold one word", path.display());
    }
    Ok(secret.to_string())
}
