//! The session core, without I/O: the table of pending calls, routing rules 1–5 of
//! DESIGN.md §2, messages held until a stream can take them, and idle accounting.
//!
//! Every era adapter works on it; it knows no era. Messages for the server go to a
//! [`ToServer`] sink (a queue: sending never waits), events for clients go to the
//! session's [`Streams`]. A call ends in exactly one place, [`Core::complete`], so the
//! progress table, the stream and the in-flight count can never disagree.

use super::EventStream;
use super::budget::{Budget, Charge, OverBudget};
use super::streams::{STANDALONE, Streams};
use crate::error::{ErrorSource, SessionError};
use crate::metrics::{Method, ServerMetrics};
use bytes::Bytes;
use lodge_proto::Id;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Where messages for the server go: all of a batch, or none.
pub(crate) trait ToServer {
    fn send(&mut self, messages: Vec<Bytes>) -> Result<(), SessionError>;

    /// A 2026-07-28 server asked the client `method` under input `key`, in an
    /// `input_required` result (it is a question for the session's activity, told
    /// by the adapter that read the result; the retry answering it is sent here).
    fn server_asks(&mut self, _key: &str, _method: &str) {}
}

/// A response for a client, with its JSON-RPC error code if it is an error.
pub(crate) struct Reply {
    pub bytes: Bytes,
    pub error_code: Option<i64>,
    /// Whose error it is: the server's (relayed) or Lodge's (made here).
    pub source: ErrorSource,
}

impl Reply {
    /// A server's response, relayed (`message` is what the server sent).
    pub fn relayed(bytes: Bytes, message: &lodge_proto::Message) -> Reply {
        Reply {
            bytes,
            error_code: message.error_code(),
            source: ErrorSource::Server,
        }
    }

    /// A success response Lodge makes.
    pub fn result(id: &Id, result: serde_json::Value) -> Reply {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": json_id(id), "result": result});
        Reply {
            bytes: Bytes::from(body.to_string()),
            error_code: None,
            source: ErrorSource::Lodge,
        }
    }

    /// An error response Lodge makes.
    pub fn error(id: &Id, code: i64, message: &str) -> Reply {
        Reply {
            bytes: lodge_proto::error_body(Some(id), code, message),
            error_code: Some(code),
            source: ErrorSource::Lodge,
        }
    }
}

fn json_id(id: &Id) -> serde_json::Value {
    serde_json::from_str(id.as_json_text()).unwrap_or(serde_json::Value::Null)
}

/// One client call awaiting its response.
pub(crate) struct Pending<S> {
    /// The stream its response (and whatever belongs to it) goes to.
    pub stream: u32,
    /// `_meta.progressToken` of the request: rule 2 routes progress by it.
    pub progress_token: Option<Id>,
    /// Whether the call keeps the session busy (an open listen stream does not).
    pub busy: bool,
    /// When Lodge gives up waiting for the server's answer (`None`: it does not wait
    /// on the server, e.g. a call parked until the client retries).
    deadline: Option<Instant>,
    /// What the era adapter keeps about the call.
    pub state: S,
    /// The client's method, for metrics.
    pub method: Method,
    /// When the call reached the session.
    started: Instant,
    /// A `tools/call`'s request, for the audit log (a shared copy of its bytes).
    request: Option<Bytes>,
}

impl<S> Pending<S> {
    pub fn new(stream: u32, progress_token: Option<Id>, state: S) -> Self {
        Pending {
            stream,
            progress_token,
            busy: true,
            deadline: None,
            state,
            method: Method::OTHER,
            started: Instant::now(),
            request: None,
        }
    }

    /// The call is of the client's `method` (for metrics).
    pub fn of_method(mut self, method: &str) -> Self {
        self.method = Method::of(method);
        self
    }

    /// The client's request, kept (a reference, not a copy) for a tool call's audit line.
    pub fn with_request(mut self, bytes: &Bytes) -> Self {
        if self.method.as_str() == "tools/call" {
            self.request = Some(bytes.clone());
        }
        self
    }
}

