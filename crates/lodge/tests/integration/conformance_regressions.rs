//! Deviations from the spec that the conformance runs (scripts/conformance.sh) found in
//! Lodge. Each check runs twice: against examples/conformance-server reached directly over
//! HTTP (rmcp's own transport; proves the expectation is right and reachable), and through
//! Lodge hosting the same server over stdio. The Lodge half is `#[ignore]`d with the bug it
//! pins until it is fixed; un-ignore it with the fix.
#![allow(clippy::unwrap_used)]

use crate::common::{Lodge, conformance_server, conformance_server_toml, parse_sse};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `conformance-server --http 127.0.0.1:0`, killed on drop.
struct Direct {
    child: Child,
    url: String,
}

impl Direct {
    fn start() -> Direct {
        crate::common::install_tls_provider();
        let mut child = Command::new(conformance_server())
            .args(["--http", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .split("listening on ")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected banner: {first}"))
            .to_string();
        Direct { child, url }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lodge() -> (Lodge, String) {
    let lodge = Lodge::start(&conformance_server_toml());
    let url = lodge.url();
    (lodge, url)
}

const MODERN: &str = "2026-07-28";

fn modern_meta() -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "regressions", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}})
}

/// POSTs `body` with the headers a 2026-07-28 client sends (`headers` override them).
async fn post_modern(url: &str, body: Value, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let method = body["method"].as_str().unwrap_or("").to_string();
    let mut all: Vec<(&str, String)> = vec![
        ("content-type", "application/json".into()),
        ("accept", "application/json, text/event-stream".into()),
        ("mcp-protocol-version", MODERN.into()),
        ("mcp-method", method),
    ];
    if let Some(name) = body["params"]["name"].as_str() {
        all.push(("mcp-name", name.into()));
    }
    for (k, v) in headers {
        all.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
        all.push((k, (*v).into()));
    }
    let mut req = reqwest::Client::new().post(url);
    for (k, v) in all {
        req = req.header(k, v);
    }
    let resp = req.body(body.to_string()).send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let json = if content_type.starts_with("text/event-stream") {
        parse_sse(&text)
            .iter()
            .rev()
            .find(|e| !e.data.is_empty())
            .map(|e| e.json())
            .unwrap_or(Value::Null)
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    (status, text, json)
}

// ---------------------------------------------------------------------------------------
// 1. SSE `retry:` on POST streams (2025-11-25, SEP-1699).

/// The first event of a POST SSE stream is a priming event with an id, and the stream tells
/// the client how long to wait before reconnecting (`retry:`). Spec 2025-11-25
/// basic/transports "Sending Messages to the Server" 6.a/6.b (SEP-1699): the server SHOULD
/// send the priming event and, before closing a connection, a `retry` field; the suite's
/// `server-sse-polling` reports its absence as a WARNING (`server-sse-retry-field`).
async fn check_priming_event_carries_retry(url: &str) {
    let http = reqwest::Client::new();
    let init = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
                "protocolVersion":"2025-11-25","capabilities":{},
                "clientInfo":{"name":"regressions","version":"1"}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = init.text().await.unwrap();
    let post = |body: Value| {
        http.post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string())
            .send()
    };
    post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await
        .unwrap();
    let body = post(json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"test_reconnection","arguments":{}}}))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let first_event = body.split("\n\n").next().unwrap();
    assert!(
        first_event.lines().any(|l| l.starts_with("id:")),
        "priming event has an id: {body:?}"
    );
    assert!(
        first_event
            .lines()
            .any(|l| l.starts_with("retry:") && l[6..].trim().parse::<u64>().is_ok()),
        "the priming event should carry `retry: <ms>`: {body:?}"
    );
}

#[tokio::test]
async fn direct_priming_event_carries_retry() {
    let direct = Direct::start();
    check_priming_event_carries_retry(&direct.url).await;
}

#[tokio::test]
async fn lodge_priming_event_carries_retry() {
    let (_lodge, url) = lodge();
    check_priming_event_carries_retry(&url).await;
}

