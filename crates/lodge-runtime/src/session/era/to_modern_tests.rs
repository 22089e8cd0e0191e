//! A legacy client in front of a 2026-07-28 server, the probe of a server's era, and
//! the fallback from a refused `initialize`, exactly.
#![allow(clippy::unwrap_used)]

use super::testing::*;
use crate::SessionError;
use crate::session::{HostingKind, Protocol};
use serde_json::{Value, json};

const DISCOVER_RESULT: &str = r#"{"jsonrpc":"2.0","id":"lodge:1","result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"modern","version":"9"}}}}"#;

/// A legacy session in front of a modern-only server, initialized.
fn initialized() -> Session {
    let mut s = Session::legacy(Protocol::Modern);
    let mut rx = s.requests(&[INITIALIZE], true).unwrap();
    s.sent();
    s.server(DISCOVER_RESULT);
    let init = only_json(&mut rx);
    assert_eq!(init["result"]["serverInfo"]["name"], "modern");
    s
}

#[test]
fn initialize_is_answered_from_server_discover() {
    let mut s = Session::legacy(Protocol::Modern);
    let mut rx = s.requests(&[INITIALIZE], true).unwrap();
    let sent = s.sent_json();
    assert_eq!(
        sent.len(),
        1,
        "the initialize itself never reaches the server"
    );
    assert_eq!(sent[0]["method"], "server/discover");
    assert_eq!(sent[0]["id"], "lodge:1");
    s.server(DISCOVER_RESULT);
    let init = only_json(&mut rx);
    assert_eq!(init["id"], 0);
    assert_eq!(
        init["result"]["protocolVersion"], "2025-06-18",
        "the version the client asked for"
    );
    assert_eq!(init["result"]["capabilities"], json!({"tools": {}}));
    assert_eq!(s.env.shared.protocol_version.get().unwrap(), "2025-06-18");
}

#[test]
fn a_server_speaking_neither_era_fails_initialize_clearly() {
    let mut s = Session::legacy(Protocol::Modern);
    let mut rx = s.requests(&[INITIALIZE], true).unwrap();
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:1","error":{"code":-32601,"message":"nope"}}"#);
    let r = only_json(&mut rx);
    assert_eq!(
        r["error"]["message"],
        "the MCP server speaks neither initialize nor server/discover: nope"
    );
    assert_eq!(s.core.in_flight(), 0);
}

