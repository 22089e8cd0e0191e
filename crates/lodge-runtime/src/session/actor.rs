//! The session actor: one task that owns a session's routing state, so no locks.
//!
//! It relays client messages to the server as their original bytes and routes what
//! the server sends back to the right stream (DESIGN.md §2, "Session actor and routing").

use super::modern::{Internal, Listener, ModernPending, Preparing, Protocol, Upstream};
use super::streams::{STANDALONE, Streams};
use super::to_modern::{LegacyClient, ToModern};
use super::{Command, EventStream, Shared};
use crate::error::{EndReason, SessionError};
use crate::registry::Runtime;
use crate::upstream::{FromServer, Link};
use bytes::Bytes;
use lodge_proto::{Id, Kind, Message, codes, error_body};
use lodge_sandbox::SandboxProcess;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

/// How long to wait for a server's exit status once its stdout has closed.
const EXIT_STATUS_WAIT: Duration = Duration::from_secs(1);

pub(super) struct Pending {
    pub stream: u32,
    pub progress_token: Option<Id>,
    pub initialize: bool,
    /// Set for 2026-07-28 requests, whose ids Lodge rewrites.
    pub modern: Option<Box<ModernPending>>,
    /// Set for a legacy client's request to a 2026-07-28-only server.
    pub to_modern: Option<Box<ToModern>>,
}

/// A server message that no stream could take yet.
struct Held {
    bytes: Bytes,
    /// A server request or log message (may go to a request stream), or another notification.
    server_initiated: bool,
    request_id: Option<Id>,
}

pub(crate) struct Actor {
    pub id: Arc<str>,
    pub runtime: Arc<Runtime>,
    pub shared: Arc<Shared>,
    pub commands: mpsc::Receiver<Command>,
    pub link: Link,
    pub process: SandboxProcess,
    pub streams: Streams,
    pub(super) pending: HashMap<Id, Pending>,
    pub(super) progress: HashMap<Id, u32>,
    server_requests: HashMap<Id, u32>,
    held: VecDeque<Held>,
    /// What the server speaks, once known (legacy sessions: always legacy).
    pub(super) upstream: Option<Upstream>,
    /// Requests Lodge itself sent to the server, by their `lodge:` id.
    pub(super) internal: HashMap<Id, Internal>,
    /// The server's `initialize` result, when Lodge initialized it for modern clients.
    pub(super) init_result: Option<serde_json::Value>,
    /// 2026-07-28 `subscriptions/listen` streams Lodge serves itself (legacy server).
    pub(super) listeners: Vec<Listener>,
    pub(super) next_upstream_id: u64,
    pub(super) preparing: Option<Preparing>,
    /// A legacy client's declarations, for speaking to a modern server for it.
    pub(super) legacy_client: Option<LegacyClient>,
    /// Requests Lodge pushed to a legacy client for a modern server's MRTR round:
    /// push id → (the call's retry id, the input key).
    pub(super) pushed: HashMap<Id, (Id, String)>,
    /// When the last client request finished; `None` while any is in flight.
    idle_since: Option<Instant>,
    /// For a sandbox from a warm pool: tells the pool's refill when the server first answers.
    pub on_first_answer: Option<Arc<tokio::sync::Notify>>,
    lifetime_end: Instant,
}

impl Actor {
    pub fn new(
        id: Arc<str>,
        runtime: Arc<Runtime>,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        link: Link,
        process: SandboxProcess,
    ) -> Self {
        let config = runtime.config();
        let now = shared.created;
        Actor {
            streams: Streams::new(config.event_buffer),
            lifetime_end: now + config.max_lifetime,
            idle_since: Some(now),
            id,
            runtime,
            shared,
            commands,
            link,
            process,
            pending: HashMap::new(),
            progress: HashMap::new(),
            server_requests: HashMap::new(),
            held: VecDeque::new(),
            upstream: None,
            internal: HashMap::new(),
            init_result: None,
            listeners: Vec::new(),
            next_upstream_id: 0,
            preparing: None,
            legacy_client: None,
            pushed: HashMap::new(),
            on_first_answer: None,
        }
    }

