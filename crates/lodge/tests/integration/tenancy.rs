//! Quotas per principal and the admin listener's own authentication, against the real
//! `lodge` (without `[auth]` every client is the one anonymous principal, which is
//! enough to prove the quota's counting and answers; auth.rs proves them per user).
#![allow(clippy::unwrap_used)]

use crate::common::{LODGE, Lodge, Raw, demo_server_toml};
use serde_json::{Value, json};
use std::process::{Command, Stdio};

fn initialize() -> Value {
    json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},
        "clientInfo":{"name":"tenancy-test","version":"1"}}})
}

/// The JSON-RPC error of a refused initialize, after checking its 429 and Retry-After.
fn quota_refusal(reply: &crate::common::Reply) -> (u64, String) {
    assert_eq!(reply.status, 429, "{}", reply.body);
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], -32007, "{body}");
    assert_eq!(body["id"], 0, "{body}");
    (
        retry,
        body["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_principal_at_its_live_session_quota_gets_429_until_one_ends() {
    let lodge = Lodge::start(&format!(
        "[quota]\nmax_sessions = 2\n{}",
        demo_server_toml()
    ));
    let mut first = Raw::new(lodge.url());
    first.initialize().await;
    let mut second = Raw::new(lodge.url());
    second.initialize().await;

    let third = Raw::new(lodge.url());
    let (retry, message) = quota_refusal(&third.post(initialize()).await);
    assert_eq!(retry, 60);
    assert!(
        message.contains("2 live sessions") && message.contains("max_sessions"),
        "{message}"
    );

    // Ending one frees its place at once.
    let session = first.session.clone().unwrap();
    let deleted = Raw::send(
        reqwest::Client::new()
            .delete(lodge.url())
            .header("mcp-session-id", session),
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let mut again = Raw::new(lodge.url());
    again.initialize().await;
}

#[tokio::test]
async fn a_server_s_own_rate_quota_overrides_the_global_one_and_says_when_to_retry() {
    let config = format!(
        "[quota]\nsessions_per_minute = 100\n{}quota = {{ sessions_per_minute = 2 }}\n",
        demo_server_toml()
    );
    let lodge = Lodge::start(&config);
    for _ in 0..2 {
        let mut client = Raw::new(lodge.url());
        client.initialize().await;
    }
    let refused = Raw::new(lodge.url()).post(initialize()).await;
    let (retry, message) = quota_refusal(&refused);
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        message.contains("sessions_per_minute")
            && message.contains(&format!("try again in {retry}s")),
        "{message}"
    );
}

#[tokio::test]
async fn the_admin_api_needs_its_bearer_token_but_health_checks_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "s3cret-admin-token-0123456789\n").unwrap();
    let config = format!(
        "[admin]\ntoken_file = {token_file:?}\n{}",
        demo_server_toml()
    );
    let (lodge, admin) = Lodge::with_admin(&config).await;
    let http = reqwest::Client::new();
    let health = Raw::send(http.get(format!("{admin}/readyz"))).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ready\n"));

    let sessions = format!("{admin}/admin/sessions");
    for (auth, what) in [
        (None, "no token"),
        (Some("Bearer wrong-token-0123456789"), "a wrong token"),
        (Some("Basic czNjcmV0"), "not a bearer token"),
    ] {
        let mut request = http.get(&sessions);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let reply = Raw::send(request).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert_eq!(
            reply.headers["www-authenticate"], r#"Bearer realm="lodge-admin""#,
            "{what}"
        );
        let stop = Raw::send(http.delete(format!("{sessions}/x"))).await;
        assert_eq!(stop.status, 401, "{what}: DELETE {}", stop.body);
        let mut scrape = http.get(format!("{admin}/metrics"));
        if let Some(auth) = auth {
            scrape = scrape.header("authorization", auth);
        }
        let scrape = Raw::send(scrape).await;
        assert_eq!(scrape.status, 401, "{what}: /metrics {}", scrape.body);
    }
    // Prometheus scrapes with the token.
    let scrape = Raw::send(
        http.get(format!("{admin}/metrics"))
            .bearer_auth("s3cret-admin-token-0123456789"),
    )
    .await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    assert!(
        scrape.body.contains("lodge_sessions_active{"),
        "{}",
        scrape.body
    );
    let mut client = Raw::new(lodge.url());
    client.initialize().await;
    let listed = Raw::send(
        http.get(&sessions)
            .bearer_auth("s3cret-admin-token-0123456789"),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed: Value = serde_json::from_str(&listed.body).unwrap();
    assert_eq!(
        listed["sessions"][0]["id"],
        client.session.clone().unwrap().as_str(),
        "{listed}"
    );
}

