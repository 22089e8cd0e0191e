//! The Streamable HTTP rules of the 2025-11-25 transport, checked on the wire.
#![allow(clippy::unwrap_used)]

use crate::common::{Lodge, Raw, new_scratch_dir, read_events_until};
use serde_json::json;

fn demo() -> (Lodge, Raw) {
    let lodge = Lodge::demo("");
    let raw = Raw::new(lodge.url());
    (lodge, raw)
}

fn error_of(reply: &crate::common::Reply) -> (i64, String) {
    let v = reply.json();
    (
        v["error"]["code"].as_i64().unwrap(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn missing_session_id_is_400_and_unknown_is_404() {
    let (_lodge, mut raw) = demo();
    let reply = raw.call(1, "echo", json!({"text":"x"})).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["id"], 1);
    assert!(error_of(&reply).1.contains("Missing Mcp-Session-Id"));

    raw.session = Some("0123456789abcdef0123456789abcdef".into());
    let reply = raw.call(2, "echo", json!({"text":"x"})).await;
    assert_eq!(reply.status, 404);
    assert_eq!(error_of(&reply).0, -32001);
    assert_eq!(reply.json()["id"], 2);

    let get = Raw::send(raw.get_builder(None)).await;
    assert_eq!(get.status, 404);
    raw.session = None;
    assert_eq!(Raw::send(raw.get_builder(None)).await.status, 400);
}

#[tokio::test]
async fn initialize_mints_a_session_and_notifications_get_202() {
    let (_lodge, mut raw) = demo();
    let init = raw.initialize().await;
    assert_eq!(init["result"]["serverInfo"]["name"], "lodge-demo");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(
        raw.call_text(1, "echo", json!({"text":"héllo"})).await,
        "héllo"
    );
    // The SSE response starts with a priming event: an id and no data.
    let reply = raw.call(2, "echo", json!({"text":"x"})).await;
    assert_eq!(reply.headers["content-type"], "text/event-stream");
    let events = reply.events();
    assert_eq!(events[0].data, "");
    assert!(events[0].id.is_some());
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn json_only_clients_get_a_json_response() {
    let (_lodge, mut raw) = demo();
    raw.initialize().await;
    let req = raw
        .http
        .post(raw.url.clone())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header("mcp-session-id", raw.session.clone().unwrap())
        .body(json!({"jsonrpc":"2.0","id":"j","method":"tools/call","params":{"name":"echo","arguments":{"text":"plain"}}}).to_string());
    let reply = Raw::send(req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.json()["result"]["content"][0]["text"], "plain");
    assert_eq!(reply.json()["id"], "j");
}

#[tokio::test]
async fn delete_ends_the_session_and_later_requests_get_404_saying_why() {
    let (lodge, mut raw) = demo();
    raw.initialize().await;
    assert_eq!(raw.call_text(1, "echo", json!({"text":"hi"})).await, "hi");
    let scratch = new_scratch_dir(&lodge.scratch_root(), &[]);
    assert!(scratch.is_dir());

    let del = Raw::send(
        raw.http
            .delete(lodge.url())
            .header("mcp-session-id", raw.session.clone().unwrap()),
    )
    .await;
    assert_eq!(del.status, 204);
    // The sandbox removes the scratch directory after its processes are gone.
    assert!(!scratch.exists(), "the sandbox is gone once DELETE returns");

    let reply = raw.call(2, "echo", json!({"text":"x"})).await;
    assert_eq!(reply.status, 404);
    let (code, message) = error_of(&reply);
    assert_eq!(code, -32001);
    assert!(
        message.contains("the client ended it with DELETE"),
        "{message}"
    );
    assert!(message.contains("initialize"), "{message}");
}

#[tokio::test]
async fn origin_host_and_size_are_enforced() {
    // A small body limit, so the oversized bodies below fit in loopback socket buffers
    // and the client reads the 413 instead of failing to write.
    let lodge = Lodge::start(&format!(
        "max_body_bytes = 65536\n{}",
        crate::common::demo_server_toml()
    ));
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    let body = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}});

    let reply = Raw::send(
        raw.post_builder(&body)
            .header("origin", "https://evil.example"),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert!(error_of(&reply).1.contains("Origin"));
    let reply = Raw::send(
        raw.post_builder(&body)
            .header("origin", "http://localhost:3000"),
    )
    .await;
    assert_eq!(reply.status, 200);

    let reply = Raw::send(raw.post_builder(&body).header("host", "evil.example")).await;
    assert_eq!(reply.status, 403);
    assert!(error_of(&reply).1.contains("DNS rebinding"));

    let big = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x".repeat(100_000)}}});
    let reply = raw.post(big).await;
    assert_eq!(reply.status, 413);
    assert!(error_of(&reply).1.contains("limit"));

    // A chunked body (no Content-Length) is capped too.
    let chunks = futures_chunks(4 * 65536);
    let req = raw
        .http
        .post(lodge.url())
        .header("content-type", "application/json")
        .header("mcp-session-id", raw.session.clone().unwrap())
        .header("mcp-protocol-version", "2025-11-25")
        .body(reqwest::Body::wrap_stream(chunks));
    assert_eq!(Raw::send(req).await.status, 413);

    // The session is unharmed.
    assert_eq!(
        raw.call_text(3, "echo", json!({"text":"still here"})).await,
        "still here"
    );
}

fn futures_chunks(
    total: usize,
) -> impl tokio_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    tokio_stream::iter((0..total / 65536).map(|_| Ok(vec![b' '; 65536])))
}

