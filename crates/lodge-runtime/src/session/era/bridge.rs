//! 2026-07-28 client, legacy server, bridged over MRTR: Lodge initialized the server
//! (see [`super::Probe`]); a server request during a call becomes an
//! `input_required` result with a sealed `requestState`, and the client's retries
//! feed the answers back to the waiting server requests, round after round.

use super::{CallState, Ctx, answer_outside_call, cancel_on_stream, cancelled, id_value};
use crate::error::SessionError;
use crate::session::core::{Core, Pending, Reply};
use crate::session::request_state::{BridgeState, unix_now};
use crate::session::{EventStream, ModernCall};
use bytes::Bytes;
use lodge_proto::modern::{SERVER_INFO_KEY, SUBSCRIPTION_ID_KEY, log_severity};
use lodge_proto::seal::digest;
use lodge_proto::{Id, Kind, Message, codes, error_body, set_meta_field, version};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use tokio::time::Instant;

pub(crate) struct Bridge {
    /// The server's `initialize` result.
    init: Value,
    /// `subscriptions/listen` streams Lodge serves itself.
    listeners: Vec<Listener>,
    /// The `roots/list` result a client gave last, for the server's requests that
    /// come outside any call.
    roots: Option<Value>,
}

/// A `subscriptions/listen` stream: the legacy server's change notifications that
/// its filter asks for, tagged with the listen request's id.
struct Listener {
    stream: u32,
    client_id: Id,
    filter: Value,
}

/// A server request waiting for the client's answer in an MRTR round.
struct AwaitingInput {
    key: String,
    server_id: Id,
    method: Box<str>,
    /// `{"method": …, "params": …}`, as it goes into `inputRequests`: JSON text, so a
    /// form's `properties` keep the order the server wrote them in.
    request: Box<RawValue>,
}

/// One bridged call: Lodge's request to the server stays open across the client's
/// MRTR rounds (each a new client request with its own id).
pub(crate) struct Call {
    /// The id of the client request that the next response answers.
    client_id: Id,
    method: Box<str>,
    /// Digest of the request's salient params: a retry must be "the same request".
    digest: String,
    /// What the current client request declared it can answer.
    capabilities: Value,
    /// Lowest log severity the client asked for; `None`: no logs.
    log_level: Option<u8>,
    awaiting: Vec<AwaitingInput>,
    /// Server requests that arrived while the client was away; asked next round.
    queued: Vec<AwaitingInput>,
    round: u32,
    /// While answered `input_required`: when the client's `requestState` lapses.
    parked_until: Option<Instant>,
    /// After a retry: the progress token the current client request carries, which
    /// replaces the first request's token the server keeps using.
    progress_as: Option<Id>,
    next_key: u32,
    /// Who made the call: a `requestState` opens only for the same principal.
    principal: String,
}

impl Call {
    pub fn client_id(&self) -> &Id {
        &self.client_id
    }

    pub fn is_parked(&self) -> bool {
        self.parked_until.is_some()
    }
}

pub(super) fn stale() -> SessionError {
    SessionError::StaleState("requestState was already used, or its call has ended".into())
}

fn progress_token(message: &Message) -> Option<Id> {
    match &message.kind {
        Kind::Request { progress_token, .. } => progress_token.clone(),
        _ => None,
    }
}

fn client_id(call: &ModernCall) -> Result<Id, SessionError> {
    call.message
        .request_id()
        .cloned()
        .ok_or_else(|| SessionError::Internal("a 2026-07-28 call without an id".into()))
}

impl Bridge {
    pub fn new(init: Value) -> Self {
        Bridge {
            init,
            listeners: Vec::new(),
            roots: None,
        }
    }

