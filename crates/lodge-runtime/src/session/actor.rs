//! The session actor: the I/O shell around a session's core and era adapter. One
//! task per session owns all of its state, so no locks: it waits on the server's
//! link, the front's commands and one timer, and hands each event to the adapter.

use super::activity::{Activity, Direction};
use super::budget::Budget;
use super::core::{Core, ToServer};
use super::era::{Adapter, CallState, Ctx, Env};
use super::{Command, SessionReport, SessionState, Shared};
use crate::error::{EndReason, SessionError};
use crate::metrics::{ServerMetrics, Toward};
use crate::registry::Runtime;
use crate::session_id::SessionId;
use crate::upstream::{FromServer, Link};
use bytes::Bytes;
use lodge_proto::{codes, error_body};
use lodge_sandbox::SandboxProcess;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

/// How long to wait for a server's exit status once its stdout has closed.
const EXIT_STATUS_WAIT: Duration = Duration::from_secs(1);
/// Idle timeout of a runtime session until a client comes back with its id.
const UNADOPTED_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One of the runtime's `max_sessions` slots, held from before the sandbox starts
/// until it is gone. Dropping it frees the slot, however its holder ended: a request
/// cancelled while its sandbox starts, or an actor that panicked.
pub(crate) struct Slot {
    runtime: Arc<Runtime>,
    /// The session's id once it is registered; a session still registered when its
    /// slot goes was lost to a bug, and its id answers 404 saying so.
    registered: Option<SessionId>,
    /// The server and principal whose quota counts this session.
    quota: Option<(Arc<str>, crate::Principal)>,
    /// The cluster's limits that count this session, for its server and principal.
    admitted: Option<(Arc<dyn crate::Admission>, Arc<str>, crate::Principal)>,
    /// Where the session is counted (live, started, ended), and its client's era.
    counted: Option<(Arc<ServerMetrics>, bool)>,
}

impl Slot {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Slot {
            runtime,
            registered: None,
            quota: None,
            admitted: None,
            counted: None,
        }
    }

    /// This session counts against `principal`'s quota on `server` until it ends.
    pub fn counts_for(&mut self, server: Arc<str>, principal: crate::Principal) {
        self.quota = Some((server, principal));
    }

    /// The cluster's `admission` counted this session; it is told when it goes.
    pub fn admitted(
        &mut self,
        admission: Arc<dyn crate::Admission>,
        server: Arc<str>,
        principal: crate::Principal,
    ) {
        self.admitted = Some((admission, server, principal));
    }

    /// The session is registered under `id`: it counts as started (and live until
    /// it retires) in `meter`, for a client of the era `modern` says.
    pub fn register(&mut self, id: SessionId, meter: Arc<ServerMetrics>, modern: bool) {
        self.registered = Some(id);
        meter.session_started(modern);
        self.counted = Some((meter, modern));
    }

    /// From here on, requests naming the session get 404 with `reason`.
    fn retire(&mut self, reason: EndReason) {
        if let Some(id) = self.registered.take() {
            if let Some((meter, modern)) = self.counted.take() {
                meter.session_ended(modern, &reason);
            }
            self.runtime.retire(&id, reason);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.registered.is_some() {
            tracing::error!(session = ?self.registered, "session actor ended without finishing the session");
            self.retire(EndReason::Failed);
        }
        if let Some((server, principal)) = self.quota.take() {
            self.runtime.release_quota(&server, &principal);
        }
        if let Some((admission, server, principal)) = self.admitted.take() {
            admission.release(&server, &principal);
        }
        self.runtime.release();
    }
}

/// The link to the server as the adapters see it: what Lodge sends on it also tells
/// the session's activity when a question of the server's has been answered (a
/// legacy server's request by a response, a 2026-07-28 server's input request by a
/// retry's `inputResponses`), and adapters tell it of a 2026-07-28 server's questions.
struct Outbound<'a> {
    link: &'a mut Link,
    activity: &'a mut Activity,
    /// The trace of the command being handled.
    trace: Option<&'a str>,
    meter: Option<&'a ServerMetrics>,
}