#[tokio::test]
async fn malformed_input_gets_clear_errors() {
    let (lodge, mut raw) = demo();
    raw.initialize().await;
    let send_text = |text: &'static str| {
        raw.http
            .post(lodge.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", raw.session.clone().unwrap())
            .body(text)
    };
    let reply = Raw::send(send_text("{not json")).await;
    assert_eq!((reply.status, error_of(&reply).0), (400, -32700));
    let reply = Raw::send(send_text(r#"{"id":1,"method":"x"}"#)).await;
    assert_eq!((reply.status, error_of(&reply).0), (400, -32600));
    let reply = Raw::send(send_text(
        r#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
    ))
    .await;
    assert_eq!(reply.status, 400);
    assert!(
        error_of(&reply)
            .1
            .contains("batches are not supported in protocol version 2025-11-25")
    );

    let reply = Raw::send(
        raw.http
            .post(lodge.url())
            .header("content-type", "application/json")
            .header("mcp-session-id", raw.session.clone().unwrap())
            .header("mcp-protocol-version", "1999-01-01")
            .body(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(
        error_of(&reply)
            .1
            .contains("Unsupported MCP-Protocol-Version")
    );

    let reply = Raw::send(
        raw.http
            .post(lodge.url())
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_eq!(reply.status, 415);
    let reply = Raw::send(raw.http.put(lodge.url())).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "GET, POST, DELETE");
    // A batch with an unreadable session id is told so, not that it lacks one.
    let reply = Raw::send(
        raw.http
            .post(lodge.url())
            .header("content-type", "application/json")
            .header(
                "mcp-session-id",
                reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
            )
            .body(r#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#),
    )
    .await;
    assert_eq!(
        (reply.status, error_of(&reply)),
        (
            400,
            (-32600, "Mcp-Session-Id must be visible ASCII".to_string())
        )
    );
    let reply = Raw::send(
        raw.http
            .post(format!("{}/mcp/nope", lodge.base))
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(error_of(&reply).1.contains("This Lodge serves: demo"));

    // A request id already in flight is refused without disturbing the first.
    let first = raw.post_builder(&json!({"jsonrpc":"2.0","id":"dup","method":"tools/call","params":{"name":"slow","arguments":{"seconds":1,"steps":2}}}));
    let first = tokio::spawn(Raw::send(first));
    raw.wait_for_slow_to_start(10).await;
    let reply = raw
        .post(json!({"jsonrpc":"2.0","id":"dup","method":"ping"}))
        .await;
    assert_eq!(reply.status, 400);
    assert!(error_of(&reply).1.contains("already in flight"));
    let first = first.await.unwrap();
    assert_eq!(
        first.events().last().unwrap().json()["result"]["content"][0]["text"],
        "finished 2 steps"
    );
}

#[tokio::test]
async fn a_dropped_stream_resumes_with_last_event_id_losing_and_duplicating_nothing() {
    let (_lodge, mut raw) = demo();
    raw.initialize().await;
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
        "name":"slow","arguments":{"seconds":1.2,"steps":6},"_meta":{"progressToken":"tok"}}});
    let resp = raw.post_builder(&call).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Read the priming event and two progress events, then drop the connection.
    let first = read_events_until(resp, |e| e.data.contains("\"progress\":2")).await;
    let last_id = first.last().unwrap().id.clone().unwrap();

    let resumed = raw.get_builder(Some(&last_id)).send().await.unwrap();
    assert_eq!(resumed.status(), 200);
    let rest = read_events_until(resumed, |e| e.data.contains("\"result\"")).await;

    let all: Vec<_> = first
        .iter()
        .chain(&rest)
        .filter(|e| !e.data.is_empty())
        .collect();
    let progress: Vec<f64> = all
        .iter()
        .filter(|e| e.data.contains("notifications/progress"))
        .map(|e| e.json()["params"]["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(
        progress,
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        "every progress event exactly once"
    );
    let last = all.last().unwrap().json();
    assert_eq!(last["id"], 7);
    assert_eq!(last["result"]["content"][0]["text"], "finished 6 steps");
    let mut ids: Vec<_> = all.iter().map(|e| e.id.clone().unwrap()).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "no event id repeats");

    // Resuming a finished stream again replays from the given point, then ends.
    let again = Raw::send(raw.get_builder(Some(&last_id))).await;
    assert_eq!(again.events().len(), rest.len());
    // An id Lodge never issued is a clear 400.
    let bad = Raw::send(raw.get_builder(Some("99-1"))).await;
    assert_eq!(bad.status, 400);
    assert!(error_of(&bad).1.contains("Last-Event-ID"));
}

#[tokio::test]
async fn server_requests_go_to_the_standalone_stream_when_calls_overlap() {
    // With two calls in flight, Lodge cannot tell which one an elicitation belongs to
    // (stdio carries no such link), so it goes to the GET stream when one is open.
    let (_lodge, mut raw) = demo();
    raw.initialize().await;
    let get = raw.get_builder(None).send().await.unwrap();
    assert_eq!(get.status(), 200);
    let slow = raw.post_builder(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","arguments":{"seconds":20,"steps":20}}}));
    let slow = tokio::spawn(async move { slow.send().await });
    raw.wait_for_slow_to_start(10).await;
    let trip = raw.post_builder(
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"plan_trip"}}),
    );
    let trip = tokio::spawn(async move { trip.send().await });
    let on_get = read_events_until(get, |e| e.data.contains("elicitation/create")).await;
    let elicit = on_get.last().unwrap().json();
    assert_eq!(
        elicit["params"]["message"],
        "Where and how do you want to travel?"
    );
    // Decline: the trip call finishes with the decline text.
    let answer = raw
        .post(json!({"jsonrpc":"2.0","id":elicit["id"],"result":{"action":"decline"}}))
        .await;
    assert_eq!(answer.status, 202);
    let trip = trip.await.unwrap().unwrap().text().await.unwrap();
    let last = crate::common::parse_sse(&trip).last().unwrap().json();
    assert_eq!(
        last["result"]["content"][0]["text"],
        "Trip planning stopped: the user chose to decline."
    );
    // Cancel the slow call so the test ends quickly.
    let cancel = raw
        .post(json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}))
        .await;
    assert_eq!(cancel.status, 202);
    let slow = slow.await.unwrap().unwrap().text().await.unwrap();
    assert!(
        !slow.contains("\"result\""),
        "a cancelled call's stream ends without a response"
    );
}

#[tokio::test]
async fn pretty_printed_json_reaches_a_stdio_server_intact() {
    // Regression: line breaks in a client's JSON used to split the message in two on
    // the server's stdin, and the call hung.
    let (lodge, raw) = demo();
    let body = "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"method\": \"initialize\",\r\n  \"params\": {\"protocolVersion\": \"2025-11-25\",\n \"capabilities\": {}, \"clientInfo\": {\"name\": \"curl\", \"version\": \"1\"}}\n}\n";
    let reply = Raw::send(
        raw.http
            .post(lodge.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.events().last().unwrap().json()["result"]["serverInfo"]["name"],
        "lodge-demo"
    );
}