    /// A new 2026-07-28 request.
    pub fn call(
        &mut self,
        ctx: &mut Ctx<'_>,
        call: ModernCall,
    ) -> Result<(u32, EventStream), SessionError> {
        let client_id = client_id(&call)?;
        let method = call.message.method().unwrap_or_default();
        if method == "server/discover" {
            let reply = Reply::result(&client_id, self.synthesized_discover());
            return Ok(ctx.core.answer_now(reply));
        }
        if method == "subscriptions/listen" {
            return Ok(self.listen(ctx, &call, client_id));
        }
        let upstream_id = ctx.core.mint_id();
        let bytes = legacy_request(&call, &upstream_id)
            .ok_or_else(|| SessionError::Internal("a validated request is not JSON".into()))?;
        ctx.out.send(vec![bytes])?;
        let (stream, rx) = ctx.core.open(false, 1);
        let progress_token = progress_token(&call.message);
        let state = Call {
            client_id,
            method: method.into(),
            digest: digest(&call.request.salient_params),
            capabilities: call.request.client_capabilities.clone(),
            log_level: call.request.log_level.as_deref().and_then(log_severity),
            awaiting: Vec::new(),
            queued: Vec::new(),
            round: 0,
            parked_until: None,
            progress_as: progress_token.clone(),
            next_key: 0,
            principal: call.principal.key(),
        };
        let pending = Pending::new(stream, progress_token, CallState::Bridged(Box::new(state)))
            .of_method(method)
            .with_request(&call.message.bytes);
        ctx.core.insert(upstream_id, pending);
        Ok((stream, rx))
    }

    /// The client's MRTR retry: hand its answers to the server's waiting requests and
    /// continue the call on the retry's stream.
    pub fn resume(
        &mut self,
        ctx: &mut Ctx<'_>,
        call: ModernCall,
        state: BridgeState,
    ) -> Result<(u32, EventStream), SessionError> {
        if state.session != ctx.env.session.as_str() || state.principal != call.principal.key() {
            return Err(SessionError::StaleState(
                "requestState belongs to another session or user".into(),
            ));
        }
        let upstream_id = Id::from_json_text(&state.call);
        let client_id = client_id(&call)?;
        let Some(CallState::Bridged(bridged)) = ctx.core.get(&upstream_id).map(|p| &p.state) else {
            return Err(stale());
        };
        if !bridged.is_parked() || bridged.round != state.round {
            return Err(stale());
        }
        let method = call.message.method().unwrap_or_default();
        if method != state.method || digest(&call.request.salient_params) != state.digest {
            return Err(SessionError::StaleState(
                "requestState belongs to a different request (method or params differ)".into(),
            ));
        }
        let answers = call.request.input_responses.clone().unwrap_or_default();
        if let Some(roots) = bridged
            .awaiting
            .iter()
            .filter(|a| &*a.method == "roots/list")
            .filter_map(|a| answers.get(&a.key))
            .rfind(|answer| answer.get("roots").is_some_and(Value::is_array))
        {
            self.roots = Some(roots.clone());
        }
        let replies: Vec<Bytes> = bridged
            .awaiting
            .iter()
            .filter_map(|a| {
                let answer = answers.get(&a.key)?;
                let reply =
                    json!({"jsonrpc": "2.0", "id": id_value(&a.server_id), "result": answer});
                Some(Bytes::from(reply.to_string()))
            })
            .collect();
        ctx.out.send(replies)?;
        let (stream, rx) = ctx.core.open(false, 1);
        ctx.core.move_to_stream(&upstream_id, stream);
        ctx.core.wait_again(&upstream_id);
        let Some(CallState::Bridged(bridged)) =
            ctx.core.get_mut(&upstream_id).map(|p| &mut p.state)
        else {
            return Err(stale());
        };
        bridged.awaiting.retain(|a| !answers.contains_key(&a.key));
        let queued = std::mem::take(&mut bridged.queued);
        bridged.awaiting.extend(queued);
        bridged.client_id = client_id;
        bridged.capabilities = call.request.client_capabilities.clone();
        bridged.round += 1;
        bridged.parked_until = None;
        // The server keeps reporting progress under the first request's token; the
        // retry's client knows its own (or asked for none).
        bridged.progress_as = progress_token(&call.message);
        if !bridged.awaiting.is_empty() {
            ask_client(ctx, &upstream_id);
        }
        Ok((stream, rx))
    }

