//! Malformed and hostile requests at the front (issue 13, item 3): one table, each row
//! a request (method, headers, body bytes) and the exact HTTP status and JSON-RPC error
//! code (and id) the spec calls for. A healthy session alongside makes a call after
//! every row and must never be disturbed; so must the session the rows aim at.
#![allow(clippy::unwrap_used)]

use crate::common::{Lodge, Raw};
use serde_json::{Value, json};
use std::time::Duration;

/// Sessions a row may name in a header value, filled in when it runs.
const VICTIM: &str = "{VICTIM}";
const OLD: &str = "{OLD}";
const ENDED: &str = "{ENDED}";

struct Row {
    name: String,
    method: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    status: u16,
    /// The JSON-RPC error code of the answer (for an SSE answer, of its last event);
    /// `None`: no JSON-RPC error (or, for a 4xx from the HTTP layer, no JSON body).
    code: Option<i64>,
    /// The answer's `id`, checked where set.
    id: Option<Value>,
    /// A reset connection also counts as the expected refusal: the server stopped
    /// reading (and answered, then closed) while the client was still sending, so the
    /// client may see the reset before the answer.
    or_reset: bool,
}

fn row(name: impl Into<String>, method: &'static str, body: impl Into<Vec<u8>>) -> Row {
    Row {
        name: name.into(),
        method,
        headers: vec![
            ("content-type", b"application/json".to_vec()),
            ("accept", b"application/json, text/event-stream".to_vec()),
        ],
        body: body.into(),
        status: 0,
        code: None,
        id: None,
        or_reset: false,
    }
}

/// A POST with the usual headers.
fn post(name: impl Into<String>, body: impl Into<Vec<u8>>) -> Row {
    row(name, "POST", body)
}

impl Row {
    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Row {
        self.headers.push((name, value.into()));
        self
    }
    fn without(mut self, name: &str) -> Row {
        self.headers.retain(|(n, _)| *n != name);
        self
    }
    fn session(self, which: &str) -> Row {
        self.header("mcp-session-id", which.as_bytes().to_vec())
    }
    fn expect(mut self, status: u16, code: Option<i64>, id: Option<Value>) -> Row {
        self.status = status;
        self.code = code;
        self.id = id;
        self
    }
    fn or_reset(mut self) -> Row {
        self.or_reset = true;
        self
    }
    /// 400 Invalid Request (-32600) answering `id`.
    fn invalid(self, id: Value) -> Row {
        self.expect(400, Some(-32600), Some(id))
    }
    /// 400 Parse error (-32700), id null.
    fn parse_error(self) -> Row {
        self.expect(400, Some(-32700), Some(Value::Null))
    }
}

fn call(id: Value, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}}).to_string()
}

fn nested(levels: usize) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"x","deep":{}{}}}}}}}"#,
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

fn with_bytes(prefix: &str, bad: &[u8], suffix: &str) -> Vec<u8> {
    let mut body = prefix.as_bytes().to_vec();
    body.extend_from_slice(bad);
    body.extend_from_slice(suffix.as_bytes());
    body
}

/// 2026-07-28 `_meta` as a conforming client sends it.
fn modern_meta(version: &str) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": version,
           "io.modelcontextprotocol/clientCapabilities": {}})
}

fn modern(name: &str, params: Value) -> Row {
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":params});
    post(name, body.to_string())
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
}