// ---------------------------------------------------------------------------------------
// 2. Header mismatch is checked before version support (2026-07-28).

/// `_meta` names an unknown version while the `MCP-Protocol-Version` header says
/// 2026-07-28: the values disagree, so the answer is 400 + -32020 HeaderMismatch (spec
/// 2026-07-28 basic/transports/streamable-http "Protocol Version Header"; suite check
/// `sep-2575-http-server-header-mismatch-400`, scored). -32022 is for a version the server
/// does not support when header and body agree.
async fn check_header_mismatch_wins_over_unsupported_version(url: &str) {
    let mut meta = modern_meta();
    meta["io.modelcontextprotocol/protocolVersion"] = json!("v999.0.0");
    let (status, text, reply) = post_modern(
        url,
        json!({"jsonrpc":"2.0","id":302,"method":"server/discover","params":{"_meta": meta}}),
        &[],
    )
    .await;
    assert_eq!(
        (status, &reply["error"]["code"], &reply["id"]),
        (400, &json!(-32020), &json!(302)),
        "{text}"
    );
    // Header and body agree on an unsupported version: -32022 naming both.
    let (status, text, reply) = post_modern(
        url,
        json!({"jsonrpc":"2.0","id":301,"method":"server/discover","params":{"_meta": meta}}),
        &[("mcp-protocol-version", "v999.0.0")],
    )
    .await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (400, &json!(-32022)),
        "{text}"
    );
    assert_eq!(reply["error"]["data"]["requested"], "v999.0.0", "{text}");
}

#[tokio::test]
async fn direct_header_mismatch_wins_over_unsupported_version() {
    let direct = Direct::start();
    check_header_mismatch_wins_over_unsupported_version(&direct.url).await;
}

#[tokio::test]
async fn lodge_header_mismatch_wins_over_unsupported_version() {
    let (_lodge, url) = lodge();
    check_header_mismatch_wins_over_unsupported_version(&url).await;
}

// ---------------------------------------------------------------------------------------
// 3. `initialize` on the modern wire is a removed method (2026-07-28).

/// An `initialize` request whose `_meta` and `MCP-Protocol-Version` name 2026-07-28 is a
/// modern request for a method that revision removed: 404 + -32601, and no session (spec
/// 2026-07-28 basic/index "Removed methods", basic/versioning; suite check
/// `sep-2575-http-server-method-not-found-404-initialize`, scored).
async fn check_modern_initialize_is_removed(url: &str) {
    let (status, text, reply) = post_modern(
        url,
        json!({"jsonrpc":"2.0","id":500,"method":"initialize","params":{"_meta": modern_meta()}}),
        &[],
    )
    .await;
    assert_eq!(
        (status, &reply["error"]["code"], &reply["id"]),
        (404, &json!(-32601), &json!(500)),
        "{text}"
    );
}

#[tokio::test]
async fn direct_modern_initialize_is_removed() {
    let direct = Direct::start();
    check_modern_initialize_is_removed(&direct.url).await;
}

#[tokio::test]
async fn lodge_modern_initialize_is_removed() {
    let (_lodge, url) = lodge();
    check_modern_initialize_is_removed(&url).await;
}

// ---------------------------------------------------------------------------------------
// 4. List changes reach `subscriptions/listen` streams opened by other requests (2026-07-28).