#[test]
fn pings_and_log_levels_are_answered_by_lodge_and_the_level_rides_on_later_calls() {
    let mut s = initialized();
    let mut rx = s
        .requests(
            &[r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"debug"}}"#],
            false,
        )
        .unwrap();
    assert_eq!(
        only_json(&mut rx),
        json!({"jsonrpc": "2.0", "id": 1, "result": {}})
    );
    let mut rx = s
        .requests(&[r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#], false)
        .unwrap();
    assert_eq!(only_json(&mut rx)["result"], json!({}));
    s.deliver(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .unwrap();
    assert!(
        s.sent().is_empty(),
        "none of these reaches a 2026-07-28 server"
    );
    let _rx = s
        .requests(&[r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#], true)
        .unwrap();
    let meta = &s.sent_json()[0]["params"]["_meta"];
    assert_eq!(
        meta["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    assert_eq!(
        meta["io.modelcontextprotocol/clientCapabilities"],
        json!({"elicitation": {}})
    );
    assert_eq!(meta["io.modelcontextprotocol/clientInfo"]["name"], "t");
    assert_eq!(meta["io.modelcontextprotocol/logLevel"], "debug");
}

#[test]
fn input_required_becomes_requests_to_the_client_and_a_retry() {
    let mut s = initialized();
    let mut rx = s
        .requests(
            &[r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask"}}"#],
            true,
        )
        .unwrap();
    s.sent();
    s.server(r#"{"jsonrpc":"2.0","id":5,"result":{"resultType":"input_required","requestState":"opaque","inputRequests":{"q":{"method":"elicitation/create","params":{"message":"?"}}}}}"#);
    let pushed = only_json(&mut rx);
    assert_eq!(pushed["method"], "elicitation/create");
    assert_eq!(pushed["params"], json!({"message": "?"}));
    assert_eq!(
        s.out.asked,
        [("q".to_string(), "elicitation/create".to_string())],
        "the activity learns of the question"
    );
    let push_id = pushed["id"].as_str().unwrap().to_string();
    assert!(push_id.starts_with("lodge:"));
    s.deliver(
        &json!({"jsonrpc": "2.0", "id": push_id, "result": {"action": "accept"}}).to_string(),
    )
    .unwrap();
    let retry = &s.sent_json()[0];
    assert_eq!(
        retry["params"]["inputResponses"],
        json!({"q": {"action": "accept"}})
    );
    assert_eq!(retry["params"]["requestState"], "opaque");
    let retry_id = retry["id"].clone();
    assert_ne!(retry_id, json!(5));
    s.server(&json!({"jsonrpc": "2.0", "id": retry_id, "result": {"resultType": "complete", "content": []}}).to_string());
    let (events, closed) = drain(&mut rx);
    assert!(closed);
    let done: Value = serde_json::from_str(events[0].trim_end_matches('!')).unwrap();
    assert_eq!(done["id"], 5, "the client's own id");
    assert_eq!(s.core.in_flight(), 0);
}

#[test]
fn a_pushed_form_keeps_the_servers_field_order_and_malformed_input_requests_end_the_call() {
    let mut s = initialized();
    let call = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask"}}"#;
    let mut rx = s.requests(&[call], true).unwrap();
    s.server(r#"{"jsonrpc":"2.0","id":5,"result":{"resultType":"input_required","inputRequests":{"q":{"method":"elicitation/create","params":{"message":"?","requestedSchema":{"type":"object","properties":{"where":{},"days":{},"budget":{}}}}}}}}"#);
    let (events, _) = drain(&mut rx);
    let text = &events[0];
    let at = |key: &str| text.find(key).unwrap();
    assert!(
        at("\"where\"") < at("\"days\"") && at("\"days\"") < at("\"budget\""),
        "{text}"
    );

    let call = r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"ask"}}"#;
    let mut rx = s.requests(&[call], true).unwrap();
    s.server(r#"{"jsonrpc":"2.0","id":6,"result":{"resultType":"input_required","inputRequests":{"q":{"params":{}}}}}"#);
    let reply = only_json(&mut rx);
    assert_eq!(reply["id"], 6);
    assert_eq!(reply["error"]["code"], -32603);
}

#[test]
fn an_initialize_refused_as_legacy_falls_back_to_discover_under_auto() {
    let mut s = Session::legacy(Protocol::Auto);
    let mut rx = s.requests(&[INITIALIZE], true).unwrap();
    assert_eq!(s.sent_json()[0]["method"], "initialize");
    s.server(r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32022,"message":"2026-07-28 only"}}"#);
    assert_eq!(s.era(), "to_modern");
    assert_eq!(s.sent_json()[0]["method"], "server/discover");
    s.server(DISCOVER_RESULT);
    let hosting = s.env.shared.hosting.get().unwrap();
    assert_eq!(hosting.kind, HostingKind::SpokenFor);
    assert_eq!(
        hosting.why,
        "the server refused initialize as a 2026-07-28-only server"
    );
    assert_eq!(only_json(&mut rx)["result"]["serverInfo"]["name"], "modern");
}

#[test]
fn under_the_legacy_policy_a_refused_initialize_is_the_clients_answer() {
    let mut s = Session::legacy(Protocol::Legacy);
    let mut rx = s.requests(&[INITIALIZE], true).unwrap();
    s.server(r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32022,"message":"2026-07-28 only"}}"#);
    assert_eq!(s.era(), "relay");
    assert_eq!(only_json(&mut rx)["error"]["code"], -32022);
}

/// What the probe offers and learns, for a server that accepts `initialize`.
const INITIALIZE_RESULT: &str = r#"{"jsonrpc":"2.0","id":"lodge:1","result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"l","version":"1"}}}"#;

#[test]
fn the_probe_asks_initialize_first_and_a_server_that_accepts_it_is_bridged() {
    // A dual-era server (the Python SDK, FastMCP) keeps the era of its first request:
    // asking server/discover first would lose its elicitation and sampling.
    let mut s = Session::probing();
    let mut waiter = s.prepare(Protocol::Auto);
    let mut second = s.prepare(Protocol::Auto);
    let sent = s.sent_json();
    assert_eq!(sent.len(), 1, "concurrent first requests share one probe");
    let init = &sent[0];
    assert_eq!(init["method"], "initialize");
    assert_eq!(init["id"], "lodge:1");
    let caps = &init["params"]["capabilities"];
    assert_eq!(
        caps["elicitation"],
        json!({}),
        "the client's own declaration kept"
    );
    assert_eq!(caps["sampling"], json!({}), "bridgeable in any call");
    assert!(
        caps.get("roots").is_none(),
        "roots only when a client declared them: outside calls Lodge has none to give"
    );
    assert!(waiter.try_recv().is_err(), "not decided yet");
    s.server(INITIALIZE_RESULT);
    assert_eq!(
        s.sent_json(),
        vec![json!({"jsonrpc": "2.0", "method": "notifications/initialized"})]
    );
    assert_eq!(s.era(), "bridge");
    assert_eq!(s.env.shared.protocol_version.get().unwrap(), "2025-11-25");
    let hosting = s.env.shared.hosting.get().unwrap();
    assert_eq!(hosting.kind, HostingKind::Bridged);
    assert_eq!(
        hosting.why,
        "the server accepted initialize, version 2025-11-25"
    );
    assert!(matches!(waiter.try_recv(), Ok(Ok(()))));
    assert!(matches!(second.try_recv(), Ok(Ok(()))));
}

#[test]
fn the_probe_offers_roots_when_the_first_client_declared_them() {
    let mut s = Session::probing();
    let _waiter = s.prepare_with(Protocol::Auto, json!({"roots": {"listChanged": true}}));
    let caps = &s.sent_json()[0]["params"]["capabilities"];
    assert_eq!(caps["roots"], json!({"listChanged": true}));
}

#[test]
fn a_server_that_refuses_initialize_and_speaks_2026_is_passed_through() {
    let mut s = Session::probing();
    let mut waiter = s.prepare(Protocol::Auto);
    s.sent();
    s.server(
        r#"{"jsonrpc":"2.0","id":"lodge:1","error":{"code":-32601,"message":"Method not found"}}"#,
    );
    let sent = s.sent_json();
    assert_eq!(sent[0]["method"], "server/discover");
    assert_eq!(sent[0]["id"], "lodge:2");
    assert!(waiter.try_recv().is_err(), "not decided yet");
    s.server(&DISCOVER_RESULT.replace("lodge:1", "lodge:2"));
    assert_eq!(s.era(), "passthrough");
    let hosting = s.env.shared.hosting.get().unwrap();
    assert_eq!(hosting.kind, HostingKind::Passthrough);
    assert_eq!(
        hosting.why,
        "the server refused initialize (Method not found) and speaks 2026-07-28 by server/discover"
    );
    assert!(matches!(waiter.try_recv(), Ok(Ok(()))));
}

#[test]
fn a_servers_long_refusal_is_cut_short() {
    let mut s = Session::probing();
    let mut waiter = s.prepare(Protocol::Legacy);
    let long = "x".repeat(10_000);
    s.server(
        &json!({"jsonrpc": "2.0", "id": "lodge:1", "error": {"code": -32603, "message": long}})
            .to_string(),
    );
    match waiter.try_recv() {
        Ok(Err(SessionError::Upstream(why))) => assert_eq!(
            why,
            format!("the MCP server refused initialize: {}…", "x".repeat(200))
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_server_that_refuses_both_fails_the_probe_saying_both_answers() {
    let mut s = Session::probing();
    let mut waiter = s.prepare(Protocol::Auto);
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:1","error":{"code":-32603,"message":"broken"}}"#);
    s.server(
        r#"{"jsonrpc":"2.0","id":"lodge:2","error":{"code":-32601,"message":"no such method"}}"#,
    );
    assert_eq!(s.era(), "probe");
    match waiter.try_recv() {
        Ok(Err(SessionError::Upstream(why))) => assert_eq!(
            why,
            "the MCP server refused initialize (broken), and its server/discover answer: no such method"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_refused_initialize_fails_the_probe() {
    let mut s = Session::probing();
    let mut waiter = s.prepare(Protocol::Legacy);
    assert_eq!(s.sent_json()[0]["method"], "initialize");
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:1","error":{"code":-32603,"message":"broken"}}"#);
    assert_eq!(s.era(), "probe");
    match waiter.try_recv() {
        Ok(Err(SessionError::Upstream(why))) => {
            assert_eq!(why, "the MCP server refused initialize: broken")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_modern_policy_passes_through_without_asking() {
    let mut s = Session::probing();
    let mut waiter = s.prepare(Protocol::Modern);
    assert!(s.sent().is_empty());
    assert_eq!(s.era(), "passthrough");
    assert_eq!(
        s.env.shared.hosting.get().unwrap().why,
        "protocol = \"modern\""
    );
    assert!(matches!(waiter.try_recv(), Ok(Ok(()))));
}

#[test]
fn before_the_probe_decides_a_request_is_an_internal_error_not_a_missing_session() {
    let mut s = Session::probing();
    let err = s
        .modern(&modern_request(1, "tools/list", json!({}), json!({})))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, SessionError::Internal(_)));
}
