//! The validator against a real HTTP issuer in this process (discovery and keys
//! served by axum), with Ed25519 keys made by the test.

use super::jwt::tests::TestKey;
use super::*;
use axum::routing::get;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// An issuer on loopback whose key set the test can change.
struct Issuer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    /// Times the key set was fetched.
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

async fn issuer() -> Issuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let keys: Arc<Mutex<Vec<Value>>> = Arc::default();
    let metadata = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
    let served = keys.clone();
    let fetches: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let counted = fetches.clone();
    let app = axum::Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || {
                let m = metadata.clone();
                async move { axum::Json(m) }
            }),
        )
        .route(
            "/jwks",
            get(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let keys = served.lock().unwrap().clone();
                async move { axum::Json(json!({"keys": keys})) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Issuer { url, keys, fetches }
}

impl Issuer {
    fn publish(&self, key: &TestKey) {
        let jwk = serde_json::to_value(key.jwk()).unwrap();
        self.keys.lock().unwrap().push(jwk);
    }

    fn claims(&self, sub: &str) -> Value {
        json!({"iss": self.url, "aud": "http://lodge/mcp", "sub": sub,
               "exp": unix_now() + 300, "scope": "mcp"})
    }
}

fn auth_for(issuer: &str) -> Arc<Auth> {
    Auth::new(AuthConfig {
        resource: "http://lodge/mcp".into(),
        issuers: vec![issuer.into()],
        jwks_url: None,
        introspection: None,
        scopes: vec!["mcp".into()],
        allowed_clients: Vec::new(),
        principal_claim: "sub".into(),
        leeway: Duration::from_secs(5),
        introspection_cache: Duration::from_secs(30),
    })
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    h
}

#[tokio::test]
async fn a_token_signed_by_the_issuer_names_its_principal_for_lodge_and_its_servers() {
    let issuer = issuer().await;
    let key = TestKey::new("k1");
    issuer.publish(&key);
    let auth = auth_for(&issuer.url);
    let token = key.sign(&issuer.claims("alice"));
    let who = auth.authenticate(&bearer(&token), None).await.unwrap();
    assert_eq!(who, Principal::new(&issuer.url, "alice"));
    assert!(auth.authenticate(&bearer(&token), Some("py")).await.is_ok());

    // A token for one server is not one for another.
    let mut claims = issuer.claims("alice");
    claims["aud"] = json!("http://lodge/mcp/py");
    let for_py = key.sign(&claims);
    assert!(
        auth.authenticate(&bearer(&for_py), Some("py"))
            .await
            .is_ok()
    );
    let e = auth
        .authenticate(&bearer(&for_py), Some("js"))
        .await
        .unwrap_err();
    assert!(matches!(e, AuthRefusal::Invalid(_)), "{e}");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let issuer = issuer().await;
    let old = TestKey::new("old");
    issuer.publish(&old);
    let auth = auth_for(&issuer.url);
    assert!(
        auth.authenticate(&bearer(&old.sign(&issuer.claims("a"))), None)
            .await
            .is_ok()
    );

    let new = TestKey::new("new");
    issuer.publish(&new);
    let token = new.sign(&issuer.claims("a"));
    // Right after a fetch: the token waits out the second, then its key is fetched.
    let started = std::time::Instant::now();
    assert!(auth.authenticate(&bearer(&token), None).await.is_ok());
    assert!(started.elapsed() < Duration::from_secs(3));

    // Made-up keys: however many tokens name them, one fetch a second at most.
    let fetches = issuer.fetches.load(std::sync::atomic::Ordering::Relaxed);
    let bogus = TestKey::new("bogus").sign(&issuer.claims("a"));
    let headers = bearer(&bogus);
    let tries = (0..20).map(|_| auth.authenticate(&headers, None));
    for result in futures_util::future::join_all(tries).await {
        assert!(result.unwrap_err().to_string().contains("no key \"bogus\""));
    }
    let more = issuer.fetches.load(std::sync::atomic::Ordering::Relaxed) - fetches;
    assert!(more <= 2, "{more} fetches for 20 tokens with a made-up key");
    // Known keys never wait for a fetch.
    assert!(auth.authenticate(&bearer(&token), None).await.is_ok());
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_invalid() {
    let issuer = issuer().await;
    let key = TestKey::new("k1");
    issuer.publish(&key);
    let auth = auth_for(&issuer.url);
    let invalid = |e: AuthRefusal, what: &str| {
        assert!(matches!(e, AuthRefusal::Invalid(_)), "{e}");
        assert!(e.to_string().contains(what), "{e} lacks {what:?}");
    };
    // Signed by a key the issuer never published, under a published kid.
    let impostor = TestKey::new("k1");
    let e = auth
        .authenticate(&bearer(&impostor.sign(&issuer.claims("a"))), None)
        .await
        .unwrap_err();
    invalid(e, "signature does not verify");
    // From an issuer Lodge does not trust.
    let mut claims = issuer.claims("a");
    claims["iss"] = json!("http://elsewhere");
    invalid(
        auth.authenticate(&bearer(&key.sign(&claims)), None)
            .await
            .unwrap_err(),
        "not accepted",
    );
    // Opaque, with no introspection configured.
    invalid(
        auth.authenticate(&bearer("opaque"), None)
            .await
            .unwrap_err(),
        "introspection",
    );
    // No token; not a bearer token.
    assert!(matches!(
        auth.authenticate(&HeaderMap::new(), None).await,
        Err(AuthRefusal::Missing)
    ));
    let mut basic = HeaderMap::new();
    basic.insert(header::AUTHORIZATION, "Basic YTpi".parse().unwrap());
    invalid(
        auth.authenticate(&basic, None).await.unwrap_err(),
        "only Bearer",
    );
}

#[tokio::test]
async fn an_unreachable_issuer_is_unavailable_not_a_bad_token() {
    let auth = auth_for("http://127.0.0.1:9");
    let key = TestKey::new("k");
    let claims = json!({"iss": "http://127.0.0.1:9", "aud": "http://lodge/mcp", "sub": "a",
                        "exp": unix_now() + 60, "scope": "mcp"});
    let e = auth
        .authenticate(&bearer(&key.sign(&claims)), None)
        .await
        .unwrap_err();
    assert!(matches!(e, AuthRefusal::Unavailable(_)), "{e}");
}

#[test]
fn challenges_lead_to_the_endpoint_s_metadata() {
    let auth = auth_for("https://idp");
    let missing = auth.challenge(&AuthRefusal::Missing, "/mcp/py").unwrap();
    assert_eq!(
        missing,
        r#"Bearer resource_metadata="http://lodge/.well-known/oauth-protected-resource/mcp/py", scope="mcp""#
    );
    let invalid = auth
        .challenge(&AuthRefusal::Invalid("bad \"x\"".into()), "/mcp")
        .unwrap();
    assert!(invalid.contains(r#"error="invalid_token""#), "{invalid}");
    assert!(
        invalid.contains(r#"error_description="bad 'x'""#),
        "{invalid}"
    );
    let scope = auth
        .challenge(&AuthRefusal::InsufficientScope("mcp".into()), "/mcp")
        .unwrap();
    assert!(
        scope.starts_with(r#"Bearer error="insufficient_scope", scope="mcp""#),
        "{scope}"
    );
    assert_eq!(auth.metadata(Some("py"))["resource"], "http://lodge/mcp/py");
    assert_eq!(
        auth.metadata(None)["authorization_servers"],
        json!(["https://idp"])
    );
}
