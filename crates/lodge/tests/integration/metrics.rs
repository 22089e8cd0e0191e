//! `/metrics` against a real Lodge: a scripted workload (sessions ended every way a
//! test can end them, elicitations accepted and declined, a server's JSON-RPC error,
//! a 404) moves each counter it touches by exactly what it did. A 2026-07-28 server's
//! elicitations (asked in `input_required` results) count like a legacy server's.

#![allow(clippy::unwrap_used)]

use crate::common::{Lodge, Raw, conformance_server, demo_server_toml, eventually, process_alive};
use lodge_testkit::sse::EventReader;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// A scrape: each series (name and labels, as printed) and its value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    async fn take(admin: &str) -> Scrape {
        let reply = Raw::send(reqwest::Client::new().get(format!("{admin}/metrics"))).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            reply.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4"),
            "{:?}",
            reply.headers
        );
        Scrape(parse(&reply.body))
    }

    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The sum over every series whose name and labels start with `prefix`.
    fn sum(&self, prefix: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

/// Parses the Prometheus text format: `name{labels} value` lines, comments skipped.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            series.insert(key.to_string(), value).is_none(),
            "{key} twice"
        );
    }
    series
}

/// Reads SSE events until one satisfies `until`, returning it.
async fn next_matching(reader: &mut EventReader, until: impl Fn(&Value) -> bool) -> Value {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), reader.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended")
            .unwrap();
        if event.data.is_empty() {
            continue;
        }
        let value = event.json();
        if until(&value) {
            return value;
        }
    }
}

async fn delete(raw: &Raw) -> u16 {
    let request = raw
        .http
        .delete(&raw.url)
        .header("mcp-session-id", raw.session.as_deref().unwrap());
    Raw::send(request).await.status
}

