//! Many sessions side by side, each making many calls with elicitation in the mix:
//! every call gets exactly its own response, once.
//!
//! CI runs a short mode; the full run of the reliability figures is
//! `LODGE_LOAD_SESSIONS=1000 LODGE_LOAD_CALLS=100 scripts/test.sh -p lodge --test integration load::`
//! (RELIABILITY.md).
#![allow(clippy::unwrap_used)]

use crate::common::Lodge;
use lodge_testkit::http::{McpHttp, Reply};
use serde_json::{Value, json};
use std::sync::Arc;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// Every message left on the stream after the response: there must be none.
async fn rest_of(mut reply: Reply) -> Vec<Value> {
    let mut rest = Vec::new();
    while let Ok(message) = reply.next_message().await {
        rest.push(message);
    }
    rest
}

/// `echo` answers with its own text: a response delivered to the wrong call shows.
async fn echo(http: &McpHttp, session: &str, id: u64, text: &str) {
    let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":text}}});
    let mut reply = http.post(Some(session), call.to_string()).await.unwrap();
    let response = reply.response_to(id).await.unwrap();
    assert_eq!(response["result"]["content"][0]["text"], text, "{response}");
    let rest = rest_of(reply).await;
    assert!(rest.is_empty(), "after call {id}'s response: {rest:?}");
}

/// The demo's `plan_trip`, its form declined: one elicitation round trip.
async fn declined_trip(http: &McpHttp, session: &str, id: u64) {
    let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"plan_trip","arguments":{}}});
    let mut reply = http.post(Some(session), call.to_string()).await.unwrap();
    let ask = reply.next_request().await.unwrap();
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    let answer = json!({"jsonrpc":"2.0","id":ask["id"],"result":{"action":"decline"}});
    http.notify(session, answer.to_string()).await.unwrap();
    let response = reply.response_to(id).await.unwrap();
    assert_eq!(
        response["result"]["content"][0]["text"],
        "Trip planning stopped: the user chose to decline.",
        "{response}"
    );
    let rest = rest_of(reply).await;
    assert!(rest.is_empty(), "after call {id}'s response: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_side_by_side_get_every_response_exactly_once() {
    let sessions = setting("LODGE_LOAD_SESSIONS", 40);
    let calls = setting("LODGE_LOAD_CALLS", 25) as u64;
    // All sessions come from one test client, whose connection pool opens as many
    // connections as it has requests in flight (up to two per session, plus idle ones):
    // past max_connections_per_client Lodge would rightly refuse the rest.
    let lodge = Lodge::start(&format!(
        "max_connections_per_client = {}\n{}\n[session]\nmax_sessions = {}\n",
        8 * sessions + 64,
        crate::common::demo_server_toml(),
        sessions + 8
    ));
    let http = Arc::new(McpHttp::new(lodge.url()).unwrap());
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let session = http.open_session().await.unwrap();
            for id in 1..=calls {
                if id % 10 == 0 {
                    declined_trip(&http, &session, id).await;
                } else {
                    echo(&http, &session, id, &format!("session {s} call {id}")).await;
                }
            }
            http.delete(&session).await.unwrap();
            calls
        }));
    }
    let mut answered = 0;
    for task in tasks {
        answered += task.await.unwrap();
    }
    assert_eq!(answered, sessions as u64 * calls);
    eprintln!("{sessions} sessions x {calls} calls: every response exactly once");
}