    pub async fn run(mut self) {
        let (reason, done) = self.serve().await;
        self.finish(reason).await;
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// Relays until the session must end; says why.
    async fn serve(&mut self) -> (EndReason, Option<oneshot::Sender<()>>) {
        let timer = sleep_until(self.deadline());
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                event = self.link.next() => match event {
                    FromServer::Message(msg) => {
                        if let Some(settled) = self.on_first_answer.take() {
                            settled.notify_one();
                        }
                        self.on_server_message(msg);
                    }
                    FromServer::Closed(why) => return (self.server_exit_reason(why).await, None),
                },
                command = self.commands.recv() => match command {
                    Some(command) => {
                        if let Err((reason, done)) = self.on_command(command) {
                            return (reason, Some(done));
                        }
                    }
                    None => return (EndReason::ShuttingDown, None),
                },
                () = &mut timer => {
                    let now = Instant::now();
                    self.expire_parked(now);
                    let config = self.runtime.config();
                    if now >= self.lifetime_end {
                        return (EndReason::MaxLifetime(config.max_lifetime), None);
                    }
                    let idle = self.idle_timeout();
                    if self.idle_since.is_some_and(|t| now >= t + idle) {
                        return (EndReason::IdleTimeout(idle), None);
                    }
                }
            }
            let deadline = self.deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
        }
    }

    fn deadline(&self) -> Instant {
        let end = match self.idle_since {
            Some(t) => self.lifetime_end.min(t + self.idle_timeout()),
            None => self.lifetime_end,
        };
        self.next_park_expiry().map_or(end, |t| end.min(t))
    }

    /// A runtime session a modern client never came back to (it did not keep its
    /// `Lodge-Session-Id`) is cheap to lose: it gets a short idle timeout.
    fn idle_timeout(&self) -> Duration {
        let configured = self.runtime.config().idle_timeout;
        if !self.shared.modern || self.shared.adopted.load(Ordering::Relaxed) {
            configured
        } else {
            configured.min(super::modern::UNADOPTED_IDLE_TIMEOUT)
        }
    }

    pub(super) fn update_in_flight(&mut self) {
        // An open `subscriptions/listen` stream is not activity, like a GET stream.
        let busy = self
            .pending
            .values()
            .filter(|p| !p.modern.as_ref().is_some_and(|m| m.listen))
            .count();
        self.shared.in_flight.store(busy, Ordering::Relaxed);
        self.idle_since = match (busy == 0, self.idle_since) {
            (false, _) => None,
            (true, None) => Some(Instant::now()),
            (true, since) => since,
        };
    }

    /// Handles one command; `Err` carries a stop request out to `serve`.
    fn on_command(&mut self, command: Command) -> Result<(), (EndReason, oneshot::Sender<()>)> {
        match command {
            Command::Requests {
                messages,
                sse,
                reply,
            } => {
                let _ = reply.send(self.start_requests(messages, sse));
            }
            Command::Deliver { message, reply } => {
                let _ = reply.send(self.deliver(message));
            }
            Command::Listen {
                last_event_id,
                reply,
            } => {
                let result = match last_event_id {
                    Some(after) => self
                        .streams
                        .attach(after.stream, Some(after.seq))
                        .ok_or_else(|| SessionError::UnknownEvent(after.to_string())),
                    None => self
                        .streams
                        .attach(STANDALONE, None)
                        .ok_or_else(|| SessionError::UnknownEvent(String::new())),
                };
                if result.is_ok() && self.streams.standalone_attached() {
                    self.release_held(true);
                }
                let _ = reply.send(result);
            }
            Command::PrepareModern {
                capabilities,
                policy,
                reply,
            } => self.prepare_modern(capabilities, policy, reply),
            Command::Modern {
                call,
                resume,
                reply,
            } => {
                let _ = reply.send(self.start_modern(*call, resume));
            }
            Command::Abandon { stream } => self.abandon(stream),
            Command::Stop { reason, done } => return Err((reason, done)),
        }
        Ok(())
    }

    fn start_requests(
        &mut self,
        messages: Vec<Message>,
        sse: bool,
    ) -> Result<EventStream, SessionError> {
        if self.runtime.is_draining() {
            return Err(SessionError::ShuttingDown);
        }
        if let Some(id) = messages
            .iter()
            .filter_map(Message::request_id)
            .find(|id| self.pending.contains_key(*id))
        {
            return Err(SessionError::DuplicateRequestId(id.clone()));
        }
        for message in &messages {
            if message.method() == Some("initialize") {
                self.remember_legacy_client(message);
            }
        }
        let upstream: Vec<Option<Bytes>> = messages
            .iter()
            .map(|m| self.legacy_upstream_bytes(m))
            .collect();
        self.forward(upstream.iter().flatten().cloned().collect())?;
        let (stream, rx) = self.streams.open(sse, messages.len());
        let mut local = Vec::new();
        for (message, sent) in messages.into_iter().zip(upstream) {
            let to_modern = self.to_modern_for(&message);
            if sent.is_none() {
                local.push(message.clone());
            }
            if let Kind::Request {
                id,
                method,
                progress_token,
            } = message.kind
            {
                if let Some(token) = &progress_token {
                    self.progress.insert(token.clone(), stream);
                }
                let initialize = &*method == "initialize";
                self.pending.insert(
                    id,
                    Pending {
                        stream,
                        progress_token,
                        initialize,
                        modern: None,
                        to_modern,
                    },
                );
            }
        }
        self.update_in_flight();
        for message in local {
            self.answer_locally(&message);
        }
        if sse && !self.streams.standalone_attached() {
            self.release_held(false);
        }
        Ok(rx)
    }

    fn deliver(&mut self, message: Message) -> Result<(), SessionError> {
        let answered_push = match &message.kind {
            Kind::Response { id } => self.take_pushed_answer(id, &message.bytes),
            _ => false,
        };
        if !answered_push && let Some(bytes) = self.legacy_upstream_bytes(&message) {
            self.forward(vec![bytes])?;
        }
        match &message.kind {
            Kind::Response { id } => {
                self.server_requests.remove(id);
            }
            Kind::Notification {
                method,
                cancelled_id: Some(id),
                ..
            } if &**method == "notifications/cancelled" => {
                // The client gave up on this request: its stream ends now, and a late
                // response from the server is dropped (the spec tells clients to ignore it).
                if let Some(pending) = self.pending.remove(id) {
                    self.forget(&pending);
                    self.streams.settle(pending.stream);
                }
            }
            _ => {}
        }
        if self.shared.in_flight.load(Ordering::Relaxed) == 0 {
            self.idle_since = Some(Instant::now());
        }
        self.update_in_flight();
        Ok(())
    }

    /// Queues messages for the server, all or none.
    pub(super) fn forward(&mut self, messages: Vec<Bytes>) -> Result<(), SessionError> {
        self.link.send(messages)
    }

    pub(super) fn forget(&mut self, pending: &Pending) {
        if let Some(token) = &pending.progress_token {
            self.progress.remove(token);
        }
    }

    fn on_server_message(&mut self, msg: Message) {
        match &msg.kind {
            Kind::Response { id } => match self.pending.remove(id) {
                Some(pending) if pending.to_modern.is_some() => {
                    self.relay_modern_server_response(pending, &msg.bytes);
                }
                Some(pending) if pending.initialize && self.falls_back_to_discover(&msg.bytes) => {
                    // A 2026-07-28-only server refused the legacy handshake: answer
                    // the client from server/discover instead.
                    let client = id.clone();
                    self.pending.insert(client.clone(), pending);
                    self.initialize_via_discover(client);
                }
                Some(pending) => {
                    if pending.initialize {
                        self.record_protocol_version(&msg.bytes);
                    }
                    self.forget(&pending);
                    let bytes = match &pending.modern {
                        Some(modern) => self.modern_response(modern, &msg.bytes),
                        None => msg.bytes,
                    };
                    self.streams.emit(pending.stream, bytes, true);
                    self.streams.settle(pending.stream);
                    self.update_in_flight();
                }
                None if id.is_lodge_owned() => self.on_internal_response(id, &msg.bytes),
                None => {
                    tracing::debug!(session = %self.id, %id, "late response to a cancelled request dropped")
                }
            },
            Kind::Request { id, method, .. } => {
                let id = id.clone();
                if !self.bridge_server_request(&id, method, &msg.bytes) {
                    self.route_server_initiated(msg.bytes, Some(id));
                }
            }
            Kind::Notification {
                subscription_id: Some(subscription),
                ..
            } if self.upstream == Some(Upstream::Modern) => {
                let subscription = subscription.clone();
                self.route_subscription(&subscription, msg.bytes);
            }
            Kind::Notification {
                method,
                progress_token,
                cancelled_id,
                ..
            } => match &**method {
                "notifications/progress" => {
                    let target = progress_token
                        .as_ref()
                        .and_then(|t| Some((t, *self.progress.get(t)?)));
                    match target {
                        Some((token, stream)) if self.shared.modern => {
                            if let Some(bytes) = self.bridged_progress(token, msg.bytes) {
                                self.streams.emit(stream, bytes, false);
                            }
                        }
                        Some((_, stream)) => self.streams.emit(stream, msg.bytes, false),
                        None => {
                            tracing::debug!(session = %self.id, "progress for a finished request dropped")
                        }
                    }
                }
                "notifications/cancelled" => {
                    let target = cancelled_id.as_ref().and_then(|id| {
                        self.server_requests
                            .remove(id)
                            .or_else(|| self.pending.get(id).map(|p| p.stream))
                    });
                    match target {
                        Some(stream) => self.streams.emit(stream, msg.bytes, false),
                        None => self.route_other(msg.bytes),
                    }
                }
                "notifications/message" if self.shared.modern => self.route_modern_log(msg.bytes),
                "notifications/message" => self.route_server_initiated(msg.bytes, None),
                _ if self.shared.modern => self.route_to_listeners(method, msg.bytes),
                _ => self.route_other(msg.bytes),
            },
        }
    }

    fn route_server_initiated(&mut self, bytes: Bytes, request_id: Option<Id>) {
        match self.streams.for_server_initiated() {
            Some(stream) => self.emit_server_initiated(stream, bytes, request_id),
            None => self.hold(Held {
                bytes,
                server_initiated: true,
                request_id,
            }),
        }
    }

    fn emit_server_initiated(&mut self, stream: u32, bytes: Bytes, request_id: Option<Id>) {
        if let Some(id) = request_id {
            self.server_requests.insert(id, stream);
        }
        self.streams.emit(stream, bytes, false);
    }

    fn route_other(&mut self, bytes: Bytes) {
        if self.streams.standalone_attached() {
            self.streams.emit(STANDALONE, bytes, false);
        } else {
            self.hold(Held {
                bytes,
                server_initiated: false,
                request_id: None,
            });
        }
    }

    fn hold(&mut self, held: Held) {
        if self.held.len() >= self.runtime.config().event_buffer {
            tracing::warn!(session = %self.id, "no client stream open for a long time; oldest held server message discarded");
            self.held.pop_front();
        }
        self.held.push_back(held);
    }

    /// Sends held messages now that a stream can take them: all of them to the
    /// standalone stream, or only server requests and logs to a request stream.
    fn release_held(&mut self, to_standalone: bool) {
        let held = std::mem::take(&mut self.held);
        for h in held {
            let target = if to_standalone {
                Some(STANDALONE)
            } else if h.server_initiated {
                self.streams.for_server_initiated()
            } else {
                None
            };
            match target {
                Some(stream) => self.emit_server_initiated(stream, h.bytes, h.request_id),
                None => self.held.push_back(h),
            }
        }
    }

    /// Whether an `initialize` error means "I only speak 2026-07-28" and the server's
    /// policy lets Lodge bridge.
    fn falls_back_to_discover(&self, response: &[u8]) -> bool {
        if self.shared.modern || self.shared.policy == Protocol::Legacy {
            return false;
        }
        let code = serde_json::from_slice::<serde_json::Value>(response)
            .ok()
            .and_then(|v| v.pointer("/error/code").and_then(serde_json::Value::as_i64));
        matches!(
            code,
            Some(codes::UNSUPPORTED_PROTOCOL_VERSION | codes::METHOD_NOT_FOUND)
        )
    }

    fn record_protocol_version(&self, response: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Init {
            result: InitResult,
        }
        #[derive(serde::Deserialize)]
        struct InitResult {
            #[serde(rename = "protocolVersion")]
            protocol_version: String,
        }
        if let Ok(init) = serde_json::from_slice::<Init>(response) {
            let _ = self
                .shared
                .protocol_version
                .set(init.result.protocol_version);
        }
    }

    async fn server_exit_reason(&mut self, why: Option<String>) -> EndReason {
        let how = match timeout(EXIT_STATUS_WAIT, self.process.exited()).await {
            Ok(report) => report.to_string(),
            Err(_) => "closed its output".to_string(),
        };
        let how = match why {
            Some(why) => format!("{how} ({why})"),
            None => how,
        };
        EndReason::ServerExited {
            how,
            last_stderr: self.process.stderr_tail().pop(),
        }
    }

    /// Ends the session: answers what is pending, closes streams, stops the sandbox.
    async fn finish(self, reason: EndReason) {
        let Actor {
            id,
            runtime,
            shared,
            mut streams,
            pending,
            mut link,
            process,
            commands,
            ..
        } = self;
        // From here on, requests naming this session get 404 with the reason.
        runtime.retire(&id, reason.clone());
        drop(commands);
        let message = format!("The session ended before the server answered: {reason}.");
        for (request, p) in pending {
            streams.emit(
                p.stream,
                error_body(Some(&request), codes::SESSION_ENDED, &message),
                true,
            );
            streams.settle(p.stream);
        }
        streams.close_all();
        shared.in_flight.store(0, Ordering::Relaxed);
        link.close_input(); // a polite first hint to exit
        let report = process.terminate(runtime.config().terminate_grace).await;
        drop(link);
        tracing::info!(session = %id, %reason, server = %report, "session ended");
        runtime.release();
    }
}