    pub fn abandon(&mut self, ctx: &mut Ctx<'_>, stream: u32) {
        cancel_on_stream(ctx, stream);
        let before = self.listeners.len();
        self.listeners.retain(|l| l.stream != stream);
        if self.listeners.len() != before {
            ctx.core.streams.settle(stream);
        }
    }

    pub fn on_server_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        let error_code = message.error_code();
        match message.kind {
            Kind::Response { id } => {
                let response = match ctx.core.get(&id).map(|p| &p.state) {
                    Some(CallState::Bridged(call)) => Reply {
                        bytes: self.modern_response(call, &message.bytes),
                        error_code,
                        source: crate::ErrorSource::Server,
                    },
                    _ => {
                        tracing::debug!(session = %ctx.env.session, %id, "response to no pending call dropped");
                        return;
                    }
                };
                ctx.core.complete(&id, Some(response));
            }
            Kind::Request { id, method, .. } => {
                server_request(ctx, &id, &method, &message.bytes, self.roots.as_ref());
            }
            Kind::Notification {
                method,
                progress_token,
                cancelled_id,
                ..
            } => match &*method {
                "notifications/progress" => {
                    if let Some(token) = progress_token {
                        bridged_progress(ctx, &token, message.bytes);
                    }
                }
                "notifications/cancelled" => ctx
                    .core
                    .route_cancelled(cancelled_id.as_ref(), message.bytes),
                "notifications/message" => route_log(ctx, message.bytes),
                _ => self.route_to_listeners(ctx, &method, &message.bytes),
            },
        }
    }

    fn server_info(&self) -> Value {
        self.init
            .get("serverInfo")
            .cloned()
            .unwrap_or_else(|| json!({"name": "unknown", "version": "0"}))
    }

    /// `server/discover` for the legacy server, from its `initialize` result.
    fn synthesized_discover(&self) -> Value {
        let mut result = json!({
            "resultType": "complete",
            "supportedVersions": version::MODERN,
            "capabilities": self.init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            "ttlMs": 0,
            "cacheScope": "private",
            "_meta": { SERVER_INFO_KEY: self.server_info() },
        });
        if let Some(instructions) = self.init.get("instructions") {
            result["instructions"] = instructions.clone();
        }
        result
    }

    /// The final response: the client's id back in place, and the fields 2026-07-28
    /// results must carry.
    fn modern_response(&self, call: &Call, bytes: &Bytes) -> Bytes {
        let Ok(mut response) = serde_json::from_slice::<Value>(bytes) else {
            return bytes.clone();
        };
        response["id"] = id_value(&call.client_id);
        if let Some(result) = response.get_mut("result").and_then(Value::as_object_mut) {
            result
                .entry("resultType")
                .or_insert_with(|| json!("complete"));
            if cacheable(&call.method) {
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

    fn listen(
        &mut self,
        ctx: &mut Ctx<'_>,
        call: &ModernCall,
        client_id: Id,
    ) -> (u32, EventStream) {
        let (stream, rx) = ctx.core.open(false, 1);
        let filter = call
            .request
            .salient_params
            .get("notifications")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let uris = filter
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let subscribe: Vec<Bytes> = uris
            .into_iter()
            .map(|uri| {
                let id = ctx.core.mint_id();
                let body = json!({"jsonrpc": "2.0", "id": id_value(&id), "method": "resources/subscribe", "params": {"uri": uri}});
                Bytes::from(body.to_string())
            })
            .collect();
        if !subscribe.is_empty() {
            ctx.send_quietly(subscribe);
        }
        let ack = json!({
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": { "_meta": { SUBSCRIPTION_ID_KEY: id_value(&client_id) } },
        });
        ctx.core
            .streams
            .emit(stream, Bytes::from(ack.to_string()), false);
        self.listeners.push(Listener {
            stream,
            client_id,
            filter,
        });
        (stream, rx)
    }

    /// A change notification, for the listen streams that opted in.
    fn route_to_listeners(&self, ctx: &mut Ctx<'_>, method: &str, bytes: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Value>(bytes) else {
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
                ctx.core
                    .streams
                    .emit(listener.stream, Bytes::from(tagged.to_string()), false);
            }
        }
    }
}

