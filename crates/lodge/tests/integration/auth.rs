//! Lodge as an OAuth resource server (MCP authorization, issue 14) against a real
//! authorization server the test starts: `oidc-provider` from npm (common/idp.rs). Exact
//! statuses and challenges for each kind of good and bad token, sessions owned by their
//! principal, and off-the-shelf clients (the Python SDK, `lodge connect`) that sign in with
//! nothing but the 401 to go on.
#![allow(clippy::unwrap_used)]

use crate::common::idp::{
    Format, Idp, Mint, PUBLIC_CLIENT, forge_alg_none, forge_bad_signature, forge_claims,
    jwt_claims, jwt_header,
};
use crate::common::{LODGE, Lodge, Raw, Reply, demo_server_toml, read_events_until, repo_root};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const SAMPLED: &str = "Day 1: tiles. Day 2: trams. Day 3: custard tarts.";
const TRIP: &str = "Trip to Lisbon: 3 days, comfort, flights no.";
const DECLINED: &str = "Trip planning stopped: the user chose to decline.";
const ELICITATION: &str = "Where and how do you want to travel?";

/// An IdP and a Lodge hosting the demo server with `[auth]` pointed at it.
struct Setup {
    idp: Idp,
    lodge: Lodge,
    /// The resource Lodge announces in its metadata (tokens' audience).
    resource: String,
}

impl Setup {
    async fn start() -> Setup {
        let idp = Idp::start();
        let lodge = Lodge::start(&format!("{}{}", idp.auth_toml(""), demo_server_toml()));
        let metadata = get_json(&format!(
            "{}/.well-known/oauth-protected-resource",
            lodge.base
        ))
        .await;
        let resource = metadata["resource"]
            .as_str()
            .unwrap_or_else(|| panic!("no resource in {metadata}"))
            .to_owned();
        Setup {
            idp,
            lodge,
            resource,
        }
    }

    async fn token(&self, user: &str, format: Format) -> String {
        self.idp
            .token(Mint::user(user, format, &self.resource))
            .await
    }

    /// A raw legacy client of the demo server sending `token` (or none).
    fn raw(&self, token: Option<&str>) -> Raw {
        as_bearer(self.lodge.url(), token)
    }

    /// An `initialize` with `token`: the answer, whatever it is.
    async fn initialize(&self, token: Option<&str>) -> Reply {
        self.raw(token).post(initialize()).await
    }

    /// Asserts `reply` is a 401 (or 403 with `error`) with exactly the challenge the MCP
    /// authorization spec asks for, and that its `resource_metadata` serves the metadata.
    async fn assert_refused(&self, reply: &Reply, status: u16, error: Option<&str>) {
        assert_eq!(reply.status, status, "{}", reply.body);
        let (scheme, params) = challenge(reply);
        assert_eq!(scheme, "Bearer", "{params:?}");
        let metadata_url = params
            .get("resource_metadata")
            .unwrap_or_else(|| panic!("no resource_metadata in {params:?}"))
            .clone();
        let mut want = BTreeMap::from([
            ("resource_metadata".to_owned(), metadata_url.clone()),
            ("scope".to_owned(), "mcp".to_owned()),
        ]);
        if let Some(error) = error {
            want.insert("error".to_owned(), error.to_owned());
            // RFC 6750 §3: an error may come with a human-readable description.
            if let Some(description) = params.get("error_description") {
                assert!(!description.is_empty(), "{params:?}");
                want.insert("error_description".to_owned(), description.clone());
            }
        }
        assert_eq!(params, want, "WWW-Authenticate of {status}");
        assert!(
            metadata_url.starts_with(&format!(
                "{}/.well-known/oauth-protected-resource",
                self.lodge.base
            )),
            "{metadata_url}"
        );
        assert_eq!(get_json(&metadata_url).await["resource"], self.resource);
        let body = reply.json();
        assert_eq!(body["jsonrpc"], "2.0", "{body}");
        assert_eq!(body["id"], Value::Null, "{body}");
        assert!(body["error"]["code"].is_i64(), "{body}");
    }

    async fn assert_invalid_token(&self, token: &str, what: &str) {
        let reply = self.initialize(Some(token)).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        self.assert_refused(&reply, 401, Some("invalid_token"))
            .await;
    }

