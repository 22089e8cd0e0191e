//! The JSON-RPC messages the measurements send, identical over HTTP and stdio.

use anyhow::bail;
use lodge_testkit::http::MODERN_VERSION;
pub use lodge_testkit::messages::{check_initialized, initialize, initialized, server_request};
use serde_json::{Value, json};

pub fn echo(id: u64, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":text}}})
    .to_string()
}

/// A 2026-07-28 request: `params` plus the `_meta` every such request carries (the
/// version, and the client's capabilities: elicitation and sampling, as [`initialize`]
/// declares them).
pub fn modern(id: u64, method: &str, mut params: Value) -> String {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation":{},"sampling":{}},
    });
    json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string()
}

/// `params` of `tools/call echo {"text": text}`.
pub fn echo_params(text: &str) -> Value {
    json!({"name":"echo","arguments":{"text":text}})
}

/// `tools/call plan_trip` (legacy era).
pub fn plan_trip(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"plan_trip"}}).to_string()
}

/// What the bench answers `plan_trip`'s form with.
pub fn trip_form() -> Value {
    json!({"action":"accept","content":{"destination":"Kyoto","days":4,"budget":"luxury","flights":true}})
}

/// What the bench answers `plan_trip`'s sampling request with.
pub fn itinerary() -> Value {
    json!({"role":"assistant","content":{"type":"text","text":ITINERARY},"model":"lodge-bench"})
}

pub const ITINERARY: &str = "Temples, then ramen.";
pub const TRIP_PLAN: &str = "Trip to Kyoto: 4 days, luxury, flights yes.\n\nTemples, then ramen.";

/// A JSON-RPC response to the server's request `request` (any id type).
pub fn answer(request: &Value, result: Value) -> String {
    json!({"jsonrpc":"2.0","id":request.get("id").cloned().unwrap_or(Value::Null),"result":result})
        .to_string()
}

/// Checks `message` is a server request for `method` (e.g. `elicitation/create`).
pub fn check_request(message: &Value, method: &str) -> anyhow::Result<()> {
    if message.get("method").and_then(Value::as_str) != Some(method) || message.get("id").is_none()
    {
        bail!("expected a {method} request, got {message}");
    }
    Ok(())
}

/// Checks a `tools/call plan_trip` response carries the plan for the bench's answers.
pub fn check_trip(response: &Value) -> anyhow::Result<()> {
    check_text(response, TRIP_PLAN)
}

/// Checks a `tools/call echo` response echoed `text`.
pub fn check_echo(response: &Value, text: &str) -> anyhow::Result<()> {
    check_text(response, text)
}

/// Checks a `tools/call` response's first content block is `text`.
fn check_text(response: &Value, text: &str) -> anyhow::Result<()> {
    let got = response.pointer("/result/content/0/text");
    if got.and_then(Value::as_str) != Some(text)
        || response.pointer("/result/isError") == Some(&json!(true))
    {
        bail!("expected {text:?}: {response}");
    }
    Ok(())
}
