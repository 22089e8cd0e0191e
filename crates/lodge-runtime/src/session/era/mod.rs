//! One adapter per pairing of client era and server era, held as one enum
//! ([`Adapter`]) and chosen once the server's era is known:
//!
//! | client | server | adapter |
//! |---|---|---|
//! | legacy | legacy (or not yet known) | [`Relay`]: messages as they are |
//! | legacy | 2026-07-28 | [`ToModern`]: `_meta` added, MRTR rounds pushed to the client as requests |
//! | 2026-07-28 | not yet known | [`Probe`]: asks the server (`initialize`, then `server/discover`) |
//! | 2026-07-28 | legacy | [`Bridge`]: Lodge initializes the server; its requests become `input_required` |
//! | 2026-07-28 | 2026-07-28 | [`Passthrough`]: ids remapped, nothing else changed |
//!
//! Each adapter keeps its own per-call state (in [`CallState`], one variant per
//! adapter) and works on the [`Core`] through a [`Ctx`]; none knows the actor.

mod bridge;
mod passthrough;
mod probe;
mod relay;
mod to_modern;

pub(crate) use bridge::Bridge;
pub(crate) use passthrough::Passthrough;
pub(crate) use probe::Probe;
pub(crate) use relay::Relay;
pub(crate) use to_modern::ToModern;

use super::core::{Core, ToServer};
use super::request_state::{BridgeState, StateCodec};
use super::{EventStream, ModernCall, Protocol, Shared};
use crate::error::SessionError;
use bytes::Bytes;
use lodge_proto::{Id, Message, codes, error_body};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// What the session's adapters need besides the core: fixed for the session's life.
pub(crate) struct Env {
    /// The public session id (it goes into sealed `requestState`s).
    pub session: crate::SessionId,
    pub shared: Arc<Shared>,
    pub codec: Arc<StateCodec>,
    /// How long a client has to retry an `input_required` result Lodge made.
    pub request_state_ttl: Duration,
}

/// Everything an adapter works on while it handles one event.
pub(crate) struct Ctx<'a> {
    pub core: &'a mut Core<CallState>,
    pub out: &'a mut dyn ToServer,
    pub env: &'a Env,
}

impl Ctx<'_> {
    /// Sends messages Lodge makes itself; a server that does not read its input will
    /// not read these either, and the session's end will be noticed from its output.
    fn send_quietly(&mut self, messages: Vec<Bytes>) {
        if let Err(e) = self.out.send(messages) {
            tracing::debug!(session = %self.env.session, error = %e, "message from Lodge to the server not queued");
        }
    }

    /// Refuses a server request that Lodge cannot carry to a client.
    fn refuse(&mut self, server_id: &Id, code: i64, why: &str) {
        self.send_quietly(vec![error_body(Some(server_id), code, why)]);
    }

    /// Answers a server's `ping` on the client's behalf.
    fn pong(&mut self, server_id: &Id) {
        self.answer(server_id, &serde_json::json!({}));
    }

    /// Answers a server request on the client's behalf.
    fn answer(&mut self, server_id: &Id, result: &Value) {
        let reply =
            serde_json::json!({"jsonrpc": "2.0", "id": id_value(server_id), "result": result});
        self.send_quietly(vec![Bytes::from(reply.to_string())]);
    }
}

/// What the adapter of a session keeps about one pending call.
pub(crate) enum CallState {
    /// A legacy client's call, relayed as it is.
    Relay { initialize: bool },
    /// A legacy client's call that Lodge answers itself (`initialize`, `ping`,
    /// `logging/setLevel` in front of a 2026-07-28 server).
    Local,
    /// A legacy client's call to a 2026-07-28 server.
    ToModern(Box<to_modern::Call>),
    /// A 2026-07-28 client's call to a legacy server, bridged over MRTR.
    Bridged(Box<bridge::Call>),
    /// A 2026-07-28 client's call passed through with Lodge's id.
    Passthrough(passthrough::Call),
}

impl CallState {
    /// The id the call's client knows it by (`key`: its id in the core).
    pub fn client_id(&self, key: &Id) -> Id {
        match self {
            CallState::Relay { .. } | CallState::Local => key.clone(),
            CallState::ToModern(call) => call.client_id().clone(),
            CallState::Bridged(call) => call.client_id().clone(),
            CallState::Passthrough(call) => call.client_id().clone(),
        }
    }
}

