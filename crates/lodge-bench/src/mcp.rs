//! The JSON-RPC messages the measurements send, identical over HTTP and stdio.

use crate::http::PROTOCOL_VERSION;
use anyhow::bail;
use serde_json::{Value, json};

pub fn initialize(id: u64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"initialize","params":{
        "protocolVersion":PROTOCOL_VERSION,
        "capabilities":{"elicitation":{},"sampling":{}},
        "clientInfo":{"name":"lodge-bench","version":env!("CARGO_PKG_VERSION")}}})
    .to_string()
}

pub fn initialized() -> String {
    json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string()
}

pub fn echo(id: u64, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":text}}})
    .to_string()
}

/// Checks an `initialize` response carries a result.
pub fn check_initialized(response: &Value) -> anyhow::Result<()> {
    if response.pointer("/result/protocolVersion").is_none() {
        bail!("initialize failed: {response}");
    }
    Ok(())
}

/// Checks a `tools/call echo` response echoed `text`.
pub fn check_echo(response: &Value, text: &str) -> anyhow::Result<()> {
    let got = response.pointer("/result/content/0/text");
    if got.and_then(Value::as_str) != Some(text)
        || response.pointer("/result/isError") == Some(&json!(true))
    {
        bail!("echo did not echo {text:?}: {response}");
    }
    Ok(())
}