/// plan_trip in a new session, its elicitation answered with `action`; with accept, its
/// sampling request answered too. Returns the call's result text.
async fn plan_trip(raw: &Raw, action: &str, admin: &str) -> String {
    let trip = raw.post_builder(
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"plan_trip"}}),
    );
    let mut reader = EventReader::new(trip.send().await.unwrap());
    let ask = next_matching(&mut reader, |v| v["method"] == "elicitation/create").await;
    // While the server waits on the user, its sandbox is live and measured.
    let now = Scrape::take(admin).await;
    assert_eq!(
        now.get(r#"lodge_sessions_active{server="demo",era="legacy"}"#),
        1.0
    );
    assert!(now.get(r#"lodge_sandbox_memory_bytes{server="demo"}"#) > f64::from(1 << 20));
    let result = match action {
        "accept" => {
            json!({"action":"accept","content":{"destination":"Lisbon","days":3,"budget":"comfort","flights":false}})
        }
        other => json!({ "action": other }),
    };
    let answer = raw
        .post(json!({"jsonrpc":"2.0","id":ask["id"],"result":result}))
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    if action == "accept" {
        let ask = next_matching(&mut reader, |v| v["method"] == "sampling/createMessage").await;
        let sampled = json!({"role":"assistant","content":{"type":"text","text":"Day 1: walk."},"model":"test-model"});
        let answer = raw
            .post(json!({"jsonrpc":"2.0","id":ask["id"],"result":sampled}))
            .await;
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    let response = next_matching(&mut reader, |v| v["id"] == 1).await;
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{response}"))
        .to_string()
}

/// The 2026-07-28 conformance server's elicitation tool, called by a 2026-07-28
/// client: its `input_required` result shows the session waiting on the user until
/// the retry answers `{"name": "Ada"}`. Returns the runtime session's id.
async fn elicit_modern(url: &str, admin: &str) -> String {
    let http = reqwest::Client::new();
    let tool = "test_input_required_result_elicitation";
    let post = |id: u64, session: Option<&str>, extra: Value| {
        let mut params = json!({"name": tool, "arguments": {},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}});
        params
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":params});
        lodge_testkit::http::modern_post(
            &http,
            url,
            session,
            "tools/call",
            Some(tool),
            body.to_string(),
        )
    };
    let reply = Raw::send(post(1, None, json!({}))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let session = reply.headers["lodge-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let result = last_json(&reply)["result"].clone();
    assert_eq!(result["resultType"], "input_required", "{result}");
    assert_eq!(
        result["inputRequests"]["user_name"]["method"],
        "elicitation/create"
    );
    let detail = Raw::send(http.get(format!("{admin}/admin/sessions/{session}"))).await;
    let detail = detail.json();
    assert_eq!(
        (&detail["state"], &detail["waiting_on"]),
        (&json!("waiting"), &json!("user")),
        "{detail}"
    );
    let answer = json!({"user_name": {"action": "accept", "content": {"name": "Ada"}}});
    let mut retry = json!({"inputResponses": answer});
    if let Some(state) = result.get("requestState") {
        retry["requestState"] = state.clone();
    }
    let reply = Raw::send(post(2, Some(&session), retry)).await;
    let done = last_json(&reply);
    assert_eq!(
        done["result"]["content"][0]["text"], "Hello, Ada!",
        "{done}"
    );
    let detail = Raw::send(http.get(format!("{admin}/admin/sessions/{session}"))).await;
    assert_eq!(detail.json()["waiting_on"], Value::Null, "{}", detail.body);
    session
}

/// The JSON of a reply's body, or of its last SSE event.
fn last_json(reply: &lodge_testkit::raw::Reply) -> Value {
    match reply.events().last() {
        Some(event) => event.json(),
        None => reply.json(),
    }
}

/// The same tool called by a legacy client, whose elicitation (pushed by Lodge) it
/// declines.
async fn elicit_legacy_of_modern(url: &str) {
    let mut raw = Raw::new(url.to_string());
    raw.initialize().await;
    let call = raw.post_builder(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
        "params":{"name":"test_input_required_result_elicitation"}}));
    let mut reader = EventReader::new(call.send().await.unwrap());
    let ask = next_matching(&mut reader, |v| v["method"] == "elicitation/create").await;
    let answer = raw
        .post(json!({"jsonrpc":"2.0","id":ask["id"],"result":{"action":"decline"}}))
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let response = next_matching(&mut reader, |v| v["id"] == 1).await;
    assert_eq!(
        response["result"]["content"][0]["text"], "No name given: action=decline.",
        "{response}"
    );
    assert!(matches!(delete(&raw).await, 200 | 204));
}

#[tokio::test]
async fn a_workload_moves_each_counter_by_exactly_what_it_did() {
    let config = format!(
        "{}\n[[server]]\nname = \"modern\"\ncommand = [{:?}]\nprotocol = \"modern\"\n\
         [session]\nidle_timeout = \"3s\"\n[audit]\npath = \"audit/lodge.jsonl\"\ninclude_content = true\n",
        demo_server_toml(),
        conformance_server()
    );
    let (lodge, admin) = Lodge::with_admin(&config).await;
    let url = format!("{}/mcp/demo", lodge.base);
    let http = reqwest::Client::new();
    let before = Scrape::take(&admin).await;

    // 1. A counter call, a call of a tool the server does not have (its JSON-RPC
    //    error, inside a 200), then the client's DELETE.
    let mut one = Raw::new(url.clone());
    one.initialize().await;
    assert_eq!(
        one.call_text(1, "counter", json!({"action":"increment"}))
            .await,
        "1"
    );
    let unknown = one.call(2, "no_such_tool", json!({})).await;
    assert_eq!(unknown.status, 200, "{}", unknown.body);
    let error = unknown.events().last().unwrap().json();
    let server_code = error["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("{error}"));
    assert!(matches!(delete(&one).await, 200 | 204));

    // 2. A session left alone until its idle timeout ends it, and a 2026-07-28
    //    request whose runtime session (its id not kept) idles out too.
    let mut idle = Raw::new(url.clone());
    idle.initialize().await;
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"counter","arguments":{"action":"increment"},
        "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",
            "io.modelcontextprotocol/clientCapabilities":{}}}});
    let request = lodge_testkit::http::modern_post(
        &http,
        &url,
        None,
        "tools/call",
        Some("counter"),
        body.to_string(),
    );
    let reply = Raw::send(request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    eventually(
        Duration::from_secs(20),
        "the idle sessions to time out",
        async || {
            let reply = Raw::send(http.get(format!("{admin}/admin/sessions"))).await;
            reply.json()["sessions"] == json!([])
        },
    )
    .await;

    // 3. An operator's stop.
    let mut stopped = Raw::new(url.clone());
    stopped.initialize().await;
    let id = stopped.session.clone().unwrap();
    let reply = Raw::send(http.delete(format!("{admin}/admin/sessions/{id}"))).await;
    assert_eq!(reply.status, 204, "{}", reply.body);

    // 4. A server that exits (killed from outside) during a call: the call's error is
    //    the server's doing.
    let mut exits = Raw::new(url.clone());
    exits.initialize().await;
    let id = exits.session.clone().unwrap();
    let slow = exits.post_builder(
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"slow","arguments":{"seconds":30,"steps":30},"_meta":{"progressToken":"p"}}}),
    );
    let mut slow = EventReader::new(slow.send().await.unwrap());
    next_matching(&mut slow, |v| v["method"] == "notifications/progress").await;
    let detail = Raw::send(http.get(format!("{admin}/admin/sessions/{id}"))).await;
    let pid = u32::try_from(detail.json()["pid"].as_u64().unwrap()).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    eventually(
        Duration::from_secs(10),
        "the killed server's session to end",
        async || {
            let reply = Raw::send(http.get(format!("{admin}/admin/sessions"))).await;
            !reply.body.contains(&id)
        },
    )
    .await;
    assert!(!process_alive(pid));
    let ended = next_matching(&mut slow, |v| v["id"] == 1).await;
    let ended_code = ended["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("{ended}"));

    // 5. and 6. An elicitation accepted (then sampling), one declined; each session
    //    then DELETEd.
    for action in ["accept", "decline"] {
        let mut trip = Raw::new(url.clone());
        trip.initialize().await;
        let text = plan_trip(&trip, action, &admin).await;
        let expected = match action {
            "accept" => "Trip to Lisbon",
            _ => "the user chose to decline",
        };
        assert!(text.contains(expected), "{text}");
        assert!(matches!(delete(&trip).await, 200 | 204));
    }

    // 7. A request naming a session that never was: 404.
    let mut ghost = Raw::new(url.clone());
    ghost.session = Some("0123456789abcdef0123456789abcdef".into());
    let reply = ghost.call(9, "counter", json!({"action":"get"})).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    let ghost_code = reply.json()["error"]["code"].as_i64().unwrap();

    // 8. and 9. A 2026-07-28 server's elicitation, asked in an input_required result:
    //    answered (accept) in a 2026-07-28 client's retry, passed through; and pushed
    //    by Lodge to a legacy client, who declines.
    let modern_url = format!("{}/mcp/modern", lodge.base);
    elicit_modern(&modern_url, &admin).await;
    elicit_legacy_of_modern(&modern_url).await;

    let after = Scrape::take(&admin).await;
    let delta = |series: &str| after.get(series) - before.get(series);
    let demo = |name: &str, labels: &str| format!("{name}{{server=\"demo\",{labels}}}");
    let modern = |name: &str, labels: &str| format!("{name}{{server=\"modern\",{labels}}}");
    let expected: Vec<(String, f64)> = vec![
        (demo("lodge_sessions_started_total", r#"era="legacy""#), 6.0),
        (demo("lodge_sessions_started_total", r#"era="modern""#), 1.0),
        (
            demo("lodge_sessions_ended_total", r#"reason="client_delete""#),
            3.0,
        ),
        (
            demo("lodge_sessions_ended_total", r#"reason="idle_timeout""#),
            2.0,
        ),
        (
            demo("lodge_sessions_ended_total", r#"reason="admin_stop""#),
            1.0,
        ),
        (
            demo("lodge_sessions_ended_total", r#"reason="server_exit""#),
            1.0,
        ),
        (
            demo("lodge_sessions_ended_total", r#"reason="out_of_memory""#),
            0.0,
        ),
        (
            demo(
                "lodge_rpc_requests_total",
                r#"era="legacy",method="initialize""#,
            ),
            6.0,
        ),
        // counter, no_such_tool, slow, two plan_trips, the ghost's call.
        (
            demo(
                "lodge_rpc_requests_total",
                r#"era="legacy",method="tools/call""#,
            ),
            6.0,
        ),
        (
            demo(
                "lodge_rpc_requests_total",
                r#"era="modern",method="tools/call""#,
            ),
            1.0,
        ),
        (
            demo(
                "lodge_rpc_errors_total",
                &format!(r#"method="tools/call",code="{server_code}",source="server""#),
            ),
            1.0,
        ),
        (
            demo(
                "lodge_rpc_errors_total",
                &format!(r#"method="tools/call",code="{ghost_code}",source="client""#),
            ),
            1.0,
        ),
        (
            demo(
                "lodge_rpc_errors_total",
                &format!(r#"method="tools/call",code="{ended_code}",source="server""#),
            ),
            1.0,
        ),
        // Of the calls that reached a session: every initialize and five tools/call
        // (the 2026-07-28 one too).
        (
            demo("lodge_rpc_duration_seconds_count", r#"method="initialize""#),
            6.0,
        ),
        (
            demo("lodge_rpc_duration_seconds_count", r#"method="tools/call""#),
            5.0,
        ),
        (
            demo(
                "lodge_server_requests_total",
                r#"method="elicitation/create",outcome="accept""#,
            ),
            1.0,
        ),
        (
            demo(
                "lodge_server_requests_total",
                r#"method="elicitation/create",outcome="decline""#,
            ),
            1.0,
        ),
        (
            demo(
                "lodge_server_requests_total",
                r#"method="sampling/createMessage",outcome="accept""#,
            ),
            1.0,
        ),
        (
            demo(
                "lodge_server_request_wait_seconds_count",
                r#"method="elicitation/create""#,
            ),
            2.0,
        ),
        (
            demo(
                "lodge_server_request_wait_seconds_count",
                r#"method="sampling/createMessage""#,
            ),
            1.0,
        ),
        // initialize ×6, three tool calls, the 2026-07-28 call, two plan_trips.
        (
            demo("lodge_http_requests_total", r#"method="POST",status="200""#),
            12.0,
        ),
        // notifications/initialized ×6, two elicitation answers, one sampling answer.
        (
            demo("lodge_http_requests_total", r#"method="POST",status="202""#),
            9.0,
        ),
        (
            demo("lodge_http_requests_total", r#"method="POST",status="404""#),
            1.0,
        ),
        // The 2026-07-28 server's questions, each counted once, when answered.
        (
            modern(
                "lodge_server_requests_total",
                r#"method="elicitation/create",outcome="accept""#,
            ),
            1.0,
        ),
        (
            modern(
                "lodge_server_requests_total",
                r#"method="elicitation/create",outcome="decline""#,
            ),
            1.0,
        ),
        (
            modern(
                "lodge_server_request_wait_seconds_count",
                r#"method="elicitation/create""#,
            ),
            2.0,
        ),
    ];
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(series, want)| delta(series) != *want)
        .map(|(series, want)| format!("{series}: moved {} not {want}", delta(series)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");

    // DELETEs: three by clients, whatever success status they got.
    assert_eq!(
        after.sum(r#"lodge_http_requests_total{server="demo",method="DELETE""#)
            - before.sum(r#"lodge_http_requests_total{server="demo",method="DELETE""#),
        3.0
    );
    // Seven sandboxes started, of whichever backend the tests use.
    assert_eq!(
        after.sum(r#"lodge_sandbox_start_seconds_count{server="demo""#)
            - before.sum(r#"lodge_sandbox_start_seconds_count{server="demo""#),
        7.0
    );
    // Gauges: nothing is live any more; no warm pool is configured.
    for era in ["legacy", "modern"] {
        let series = format!(r#"lodge_sessions_active{{server="demo",era="{era}"}}"#);
        assert_eq!(after.get(&series), 0.0, "{series}");
    }
    assert_eq!(
        after.get(r#"lodge_sandbox_memory_bytes{server="demo"}"#),
        0.0
    );
    assert_eq!(after.get(r#"lodge_warm_pool_ready{server="demo"}"#), 0.0);
    // Bytes went both ways.
    for direction in ["to_server", "to_client"] {
        let series = demo(
            "lodge_relayed_bytes_total",
            &format!(r#"direction="{direction}""#),
        );
        assert!(delta(&series) > 100.0, "{series}: {}", delta(&series));
    }

    // None of its audit lines was lost.
    for why in ["queue_full", "write_failed"] {
        let series = format!("lodge_audit_lines_lost_total{{reason=\"{why}\"}}");
        assert_eq!(after.0.get(&series), Some(&0.0), "{series}");
    }

    // The audit log has a line for each tool call, elicitation and sampling request
    // of that workload, in order.
    let audit = lodge.config_dir().join("audit/lodge.jsonl");
    let trip = json!({"destination":"Lisbon","days":3,"budget":"comfort","flights":false});
    let name = json!({"name": "Ada"});
    let elicits = "test_input_required_result_elicitation";
    let expected = [
        ("demo", "tool_call", "counter", "ok", None),
        ("demo", "tool_call", "no_such_tool", "error", None),
        ("demo", "tool_call", "counter", "ok", None),
        ("demo", "tool_call", "slow", "ended", None),
        (
            "demo",
            "elicitation",
            "elicitation/create",
            "accept",
            Some(trip),
        ),
        (
            "demo",
            "sampling",
            "sampling/createMessage",
            "accept",
            Some(json!("Day 1: walk.")),
        ),
        ("demo", "tool_call", "plan_trip", "ok", None),
        (
            "demo",
            "elicitation",
            "elicitation/create",
            "decline",
            Some(Value::Null),
        ),
        ("demo", "tool_call", "plan_trip", "ok", None),
        // The 2026-07-28 client's call: its input_required round, the answer its
        // retry carried, the retry.
        ("modern", "tool_call", elicits, "ok", None),
        (
            "modern",
            "elicitation",
            "elicitation/create",
            "accept",
            Some(name),
        ),
        ("modern", "tool_call", elicits, "ok", None),
        // The legacy client's: Lodge's rounds stay inside the one call.
        (
            "modern",
            "elicitation",
            "elicitation/create",
            "decline",
            Some(Value::Null),
        ),
        ("modern", "tool_call", elicits, "ok", None),
    ];
    let mut lines: Vec<Value> = Vec::new();
    eventually(Duration::from_secs(10), "the audit lines", async || {
        lines = std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines.len() >= expected.len()
    })
    .await;
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, (server, kind, name, outcome, content)) in lines.iter().zip(expected) {
        let got = (
            line["kind"].as_str().unwrap(),
            line["name"].as_str().unwrap(),
            line["outcome"].as_str().unwrap(),
        );
        assert_eq!(got, (kind, name, outcome), "{line}");
        assert_eq!(
            (&line["server"], &line["principal"]),
            (&json!(server), &Value::Null)
        );
        assert!(
            // A single node's session token, under its random key `local`.
            line["session"]
                .as_str()
                .is_some_and(|s| s.starts_with("local.")),
            "{line}"
        );
        assert!(line["duration_ms"].as_u64().is_some(), "{line}");
        assert!(humantime::parse_rfc3339(line["time"].as_str().unwrap()).is_ok());
        if let Some(content) = content {
            assert_eq!(line["content"], content, "{line}");
        }
    }
}