    /// Asserts `token` is accepted: a session initializes and a tool call completes.
    async fn assert_accepted(&self, token: &str, what: &str) {
        let mut raw = self.raw(Some(token));
        let reply = raw.post(initialize()).await;
        assert_eq!(reply.status, 200, "{what}: {}", reply.body);
        raw.initialize().await;
        assert_eq!(
            raw.call_text(1, "counter", json!({"action": "increment"}))
                .await,
            "1",
            "{what}"
        );
    }
}

fn initialize() -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{"elicitation":{},"sampling":{}},
        "clientInfo":{"name":"auth-test","version":"1"}}})
}

/// A raw client whose every request carries `Authorization: Bearer <token>`, if any.
fn as_bearer(url: String, token: Option<&str>) -> Raw {
    match token {
        Some(token) => Raw::signed_in(url, token),
        None => Raw::new(url),
    }
}

async fn get_json(url: &str) -> Value {
    crate::common::install_tls_provider();
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

/// A `WWW-Authenticate` challenge: its scheme and its auth-params (RFC 9110 §11.2; values
/// quoted or tokens). Panics on a missing or malformed header.
fn challenge(reply: &Reply) -> (String, BTreeMap<String, String>) {
    let all: Vec<&str> = reply
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(all.len(), 1, "one WWW-Authenticate: {all:?}");
    let header = all[0];
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            break;
        }
        let (name, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("malformed challenge: {header}"));
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted
                    .find('"')
                    .unwrap_or_else(|| panic!("unterminated quote: {header}"));
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_at(after.find(',').unwrap_or(after.len())),
        };
        let fresh = params.insert(name.trim().to_ascii_lowercase(), value.to_owned());
        assert!(fresh.is_none(), "a parameter twice: {header}");
        rest = after;
    }
    (scheme.to_owned(), params)
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

// ---------------------------------------------------------------------------------------
// Tokens: exact statuses and challenges.

#[tokio::test]
async fn protected_resource_metadata_names_the_resource_and_the_issuer_on_every_path() {
    let s = Setup::start().await;
    assert_eq!(s.resource, s.lodge.url());
    // Each endpoint's metadata names that endpoint (RFC 9728 §3.3: a client checks that the
    // resource it fetched metadata for is the one it connects to).
    let demo = format!("{}/demo", s.resource);
    for (path, resource) in [
        ("", &s.resource),
        ("/mcp", &s.resource),
        ("/mcp/demo", &demo),
    ] {
        let url = format!(
            "{}/.well-known/oauth-protected-resource{path}",
            s.lodge.base
        );
        assert_eq!(
            get_json(&url).await,
            json!({
                "resource": resource,
                "resource_name": "Lodge",
                "authorization_servers": [s.idp.issuer()],
                "scopes_supported": ["mcp"],
                "bearer_methods_supported": ["header"],
            }),
            "{url}"
        );
    }
}

#[tokio::test]
async fn a_server_endpoint_challenges_with_its_own_metadata_and_takes_tokens_for_it() {
    let s = Setup::start().await;
    let endpoint = format!("{}/demo", s.lodge.url());
    let reply = as_bearer(endpoint.clone(), None).post(initialize()).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    let (_, params) = challenge(&reply);
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource/mcp/demo",
        s.lodge.base
    );
    assert_eq!(
        params.get("resource_metadata"),
        Some(&metadata),
        "{params:?}"
    );
    assert_eq!(get_json(&metadata).await["resource"], endpoint);
    // A token for that endpoint, as a client that read its metadata asks for, works there.
    let token = s
        .idp
        .token(Mint::user("alice", Format::Jwt, &endpoint))
        .await;
    let mut raw = as_bearer(endpoint.clone(), Some(&token));
    raw.initialize().await;
    assert_eq!(
        raw.call_text(1, "counter", json!({"action": "increment"}))
            .await,
        "1"
    );
    // One for another server's endpoint does not.
    let other = s
        .idp
        .token(Mint::user(
            "alice",
            Format::Jwt,
            &format!("{}/other", s.lodge.url()),
        ))
        .await;
    let reply = as_bearer(endpoint, Some(&other)).post(initialize()).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(challenge(&reply).1["error"], "invalid_token");
}

#[tokio::test]
async fn no_token_is_401_with_the_challenge() {
    let s = Setup::start().await;
    let reply = s.initialize(None).await;
    s.assert_refused(&reply, 401, None).await;
    // A token in the query string is not a token.
    let token = s.token("alice", Format::Jwt).await;
    // (JWTs are base64url and dots: nothing to escape.)
    let in_query = as_bearer(format!("{}?access_token={token}", s.lodge.url()), None);
    let reply = in_query.post(initialize()).await;
    s.assert_refused(&reply, 401, None).await;
}