#[test]
fn an_unauthenticated_admin_listener_is_refused_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lodge.toml");
    std::fs::write(&config, demo_server_toml()).unwrap();
    let out = Command::new(LODGE)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("would let anyone who reaches it stop sessions")
            && stderr.contains("[admin] token_file"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// The same, per signed-in user, against the oidc-provider of common::idp.

use crate::common::idp::{Format, Idp, Mint};

/// The resource a Lodge's tokens are for, from its metadata.
async fn resource_of(lodge: &Lodge) -> String {
    let url = format!("{}/.well-known/oauth-protected-resource", lodge.base);
    let metadata: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    metadata["resource"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn quotas_count_each_user_on_their_own() {
    let idp = Idp::start();
    let config = format!(
        "{}[quota]\nmax_sessions = 1\n{}",
        idp.auth_toml(""),
        demo_server_toml()
    );
    let lodge = Lodge::start(&config);
    let resource = resource_of(&lodge).await;
    let alice = idp.token(Mint::user("alice", Format::Jwt, &resource)).await;
    let bob = idp
        .token(Mint::user("bob", Format::Opaque, &resource))
        .await;
    Raw::signed_in(lodge.url(), &alice).initialize().await;
    let (_, message) = quota_refusal(&Raw::signed_in(lodge.url(), &alice).post(initialize()).await);
    assert!(message.contains("1 live sessions"), "{message}");
    // Bob's allowance is his own.
    Raw::signed_in(lodge.url(), &bob).initialize().await;
}

#[tokio::test]
async fn a_token_with_the_admin_scope_opens_the_admin_api_and_one_without_does_not() {
    let idp = Idp::start();
    let config = format!(
        "{}[admin]\nscope = \"other\"\n{}",
        idp.auth_toml(""),
        demo_server_toml()
    );
    let (lodge, admin) = Lodge::with_admin(&config).await;
    let resource = resource_of(&lodge).await;
    let sessions = format!("{admin}/admin/sessions");
    let operator = idp
        .token(Mint::user("ops", Format::Jwt, &resource).scope("other"))
        .await;
    let user = idp.token(Mint::user("alice", Format::Jwt, &resource)).await;
    let elsewhere = idp
        .token(Mint::user("ops", Format::Jwt, "http://elsewhere.example/mcp").scope("other"))
        .await;
    let http = reqwest::Client::new();
    let listed = Raw::send(http.get(&sessions).bearer_auth(&operator)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    for (token, what) in [
        (&user, "a token without the admin scope"),
        (&elsewhere, "an admin token for another resource"),
    ] {
        let refused = Raw::send(http.get(&sessions).bearer_auth(token)).await;
        assert_eq!(refused.status, 401, "{what}: {}", refused.body);
    }
}

#[tokio::test]
async fn an_http_server_learns_its_user_from_headers_and_never_sees_the_token() {
    let idp = Idp::start();
    let python = crate::common::venv_python();
    let fixture = crate::common::repo_root().join("tests/fixtures/python/whoami_http_server.py");
    let config = format!(
        "{}[[server]]\nname = \"whoami\"\ncommand = [{python:?}, {fixture:?}]\ntransport = \"http\"\nport = 8000\npath = \"/mcp\"\n",
        idp.auth_toml("")
    );
    let Some(lodge) = crate::common::start_namespaces_in(tempfile::tempdir().unwrap(), &config)
    else {
        return;
    };
    let resource = resource_of(&lodge).await;
    let token = idp.token(Mint::user("carol", Format::Jwt, &resource)).await;
    let mut raw = Raw::signed_in(lodge.url(), &token);
    raw.initialize().await;
    let seen: Value = serde_json::from_str(&raw.call_text(1, "whoami", json!({})).await).unwrap();
    assert_eq!(
        seen,
        json!({"principal": "carol", "issuer": idp.issuer(), "authorization": false, "env_principal": "carol", "traceparent": null})
    );
}

/// A client's W3C `traceparent` reaches an HTTP-transport server continued: the same
/// trace id and flags, Lodge's own parent id.
#[tokio::test]
async fn an_http_server_sees_the_clients_trace_continued() {
    let python = crate::common::venv_python();
    let fixture = crate::common::repo_root().join("tests/fixtures/python/whoami_http_server.py");
    let config = format!(
        "[[server]]\nname = \"whoami\"\ncommand = [{python:?}, {fixture:?}]\ntransport = \"http\"\nport = 8000\npath = \"/mcp\"\n"
    );
    let Some(lodge) = crate::common::start_namespaces_in(tempfile::tempdir().unwrap(), &config)
    else {
        return;
    };
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}});
    let reply = Raw::send(raw.post_builder(&call).header("traceparent", client)).await;
    let answer = crate::common::parse_sse(&reply.body)
        .last()
        .map(|e| e.json())
        .unwrap_or_else(|| serde_json::from_str(&reply.body).unwrap());
    let seen: Value =
        serde_json::from_str(answer["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    let seen = seen["traceparent"].as_str().unwrap();
    let (kept, parent) = (seen.split('-').collect::<Vec<_>>(), "00f067aa0ba902b7");
    assert_eq!(
        (kept[0], kept[1], kept[3]),
        ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01"),
        "{seen}"
    );
    assert!(kept[2].len() == 16 && kept[2] != parent, "{seen}");
    // A malformed one is not passed on.
    let reply = Raw::send(raw.post_builder(&call).header("traceparent", "00-nonsense")).await;
    assert!(
        reply.body.contains(r#"\"traceparent\": null"#),
        "{}",
        reply.body
    );
}

// ---------------------------------------------------------------------------------------
// Continuity and kept files, per signed-in user.

/// Ends `raw`'s legacy session with a DELETE.
async fn end(raw: &Raw) {
    let deleted = Raw::send(
        raw.http
            .delete(&raw.url)
            .header("mcp-session-id", raw.session.as_deref().unwrap()),
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
}

/// The demo's `session_info` instance: which server process answered.
async fn instance(raw: &Raw) -> Value {
    let info: Value =
        serde_json::from_str(&raw.call_text(9, "session_info", json!({})).await).unwrap();
    info["instance"].clone()
}

/// A signed-in client that opens a new MCP session for every call (as some agents do)
/// keeps one server process and its state with `continuity = "principal"`, across
/// eras; another user gets a process and state of their own.
#[tokio::test]
async fn with_continuity_a_user_churning_sessions_keeps_their_own_server_and_state() {
    let idp = Idp::start();
    let config = format!(
        "{}{}continuity = \"principal\"\n",
        idp.auth_toml(""),
        demo_server_toml()
    );
    let lodge = Lodge::start(&config);
    let resource = resource_of(&lodge).await;
    let alice = idp.token(Mint::user("alice", Format::Jwt, &resource)).await;
    let bob = idp
        .token(Mint::user("bob", Format::Opaque, &resource))
        .await;
    let increment = json!({"action": "increment"});

    let mut seen = Vec::new();
    for n in 1..=3 {
        let mut raw = Raw::signed_in(lodge.url(), &alice);
        raw.initialize().await;
        let count = raw.call_text(1, "counter", increment.clone()).await;
        assert_eq!(count, n.to_string());
        seen.push(instance(&raw).await);
        end(&raw).await;
    }
    assert!(seen.iter().all(|i| *i == seen[0]), "{seen:?}");

    // Her 2026-07-28 requests, with no session id at all, land in the same process.
    let raw = Raw::signed_in(lodge.url(), &alice);
    let reply = raw.modern_call(1, "counter", increment.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains(r#""text":"4""#), "{}", reply.body);

    let mut raw = Raw::signed_in(lodge.url(), &bob);
    raw.initialize().await;
    assert_eq!(raw.call_text(1, "counter", increment).await, "1");
    assert_ne!(instance(&raw).await, seen[0]);
}

/// With `storage = "principal"`, the files one session of a user leaves in `/session`
/// are there for that user's next session (a new sandbox), and never for another user.
#[tokio::test]
async fn with_principal_storage_a_users_files_outlive_the_sandbox_and_only_they_see_them() {
    let idp = Idp::start();
    let config = format!(
        "{}{}storage = \"principal\"\n",
        idp.auth_toml(""),
        demo_server_toml()
    );
    let lodge = Lodge::start(&config);
    let resource = resource_of(&lodge).await;
    let alice = idp.token(Mint::user("alice", Format::Jwt, &resource)).await;
    let bob = idp.token(Mint::user("bob", Format::Jwt, &resource)).await;
    let write = json!({"action": "write", "name": "plan", "text": "Lisbon in May"});
    let read = json!({"action": "read", "name": "plan"});

    let mut first = Raw::signed_in(lodge.url(), &alice);
    first.initialize().await;
    assert_eq!(first.call_text(1, "notes", write).await, "saved plan");
    let before = instance(&first).await;
    end(&first).await;

    // Her files are saved back once the sandbox's processes are gone; a session that
    // starts before then starts from the files as they were.
    crate::common::eventually(
        std::time::Duration::from_secs(10),
        "alice's next session to find her note",
        async || {
            let mut next = Raw::signed_in(lodge.url(), &alice);
            next.initialize().await;
            assert_ne!(instance(&next).await, before, "a new sandbox");
            let text = next.call_text(1, "notes", read.clone()).await;
            end(&next).await;
            text == "Lisbon in May"
        },
    )
    .await;

    let mut other = Raw::signed_in(lodge.url(), &bob);
    other.initialize().await;
    let listed = other.call_text(1, "notes", json!({"action": "list"})).await;
    assert_eq!(listed, "", "bob sees alice's files: {listed}");
    let reply = other.call(2, "notes", read).await;
    assert!(reply.body.contains("reading note"), "{}", reply.body);
}
