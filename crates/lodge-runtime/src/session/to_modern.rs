//! A legacy (2025-11-25) client in front of a 2026-07-28-only server: Lodge answers
//! `initialize` from the server's `server/discover`, adds the per-request `_meta`
//! the server requires, and turns its `input_required` results into requests pushed
//! to the client, retrying the call with the answers until it completes.

use super::actor::{Actor, Pending};
use super::modern::{Internal, Upstream};
use bytes::Bytes;
use lodge_proto::modern::{
    CLIENT_CAPABILITIES_KEY, CLIENT_INFO_KEY, LOG_LEVEL_KEY, PROTOCOL_VERSION_KEY, SERVER_INFO_KEY,
};
use lodge_proto::{Id, Message, codes, error_body, replace_id, set_meta_field, version};
use serde_json::{Map, Value, json};

/// What the legacy client declared in its `initialize`.
pub(crate) struct LegacyClient {
    capabilities: Value,
    client_info: Value,
    log_level: Option<String>,
    /// The protocol version its `initialize` asked for.
    requested: String,
}

/// A legacy client's call to a modern server, kept to rebuild MRTR retries.
pub(crate) struct ToModern {
    client_id: Id,
    /// The request as first sent upstream (with `_meta`).
    request: Value,
    answers: Map<String, Value>,
    awaiting: usize,
    request_state: Option<Value>,
}

fn id_value(id: &Id) -> Value {
    serde_json::from_str(id.as_json_text()).unwrap_or(Value::Null)
}

impl Actor {
    /// What to send upstream for a legacy client's request, or `None` when Lodge
    /// answers it itself (see [`Actor::answer_locally`]).
    pub(super) fn legacy_upstream_bytes(&mut self, message: &Message) -> Option<Bytes> {
        let method = message.method().unwrap_or_default();
        if self.upstream != Some(Upstream::Modern) {
            let intercept_initialize = method == "initialize"
                && message.is_request()
                && self.shared.policy == super::Protocol::Modern;
            return (!intercept_initialize).then(|| message.bytes.clone());
        }
        match method {
            "notifications/initialized" | "ping" | "logging/setLevel" => None,
            _ if !message.is_request() => Some(message.bytes.clone()),
            _ => self
                .with_modern_meta(message)
                .map(|v| Bytes::from(v.to_string())),
        }
    }

    fn with_modern_meta(&self, message: &Message) -> Option<Value> {
        let client = self.legacy_client.as_ref()?;
        let mut request: Value = serde_json::from_slice(&message.bytes).ok()?;
        set_meta_field(
            &mut request,
            PROTOCOL_VERSION_KEY,
            json!(version::MODERN[0]),
        );
        set_meta_field(
            &mut request,
            CLIENT_CAPABILITIES_KEY,
            client.capabilities.clone(),
        );
        set_meta_field(&mut request, CLIENT_INFO_KEY, client.client_info.clone());
        if let Some(level) = &client.log_level {
            set_meta_field(&mut request, LOG_LEVEL_KEY, json!(level));
        }
        Some(request)
    }

    /// The bookkeeping a legacy client's request needs when the server is modern.
    pub(super) fn to_modern_for(&self, message: &Message) -> Option<Box<ToModern>> {
        if self.upstream != Some(Upstream::Modern) || !message.is_request() {
            return None;
        }
        Some(Box::new(ToModern {
            client_id: message.request_id()?.clone(),
            request: self.with_modern_meta(message)?,
            answers: Map::new(),
            awaiting: 0,
            request_state: None,
        }))
    }

    /// Answers what [`Actor::legacy_upstream_bytes`] kept from the server.
    pub(super) fn answer_locally(&mut self, message: &Message) {
        let Some(id) = message.request_id().cloned() else {
            return;
        };
        match message.method().unwrap_or_default() {
            "initialize" => self.initialize_via_discover(id),
            "logging/setLevel" => {
                let level = serde_json::from_slice::<Value>(&message.bytes)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/params/level")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    });
                if let Some(client) = &mut self.legacy_client {
                    client.log_level = level;
                }
                self.answer_pending(&id, json!({}));
            }
            _ => self.answer_pending(&id, json!({})), // ping
        }
    }

    /// Asks a modern server for `server/discover`, to answer a legacy `initialize`.
    pub(super) fn initialize_via_discover(&mut self, client: Id) {
        let meta = json!({PROTOCOL_VERSION_KEY: version::MODERN[0], CLIENT_CAPABILITIES_KEY: {}});
        self.send_internal(
            Internal::DiscoverForInitialize(client),
            "server/discover",
            json!({ "_meta": meta }),
        );
    }

