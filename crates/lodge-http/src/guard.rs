//! Checks every request passes before it reaches a session: Host (DNS rebinding)
//! and Origin.

use crate::errors::FrontError;
use axum::http::{HeaderMap, header};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct FrontConfig {
    /// Browser origins allowed besides loopback ones. `"*"` allows any.
    pub allowed_origins: Vec<String>,
    /// Host names (without port) allowed besides loopback ones. `"*"` allows any.
    pub allowed_hosts: Vec<String>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// On shutdown, how long calls in flight may run before every session is ended
    /// ([`crate::serve`] passes it to [`lodge_runtime::Runtime::shutdown`]).
    pub shutdown_grace: Duration,
    /// Time a client has to send a request's headers: from the connection's start, or
    /// on a kept-alive connection from the first byte of the next request. Past it the
    /// connection is closed.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait, idle, for its next request. Longer
    /// than common clients' own pool idle time (90 s in reqwest and hyper's client), so
    /// that the client, not Lodge, closes it: a server closing first races the client
    /// reusing the connection, and the request it sends then is lost.
    pub keep_alive_timeout: Duration,
    /// Time a client has to send a whole request body; past it the request is answered
    /// 408 and the connection closed. A whole-body deadline catches a stalled and a
    /// dripping body alike.
    pub body_read_timeout: Duration,
    /// Connections one client IP address may hold open at once; more are closed as
    /// they arrive, so one address cannot take every descriptor.
    pub max_connections_per_client: usize,
    /// OAuth (`[auth] mode = "oauth"`): every MCP request needs a valid token, and
    /// sessions belong to its principal. `None`: no authentication.
    pub auth: Option<std::sync::Arc<crate::auth::Auth>>,
    /// Cluster mode: requests for sessions other nodes own are forwarded to them.
    pub cluster: Option<std::sync::Arc<crate::forward::Cluster>>,
}

impl Default for FrontConfig {
    fn default() -> Self {
        FrontConfig {
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 4 << 20,
            shutdown_grace: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(120),
            body_read_timeout: Duration::from_secs(30),
            max_connections_per_client: 256,
            auth: None,
            cluster: None,
        }
    }
}

/// The first of `names` that appears more than once on a request. A repeated
/// session or mirrored header is ambiguous (which one did the client mean?), and
/// taking the first lets a proxy's header and the client's disagree unseen.
pub(crate) fn repeated_header(headers: &HeaderMap, names: &[&'static str]) -> Option<&'static str> {
    names
        .iter()
        .copied()
        .find(|name| headers.get_all(*name).iter().nth(1).is_some())
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

impl FrontConfig {
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), FrontError> {
        if let Some(host) = headers.get(header::HOST) {
            let host = host.to_str().map(strip_port).unwrap_or("");
            let host = host.to_ascii_lowercase();
            let allowed = is_loopback_host(&host)
                || self
                    .allowed_hosts
                    .iter()
                    .any(|h| h == "*" || h.eq_ignore_ascii_case(&host));
            if !allowed {
                return Err(FrontError::HostNotAllowed(host));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let host = origin
                .split_once("://")
                .map(|(_, rest)| strip_port(rest.trim_end_matches('/')))
                .unwrap_or("");
            let allowed = is_loopback_host(&host.to_ascii_lowercase())
                || self
                    .allowed_origins
                    .iter()
                    .any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
            if !allowed {
                return Err(FrontError::OriginNotAllowed(origin.to_string()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(config: &FrontConfig, host: Option<&str>, origin: Option<&str>) -> bool {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, v.parse().unwrap());
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, v.parse().unwrap());
        }
        config.check(&h).is_ok()
    }

    #[test]
    fn loopback_is_allowed_by_default_and_nothing_else() {
        let c = FrontConfig::default();
        assert!(check(&c, Some("localhost:8787"), None));
        assert!(check(&c, Some("127.0.0.1"), Some("http://localhost:3000")));
        assert!(check(&c, Some("[::1]:8787"), Some("http://[::1]:9")));
        assert!(!check(&c, Some("evil.example:8787"), None));
        assert!(!check(&c, Some("localhost"), Some("https://evil.example")));
        assert!(!check(&c, Some("localhost"), Some("null")));
    }

    #[test]
    fn configured_hosts_and_origins_are_allowed() {
        let c = FrontConfig {
            allowed_origins: vec!["https://app.example".into()],
            allowed_hosts: vec!["lodge.internal".into()],
            ..FrontConfig::default()
        };
        assert!(check(
            &c,
            Some("lodge.internal:443"),
            Some("https://app.example")
        ));
        assert!(!check(
            &c,
            Some("lodge.internal"),
            Some("https://app.example.evil")
        ));
    }
}