impl ToServer for Outbound<'_> {
    fn send(&mut self, messages: Vec<Bytes>) -> Result<(), SessionError> {
        // Only while the server has a question out (rarely): otherwise nothing to read.
        if self.activity.server_asked() {
            for bytes in &messages {
                if let Ok(message) = lodge_proto::Message::parse(bytes.clone())
                    && matches!(message.kind, lodge_proto::Kind::Response { .. })
                {
                    self.activity.answered_server(&message);
                }
            }
        }
        // Only while a 2026-07-28 server has an input request out (never for a legacy
        // server); and a message is parsed only if it names `inputResponses`.
        if self.activity.inputs_asked() {
            for bytes in &messages {
                if let Some(responses) = super::activity::input_responses(bytes) {
                    self.activity.answered_inputs(&responses);
                }
            }
        }
        if let Some(meter) = self.meter {
            meter.relayed(Toward::Server, messages.iter().map(Bytes::len).sum());
        }
        self.link.send(messages, self.trace)
    }

    fn server_asks(&mut self, key: &str, method: &str) {
        self.activity.server_asks_input(key, method);
    }
}

pub(crate) struct Actor {
    runtime: Arc<Runtime>,
    commands: mpsc::Receiver<Command>,
    link: Link,
    core: Core<CallState>,
    adapter: Adapter,
    env: Env,
    activity: Activity,
    /// The client's trace for the command being handled (see `Outbound`).
    trace: super::Trace,
    /// Where what crosses the session is counted; `None` for a view over another
    /// session (`continuity = principal`), whose calls that session counts.
    meter: Option<Arc<ServerMetrics>>,
    lifetime_end: Instant,
    /// For a sandbox from a warm pool: tells the pool's refill when the server first answers.
    on_first_answer: Option<Arc<tokio::sync::Notify>>,
    /// `None` for a view over another session (`continuity = principal`): its "server"
    /// is that session, reached over the link's channels.
    process: Option<SandboxProcess>,
    /// Last, so it drops after the sandbox is gone.
    slot: Slot,
}

/// The context an adapter works in, borrowed from the actor's disjoint fields.
macro_rules! ctx {
    ($actor:ident) => {
        Ctx {
            core: &mut $actor.core,
            out: &mut Outbound {
                link: &mut $actor.link,
                activity: &mut $actor.activity,
                trace: $actor.trace.as_deref(),
                meter: $actor.meter.as_deref(),
            },
            env: &$actor.env,
        }
    };
}

/// What an actor is made of; [`Actor::new`] assembles it.
pub(crate) struct Parts {
    pub id: SessionId,
    pub runtime: Arc<Runtime>,
    pub shared: Arc<Shared>,
    pub meter: Arc<ServerMetrics>,
    pub commands: mpsc::Receiver<Command>,
    pub link: Link,
    pub process: Option<SandboxProcess>,
    pub policy: super::Protocol,
    pub slot: Slot,
    pub on_first_answer: Option<Arc<tokio::sync::Notify>>,
}

