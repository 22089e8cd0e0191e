//! 2026-07-28 requests in a runtime session: passed through to a modern server, or
//! bridged to a legacy one (Lodge initializes it, turns its server-initiated requests
//! into MRTR `input_required` results, and feeds the client's retries back to it).

use super::actor::{Actor, Pending};
use super::{Command, Event, EventStream};
use crate::error::SessionError;
use bytes::Bytes;
use lodge_proto::modern::{
    CLIENT_CAPABILITIES_KEY, ModernRequest, PROTOCOL_VERSION_KEY, SERVER_INFO_KEY,
    SUBSCRIPTION_ID_KEY, log_severity,
};
use lodge_proto::seal::digest;
use lodge_proto::{Id, Message, replace_id, set_meta_field, version};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Idle timeout of a runtime session until a client comes back with its id.
pub(crate) const UNADOPTED_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Marks a `requestState` Lodge minted (anything else belongs to the server).
pub const STATE_PREFIX: &str = "lodge1.";

/// Which era a hosted server is spoken to in, for 2026-07-28 clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Ask the server (`server/discover`); bridge it if it does not speak 2026-07-28.
    #[default]
    Auto,
    Legacy,
    Modern,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Upstream {
    Legacy,
    Modern,
}

/// Requests Lodge sends a server on its own behalf.
pub(crate) enum Internal {
    Discover,
    Initialize,
    /// Discover on behalf of a legacy client's `initialize` (its id).
    DiscoverForInitialize(Id),
    Ignore,
}

/// A pending `PrepareModern`: the capabilities to initialize with, and who waits.
pub(crate) struct Preparing {
    pub capabilities: Value,
    pub waiting: Vec<oneshot::Sender<Result<(), SessionError>>>,
}

/// A 2026-07-28 request as the front validated it.
pub struct ModernCall {
    pub message: Message,
    pub request: ModernRequest,
}

/// A server request waiting for the client's answer in an MRTR round.
pub(crate) struct AwaitingInput {
    pub(super) key: String,
    pub(super) server_id: Id,
    /// `{"method": …, "params": …}`, as it goes into `inputRequests`.
    pub(super) request: Value,
}

pub(crate) struct ModernPending {
    pub(super) client_id: Id,
    pub(super) method: Box<str>,
    pub(super) digest: String,
    /// What the current client request declared it can answer.
    pub(super) capabilities: Value,
    /// Lowest log severity the client asked for; `None`: no logs (bridged servers).
    pub(super) log_level: Option<u8>,
    /// Lodge bridges this call to a legacy server.
    pub(super) bridge: bool,
    pub listen: bool,
    pub(super) awaiting: Vec<AwaitingInput>,
    /// Server requests that arrived while the client was away; asked next round.
    pub(super) queued: Vec<AwaitingInput>,
    pub(super) round: u32,
    /// Answered `input_required`; waiting for the client's retry.
    pub parked: bool,
    /// After a retry: the progress token the current client request carries, which
    /// replaces the first request's token the server keeps using.
    pub(super) progress_as: Option<Id>,
    /// When the client's `requestState` lapses; the call is then abandoned.
    pub parked_until: Option<tokio::time::Instant>,
    pub(super) next_key: u32,
}

/// A `subscriptions/listen` stream Lodge serves for a legacy server.
pub(crate) struct Listener {
    stream: u32,
    client_id: Id,
    filter: Value,
}

/// What Lodge seals into a `requestState` when it bridges MRTR.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BridgeState {
    pub session: String,
    pub(super) call: String,
    pub(super) round: u32,
    pub(super) method: String,
    pub(super) digest: String,
    pub(super) principal: String,
    pub(super) expires: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("requestState failed verification: it was not issued by this Lodge or was altered")]
    Tampered,
    #[error("requestState has expired; send the original request again without it")]
    Expired,
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl BridgeState {
    /// Checks what can be checked without the session: expiry.
    pub(crate) fn check_fresh(self) -> Result<BridgeState, StateError> {
        if unix_now() >= self.expires {
            return Err(StateError::Expired);
        }
        Ok(self)
    }
}