/// A server message that no stream could take yet.
struct Held {
    bytes: Bytes,
    /// Counts the bytes against the session's budget while they wait.
    _charge: std::sync::Arc<Charge>,
    /// A server request or log message (rule 4), rather than another notification (rule 5).
    server_initiated: bool,
    request_id: Option<Id>,
}

pub(crate) struct Core<S> {
    pub streams: Streams,
    pending: HashMap<Id, Pending<S>>,
    /// Progress token → stream (rule 2).
    progress: HashMap<Id, u32>,
    /// Server requests relayed to a client stream, by the server's id (rule 3).
    server_requests: HashMap<Id, u32>,
    held: VecDeque<Held>,
    held_cap: usize,
    /// How long a call may wait for the server's answer, from its start or from the
    /// server's last word about it.
    call_timeout: Duration,
    /// When the last busy call finished; `None` while any is in flight.
    idle_since: Option<Instant>,
    busy: usize,
    next_id: u64,
    /// Counts finished calls: how long they took, and their errors.
    meter: Option<Arc<ServerMetrics>>,
    audit: Option<crate::audit::AuditTap>,
}

/// Marks the ids of requests Lodge itself sends to a server.
pub(crate) const LODGE_ID_PREFIX: &str = "lodge:";

impl<S> Core<S> {
    pub fn new(event_buffer: usize, call_timeout: Duration, budget: Budget, now: Instant) -> Self {
        Core {
            streams: Streams::new(event_buffer, budget),
            pending: HashMap::new(),
            progress: HashMap::new(),
            server_requests: HashMap::new(),
            held: VecDeque::new(),
            held_cap: event_buffer.max(1),
            call_timeout,
            idle_since: Some(now),
            busy: 0,
            next_id: 0,
            meter: None,
            audit: None,
        }
    }

    /// Writes an audit line for each tool call that ends.
    pub fn audited(mut self, tap: crate::audit::AuditTap) -> Self {
        self.audit = Some(tap);
        self
    }

    /// Counts finished calls in `meter`.
    pub fn metered(mut self, meter: Arc<ServerMetrics>) -> Self {
        self.meter = Some(meter);
        self
    }

    /// A fresh id for a request Lodge sends to the server: `"lodge:N"`, never a
    /// client's (clients' ids are theirs, and Lodge's are unique in the session).
    pub fn mint_id(&mut self) -> Id {
        self.next_id += 1;
        Id::from_json_text(&format!("\"{LODGE_ID_PREFIX}{}\"", self.next_id))
    }

    // ---- the pending-call table ----

    pub fn contains(&self, id: &Id) -> bool {
        self.pending.contains_key(id)
    }

    pub fn get(&self, id: &Id) -> Option<&Pending<S>> {
        self.pending.get(id)
    }

    pub fn get_mut(&mut self, id: &Id) -> Option<&mut Pending<S>> {
        self.pending.get_mut(id)
    }

    pub fn calls(&self) -> impl Iterator<Item = (&Id, &Pending<S>)> {
        self.pending.iter()
    }

    /// Starts tracking a call: its progress token routes to its stream, and a busy
    /// call keeps the session from idling.
    pub fn insert(&mut self, id: Id, mut pending: Pending<S>) {
        if pending.busy {
            pending.deadline = Some(Instant::now() + self.call_timeout);
        }
        if let Some(token) = &pending.progress_token {
            self.progress.insert(token.clone(), pending.stream);
        }
        if let Some(old) = self.pending.insert(id, pending) {
            self.unlink(&old);
        }
        self.account();
    }

    /// Moves a call to another stream (an MRTR retry continues a call on a new one).
    pub fn move_to_stream(&mut self, id: &Id, stream: u32) {
        if let Some(pending) = self.pending.get_mut(id) {
            pending.stream = stream;
            if let Some(token) = &pending.progress_token {
                self.progress.insert(token.clone(), stream);
            }
        }
    }

    /// Files a call under another id (its next request upstream has a new one).
    pub fn rekey(&mut self, from: &Id, to: Id) {
        if let Some(pending) = self.pending.remove(from) {
            self.pending.insert(to, pending);
        }
    }