    /// Keeps what a legacy client's `initialize` declared, in case the server turns
    /// out to be modern and Lodge must speak for the client.
    pub(super) fn remember_legacy_client(&mut self, message: &Message) {
        let params: Value = serde_json::from_slice::<Value>(&message.bytes)
            .ok()
            .and_then(|v| v.get("params").cloned())
            .unwrap_or_default();
        self.legacy_client = Some(LegacyClient {
            requested: params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            capabilities: params
                .get("capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
            client_info: params
                .get("clientInfo")
                .cloned()
                .unwrap_or_else(|| json!({"name": "unknown", "version": "0"})),
            log_level: None,
        });
    }

    /// Emits Lodge's own result for a pending client request.
    fn answer_pending(&mut self, id: &Id, result: Value) {
        if let Some(pending) = self.pending.remove(id) {
            let body = json!({"jsonrpc": "2.0", "id": id_value(id), "result": result});
            self.forget(&pending);
            self.streams
                .emit(pending.stream, Bytes::from(body.to_string()), true);
            self.streams.settle(pending.stream);
            self.update_in_flight();
        }
    }

    /// `initialize` for a modern server, synthesized from its `server/discover`.
    pub(super) fn initialize_from_discover(&mut self, client: &Id, discover: &Value) {
        let requested = self
            .legacy_client
            .as_ref()
            .map_or("", |c| c.requested.as_str())
            .to_string();
        let Some(result) = discover.get("result") else {
            let why = discover
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no result");
            if let Some(pending) = self.pending.remove(client) {
                let message =
                    format!("the MCP server speaks neither initialize nor server/discover: {why}");
                self.streams.emit(
                    pending.stream,
                    error_body(Some(client), codes::INTERNAL_ERROR, &message),
                    true,
                );
                self.streams.settle(pending.stream);
                self.update_in_flight();
            }
            return;
        };
        self.upstream = Some(Upstream::Modern);
        let negotiated = if version::is_legacy(&requested) {
            requested.to_string()
        } else {
            version::LEGACY[version::LEGACY.len() - 1].to_string()
        };
        let _ = self.shared.protocol_version.set(negotiated.clone());
        let mut init = json!({
            "protocolVersion": negotiated,
            "capabilities": result.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            "serverInfo": result
                .pointer(&format!("/_meta/{}", SERVER_INFO_KEY.replace('/', "~1")))
                .cloned()
                .unwrap_or_else(|| json!({"name": "unknown", "version": "0"})),
        });
        if let Some(instructions) = result.get("instructions") {
            init["instructions"] = instructions.clone();
        }
        self.answer_pending(client, init);
    }

    /// A response to a legacy client's call on a modern server: final, or a request
    /// for input that Lodge asks the client for.
    pub(super) fn relay_modern_server_response(&mut self, mut pending: Pending, bytes: &Bytes) {
        let Some(call) = pending.to_modern.as_mut() else {
            return;
        };
        let response: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let input_required = response
            .pointer("/result/resultType")
            .and_then(Value::as_str)
            == Some("input_required");
        if !input_required {
            let out = replace_id(bytes, &call.client_id).unwrap_or_else(|| bytes.clone());
            self.forget(&pending);
            self.streams.emit(pending.stream, out, true);
            self.streams.settle(pending.stream);
            self.update_in_flight();
            return;
        }
        let result = &response["result"];
        call.request_state = result.get("requestState").cloned();
        call.answers.clear();
        self.next_upstream_id += 1;
        let retry_id = Id::from_json_text(&format!("\"lodge:r{}\"", self.next_upstream_id));
        let requests = result
            .get("inputRequests")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        call.awaiting = requests.len();
        for (key, request) in requests {
            self.next_upstream_id += 1;
            let push_id = format!("lodge:i{}", self.next_upstream_id);
            let message = json!({
                "jsonrpc": "2.0",
                "id": push_id,
                "method": request.get("method").cloned().unwrap_or(Value::Null),
                "params": request.get("params").cloned().unwrap_or_else(|| json!({})),
            });
            self.pushed.insert(
                Id::from_json_text(&json!(push_id).to_string()),
                (retry_id.clone(), key),
            );
            self.streams
                .emit(pending.stream, Bytes::from(message.to_string()), false);
        }
        let ready = call.awaiting == 0;
        self.pending.insert(retry_id.clone(), pending);
        if ready {
            self.retry_to_modern(&retry_id);
        }
    }

    /// The client answered a request Lodge pushed for a modern server's MRTR round.
    /// Returns false if `id` is not one of those.
    pub(super) fn take_pushed_answer(&mut self, id: &Id, bytes: &[u8]) -> bool {
        let Some((retry_id, key)) = self.pushed.remove(id) else {
            return false;
        };
        let answer: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let Some(call) = self
            .pending
            .get_mut(&retry_id)
            .and_then(|p| p.to_modern.as_mut())
        else {
            return true;
        };
        let value = answer.get("result").cloned().unwrap_or(Value::Null);
        call.answers.insert(key, value);
        call.awaiting = call.awaiting.saturating_sub(1);
        if call.awaiting == 0 {
            self.retry_to_modern(&retry_id);
        }
        true
    }

    fn retry_to_modern(&mut self, retry_id: &Id) {
        let Some(call) = self
            .pending
            .get(retry_id)
            .and_then(|p| p.to_modern.as_ref())
        else {
            return;
        };
        let mut retry = call.request.clone();
        retry["id"] = id_value(retry_id);
        if let Some(params) = retry.get_mut("params").and_then(Value::as_object_mut) {
            params.insert("inputResponses".into(), Value::Object(call.answers.clone()));
            match &call.request_state {
                Some(state) => params.insert("requestState".into(), state.clone()),
                None => params.remove("requestState"),
            };
        }
        let client_id = call.client_id.clone();
        if let Err(e) = self.forward(vec![Bytes::from(retry.to_string())])
            && let Some(pending) = self.pending.remove(retry_id)
        {
            let message = format!("could not retry the call: {e}");
            self.streams.emit(
                pending.stream,
                error_body(Some(&client_id), codes::INTERNAL_ERROR, &message),
                true,
            );
            self.streams.settle(pending.stream);
            self.update_in_flight();
        }
    }
}
