use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
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
    /// Not JSON at all (including invalid UTF-8 anywhere in it).
    Json(String),
    /// JSON, but not a JSON-RPC 2.0 message.
    Invalid(Cow<'static, str>),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Json(e) => write!(f, "body is not valid JSON: {e}"),
            ParseError::Invalid(why) => write!(f, "not a valid JSON-RPC 2.0 message: {why}"),
        }
    }
}

fn invalid(why: &'static str) -> ParseError {
    ParseError::Invalid(Cow::Borrowed(why))
}

/// Deepest nesting of objects and arrays a message may have (the message object itself
/// is level 1). Members Lodge does not read are skipped without a depth limit, so this
/// bound is what keeps a 100,000-level argument from reaching (and crashing) a server's
/// recursive parser; 128 matches serde_json's own limit for what it does read.
pub const MAX_NESTING: usize = 128;

/// Largest integer request id: ids are echoed by servers written in many languages,
/// and one that a server cannot hold exactly comes back changed and matches nothing.
const MAX_INTEGER_ID: i128 = i64::MAX as i128;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    /// `None`: absent; `Some(None)`: `"id": null`.
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<Option<&'a RawValue>>,
    method: Option<Box<str>>,
    #[serde(borrow)]
    params: Option<ObjectOnly<Params<'a>>>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(rename = "_meta", borrow)]
    meta: Option<ObjectOnly<Meta<'a>>>,
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

/// `T` read from a JSON object only. A derived struct also accepts an array (its
/// fields by position), which would let `"params": [null, null]` through.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
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

/// A request or response id must be a string or an integer (JSON-RPC: no fractional
/// parts; MCP: string or number, never null on a request).
fn check_id(raw: &RawValue) -> Result<(), ParseError> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => Ok(()),
        Some(b'-' | b'0'..=b'9') => match text.parse::<i128>() {
            Ok(n) if n.abs() <= MAX_INTEGER_ID => Ok(()),
            Ok(_) => Err(invalid("an integer id must fit in 64 bits")),
            Err(_) if text.bytes().all(|b| b == b'-' || b.is_ascii_digit()) => {
                Err(invalid("an integer id must fit in 64 bits"))
            }
            Err(_) => Err(invalid(
                "an id must be a string or an integer, not a fraction",
            )),
        },
        _ => Err(invalid("an id must be a string or an integer")),
    }
}

/// Whether objects and arrays nest deeper than `max`, counting brackets outside strings.
/// One pass, no allocation; run after the UTF-8 check, before anything parses.
fn nests_deeper_than(text: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// UTF-8 and nesting, checked once for a whole body. serde_json skips the members Lodge
/// does not read without checking their strings are UTF-8, so a lossy reader further on
/// would turn bad bytes into U+FFFD; JSON-RPC over MCP is UTF-8, so refuse them here.
fn prescreen(bytes: &[u8]) -> Result<&str, ParseError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ParseError::Json(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?;
    if nests_deeper_than(bytes, MAX_NESTING) {
        return Err(invalid("objects and arrays nest deeper than 128 levels"));
    }
    Ok(text)
}

/// A failed typed read: valid JSON of the wrong shape is an invalid request (-32600);
/// anything else is not JSON (-32700). Only the error path pays for the second parse.
fn classify(text: &str, e: serde_json::Error) -> ParseError {
    if e.is_data() && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        ParseError::Invalid(Cow::Owned(e.to_string()))
    } else {
        ParseError::Json(e.to_string())
    }
}

impl Message {
    /// Classifies one message, keeping `bytes` as they are. Refuses (before anything
    /// is forwarded) what JSON-RPC and MCP do not allow: invalid UTF-8, nesting deeper
    /// than [`MAX_NESTING`], a message that is not an object, `jsonrpc` other than
    /// `"2.0"`, a `method` that is not a string, an id that is not a string or an
    /// integer, `params` or `params._meta` that is not an object.
    pub fn parse(bytes: Bytes) -> Result<Message, ParseError> {
        let text = prescreen(&bytes)?;
        if text.trim_start().as_bytes().first() != Some(&b'{') {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => invalid("a message must be a JSON object"),
                Err(e) => ParseError::Json(e.to_string()),
            });
        }
        let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| classify(text, e))?;
        if env.jsonrpc.as_deref() != Some("2.0") {
            return Err(invalid("\"jsonrpc\" must be \"2.0\""));
        }
        if let Some(Some(raw)) = env.id {
            check_id(raw)?;
        }
        let id = id_of(env.id.flatten());
        let params = env.params.as_ref().map(|p| &p.0);
        let meta = params.and_then(|p| p.meta.as_ref()).map(|m| &m.0);
        let kind = match (env.method, id) {
            (Some(method), Some(id)) => Kind::Request {
                id,
                method,
                progress_token: meta.and_then(|m| id_of(m.progress_token)),
            },
            (Some(method), None) if env.id.is_none() => Kind::Notification {
                method,
                progress_token: params.and_then(|p| id_of(p.progress_token)),
                cancelled_id: params.and_then(|p| id_of(p.request_id)),
                subscription_id: meta.and_then(|m| id_of(m.subscription_id)),
            },
            (Some(_), None) => return Err(invalid("a request id must not be null")),
            (None, Some(id)) if env.result.is_some() != env.error.is_some() => {
                Kind::Response { id }
            }
            (None, None) if env.error.is_some() => {
                // An error response to something unparseable: no id to route by.
                return Err(invalid("an error response with a null id"));
            }
            (None, _) => {
                return Err(invalid("expected a request, a notification or a response"));
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

/// The id of a message [`Message::parse`] refused as invalid, where it can still be
/// read (a string or an integer at the top of an object), so the refusal can answer
/// that request. Only the error path pays for this parse.
pub fn readable_id(bytes: &[u8]) -> Option<Id> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
    }
    let text = std::str::from_utf8(bytes).ok()?;
    if text.trim_start().as_bytes().first() != Some(&b'{') {
        return None;
    }
    let raw = serde_json::from_str::<IdOnly<'_>>(text).ok()?.id?;
    check_id(raw).ok()?;
    id_of(Some(raw))
}