impl Actor {
    pub fn new(parts: Parts) -> Self {
        let config = parts.runtime.config();
        let now = parts.shared.created;
        // A view's calls, bytes and questions are counted once, by the session behind it.
        let meter = parts.process.is_some().then_some(parts.meter);
        let mut core = Core::new(
            config.event_buffer,
            config.request_timeout,
            Budget::new(parts.runtime.budget().clone()),
            now,
        );
        let mut activity = Activity::new(parts.shared.created_at, config.request_timeout)
            .with_payloads(config.event_payloads);
        if let Some(meter) = &meter {
            core = core.metered(meter.clone());
            activity = activity.metered(meter.clone());
        }
        // Like metrics: a view's calls are audited by the session behind it.
        if let Some(audit) = config.audit.clone().filter(|_| parts.process.is_some()) {
            let owner = &parts.shared.owner;
            let tap = crate::audit::AuditTap {
                audit,
                session: parts.id.shared(),
                server: parts.shared.server.clone(),
                principal: (!owner.is_anonymous()).then(|| owner.subject().into()),
            };
            core = core.audited(tap.clone());
            activity = activity.audited(tap);
        }
        Actor {
            core,
            adapter: Adapter::new(parts.shared.modern, parts.policy),
            activity,
            meter,
            trace: None,
            env: Env {
                session: parts.id,
                codec: parts.runtime.state_codec().clone(),
                request_state_ttl: config.request_state_ttl,
                shared: parts.shared,
            },
            lifetime_end: now + config.max_lifetime,
            runtime: parts.runtime,
            commands: parts.commands,
            link: parts.link,
            on_first_answer: parts.on_first_answer,
            process: parts.process,
            slot: parts.slot,
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
                    FromServer::Message(message) => {
                        if let Some(settled) = self.on_first_answer.take() {
                            settled.notify_one();
                        }
                        if let Some(meter) = &self.meter {
                            meter.relayed(Toward::Client, message.bytes.len());
                        }
                        self.activity.record(Direction::FromServer, &message, SystemTime::now());
                        self.adapter.on_server_message(&mut ctx!(self), message);
                    }
                    FromServer::Closed(why) => return (self.server_exit_reason(why).await, None),
                },
                command = self.commands.recv() => match command {
                    Some(command) => {
                        if let Err(stop) = self.on_command(command) {
                            return stop;
                        }
                    }
                    None => return (EndReason::ShuttingDown, None),
                },
                () = &mut timer => {
                    let now = Instant::now();
                    self.adapter.on_timer(&mut ctx!(self), now);
                    if now >= self.lifetime_end {
                        return (EndReason::MaxLifetime(self.runtime.config().max_lifetime), None);
                    }
                    let idle = self.idle_timeout();
                    if self.core.idle_since().is_some_and(|t| now >= t + idle) {
                        return (EndReason::IdleTimeout(idle), None);
                    }
                }
            }
            if let Some(over) = self.core.over_budget() {
                return (EndReason::OverBudget(over), None);
            }
            self.env
                .shared
                .in_flight
                .store(self.core.in_flight(), Ordering::Relaxed);
            let deadline = self.deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
        }
    }

    fn deadline(&self) -> Instant {
        let idle_end = self.core.idle_since().map(|t| t + self.idle_timeout());
        [
            Some(self.lifetime_end),
            idle_end,
            self.adapter.next_deadline(&self.core),
            self.core.next_call_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.lifetime_end)
    }

    fn report(&self) -> SessionReport {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let on_wall_clock = |at: Instant| wall + at.saturating_duration_since(now);
        let in_flight = self.core.in_flight();
        let waiting_on = self.activity.waiting_on(in_flight > 0);
        let state = if self.env.shared.hosting.get().is_none() {
            SessionState::Starting
        } else if waiting_on.is_some() {
            SessionState::Waiting
        } else if in_flight > 0 {
            SessionState::Busy
        } else {
            SessionState::Idle
        };
        SessionReport {
            state,
            in_flight,
            waiting_on,
            last_activity_at: self.activity.last_activity(),
            idle_deadline: self
                .core
                .idle_since()
                .map(|t| on_wall_clock(t + self.idle_timeout())),
            lifetime_deadline: on_wall_clock(self.lifetime_end),
            pid: self.process.as_ref().and_then(SandboxProcess::pid),
            usage: self.process.as_ref().map(SandboxProcess::usage_probe),
            stderr_tail: self
                .process
                .as_ref()
                .map(SandboxProcess::stderr_tail)
                .unwrap_or_default(),
            stdout_lines_skipped: self.link.lines_skipped(),
            events: self.activity.events(),
        }
    }

    /// A runtime session a modern client never came back to (it did not keep its
    /// `Lodge-Session-Id`) is cheap to lose: it gets a short idle timeout.
    fn idle_timeout(&self) -> Duration {
        let configured = self.runtime.config().idle_timeout;
        let shared = &self.env.shared;
        if !shared.modern || shared.adopted.load(Ordering::Relaxed) {
            configured
        } else {
            configured.min(UNADOPTED_IDLE_TIMEOUT)
        }
    }

    /// Handles one command; `Err` carries a stop request out to `serve`.
    fn on_command(
        &mut self,
        command: Command,
    ) -> Result<(), (EndReason, Option<oneshot::Sender<()>>)> {
        let draining = self.runtime.is_closing();
        match command {
            Command::Requests {
                messages,
                sse,
                trace,
                reply,
            } => {
                self.trace = trace;
                let now = SystemTime::now();
                for message in &messages {
                    self.activity.record(Direction::FromClient, message, now);
                }
                let result = if draining {
                    Err(SessionError::ShuttingDown)
                } else {
                    self.adapter.requests(&mut ctx!(self), messages, sse)
                };
                let _ = reply.send(result);
            }
            Command::Deliver {
                message,
                trace,
                reply,
            } => {
                self.trace = trace;
                self.activity
                    .record(Direction::FromClient, &message, SystemTime::now());
                let _ = reply.send(self.adapter.deliver(&mut ctx!(self), message));
            }
            Command::Listen {
                last_event_id,
                reply,
            } => {
                let _ = reply.send(self.adapter.listen(&mut ctx!(self), last_event_id));
            }
            Command::Prepare {
                capabilities,
                policy,
                reply,
            } => self
                .adapter
                .prepare(&mut ctx!(self), capabilities, policy, reply),
            Command::Modern {
                call,
                resume,
                trace,
                reply,
            } => {
                self.trace = trace;
                self.activity
                    .record(Direction::FromClient, &call.message, SystemTime::now());
                let result = if draining {
                    Err(SessionError::ShuttingDown)
                } else {
                    self.adapter.modern(&mut ctx!(self), *call, resume)
                };
                let _ = reply.send(result);
            }
            Command::Abandon { stream } => self.adapter.abandon(&mut ctx!(self), stream),
            Command::Describe { reply } => {
                let _ = reply.send(self.report());
            }
            Command::Stop { reason, done } => return Err((reason, Some(done))),
            #[cfg(test)]
            Command::Panic => panic!("session actor asked to panic"),
        }
        Ok(())
    }

    async fn server_exit_reason(&mut self, why: Option<String>) -> EndReason {
        let Some(process) = self.process.as_mut() else {
            return EndReason::ServerExited {
                how: why.unwrap_or_else(|| "ended".into()),
                last_stderr: None,
                oom: false,
            };
        };
        let (how, oom) = match timeout(EXIT_STATUS_WAIT, process.exited()).await {
            Ok(report) => (report.to_string(), report.oom),
            Err(_) => ("closed its output".to_string(), false),
        };
        let how = match why {
            Some(why) => format!("{how} ({why})"),
            None => how,
        };
        EndReason::ServerExited {
            how,
            last_stderr: process.stderr_tail().pop(),
            oom,
        }
    }

    /// Ends the session: answers what is pending, closes streams, stops the sandbox.
    async fn finish(self, reason: EndReason) {
        let Actor {
            runtime,
            mut core,
            mut link,
            process,
            commands,
            env,
            mut slot,
            meter,
            ..
        } = self;
        slot.retire(reason.clone());
        drop(commands);
        let message = format!("The session ended before the server answered: {reason}.");
        for (key, pending) in core.drain() {
            if let Some(meter) = &meter {
                meter.rpc_error(pending.method, codes::SESSION_ENDED, reason.source());
            }
            let id = pending.state.client_id(&key);
            let error = error_body(Some(&id), codes::SESSION_ENDED, &message);
            core.streams
                .respond(pending.stream, error, Some(codes::SESSION_ENDED));
            core.streams.settle(pending.stream);
        }
        core.streams.close_all();
        env.shared.in_flight.store(0, Ordering::Relaxed);
        link.close_input(); // a polite first hint to exit
        let report = match process {
            Some(process) => process
                .terminate(runtime.config().terminate_grace)
                .await
                .to_string(),
            None => "a view: its principal's session lives on".to_string(),
        };
        drop(link);
        tracing::info!(session = %env.session, %reason, server = %report, "session ended");
        drop(slot);
    }
}
