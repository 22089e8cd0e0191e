//! The JSON-RPC messages a raw client sends to open a legacy session, and how it tells
//! the messages it reads apart.

use crate::http::PROTOCOL_VERSION;
use anyhow::bail;
use serde_json::{Value, json};

/// `initialize` offering elicitation and sampling, as a capable client does.
pub fn initialize(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{
        "protocolVersion":PROTOCOL_VERSION,
        "capabilities":{"elicitation":{},"sampling":{}},
        "clientInfo":{"name":"lodge-testkit","version":env!("CARGO_PKG_VERSION")}}})
    .to_string()
}

pub fn initialized() -> String {
    json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string()
}

/// Checks an `initialize` response carries a result.
pub fn check_initialized(response: &Value) -> anyhow::Result<()> {
    if response.pointer("/result/protocolVersion").is_none() {
        bail!("initialize failed: {response}");
    }
    Ok(())
}

/// True for a JSON-RPC response (result or error) to request `id`.
pub fn is_response_to(message: &Value, id: u64) -> bool {
    message.get("id").and_then(Value::as_u64) == Some(id)
        && (message.get("result").is_some() || message.get("error").is_some())
}

/// A message a client reads while its call is in flight: `Some` for a server request,
/// `None` for a notification (to skip), an error for the call's end (its response).
pub fn server_request(message: Value) -> anyhow::Result<Option<Value>> {
    match (message.get("method"), message.get("id")) {
        (Some(_), Some(_)) => Ok(Some(message)),
        (Some(_), None) => Ok(None),
        (None, _) => bail!("the call ended before the server asked anything: {message}"),
    }
}
