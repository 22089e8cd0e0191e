use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// A JSON-RPC id (or progress token) as its compact JSON text: `7` or `"abc"`.
/// Comparing the text keeps `1` and `"1"` apart, as JSON-RPC requires.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(Box<str>);

impl Id {
    pub fn from_json_text(text: &str) -> Self {
        Id(text.trim().into())
    }
    pub fn as_json_text(&self) -> &str {
        &self.0
    }
    /// Ids Lodge puts on requests it sends to a server itself (`"lodge:…"`).
    pub fn is_lodge_owned(&self) -> bool {
        self.0.starts_with("\"lodge:")
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a message is, as far as routing cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Request {
        id: Id,
        method: Box<str>,
        progress_token: Option<Id>,
    },
    Notification {
        method: Box<str>,
        /// `params.progressToken` of `notifications/progress`.
        progress_token: Option<Id>,
        /// `params.requestId` of `notifications/cancelled`.
        cancelled_id: Option<Id>,
        /// `params._meta.subscriptionId` (2026-07-28 `subscriptions/listen` streams).
        subscription_id: Option<Id>,
    },
    Response {
        id: Id,
    },
}

/// One JSON-RPC message: its original bytes and its routing facts.
#[derive(Clone, Debug)]
pub struct Message {
    pub bytes: Bytes,
    pub kind: Kind,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`: set on 2026-07-28 requests.
    meta_version: Option<Box<str>>,
    /// `error.code` of an error response.
    error_code: Option<i64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all.
    Json(String),
    /// JSON, but not a JSON-RPC 2.0 message.
    Invalid(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Json(e) => write!(f, "body is not valid JSON: {e}"),
            ParseError::Invalid(why) => write!(f, "not a valid JSON-RPC 2.0 message: {why}"),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    jsonrpc: Option<&'a str>,
    /// `None`: absent; `Some(None)`: `"id": null`.
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<Option<&'a RawValue>>,
    method: Option<Box<str>>,
    #[serde(borrow)]
    params: Option<Params<'a>>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(rename = "_meta", borrow)]
    meta: Option<Meta<'a>>,
    #[serde(rename = "progressToken", borrow)]
    progress_token: Option<&'a RawValue>,
    #[serde(rename = "requestId", borrow)]
    request_id: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(rename = "progressToken", borrow)]
    progress_token: Option<&'a RawValue>,
    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
    protocol_version: Option<Box<str>>,
    #[serde(rename = "io.modelcontextprotocol/subscriptionId", borrow)]
    subscription_id: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<&'de RawValue>>, D::Error> {
    Option::<&'de RawValue>::deserialize(d).map(Some)
}

fn id_of(raw: Option<&RawValue>) -> Option<Id> {
    raw.map(|r| Id::from_json_text(r.get()))
        .filter(|id| id.as_json_text() != "null")
}

impl Message {
    /// Classifies one message, keeping `bytes` as they are.
    pub fn parse(bytes: Bytes) -> Result<Message, ParseError> {
        let env: Envelope<'_> =
            serde_json::from_slice(&bytes).map_err(|e| ParseError::Json(e.to_string()))?;
        if env.jsonrpc != Some("2.0") {
            return Err(ParseError::Invalid("\"jsonrpc\" must be \"2.0\""));
        }
        let id = id_of(env.id.flatten());
        let meta = env.params.as_ref().and_then(|p| p.meta.as_ref());
        let kind = match (env.method, id) {
            (Some(method), Some(id)) => Kind::Request {
                id,
                method,
                progress_token: meta.and_then(|m| id_of(m.progress_token)),
            },
            (Some(method), None) if env.id.is_none() => {
                let params = env.params.as_ref();
                Kind::Notification {
                    method,
                    progress_token: params.and_then(|p| id_of(p.progress_token)),
                    cancelled_id: params.and_then(|p| id_of(p.request_id)),
                    subscription_id: meta.and_then(|m| id_of(m.subscription_id)),
                }
            }
            (Some(_), None) => return Err(ParseError::Invalid("a request id must not be null")),
            (None, Some(id)) if env.result.is_some() != env.error.is_some() => {
                Kind::Response { id }
            }
            (None, None) if env.error.is_some() => {
                // An error response to something unparseable: no id to route by.
                return Err(ParseError::Invalid("an error response with a null id"));
            }
            (None, _) => {
                return Err(ParseError::Invalid(
                    "expected a request, a notification or a response",
                ));
            }
        };
        let meta_version = meta.and_then(|m| m.protocol_version.clone());
        #[derive(Deserialize)]
        struct ErrorCode {
            code: Option<i64>,
        }
        // Only error responses pay for this second, small parse.
        let error_code = env
            .error
            .and_then(|raw| serde_json::from_str::<ErrorCode>(raw.get()).ok())
            .and_then(|e| e.code);
        Ok(Message {
            bytes,
            kind,
            meta_version,
            error_code,
        })
    }

    /// The protocol version a 2026-07-28 request names in its `_meta`.
    pub fn meta_protocol_version(&self) -> Option<&str> {
        self.meta_version.as_deref()
    }

    /// The JSON-RPC error code of an error response.
    pub fn error_code(&self) -> Option<i64> {
        self.error_code
    }

    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            Kind::Request { method, .. } | Kind::Notification { method, .. } => Some(method),
            Kind::Response { .. } => None,
        }
    }

    pub fn request_id(&self) -> Option<&Id> {
        match &self.kind {
            Kind::Request { id, .. } => Some(id),
            _ => None,
        }
    }

    pub fn is_request(&self) -> bool {
        matches!(self.kind, Kind::Request { .. })
    }
}

/// Splits a JSON array body into its elements' bytes (each one still unparsed).
pub fn parse_batch(bytes: &Bytes) -> Result<Vec<Bytes>, ParseError> {
    let items: Vec<&RawValue> =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    if items.is_empty() {
        return Err(ParseError::Invalid("an empty batch"));
    }
    Ok(items
        .into_iter()
        .map(|raw| bytes.slice_ref(raw.get().as_bytes()))
        .collect())
}

/// A JSON-RPC error response. `id` is echoed when known, `null` otherwise.
pub fn error_body(id: Option<&Id>, code: i64, message: &str) -> Bytes {
    error_body_with_data(id, code, message, None)
}

/// A JSON-RPC error response with a `data` member.
pub fn error_body_with_data(
    id: Option<&Id>,
    code: i64,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Bytes {
    let id = id.map_or("null", Id::as_json_text);
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    let data = data.map_or(String::new(), |d| format!(r#","data":{d}"#));
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}{data}}}}}"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &'static str) -> Result<Message, ParseError> {
        Message::parse(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn classifies_request_with_progress_token() {
        let m = parse(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p1"}}}"#).unwrap();
        assert_eq!(
            m.kind,
            Kind::Request {
                id: Id::from_json_text("7"),
                method: "tools/call".into(),
                progress_token: Some(Id::from_json_text("\"p1\"")),
            }
        );
    }

    #[test]
    fn error_responses_carry_their_code() {
        let e =
            parse(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#).unwrap();
        assert_eq!(e.error_code(), Some(-32601));
        let odd = parse(r#"{"jsonrpc":"2.0","id":1,"error":"broken"}"#).unwrap();
        assert_eq!(
            odd.error_code(),
            None,
            "a malformed error object still relays"
        );
        let ok = parse(r#"{"jsonrpc":"2.0","id":1,"result":{"error":{"code":1}}}"#).unwrap();
        assert_eq!(ok.error_code(), None);
    }

    #[test]
    fn string_and_number_ids_differ() {
        let a = parse(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
        let b = parse(r#"{"jsonrpc":"2.0","id":"1","result":{}}"#).unwrap();
        assert_ne!(a.kind, b.kind);
    }

    #[test]
    fn classifies_notifications() {
        let p = parse(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":3,"progress":1}}"#).unwrap();
        assert!(
            matches!(p.kind, Kind::Notification { progress_token: Some(ref t), .. } if t.as_json_text() == "3")
        );
        let c = parse(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"a"}}"#,
        )
        .unwrap();
        assert!(
            matches!(c.kind, Kind::Notification { cancelled_id: Some(ref t), .. } if t.as_json_text() == "\"a\"")
        );
    }

    #[test]
    fn classifies_responses() {
        let r =
            parse(r#"{"jsonrpc":"2.0","id":"lodge:1","error":{"code":1,"message":"x"}}"#).unwrap();
        assert!(matches!(r.kind, Kind::Response { ref id } if id.is_lodge_owned()));
    }

    #[test]
    fn rejects_what_is_not_jsonrpc() {
        assert!(matches!(parse("{"), Err(ParseError::Json(_))));
        assert!(matches!(
            parse(r#"{"id":1,"method":"x"}"#),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1}"#),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#),
            Err(ParseError::Invalid(_))
        ));
    }

    #[test]
    fn keeps_original_bytes() {
        let text = r#"{ "jsonrpc" : "2.0", "method":"x/y", "params":{"extra":[1,2]} }"#;
        assert_eq!(&parse(text).unwrap().bytes[..], text.as_bytes());
    }

    #[test]
    fn splits_batches_without_reserializing() {
        let body = Bytes::from_static(
            br#"[ {"jsonrpc":"2.0","method":"a"} , {"jsonrpc":"2.0","id":1,"method":"b"} ]"#,
        );
        let items = parse_batch(&body).unwrap();
        assert_eq!(&items[0][..], br#"{"jsonrpc":"2.0","method":"a"}"#);
        assert_eq!(items.len(), 2);
        assert!(parse_batch(&Bytes::from_static(b"[]")).is_err());
    }

    #[test]
    fn error_body_echoes_id_and_escapes() {
        let id = Id::from_json_text("\"x\"");
        let body = error_body(Some(&id), -32001, "say \"hi\"");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["error"]["message"], "say \"hi\"");
        assert_eq!(
            error_body(None, 1, "m")[..],
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"m"}}"#[..]
        );
    }
}