/// A server request during a call: asked of the client in the call's next
/// `input_required` (or queued while the call is parked).
fn server_request(
    ctx: &mut Ctx<'_>,
    server_id: &Id,
    method: &str,
    bytes: &[u8],
    known_roots: Option<&Value>,
) {
    // The newest call the client is waiting on, else the newest parked one.
    let newest = |core: &Core<CallState>, parked: bool| {
        core.calls()
            .filter(|(_, p)| matches!(&p.state, CallState::Bridged(c) if c.is_parked() == parked))
            .max_by_key(|(_, p)| p.stream)
            .map(|(id, _)| id.clone())
    };
    let target = newest(ctx.core, false).or_else(|| newest(ctx.core, true));
    let (Some(call_id), false) = (target, method == "ping") else {
        answer_outside_call(ctx, server_id, method, known_roots);
        return;
    };
    let Some(CallState::Bridged(call)) = ctx.core.get_mut(&call_id).map(|p| &mut p.state) else {
        return;
    };
    let capability = short_method(method);
    if call.capabilities.get(capability).is_none() {
        let why = format!("the client did not declare the {capability} capability");
        ctx.refuse(server_id, codes::METHOD_NOT_FOUND, &why);
        return;
    }
    let Some(request) = input_request(method, bytes) else {
        ctx.refuse(server_id, codes::INVALID_PARAMS, "params must be an object");
        return;
    };
    call.next_key += 1;
    let awaiting = AwaitingInput {
        key: format!("{capability}-{}", call.next_key),
        server_id: server_id.clone(),
        method: method.into(),
        request,
    };
    if call.is_parked() {
        call.queued.push(awaiting);
    } else {
        call.awaiting.push(awaiting);
        ask_client(ctx, &call_id);
    }
}

/// The server's request as an entry of `inputRequests`, its params' text kept as the
/// server wrote it but for the server's own progress token, which means nothing to
/// the client. `None` if params is not an object.
fn input_request(method: &str, bytes: &[u8]) -> Option<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Incoming<'a> {
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    #[derive(serde::Serialize)]
    struct Outgoing<'a> {
        method: &'a str,
        params: BTreeMap<String, Box<RawValue>>,
    }
    let incoming: Incoming<'_> = serde_json::from_slice(bytes).ok()?;
    let mut params: BTreeMap<String, Box<RawValue>> = match incoming.params {
        Some(raw) => serde_json::from_str(raw.get()).ok()?,
        None => BTreeMap::new(),
    };
    if let Some(meta) = params.remove("_meta") {
        let mut meta: Map<String, Value> = serde_json::from_str(meta.get()).ok()?;
        meta.remove("progressToken");
        if !meta.is_empty() {
            params.insert("_meta".into(), serde_json::value::to_raw_value(&meta).ok()?);
        }
    }
    serde_json::value::to_raw_value(&Outgoing { method, params }).ok()
}

/// Answers the call's current client request with `input_required` for every input
/// it awaits, and parks the call until the client retries.
fn ask_client(ctx: &mut Ctx<'_>, call_id: &Id) {
    let ttl = ctx.env.request_state_ttl;
    let Some(pending) = ctx.core.get_mut(call_id) else {
        return;
    };
    let stream = pending.stream;
    let CallState::Bridged(call) = &mut pending.state else {
        return;
    };
    let state = BridgeState {
        session: ctx.env.session.to_string(),
        call: call_id.as_json_text().to_string(),
        round: call.round,
        method: call.method.to_string(),
        digest: call.digest.clone(),
        principal: call.principal.clone(),
        expires: unix_now() + ttl.as_secs(),
    };
    #[derive(serde::Serialize)]
    struct Body<'a> {
        jsonrpc: &'static str,
        id: Value,
        result: InputRequired<'a>,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct InputRequired<'a> {
        result_type: &'static str,
        input_requests: BTreeMap<&'a str, &'a RawValue>,
        request_state: String,
    }
    let body = Body {
        jsonrpc: "2.0",
        id: id_value(&call.client_id),
        result: InputRequired {
            result_type: "input_required",
            input_requests: call
                .awaiting
                .iter()
                .map(|a| (a.key.as_str(), &*a.request))
                .collect(),
            request_state: ctx.env.codec.seal(&state),
        },
    };
    let Ok(body) = serde_json::to_string(&body) else {
        return;
    };
    call.parked_until = Some(Instant::now() + ttl);
    ctx.core.stop_waiting(call_id);
    // The call stays pending (and busy) while parked: only this round's stream ends.
    ctx.core.streams.respond(stream, Bytes::from(body), None);
    ctx.core.streams.settle(stream);
}

