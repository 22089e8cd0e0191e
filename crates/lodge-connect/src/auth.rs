//! OAuth for servers that answer 401/403 with a `WWW-Authenticate` challenge (MCP
//! authorization): discovery, client registration (pre-registered, client metadata document
//! or dynamic registration), the authorization-code flow with PKCE, and token use and refresh
//! are rmcp's; this module gets the user through the authorization step.
//!
//! With `--oauth`, the authorization URL opens in a browser (or is printed) and a one-shot
//! listener on 127.0.0.1 receives the redirect. With `--oauth-headless`, the URL is fetched
//! without a browser and the code is taken from the redirect: only for authorization servers
//! that approve without a person (tests, CI, the conformance suite).

use super::ui::{Ui, open_in_browser};
use rmcp::transport::AuthorizationManager;
use rmcp::transport::auth::{AuthorizationCallback, AuthorizationRequest, OAuthState};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `--oauth*` flags.
#[derive(Clone, Debug, Default)]
pub struct OAuthOptions {
    pub headless: bool,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_metadata_url: Option<String>,
    pub scopes: Vec<String>,
}

/// How long a person has to finish authorizing in the browser.
const BROWSER_WAIT: Duration = Duration::from_secs(300);

/// Runs the authorization flow for `url`, seeded by the server's `challenge` (the
/// `WWW-Authenticate` value of its 401/403, which names the metadata and scopes).
pub async fn authorize(
    url: &str,
    challenge: Option<&str>,
    options: &OAuthOptions,
    ui: &Ui,
) -> Result<AuthorizationManager, String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("OAuth: {what}: {e}");
    let mut state = OAuthState::new(url, None)
        .await
        .map_err(|e| fail("setting up", &e))?;
    let listener = if options.headless {
        None
    } else {
        Some(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| fail("listening for the redirect", &e))?,
        )
    };
    let redirect = match &listener {
        Some(l) => {
            let port = l.local_addr().map_err(|e| fail("listener", &e))?.port();
            format!("http://127.0.0.1:{port}/callback")
        }
        None => "http://localhost:3000/callback".to_owned(),
    };
    let mut request = AuthorizationRequest::new(redirect).with_client_name("lodge connect");
    if let Some(challenge) = challenge {
        request = request.with_challenge(challenge);
    }
    if let Some(id) = &options.client_id {
        request = request.with_preregistered_client(id);
        if let Some(secret) = &options.client_secret {
            request = request.with_client_secret(secret);
        }
    }
    if let Some(metadata) = &options.client_metadata_url {
        request = request.with_client_metadata_url(metadata);
    }
    if !options.scopes.is_empty() {
        request = request.with_scopes(options.scopes.clone());
    }
    state
        .start_authorization(request)
        .await
        .map_err(|e| fail("starting authorization", &e))?;
    let auth_url = state
        .get_authorization_url()
        .await
        .map_err(|e| fail("authorization URL", &e))?;
    let callback = match listener {
        None => headless(&auth_url).await?,
        Some(listener) => {
            ui.note(format!(
                "The server wants you to sign in. Open this URL to authorize lodge connect:\n  {auth_url}"
            ));
            let _ = open_in_browser(&auth_url);
            tokio::time::timeout(BROWSER_WAIT, redirect_from(listener))
                .await
                .map_err(|_| "OAuth: no authorization within 5 minutes".to_string())??
        }
    };
    state
        .handle_callback_with_issuer(
            &callback.code,
            &callback.csrf_token,
            callback.issuer.as_deref(),
        )
        .await
        .map_err(|e| fail("exchanging the code for a token", &e))?;
    state
        .into_authorization_manager()
        .ok_or_else(|| "OAuth: authorization did not complete".to_string())
}

/// The scopes a `WWW-Authenticate` challenge names (`scope="a b"` or `scope=a`).
pub fn challenge_scopes(challenge: &str) -> Option<Vec<String>> {
    let lower = challenge.to_ascii_lowercase();
    let start = lower.find("scope=")? + "scope=".len();
    let rest = &challenge[start..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => rest.split([',', ' ']).next().unwrap_or(""),
    };
    let scopes: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
    (!scopes.is_empty()).then_some(scopes)
}

/// Fetches the authorization URL without following redirects; the authorization server
/// approves at once and redirects to the client with the code.
async fn headless(auth_url: &str) -> Result<AuthorizationCallback, String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("OAuth: {e}"))?;
    let response = http
        .get(auth_url)
        .send()
        .await
        .map_err(|e| format!("OAuth: {auth_url}: {e}"))?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            format!(
                "OAuth: the authorization server answered {} without redirecting (--oauth-headless needs one that approves without a person)",
                response.status()
            )
        })?;
    AuthorizationCallback::from_redirect_url(location).map_err(|e| format!("OAuth: {e}"))
}

/// Serves the one redirect the browser makes to 127.0.0.1, and reads code and state off it.
async fn redirect_from(listener: tokio::net::TcpListener) -> Result<AuthorizationCallback, String> {
    loop {
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(|e| format!("OAuth: waiting for the redirect: {e}"))?;
        let mut buf = vec![0u8; 16 * 1024];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]);
        let target = head
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .unwrap_or("/");
        let parsed = AuthorizationCallback::from_redirect_url(&format!("http://127.0.0.1{target}"));
        let body = match &parsed {
            Ok(_) => "lodge connect is authorized. You can close this tab.",
            Err(_) => "This is not an authorization redirect.",
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        if let Ok(callback) = parsed {
            return Ok(callback);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_from_challenges() {
        let c = r#"Bearer error="insufficient_scope", scope="mcp:basic mcp:write", resource_metadata="http://x""#;
        assert_eq!(
            challenge_scopes(c),
            Some(vec!["mcp:basic".to_string(), "mcp:write".to_string()])
        );
        assert_eq!(
            challenge_scopes("Bearer scope=read, realm=\"x\""),
            Some(vec!["read".into()])
        );
        assert_eq!(challenge_scopes("Bearer realm=\"x\""), None);
        assert_eq!(challenge_scopes("Bearer scope=\"\""), None);
    }
}
