//! Legacy (2025-11-25) client, 2026-07-28 server: Lodge answers `initialize` from the
//! server's `server/discover`, adds the per-request `_meta` the server requires, and
//! turns its `input_required` results into requests pushed to the client, retrying
//! the call with the answers until it completes.

use super::relay::{after_delivery, route_legacy};
use super::{CallState, Ctx, id_value};
use crate::error::SessionError;
use crate::session::core::{Pending, Reply};
use crate::session::{EventStream, Hosting, HostingKind};
use bytes::Bytes;
use lodge_proto::modern::{
    CLIENT_CAPABILITIES_KEY, CLIENT_INFO_KEY, LOG_LEVEL_KEY, PROTOCOL_VERSION_KEY, SERVER_INFO_KEY,
};
use lodge_proto::{Id, Kind, Message, codes, replace_id, set_meta_field, version};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// What the legacy client declared in its `initialize`.
#[derive(Clone, Debug)]
pub(crate) struct LegacyClient {
    capabilities: Value,
    client_info: Value,
    log_level: Option<String>,
    /// The protocol version its `initialize` asked for.
    requested: String,
}

impl LegacyClient {
    pub fn from_initialize(message: &Message) -> Self {
        let params: Value = serde_json::from_slice::<Value>(&message.bytes)
            .ok()
            .and_then(|v| v.get("params").cloned())
            .unwrap_or_default();
        LegacyClient {
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
        }
    }
}

/// A legacy client's call to the modern server, kept to rebuild MRTR retries.
pub(crate) struct Call {
    client_id: Id,
    /// The request as first sent upstream (with `_meta`).
    request: Value,
    answers: Map<String, Value>,
    awaiting: usize,
    request_state: Option<Value>,
}

impl Call {
    pub fn client_id(&self) -> &Id {
        &self.client_id
    }
}

#[derive(Default)]
pub(crate) struct ToModern {
    client: Option<LegacyClient>,
    /// Requests Lodge pushed to the client for an MRTR round: push id → (the call's
    /// retry id, the input key).
    pushed: HashMap<Id, (Id, String)>,
    /// `server/discover` requests Lodge sent to answer an `initialize`: Lodge's id →
    /// the client's `initialize` id.
    discovering: HashMap<Id, Id>,
}

/// What happens to one of a legacy client's requests in front of a modern server.
enum Plan {
    /// Sent upstream with the `_meta` a 2026-07-28 server requires.
    Upstream(Bytes, Box<Call>),
    /// Answered by Lodge.
    Local,
}

impl ToModern {
    pub fn new(client: Option<LegacyClient>) -> Self {
        ToModern {
            client,
            ..ToModern::default()
        }
    }

    pub fn requests(
        &mut self,
        ctx: &mut Ctx<'_>,
        messages: Vec<Message>,
        sse: bool,
    ) -> Result<EventStream, SessionError> {
        if let Some(init) = messages.iter().find(|m| m.method() == Some("initialize")) {
            self.client = Some(LegacyClient::from_initialize(init));
        }
        let plans: Vec<Plan> = messages.iter().map(|m| self.plan(m)).collect();
        let upstream = plans.iter().filter_map(|p| match p {
            Plan::Upstream(bytes, _) => Some(bytes.clone()),
            Plan::Local => None,
        });
        ctx.out.send(upstream.collect())?;
        let (stream, rx) = ctx.core.open(sse, messages.len());
        let mut local = Vec::new();
        for (message, plan) in messages.into_iter().zip(plans) {
            let Kind::Request {
                id,
                progress_token,
                method,
            } = &message.kind
            else {
                continue;
            };
            let state = match plan {
                Plan::Upstream(_, call) => CallState::ToModern(call),
                Plan::Local => {
                    local.push(message.clone());
                    CallState::Local
                }
            };
            ctx.core.insert(
                id.clone(),
                Pending::new(stream, progress_token.clone(), state)
                    .of_method(method)
                    .with_request(&message.bytes),
            );
        }
        for message in local {
            self.answer_locally(ctx, &message);
        }
        Ok(rx)
    }

    fn plan(&self, message: &Message) -> Plan {
        match message.method().unwrap_or_default() {
            "initialize" | "ping" | "logging/setLevel" => Plan::Local,
            _ => match (message.request_id(), self.with_modern_meta(message)) {
                (Some(client_id), Some(request)) => {
                    let bytes = Bytes::from(request.to_string());
                    let call = Call {
                        client_id: client_id.clone(),
                        request,
                        answers: Map::new(),
                        awaiting: 0,
                        request_state: None,
                    };
                    Plan::Upstream(bytes, Box::new(call))
                }
                _ => Plan::Local,
            },
        }
    }