/// A `subscriptions/listen` stream opened by one stateless request receives the
/// `notifications/tools/list_changed` caused by another stateless request (neither names a
/// `Lodge-Session-Id`): spec 2026-07-28 basic/patterns/subscriptions (a server with
/// `tools.listChanged` SHOULD notify listen streams); suite check
/// `sep-2575-server-sends-tools-list-changed-on-subscription` (a SHOULD: WARNING).
async fn check_list_changed_reaches_other_listen_streams(url: &str) {
    let listen = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "subscriptions/listen")
        .body(
            json!({"jsonrpc":"2.0","id":"listen-1","method":"subscriptions/listen","params":{
                "_meta": modern_meta(), "notifications": {"toolsListChanged": true}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(listen.status().as_u16(), 200);
    let url = url.to_string();
    let trigger = async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        post_modern(
            &url,
            json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
                "name":"test_trigger_tool_change","arguments":{},"_meta": modern_meta()}}),
            &[],
        )
        .await
    };
    let reading = crate::common::read_events_until(listen, |e| {
        e.data.contains("notifications/tools/list_changed")
    });
    let (events, (status, text, _)) = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::join!(reading, trigger)
    })
    .await
    .expect("no notifications/tools/list_changed on the listen stream within 5 s");
    assert_eq!(status, 200, "{text}");
    let frames: Vec<Value> = events
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| e.json())
        .collect();
    assert_eq!(
        frames[0]["method"],
        "notifications/subscriptions/acknowledged"
    );
    let changed = frames.last().unwrap();
    assert_eq!(changed["method"], "notifications/tools/list_changed");
    assert_eq!(
        changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        "listen-1"
    );
}

#[tokio::test]
async fn direct_list_changed_reaches_other_listen_streams() {
    let direct = Direct::start();
    check_list_changed_reaches_other_listen_streams(&direct.url).await;
}

/// With `anonymous = "shared"`, header-less requests share one sandbox, so a list change
/// one request causes reaches a listen stream another request opened.
#[tokio::test]
async fn lodge_list_changed_reaches_other_listen_streams() {
    let lodge = Lodge::start(&format!(
        "{}anonymous = \"shared\"\n",
        conformance_server_toml()
    ));
    let url = lodge.url();
    check_list_changed_reaches_other_listen_streams(&url).await;
}

// ---------------------------------------------------------------------------------------
// 5. `Mcp-Param-*` headers are validated against the tool's `x-mcp-header` properties.

/// `test_custom_header` declares `region` with `"x-mcp-header": "Region"`. A 2026-07-28
/// `tools/call` must mirror the value in `Mcp-Param-Region` (plain, or `=?base64?…?=`); a
/// missing, mismatching or undecodable header is 400 + -32020 HeaderMismatch (spec
/// 2026-07-28 basic/transports/streamable-http "Custom Headers", SEP-2243; suite scenario
/// `http-custom-header-server-validation`, pending). Through Lodge the stdio server never
/// sees HTTP headers, so Lodge has to do this check itself.
async fn check_custom_headers_are_validated(url: &str) {
    let call = |id: u64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
            "name":"test_custom_header","arguments":{"region":"Hello"},"_meta": modern_meta()}})
    };
    let (status, text, reply) = post_modern(url, call(1), &[("mcp-param-region", "Hello")]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        reply["result"]["content"][0]["text"], "Region: Hello",
        "{text}"
    );
    let (status, text, _) =
        post_modern(url, call(2), &[("mcp-param-region", "=?base64?SGVsbG8=?=")]).await;
    assert_eq!(status, 200, "base64 form of the same value: {text}");
    for (id, header) in [
        (3, None),
        (4, Some("Goodbye")),
        (5, Some("=?base64?SGVs!!!bG8=?=")),
    ] {
        let headers: Vec<(&str, &str)> = header
            .map(|h| ("mcp-param-region", h))
            .into_iter()
            .collect();
        let (status, text, reply) = post_modern(url, call(id), &headers).await;
        assert_eq!(
            (status, &reply["error"]["code"], &reply["id"]),
            (400, &json!(-32020), &json!(id)),
            "Mcp-Param-Region {header:?}: {text}"
        );
    }
}

#[tokio::test]
async fn direct_custom_headers_are_validated() {
    let direct = Direct::start();
    check_custom_headers_are_validated(&direct.url).await;
}

#[tokio::test]
#[ignore = "lodge bug: Mcp-Param-* headers are not checked against the tool's x-mcp-header properties (stdio servers never see them)"]
async fn lodge_custom_headers_are_validated() {
    let (_lodge, url) = lodge();
    check_custom_headers_are_validated(&url).await;
}