#[tokio::test]
async fn valid_jwt_and_opaque_tokens_are_accepted() {
    let s = Setup::start().await;
    s.assert_accepted(&s.token("alice", Format::Jwt).await, "JWT")
        .await;
    s.assert_accepted(&s.token("alice", Format::Opaque).await, "opaque")
        .await;
}

#[tokio::test]
async fn expired_tokens_are_401_invalid_token() {
    let s = Setup::start().await;
    for format in [Format::Jwt, Format::Opaque] {
        // Well past the 5 s leeway.
        let token = s
            .idp
            .token(Mint::user("alice", format, &s.resource).ttl(-120))
            .await;
        s.assert_invalid_token(&token, &format!("expired {format:?}"))
            .await;
    }
}

#[tokio::test]
async fn a_token_of_another_issuer_is_401_invalid_token() {
    let s = Setup::start().await;
    let other = Idp::start();
    for format in [Format::Jwt, Format::Opaque] {
        let token = other.token(Mint::user("alice", format, &s.resource)).await;
        s.assert_invalid_token(&token, &format!("foreign {format:?}"))
            .await;
    }
}

#[tokio::test]
async fn a_token_for_another_resource_is_401_invalid_token() {
    let s = Setup::start().await;
    for format in [Format::Jwt, Format::Opaque] {
        let token = s
            .idp
            .token(Mint::user("alice", format, "http://127.0.0.1:9/mcp"))
            .await;
        s.assert_invalid_token(&token, &format!("other audience {format:?}"))
            .await;
    }
}

#[tokio::test]
async fn forged_jwts_are_401_invalid_token() {
    let s = Setup::start().await;
    let real = s.token("alice", Format::Jwt).await;
    s.assert_accepted(&real, "the real one").await;
    s.assert_invalid_token(&forge_bad_signature(&real), "bad signature")
        .await;
    s.assert_invalid_token(&forge_alg_none(&real), "alg none")
        .await;
    let admin = forge_claims(&real, |claims| claims["sub"] = json!("admin"));
    s.assert_invalid_token(&admin, "claims changed under the signature")
        .await;
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_and_the_withdrawn_one_refused() {
    let s = Setup::start().await;
    let before = s.token("alice", Format::Jwt).await;
    s.assert_accepted(&before, "before rotation").await;
    // Signed by the same key, never shown to Lodge before the key is withdrawn. (`before`
    // itself Lodge may go on trusting for a while: it keeps a verified JWT's signature
    // check for up to 60 s.)
    let unseen = s.token("bob", Format::Jwt).await;
    let kid = s.idp.rotate_keys().await;
    let after = s.token("alice", Format::Jwt).await;
    assert_eq!(jwt_header(&after)["kid"], kid);
    // A kid Lodge has not seen, moments after its last fetch: it refetches the JWKS (once
    // its once-a-second limit allows) and accepts; no refusal in between.
    s.assert_accepted(&after, "after rotation").await;
    // The old key left Lodge's keys with the refresh.
    s.assert_invalid_token(&unseen, "signed by the withdrawn key")
        .await;
}

#[tokio::test]
async fn a_token_without_the_scope_is_403_insufficient_scope() {
    let s = Setup::start().await;
    for format in [Format::Jwt, Format::Opaque] {
        let token = s
            .idp
            .token(Mint::user("alice", format, &s.resource).scope("other"))
            .await;
        let reply = s.initialize(Some(&token)).await;
        s.assert_refused(&reply, 403, Some("insufficient_scope"))
            .await;
    }
}

#[tokio::test]
async fn a_revoked_opaque_token_is_401_invalid_token() {
    let s = Setup::start().await;
    let token = s.token("alice", Format::Opaque).await;
    s.assert_accepted(&token, "before revocation").await;
    s.idp.revoke(&token).await;
    // Lodge may keep a positive introspection answer for introspection_cache (1 s here).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.assert_invalid_token(&token, "revoked").await;
}

#[tokio::test]
async fn client_credentials_tokens_are_accepted_and_their_principal_is_the_client() {
    let s = Setup::start().await;
    for format in [Format::Jwt, Format::Opaque] {
        let token = s.idp.client_credentials(format, &s.resource).await;
        s.assert_accepted(&token, &format!("client credentials {format:?}"))
            .await;
        // A session it opens belongs to the client id: a user token whose sub is that
        // client id (same issuer) is the same principal; another user is not.
        let mut owner = s.raw(Some(&token));
        owner.initialize().await;
        let (client_id, _) = format.client();
        let mut same = s.raw(Some(&s.token(client_id, Format::Jwt).await));
        same.session = owner.session.clone();
        assert_eq!(
            same.call_text(1, "counter", json!({"action": "increment"}))
                .await,
            "1",
            "{format:?}"
        );
        let mut other = s.raw(Some(&s.token("mallory", Format::Jwt).await));
        other.session = owner.session.clone();
        assert_eq!(
            other
                .call(2, "counter", json!({"action": "get"}))
                .await
                .status,
            404
        );
    }
}

#[tokio::test]
async fn the_server_learns_its_user_from_the_environment_and_never_sees_the_token() {
    let idp = Idp::start();
    // The process backend, so the server's pid is a host pid whose environment the test
    // can read.
    let lodge = Lodge::start_under(
        &[],
        &format!("{}{}", idp.auth_toml(""), demo_server_toml()),
        &["--backend", "process"],
    );
    let metadata = get_json(&format!(
        "{}/.well-known/oauth-protected-resource",
        lodge.base
    ))
    .await;
    let resource = metadata["resource"].as_str().unwrap().to_owned();
    let token = idp.token(Mint::user("alice", Format::Jwt, &resource)).await;
    let mut raw = as_bearer(lodge.url(), Some(&token));
    raw.initialize().await;
    let info: Value =
        serde_json::from_str(&raw.call_text(1, "session_info", json!({})).await).unwrap();
    let pid = info["pid"].as_u64().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        vars.contains(&"LODGE_PRINCIPAL=alice".to_owned()),
        "{vars:?}"
    );
    assert!(
        vars.contains(&format!("LODGE_PRINCIPAL_ISSUER={}", idp.issuer())),
        "{vars:?}"
    );
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !vars.iter().any(|v| v.contains(signature)),
        "the token reached the server's environment"
    );
}