    /// The request with the `_meta` every 2026-07-28 request carries.
    fn with_modern_meta(&self, message: &Message) -> Option<Value> {
        let mut request: Value = serde_json::from_slice(&message.bytes).ok()?;
        let client = self.client.as_ref();
        set_meta_field(
            &mut request,
            PROTOCOL_VERSION_KEY,
            json!(version::MODERN[0]),
        );
        let capabilities = client.map_or_else(|| json!({}), |c| c.capabilities.clone());
        set_meta_field(&mut request, CLIENT_CAPABILITIES_KEY, capabilities);
        if let Some(client) = client {
            set_meta_field(&mut request, CLIENT_INFO_KEY, client.client_info.clone());
            if let Some(level) = &client.log_level {
                set_meta_field(&mut request, LOG_LEVEL_KEY, json!(level));
            }
        }
        Some(request)
    }

    fn answer_locally(&mut self, ctx: &mut Ctx<'_>, message: &Message) {
        let Some(id) = message.request_id().cloned() else {
            return;
        };
        match message.method().unwrap_or_default() {
            "initialize" => self.initialize_via_discover(ctx, id),
            "logging/setLevel" => {
                let level = serde_json::from_slice::<Value>(&message.bytes)
                    .ok()
                    .and_then(|v| v.pointer("/params/level")?.as_str().map(str::to_string));
                if let Some(client) = &mut self.client {
                    client.log_level = level;
                }
                ctx.core.complete(&id, Some(Reply::result(&id, json!({}))));
            }
            "ping" => {
                ctx.core.complete(&id, Some(Reply::result(&id, json!({}))));
            }
            method => {
                let why = format!("Lodge could not forward {method} to the 2026-07-28 server");
                let reply = Reply::error(&id, codes::INTERNAL_ERROR, &why);
                ctx.core.complete(&id, Some(reply));
            }
        }
    }

    /// Asks the server for `server/discover`, to answer the client's `initialize`.
    pub fn initialize_via_discover(&mut self, ctx: &mut Ctx<'_>, client: Id) {
        let id = ctx.core.mint_id();
        let meta = json!({PROTOCOL_VERSION_KEY: version::MODERN[0], CLIENT_CAPABILITIES_KEY: {}});
        let discover = json!({"jsonrpc": "2.0", "id": id_value(&id), "method": "server/discover", "params": {"_meta": meta}});
        match ctx.out.send(vec![Bytes::from(discover.to_string())]) {
            Ok(()) => {
                self.discovering.insert(id, client);
            }
            Err(e) => {
                let why = format!("could not ask the MCP server for server/discover: {e}");
                let reply = Reply::error(&client, codes::INTERNAL_ERROR, &why);
                ctx.core.complete(&client, Some(reply));
            }
        }
    }

    pub fn deliver(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> Result<(), SessionError> {
        if let Kind::Response { id } = &message.kind
            && let Some((retry_id, key)) = self.pushed.remove(id)
        {
            self.take_answer(ctx, &retry_id, key, &message.bytes);
            return Ok(());
        }
        if message.method() != Some("notifications/initialized") {
            ctx.out.send(vec![message.bytes.clone()])?;
        }
        after_delivery(ctx, message);
        Ok(())
    }

    pub fn on_server_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        match &message.kind {
            Kind::Response { id } => {
                if let Some(client) = self.discovering.remove(id) {
                    initialize_from_discover(ctx, self.client.as_ref(), &client, &message.bytes);
                } else if matches!(
                    ctx.core.get(id).map(|p| &p.state),
                    Some(CallState::ToModern(_))
                ) {
                    self.on_call_response(ctx, id, &message);
                } else {
                    tracing::debug!(session = %ctx.env.session, %id, "response to no pending call dropped");
                }
            }
            Kind::Notification {
                subscription_id: Some(_),
                ..
            } => {
                tracing::debug!(session = %ctx.env.session, "subscription notification without a listener dropped");
            }
            _ => route_legacy(ctx, message),
        }
    }

