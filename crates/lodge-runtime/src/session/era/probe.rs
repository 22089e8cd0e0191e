//! 2026-07-28 client, server era not known yet: before the first request, Lodge
//! learns what the server speaks (by its policy: ask, or assume) and, for a legacy
//! server, initializes it on the clients' behalf. The outcome is the session's
//! adapter for good: [`Bridge`] or [`Passthrough`].
//!
//! Asking, `initialize` goes first. The first request fixes a dual-era server's era
//! (the Python SDK and FastMCP refuse `initialize` after `server/discover`), and a
//! legacy session is what keeps their elicitation and sampling working: Lodge gives
//! each session its own server process, so it loses nothing by holding one. A
//! server that refuses `initialize` is stateless, so asking it `server/discover`
//! next still finds it usable; only then is it passed through.

use super::{Adapter, Bridge, Ctx, Passthrough, answer_outside_call, id_value};
use crate::error::SessionError;
use crate::session::{Hosting, HostingKind, Protocol};
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
    policy: Protocol,
    /// Why the server refused `initialize`, while Lodge asks `server/discover`.
    refused: Option<String>,
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
        self.policy = policy;
        if policy == Protocol::Modern {
            let hosting = Hosting::new(HostingKind::Passthrough, "protocol = \"modern\"");
            return Some(self.decided(ctx, Adapter::Passthrough(Passthrough), hosting));
        }
        self.ask(ctx, Asked::Initialize);
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
    /// each may declare other capabilities. Elicitation and sampling are asked during
    /// a call, which Lodge can bridge for any call whose client declares them (and
    /// refuses for one that does not): always offered. Roots are asked outside calls
    /// too (at startup, say), which Lodge can answer only from roots a client gave:
    /// offered only when the first client declared them.
    fn initialize_params(&self) -> Value {
        let mut capabilities = self.capabilities.clone();
        if !capabilities.is_object() {
            capabilities = json!({});
        }
        if let Some(caps) = capabilities.as_object_mut() {
            for (name, value) in [
                ("elicitation", json!({"form": {}, "url": {}})),
                ("sampling", json!({})),
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
                answer_outside_call(ctx, id, method, None);
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
        match asked {
            Asked::Initialize => self.on_initialize(ctx, &response),
            Asked::Discover => self.on_discover(ctx, &response),
        }
    }

    fn on_initialize(&mut self, ctx: &mut Ctx<'_>, response: &Value) -> Option<Adapter> {
        let Some(result) = response.get("result") else {
            let why = error_message(response);
            if self.policy == Protocol::Auto {
                // Perhaps a 2026-07-28-only server: ask it what it speaks.
                self.refused = Some(why);
                self.ask(ctx, Asked::Discover);
            } else {
                self.fail(SessionError::Upstream(format!(
                    "the MCP server refused initialize: {why}"
                )));
            }
            return None;
        };
        let version = result.get("protocolVersion").and_then(Value::as_str);
        if let Some(v) = version {
            let _ = ctx.env.shared.protocol_version.set(v.to_string());
        }
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        ctx.send_quietly(vec![Bytes::from_static(initialized.as_bytes())]);
        let why = match self.policy {
            Protocol::Legacy => "protocol = \"legacy\"".to_string(),
            _ => format!(
                "the server accepted initialize, version {}",
                version.unwrap_or("unknown")
            ),
        };
        let hosting = Hosting::new(HostingKind::Bridged, why);
        Some(self.decided(ctx, Adapter::Bridge(Bridge::new(result.clone())), hosting))
    }

    fn on_discover(&mut self, ctx: &mut Ctx<'_>, response: &Value) -> Option<Adapter> {
        let refused = self.refused.take().unwrap_or_default();
        let modern = response
            .pointer("/result/supportedVersions")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|v| v.as_str().is_some_and(version::is_modern)));
        if modern {
            let why = format!(
                "the server refused initialize ({refused}) and speaks 2026-07-28 by server/discover"
            );
            let hosting = Hosting::new(HostingKind::Passthrough, why);
            return Some(self.decided(ctx, Adapter::Passthrough(Passthrough), hosting));
        }
        let discover = match response.get("result") {
            Some(_) => "names no 2026-07-28 version".to_string(),
            None => error_message(response),
        };
        self.fail(SessionError::Upstream(format!(
            "the MCP server refused initialize ({refused}), and its server/discover answer: {discover}"
        )));
        None
    }

    fn decided(&mut self, ctx: &mut Ctx<'_>, adapter: Adapter, hosting: Hosting) -> Adapter {
        ctx.env.shared.decided(hosting);
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

/// The server's error message, cut short: it goes into logs, `lodge check` and the
/// client's error, and the server chose its length.
fn error_message(response: &Value) -> String {
    const MAX_CHARS: usize = 200;
    let message = response
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("no result");
    match message.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_string(),
    }
}