/// Splits a JSON array body into its elements' bytes (each one still unparsed).
pub fn parse_batch(bytes: &Bytes) -> Result<Vec<Bytes>, ParseError> {
    let text = prescreen(bytes)?;
    let items: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    if items.is_empty() {
        return Err(invalid("an empty batch"));
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

    fn is_invalid(s: &str) -> bool {
        matches!(
            Message::parse(Bytes::copy_from_slice(s.as_bytes())),
            Err(ParseError::Invalid(_))
        )
    }

    #[test]
    fn ids_must_be_strings_or_integers() {
        for id in [r#"{"a":1}"#, "[1]", "1.5", "1e3", "true", "false", "-0.0"] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
            assert!(is_invalid(&text), "{text}");
            let response = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#);
            assert!(is_invalid(&response), "{response}");
        }
        let huge = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"x"}}"#,
            "9".repeat(400)
        );
        assert!(is_invalid(&huge));
        assert!(is_invalid(
            r#"{"jsonrpc":"2.0","id":9223372036854775808,"method":"x"}"#
        ));
        for id in ["9223372036854775807", "-9223372036854775807", "0", r#""x""#] {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"x"}}"#);
            assert!(Message::parse(Bytes::from(text.clone())).is_ok(), "{text}");
        }
    }

    #[test]
    fn valid_json_of_the_wrong_shape_is_an_invalid_request() {
        for text in [
            "[]",
            "5",
            r#""tools/list""#,
            "null",
            r#"{"jsonrpc":2.0,"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.1","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[null,null]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":7}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":"m"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#,
        ] {
            let got = Message::parse(Bytes::copy_from_slice(text.as_bytes()));
            assert!(
                matches!(got, Err(ParseError::Invalid(_))),
                "{text}: {got:?}"
            );
        }
        assert!(
            Message::parse(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":null}}"#
            ))
            .is_ok()
        );
    }

    #[test]
    fn broken_json_stays_a_parse_error_even_after_a_shape_error() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":5,"#,
            r#"{"jsonrpc":2.0,"id":1,"method":"x""#,
            "[1,",
            "tru",
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\q"}}"#,
        ] {
            let got = Message::parse(Bytes::copy_from_slice(text.as_bytes()));
            assert!(matches!(got, Err(ParseError::Json(_))), "{text}: {got:?}");
        }
    }

    #[test]
    fn invalid_utf8_anywhere_is_a_parse_error() {
        let mut body =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"s":""#
                .to_vec();
        body.extend_from_slice(b"\xff\xfe");
        body.extend_from_slice(br#""}}}"#);
        let got = Message::parse(Bytes::from(body.clone()));
        assert!(matches!(got, Err(ParseError::Json(_))), "{got:?}");
        let mut batch = b"[".to_vec();
        batch.extend_from_slice(&body);
        batch.push(b']');
        assert!(matches!(
            parse_batch(&Bytes::from(batch)),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let nest = |levels: usize| {
            let mut s = String::from(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"#);
            s.push_str(&"[".repeat(levels));
            s.push_str(&"]".repeat(levels));
            s.push_str("}}");
            s
        };
        // The message is level 1 and params level 2.
        assert!(Message::parse(Bytes::from(nest(MAX_NESTING - 2))).is_ok());
        assert!(is_invalid(&nest(MAX_NESTING - 1)));
        assert!(is_invalid(&nest(100_000)));
        // Brackets inside strings (escaped quotes too) are text, not nesting.
        let quoted = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"s":"\"{}"}}}}"#,
            "[".repeat(1000)
        );
        assert!(Message::parse(Bytes::from(quoted)).is_ok());
    }

    #[test]
    fn a_refused_request_keeps_its_id_where_it_can_be_read() {
        let id = |s: &str| readable_id(s.as_bytes()).map(|id| id.as_json_text().to_string());
        assert_eq!(
            id(r#"{"jsonrpc":2.0,"id":7,"method":"x"}"#).as_deref(),
            Some("7")
        );
        assert_eq!(id(r#"{"id":"a","method":5}"#).as_deref(), Some("\"a\""));
        assert_eq!(id(r#"{"id":1.5,"method":"x"}"#), None);
        assert_eq!(id(r#"{"id":null}"#), None);
        assert_eq!(id(r#"[1]"#), None, "not positional");
        assert_eq!(id(r#"{"id":1,"id":2}"#), None, "ambiguous");
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