    /// Finishes a call: forgets its progress token, emits `response` (if any) as the
    /// stream's response, settles the stream and updates idle accounting. Returns
    /// the call, or `None` if no such call was pending.
    pub fn complete(&mut self, id: &Id, response: Option<Reply>) -> Option<Pending<S>> {
        let pending = self.pending.remove(id)?;
        self.unlink(&pending);
        if let Some(meter) = &self.meter {
            meter.rpc_duration(pending.method, pending.started.elapsed());
            if let Some(Reply {
                error_code: Some(code),
                source,
                ..
            }) = &response
            {
                meter.rpc_error(pending.method, *code, *source);
            }
        }
        if let (Some(tap), Some(request)) = (&self.audit, &pending.request) {
            let answer = response.as_ref().map(|r| (&r.bytes[..], r.error_code));
            tap.tool_call(request, answer, pending.started.elapsed());
        }
        if let Some(reply) = response {
            self.streams
                .respond(pending.stream, reply.bytes, reply.error_code);
        }
        self.streams.settle(pending.stream);
        self.account();
        Some(pending)
    }

    fn unlink(&mut self, pending: &Pending<S>) {
        if let Some(token) = &pending.progress_token
            && self.progress.get(token) == Some(&pending.stream)
        {
            self.progress.remove(token);
        }
    }

    /// Every call still pending, removed: for ending the session.
    pub fn drain(&mut self) -> Vec<(Id, Pending<S>)> {
        self.progress.clear();
        let drained: Vec<_> = self.pending.drain().collect();
        if let Some(tap) = &self.audit {
            for (_, pending) in &drained {
                if let Some(request) = &pending.request {
                    tap.tool_call(request, None, pending.started.elapsed());
                }
            }
        }
        self.account();
        drained
    }

    // ---- idle accounting ----

    fn account(&mut self) {
        self.busy = self.pending.values().filter(|p| p.busy).count();
        self.idle_since = match (self.busy == 0, self.idle_since) {
            (false, _) => None,
            (true, None) => Some(Instant::now()),
            (true, since) => since,
        };
    }

    /// Calls that keep the session busy.
    pub fn in_flight(&self) -> usize {
        self.busy
    }

    /// Since when nothing has been in flight; `None` while the session is busy.
    pub fn idle_since(&self) -> Option<Instant> {
        self.idle_since
    }

    /// A client message that is not a call (a notification, an answer) while idle:
    /// the idle period starts again.
    pub fn touch(&mut self) {
        if self.busy == 0 {
            self.idle_since = Some(Instant::now());
        }
    }

    // ---- routing (DESIGN.md §2) ----

    /// Rule 2: the stream of the call that asked for progress under `token`. The
    /// server is still working on it: its answer clock starts again.
    pub fn on_progress(&mut self, token: &Id) -> Option<u32> {
        let stream = self.progress.get(token).copied()?;
        let restart = Instant::now() + self.call_timeout;
        for pending in self.pending.values_mut() {
            if pending.progress_token.as_ref() == Some(token) && pending.deadline.is_some() {
                pending.deadline = Some(restart);
            }
        }
        Some(stream)
    }

    // ---- waiting on the server ----

    /// The call no longer waits on the server (it waits on its client).
    pub fn stop_waiting(&mut self, id: &Id) {
        if let Some(pending) = self.pending.get_mut(id) {
            pending.deadline = None;
        }
    }

    /// The call waits on the server again, from now.
    pub fn wait_again(&mut self, id: &Id) {
        let restart = Instant::now() + self.call_timeout;
        if let Some(pending) = self.pending.get_mut(id) {
            pending.deadline = Some(restart);
        }
    }

    /// When the first call waiting on the server runs out of time. While a server
    /// request waits for a client's answer, the server waits on the client, so no
    /// call runs out.
    pub fn next_call_deadline(&self) -> Option<Instant> {
        if !self.server_requests.is_empty() {
            return None;
        }
        self.pending.values().filter_map(|p| p.deadline).min()
    }

