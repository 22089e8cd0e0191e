//! One session: a handle the front uses, and the actor task that owns the state.
//!
//! Layers, each depending only on those below it:
//! - `actor`: the I/O shell (select loop, timers, the link to the server, the drop
//!   guard that frees the session's slot however the actor ends);
//! - `era`: one adapter per pairing of client era and server era;
//! - `core`: the pending calls, routing rules, held messages and idle accounting,
//!   without I/O;
//! - `streams`: numbered event streams with replay buffers.

mod activity;
mod actor;
mod budget;
mod core;
mod era;
mod hosting;
mod request_state;
mod streams;

pub use activity::{Direction, ProtocolEvent, WaitingOn};
pub(crate) use actor::{Actor, Parts, Slot};
pub use budget::{BudgetLimits, Charge, OverBudget};
pub(crate) use hosting::ServerHosting;
pub use hosting::{Hosting, HostingKind};
pub use request_state::{BridgeState, StateCodec, StateError};
pub use streams::{Event, EventId};

use crate::error::{EndReason, SessionError};
use crate::session_id::SessionId;
use lodge_proto::Message;
use lodge_proto::modern::ModernRequest;
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Events of one stream, in order. The stream is over when this yields `None`.
pub type EventStream = mpsc::Receiver<Event>;