/// The events of one 2026-07-28 response. Dropping it before the response has
/// passed cancels the request (the transport's rule: closing the stream cancels).
pub struct CallStream {
    events: EventStream,
    stream: u32,
    commands: Option<mpsc::Sender<Command>>,
}

impl CallStream {
    pub(crate) fn new(
        (stream, events): (u32, EventStream),
        commands: mpsc::Sender<Command>,
    ) -> Self {
        CallStream {
            events,
            stream,
            commands: Some(commands),
        }
    }

    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.events.recv().await;
        if event.as_ref().is_none_or(|e| e.is_response) {
            self.commands = None; // answered (or ended): nothing to cancel
        }
        event
    }
}

impl Drop for CallStream {
    fn drop(&mut self) {
        if let Some(commands) = self.commands.take() {
            let _ = commands.try_send(Command::Abandon {
                stream: self.stream,
            });
        }
    }
}

/// A modern request as a legacy server must see it: Lodge's id, and none of the
/// 2026-07-28 `_meta` keys (a dual-era server would take them to mean "modern").
fn legacy_request(call: &ModernCall, upstream_id: &Id) -> Option<Bytes> {
    let mut message: Value = serde_json::from_slice(&call.message.bytes).ok()?;
    message["id"] = id_value(upstream_id);
    if let Some(meta) = message
        .pointer_mut("/params/_meta")
        .and_then(Value::as_object_mut)
    {
        meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/"));
    }
    Some(Bytes::from(message.to_string()))
}

pub(super) fn id_value(id: &Id) -> Value {
    serde_json::from_str(id.as_json_text()).unwrap_or(Value::Null)
}

pub(super) fn short_method(method: &str) -> &str {
    method.split('/').next().unwrap_or(method)
}

/// Methods whose 2026-07-28 results carry caching hints (SEP-2549).
fn cacheable(method: &str) -> bool {
    matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    )
}

impl Actor {
    pub(super) fn prepare_modern(
        &mut self,
        capabilities: Value,
        policy: Protocol,
        reply: oneshot::Sender<Result<(), SessionError>>,
    ) {
        if self.upstream.is_some() {
            let _ = reply.send(Ok(()));
            return;
        }
        if let Some(preparing) = &mut self.preparing {
            preparing.waiting.push(reply);
            return;
        }
        self.preparing = Some(Preparing {
            capabilities,
            waiting: vec![reply],
        });
        match policy {
            Protocol::Modern => self.finish_prepare(Ok(Upstream::Modern)),
            Protocol::Legacy => self.send_initialize(),
            Protocol::Auto => {
                let meta = json!({
                    PROTOCOL_VERSION_KEY: version::MODERN[0],
                    CLIENT_CAPABILITIES_KEY: {},
                });
                self.send_internal(
                    Internal::Discover,
                    "server/discover",
                    json!({ "_meta": meta }),
                );
            }
        }
    }

    pub(super) fn send_internal(&mut self, kind: Internal, method: &str, params: Value) {
        self.next_upstream_id += 1;
        let id = format!("lodge:{}", self.next_upstream_id);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.internal
            .insert(Id::from_json_text(&Value::String(id).to_string()), kind);
        if self.forward(vec![Bytes::from(body.to_string())]).is_err() {
            self.finish_prepare(Err(SessionError::ServerBusy));
        }
    }

