//! The MRTR bridge (2026-07-28 client, legacy server) and the passthrough, exactly.
#![allow(clippy::unwrap_used)]

use super::testing::*;
use crate::SessionError;
use serde_json::{Value, json};
use std::time::Duration;

fn init() -> Value {
    json!({
        "protocolVersion": "2025-11-25",
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "legacy", "version": "3"},
        "instructions": "be nice",
    })
}

const ELICIT: &str = r#"{"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{"message":"name?","_meta":{"progressToken":"srv"}}}"#;

fn tool_call(id: u64, caps: Value, extra: Value) -> String {
    let mut params = json!({"name": "ask", "arguments": {"x": 1}});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    modern_request(id, "tools/call", params, caps)
}

/// Starts a call that the server answers with an elicitation; returns the
/// `requestState` of the `input_required` result.
fn parked(s: &mut Session) -> String {
    let mut rx = s
        .modern(&tool_call(1, json!({"elicitation": {}}), json!({})))
        .unwrap();
    s.sent();
    s.server(ELICIT);
    let result = only_json(&mut rx);
    assert_eq!(result["id"], 1);
    assert_eq!(result["result"]["resultType"], "input_required");
    result["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn discover_is_answered_from_the_servers_initialize_result() {
    let mut s = Session::bridged(init());
    let mut rx = s
        .modern(&modern_request(7, "server/discover", json!({}), json!({})))
        .unwrap();
    let r = only_json(&mut rx);
    assert_eq!(r["id"], 7);
    assert_eq!(r["result"]["capabilities"], json!({"tools": {}}));
    assert_eq!(r["result"]["instructions"], "be nice");
    assert_eq!(
        r["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "legacy"
    );
    assert!(
        s.sent().is_empty(),
        "Lodge answers it without asking the server"
    );
}

#[test]
fn a_call_goes_upstream_under_lodges_id_without_modern_meta_and_comes_back_complete() {
    let mut s = Session::bridged(init());
    let mut rx = s
        .modern(&modern_request(5, "tools/list", json!({}), json!({})))
        .unwrap();
    let sent = s.sent_json();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["id"], "lodge:1");
    assert_eq!(
        sent[0]["params"]["_meta"],
        json!({}),
        "the era's _meta keys are removed"
    );
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:1","result":{"tools":[]}}"#);
    let r = only_json(&mut rx);
    assert_eq!(r["id"], 5);
    assert_eq!(r["result"]["resultType"], "complete");
    assert_eq!(r["result"]["ttlMs"], 0, "list results carry caching hints");
    assert_eq!(
        r["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["version"],
        "3"
    );
    assert_eq!(s.core.in_flight(), 0);
}

#[test]
fn a_server_request_parks_the_call_and_the_retry_answers_it() {
    let mut s = Session::bridged(init());
    let state = parked(&mut s);
    assert_eq!(s.core.in_flight(), 1, "a call waiting on the user is busy");
    let retry = tool_call(
        2,
        json!({"elicitation": {}}),
        json!({"requestState": state, "inputResponses": {"elicitation-1": {"action": "accept", "content": {"n": "Ada"}}}}),
    );
    let mut rx = s.modern(&retry).unwrap();
    assert_eq!(
        s.sent_json(),
        vec![
            json!({"jsonrpc": "2.0", "id": "e1", "result": {"action": "accept", "content": {"n": "Ada"}}})
        ]
    );
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:1","result":{"content":[]}}"#);
    let r = only_json(&mut rx);
    assert_eq!(r["id"], 2, "the final response answers the retry");
    assert_eq!(r["result"]["resultType"], "complete");
    assert_eq!(s.core.in_flight(), 0);
}

#[test]
fn the_input_request_is_the_servers_without_its_progress_token() {
    let mut s = Session::bridged(init());
    let mut rx = s
        .modern(&tool_call(1, json!({"elicitation": {}}), json!({})))
        .unwrap();
    s.server(ELICIT);
    let r = only_json(&mut rx);
    assert_eq!(
        r["result"]["inputRequests"],
        json!({"elicitation-1": {"method": "elicitation/create", "params": {"message": "name?"}}})
    );
}

#[test]
fn a_forms_fields_reach_the_client_in_the_order_the_server_wrote_them() {
    let mut s = Session::bridged(init());
    let mut rx = s
        .modern(&tool_call(1, json!({"elicitation": {}}), json!({})))
        .unwrap();
    s.server(
        r#"{"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{"message":"trip?","requestedSchema":{"type":"object","properties":{"where":{"type":"string"},"days":{"type":"integer"},"budget":{"type":"string"}}}}}"#,
    );
    let (events, _) = drain(&mut rx);
    let text = &events[0];
    let at = |key: &str| text.find(key).unwrap();
    assert!(
        at("\"where\"") < at("\"days\"") && at("\"days\"") < at("\"budget\""),
        "{text}"
    );
    let r: Value = serde_json::from_str(text.trim_end_matches('!')).unwrap();
    assert_eq!(
        r["result"]["inputRequests"]["elicitation-1"]["params"]["message"],
        "trip?"
    );
}

#[test]
fn a_state_is_used_once() {
    let mut s = Session::bridged(init());
    let state = parked(&mut s);
    let retry = tool_call(
        2,
        json!({"elicitation": {}}),
        json!({"requestState": state, "inputResponses": {}}),
    );
    let _rx = s.modern(&retry).unwrap();
    let again = s.modern(&retry).map(|_| ()).unwrap_err();
    assert_eq!(
        again.to_string(),
        "requestState was already used, or its call has ended"
    );
}

#[test]
fn a_state_opens_only_for_the_same_request_and_principal() {
    let mut s = Session::bridged(init());
    let state = parked(&mut s);
    let mut other = json!({"requestState": state, "inputResponses": {}});
    other["arguments"] = json!({"x": 2});
    let err = s
        .modern(&tool_call(2, json!({}), other))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "requestState belongs to a different request (method or params differ)"
    );
    let same = tool_call(
        3,
        json!({}),
        json!({"requestState": state, "inputResponses": {}}),
    );
    let err = s.modern_as(&same, "mallory").map(|_| ()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "requestState belongs to another session or user"
    );
    assert!(s.modern(&same).is_ok(), "still usable by its own principal");
}

#[test]
fn an_undeclared_capability_is_refused_to_the_server() {
    let mut s = Session::bridged(init());
    let mut rx = s.modern(&tool_call(1, json!({}), json!({}))).unwrap();
    s.sent();
    s.server(r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{}}"#);
    let sent = s.sent_json();
    assert_eq!(sent[0]["id"], 9);
    assert_eq!(sent[0]["error"]["code"], -32601);
    assert_eq!(
        sent[0]["error"]["message"],
        "the client did not declare the sampling capability"
    );
    assert_eq!(drain(&mut rx), (vec![], false), "the call goes on");
}

#[test]
fn with_no_call_waiting_requests_are_refused_and_pings_answered() {
    let mut s = Session::bridged(init());
    s.server(r#"{"jsonrpc":"2.0","id":3,"method":"roots/list"}"#);
    s.server(r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#);
    s.server(r#"{"jsonrpc":"2.0","id":5,"method":"elicitation/create","params":{}}"#);
    let sent = s.sent_json();
    assert_eq!(sent[0]["id"], 3);
    assert_eq!(
        sent[0]["error"]["code"], -32601,
        "roots nobody gave: answered as a client without roots"
    );
    assert_eq!(sent[1], json!({"jsonrpc": "2.0", "id": 4, "result": {}}));
    assert_eq!(sent[2]["error"]["code"], -32603);
    assert_eq!(
        sent[2]["error"]["message"],
        "no client request is waiting for this input"
    );
}

#[test]
fn roots_a_client_gave_in_a_call_answer_the_servers_later_requests_outside_calls() {
    let mut s = Session::bridged(init());
    let mut rx = s
        .modern(&tool_call(1, json!({"roots": {}}), json!({})))
        .unwrap();
    s.sent();
    s.server(r#"{"jsonrpc":"2.0","id":"r1","method":"roots/list"}"#);
    let state = only_json(&mut rx)["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_string();
    let roots = json!({"roots": [{"uri": "file:///work", "name": "work"}]});
    let retry = tool_call(
        2,
        json!({"roots": {}}),
        json!({"requestState": state, "inputResponses": {"roots-1": roots}}),
    );
    let mut rx = s.modern(&retry).unwrap();
    s.sent();
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:1","result":{"content":[]}}"#);
    assert_eq!(only_json(&mut rx)["result"]["resultType"], "complete");
    s.server(r#"{"jsonrpc":"2.0","id":"r2","method":"roots/list"}"#);
    assert_eq!(
        s.sent_json(),
        vec![json!({"jsonrpc": "2.0", "id": "r2", "result": roots})]
    );
}

#[tokio::test(start_paused = true)]
async fn a_parked_call_whose_client_never_retries_is_abandoned() {
    let mut s = Session::bridged(init());
    parked(&mut s);
    let deadline = s.next_deadline().unwrap();
    assert_eq!(
        deadline,
        tokio::time::Instant::now() + Duration::from_secs(60)
    );
    tokio::time::advance(Duration::from_secs(59)).await;
    s.tick();
    assert!(s.sent().is_empty(), "not yet");
    tokio::time::advance(Duration::from_secs(1)).await;
    s.tick();
    let sent = s.sent_json();
    assert_eq!(sent[0]["id"], "e1");
    assert_eq!(
        sent[0]["error"]["message"],
        "the client did not answer in time"
    );
    assert_eq!(sent[1]["method"], "notifications/cancelled");
    assert_eq!(sent[1]["params"]["requestId"], "lodge:1");
    assert_eq!((s.core.in_flight(), s.next_deadline()), (0, None));
}

#[test]
fn closing_a_calls_stream_cancels_it_but_not_a_parked_one() {
    let mut s = Session::bridged(init());
    parked(&mut s); // stream 1, parked
    let _rx = s
        .modern(&modern_request(2, "tools/list", json!({}), json!({})))
        .unwrap(); // stream 2
    s.sent();
    s.abandon(1);
    assert!(s.sent().is_empty(), "the parked call waits for its retry");
    s.abandon(2);
    let sent = s.sent_json();
    assert_eq!(sent[0]["method"], "notifications/cancelled");
    assert_eq!(sent[0]["params"]["requestId"], "lodge:2");
    assert_eq!(s.core.in_flight(), 1);
}

#[test]
fn progress_follows_the_current_rounds_token() {
    let mut s = Session::bridged(init());
    let mut call =
        serde_json::from_str::<Value>(&tool_call(1, json!({"elicitation": {}}), json!({})))
            .unwrap();
    call["params"]["_meta"]["progressToken"] = json!("a");
    let mut rx = s.modern(&call.to_string()).unwrap();
    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"a","progress":1}}"#;
    s.server(progress);
    assert_eq!(drain(&mut rx).0, vec![progress]);
    s.server(ELICIT);
    let state = only_json(&mut rx)["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_string();
    let answers = json!({"elicitation-1": {"action": "decline"}});
    let mut retry = serde_json::from_str::<Value>(&tool_call(
        2,
        json!({"elicitation": {}}),
        json!({"requestState": state, "inputResponses": answers}),
    ))
    .unwrap();
    retry["params"]["_meta"]["progressToken"] = json!("b");
    let mut rx2 = s.modern(&retry.to_string()).unwrap();
    s.server(progress);
    let r = only_json(&mut rx2);
    assert_eq!(
        r["params"]["progressToken"], "b",
        "renamed to the retry's token"
    );
    // A retry that asks for no progress gets none.
    s.server(ELICIT.replace("e1", "e2").as_str());
    let state = only_json(&mut rx2)["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_string();
    let answers = json!({"elicitation-2": {"action": "decline"}});
    let retry = tool_call(
        3,
        json!({}),
        json!({"requestState": state, "inputResponses": answers}),
    );
    let mut rx3 = s.modern(&retry).unwrap();
    s.server(progress);
    assert_eq!(drain(&mut rx3), (vec![], false));
}

#[test]
fn logs_reach_the_newest_call_at_the_level_it_asked_for() {
    let mut s = Session::bridged(init());
    let mut call =
        serde_json::from_str::<Value>(&modern_request(1, "tools/list", json!({}), json!({})))
            .unwrap();
    call["params"]["_meta"]["io.modelcontextprotocol/logLevel"] = json!("warning");
    let mut rx = s.modern(&call.to_string()).unwrap();
    let info = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"i"}}"#;
    let error = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"error","data":"e"}}"#;
    s.server(info);
    s.server(error);
    assert_eq!(drain(&mut rx).0, vec![error]);
}

#[test]
fn listen_streams_get_the_notifications_they_asked_for_and_are_not_busy() {
    let mut s = Session::bridged(init());
    let params = json!({"notifications": {"toolsListChanged": true, "resourceSubscriptions": ["file:///a"]}});
    let mut rx = s
        .modern(&modern_request(
            8,
            "subscriptions/listen",
            params,
            json!({}),
        ))
        .unwrap();
    let ack = only_json(&mut rx);
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged");
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        8
    );
    let sent = s.sent_json();
    assert_eq!(sent[0]["method"], "resources/subscribe");
    assert_eq!(sent[0]["params"]["uri"], "file:///a");
    assert_eq!(s.core.in_flight(), 0);
    s.server(r#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#);
    s.server(r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///b"}}"#);
    assert_eq!(drain(&mut rx).0, Vec::<String>::new(), "not asked for");
    s.server(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#);
    let tagged = only_json(&mut rx);
    assert_eq!(tagged["method"], "notifications/tools/list_changed");
    assert_eq!(
        tagged["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        8
    );
}

#[test]
fn a_call_ended_with_the_session_answers_under_the_clients_id() {
    let mut s = Session::bridged(init());
    let _rx = s
        .modern(&modern_request(42, "tools/list", json!({}), json!({})))
        .unwrap();
    let (key, pending) = s.core.drain().pop().unwrap();
    assert_eq!(key.as_json_text(), "\"lodge:1\"");
    assert_eq!(pending.state.client_id(&key).as_json_text(), "42");
}

#[test]
fn passthrough_remaps_ids_both_ways() {
    let mut s = Session::modern_passthrough();
    let mut rx = s
        .modern(&modern_request(3, "tools/list", json!({}), json!({})))
        .unwrap();
    let sent = s.sent_json();
    assert_eq!(sent[0]["id"], "lodge:1");
    assert_eq!(
        sent[0]["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"], "2026-07-28",
        "everything else passes as it is"
    );
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:1","result":{"resultType":"complete","tools":[]}}"#);
    assert_eq!(
        drain(&mut rx),
        (
            vec![
                r#"{"jsonrpc":"2.0","id":3,"result":{"resultType":"complete","tools":[]}}!"#
                    .to_string()
            ],
            true
        )
    );
}

#[test]
fn passthrough_tells_the_activity_of_a_servers_input_requests_only() {
    let mut s = Session::modern_passthrough();
    let _rx = s
        .modern(&modern_request(
            3,
            "tools/call",
            json!({"name": "ask"}),
            json!({}),
        ))
        .unwrap();
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:1","result":{"resultType":"input_required","requestState":"x","inputRequests":{"user_name":{"method":"elicitation/create","params":{"message":"?"}},"model":{"method":"sampling/createMessage","params":{}}}}}"#);
    assert_eq!(
        s.out.asked,
        [
            ("model".to_string(), "sampling/createMessage".to_string()),
            ("user_name".to_string(), "elicitation/create".to_string())
        ]
    );
    // A complete result that merely mentions the word, and another method's: nothing.
    let _rx = s
        .modern(&modern_request(
            4,
            "tools/call",
            json!({"name": "ask"}),
            json!({}),
        ))
        .unwrap();
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:2","result":{"content":[{"type":"text","text":"input_required"}]}}"#);
    let _rx = s
        .modern(&modern_request(5, "tools/list", json!({}), json!({})))
        .unwrap();
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:3","result":{"resultType":"input_required","inputRequests":{"k":{"method":"roots/list"}}}}"#);
    assert_eq!(s.out.asked.len(), 2);
}

#[test]
fn passthrough_subscriptions_are_retagged_and_idle() {
    let mut s = Session::modern_passthrough();
    let mut rx = s
        .modern(&modern_request(
            6,
            "subscriptions/listen",
            json!({"notifications": {}}),
            json!({}),
        ))
        .unwrap();
    assert_eq!(s.core.in_flight(), 0, "a listen stream is not activity");
    s.server(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"lodge:1"}}}"#);
    let n = only_json(&mut rx);
    assert_eq!(
        n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
        6
    );
}

#[test]
fn passthrough_refuses_server_requests_and_lodge_states() {
    let mut s = Session::modern_passthrough();
    let _rx = s
        .modern(&modern_request(1, "tools/list", json!({}), json!({})))
        .unwrap();
    s.sent();
    s.server(r#"{"jsonrpc":"2.0","id":5,"method":"elicitation/create","params":{}}"#);
    assert_eq!(s.sent_json()[0]["error"]["code"], -32603);
    let mut b = Session::bridged(init());
    let state = parked(&mut b);
    s.env.codec = b.env.codec.clone(); // the state opens; the adapter refuses it
    let retry = tool_call(
        2,
        json!({}),
        json!({"requestState": state, "inputResponses": {}}),
    );
    assert!(matches!(s.modern(&retry), Err(SessionError::StaleState(_))));
}

#[tokio::test(start_paused = true)]
async fn a_parked_call_waits_on_its_client_not_on_the_request_timeout() {
    let mut s = Session::bridged(init());
    parked(&mut s);
    // The request timeout (5m) is longer than the state's lifetime (60s) here, so
    // the park expiry is the only deadline; the call's own clock is stopped.
    assert_eq!(s.core.next_call_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn passthrough_times_out_under_the_clients_id_and_cancels_the_minted_one() {
    let mut s = Session::modern_passthrough();
    let mut rx = s
        .modern(&modern_request(9, "tools/list", json!({}), json!({})))
        .unwrap();
    s.sent();
    tokio::time::advance(std::time::Duration::from_secs(300)).await;
    s.tick();
    let cancel = &s.sent_json()[0];
    assert_eq!(cancel["method"], "notifications/cancelled");
    assert_eq!(cancel["params"]["requestId"], "lodge:1");
    let error = only_json(&mut rx);
    assert_eq!(error["id"], 9);
    assert_eq!(error["error"]["code"], -32004);
    assert_eq!(s.core.in_flight(), 0);
    // A late answer finds no call and goes nowhere.
    s.server(r#"{"jsonrpc":"2.0","id":"lodge:1","result":{"resultType":"complete","tools":[]}}"#);
    assert_eq!(drain(&mut rx), (vec![], true));
}

#[tokio::test(start_paused = true)]
async fn passthrough_progress_reaches_its_call_and_keeps_it_alive() {
    let mut s = Session::modern_passthrough();
    let mut request: Value =
        serde_json::from_str(&modern_request(4, "tools/call", json!({}), json!({}))).unwrap();
    request["params"]["name"] = json!("slow");
    request["params"]["_meta"]["progressToken"] = json!("p");
    let mut rx = s.modern(&request.to_string()).unwrap();
    s.sent();
    tokio::time::advance(std::time::Duration::from_secs(200)).await;
    s.server(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1}}"#);
    assert_eq!(only_json(&mut rx)["params"]["progress"], 1);
    // 200 s + 200 s: past the 5m timeout from the call's start, not from its progress.
    tokio::time::advance(std::time::Duration::from_secs(200)).await;
    s.tick();
    assert!(s.sent().is_empty(), "progress reset the server's deadline");
    assert_eq!(s.core.in_flight(), 1);
}

#[test]
fn passthrough_logs_go_to_the_newest_call_not_a_listen_stream() {
    let mut s = Session::modern_passthrough();
    let mut listen = s
        .modern(&modern_request(
            1,
            "subscriptions/listen",
            json!({"notifications": {}}),
            json!({}),
        ))
        .unwrap();
    let mut older = s
        .modern(&modern_request(2, "tools/list", json!({}), json!({})))
        .unwrap();
    let mut newer = s
        .modern(&modern_request(3, "prompts/list", json!({}), json!({})))
        .unwrap();
    s.server(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}"#);
    assert_eq!(only_json(&mut newer)["params"]["data"], "x");
    assert_eq!(drain(&mut older), (vec![], false));
    assert_eq!(drain(&mut listen), (vec![], false));
}
