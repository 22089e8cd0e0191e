//! The 2026-07-28 (stateless) era: request metadata, header validation, and the
//! error rules of the spec (`basic/index`, `transports/streamable-http`).

use crate::message::Message;
use crate::version;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::fmt;

pub const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
pub const CLIENT_CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
pub const CLIENT_INFO_KEY: &str = "io.modelcontextprotocol/clientInfo";
pub const LOG_LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";
pub const SUBSCRIPTION_ID_KEY: &str = "io.modelcontextprotocol/subscriptionId";
pub const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";

/// Methods the 2026-07-28 revision removed; a modern request for one gets 404 + -32601.
const REMOVED: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Methods whose `Mcp-Name` header mirrors `params.name` or `params.uri`.
fn named_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// What Lodge needs from a modern request.
#[derive(Clone, Debug, PartialEq)]
pub struct ModernRequest {
    pub version: String,
    pub client_capabilities: Value,
    pub client_info: Option<Value>,
    pub log_level: Option<String>,
    pub request_state: Option<String>,
    pub input_responses: Option<Map<String, Value>>,
    /// The request's params without `_meta`, `inputResponses` and `requestState`:
    /// what identifies "the same request" across MRTR retries.
    pub salient_params: Value,
}

/// The HTTP headers that mirror body fields (SEP-2243).
#[derive(Clone, Copy, Debug, Default)]
pub struct MirroredHeaders<'a> {
    pub protocol_version: Option<&'a str>,
    pub method: Option<&'a str>,
    pub name: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ModernError {
    /// A required `_meta` field is missing or malformed (-32602, 400).
    Meta(String),
    /// The requested version is not one Lodge serves (-32022, 400).
    UnsupportedVersion(String),
    /// A mirrored header is missing or disagrees with the body (-32020, 400).
    HeaderMismatch(String),
    /// A method this revision removed (-32601, 404).
    Removed(String),
}

impl ModernError {
    /// The error's `data` member, where the spec defines one.
    pub fn data(&self) -> Option<Value> {
        match self {
            ModernError::UnsupportedVersion(requested) => {
                Some(json!({ "supported": version::MODERN, "requested": requested }))
            }
            _ => None,
        }
    }
}

impl fmt::Display for ModernError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModernError::Meta(why) => write!(f, "Invalid request metadata: {why}"),
            ModernError::UnsupportedVersion(v) => write!(
                f,
                "Unsupported protocol version {v:?}; supported: {}",
                version::MODERN.join(", ")
            ),
            ModernError::HeaderMismatch(why) => write!(f, "Header mismatch: {why}"),
            ModernError::Removed(m) => {
                write!(
                    f,
                    "Method not found: {m} is not part of protocol 2026-07-28"
                )
            }
        }
    }
}

#[derive(Deserialize)]
struct Body {
    params: Option<Map<String, Value>>,
}

/// Decodes the `=?base64?…?=` form a header value may take.
pub fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(value.to_string()),
    }
}

/// Validates a modern request against its headers and extracts its metadata.
pub fn validate(
    message: &Message,
    headers: MirroredHeaders<'_>,
) -> Result<ModernRequest, ModernError> {
    let method = message.method().unwrap_or_default();
    let body: Body = serde_json::from_slice(&message.bytes)
        .map_err(|e| ModernError::Meta(format!("unreadable params: {e}")))?;
    let mut params = body.params.unwrap_or_default();
    let meta = match params.remove("_meta") {
        Some(Value::Object(meta)) => meta,
        Some(_) => return Err(ModernError::Meta("params._meta must be an object".into())),
        None => return Err(ModernError::Meta("params._meta is required".into())),
    };
    let version = match meta.get(PROTOCOL_VERSION_KEY) {
        Some(Value::String(v)) => v.clone(),
        _ => {
            return Err(ModernError::Meta(format!(
                "_meta[\"{PROTOCOL_VERSION_KEY}\"] is required"
            )));
        }
    };
    let client_capabilities = match meta.get(CLIENT_CAPABILITIES_KEY) {
        Some(caps @ Value::Object(_)) => caps.clone(),
        _ => {
            return Err(ModernError::Meta(format!(
                "_meta[\"{CLIENT_CAPABILITIES_KEY}\"] is required"
            )));
        }
    };
    match headers.protocol_version {
        Some(h) if h == version => {}
        Some(h) => {
            return Err(ModernError::HeaderMismatch(format!(
                "MCP-Protocol-Version header {h:?} does not match _meta protocolVersion {version:?}"
            )));
        }
        None => {
            return Err(ModernError::HeaderMismatch(
                "the MCP-Protocol-Version header is required".into(),
            ));
        }
    }
    if !version::is_modern(&version) {
        return Err(ModernError::UnsupportedVersion(version));
    }
    if message.is_request() {
        match headers.method {
            Some(h) if h == method => {}
            Some(h) => {
                return Err(ModernError::HeaderMismatch(format!(
                    "Mcp-Method header {h:?} does not match body method {method:?}"
                )));
            }
            None => {
                return Err(ModernError::HeaderMismatch(
                    "the Mcp-Method header is required".into(),
                ));
            }
        }
        if let Some(field) = named_param(method) {
            let body_name = params
                .get(field)
                .and_then(Value::as_str)
                .unwrap_or_default();
            match headers.name.map(decode_header_value) {
                Some(Some(h)) if h == body_name => {}
                Some(_) => {
                    return Err(ModernError::HeaderMismatch(format!(
                        "Mcp-Name header does not match params.{field} {body_name:?}"
                    )));
                }
                None => {
                    return Err(ModernError::HeaderMismatch(format!(
                        "the Mcp-Name header is required for {method}"
                    )));
                }
            }
        }
        if REMOVED.contains(&method) {
            return Err(ModernError::Removed(method.to_string()));
        }
    }
    let request_state = match params.remove("requestState") {
        Some(Value::String(s)) => Some(s),
        None => None,
        Some(_) => return Err(ModernError::Meta("requestState must be a string".into())),
    };
    let input_responses = match params.remove("inputResponses") {
        Some(Value::Object(m)) => Some(m),
        None => None,
        Some(_) => return Err(ModernError::Meta("inputResponses must be an object".into())),
    };
    Ok(ModernRequest {
        version,
        client_capabilities,
        client_info: meta.get(CLIENT_INFO_KEY).cloned(),
        log_level: meta
            .get(LOG_LEVEL_KEY)
            .and_then(Value::as_str)
            .map(str::to_string),
        request_state,
        input_responses,
        salient_params: Value::Object(params),
    })
}