/// The session's adapter: which era pairing it serves, with that pairing's state.
pub(crate) enum Adapter {
    Relay(Relay),
    ToModern(ToModern),
    Probe(Probe),
    Bridge(Bridge),
    Passthrough(Passthrough),
}

/// Why an era adapter refuses a command meant for the other era.
const WRONG_ERA_LEGACY: &str = "this is a 2026-07-28 runtime session: send 2026-07-28 requests with Lodge-Session-Id, not Mcp-Session-Id";

impl Adapter {
    /// The adapter a new session starts with: legacy clients are relayed (or, for a
    /// server configured as 2026-07-28-only, spoken for); 2026-07-28 clients wait for
    /// the probe of the server's era.
    pub fn new(modern_client: bool, policy: Protocol) -> Adapter {
        match (modern_client, policy) {
            (false, Protocol::Modern) => Adapter::ToModern(ToModern::default()),
            (false, _) => Adapter::Relay(Relay::new(policy)),
            (true, _) => Adapter::Probe(Probe::default()),
        }
    }

    /// Legacy client requests (several only for a 2025-03-26 batch), answered on one stream.
    pub fn requests(
        &mut self,
        ctx: &mut Ctx<'_>,
        messages: Vec<Message>,
        sse: bool,
    ) -> Result<EventStream, SessionError> {
        if let Some(id) = messages
            .iter()
            .filter_map(Message::request_id)
            .find(|id| ctx.core.contains(id))
        {
            return Err(SessionError::DuplicateRequestId(id.clone()));
        }
        match self {
            Adapter::Relay(a) => a.requests(ctx, messages, sse),
            Adapter::ToModern(a) => a.requests(ctx, messages, sse),
            _ => Err(SessionError::WrongEra(WRONG_ERA_LEGACY)),
        }
    }