    fn send_initialize(&mut self) {
        // One legacy session serves every 2026-07-28 request of this runtime session,
        // and each may declare other capabilities: offer the server all Lodge can
        // bridge, and refuse per call what that call's client did not declare.
        let mut capabilities = self
            .preparing
            .as_ref()
            .map_or_else(|| json!({}), |p| p.capabilities.clone());
        if let Some(caps) = capabilities.as_object_mut() {
            for (name, value) in [
                ("elicitation", json!({"form": {}, "url": {}})),
                ("sampling", json!({})),
                ("roots", json!({})),
            ] {
                caps.entry(name).or_insert(value);
            }
        }
        let params = json!({
            "protocolVersion": version::LEGACY[version::LEGACY.len() - 1],
            "capabilities": capabilities,
            "clientInfo": {"name": "lodge", "version": env!("CARGO_PKG_VERSION")},
        });
        self.send_internal(Internal::Initialize, "initialize", params);
    }

    fn finish_prepare(&mut self, result: Result<Upstream, SessionError>) {
        let Some(preparing) = self.preparing.take() else {
            return;
        };
        let outcome = match result {
            Ok(upstream) => {
                self.upstream = Some(upstream);
                Ok(())
            }
            Err(e) => Err(e),
        };
        for waiter in preparing.waiting {
            let _ = waiter.send(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(e.clone()),
            });
        }
    }

    pub(super) fn on_internal_response(&mut self, id: &Id, bytes: &[u8]) {
        let Some(kind) = self.internal.remove(id) else {
            return;
        };
        let response: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let result = response.get("result");
        match kind {
            Internal::Discover => {
                let modern = result
                    .and_then(|r| r.get("supportedVersions"))
                    .and_then(Value::as_array)
                    .is_some_and(|v| v.iter().any(|v| v.as_str().is_some_and(version::is_modern)));
                if modern {
                    self.finish_prepare(Ok(Upstream::Modern));
                } else {
                    self.send_initialize();
                }
            }
            Internal::Initialize => match result {
                Some(result) => {
                    if let Some(v) = result.get("protocolVersion").and_then(Value::as_str) {
                        let _ = self.shared.protocol_version.set(v.to_string());
                    }
                    self.init_result = Some(result.clone());
                    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
                    let _ = self.forward(vec![Bytes::from_static(initialized.as_bytes())]);
                    self.finish_prepare(Ok(Upstream::Legacy));
                }
                None => {
                    let why = response
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("no result")
                        .to_string();
                    self.finish_prepare(Err(SessionError::Upstream(format!(
                        "the MCP server refused initialize: {why}"
                    ))));
                }
            },
            Internal::DiscoverForInitialize(client) => {
                self.initialize_from_discover(&client, &response)
            }
            Internal::Ignore => {}
        }
    }

    pub(super) fn start_modern(
        &mut self,
        call: ModernCall,
        resume: Option<BridgeState>,
    ) -> Result<(u32, EventStream), SessionError> {
        if self.runtime.is_draining() {
            return Err(SessionError::ShuttingDown);
        }
        let upstream = self.upstream.ok_or(SessionError::Gone)?;
        if let Some(state) = resume {
            return self.resume_bridge(call, state);
        }
        let method = call.message.method().unwrap_or_default().to_string();
        let Some(client_id) = call.message.request_id().cloned() else {
            return Err(SessionError::Gone);
        };
        if upstream == Upstream::Legacy {
            if method == "server/discover" {
                return Ok(self.answer_now(&client_id, self.synthesized_discover()));
            }
            if method == "subscriptions/listen" {
                return Ok(self.listen_for_legacy(&call, client_id));
            }
        }
        self.next_upstream_id += 1;
        let upstream_id = Id::from_json_text(&format!("\"lodge:c{}\"", self.next_upstream_id));
        let bytes = if upstream == Upstream::Legacy {
            legacy_request(&call, &upstream_id)
        } else {
            replace_id(&call.message.bytes, &upstream_id)
        };
        self.forward(vec![bytes.ok_or(SessionError::Gone)?])?;
        let (stream, rx) = self.streams.open(false, 1);
        let progress_token = match &call.message.kind {
            lodge_proto::Kind::Request { progress_token, .. } => progress_token.clone(),
            _ => None,
        };
        if let Some(token) = &progress_token {
            self.progress.insert(token.clone(), stream);
        }
        let bridge = upstream == Upstream::Legacy;
        let log_level = if bridge {
            call.request.log_level.as_deref().and_then(log_severity)
        } else {
            Some(0)
        };
        self.pending.insert(
            upstream_id,
            Pending {
                stream,
                progress_token: progress_token.clone(),
                initialize: false,
                to_modern: None,
                modern: Some(Box::new(ModernPending {
                    client_id,
                    listen: method == "subscriptions/listen",
                    method: method.into(),
                    digest: digest(&call.request.salient_params),
                    log_level,
                    bridge,
                    awaiting: Vec::new(),
                    queued: Vec::new(),
                    round: 0,
                    parked: false,
                    progress_as: progress_token.clone(),
                    capabilities: call.request.client_capabilities.clone(),
                    parked_until: None,
                    next_key: 0,
                })),
            },
        );
        self.update_in_flight();
        Ok((stream, rx))
    }

    /// A response Lodge makes itself, on a stream of its own.
    fn answer_now(&mut self, client_id: &Id, result: Value) -> (u32, EventStream) {
        let (stream, rx) = self.streams.open(false, 1);
        let body = json!({"jsonrpc": "2.0", "id": id_value(client_id), "result": result});
        self.streams
            .emit(stream, Bytes::from(body.to_string()), true);
        self.streams.settle(stream);
        (stream, rx)
    }

    fn server_info(&self) -> Value {
        self.init_result
            .as_ref()
            .and_then(|r| r.get("serverInfo"))
            .cloned()
            .unwrap_or_else(|| json!({"name": "unknown", "version": "0"}))
    }

    /// `server/discover` for a legacy server, from its `initialize` result.
    fn synthesized_discover(&self) -> Value {
        let init = self.init_result.clone().unwrap_or_default();
        let mut result = json!({
            "resultType": "complete",
            "supportedVersions": version::MODERN,
            "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            "ttlMs": 0,
            "cacheScope": "private",
            "_meta": { SERVER_INFO_KEY: self.server_info() },
        });
        if let Some(instructions) = init.get("instructions") {
            result["instructions"] = instructions.clone();
        }
        result
    }

    fn listen_for_legacy(&mut self, call: &ModernCall, client_id: Id) -> (u32, EventStream) {
        let (stream, rx) = self.streams.open(false, 1);
        let filter = call
            .request
            .salient_params
            .get("notifications")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if let Some(uris) = filter
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
        {
            for uri in uris.clone() {
                self.send_internal(
                    Internal::Ignore,
                    "resources/subscribe",
                    json!({ "uri": uri }),
                );
            }
        }
        let ack = json!({
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": { "_meta": { SUBSCRIPTION_ID_KEY: id_value(&client_id) } },
        });
        self.streams
            .emit(stream, Bytes::from(ack.to_string()), false);
        self.listeners.push(Listener {
            stream,
            client_id,
            filter,
        });
        (stream, rx)
    }

    /// The final response to a modern request: the client's id back in place, and
    /// for a bridged legacy server the fields 2026-07-28 results must carry.
    pub(super) fn modern_response(&self, modern: &ModernPending, bytes: &Bytes) -> Bytes {
        if !modern.bridge {
            return replace_id(bytes, &modern.client_id).unwrap_or_else(|| bytes.clone());
        }
        let Ok(mut response) = serde_json::from_slice::<Value>(bytes) else {
            return bytes.clone();
        };
        response["id"] = id_value(&modern.client_id);
        if let Some(result) = response.get_mut("result").and_then(Value::as_object_mut) {
            result
                .entry("resultType")
                .or_insert_with(|| json!("complete"));
            if cacheable(&modern.method) {
                result.entry("ttlMs").or_insert_with(|| json!(0));
                result
                    .entry("cacheScope")
                    .or_insert_with(|| json!("private"));
            }
            let meta = result.entry("_meta").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                meta.entry(SERVER_INFO_KEY)
                    .or_insert_with(|| self.server_info());
            }
        }
        Bytes::from(response.to_string())
    }

    /// The client closed a modern response stream: cancel what it was waiting for.
    pub(super) fn abandon(&mut self, stream: u32) {
        let gone: Vec<Id> = self
            .pending
            .iter()
            .filter(|(_, p)| p.stream == stream && p.modern.as_ref().is_some_and(|m| !m.parked))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(pending) = self.pending.remove(&id) {
                let cancel = json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": id_value(&id), "reason": "the client closed the stream"},
                });
                let _ = self.forward(vec![Bytes::from(cancel.to_string())]);
                self.forget(&pending);
                self.streams.settle(stream);
            }
        }
        let before = self.listeners.len();
        self.listeners.retain(|l| l.stream != stream);
        if self.listeners.len() != before {
            self.streams.settle(stream);
        }
        self.update_in_flight();
    }

    /// A notification a modern server tagged with a `subscriptions/listen` id.
    pub(super) fn route_subscription(&mut self, subscription: &Id, bytes: Bytes) {
        let Some(pending) = self.pending.get(subscription) else {
            tracing::debug!(session = %self.id, "notification for a closed subscription dropped");
            return;
        };
        let Some(modern) = &pending.modern else {
            return;
        };
        let Ok(mut message) = serde_json::from_slice::<Value>(&bytes) else {
            return;
        };
        set_meta_field(
            &mut message,
            SUBSCRIPTION_ID_KEY,
            id_value(&modern.client_id),
        );
        self.streams
            .emit(pending.stream, Bytes::from(message.to_string()), false);
    }

    /// A log message in a modern session goes to the newest call in flight, if that
    /// call asked for logs at this level.
    pub(super) fn route_modern_log(&mut self, bytes: Bytes) {
        let level = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| {
            v.pointer("/params/level")
                .and_then(Value::as_str)
                .and_then(log_severity)
        });
        let target = self
            .pending
            .values()
            .filter(|p| p.modern.as_ref().is_some_and(|m| !m.parked && !m.listen))
            .max_by_key(|p| p.stream);
        let Some(pending) = target else {
            return;
        };
        let wanted = pending
            .modern
            .as_ref()
            .and_then(|m| m.log_level)
            .is_some_and(|min| level.unwrap_or(u8::MAX) >= min);
        if wanted {
            self.streams.emit(pending.stream, bytes, false);
        }
    }

    /// A legacy server's change notification, for the listen streams that opted in.
    pub(super) fn route_to_listeners(&mut self, method: &str, bytes: Bytes) {
        let Ok(message) = serde_json::from_slice::<Value>(&bytes) else {
            return;
        };
        let uri = message.pointer("/params/uri").and_then(Value::as_str);
        for listener in &self.listeners {
            let f = &listener.filter;
            let on = |key: &str| f.get(key).and_then(Value::as_bool).unwrap_or(false);
            let wanted = match method {
                "notifications/tools/list_changed" => on("toolsListChanged"),
                "notifications/prompts/list_changed" => on("promptsListChanged"),
                "notifications/resources/list_changed" => on("resourcesListChanged"),
                "notifications/resources/updated" => f
                    .get("resourceSubscriptions")
                    .and_then(Value::as_array)
                    .is_some_and(|uris| uris.iter().any(|u| u.as_str() == uri)),
                _ => false,
            };
            if wanted {
                let mut tagged = message.clone();
                set_meta_field(
                    &mut tagged,
                    SUBSCRIPTION_ID_KEY,
                    id_value(&listener.client_id),
                );
                self.streams
                    .emit(listener.stream, Bytes::from(tagged.to_string()), false);
            }
        }
    }
}