/// Whether a request is for the modern era: its `_meta` or its headers name a
/// version past the legacy ones.
pub fn is_modern_request(message: &Message, header_version: Option<&str>) -> bool {
    if header_version.is_some_and(|v| !version::is_legacy(v)) {
        return true;
    }
    message
        .meta_protocol_version()
        .is_some_and(|v| !version::is_legacy(v))
}

/// Severity order of `notifications/message` levels (RFC 5424 names).
pub fn log_severity(level: &str) -> Option<u8> {
    let order = [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ];
    order.iter().position(|l| *l == level).map(|p| p as u8)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(v: Value) -> Message {
        Message::parse(Bytes::from(v.to_string())).unwrap()
    }

    fn call(meta: Value) -> Message {
        msg(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"_meta":meta}}),
        )
    }

    fn good_meta() -> Value {
        json!({PROTOCOL_VERSION_KEY:"2026-07-28", CLIENT_CAPABILITIES_KEY:{}})
    }

    fn headers() -> MirroredHeaders<'static> {
        MirroredHeaders {
            protocol_version: Some("2026-07-28"),
            method: Some("tools/call"),
            name: Some("echo"),
        }
    }

    #[test]
    fn accepts_a_complete_request_and_strips_mrtr_fields() {
        let m = msg(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
            "name":"echo","_meta":good_meta(),"requestState":"s","inputResponses":{"a":{"action":"accept"}}}}),
        );
        let r = validate(&m, headers()).unwrap();
        assert_eq!(r.request_state.as_deref(), Some("s"));
        assert_eq!(r.salient_params, json!({"name":"echo"}));
        assert!(r.input_responses.unwrap().contains_key("a"));
    }

    #[test]
    fn spec_error_rules() {
        let e = validate(&call(json!({CLIENT_CAPABILITIES_KEY:{}})), headers()).unwrap_err();
        assert!(matches!(e, ModernError::Meta(_)));
        let e = validate(&call(json!({PROTOCOL_VERSION_KEY:"2026-07-28"})), headers()).unwrap_err();
        assert!(matches!(e, ModernError::Meta(_)));
        let future =
            || call(json!({PROTOCOL_VERSION_KEY:"2099-01-01", CLIENT_CAPABILITIES_KEY:{}}));
        // A header naming another version than the body is a mismatch, whatever the body says.
        assert!(matches!(
            validate(&future(), headers()),
            Err(ModernError::HeaderMismatch(_))
        ));
        let mut h = headers();
        h.protocol_version = Some("2099-01-01");
        let e = validate(&future(), h).unwrap_err();
        assert!(matches!(e, ModernError::UnsupportedVersion(_)));
        assert_eq!(e.data().unwrap()["requested"], "2099-01-01");
        let mut h = headers();
        h.protocol_version = Some("2025-11-25");
        assert!(matches!(
            validate(&call(good_meta()), h),
            Err(ModernError::HeaderMismatch(_))
        ));
        let mut h = headers();
        h.name = Some("other");
        assert!(matches!(
            validate(&call(good_meta()), h),
            Err(ModernError::HeaderMismatch(_))
        ));
        let mut h = headers();
        h.name = Some("=?base64?ZWNobw==?=");
        assert!(validate(&call(good_meta()), h).is_ok());
        let ping =
            msg(json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":good_meta()}}));
        let h = MirroredHeaders {
            protocol_version: Some("2026-07-28"),
            method: Some("ping"),
            name: None,
        };
        let e = validate(&ping, h).unwrap_err();
        assert_eq!(e, ModernError::Removed("ping".into()));
    }

    #[test]
    fn era_detection() {
        assert!(is_modern_request(&call(good_meta()), None));
        assert!(!is_modern_request(&call(json!({})), Some("2025-11-25")));
        assert!(is_modern_request(&call(json!({})), Some("2026-07-28")));
    }
}
