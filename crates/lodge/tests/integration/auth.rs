//! Lodge as an OAuth resource server (MCP authorization, issue 14) against a real
//! authorization server the test starts: `oidc-provider` from npm (common/idp.rs).
#![allow(clippy::unwrap_used)]

use crate::common::idp::{Format, Idp, Mint, jwt_claims, jwt_header};
use serde_json::{Value, json};

async fn get_json(url: &str) -> Value {
    crate::common::install_tls_provider();
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

// ---------------------------------------------------------------------------------------
// The authorization server itself.

#[tokio::test]
async fn idp_issues_real_jwt_and_opaque_tokens_and_revokes_them() {
    let idp = Idp::start();
    let resource = "http://127.0.0.1:9/mcp";
    let jwt = idp
        .token(Mint::user("alice", Format::Jwt, resource).scope("mcp other"))
        .await;
    let header = jwt_header(&jwt);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    let claims = jwt_claims(&jwt);
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], resource);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "mcp other");
    // The JWKS serves the key that signed it, and a rotation replaces it.
    let jwks = get_json(&format!("{}/jwks", idp.issuer())).await;
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    let kid = idp.rotate_keys().await;
    let jwks = get_json(&format!("{}/jwks", idp.issuer())).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
    assert_eq!(jwks["keys"][0]["kid"], kid);
    let rotated = idp.token(Mint::user("alice", Format::Jwt, resource)).await;
    assert_eq!(jwt_header(&rotated)["kid"], kid);
    // An expired JWT really is (exp in the past, iat before it).
    let expired = jwt_claims(
        &idp.token(Mint::user("a", Format::Jwt, resource).ttl(-60))
            .await,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (iat, exp) = (
        expired["iat"].as_i64().unwrap(),
        expired["exp"].as_i64().unwrap(),
    );
    assert!(iat < exp && exp <= now - 59, "{expired}");

    // Opaque tokens: active at introspection until revoked (and survive the rotation).
    let opaque = idp.token(Mint::user("bob", Format::Opaque, resource)).await;
    assert_eq!(opaque.split('.').count(), 1, "opaque: {opaque}");
    let active = idp.introspect(&opaque).await;
    assert_eq!(active["active"], true, "{active}");
    assert_eq!(active["sub"], "bob");
    assert_eq!(active["aud"], resource);
    assert_eq!(active["iss"], idp.issuer());
    assert_eq!(active["scope"], "mcp");
    idp.revoke(&opaque).await;
    assert_eq!(idp.introspect(&opaque).await, json!({"active": false}));
    let expired = idp
        .token(Mint::user("bob", Format::Opaque, resource).ttl(0))
        .await;
    assert_eq!(idp.introspect(&expired).await, json!({"active": false}));

    // The client-credentials grant: no user; an opaque token has no sub.
    let cc = idp.client_credentials(Format::Opaque, resource).await;
    let cc = idp.introspect(&cc).await;
    assert_eq!(cc["active"], true, "{cc}");
    assert_eq!(cc["client_id"], "opaque-client");
    assert!(cc.get("sub").is_none(), "{cc}");
    let cc = jwt_claims(&idp.client_credentials(Format::Jwt, resource).await);
    assert_eq!(
        (&cc["client_id"], &cc["aud"]),
        (&json!("jwt-client"), &json!(resource))
    );

    // A second IdP is another issuer with another key.
    let other = Idp::start();
    assert_ne!(other.issuer(), idp.issuer());
    let theirs = other
        .token(Mint::user("alice", Format::Jwt, resource))
        .await;
    assert_eq!(jwt_claims(&theirs)["iss"], other.issuer());
    assert_ne!(jwt_header(&theirs)["kid"], jwt_header(&rotated)["kid"]);
}