    /// A legacy client's notification, or its answer to a server request.
    pub fn deliver(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Result<(), SessionError> {
        let result = match self {
            Adapter::Relay(_) => relay::deliver(ctx, &message),
            Adapter::ToModern(a) => a.deliver(ctx, &message),
            _ => Err(SessionError::WrongEra(WRONG_ERA_LEGACY)),
        };
        ctx.core.touch();
        result
    }

    /// A legacy GET: the standalone stream, or the resumption of a stream.
    pub fn listen(
        &mut self,
        ctx: &mut Ctx<'_>,
        after: Option<super::EventId>,
    ) -> Result<EventStream, SessionError> {
        match self {
            Adapter::Relay(_) | Adapter::ToModern(_) => ctx.core.listen(after),
            _ => Err(SessionError::WrongEra(WRONG_ERA_LEGACY)),
        }
    }

    /// Before a 2026-07-28 client's first request: learn the server's era.
    pub fn prepare(
        &mut self,
        ctx: &mut Ctx<'_>,
        capabilities: Value,
        policy: Protocol,
        reply: oneshot::Sender<Result<(), SessionError>>,
    ) {
        match self {
            Adapter::Probe(probe) => {
                if let Some(decided) = probe.start(ctx, capabilities, policy, reply) {
                    *self = decided;
                }
            }
            _ => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// A 2026-07-28 request, or its MRTR retry (`resume`: the state Lodge sealed).
    pub fn modern(
        &mut self,
        ctx: &mut Ctx<'_>,
        call: ModernCall,
        resume: Option<BridgeState>,
    ) -> Result<(u32, EventStream), SessionError> {
        match self {
            Adapter::Bridge(a) => match resume {
                Some(state) => a.resume(ctx, call, state),
                None => a.call(ctx, call),
            },
            Adapter::Passthrough(_) => match resume {
                Some(_) => Err(bridge::stale()),
                None => passthrough::call(ctx, call),
            },
            Adapter::Probe(_) => Err(SessionError::Internal(
                "a 2026-07-28 request reached a session whose server's era is not known yet".into(),
            )),
            Adapter::Relay(_) | Adapter::ToModern(_) => Err(SessionError::WrongEra(
                "this session was started with initialize: send its requests with Mcp-Session-Id",
            )),
        }
    }

    /// The client closed a 2026-07-28 response stream: that cancels its request.
    pub fn abandon(&mut self, ctx: &mut Ctx<'_>, stream: u32) {
        match self {
            Adapter::Bridge(a) => a.abandon(ctx, stream),
            Adapter::Passthrough(_) => cancel_on_stream(ctx, stream),
            _ => {}
        }
    }

    /// What the server sent.
    pub fn on_server_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        let next = match self {
            Adapter::Relay(a) => a.on_server_message(ctx, message),
            Adapter::ToModern(a) => {
                a.on_server_message(ctx, message);
                None
            }
            Adapter::Probe(a) => a.on_server_message(ctx, message),
            Adapter::Bridge(a) => {
                a.on_server_message(ctx, message);
                None
            }
            Adapter::Passthrough(_) => {
                passthrough::on_server_message(ctx, message);
                None
            }
        };
        if let Some(next) = next {
            *self = next;
        }
    }

    /// The earliest time the adapter must be woken ([`Adapter::on_timer`]).
    pub fn next_deadline(&self, core: &Core<CallState>) -> Option<Instant> {
        match self {
            Adapter::Bridge(_) => bridge::next_park_expiry(core),
            _ => None,
        }
    }

    pub fn on_timer(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        if let Adapter::Bridge(_) = self {
            bridge::expire_parked(ctx, now);
        }
        time_out_calls(ctx, now);
    }
}

/// Calls whose server has not answered in time: the server is told to stop, the
/// client gets an error, and the session no longer counts them as busy.
fn time_out_calls(ctx: &mut Ctx<'_>, now: Instant) {
    for key in ctx.core.overdue(now) {
        let Some(pending) = ctx.core.get(&key) else {
            continue;
        };
        let client_id = pending.state.client_id(&key);
        let waited = humantime_secs(ctx.core.call_timeout());
        let why = format!(
            "the MCP server did not answer within {waited} (Lodge's request_timeout); the request was cancelled"
        );
        ctx.send_quietly(vec![cancelled(&key, "Lodge's request timeout")]);
        ctx.core.complete(
            &key,
            Some(super::core::Reply::error(
                &client_id,
                codes::REQUEST_TIMED_OUT,
                &why,
            )),
        );
        tracing::warn!(session = %ctx.env.session, call = %key, "request timed out");
    }
}

fn humantime_secs(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Closing a 2026-07-28 response stream cancels the call on it (unless the call is
/// parked, waiting for a retry on another stream): the server is told, and the call
/// is done.
fn cancel_on_stream(ctx: &mut Ctx<'_>, stream: u32) {
    let gone: Vec<Id> = ctx
        .core
        .calls()
        .filter(|(_, p)| p.stream == stream && !is_parked(&p.state))
        .map(|(id, _)| id.clone())
        .collect();
    for id in gone {
        let cancel = cancelled(&id, "the client closed the stream");
        ctx.send_quietly(vec![cancel]);
        ctx.core.complete(&id, None);
    }
}

fn is_parked(state: &CallState) -> bool {
    matches!(state, CallState::Bridged(call) if call.is_parked())
}

/// `notifications/cancelled` for a request Lodge sent the server.
fn cancelled(id: &Id, reason: &str) -> Bytes {
    let cancel = serde_json::json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": id_value(id), "reason": reason},
    });
    Bytes::from(cancel.to_string())
}

pub(super) fn id_value(id: &Id) -> Value {
    serde_json::from_str(id.as_json_text()).unwrap_or(Value::Null)
}

/// A server request that no bridged call can carry to a 2026-07-28 client: `ping`
/// is answered by Lodge; `roots/list` with the roots a client last gave in this
/// session (`known_roots`), else as a client without roots answers (-32601);
/// anything else is refused, since no client is there to ask.
fn answer_outside_call(
    ctx: &mut Ctx<'_>,
    server_id: &Id,
    method: &str,
    known_roots: Option<&Value>,
) {
    match (method, known_roots) {
        ("ping", _) => ctx.pong(server_id),
        ("roots/list", Some(roots)) => ctx.answer(server_id, roots),
        ("roots/list", None) => ctx.refuse(
            server_id,
            codes::METHOD_NOT_FOUND,
            "no client has given Lodge its roots in this session, and none is in a call to ask",
        ),
        _ => ctx.refuse(
            server_id,
            codes::INTERNAL_ERROR,
            "no client request is waiting for this input",
        ),
    }
}

#[cfg(test)]
mod bridge_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod to_modern_tests;