// ---------------------------------------------------------------------------------------
// Sessions belong to their principal.

/// A session id of the same shape that Lodge never issued.
fn made_up(id: &str) -> String {
    let made_up: String = id.chars().rev().collect();
    assert_ne!(made_up, id);
    made_up
}

/// Asserts `theirs` (another principal on a real session) and `unknown` (a made-up id)
/// are the same 404.
fn assert_same_404(theirs: &Reply, unknown: &Reply, what: &str) {
    assert_eq!(theirs.status, 404, "{what}: {}", theirs.body);
    assert_eq!(unknown.status, 404, "{what} (made-up id): {}", unknown.body);
    assert_eq!(
        theirs.body, unknown.body,
        "{what}: the same body as for a made-up id"
    );
}

#[tokio::test]
async fn another_user_cannot_use_stream_resume_answer_or_delete_a_session() {
    let s = Setup::start().await;
    let mut alice = s.raw(Some(&s.token("alice", Format::Jwt).await));
    alice.initialize().await;
    let id = alice.session.clone().unwrap();
    let bob_token = s.token("bob", Format::Jwt).await;
    let mut bob = s.raw(Some(&bob_token));
    bob.session = Some(id.clone());
    let mut guess = s.raw(Some(&bob_token));
    guess.session = Some(made_up(&id));

    // Alice's plan_trip waits on her answer to its elicitation.
    let trip = alice.post_builder(
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"plan_trip"}}),
    );
    let trip = trip.send().await.unwrap();
    assert_eq!(trip.status(), 200);
    let events = read_events_until(trip, |e| e.data.contains("elicitation/create")).await;
    let elicit = events.last().unwrap().json();
    assert_eq!(elicit["params"]["message"], ELICITATION);
    let event_id = events
        .iter()
        .find_map(|e| e.id.clone())
        .expect("the call's stream has event ids");

    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"counter","arguments":{"action":"increment"}}});
    assert_same_404(
        &bob.post(call.clone()).await,
        &guess.post(call).await,
        "POST",
    );
    let stream = |raw: &Raw, last: Option<&str>| Raw::send(raw.get_builder(last));
    assert_same_404(
        &stream(&bob, None).await,
        &stream(&guess, None).await,
        "GET stream",
    );
    assert_same_404(
        &stream(&bob, Some(&event_id)).await,
        &stream(&guess, Some(&event_id)).await,
        "GET resume",
    );
    let answer = json!({"jsonrpc":"2.0","id":elicit["id"],"result":{"action":"accept","content":{"destination":"Mallory's","days":30}}});
    assert_same_404(
        &bob.post(answer.clone()).await,
        &guess.post(answer).await,
        "POST elicitation answer",
    );
    let delete = |raw: &Raw| {
        let mut request = raw.http.delete(&raw.url);
        if let Some(session) = &raw.session {
            request = request.header("mcp-session-id", session);
        }
        Raw::send(request)
    };
    assert_same_404(&delete(&bob).await, &delete(&guess).await, "DELETE");

    // None of it touched Alice's session: her answer completes her call, she resumes
    // her stream, and her session ends when she says so.
    let declined = alice
        .post(json!({"jsonrpc":"2.0","id":elicit["id"],"result":{"action":"decline"}}))
        .await;
    assert_eq!(declined.status, 202, "{}", declined.body);
    let resumed = Raw::send(alice.get_builder(Some(&event_id))).await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    let last = resumed.events().last().unwrap().json();
    assert_eq!(last["result"]["content"][0]["text"], DECLINED, "{last}");
    assert_eq!(
        alice
            .call_text(3, "counter", json!({"action": "increment"}))
            .await,
        "1"
    );
    assert!(matches!(delete(&alice).await.status, 200 | 204));
}

