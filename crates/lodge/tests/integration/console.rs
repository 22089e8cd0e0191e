//! The web console (`/console` on the admin listener) in a real browser: headless
//! Chromium (scripts/setup-chromium.sh) driven by playwright-core
//! (scripts/setup-node-packages.sh) runs tests/fixtures/node/console.mjs against a real
//! Lodge with an admin token and a live session; then the session's own client finds it
//! gone. Plus what the pages and `/admin/history` send, without a browser.

#![allow(clippy::unwrap_used)]

use crate::common::{LODGE, Lodge, Raw, demo_server_toml, node_package_paths, repo_root};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;

const TOKEN: &str = "console-admin-token-0123456789";

/// What the demo server below says on stderr first: markup the console must show as text.
const STDERR_MARKUP: &str = "<b id=injected>not markup</b>";

/// The demo server, saying [`STDERR_MARKUP`] on stderr first.
fn marked_up_demo_toml() -> String {
    let bin_dir = std::path::Path::new(LODGE).parent().unwrap().display();
    format!(
        "[[server]]\nname = \"demo\"\ncommand = [\"sh\", \"-c\", \"echo '{STDERR_MARKUP}' >&2; exec {LODGE} demo-server\"]\n\
         [server.sandbox]\nbinds = [\"{bin_dir}:ro\"]\n"
    )
}

/// A Lodge whose admin API needs [`TOKEN`], hosting `servers`; returns it, its admin URL
/// and the token file's directory (kept alive).
async fn lodge_with_token(servers: &str) -> (Lodge, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = format!("[admin]\ntoken_file = {token_file:?}\n{servers}");
    let (lodge, admin) = Lodge::with_admin(&config).await;
    (lodge, admin, dir)
}

/// The Chromium binary, or `None` (with the reason printed) where it cannot be had and
/// this is no CI run; on CI (`CI=true`) its absence fails the test.
fn chromium() -> Option<String> {
    let out = std::process::Command::new(repo_root().join("scripts/setup-chromium.sh"))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !path.is_empty() {
        return Some(path);
    }
    let why = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the console's browser test, but scripts/setup-chromium.sh found no Chromium:\n{why}"
    );
    eprintln!("skipping the console's browser test: no Chromium here:\n{why}");
    None
}

/// A node that runs playwright-core (>= 20): setup-node-packages.sh's when it is new
/// enough (Debian 12's is 18), else scripts/setup-node.sh's Node 22.
fn node_for_playwright(system: String) -> String {
    let recent = std::process::Command::new(&system)
        .args([
            "-e",
            "process.exit(+process.versions.node.split('.')[0] >= 20 ? 0 : 1)",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if recent {
        return system;
    }
    let out = std::process::Command::new(repo_root().join("scripts/setup-node.sh"))
        .arg("node")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/setup-node.sh node failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn the_console_shows_a_live_session_its_events_and_stops_it_in_a_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let paths = node_package_paths();
    let (lodge, admin, _dir) = lodge_with_token(&marked_up_demo_toml()).await;
    let mut client = Raw::new(lodge.url());
    client.initialize().await;
    let session = client.session.clone().unwrap();

    let shots = repo_root().join("target/console");
    let script = repo_root().join("tests/fixtures/node/console.mjs");
    let run = tokio::process::Command::new(node_for_playwright(paths("NODE")))
        .arg(&script)
        .env("ADMIN_URL", &admin)
        .env("ADMIN_TOKEN", TOKEN)
        .env("SESSION_ID", &session)
        .env("STDERR_MARKUP", STDERR_MARKUP)
        .env("CHROMIUM", &chromium)
        .env("PLAYWRIGHT", paths("PLAYWRIGHT"))
        .env("SCREENSHOT_DIR", &shots)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("console.mjs did not finish in 120 s")
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("console.mjs: ok"),
        "console.mjs failed ({}; screenshots in {}):\n{stdout}\n{stderr}",
        out.status,
        shots.display()
    );
    assert!(shots.join("console.png").is_file());

    // The Stop button really ended the session: its client is told so.
    let reply = client
        .post(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
}

#[tokio::test]
async fn the_console_pages_are_open_with_a_strict_policy_and_its_data_needs_the_token() {
    let (lodge, admin, _dir) = lodge_with_token(&demo_server_toml()).await;
    let http = reqwest::Client::new();
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/sessions/some-id", "text/html"),
        ("/console/assets/common.js", "text/javascript"),
        ("/console/assets/index.js", "text/javascript"),
        ("/console/assets/session.js", "text/javascript"),
        ("/console/assets/console.css", "text/css"),
    ] {
        let reply = Raw::send(http.get(format!("{admin}{path}"))).await;
        assert_eq!(reply.status, 200, "{path}");
        let h = |name: &str| {
            reply
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            h("content-type").starts_with(kind),
            "{path}: {:?}",
            h("content-type")
        );
        let csp = h("content-security-policy");
        assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        if kind == "text/html" {
            // No inline script and nothing from elsewhere.
            assert!(!reply.body.contains("<script>"), "{path}");
            assert!(!reply.body.contains("http://"), "{path}");
            assert!(!reply.body.contains("https://"), "{path}");
        }
    }

    let doc = Raw::send(http.get(format!("{admin}/admin/openapi.json"))).await;
    let doc: Value = serde_json::from_str(&doc.body).unwrap();
    assert!(doc["paths"]["/admin/history"]["get"].is_object(), "{doc}");

    let history = format!("{admin}/admin/history");
    let refused = Raw::send(http.get(&history)).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let reply = Raw::send(http.get(&history).bearer_auth(TOKEN)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["sample_seconds"], 10, "{body}");
    // The sampler's first look, when Lodge started, and this request's: no sessions yet.
    let minutes = body["minutes"].as_array().unwrap();
    assert!(minutes.len() <= 2, "{body}");
    assert!(
        minutes
            .iter()
            .all(|m| m["live_sessions"] == 0 && m["start"].as_u64().unwrap() % 60 == 0),
        "{body}"
    );

    // A live session shows in the current minute at once (the request looks too).
    let mut client = Raw::new(lodge.url());
    client.initialize().await;
    let reply = Raw::send(http.get(&history).bearer_auth(TOKEN)).await;
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    let last = body["minutes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["live_sessions"], 1, "{body}");
    // Each JSON-RPC request is counted in its minute, once.
    let requests = |body: &Value| -> u64 {
        let minutes = body["minutes"].as_array().unwrap();
        minutes
            .iter()
            .map(|m| m["requests"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(requests(&body), 1, "initialize: {body}");
    client
        .call(2, "echo", serde_json::json!({"text": "hi"}))
        .await;
    client
        .call(3, "echo", serde_json::json!({"text": "hi"}))
        .await;
    let reply = Raw::send(http.get(&history).bearer_auth(TOKEN)).await;
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(requests(&body), 3, "and two calls: {body}");
}