pub(crate) enum Command {
    /// One or more client requests (several only for a 2025-03-26 batch) answered on one stream.
    Requests {
        messages: Vec<Message>,
        sse: bool,
        trace: Trace,
        reply: oneshot::Sender<Result<EventStream, SessionError>>,
    },
    /// A client notification or a client's response to a server request.
    Deliver {
        message: Message,
        trace: Trace,
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
    Prepare {
        capabilities: serde_json::Value,
        policy: Protocol,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// A 2026-07-28 request, or the MRTR retry of one (`resume`: Lodge's opened state).
    Modern {
        call: Box<ModernCall>,
        resume: Option<BridgeState>,
        trace: Trace,
        reply: oneshot::Sender<Result<(u32, EventStream), SessionError>>,
    },
    /// The client closed a 2026-07-28 response stream: that cancels its request.
    Abandon { stream: u32 },
    /// What the session is doing, for operators.
    Describe {
        reply: oneshot::Sender<SessionReport>,
    },
    /// Makes the actor panic: proves its drop guard frees the session.
    #[cfg(test)]
    Panic,
}

/// Which era a hosted server is spoken to in, for 2026-07-28 clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Ask the server: `initialize` first, since the first request fixes a dual-era
    /// server's era; a server that accepts it runs a legacy session (2026-07-28
    /// clients bridged over MRTR), and one that refuses it but answers
    /// `server/discover` with 2026-07-28 is passed through.
    #[default]
    Auto,
    /// Always a legacy session: 2026-07-28 clients are bridged.
    Legacy,
    /// Always 2026-07-28: for servers whose tools are written for MRTR; Lodge
    /// speaks 2026-07-28 for legacy clients.
    Modern,
}

/// A 2026-07-28 request as the front validated it, and who sent it.
pub struct ModernCall {
    pub message: Message,
    pub request: ModernRequest,
    /// Who sent it (anonymous without authentication): a `requestState` Lodge
    /// sealed for one principal opens only for the same one.
    pub principal: crate::Principal,
}

impl ModernCall {
    pub fn new(message: Message, request: ModernRequest) -> Self {
        ModernCall {
            message,
            request,
            principal: crate::Principal::anonymous(),
        }
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
    fn new((stream, events): (u32, EventStream), commands: mpsc::Sender<Command>) -> Self {
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

/// What the front may read about a session without asking its actor.
pub(crate) struct Shared {
    pub server: Arc<str>,
    pub created: Instant,
    /// `created` on the wall clock, for operators.
    pub created_at: SystemTime,
    /// Client requests awaiting their response.
    pub in_flight: AtomicUsize,
    /// The protocol version the server chose in its `initialize` result.
    pub protocol_version: OnceLock<String>,
    /// Started by a 2026-07-28 request (a runtime session) rather than `initialize`.
    pub modern: bool,
    /// A modern client came back with the session's `Lodge-Session-Id`.
    pub adopted: std::sync::atomic::AtomicBool,
    /// How the server is spoken to, once its answers (or its policy) decided it.
    pub hosting: OnceLock<Hosting>,
    /// What this server's sessions learned before (to log each way once).
    pub server_hosting: ServerHosting,
    /// Who created the session: nobody else may use it.
    pub owner: crate::Principal,
}

impl Shared {
    pub fn new(
        server: Arc<str>,
        modern: bool,
        server_hosting: ServerHosting,
        owner: crate::Principal,
    ) -> Self {
        Shared {
            server,
            created: Instant::now(),
            created_at: SystemTime::now(),
            in_flight: AtomicUsize::new(0),
            protocol_version: OnceLock::new(),
            modern,
            adopted: std::sync::atomic::AtomicBool::new(false),
            hosting: OnceLock::new(),
            server_hosting,
            owner,
        }
    }

    /// Records how the session's server is hosted (the first decision stands).
    pub fn decided(&self, hosting: Hosting) {
        if self.hosting.get().is_some() {
            return;
        }
        tracing::debug!(server = %self.server, "session hosted as: {hosting}");
        self.server_hosting.learned(&self.server, &hosting);
        let _ = self.hosting.set(hosting);
    }
}

/// Where a session is in its life, for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Its server has not yet said how it is spoken to (before `initialize` is answered).
    Starting,
    Idle,
    /// Calls in flight.
    Busy,
    /// Calls in flight, and the server waits on the client's user or model.
    Waiting,
    /// Stopping: its actor no longer answers.
    Ending,
}

/// What a session's actor reports of it.
#[derive(Clone, Debug)]
pub struct SessionReport {
    pub state: SessionState,
    pub in_flight: usize,
    pub waiting_on: Option<WaitingOn>,
    pub last_activity_at: SystemTime,
    /// When it ends if nothing happens before (none while calls are in flight).
    pub idle_deadline: Option<SystemTime>,
    pub lifetime_deadline: SystemTime,
    /// `None` for a view over another session (`continuity = "principal"`).
    pub pid: Option<u32>,
    pub usage: Option<lodge_sandbox::UsageProbe>,
    /// The server's last stderr lines, oldest first.
    pub stderr_tail: Vec<String>,
    /// Lines the server wrote on stdout that were not JSON-RPC (skipped).
    pub stdout_lines_skipped: u32,
    /// The last protocol events, oldest first.
    pub events: Vec<ProtocolEvent>,
}

/// The W3C `traceparent` Lodge passes on with what a request makes it send the server
/// (to an HTTP-transport server, as a header).
pub(crate) type Trace = Option<Arc<str>>;

/// A cheap, cloneable way to talk to a session's actor.
#[derive(Clone)]
pub struct SessionHandle {
    id: SessionId,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    trace: Trace,
}

impl SessionHandle {
    pub(crate) fn new(id: SessionId, commands: mpsc::Sender<Command>, shared: Arc<Shared>) -> Self {
        SessionHandle {
            id,
            commands,
            shared,
            trace: None,
        }
    }

    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// This handle's requests continue the client's trace: what they make Lodge send
    /// an HTTP-transport server carries `traceparent` (a valid W3C one, with Lodge's
    /// own parent id; anything else is dropped).
    pub fn traced(mut self, traceparent: Option<&str>) -> Self {
        self.trace = traceparent.and_then(crate::trace::continued).map(Arc::from);
        self
    }

    pub fn server(&self) -> &str {
        &self.shared.server
    }

    /// Who created the session (anonymous without authentication).
    pub fn owner(&self) -> &crate::Principal {
        &self.shared.owner
    }

    pub fn created(&self) -> Instant {
        self.shared.created
    }

    pub fn created_at(&self) -> SystemTime {
        self.shared.created_at
    }

    /// What the session is doing now; `None` once its actor no longer answers (it is
    /// ending).
    pub async fn describe(&self) -> Option<SessionReport> {
        self.ask(|reply| Command::Describe { reply }).await.ok()
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// The protocol version negotiated by `initialize`, once its result has passed.
    pub fn protocol_version(&self) -> Option<&str> {
        self.shared.protocol_version.get().map(String::as_str)
    }

    /// How the session's server is spoken to, once decided: for a 2026-07-28
    /// session when its first request is admitted, for a legacy one when the
    /// server answers `initialize`.
    pub fn hosting(&self) -> Option<&Hosting> {
        self.shared.hosting.get()
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
            trace: self.trace.clone(),
            reply,
        })
        .await?
    }

    /// Sends a client notification or response to the server.
    pub async fn deliver(&self, message: Message) -> Result<(), SessionError> {
        self.ask(|reply| Command::Deliver {
            message,
            trace: self.trace.clone(),
            reply,
        })
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
        self.ask(|reply| Command::Prepare {
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
        resume: Option<BridgeState>,
    ) -> Result<CallStream, SessionError> {
        let events = self
            .ask(|reply| Command::Modern {
                call: Box::new(call),
                resume,
                trace: self.trace.clone(),
                reply,
            })
            .await??;
        Ok(CallStream::new(events, self.commands.clone()))
    }

    /// Resolves once the session's actor has ended (at once if it has).
    pub(crate) async fn ended(&self) {
        self.commands.closed().await;
    }

    /// Ends the session and waits until its sandbox is gone.
    pub async fn stop(&self, reason: EndReason) {
        // An error means the actor already ended, which is what we want.
        let _ = self.ask(|done| Command::Stop { reason, done }).await;
    }

    #[cfg(test)]
    pub(crate) async fn panic(&self) {
        let _ = self.commands.send(Command::Panic).await;
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
