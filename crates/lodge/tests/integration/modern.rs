//! 2026-07-28 clients on the same endpoint: the spec's error rules, runtime
//! sessions (`Lodge-Session-Id`), the MRTR bridge to a legacy server, and
//! pass-through to a modern server Lodge did not write.
#![allow(clippy::unwrap_used)]
#![allow(deprecated)] // rmcp marks sampling deprecated (SEP-2577)

use crate::common::{Lodge, Reply, eventually};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, ElicitationAction, Implementation,
    ProtocolVersion, SamplingMessage,
};
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, ErrorData, RoleClient};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const V: &str = "2026-07-28";

fn meta(caps: Value) -> Value {
    json!({"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": caps})
}

/// A raw 2026-07-28 request with the mirrored headers a conforming client sends.
struct Modern {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
}

impl Modern {
    fn new(url: String) -> Self {
        Modern {
            http: reqwest::Client::new(),
            url,
            session: None,
        }
    }

    fn builder(&self, id: u64, method: &str, mut params: Value) -> reqwest::RequestBuilder {
        if params.get("_meta").is_none() {
            params["_meta"] = meta(json!({"elicitation": {}, "sampling": {}}));
        }
        let name = params
            .get("name")
            .or(params.get("uri"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        lodge_testkit::http::modern_post(
            &self.http,
            &self.url,
            self.session.as_deref(),
            method,
            name.as_deref(),
            json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string(),
        )
    }

    async fn send(&self, id: u64, method: &str, params: Value) -> Reply {
        crate::common::Raw::send(self.builder(id, method, params)).await
    }

    /// A tools/call answered as JSON; returns (reply, result object).
    async fn call(&self, id: u64, tool: &str, args: Value, extra: Value) -> (Reply, Value) {
        let mut params = json!({"name": tool, "arguments": args});
        if let Value::Object(extra) = extra {
            params.as_object_mut().unwrap().extend(extra);
        }
        let reply = self.send(id, "tools/call", params).await;
        let body = if reply.headers["content-type"] == "text/event-stream" {
            reply.events().last().unwrap().json()
        } else {
            reply.json()
        };
        (reply, body)
    }
}

fn text(result: &Value) -> &str {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {result}"))
}

#[tokio::test]
async fn spec_errors_for_malformed_modern_requests() {
    let lodge = Lodge::demo("");
    let m = Modern::new(lodge.url());
    let no_meta = m
        .http
        .post(&m.url)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", V)
        .header("mcp-method", "tools/list")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#);
    let reply = crate::common::Raw::send(no_meta).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], -32602);
    assert_eq!(reply.json()["id"], 1);

    let future = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2099-01-01", "io.modelcontextprotocol/clientCapabilities": {}}});
    // The header says 2026-07-28, the body 2099: a mismatch comes first.
    let reply = m.send(2, "tools/list", future.clone()).await;
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].as_i64()),
        (400, Some(-32020))
    );
    let reply = crate::common::Raw::send(
        m.builder(2, "tools/list", future)
            .header("mcp-protocol-version", "2099-01-01"),
    )
    .await;
    // The builder's own header is sent too: two MCP-Protocol-Version headers.
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].as_i64()),
        (400, Some(-32020))
    );
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("more than once"), "{message}");
    let clean = m
        .http
        .post(&m.url)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2099-01-01")
        .header("mcp-method", "tools/list")
        .body(json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta": {"io.modelcontextprotocol/protocolVersion": "2099-01-01", "io.modelcontextprotocol/clientCapabilities": {}}}}).to_string());
    let reply = crate::common::Raw::send(clean).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], -32022);
    assert_eq!(reply.json()["error"]["data"]["supported"], json!([V]));

    let mismatched = m
        .builder(3, "tools/list", json!({}))
        .header("mcp-method", "tools/call");
    let reply = crate::common::Raw::send(mismatched).await;
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].as_i64()),
        (400, Some(-32020))
    );

    let reply = m.send(4, "ping", json!({})).await;
    assert_eq!(
        (reply.status, reply.json()["error"]["code"].as_i64()),
        (404, Some(-32601))
    );
}

