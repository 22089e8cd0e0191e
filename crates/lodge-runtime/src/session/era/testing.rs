//! A session without I/O for the adapters' unit tests: a core, an adapter, and a
//! recorder in place of the server's link.
#![allow(clippy::unwrap_used)]

use super::{Adapter, Bridge, CallState, Ctx, Env, Passthrough};
use crate::error::SessionError;
use crate::session::budget::Budget;
use crate::session::core::{Core, ToServer};
use crate::session::request_state::{BridgeState, StateCodec};
use crate::session::{EventStream, ModernCall, Protocol, Shared};
use bytes::Bytes;
use lodge_proto::modern::{CLIENT_CAPABILITIES_KEY, MirroredHeaders, PROTOCOL_VERSION_KEY};
use lodge_proto::seal::KeyRing;
use lodge_proto::{Id, Message, version};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"t","version":"1"}}}"#;

/// Stands in for the server's link: records what Lodge sends, and the 2026-07-28
/// server's input requests it was told of (key, method); `busy` refuses sending.
#[derive(Default)]
pub struct Recorder {
    sent: Vec<Bytes>,
    pub asked: Vec<(String, String)>,
    pub busy: bool,
}

impl ToServer for Recorder {
    fn send(&mut self, messages: Vec<Bytes>) -> Result<(), SessionError> {
        if self.busy {
            return Err(SessionError::ServerBusy);
        }
        self.sent.extend(messages);
        Ok(())
    }

    fn server_asks(&mut self, key: &str, method: &str) {
        self.asked.push((key.into(), method.into()));
    }
}

pub struct Session {
    pub core: Core<CallState>,
    pub adapter: Adapter,
    pub out: Recorder,
    pub env: Env,
}

pub fn id(text: &str) -> Id {
    Id::from_json_text(text)
}

fn message(text: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(text.as_bytes())).unwrap()
}