fn table() -> Vec<Row> {
    let id1 = || json!(1);
    let null = || Value::Null;
    let mut rows = vec![
        // Not JSON at all: -32700, id null.
        post("truncated object", "{").parse_error(),
        post("empty body", "").parse_error(),
        post("truncated request", r#"{"jsonrpc":"2.0","id":1,"method":"x""#).parse_error(),
        post("bare word", "nul").parse_error(),
        post("trailing garbage", r#"{"jsonrpc":"2.0","method":"x"}}"#).parse_error(),
        post("single quotes", "{'jsonrpc':'2.0','id':1,'method':'x'}").parse_error(),
        post("invalid escape", r#"{"jsonrpc":"2.0","id":1,"method":"x\q"}"#).parse_error(),
        post("a shape error, then broken JSON", r#"{"jsonrpc":2.0,"id":1,"method":"#).parse_error(),
        // Invalid UTF-8 anywhere: -32700 (never relayed as U+FFFD).
        post(
            "invalid UTF-8 inside an argument string",
            with_bytes(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":""#,
                b"\xff\xfe",
                r#""}}}"#,
            ),
        )
        .session(VICTIM)
        .parse_error(),
        post(
            "invalid UTF-8 inside a string Lodge reads",
            with_bytes(r#"{"jsonrpc":"2.0","id":1,"method":"tools/"#, b"\xc3\x28", r#""}"#),
        )
        .parse_error(),
        post(
            "overlong UTF-8 encoding",
            with_bytes(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":""#, b"\xc0\xaf", r#""}}"#),
        )
        .parse_error(),
        post("a raw 0xff outside strings", with_bytes(r#"{"jsonrpc":"2.0","id":1"#, b"\xff", "}"))
            .parse_error(),
        post("a UTF-8 byte order mark", with_bytes("", b"\xef\xbb\xbf", &call(json!(1), "x")))
            .parse_error(),
        // Valid JSON that is not a request: -32600, with the id where it can be read.
        post("a number", "5").invalid(null()),
        post("a string", r#""tools/list""#).invalid(null()),
        post("null", "null").invalid(null()),
        post("true", "true").invalid(null()),
        post("jsonrpc as a number", r#"{"jsonrpc":2.0,"id":1,"method":"tools/list"}"#).invalid(id1()),
        post("jsonrpc 1.0", r#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#).invalid(id1()),
        post("jsonrpc missing", r#"{"id":1,"method":"tools/list"}"#).invalid(id1()),
        post("method a number", r#"{"jsonrpc":"2.0","id":1,"method":5}"#).invalid(id1()),
        post("method an object", r#"{"jsonrpc":"2.0","id":1,"method":{}}"#).invalid(id1()),
        post("method null", r#"{"jsonrpc":"2.0","id":1,"method":null}"#).invalid(id1()),
        post("params a string", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":"all"}"#)
            .session(VICTIM)
            .invalid(id1()),
        post("params an array of nulls", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[null,null]}"#)
            .session(VICTIM)
            .invalid(id1()),
        post("params a number", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":3}"#)
            .session(VICTIM)
            .invalid(id1()),
        post("_meta a string", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":"m"}}"#)
            .session(VICTIM)
            .invalid(id1()),
        post("_meta an array", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":[1]}}"#)
            .session(VICTIM)
            .invalid(id1()),
        post("id an object", r#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}"#)
            .session(VICTIM)
            .invalid(null()),
        post("id an array", r#"{"jsonrpc":"2.0","id":[1],"method":"tools/list"}"#)
            .session(VICTIM)
            .invalid(null()),
        post("id a float", r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}"#)
            .session(VICTIM)
            .invalid(null()),
        post("id an exponent", r#"{"jsonrpc":"2.0","id":1e3,"method":"tools/list"}"#)
            .session(VICTIM)
            .invalid(null()),
        post("id a boolean", r#"{"jsonrpc":"2.0","id":true,"method":"tools/list"}"#)
            .session(VICTIM)
            .invalid(null()),
        post("id null on a request", r#"{"jsonrpc":"2.0","id":null,"method":"tools/list"}"#)
            .session(VICTIM)
            .invalid(null()),
        post("id 2^63", r#"{"jsonrpc":"2.0","id":9223372036854775808,"method":"tools/list"}"#)
            .session(VICTIM)
            .invalid(null()),
        post("id of 400 digits", format!(r#"{{"jsonrpc":"2.0","id":{},"method":"tools/list"}}"#, "9".repeat(400)))
            .session(VICTIM)
            .invalid(null()),
        post("id twice", r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}"#)
            .session(VICTIM)
            .invalid(null()),
        post("result and error both", r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#)
            .session(VICTIM)
            .invalid(id1()),
        post("an error response with a null id", r#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#)
            .session(VICTIM)
            .invalid(null()),
        // Ids at the edges that are valid: relayed, answered with the same id.
        post("id i64::MAX", call(json!(9223372036854775807_i64), "x"))
            .session(VICTIM)
            .expect(200, None, Some(json!(9223372036854775807_i64))),
        post("a 50 KB string id", call(json!("i".repeat(50_000)), "x"))
            .session(VICTIM)
            .expect(200, None, Some(json!("i".repeat(50_000)))),
        // Nesting.
        post("arguments nested 100,000 deep", nested(100_000)).session(VICTIM).invalid(id1()),
        post("arguments nested one level too deep", nested(126)).session(VICTIM).invalid(id1()),
        post("arguments nested as deep as allowed", nested(125))
            .session(VICTIM)
            .expect(200, None, Some(id1())),
        // Batches.
        post("an empty batch, no session", "[]").invalid(null()),
        post("a broken batch", "[{").parse_error(),
        post("a batch of numbers, no session", "[1,2]").invalid(null()),
        post("a batch in a 2025-11-25 session", format!("[{}]", call(json!(1), "x")))
            .session(VICTIM)
            .invalid(null()),
        post("an empty batch in a 2025-03-26 session", "[]").session(OLD).invalid(null()),
        post("a batch with an invalid member", format!(r#"[{},{{"jsonrpc":"2.0","id":2,"method":5}}]"#, call(json!(1), "x")))
            .session(OLD)
            .invalid(null()),
        post("a batch of batches", "[[]]").session(OLD).invalid(null()),
        post("a batch with initialize", r#"[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}]"#)
            .session(OLD)
            .invalid(null()),
        post("a batch with invalid UTF-8", with_bytes("[", b"\xff", "]")).session(OLD).parse_error(),
        // Content types and Accept.
        post("no Content-Type", call(json!(1), "x"))
            .without("content-type")
            .session(VICTIM)
            .expect(415, Some(-32600), Some(null())),
        post("Content-Type text/plain", call(json!(1), "x"))
            .without("content-type")
            .header("content-type", "text/plain")
            .session(VICTIM)
            .expect(415, Some(-32600), Some(null())),
        post("Content-Type application/json-seq", call(json!(1), "x"))
            .without("content-type")
            .header("content-type", "application/json-seq")
            .session(VICTIM)
            .expect(415, Some(-32600), Some(null())),
        post("Content-Type with a charset", call(json!(7), "x"))
            .without("content-type")
            .header("content-type", "Application/JSON; charset=utf-8")
            .session(VICTIM)
            .expect(200, None, Some(json!(7))),
        post("Accept text/html", call(json!(1), "x"))
            .without("accept")
            .header("accept", "text/html")
            .session(VICTIM)
            .expect(406, Some(-32600), Some(null())),
        row("GET accepting only JSON", "GET", "")
            .without("accept")
            .header("accept", "application/json")
            .session(VICTIM)
            .expect(406, Some(-32600), Some(null())),
        row("PUT", "PUT", call(json!(1), "x")).expect(405, Some(-32600), Some(null())),
        row("PATCH", "PATCH", call(json!(1), "x")).expect(405, Some(-32600), Some(null())),
        post("Host not allowed", call(json!(1), "x"))
            .header("host", "evil.example")
            .expect(403, Some(-32600), Some(null())),
        post("Origin not allowed", call(json!(1), "x"))
            .header("origin", "https://evil.example")
            .expect(403, Some(-32600), Some(null())),
        // Sessions.
        post("no session id", call(json!(1), "x")).invalid(id1()),
        post("an unknown session id", call(json!(1), "x"))
            .header("mcp-session-id", "0123456789abcdef0123456789abcdef")
            .expect(404, Some(-32001), Some(id1())),
        post("an ended session's id, reused", call(json!(1), "x"))
            .session(ENDED)
            .expect(404, Some(-32001), Some(id1())),
        post("a 60 KB session id", call(json!(1), "x"))
            .header("mcp-session-id", "a".repeat(60_000))
            .expect(404, Some(-32001), Some(id1())),
        post("a session id with non-ASCII bytes", call(json!(1), "x"))
            .header("mcp-session-id", b"caf\xe9".to_vec())
            .invalid(id1()),
        post("two different session ids", call(json!(1), "x"))
            .session(VICTIM)
            .session(OLD)
            .invalid(null()),
        post("the same session id twice", call(json!(1), "x"))
            .session(VICTIM)
            .session(VICTIM)
            .invalid(null()),
        post("an unsupported MCP-Protocol-Version", call(json!(1), "x"))
            .session(VICTIM)
            .header("mcp-protocol-version", "1999-01-01")
            .invalid(id1()),
        row("DELETE without a session", "DELETE", "").invalid(null()),
        row("DELETE of an unknown session", "DELETE", "")
            .header("mcp-session-id", "0123456789abcdef0123456789abcdef")
            .expect(404, Some(-32001), Some(null())),
        // Duplicate ids in flight, responses to requests never made.
        post("a request id already in flight", call(json!("busy"), "x"))
            .session(VICTIM)
            .invalid(json!("busy")),
        post("a response to a request Lodge never made", r#"{"jsonrpc":"2.0","id":"lodge:999","result":{}}"#)
            .session(VICTIM)
            .expect(202, None, None),
        post("a response to an id nobody used", r#"{"jsonrpc":"2.0","id":4242,"result":{}}"#)
            .session(VICTIM)
            .expect(202, None, None),
        post("a notification nobody defined", r#"{"jsonrpc":"2.0","method":"notifications/bogus"}"#)
            .session(VICTIM)
            .expect(202, None, None),
        // Last-Event-ID.
        row("Last-Event-ID not an event id", "GET", "")
            .session(VICTIM)
            .header("last-event-id", "abc")
            .invalid(null()),
        row("Last-Event-ID of a stream that never was", "GET", "")
            .session(VICTIM)
            .header("last-event-id", "999999-1")
            .invalid(null()),
        row("Last-Event-ID twice", "GET", "")
            .session(VICTIM)
            .header("last-event-id", "1-1")
            .header("last-event-id", "1-2")
            .invalid(null()),
        row("Last-Event-ID with non-ASCII bytes", "GET", "")
            .session(VICTIM)
            .header("last-event-id", b"1-\xff".to_vec())
            .invalid(null()),
        // Sizes.
        post("a body over max_body_bytes", call(json!(1), &"x".repeat(1_100_000)))
            .session(VICTIM)
            .expect(413, Some(-32600), Some(null())),
        post("a 500 KB header", call(json!(1), "x"))
            .header("x-filler", "f".repeat(500_000))
            .expect(431, None, None)
            .or_reset(),
    ];
    let mut many = post("150 headers", call(json!(1), "x"));
    for i in 0..150 {
        many = many.header("x-many", format!("{i}"));
    }
    rows.push(many.expect(431, None, None));
    rows.extend([
        // 2026-07-28: missing or contradictory _meta and headers, a tampered requestState.
        modern("modern: _meta missing", json!({"name":"echo","arguments":{"text":"x"}}))
            .expect(400, Some(-32602), Some(id1())),
        modern("modern: clientCapabilities missing", json!({"name":"echo","arguments":{"text":"x"},
            "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}))
        .expect(400, Some(-32602), Some(id1())),
        modern("modern: header and _meta versions differ", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2025-11-25")}))
            .expect(400, Some(-32020), Some(id1())),
        modern("modern: no MCP-Protocol-Version header", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2026-07-28")}))
            .without("mcp-protocol-version")
            .expect(400, Some(-32020), Some(id1())),
        modern("modern: Mcp-Method differs from the body", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2026-07-28")}))
            .without("mcp-method")
            .header("mcp-method", "tools/list")
            .expect(400, Some(-32020), Some(id1())),
        modern("modern: Mcp-Method twice", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2026-07-28")}))
            .header("mcp-method", "tools/call")
            .expect(400, Some(-32020), Some(id1())),
        modern("modern: Mcp-Name differs from the body", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2026-07-28")}))
            .without("mcp-name")
            .header("mcp-name", "notes")
            .expect(400, Some(-32020), Some(id1())),
        modern("modern: Mcp-Name missing", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2026-07-28")}))
            .without("mcp-name")
            .expect(400, Some(-32020), Some(id1())),
        modern("modern: a tampered requestState", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2026-07-28"),
            "requestState":"lodge1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}))
        .expect(400, Some(-32602), Some(id1())),
        modern("modern: requestState not a string", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2026-07-28"),"requestState":7}))
            .expect(400, Some(-32602), Some(id1())),
        modern("modern: _meta not an object", json!({"name":"echo","_meta":"2026-07-28"}))
            .invalid(id1()),
        modern("modern: a legacy session's id as Lodge-Session-Id", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2026-07-28")}))
            .header("lodge-session-id", VICTIM)
            .invalid(id1()),
        modern("modern: an unknown Lodge-Session-Id", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2026-07-28")}))
            .header("lodge-session-id", "0123456789abcdef0123456789abcdef")
            .expect(404, Some(-32001), Some(id1())),
        modern("modern: Lodge-Session-Id twice", json!({"name":"echo","arguments":{"text":"x"},"_meta":modern_meta("2026-07-28")}))
            .header("lodge-session-id", "0123456789abcdef0123456789abcdef")
            .header("lodge-session-id", "fedcba9876543210fedcba9876543210")
            .invalid(null()),
    ]);
    rows
}

/// Sends `row` with the session placeholders filled in; returns (status, body).
async fn send(
    http: &reqwest::Client,
    url: &str,
    row: &Row,
    ids: &[(&str, &str)],
) -> (u16, Vec<u8>, String) {
    let method = reqwest::Method::from_bytes(row.method.as_bytes()).unwrap();
    let mut request = http.request(method, url).body(row.body.clone());
    for (name, value) in &row.headers {
        let mut value = value.clone();
        for (placeholder, id) in ids {
            if value == placeholder.as_bytes() {
                value = id.as_bytes().to_vec();
            }
        }
        request = request.header(
            *name,
            reqwest::header::HeaderValue::from_bytes(&value).unwrap(),
        );
    }
    let response = match tokio::time::timeout(Duration::from_secs(30), request.send())
        .await
        .unwrap_or_else(|_| panic!("{}: no answer in 30 s", row.name))
    {
        Ok(response) => response,
        Err(e) if row.or_reset && e.is_request() => {
            eprintln!("{}: reset before the answer was read ({e})", row.name);
            return (row.status, Vec::new(), String::new());
        }
        Err(e) => panic!("{}: {e}", row.name),
    };
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // A row whose answer is a stream that stays open is a wrong answer, not a hang.
    let body = match tokio::time::timeout(Duration::from_secs(10), response.bytes()).await {
        Ok(body) => body.unwrap_or_default().to_vec(),
        Err(_) => format!("(the answer's body did not end: {kind})").into_bytes(),
    };
    (status, body, kind)
}

/// The JSON-RPC message an answer carries: the JSON body, or an SSE body's last event.
fn answer_of(body: &[u8], kind: &str) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    if kind.starts_with("text/event-stream") {
        let events = crate::common::parse_sse(text);
        return events.last().map(|e| e.json());
    }
    serde_json::from_str(text).ok()
}

async fn initialize(raw: &mut Raw, version: &str) {
    let reply = raw
        .post(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":version,"capabilities":{},"clientInfo":{"name":"matrix","version":"1"}}}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    raw.session = Some(
        reply.headers["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string(),
    );
    let ack = raw
        .post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await;
    assert_eq!(ack.status, 202);
}

#[tokio::test]
async fn every_malformed_request_gets_its_exact_answer_and_disturbs_nobody() {
    let lodge = Lodge::start(&format!(
        "max_body_bytes = 1048576\nmax_connections_per_client = 1000\n{}",
        crate::common::demo_server_toml()
    ));
    let url = lodge.url();
    let mut healthy = Raw::new(url.clone());
    healthy.initialize().await;
    let mut victim = Raw::new(url.clone());
    victim.initialize().await;
    let mut old = Raw::new(url.clone());
    initialize(&mut old, "2025-03-26").await;
    let mut ended = Raw::new(url.clone());
    ended.initialize().await;
    let ended_id = ended.session.clone().unwrap();
    let deleted = Raw::send(ended.http.delete(&url).header("mcp-session-id", &ended_id)).await;
    assert_eq!(deleted.status, 204);

    // A call in flight in the victim session, for the duplicate-id row.
    let busy = victim.post_builder(&json!({"jsonrpc":"2.0","id":"busy","method":"tools/call",
        "params":{"name":"slow","arguments":{"seconds":600,"steps":600}}}));
    // (Reads the whole stream: `send` alone resolves at the headers.)
    let busy = tokio::spawn(async move { busy.send().await?.text().await });
    // Registered in flight well before the rows reach it (it is the 73rd).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let victim_id = victim.session.clone().unwrap();
    let old_id = old.session.clone().unwrap();
    let ids = [
        (VICTIM, victim_id.as_str()),
        (OLD, old_id.as_str()),
        (ENDED, ended_id.as_str()),
    ];
    let http = reqwest::Client::new();
    let rows = table();
    assert!(rows.len() >= 60, "{} rows", rows.len());
    let mut wrong = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        eprintln!("row {n}: {}", row.name);
        let (status, body, kind) = send(&http, &url, row, &ids).await;
        let answer = answer_of(&body, &kind);
        let code = answer.as_ref().and_then(|a| a["error"]["code"].as_i64());
        let mut ok = status == row.status && code == row.code;
        if let (Some(id), Some(answer)) = (&row.id, &answer) {
            ok &= &answer["id"] == id;
        }
        if !ok {
            let shown: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            wrong.push(format!(
                "{}: got {status} {code:?}, want {} {:?} id {:?}: {shown}",
                row.name,
                row.status,
                row.code,
                row.id
                    .as_ref()
                    .map(|v| v.to_string().chars().take(40).collect::<String>())
            ));
        }
        let n = u64::try_from(n).unwrap();
        assert_eq!(
            healthy
                .call_text(10_000 + n, "echo", json!({"text":"ok"}))
                .await,
            "ok",
            "the healthy session after {}",
            row.name
        );
    }
    assert!(
        wrong.is_empty(),
        "{} rows answered wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // The session the rows aimed at lives on, its call in flight too.
    assert_eq!(
        victim.call_text(901, "echo", json!({"text":"still"})).await,
        "still"
    );
    if busy.is_finished() {
        panic!(
            "the call in flight was disturbed: {:?}",
            busy.await.unwrap()
        );
    }
    busy.abort();
}

#[tokio::test]
async fn hundreds_of_get_streams_on_one_session_disturb_nobody() {
    let lodge = Lodge::start(&format!(
        "max_connections_per_client = 1000\n{}",
        crate::common::demo_server_toml()
    ));
    let mut healthy = Raw::new(lodge.url());
    healthy.initialize().await;
    let mut victim = Raw::new(lodge.url());
    victim.initialize().await;
    let mut streams = Vec::new();
    for _ in 0..300 {
        let response = victim.get_builder(None).send().await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    assert_eq!(
        healthy.call_text(1, "echo", json!({"text":"ok"})).await,
        "ok"
    );
    assert_eq!(
        victim.call_text(2, "echo", json!({"text":"ok"})).await,
        "ok"
    );
    drop(streams);
    assert_eq!(
        healthy.call_text(3, "echo", json!({"text":"ok"})).await,
        "ok"
    );
    assert_eq!(
        victim.call_text(4, "echo", json!({"text":"ok"})).await,
        "ok"
    );
}
