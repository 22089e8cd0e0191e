//! `continuity = "principal"` for legacy clients: every `initialize` gets a session of
//! its own over the principal's one sandbox (here the anonymous principal: no auth).
#![allow(clippy::unwrap_used)]

use crate::common::{Lodge, Raw, demo_server_toml};
use serde_json::{Value, json};

fn continuity_lodge() -> Lodge {
    Lodge::start(&format!(
        "{}continuity = \"principal\"\n",
        demo_server_toml()
    ))
}

/// An initialize declaring `capabilities`; returns the session id.
async fn initialize(raw: &mut Raw, capabilities: Value, version: &str) -> Value {
    let reply = raw
        .post(
            json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": version, "capabilities": capabilities,
            "clientInfo":{"name":"churn","version":"1"}}}),
        )
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
    assert_eq!(ack.status, 202, "{}", ack.body);
    reply.events().last().unwrap().json()
}

#[tokio::test]
async fn a_client_opening_a_fresh_session_per_call_keeps_one_server_and_its_state() {
    let lodge = continuity_lodge();
    let mut ids = Vec::new();
    let mut instances = Vec::new();
    for (n, version) in [(1, "2025-11-25"), (2, "2025-06-18"), (3, "2025-03-26")] {
        let mut raw = Raw::new(lodge.url());
        let init = initialize(&mut raw, json!({}), version).await;
        // Each client gets its own answer, in the version it asked for.
        assert_eq!(init["result"]["protocolVersion"], version, "{init}");
        assert_eq!(init["result"]["serverInfo"]["name"], "lodge-demo", "{init}");
        let count = raw
            .call_text(1, "counter", json!({"action": "increment"}))
            .await;
        assert_eq!(count, n.to_string());
        let info: Value =
            serde_json::from_str(&raw.call_text(2, "session_info", json!({})).await).unwrap();
        instances.push(info["instance"].clone());
        ids.push(raw.session.clone().unwrap());
        // Its DELETE ends only its own session: the sandbox lives on.
        let del = Raw::send(
            raw.http
                .delete(&raw.url)
                .header("mcp-session-id", raw.session.as_deref().unwrap()),
        )
        .await;
        assert_eq!(del.status, 204);
        let after = raw.call(3, "counter", json!({"action": "get"})).await;
        assert_eq!(after.status, 404, "{}", after.body);
    }
    assert!(
        instances.iter().all(|i| *i == instances[0]),
        "{instances:?}"
    );
    ids.dedup();
    assert_eq!(ids.len(), 3, "each initialize gets its own Mcp-Session-Id");
}

/// The server asks for elicitation during a call: only a client that declared it is
/// asked; for one that did not, Lodge answers the server with an error itself.
#[tokio::test]
async fn a_servers_elicitation_reaches_only_a_client_that_declared_it() {
    let lodge = continuity_lodge();
    let http = lodge_testkit::http::McpHttp::new(lodge.url()).unwrap();
    // Declares elicitation and sampling (the testkit's initialize).
    let declared = http.open_session().await.unwrap();
    let call = json!({"jsonrpc":"2.0","id":5,"method":"tools/call",
        "params":{"name":"plan_trip","arguments":{}}})
    .to_string();
    let mut reply = http.post(Some(&declared), call.clone()).await.unwrap();
    let asked = reply.next_request().await.unwrap();
    assert_eq!(asked["method"], "elicitation/create", "{asked}");
    drop(reply);

    let mut bare = Raw::new(lodge.url());
    initialize(&mut bare, json!({}), "2025-11-25").await;
    let reply = bare.post(serde_json::from_str(&call).unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let events: Vec<Value> = reply
        .events()
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| e.json())
        .collect();
    assert!(
        events.iter().all(|e| e.get("method").is_none()),
        "the undeclared client was asked: {}",
        reply.body
    );
    let last = events.last().unwrap();
    assert_eq!(last["id"], 5, "{last}");
    let text = last.to_string();
    // The server was asked to elicit (the shared session declared it) and Lodge
    // refused it for this call: not the server's own refusal of an undeclaring session.
    assert!(
        text.contains("the client did not declare the elicitation capability"),
        "{text}"
    );
}