#[tokio::test]
async fn a_modern_client_keeps_its_sandbox_with_lodge_session_id_and_gets_fresh_state_without() {
    let lodge = Lodge::demo("");
    let mut m = Modern::new(lodge.url());
    let inc = json!({"action": "increment"});
    let (first, result) = m.call(1, "counter", inc.clone(), json!({})).await;
    assert_eq!(text(&result), "1");
    assert_eq!(result["result"]["resultType"], "complete");
    assert_eq!(
        result["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "lodge-demo"
    );
    let session = first.headers["lodge-session-id"]
        .to_str()
        .unwrap()
        .to_string();

    // Without the header: a fresh sandbox, fresh state (and another session id).
    let (other, result) = m.call(2, "counter", inc.clone(), json!({})).await;
    assert_eq!(text(&result), "1");
    assert_ne!(other.headers["lodge-session-id"].to_str().unwrap(), session);

    // With it: the same sandbox, its state kept across stateless requests.
    m.session = Some(session.clone());
    for expected in ["2", "3"] {
        let (reply, result) = m.call(3, "counter", inc.clone(), json!({})).await;
        assert_eq!(text(&result), expected);
        assert_eq!(reply.headers["lodge-session-id"].to_str().unwrap(), session);
    }
    // DELETE with Lodge-Session-Id ends it; later use gets 404 saying why.
    let del =
        crate::common::Raw::send(m.http.delete(&m.url).header("lodge-session-id", &session)).await;
    assert_eq!(del.status, 204);
    let (reply, body) = m.call(4, "counter", inc, json!({})).await;
    assert_eq!(reply.status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("DELETE")
    );
    // A second DELETE is told in the same 2026-07-28 words: there is no initialize.
    let again =
        crate::common::Raw::send(m.http.delete(&m.url).header("lodge-session-id", &session)).await;
    assert_eq!(again.status, 404);
    assert_eq!(again.json()["error"]["code"], -32001);
    assert_eq!(
        again.json()["error"]["message"],
        "Runtime session not found: it ended because the client ended it with DELETE. Send the request without Lodge-Session-Id to start a new one."
    );
}

#[tokio::test]
async fn mrtr_bridge_runs_a_legacy_tool_over_two_rounds_and_refuses_bad_state() {
    let lodge = Lodge::demo("");
    let m = Modern::new(lodge.url());
    let (_, round1) = m.call(1, "plan_trip", json!({}), json!({})).await;
    let r1 = &round1["result"];
    assert_eq!(r1["resultType"], "input_required");
    let (key, ask) = r1["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(ask["method"], "elicitation/create");
    assert_eq!(
        ask["params"]["message"],
        "Where and how do you want to travel?"
    );
    let state1 = r1["requestState"].as_str().unwrap().to_string();

    // A tampered state is refused, and the waiting call is not disturbed.
    let mut tampered = state1.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let answer = json!({key.clone(): {"action": "accept", "content": {"destination": "Kyoto", "days": 4, "budget": "luxury", "flights": true}}});
    let (reply, body) = m
        .call(
            2,
            "plan_trip",
            json!({}),
            json!({"requestState": tampered, "inputResponses": answer}),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(body["error"]["code"], -32602);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed verification")
    );
    // A state presented with different params is refused too.
    let (reply, body) = m
        .call(
            3,
            "plan_trip",
            json!({"x": 1}),
            json!({"requestState": state1, "inputResponses": answer}),
        )
        .await;
    assert_eq!(reply.status, 400, "{body}");

    let (_, round2) = m
        .call(
            4,
            "plan_trip",
            json!({}),
            json!({"requestState": state1, "inputResponses": answer}),
        )
        .await;
    let r2 = &round2["result"];
    assert_eq!(r2["resultType"], "input_required", "{round2}");
    let (key2, ask2) = r2["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(ask2["method"], "sampling/createMessage");
    assert_eq!(
        ask2["params"]["messages"][0]["content"]["text"],
        "Write a 4-day luxury itinerary for Kyoto. Include flights."
    );
    // Replaying round one's state now is refused.
    let (reply, body) = m
        .call(
            5,
            "plan_trip",
            json!({}),
            json!({"requestState": state1, "inputResponses": answer}),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );

    let sampled = json!({key2.clone(): {"role": "assistant", "content": {"type": "text", "text": "Temples, then ramen."}, "model": "m"}});
    let (_, done) = m
        .call(
            6,
            "plan_trip",
            json!({}),
            json!({"requestState": r2["requestState"], "inputResponses": sampled}),
        )
        .await;
    assert_eq!(done["id"], 6);
    assert_eq!(done["result"]["resultType"], "complete");
    assert_eq!(
        text(&done),
        "Trip to Kyoto: 4 days, luxury, flights yes.\n\nTemples, then ramen."
    );
}

#[tokio::test]
async fn an_expired_request_state_is_refused() {
    let lodge = Lodge::demo("request_state_ttl = \"1s\"\nidle_timeout = \"1s\"");
    let m = Modern::new(lodge.url());
    let (_, round1) = m.call(1, "plan_trip", json!({}), json!({})).await;
    let state = round1["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_string();
    let issued = SystemTime::now();
    eventually(
        Duration::from_secs(5),
        "the state's lifetime to pass",
        async || issued.elapsed().unwrap() >= Duration::from_secs(2),
    )
    .await;
    let (reply, body) = m
        .call(
            2,
            "plan_trip",
            json!({}),
            json!({"requestState": state, "inputResponses": {}}),
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

/// An rmcp client of a given era that accepts every form with `answer`, answers sampling
/// with `sampled`, and records each form's message and each sampling prompt, in order.
#[derive(Clone)]
struct Answers {
    version: ProtocolVersion,
    answer: serde_json::Value,
    sampled: &'static str,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Answers {
    fn new(version: ProtocolVersion, answer: serde_json::Value, sampled: &'static str) -> Self {
        Answers {
            version,
            answer,
            sampled,
            seen: Arc::default(),
        }
    }
}

impl ClientHandler for Answers {
    fn get_info(&self) -> ClientConfig {
        let caps = ClientCapabilities::builder()
            .enable_elicitation()
            .enable_sampling()
            .build();
        ClientConfig::new(caps, Implementation::new("modern-test", "0"))
            .with_protocol_version(self.version.clone())
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::FormElicitationParams { message, .. } = request {
            self.seen.lock().unwrap().push(message);
        }
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(self.answer.clone()))
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let prompt = serde_json::to_value(&params).unwrap()["messages"][0]["content"]["text"]
            .as_str()
            .unwrap_or("")
            .to_string();
        self.seen.lock().unwrap().push(prompt);
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(self.sampled),
            "m".into(),
        ))
    }
}

#[tokio::test]
async fn an_rmcp_2026_client_completes_plan_trip_on_a_legacy_server_via_mrtr() {
    let lodge = Lodge::demo("");
    let handler = Answers::new(
        ProtocolVersion::V_2026_07_28,
        json!({"destination": "Lisbon", "days": 3, "budget": "comfort", "flights": false}),
        "Day 1: tiles.",
    );
    let transport = StreamableHttpClientTransport::from_uri(lodge.url());
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let client = handler
        .clone()
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .unwrap();
    let result = client
        .call_tool(CallToolRequestParams::new("plan_trip"))
        .await
        .unwrap();
    assert_eq!(
        result.content[0].as_text().unwrap().text,
        "Trip to Lisbon: 3 days, comfort, flights no.\n\nDay 1: tiles."
    );
    assert_eq!(
        *handler.seen.lock().unwrap(),
        vec![
            "Where and how do you want to travel?",
            "Write a 3-day comfort itinerary for Lisbon."
        ]
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_dual_era_python_sdk_server_keeps_its_state_for_a_2026_client() {
    let lodge = Lodge::start(&crate::common::python_sdk_server_toml("py"));
    let mut m = Modern::new(format!("{}/mcp/py", lodge.base));
    let discover = m.send(1, "server/discover", json!({})).await;
    assert_eq!(discover.status, 200, "{}", discover.body);
    assert!(
        discover.json()["result"]["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(V))
    );
    let (reply, result) = m.call(2, "tally", json!({"add": 5}), json!({})).await;
    assert_eq!(text(&result), "5");
    assert_eq!(
        result["id"], 2,
        "the client's id comes back, not Lodge's upstream id"
    );
    m.session = Some(
        reply.headers["lodge-session-id"]
            .to_str()
            .unwrap()
            .to_string(),
    );
    let (_, result) = m.call(3, "tally", json!({"add": 3}), json!({})).await;
    assert_eq!(text(&result), "8");
}

/// An rmcp 2026-07-28 client calling `tool` (which elicits a name) through `lodge`.
async fn elicit_by_mrtr(lodge: &Lodge, path: &str, tool: &'static str) -> Answers {
    let handler = Answers::new(ProtocolVersion::V_2026_07_28, json!({"name": "Ada"}), "-");
    let transport = StreamableHttpClientTransport::from_uri(format!("{}{path}", lodge.base));
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    let client = handler
        .clone()
        .serve_with_lifecycle(transport, lifecycle)
        .await
        .unwrap();
    let result = client
        .call_tool(CallToolRequestParams::new(tool))
        .await
        .unwrap();
    assert_eq!(result.content[0].as_text().unwrap().text, "Hello, Ada!");
    client.cancel().await.unwrap();
    handler
}

#[tokio::test]
async fn mrtr_tools_are_passed_through_with_protocol_modern_and_for_a_2026_only_server_with_auto() {
    // The conformance server speaks both eras, with tools written for MRTR; its
    // `--modern-only` twin refuses initialize, as a 2026-07-28-only server does.
    let server = crate::common::conformance_server();
    let lodge = Lodge::start(&format!(
        "[[server]]\nname = \"forced\"\ncommand = [{server:?}]\nprotocol = \"modern\"\n\
         [[server]]\nname = \"only\"\ncommand = [{server:?}, \"--modern-only\"]\n"
    ));
    for path in ["/mcp/forced", "/mcp/only"] {
        let handler = elicit_by_mrtr(&lodge, path, "test_input_required_result_elicitation").await;
        assert_eq!(*handler.seen.lock().unwrap(), vec!["What is your name?"]);
    }
    // A legacy client of the 2026-07-28-only server: Lodge speaks 2026-07-28 for it.
    let handler = Answers::new(ProtocolVersion::V_2025_11_25, json!({"name": "Ada"}), "-");
    let transport = StreamableHttpClientTransport::from_uri(format!("{}/mcp/only", lodge.base));
    let client = rmcp::ServiceExt::serve(handler.clone(), transport)
        .await
        .unwrap();
    let result = client
        .call_tool(CallToolRequestParams::new(
            "test_input_required_result_elicitation",
        ))
        .await
        .unwrap();
    assert_eq!(result.content[0].as_text().unwrap().text, "Hello, Ada!");
    client.cancel().await.unwrap();
}

#[test]
fn lodge_check_says_how_each_server_is_hosted_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lodge.toml");
    let server = crate::common::conformance_server();
    let python = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/python/server.py"
    );
    std::fs::write(
        &config,
        format!(
            "[[server]]\nname = \"py\"\ncommand = [{:?}, {python:?}]\n\
             [[server]]\nname = \"only\"\ncommand = [{server:?}, \"--modern-only\"]\n\
             [[server]]\nname = \"forced\"\ncommand = [{server:?}]\nprotocol = \"modern\"\n\
             [session]\nscratch_root = {:?}\n",
            crate::common::python(),
            dir.path().join("scratch"),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(crate::common::LODGE)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hosted: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("  tools: "))
        .collect();
    assert_eq!(
        hosted,
        vec![
            "py: ok: legacy session; 2026-07-28 clients are bridged to it over MRTR (the server accepted initialize, version 2025-11-25); legacy clients relayed",
            "only: ok: 2026-07-28 server; 2026-07-28 requests passed through (the server refused initialize (initialize is not supported: this server speaks only 2026-07-28) and speaks 2026-07-28 by server/discover); Lodge speaks 2026-07-28 to it for legacy clients",
            "forced: ok: 2026-07-28 server; 2026-07-28 requests passed through (protocol = \"modern\"); Lodge speaks 2026-07-28 to it for legacy clients",
        ]
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("  tools: "))
            .count(),
        3,
        "{stdout}"
    );
}

#[tokio::test]
async fn a_legacy_client_completes_an_mrtr_tool_of_a_modern_server_via_pushed_requests() {
    // protocol = "modern": Lodge answers initialize from server/discover and speaks
    // 2026-07-28 to the server for the client.
    let lodge = Lodge::start(&format!(
        "[[server]]\nname = \"modern\"\ncommand = [{:?}]\nprotocol = \"modern\"\n",
        crate::common::conformance_server()
    ));
    let handler = Answers::new(
        ProtocolVersion::V_2025_11_25,
        json!({"name": "Ada"}),
        "Paris",
    );
    let transport = StreamableHttpClientTransport::from_uri(lodge.url());
    let client = rmcp::ServiceExt::serve(handler.clone(), transport)
        .await
        .unwrap();
    assert_eq!(
        client.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2025_11_25
    );
    let result = client
        .call_tool(CallToolRequestParams::new(
            "test_input_required_result_elicitation",
        ))
        .await
        .unwrap();
    assert_eq!(result.content[0].as_text().unwrap().text, "Hello, Ada!");
    assert_eq!(*handler.seen.lock().unwrap(), vec!["What is your name?"]);
    let result = client
        .call_tool(CallToolRequestParams::new(
            "test_input_required_result_sampling",
        ))
        .await
        .unwrap();
    assert_eq!(
        result.content[0].as_text().unwrap().text,
        "Sampling response: Paris"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn bridged_progress_follows_each_round_under_the_retrys_token() {
    let lodge = Lodge::demo("");
    let m = Modern::new(lodge.url());
    let meta_with = |token: &str| {
        let mut meta = meta(json!({"elicitation": {}, "sampling": {}}));
        meta["progressToken"] = json!(token);
        json!({ "_meta": meta })
    };
    let progress = |reply: &Reply| -> Vec<(String, f64)> {
        crate::common::parse_sse(&reply.body)
            .iter()
            .map(|e| e.json())
            .filter(|v| v["method"] == "notifications/progress")
            .map(|v| {
                (
                    v["params"]["progressToken"].as_str().unwrap().to_string(),
                    v["params"]["progress"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (r1, body1) = m.call(1, "plan_trip", json!({}), meta_with("t1")).await;
    assert_eq!(progress(&r1), vec![("t1".to_string(), 1.0)]);
    let ask = &body1["result"]["inputRequests"]["elicitation-1"];
    assert!(
        ask["params"].get("_meta").is_none(),
        "the server's own progress token is not passed on: {ask}"
    );
    let mut extra = meta_with("t2");
    extra["requestState"] = body1["result"]["requestState"].clone();
    extra["inputResponses"] = json!({"elicitation-1": {"action": "accept", "content": {"destination": "Oslo", "days": 2}}});
    let (r2, body2) = m.call(2, "plan_trip", json!({}), extra).await;
    assert_eq!(progress(&r2), vec![("t2".to_string(), 2.0)]);
    let mut extra = meta_with("t3");
    extra["requestState"] = body2["result"]["requestState"].clone();
    extra["inputResponses"] = json!({"sampling-2": {"role": "assistant", "content": {"type": "text", "text": "Fjords."}, "model": "m"}});
    let (r3, body3) = m.call(3, "plan_trip", json!({}), extra).await;
    assert_eq!(
        progress(&r3),
        vec![("t3".to_string(), 3.0), ("t3".to_string(), 4.0)]
    );
    assert_eq!(
        text(&body3),
        "Trip to Oslo: 2 days, comfort, flights yes.\n\nFjords."
    );
}

/// `continuity = "principal"`: every 2026-07-28 request of the (here anonymous)
/// principal lands in its one runtime session, with or without `Lodge-Session-Id`, even
/// one naming a session that is unknown or ended; the id answered is always that one.
#[tokio::test]
async fn with_principal_continuity_every_modern_request_lands_in_the_principals_one_sandbox() {
    let lodge = Lodge::start(&format!(
        "{}continuity = \"principal\"\n",
        crate::common::demo_server_toml()
    ));
    let mut m = Modern::new(lodge.url());
    let inc = json!({"action": "increment"});
    let (first, result) = m.call(1, "counter", inc.clone(), json!({})).await;
    assert_eq!(text(&result), "1");
    let session = first.headers["lodge-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    // Without the header (a client that keeps no id), then with a made-up one: the
    // same sandbox, its state kept.
    let (reply, result) = m.call(2, "counter", inc.clone(), json!({})).await;
    assert_eq!(text(&result), "2");
    assert_eq!(reply.headers["lodge-session-id"].to_str().unwrap(), session);
    m.session = Some("not-a-session".into());
    let (reply, result) = m.call(3, "counter", inc.clone(), json!({})).await;
    assert_eq!((reply.status, text(&result)), (200, "3"));
    assert_eq!(reply.headers["lodge-session-id"].to_str().unwrap(), session);
    // Once it ends, its old id leads to the principal's next sandbox, not to a 404
    // (for clients that never start over after one).
    let del =
        crate::common::Raw::send(m.http.delete(&m.url).header("lodge-session-id", &session)).await;
    assert_eq!(del.status, 204);
    m.session = Some(session.clone());
    let (reply, result) = m.call(4, "counter", inc, json!({})).await;
    assert_eq!((reply.status, text(&result)), (200, "1"));
    assert_ne!(reply.headers["lodge-session-id"].to_str().unwrap(), session);
}