    /// A response to a call: final, or a request for input Lodge asks the client for.
    fn on_call_response(&mut self, ctx: &mut Ctx<'_>, id: &Id, message: &Message) {
        let bytes = &message.bytes;
        let response: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let result = &response["result"];
        let input_required =
            result.get("resultType").and_then(Value::as_str) == Some("input_required");
        if !input_required {
            let Some(CallState::ToModern(call)) = ctx.core.get(id).map(|p| &p.state) else {
                return;
            };
            let out = replace_id(bytes, &call.client_id).unwrap_or_else(|| bytes.clone());
            ctx.core.complete(id, Some(Reply::relayed(out, message)));
            return;
        }
        let retry_id = ctx.core.mint_id();
        let Some(pending) = ctx.core.get_mut(id) else {
            return;
        };
        let stream = pending.stream;
        let CallState::ToModern(call) = &mut pending.state else {
            return;
        };
        call.request_state = result.get("requestState").cloned();
        call.answers.clear();
        let Some(requests) = input_requests(bytes) else {
            let why = "the MCP server's input_required result has malformed inputRequests";
            let reply = Reply::error(&call.client_id, codes::INTERNAL_ERROR, why);
            ctx.core.complete(id, Some(reply));
            return;
        };
        call.awaiting = requests.len();
        let mut pushes = Vec::new();
        for (key, request) in requests {
            // Parsed here anyway: the activity learns of the question for free.
            ctx.out.server_asks(&key, &request.method);
            let push_id = ctx.core.mint_id();
            let params = request.params.as_deref().map_or("{}", RawValue::get);
            let push = format!(
                r#"{{"jsonrpc":"2.0","id":{},"method":{},"params":{params}}}"#,
                push_id.as_json_text(),
                Value::from(request.method),
            );
            self.pushed.insert(push_id, (retry_id.clone(), key));
            pushes.push(Bytes::from(push));
        }
        let ready = pushes.is_empty();
        for push in pushes {
            ctx.core.streams.emit(stream, push, false);
        }
        ctx.core.rekey(id, retry_id.clone());
        if !ready {
            ctx.core.stop_waiting(&retry_id); // the client has the next move
        }
        if ready {
            retry(ctx, &retry_id);
        }
    }

    /// The client answered a request Lodge pushed for the server's MRTR round.
    fn take_answer(&mut self, ctx: &mut Ctx<'_>, retry_id: &Id, key: String, bytes: &[u8]) {
        let answer: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let Some(CallState::ToModern(call)) = ctx.core.get_mut(retry_id).map(|p| &mut p.state)
        else {
            return;
        };
        call.answers
            .insert(key, answer.get("result").cloned().unwrap_or(Value::Null));
        call.awaiting = call.awaiting.saturating_sub(1);
        if call.awaiting == 0 {
            retry(ctx, retry_id);
        }
    }
}

/// Sends the call again, under its retry id, with the answers and the server's state.
fn retry(ctx: &mut Ctx<'_>, retry_id: &Id) {
    let Some(CallState::ToModern(call)) = ctx.core.get(retry_id).map(|p| &p.state) else {
        return;
    };
    let mut again = call.request.clone();
    again["id"] = id_value(retry_id);
    if let Some(params) = again.get_mut("params").and_then(Value::as_object_mut) {
        params.insert("inputResponses".into(), Value::Object(call.answers.clone()));
        match &call.request_state {
            Some(state) => params.insert("requestState".into(), state.clone()),
            None => params.remove("requestState"),
        };
    }
    let client_id = call.client_id.clone();
    ctx.core.wait_again(retry_id);
    if let Err(e) = ctx.out.send(vec![Bytes::from(again.to_string())]) {
        let why = format!("could not retry the call: {e}");
        let reply = Reply::error(&client_id, codes::INTERNAL_ERROR, &why);
        ctx.core.complete(retry_id, Some(reply));
    }
}

/// One entry of a server's `inputRequests`; its params stay JSON text, so a form's
/// `properties` reach the client in the order the server wrote them.
#[derive(serde::Deserialize)]
struct InputRequest {
    method: String,
    params: Option<Box<RawValue>>,
}

/// The `inputRequests` of an `input_required` response; `None` if malformed.
fn input_requests(bytes: &[u8]) -> Option<std::collections::BTreeMap<String, InputRequest>> {
    #[derive(serde::Deserialize)]
    struct Response {
        result: InputRequired,
    }
    #[derive(serde::Deserialize)]
    struct InputRequired {
        #[serde(rename = "inputRequests", default)]
        input_requests: std::collections::BTreeMap<String, InputRequest>,
    }
    serde_json::from_slice::<Response>(bytes)
        .map(|r| r.result.input_requests)
        .ok()
}

/// The client's `initialize` answered from the server's `server/discover`.
fn initialize_from_discover(
    ctx: &mut Ctx<'_>,
    legacy: Option<&LegacyClient>,
    client: &Id,
    bytes: &[u8],
) {
    let discover: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let Some(result) = discover.get("result") else {
        let why = discover
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no result");
        let message =
            format!("the MCP server speaks neither initialize nor server/discover: {why}");
        let reply = Reply::error(client, codes::INTERNAL_ERROR, &message);
        ctx.core.complete(client, Some(reply));
        return;
    };
    let requested = legacy.map_or("", |c| c.requested.as_str());
    let negotiated = if version::is_legacy(requested) {
        requested
    } else {
        version::LEGACY[version::LEGACY.len() - 1]
    };
    let _ = ctx.env.shared.protocol_version.set(negotiated.to_string());
    // (When the server refused initialize first, the relay already said why.)
    let hosting = Hosting::new(HostingKind::SpokenFor, "protocol = \"modern\"");
    ctx.env.shared.decided(hosting);
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
    ctx.core.complete(client, Some(Reply::result(client, init)));
}