// ---------------------------------------------------------------------------------------
// 2026-07-28 requests.

#[tokio::test]
async fn a_2026_request_needs_a_token() {
    let s = Setup::start().await;
    let params = json!({"name": "counter", "arguments": {"action": "increment"}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}});
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":params}).to_string();
    let send = |token: Option<&str>| {
        let raw = s.raw(token);
        let request = lodge_testkit::http::modern_post(
            &raw.http,
            &raw.url,
            None,
            "tools/call",
            Some("counter"),
            body.clone(),
        );
        Raw::send(request)
    };
    let refused = send(None).await;
    s.assert_refused(&refused, 401, None).await;
    let token = s.token("alice", Format::Jwt).await;
    let reply = send(Some(&token)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let result = if reply.headers["content-type"] == "text/event-stream" {
        reply.events().last().unwrap().json()
    } else {
        reply.json()
    };
    assert_eq!(result["result"]["content"][0]["text"], "1", "{result}");
}

/// A 2026-07-28 tools/call as `token`'s principal (no Lodge-Session-Id: its default
/// runtime session); `extra` params (requestState, inputResponses) are added.
async fn modern_call(s: &Setup, token: &str, id: u64, tool: &str, extra: Value) -> (Reply, Value) {
    let mut params = json!({"name": tool, "arguments": {}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "sampling": {}}}});
    if let Value::Object(extra) = extra {
        params.as_object_mut().unwrap().extend(extra);
    }
    let raw = s.raw(Some(token));
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params});
    let request = lodge_testkit::http::modern_post(
        &raw.http,
        &raw.url,
        None,
        "tools/call",
        Some(tool),
        body.to_string(),
    );
    let reply = Raw::send(request).await;
    let result = if reply.headers["content-type"] == "text/event-stream" {
        reply.events().last().unwrap().json()
    } else {
        reply.json()
    };
    (reply, result)
}

