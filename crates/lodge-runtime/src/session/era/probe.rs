//! 2026-07-28 client, server era not known yet: before the first request, Lodge
//! learns what the server speaks (by its policy: ask with `server/discover`, or
//! assume) and, for a legacy server, initializes it on the clients' behalf. The
//! outcome is the session's adapter for good: [`Bridge`] or [`Passthrough`].

use super::{Adapter, Bridge, Ctx, Passthrough, id_value, refuse_unbridged};
use crate::error::SessionError;
use crate::session::Protocol;
use bytes::Bytes;
use lodge_proto::modern::{CLIENT_CAPABILITIES_KEY, PROTOCOL_VERSION_KEY};
use lodge_proto::{Id, Kind, Message, version};
use serde_json::{Value, json};
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), SessionError>>;

#[derive(Default)]
pub(crate) struct Probe {
    /// Who waits for the outcome (concurrent first requests wait together).
    waiting: Vec<Waiter>,
    /// The first client's capabilities, the base of what `initialize` offers.
    capabilities: Value,
    /// The request Lodge is waiting on, and what it was.
    asked: Option<(Id, Asked)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Asked {
    Discover,
    Initialize,
}

impl Probe {
    /// Starts the probe (or joins the one under way). Returns the adapter when the
    /// policy decides at once.
    pub fn start(
        &mut self,
        ctx: &mut Ctx<'_>,
        capabilities: Value,
        policy: Protocol,
        reply: Waiter,
    ) -> Option<Adapter> {
        self.waiting.push(reply);
        if self.asked.is_some() {
            return None;
        }
        self.capabilities = capabilities;
        match policy {
            Protocol::Modern => return Some(self.decided(Adapter::Passthrough(Passthrough))),
            Protocol::Legacy => self.ask(ctx, Asked::Initialize),
            Protocol::Auto => self.ask(ctx, Asked::Discover),
        }
        None
    }

    fn ask(&mut self, ctx: &mut Ctx<'_>, what: Asked) {
        let id = ctx.core.mint_id();
        let (method, params) = match what {
            Asked::Discover => {
                let meta =
                    json!({PROTOCOL_VERSION_KEY: version::MODERN[0], CLIENT_CAPABILITIES_KEY: {}});
                ("server/discover", json!({ "_meta": meta }))
            }
            Asked::Initialize => ("initialize", self.initialize_params()),
        };
        let body =
            json!({"jsonrpc": "2.0", "id": id_value(&id), "method": method, "params": params});
        match ctx.out.send(vec![Bytes::from(body.to_string())]) {
            Ok(()) => self.asked = Some((id, what)),
            Err(e) => self.fail(e),
        }
    }

    /// One legacy session serves every 2026-07-28 request of this runtime session, and
    /// each may declare other capabilities: offer the server all Lodge can bridge, and
    /// refuse per call what that call's client did not declare.
    fn initialize_params(&self) -> Value {
        let mut capabilities = self.capabilities.clone();
        if !capabilities.is_object() {
            capabilities = json!({});
        }
        if let Some(caps) = capabilities.as_object_mut() {
            for (name, value) in [
                ("elicitation", json!({"form": {}, "url": {}})),
                ("sampling", json!({})),
                ("roots", json!({})),
            ] {
                caps.entry(name).or_insert(value);
            }
        }
        json!({
            "protocolVersion": version::LEGACY[version::LEGACY.len() - 1],
            "capabilities": capabilities,
            "clientInfo": {"name": "lodge", "version": env!("CARGO_PKG_VERSION")},
        })
    }

    /// Returns the adapter once the server's answers decide it.
    pub fn on_server_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Option<Adapter> {
        let id = match &message.kind {
            Kind::Response { id } => id,
            Kind::Request { id, method, .. } => {
                refuse_unbridged(ctx, id, method);
                return None;
            }
            Kind::Notification { .. } => return None,
        };
        let asked = match &self.asked {
            Some((asked_id, what)) if asked_id == id => *what,
            _ => return None,
        };
        self.asked = None;
        let response: Value = serde_json::from_slice(&message.bytes).unwrap_or(Value::Null);
        let result = response.get("result");
        match asked {
            Asked::Discover => {
                let modern = result
                    .and_then(|r| r.get("supportedVersions"))
                    .and_then(Value::as_array)
                    .is_some_and(|v| v.iter().any(|v| v.as_str().is_some_and(version::is_modern)));
                if modern {
                    return Some(self.decided(Adapter::Passthrough(Passthrough)));
                }
                self.ask(ctx, Asked::Initialize);
                None
            }
            Asked::Initialize => {
                let Some(result) = result else {
                    let why = response
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("no result");
                    self.fail(SessionError::Upstream(format!(
                        "the MCP server refused initialize: {why}"
                    )));
                    return None;
                };
                if let Some(v) = result.get("protocolVersion").and_then(Value::as_str) {
                    let _ = ctx.env.shared.protocol_version.set(v.to_string());
                }
                let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
                ctx.send_quietly(vec![Bytes::from_static(initialized.as_bytes())]);
                Some(self.decided(Adapter::Bridge(Bridge::new(result.clone()))))
            }
        }
    }

    fn decided(&mut self, adapter: Adapter) -> Adapter {
        for waiter in self.waiting.drain(..) {
            let _ = waiter.send(Ok(()));
        }
        adapter
    }

    fn fail(&mut self, error: SessionError) {
        for waiter in self.waiting.drain(..) {
            let _ = waiter.send(Err(error.clone()));
        }
    }
}
