//! One session: a handle the front uses, and the actor task that owns the state.

mod actor;
mod bridge;
mod modern;
mod streams;
mod to_modern;

pub(crate) use actor::Actor;
pub(crate) use modern::STATE_PREFIX;
pub use modern::{BridgeState, CallStream, ModernCall, Protocol, StateError};
pub use streams::{Event, EventId};

use crate::error::{EndReason, SessionError};
use lodge_proto::Message;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Events of one stream, in order. The stream is over when this yields `None`.
pub type EventStream = mpsc::Receiver<Event>;

pub(crate) enum Command {
    /// One or more client requests (several only for a 2025-03-26 batch) answered on one stream.
    Requests {
        messages: Vec<Message>,
        sse: bool,
        reply: oneshot::Sender<Result<EventStream, SessionError>>,
    },
    /// A client notification or a client's response to a server request.
    Deliver {
        message: Message,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// A GET: the standalone stream, or the resumption of a stream after `last_event_id`.
    Listen {
        last_event_id: Option<EventId>,
        reply: oneshot::Sender<Result<EventStream, SessionError>>,
    },
    Stop {
        reason: EndReason,
        done: oneshot::Sender<()>,
    },
    /// Before the first 2026-07-28 request: learn what the server speaks and, for a
    /// legacy server, initialize it on the client's behalf.
    PrepareModern {
        capabilities: serde_json::Value,
        policy: Protocol,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// A 2026-07-28 request, or the MRTR retry of one (`resume`: Lodge's opened state).
    Modern {
        call: Box<ModernCall>,
        resume: Option<modern::BridgeState>,
        reply: oneshot::Sender<Result<(u32, EventStream), SessionError>>,
    },
    /// The client closed a 2026-07-28 response stream: that cancels its request.
    Abandon { stream: u32 },
}

/// What the front may read about a session without asking its actor.
pub(crate) struct Shared {
    pub server: Arc<str>,
    pub created: Instant,
    /// Client requests awaiting their response.
    pub in_flight: AtomicUsize,
    /// The protocol version the server chose in its `initialize` result.
    pub protocol_version: OnceLock<String>,
    /// Started by a 2026-07-28 request (a runtime session) rather than `initialize`.
    pub modern: bool,
    /// A modern client came back with the session's `Lodge-Session-Id`.
    pub adopted: std::sync::atomic::AtomicBool,
    /// How 2026-07-28 clients reach this session's server.
    pub policy: Protocol,
}

/// A cheap, cloneable way to talk to a session's actor.
#[derive(Clone)]
pub struct SessionHandle {
    id: Arc<str>,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl SessionHandle {
    pub(crate) fn new(id: Arc<str>, commands: mpsc::Sender<Command>, shared: Arc<Shared>) -> Self {
        SessionHandle {
            id,
            commands,
            shared,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn server(&self) -> &str {
        &self.shared.server
    }

    pub fn created(&self) -> Instant {
        self.shared.created
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// The protocol version negotiated by `initialize`, once its result has passed.
    pub fn protocol_version(&self) -> Option<&str> {
        self.shared.protocol_version.get().map(String::as_str)
    }

    /// Sends client requests to the server; their responses (and whatever the server
    /// sends about them) arrive on the returned stream. `sse: false` means the client
    /// takes only the JSON response, so nothing else is routed to this stream.
    pub async fn requests(
        &self,
        messages: Vec<Message>,
        sse: bool,
    ) -> Result<EventStream, SessionError> {
        self.ask(|reply| Command::Requests {
            messages,
            sse,
            reply,
        })
        .await?
    }

    /// Sends a client notification or response to the server.
    pub async fn deliver(&self, message: Message) -> Result<(), SessionError> {
        self.ask(|reply| Command::Deliver { message, reply })
            .await?
    }

    /// Opens the standalone stream, or resumes a stream after `last_event_id`.
    pub async fn listen(
        &self,
        last_event_id: Option<EventId>,
    ) -> Result<EventStream, SessionError> {
        self.ask(|reply| Command::Listen {
            last_event_id,
            reply,
        })
        .await?
    }

    /// Whether a 2026-07-28 request started this session (it has no `Mcp-Session-Id` use).
    pub fn is_modern(&self) -> bool {
        self.shared.modern
    }

    /// Records that a modern client kept this session's id: it gets the full idle timeout.
    pub fn adopt(&self) {
        self.shared.adopted.store(true, Ordering::Relaxed);
    }

    pub(crate) async fn prepare_modern(
        &self,
        capabilities: serde_json::Value,
        policy: Protocol,
    ) -> Result<(), SessionError> {
        self.ask(|reply| Command::PrepareModern {
            capabilities,
            policy,
            reply,
        })
        .await?
    }

    /// Sends a 2026-07-28 request. Closing the returned stream before its response
    /// cancels the request, as the transport says.
    pub async fn modern(
        &self,
        call: ModernCall,
        resume: Option<modern::BridgeState>,
    ) -> Result<CallStream, SessionError> {
        let events = self
            .ask(|reply| Command::Modern {
                call: Box::new(call),
                resume,
                reply,
            })
            .await??;
        Ok(CallStream::new(events, self.commands.clone()))
    }

    /// Ends the session and waits until its sandbox is gone.
    pub async fn stop(&self, reason: EndReason) {
        // An error means the actor already ended, which is what we want.
        let _ = self.ask(|done| Command::Stop { reason, done }).await;
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| SessionError::Gone)?;
        rx.await.map_err(|_| SessionError::Gone)
    }
}