#[tokio::test]
async fn a_request_state_minted_for_one_user_does_not_continue_for_another() {
    let s = Setup::start().await;
    let alice = s.token("alice", Format::Jwt).await;
    let bob = s.token("bob", Format::Jwt).await;
    let (_, round1) = modern_call(&s, &alice, 1, "plan_trip", json!({})).await;
    let r1 = &round1["result"];
    assert_eq!(r1["resultType"], "input_required", "{round1}");
    let key = r1["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let state = r1["requestState"].as_str().unwrap().to_owned();
    let answer = json!({key: {"action": "accept", "content": {"destination": "Lisbon", "days": 3, "flights": false}}});
    let retry = json!({"requestState": state, "inputResponses": answer});

    // Bob presents Alice's state: refused as invalid params, nothing continues.
    let (reply, body) = modern_call(&s, &bob, 2, "plan_trip", retry.clone()).await;
    assert_eq!(
        (reply.status, body["error"]["code"].as_i64()),
        (400, Some(-32602)),
        "{body}"
    );
    // Alice's call still waits on her: her retry goes on to the sampling round.
    let (_, round2) = modern_call(&s, &alice, 3, "plan_trip", retry).await;
    let r2 = &round2["result"];
    assert_eq!(r2["resultType"], "input_required", "{round2}");
    let ask = r2["inputRequests"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    assert_eq!(ask["method"], "sampling/createMessage", "{round2}");
}

// ---------------------------------------------------------------------------------------
// Off-the-shelf clients sign in by themselves.

async fn python_sdk_signs_in(client_id: Option<&str>) -> Value {
    let s = Setup::start().await;
    let script = repo_root().join("tests/fixtures/python/oauth_client.py");
    let mut command = tokio::process::Command::new(crate::common::venv_python());
    command
        .arg(&script)
        .args([&s.lodge.url(), SAMPLED])
        .args(client_id)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("the Python client did not finish in 90 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_str(&stdout).unwrap();
    let authorization = &got["authorizations"][0];
    assert_eq!(
        got,
        json!({
            "isError": false,
            "text": format!("{TRIP}\n\n{SAMPLED}"),
            "elicitations": [ELICITATION],
            "authorizations": [{
                "client_id": authorization["client_id"],
                "resource": s.resource,
                // The scope of Lodge's challenge, and offline_access: the SDK asks for a
                // refresh token where the authorization server lists it (SEP-2207).
                "scope": "mcp offline_access",
                "code_challenge_method": "S256",
            }],
            "registered": client_id.is_none(),
            "token_type": "Bearer",
        })
    );
    authorization["client_id"].clone()
}

#[tokio::test]
async fn python_sdk_client_registers_signs_in_and_plans_a_trip_through_lodge() {
    let client_id = python_sdk_signs_in(None).await;
    assert!(
        client_id
            .as_str()
            .is_some_and(|id| !id.is_empty() && id != PUBLIC_CLIENT),
        "a dynamically registered client: {client_id}"
    );
}

#[tokio::test]
async fn python_sdk_client_signs_in_as_a_preregistered_client_and_plans_a_trip() {
    assert_eq!(
        python_sdk_signs_in(Some(PUBLIC_CLIENT)).await,
        PUBLIC_CLIENT
    );
}

/// A chat-completions endpoint on 127.0.0.1 answering every request with `reply` (the
/// LLM `lodge connect` samples with).
async fn fake_openai(reply: &'static str) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || async move {
            let response = json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "fake-model-1",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": reply}}]
            });
            ([("content-type", "application/json")], response.to_string())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn lodge_connect_signs_in(protocol: &str, oauth: &[&str]) {
    let s = Setup::start().await;
    let openai = fake_openai(SAMPLED).await;
    let dir = tempfile::tempdir().unwrap();
    let answers = dir.path().join("answers.json");
    std::fs::write(
        &answers,
        r#"{"destination": "Lisbon", "days": 3, "flights": false}"#,
    )
    .unwrap();
    let mut command = tokio::process::Command::new(LODGE);
    command
        .arg("connect")
        .args([&s.lodge.url(), "--protocol", protocol])
        .args(oauth)
        .args(["--call", "plan_trip", "--answers"])
        .arg(&answers)
        .args(["--sampling", "openai", "--sampling-url", &openai])
        .args(["--sampling-model", "test-model", "--approve-sampling"])
        .env("OPENAI_API_KEY", "sk-test")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_MODEL")
        .env_remove("ANTHROPIC_API_KEY")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("lodge connect did not finish in 90 s")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let result: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr: {stderr}"));
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(
        result["content"][0]["text"],
        format!("{TRIP}\n\n{SAMPLED}"),
        "{result}"
    );
    assert!(
        stderr.contains(&format!(
            "answered the form \"{ELICITATION}\" from --answers"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn lodge_connect_oauth_headless_registers_signs_in_and_plans_a_trip_legacy_era() {
    lodge_connect_signs_in("legacy", &["--oauth-headless"]).await;
}

#[tokio::test]
async fn lodge_connect_oauth_headless_signs_in_and_plans_a_trip_modern_era() {
    lodge_connect_signs_in("modern", &["--oauth-headless"]).await;
}

#[tokio::test]
async fn lodge_connect_oauth_headless_with_a_preregistered_client() {
    lodge_connect_signs_in(
        "legacy",
        &["--oauth-headless", "--oauth-client-id", PUBLIC_CLIENT],
    )
    .await;
}
