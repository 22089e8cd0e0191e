//! Asking the client for input in either protocol era.
//!
//! - Legacy era (a session that began with `initialize`): the server sends the
//!   `elicitation/create`, `sampling/createMessage` or `roots/list` request itself and waits.
//! - 2026-07-28 (stateless): the server answers `{"resultType":"input_required",
//!   "inputRequests":…, "requestState":…}` (MRTR, SEP-2322) and the client retries with
//!   `inputResponses`. A response that is missing or malformed is asked for again.
//!
//! `requestState` is sealed with HMAC-SHA256 (rmcp's `RequestStateCodec`), bound to the tool
//! or prompt name and valid for ten minutes. The key comes from `CONFORMANCE_SERVER_STATE_KEY`
//! (at least 32 bytes) so that several processes (e.g. one per stateless request under
//! Lodge) accept each other's state, else from a random per-process key.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use rmcp::{
    ErrorData, RoleServer,
    model::{
        ClientCapabilities, CreateMessageRequestParams, ElicitRequestParams, InputRequest,
        InputRequiredResult, InputResponses, ProtocolVersion, RequestStateCodec, SealOptions,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

pub const STATE_KEY_ENV: &str = "CONFORMANCE_SERVER_STATE_KEY";
const STATE_TTL: Duration = Duration::from_secs(600);

/// Which kind of client request an input request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Elicit,
    Sample,
    Roots,
}

impl Kind {
    fn method(self) -> &'static str {
        match self {
            Kind::Elicit => "elicitation/create",
            Kind::Sample => "sampling/createMessage",
            Kind::Roots => "roots/list",
        }
    }

    /// The client capability this request needs.
    pub fn declared_by(self, caps: &ClientCapabilities) -> bool {
        match self {
            Kind::Elicit => caps.elicitation.is_some(),
            Kind::Sample => caps.sampling.is_some(),
            Kind::Roots => caps.roots.is_some(),
        }
    }

    pub fn capability(self) -> ClientCapabilities {
        let caps = ClientCapabilities::builder();
        match self {
            Kind::Elicit => caps.enable_elicitation().build(),
            Kind::Sample => caps.enable_sampling().build(),
            Kind::Roots => caps.enable_roots().build(),
        }
    }

    /// Whether `answer` has the shape of this request's result.
    fn accepts(self, answer: &Value) -> bool {
        match self {
            Kind::Elicit => {
                matches!(
                    answer["action"].as_str(),
                    Some("accept" | "decline" | "cancel")
                ) && (answer.get("content").is_none() || answer["content"].is_object())
            }
            Kind::Sample => answer["role"].is_string() && answer.get("content").is_some(),
            Kind::Roots => answer["roots"].is_array(),
        }
    }
}

/// One input the server needs: a key, the kind of request and its params.
pub struct Ask {
    pub key: &'static str,
    pub kind: Kind,
    pub params: Value,
}

impl Ask {
    pub fn elicit(key: &'static str, message: &str, schema: Value) -> Ask {
        Ask {
            key,
            kind: Kind::Elicit,
            params: json!({"mode": "form", "message": message, "requestedSchema": schema}),
        }
    }

    pub fn sample(key: &'static str, prompt: &str, max_tokens: u32) -> Ask {
        Ask {
            key,
            kind: Kind::Sample,
            params: json!({
                "messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                "maxTokens": max_tokens
            }),
        }
    }

    pub fn roots(key: &'static str) -> Ask {
        Ask {
            key,
            kind: Kind::Roots,
            params: json!({}),
        }
    }

    fn input_request(&self) -> Result<InputRequest, ErrorData> {
        let request = json!({"method": self.kind.method(), "params": self.params});
        serde_json::from_value(request)
            .map_err(|e| ErrorData::internal_error(format!("bad {} request: {e}", self.key), None))
    }
}

/// What asking produced.
pub enum Asked {
    /// Every answer, keyed like the asks (JSON results of the client requests).
    Answers(BTreeMap<String, Value>),
    /// 2026-07-28: the client must answer these first.
    InputRequired(InputRequiredResult),
}