    /// The calls whose server has not answered in time, by `now`.
    pub fn overdue(&self, now: Instant) -> Vec<Id> {
        if !self.server_requests.is_empty() {
            return Vec::new();
        }
        self.pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Rule 3: a cancellation goes to the stream of the server request or the call it
    /// names; otherwise it is routed as another notification (rule 5).
    pub fn route_cancelled(&mut self, target: Option<&Id>, bytes: Bytes) {
        let stream = target.and_then(|id| {
            self.server_requests
                .remove(id)
                .or_else(|| self.pending.get(id).map(|p| p.stream))
        });
        match stream {
            Some(stream) => self.streams.emit(stream, bytes, false),
            None => self.route_other(bytes),
        }
    }

    /// Rule 4: a server request or log message, which the server cannot say belongs to
    /// which call, goes to the only call in flight, else the GET stream, else the
    /// newest call's stream, else it is held.
    pub fn route_server_initiated(&mut self, bytes: Bytes, request_id: Option<Id>) {
        match self.streams.for_server_initiated() {
            Some(stream) => self.emit_server_initiated(stream, bytes, request_id),
            None => self.hold(bytes, true, request_id),
        }
    }

    fn emit_server_initiated(&mut self, stream: u32, bytes: Bytes, request_id: Option<Id>) {
        if let Some(id) = request_id {
            self.server_requests.insert(id, stream);
        }
        self.streams.emit(stream, bytes, false);
    }

    /// Rule 5: other notifications go to the GET stream, else they are held.
    pub fn route_other(&mut self, bytes: Bytes) {
        if self.streams.standalone_attached() {
            self.streams.emit(STANDALONE, bytes, false);
        } else {
            self.hold(bytes, false, None);
        }
    }

    /// The client answered a server request: it no longer routes cancellations.
    pub fn answered(&mut self, server_request: &Id) {
        self.server_requests.remove(server_request);
    }

    fn hold(&mut self, bytes: Bytes, server_initiated: bool, request_id: Option<Id>) {
        let held = Held {
            _charge: self.streams.budget().charge(bytes.len()),
            bytes,
            server_initiated,
            request_id,
        };
        if self.held.len() >= self.held_cap {
            tracing::warn!(
                "no client stream open for a long time; oldest held server message discarded"
            );
            self.held.pop_front();
        }
        self.held.push_back(held);
    }

    /// Whether the session keeps more unread server messages than its budget allows
    /// (after shedding finished streams' replay logs): then it must end.
    pub fn over_budget(&self) -> Option<OverBudget> {
        self.streams.budget().over()
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Sends held messages now that a stream can take them: all of them to the GET
    /// stream, or only server requests and logs to a request stream.
    fn release_held(&mut self) {
        let to_standalone = self.streams.standalone_attached();
        for h in std::mem::take(&mut self.held) {
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

    // ---- streams ----

    /// Opens a stream for `calls` client requests; held server requests may go to it.
    pub fn open(&mut self, sse: bool, calls: usize) -> (u32, EventStream) {
        let opened = self.streams.open(sse, calls);
        if sse && !self.held.is_empty() {
            self.release_held();
        }
        opened
    }

    /// A GET: the standalone stream (`None`), or a stream resumed after an event.
    pub fn listen(&mut self, after: Option<super::EventId>) -> Result<EventStream, SessionError> {
        let attached = match after {
            Some(after) => self
                .streams
                .attach(after.stream, Some(after.seq))
                .ok_or_else(|| SessionError::UnknownEvent(after.to_string())),
            None => self
                .streams
                .attach(STANDALONE, None)
                .ok_or_else(|| SessionError::UnknownEvent(String::new())),
        };
        if attached.is_ok() && self.streams.standalone_attached() {
            self.release_held();
        }
        attached
    }

    /// A response Lodge makes itself, on a stream of its own.
    pub fn answer_now(&mut self, reply: Reply) -> (u32, EventStream) {
        if let (Some(meter), Some(code)) = (&self.meter, reply.error_code) {
            meter.rpc_error(Method::OTHER, code, reply.source);
        }
        let (stream, rx) = self.streams.open(false, 1);
        self.streams.respond(stream, reply.bytes, reply.error_code);
        self.streams.settle(stream);
        (stream, rx)
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