/// A 2026-07-28 request as a client sends it, declaring `capabilities`.
pub fn modern_request(id: u64, method: &str, params: Value, capabilities: Value) -> String {
    let mut params = params;
    params["_meta"] = json!({
        PROTOCOL_VERSION_KEY: version::MODERN[0],
        CLIENT_CAPABILITIES_KEY: capabilities,
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// The events waiting on a stream as their data (responses marked with a trailing
/// `!`, priming events skipped), and whether the stream has ended.
pub fn drain(rx: &mut EventStream) -> (Vec<String>, bool) {
    use tokio::sync::mpsc::error::TryRecvError;
    let mut out = vec![];
    loop {
        match rx.try_recv() {
            Ok(e) if e.data.is_empty() => {}
            Ok(e) => out.push(format!(
                "{}{}",
                String::from_utf8_lossy(&e.data),
                if e.is_response { "!" } else { "" }
            )),
            Err(TryRecvError::Empty) => return (out, false),
            Err(TryRecvError::Disconnected) => return (out, true),
        }
    }
}

/// The one event waiting on a stream, parsed.
pub fn only_json(rx: &mut EventStream) -> Value {
    let (events, _) = drain(rx);
    assert_eq!(events.len(), 1, "expected one event, got {events:?}");
    serde_json::from_str(events[0].trim_end_matches('!')).unwrap()
}

impl Session {
    fn with(modern: bool, adapter: Adapter) -> Session {
        let shared = Arc::new(Shared::new(
            "test".into(),
            modern,
            Default::default(),
            crate::Principal::anonymous(),
        ));
        Session {
            core: Core::new(
                8,
                Duration::from_secs(300),
                Budget::unlimited(),
                Instant::now(),
            ),
            adapter,
            out: Recorder::default(),
            env: Env {
                session: crate::SessionId::new(lodge_cluster::TokenCodec::single().mint(
                    [0; 16],
                    [0; 16],
                    std::time::SystemTime::now(),
                )),
                shared,
                codec: Arc::new(StateCodec::new(KeyRing::random())),
                request_state_ttl: Duration::from_secs(60),
            },
        }
    }

    pub fn legacy(policy: Protocol) -> Session {
        Session::with(false, Adapter::new(false, policy))
    }

    /// A runtime session whose server's era is not known yet.
    pub fn probing() -> Session {
        Session::with(true, Adapter::new(true, Protocol::Auto))
    }

    pub fn modern_passthrough() -> Session {
        Session::with(true, Adapter::Passthrough(Passthrough))
    }

    /// A runtime session bridged to a legacy server that answered `initialize` so.
    pub fn bridged(init: Value) -> Session {
        Session::with(true, Adapter::Bridge(Bridge::new(init)))
    }

    /// What Lodge sent the server since the last call, as text.
    pub fn sent(&mut self) -> Vec<String> {
        self.out
            .sent
            .drain(..)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// What Lodge sent the server since the last call, parsed.
    pub fn sent_json(&mut self) -> Vec<Value> {
        self.sent()
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect()
    }

    pub fn requests(&mut self, texts: &[&str], sse: bool) -> Result<EventStream, SessionError> {
        let messages = texts.iter().map(|t| message(t)).collect();
        let mut ctx = Ctx {
            core: &mut self.core,
            out: &mut self.out,
            env: &self.env,
        };
        self.adapter.requests(&mut ctx, messages, sse)
    }

    pub fn deliver(&mut self, text: &str) -> Result<(), SessionError> {
        let mut ctx = Ctx {
            core: &mut self.core,
            out: &mut self.out,
            env: &self.env,
        };
        self.adapter.deliver(&mut ctx, message(text))
    }

    pub fn listen(&mut self) -> Result<EventStream, SessionError> {
        let mut ctx = Ctx {
            core: &mut self.core,
            out: &mut self.out,
            env: &self.env,
        };
        self.adapter.listen(&mut ctx, None)
    }

    /// What the server sends.
    pub fn server(&mut self, text: &str) {
        let mut ctx = Ctx {
            core: &mut self.core,
            out: &mut self.out,
            env: &self.env,
        };
        self.adapter.on_server_message(&mut ctx, message(text));
    }

    pub fn prepare(&mut self, policy: Protocol) -> oneshot::Receiver<Result<(), SessionError>> {
        self.prepare_with(policy, json!({"elicitation": {}}))
    }

    /// Before the first 2026-07-28 request, whose client declared `capabilities`.
    pub fn prepare_with(
        &mut self,
        policy: Protocol,
        capabilities: Value,
    ) -> oneshot::Receiver<Result<(), SessionError>> {
        let (tx, rx) = oneshot::channel();
        let mut ctx = Ctx {
            core: &mut self.core,
            out: &mut self.out,
            env: &self.env,
        };
        self.adapter.prepare(&mut ctx, capabilities, policy, tx);
        rx
    }

    fn call(text: &str, principal: &str) -> ModernCall {
        let message = message(text);
        let value: Value = serde_json::from_str(text).unwrap();
        let name = value
            .pointer("/params/name")
            .or_else(|| value.pointer("/params/uri"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let headers = MirroredHeaders {
            protocol_version: message.meta_protocol_version(),
            method: message.method(),
            name: name.as_deref(),
        };
        let request = lodge_proto::modern::validate(&message, headers).unwrap();
        let mut call = ModernCall::new(message, request);
        call.principal = crate::Principal::new("", principal);
        call
    }

    /// A 2026-07-28 request; if it carries a Lodge `requestState`, as its retry.
    pub fn modern(&mut self, text: &str) -> Result<EventStream, SessionError> {
        self.modern_as(text, "")
    }

    pub fn modern_as(&mut self, text: &str, principal: &str) -> Result<EventStream, SessionError> {
        let call = Session::call(text, principal);
        let resume: Option<BridgeState> = match &call.request.request_state {
            Some(token) => self
                .env
                .codec
                .open(token)
                .map_err(|e| SessionError::StaleState(e.to_string()))?,
            None => None,
        };
        let mut ctx = Ctx {
            core: &mut self.core,
            out: &mut self.out,
            env: &self.env,
        };
        self.adapter
            .modern(&mut ctx, call, resume)
            .map(|(_, rx)| rx)
    }

    pub fn abandon(&mut self, stream: u32) {
        let mut ctx = Ctx {
            core: &mut self.core,
            out: &mut self.out,
            env: &self.env,
        };
        self.adapter.abandon(&mut ctx, stream);
    }

    pub fn tick(&mut self) {
        let mut ctx = Ctx {
            core: &mut self.core,
            out: &mut self.out,
            env: &self.env,
        };
        self.adapter.on_timer(&mut ctx, Instant::now());
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.adapter.next_deadline(&self.core)
    }

    pub fn era(&self) -> &'static str {
        match self.adapter {
            Adapter::Relay(_) => "relay",
            Adapter::ToModern(_) => "to_modern",
            Adapter::Probe(_) => "probe",
            Adapter::Bridge(_) => "bridge",
            Adapter::Passthrough(_) => "passthrough",
        }
    }
}