/// True when the request is served statelessly (protocol 2026-07-28 or later).
pub fn is_modern(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// The client's capabilities for this request (per request in 2026-07-28, from
/// `initialize` in a legacy session).
pub fn client_caps(ctx: &RequestContext<RoleServer>) -> ClientCapabilities {
    ctx.client_capabilities().unwrap_or_default()
}

/// Fails with -32021 unless the client declared every capability `asks` need.
pub fn require_capabilities(
    ctx: &RequestContext<RoleServer>,
    asks: &[Ask],
) -> Result<(), ErrorData> {
    let caps = client_caps(ctx);
    match asks.iter().find(|a| !a.kind.declared_by(&caps)) {
        Some(missing) => Err(ErrorData::missing_required_client_capability(
            missing.kind.capability(),
        )),
        None => Ok(()),
    }
}

/// Ask for `asks`: live in a legacy session, by MRTR on a 2026-07-28 request (`responses`
/// are the retry's `inputResponses`; `state` becomes the `requestState` of an
/// `input_required` answer).
pub async fn ask(
    ctx: &RequestContext<RoleServer>,
    asks: Vec<Ask>,
    responses: Option<&InputResponses>,
    state: Option<String>,
) -> Result<Asked, ErrorData> {
    require_capabilities(ctx, &asks)?;
    if is_modern(ctx) {
        let mut answers = BTreeMap::new();
        let mut missing = BTreeMap::new();
        for ask in &asks {
            match responses.and_then(|r| r.get(ask.key)) {
                Some(answer) if ask.kind.accepts(answer) => {
                    answers.insert(ask.key.to_string(), answer.clone());
                }
                _ => {
                    missing.insert(ask.key.to_string(), ask.input_request()?);
                }
            }
        }
        if missing.is_empty() {
            return Ok(Asked::Answers(answers));
        }
        return Ok(Asked::InputRequired(InputRequiredResult::new(
            Some(missing),
            state,
        )));
    }
    let mut answers = BTreeMap::new();
    for ask in asks {
        let answer = live(ctx, &ask).await?;
        answers.insert(ask.key.to_string(), answer);
    }
    Ok(Asked::Answers(answers))
}

/// Sends one request to the client of a legacy session and returns its result as JSON.
async fn live(ctx: &RequestContext<RoleServer>, ask: &Ask) -> Result<Value, ErrorData> {
    let failed = |e: &dyn std::fmt::Display| {
        ErrorData::internal_error(format!("{} failed: {e}", ask.kind.method()), None)
    };
    let bad = |e: serde_json::Error| {
        ErrorData::internal_error(format!("bad {} params: {e}", ask.key), None)
    };
    let value = match ask.kind {
        Kind::Elicit => {
            let params: ElicitRequestParams =
                serde_json::from_value(ask.params.clone()).map_err(bad)?;
            let result = ctx
                .peer
                .create_elicitation(params)
                .await
                .map_err(|e| failed(&e))?;
            serde_json::to_value(result)
        }
        Kind::Sample => {
            let params: CreateMessageRequestParams =
                serde_json::from_value(ask.params.clone()).map_err(bad)?;
            let result = ctx
                .peer
                .create_message(params)
                .await
                .map_err(|e| failed(&e))?;
            serde_json::to_value(result)
        }
        Kind::Roots => {
            let result = ctx.peer.list_roots().await.map_err(|e| failed(&e))?;
            serde_json::to_value(result)
        }
    };
    value.map_err(|e| failed(&e))
}

/// Seals and opens `requestState`.
#[derive(Clone)]
pub struct StateSeal {
    codec: RequestStateCodec,
}

impl StateSeal {
    /// From `CONFORMANCE_SERVER_STATE_KEY` when set (≥ 32 bytes), else a random key.
    pub fn from_env() -> Result<StateSeal, String> {
        let key = match std::env::var(STATE_KEY_ENV) {
            Ok(key) => key.into_bytes(),
            Err(_) => random_key().to_vec(),
        };
        let codec = RequestStateCodec::try_new(key)
            .map_err(|e| format!("{STATE_KEY_ENV}: unusable request-state key: {e}"))?;
        Ok(StateSeal { codec })
    }

    /// Seals `value` for `owner` (a tool or prompt name).
    pub fn seal(&self, owner: &str, value: &Value) -> Result<String, ErrorData> {
        let options = SealOptions::new()
            .associated_data(owner.as_bytes())
            .ttl(STATE_TTL);
        self.codec
            .seal_json_with(value, &options)
            .map_err(|e| ErrorData::internal_error(format!("sealing requestState: {e}"), None))
    }

    /// Opens a state sealed for `owner`; -32602 when it was forged, tampered with, sealed for
    /// another owner or has expired.
    pub fn open(&self, owner: &str, sealed: &str) -> Result<Value, ErrorData> {
        self.codec
            .open_json_with(sealed, owner.as_bytes())
            .map_err(|e| {
                ErrorData::invalid_params(
                    format!("requestState failed integrity verification: {e}"),
                    None,
                )
            })
    }
}

/// 32 random bytes from the standard library's randomly seeded hasher keys.
fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(i);
        hasher.write_u32(std::process::id());
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    /// The typed rmcp requests must carry exactly the JSON the contract names (no field
    /// lost or added on the way through rmcp's types).
    #[test]
    fn input_requests_round_trip_exactly() {
        let asks = [
            Ask::elicit("a", "m", fixtures::elicitation_schema_user()),
            Ask::elicit("b", fixtures::SEP1034_MESSAGE, fixtures::sep1034_schema()),
            Ask::elicit("c", fixtures::SEP1330_MESSAGE, fixtures::sep1330_schema()),
            Ask::sample("d", "What is the capital of France?", 100),
            Ask::roots("e"),
        ];
        for ask in asks {
            let wire = serde_json::to_value(ask.input_request().expect("valid")).expect("json");
            assert_eq!(wire["method"], ask.kind.method());
            // rmcp leaves out the empty params of roots/list (they are optional).
            let params = if wire["params"].is_null() {
                json!({})
            } else {
                wire["params"].clone()
            };
            assert_eq!(params, ask.params, "{}", ask.key);
        }
    }

    #[test]
    fn typed_legacy_params_round_trip_exactly() {
        for schema in [
            fixtures::elicitation_schema_user(),
            fixtures::sep1034_schema(),
            fixtures::sep1330_schema(),
        ] {
            let ask = Ask::elicit("k", "m", schema);
            let typed: ElicitRequestParams =
                serde_json::from_value(ask.params.clone()).expect("elicit params");
            assert_eq!(serde_json::to_value(typed).expect("json"), ask.params);
        }
        let ask = Ask::sample("k", "hi", 100);
        let typed: CreateMessageRequestParams =
            serde_json::from_value(ask.params.clone()).expect("sampling params");
        assert_eq!(serde_json::to_value(typed).expect("json"), ask.params);
    }

    #[test]
    fn state_is_bound_to_its_owner_and_rejects_tampering() {
        let seal = StateSeal::from_env().expect("key");
        let sealed = seal.seal("tool_a", &json!({"round": 1})).expect("seal");
        assert_eq!(
            seal.open("tool_a", &sealed).expect("open"),
            json!({"round": 1})
        );
        assert!(seal.open("tool_b", &sealed).is_err());
        assert!(seal.open("tool_a", &format!("{sealed}-TAMPERED")).is_err());
    }

    #[test]
    fn answers_are_shape_checked() {
        assert!(Kind::Elicit.accepts(&json!({"action": "accept", "content": {"name": "A"}})));
        assert!(Kind::Elicit.accepts(&json!({"action": "decline"})));
        assert!(!Kind::Elicit.accepts(&json!(12345)));
        assert!(!Kind::Elicit.accepts(&json!({"action": "accept", "content": 1})));
        assert!(Kind::Roots.accepts(&json!({"roots": []})));
        assert!(!Kind::Sample.accepts(&json!({"roots": []})));
    }
}