/// Progress for a bridged call, under the token the current client request knows;
/// dropped if that request asked for no progress.
fn bridged_progress(ctx: &mut Ctx<'_>, token: &Id, bytes: Bytes) {
    let Some(stream) = ctx.core.on_progress(token) else {
        tracing::debug!(session = %ctx.env.session, "progress for a finished request dropped");
        return;
    };
    let current = ctx
        .core
        .calls()
        .find(|(_, p)| p.progress_token.as_ref() == Some(token))
        .and_then(|(_, p)| match &p.state {
            CallState::Bridged(call) => Some(call.progress_as.clone()),
            _ => None,
        });
    let bytes = match current {
        None => Some(bytes),
        Some(Some(current)) if &current == token => Some(bytes),
        Some(Some(current)) => serde_json::from_slice::<Value>(&bytes).ok().map(|mut m| {
            m["params"]["progressToken"] = id_value(&current);
            Bytes::from(m.to_string())
        }),
        Some(None) => None,
    };
    if let Some(bytes) = bytes {
        ctx.core.streams.emit(stream, bytes, false);
    }
}

/// A log message goes to the newest call the client waits on, if that call asked for
/// logs at this level.
fn route_log(ctx: &mut Ctx<'_>, bytes: Bytes) {
    let level = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.pointer("/params/level")?.as_str().and_then(log_severity));
    let target = ctx
        .core
        .calls()
        .filter_map(|(_, p)| match &p.state {
            CallState::Bridged(call) if !call.is_parked() => Some((p.stream, call.log_level)),
            _ => None,
        })
        .max_by_key(|(stream, _)| *stream);
    if let Some((stream, Some(min))) = target
        && level.unwrap_or(u8::MAX) >= min
    {
        ctx.core.streams.emit(stream, bytes, false);
    }
}

/// The earliest time a parked call's `requestState` lapses.
pub(super) fn next_park_expiry(core: &Core<CallState>) -> Option<Instant> {
    core.calls()
        .filter_map(|(_, p)| match &p.state {
            CallState::Bridged(call) => call.parked_until,
            _ => None,
        })
        .min()
}

/// Abandons calls whose client never came back with their `requestState`: the
/// server's waiting requests get an error, and the call is cancelled.
pub(super) fn expire_parked(ctx: &mut Ctx<'_>, now: Instant) {
    let lapsed: Vec<Id> = ctx
        .core
        .calls()
        .filter(|(_, p)| {
            matches!(&p.state, CallState::Bridged(c) if c.parked_until.is_some_and(|t| t <= now))
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in lapsed {
        let Some(pending) = ctx.core.complete(&id, None) else {
            continue;
        };
        let mut messages = Vec::new();
        if let CallState::Bridged(call) = &pending.state {
            for input in call.awaiting.iter().chain(&call.queued) {
                messages.push(error_body(
                    Some(&input.server_id),
                    codes::INTERNAL_ERROR,
                    "the client did not answer in time",
                ));
            }
        }
        messages.push(cancelled(&id, "the client did not retry in time"));
        ctx.send_quietly(messages);
        tracing::info!(session = %ctx.env.session, call = %id, "bridged call abandoned: its requestState lapsed");
    }
}

/// The request as a legacy server must see it: Lodge's id, and none of the
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

fn short_method(method: &str) -> &str {
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
