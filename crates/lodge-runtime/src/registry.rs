//! The registry of live sessions, and what is remembered of ended ones.

use crate::config::Transport;
use crate::config::{ServerSpec, SessionConfig};
use crate::error::{EndReason, RuntimeError};
use crate::principal::Principal;
use crate::session::{Actor, ServerHosting, SessionHandle, Shared, Slot};
use crate::session::{BridgeState, StateCodec, StateError};
use crate::session_id::SessionId;
use crate::upstream::{self, Link, StdioLink, WRITE_QUEUE};
use crate::upstream_http;
use lodge_proto::seal::KeyRing;
use lodge_sandbox::{Sandbox, SandboxError, SandboxId, SandboxSpec};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Ended sessions remembered for their 404 message.
const ENDED_REMEMBERED: usize = 16_384;
/// Commands queued per session before senders wait.
const COMMAND_QUEUE: usize = 64;
/// Messages from a server queued before its reader waits.
const FROM_SERVER_QUEUE: usize = 256;
/// The longest a warm pool's refill waits for the session that took a sandbox to get
/// its server's first answer.
const REFILL_PAUSE: Duration = Duration::from_millis(100);

/// A hosted server, as the front routes to it.
pub struct Server {
    pub spec: ServerSpec,
    /// Started sandboxes waiting for a session (`warm_pool`); each is used once.
    pool: Mutex<VecDeque<Sandbox>>,
    /// Wakes the pool's refill task when a sandbox is taken.
    taken: Notify,
    /// Told by a session that took a pooled sandbox when its server first answers.
    settled: Arc<Notify>,
    /// How this server's sessions have been hosted so far (logged once each way).
    hosting: ServerHosting,
    /// Said once: `storage = principal` keeps nothing for the anonymous principal.
    anonymous_storage: std::sync::Once,
    /// This server's metrics, their label sets resolved.
    meter: Arc<crate::metrics::ServerMetrics>,
}

impl Server {
    /// Whether each principal's 2026-07-28 requests all go to its one runtime session
    /// of this server, whatever session they name (`continuity = principal`; the
    /// anonymous principal alike): the front then asks [`Runtime::anonymous_session`]
    /// for every one of them.
    pub fn continues(&self) -> bool {
        self.spec.continuity == crate::Continuity::Principal
    }

    /// This server's metrics.
    pub fn meter(&self) -> &Arc<crate::metrics::ServerMetrics> {
        &self.meter
    }

    /// Started sandboxes waiting in the warm pool now.
    pub fn warm_pool_ready(&self) -> usize {
        lock(&self.pool).len()
    }

    fn take_pooled(&self) -> Option<Sandbox> {
        let pooled = lock(&self.pool).pop_front();
        if pooled.is_some() {
            self.taken.notify_one();
        }
        pooled
    }
}

/// What a session id refers to, as its owner sees it (to anyone else a session is
/// [`Lookup::Unknown`], live or ended: no one learns another's session ids exist).
pub enum Lookup {
    Live(SessionHandle),
    Ended(EndReason),
    Unknown,
}

#[derive(Default)]
struct Ended {
    reasons: HashMap<SessionId, (EndReason, Principal)>,
    order: VecDeque<SessionId>,
}

pub struct Runtime {
    servers: Vec<Arc<Server>>,
    config: SessionConfig,
    sessions: Mutex<HashMap<SessionId, SessionHandle>>,
    ended: Mutex<Ended>,
    /// Sessions whose sandbox exists (live, or ending).
    live: AtomicUsize,
    draining: AtomicBool,
    /// Shutting down: calls in flight finish, no new request is taken.
    closing: AtomicBool,
    released: Notify,
    /// Seals the `requestState` Lodge hands 2026-07-28 clients when it bridges MRTR.
    state_codec: Arc<StateCodec>,
    /// Mints and opens session ids.
    tokens: lodge_cluster::TokenCodec,
    /// The byte budgets for unread server messages, with the count all sessions share.
    budget: crate::session::BudgetLimits,
    /// The runtime session 2026-07-28 requests naming none share, per server and
    /// principal: every authenticated principal's own, and with `anonymous = shared`
    /// the one unauthenticated requests share.
    default_sessions: tokio::sync::Mutex<HashMap<(String, Principal), SessionHandle>>,
    /// What each principal uses of each server's quota.
    quotas: Mutex<crate::quota::Ledger>,
    /// Lodge's one metrics registry.
    metrics: Arc<crate::metrics::Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; recover the data if one ever did.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a new session's actor runs on: how it reaches its server, and which era each
/// side speaks.
struct Launch {
    link: Link,
    process: Option<lodge_sandbox::SandboxProcess>,
    /// Whether its client speaks 2026-07-28.
    modern: bool,
    policy: crate::Protocol,
    /// Told when the server first answers (a pooled sandbox settling).
    on_first_answer: Option<Arc<Notify>>,
}

impl Runtime {
    pub fn new(servers: Vec<ServerSpec>, config: SessionConfig) -> Arc<Self> {
        let budget = crate::session::BudgetLimits::new(
            config.max_buffered_bytes,
            config.max_buffered_bytes_total,
        );
        let keys = config
            .request_state_keys
            .as_deref()
            .cloned()
            .unwrap_or_else(KeyRing::random);
        let tokens = config
            .session_tokens
            .clone()
            .unwrap_or_else(lodge_cluster::TokenCodec::single);
        let metrics = Arc::new(crate::metrics::Metrics::new(
            servers
                .iter()
                .map(|spec| (spec.name.as_str(), spec.backend.name())),
        ));
        Arc::new(Runtime {
            servers: servers
                .into_iter()
                .map(|spec| {
                    Arc::new(Server {
                        meter: metrics.server(&spec.name).clone(),
                        spec,
                        pool: Mutex::default(),
                        taken: Notify::new(),
                        settled: Arc::default(),
                        hosting: ServerHosting::default(),
                        anonymous_storage: std::sync::Once::new(),
                    })
                })
                .collect(),
            config,
            sessions: Mutex::default(),
            ended: Mutex::default(),
            live: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            released: Notify::new(),
            state_codec: Arc::new(StateCodec::new(keys)),
            tokens,
            budget,
            default_sessions: tokio::sync::Mutex::default(),
            quotas: Mutex::default(),
            metrics,
        })
    }

    /// Lodge's metrics, shared by the front and the runtime.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    pub fn servers(&self) -> &[Arc<Server>] {
        &self.servers
    }

    pub fn server(&self, name: &str) -> Option<&Arc<Server>> {
        self.servers.iter().find(|s| s.spec.name == name)
    }

    /// No new sessions are taken (a drain, or shutdown).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Shutting down: live sessions take no new requests either.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    pub fn live_sessions(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn sessions(&self) -> Vec<SessionHandle> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// A new session's public id: a token naming this node, `sandbox` and `owner`.
    fn mint_id(&self, sandbox: [u8; 16], owner: &Principal) -> SessionId {
        let principal = lodge_cluster::principal_digest(&owner.key());
        SessionId::new(self.tokens.mint(sandbox, principal, SystemTime::now()))
    }

    /// The session `id` names, whoever owns it: for operators, and for a session's
    /// own actor. Requests use [`Runtime::lookup_as`]. A text that is no token of
    /// this cluster is not looked up.
    pub fn lookup(&self, id: &str) -> Lookup {
        if self.tokens.open(id).is_err() {
            return Lookup::Unknown;
        }
        if let Some(handle) = lock(&self.sessions).get(id) {
            return Lookup::Live(handle.clone());
        }
        match lock(&self.ended).reasons.get(id) {
            Some((reason, _)) => Lookup::Ended(reason.clone()),
            None => Lookup::Unknown,
        }
    }

    /// The session `id` names, if `principal` owns it; [`Lookup::Unknown`] otherwise.
    pub fn lookup_as(&self, id: &str, principal: &Principal) -> Lookup {
        match self.tokens.open(id) {
            Ok(token) if token.principal == lodge_cluster::principal_digest(&principal.key()) => {}
            // Forged, or another principal's: not looked up.
            _ => return Lookup::Unknown,
        }
        if let Some(handle) = lock(&self.sessions).get(id) {
            return match handle.owner() == principal {
                true => Lookup::Live(handle.clone()),
                false => Lookup::Unknown,
            };
        }
        match lock(&self.ended).reasons.get(id) {
            Some((reason, owner)) if owner == principal => Lookup::Ended(reason.clone()),
            _ => Lookup::Unknown,
        }
    }

    pub(crate) fn state_codec(&self) -> &Arc<StateCodec> {
        &self.state_codec
    }

    /// The byte budgets every session counts its unread server messages against.
    pub fn budget(&self) -> &crate::session::BudgetLimits {
        &self.budget
    }

    /// Opens a `requestState`: `Ok(None)` if it is not one Lodge minted (it belongs to
    /// the server and passes through), an error if it is Lodge's but bad.
    pub fn open_request_state(&self, token: &str) -> Result<Option<BridgeState>, StateError> {
        self.state_codec.open(token)
    }

    /// Starts a runtime session for a 2026-07-28 client and learns (or sets up) the
    /// era its server is spoken to in.
    pub async fn create_modern_session(
        self: &Arc<Self>,
        server: &Arc<Server>,
        capabilities: serde_json::Value,
        owner: &Principal,
    ) -> Result<SessionHandle, RuntimeError> {
        let session = self.start_session(server, true, owner).await?;
        if let Err(e) = session
            .prepare_modern(capabilities, server.spec.protocol)
            .await
        {
            // A server that exited says more than "the session has ended".
            let why = match self.lookup(session.id()) {
                Lookup::Ended(reason) => reason.to_string(),
                _ => e.to_string(),
            };
            session
                .stop(EndReason::Discarded(
                    "it could not be set up for its 2026-07-28 client",
                ))
                .await;
            return Err(RuntimeError::Prepare(why));
        }
        Ok(session)
    }

    /// The runtime session for a 2026-07-28 request that names none (or, with
    /// `continuity = principal`, any request): an authenticated principal's own default
    /// session of `server`; without authentication a new one, or the server's shared
    /// one (`anonymous = shared`, or `continuity = principal`).
    /// Default sessions start on first use and are started again once ended.
    pub async fn anonymous_session(
        self: &Arc<Self>,
        server: &Arc<Server>,
        capabilities: serde_json::Value,
        principal: &Principal,
    ) -> Result<SessionHandle, RuntimeError> {
        let shared = server.spec.anonymous == crate::Anonymous::Shared || server.continues();
        if principal.is_anonymous() && !shared {
            return self
                .create_modern_session(server, capabilities, principal)
                .await;
        }
        // An async lock: concurrent first requests must not start two sandboxes.
        // Under continuity the server is told every capability a client may have (each
        // call is held to its own client's): the session serves whoever comes next.
        let capabilities = match server.continues() {
            true => crate::continuity::shared_capabilities(),
            false => capabilities,
        };
        let mut defaults = self.default_sessions.lock().await;
        let key = (server.spec.name.clone(), principal.clone());
        if let Some(session) = defaults.get(&key)
            && matches!(self.lookup(session.id()), Lookup::Live(_))
        {
            return Ok(session.clone());
        }
        let session = self
            .create_modern_session(server, capabilities, principal)
            .await?;
        session.adopt();
        defaults.insert(key, session.clone());
        Ok(session)
    }

    /// Starts a new legacy session of `server` (for an `initialize` request) owned
    /// by `owner`.
    ///
    /// With `continuity = principal` the session is a view over `owner`'s one runtime
    /// session of the server (`continuity` module): its own `Mcp-Session-Id` and
    /// `initialize` answer, the principal's one sandbox.
    pub async fn create_session(
        self: &Arc<Self>,
        server: &Arc<Server>,
        owner: &Principal,
    ) -> Result<SessionHandle, RuntimeError> {
        if server.continues() {
            return self.create_view(server, owner).await;
        }
        self.start_session(server, false, owner).await
    }

    /// A legacy session without a sandbox of its own: its adapter speaks 2026-07-28 to
    /// `owner`'s runtime session of `server`, started first if need be.
    async fn create_view(
        self: &Arc<Self>,
        server: &Arc<Server>,
        owner: &Principal,
    ) -> Result<SessionHandle, RuntimeError> {
        let behind = self
            .anonymous_session(server, crate::continuity::shared_capabilities(), owner)
            .await?;
        // Kept for the full idle timeout, like a runtime session a client came back to.
        behind.adopt();
        let slot = self.take_slot()?;
        // The view's session lives in the sandbox of the one behind it.
        let sandbox = self.tokens.open(behind.id()).map_or([0; 16], |t| t.sandbox);
        let id = self.mint_id(sandbox, owner);
        let (to_server, write_queue) = mpsc::channel(WRITE_QUEUE);
        let (from_server_tx, from_server) = mpsc::channel(FROM_SERVER_QUEUE);
        tokio::spawn(crate::continuity::serve(
            self.clone(),
            behind.clone(),
            owner.clone(),
            write_queue,
            from_server_tx,
        ));
        let launch = Launch {
            link: Link::Channels {
                to_server,
                from_server,
            },
            process: None,
            modern: false,
            // A legacy client of a 2026-07-28 "server": the runtime session behind.
            policy: crate::Protocol::Modern,
            on_first_answer: None,
        };
        let handle = self.launch(id.clone(), server, owner, slot, launch);
        tracing::info!(session = %id, behind = %behind.id(), server = %server.spec.name, "session started as a view of its principal's runtime session");
        Ok(handle)
    }

    /// Registers a new session under `id` and starts its actor.
    fn launch(
        self: &Arc<Self>,
        id: SessionId,
        server: &Server,
        owner: &Principal,
        mut slot: Slot,
        launch: Launch,
    ) -> SessionHandle {
        let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let shared = Arc::new(Shared::new(
            server.spec.name.as_str().into(),
            launch.modern,
            server.hosting.clone(),
            owner.clone(),
        ));
        let handle = SessionHandle::new(id.clone(), commands_tx, shared.clone());
        lock(&self.sessions).insert(id.clone(), handle.clone());
        slot.register(id.clone(), server.meter.clone(), launch.modern);
        let actor = Actor::new(crate::session::Parts {
            id,
            runtime: self.clone(),
            shared,
            meter: server.meter.clone(),
            commands,
            link: launch.link,
            process: launch.process,
            policy: launch.policy,
            slot,
            on_first_answer: launch.on_first_answer,
        });
        // Everything the session's actor logs carries who and what it is; a root span,
        // as the session outlives the request that started it.
        let span = tracing::info_span!(
            parent: None,
            "session",
            session = %handle.id(),
            server = %server.spec.name,
            principal = tracing::field::Empty,
        );
        if !owner.is_anonymous() {
            span.record("principal", owner.subject());
        }
        tokio::spawn(tracing::Instrument::instrument(actor.run(), span));
        handle
    }

    /// Takes one of the `max_sessions` slots, freed when the returned guard drops.
    fn take_slot(self: &Arc<Self>) -> Result<Slot, RuntimeError> {
        if self.is_draining() {
            return Err(RuntimeError::ShuttingDown);
        }
        let max = self.config.max_sessions;
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| RuntimeError::AtCapacity(max))?;
        Ok(Slot::new(self.clone()))
    }

    /// Starts a session: its sandbox, its relay tasks and its actor.
    async fn start_session(
        self: &Arc<Self>,
        server: &Arc<Server>,
        modern: bool,
        owner: &Principal,
    ) -> Result<SessionHandle, RuntimeError> {
        // Freed on drop: if this request is cancelled while the sandbox starts, or
        // the session's actor ends however it does.
        let mut slot = self.take_slot()?;
        let quota = server.spec.quota;
        if quota != crate::Quota::default() {
            let name: Arc<str> = server.spec.name.as_str().into();
            lock(&self.quotas)
                .admit(&name, owner, quota, Instant::now())
                .map_err(RuntimeError::Quota)?;
            slot.counts_for(name, owner.clone());
        }
        if let Some(admission) = &self.config.admission {
            admission
                .admit(&server.spec.name, owner, quota.max_sessions)
                .await
                .map_err(RuntimeError::Cluster)?;
            let name: Arc<str> = server.spec.name.as_str().into();
            slot.admitted(admission.clone(), name, owner.clone());
        }
        // A pooled sandbox was started before anyone asked for it, so it cannot know
        // its user: an authenticated principal's session gets a sandbox of its own.
        let pooled = owner.is_anonymous().then(|| server.take_pooled()).flatten();
        let from_pool = pooled.is_some();
        let sandbox = match pooled {
            Some(pooled) => pooled,
            // fork/exec and sandbox setup block for a millisecond or more: keep them off
            // the threads that relay everyone else's messages.
            None => {
                let spawned = tokio::task::spawn_blocking({
                    let (runtime, server, owner) = (self.clone(), server.clone(), owner.clone());
                    move || runtime.spawn_sandbox(&server, &owner)
                })
                .await;
                match spawned {
                    Ok(Ok(fresh)) => fresh,
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => return Err(RuntimeError::ShuttingDown),
                }
            }
        };
        let pid = sandbox.process.pid();
        let sandbox_id = sandbox.process.sandbox_id();
        let id = self.mint_id(sandbox_id.bytes(), owner);
        let link = match &server.spec.transport {
            Transport::Stdio => Link::Stdio(StdioLink::new(
                id.shared(),
                sandbox.io.stdout,
                sandbox.io.stdin,
                self.config.max_message_bytes,
            )),
            Transport::Http { port, path } => {
                let (to_server, write_queue) = mpsc::channel(WRITE_QUEUE);
                let (from_server_tx, from_server) = mpsc::channel(FROM_SERVER_QUEUE);
                tokio::spawn(upstream_http::http_link(
                    id.shared(),
                    sandbox.process.tcp_connector(),
                    upstream_http::HttpTarget {
                        port: *port,
                        path: path.clone(),
                        principal: owner.clone(),
                    },
                    self.config.max_message_bytes,
                    write_queue,
                    from_server_tx.clone(),
                ));
                tokio::spawn(upstream::drain_loop(
                    id.shared(),
                    sandbox.io.stdin,
                    sandbox.io.stdout,
                    self.config.stderr_cap,
                    from_server_tx,
                ));
                Link::Channels {
                    to_server,
                    from_server,
                }
            }
        };
        let launch = Launch {
            link,
            process: Some(sandbox.process),
            modern,
            policy: server.spec.protocol,
            on_first_answer: from_pool.then(|| server.settled.clone()),
        };
        let handle = self.launch(id.clone(), server, owner, slot, launch);
        tracing::info!(session = %id, sandbox = %sandbox_id, server = %server.spec.name, pid = ?pid, "session started");
        Ok(handle)
    }

    /// Starts a sandbox for a session of `server` owned by `owner` (anonymous for
    /// the warm pool); the server finds its user in its environment.
    fn spawn_sandbox(&self, server: &Server, owner: &Principal) -> Result<Sandbox, SandboxError> {
        let mut env = server.spec.env.clone();
        env.extend(
            owner
                .environment()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v)),
        );
        let sandbox_id = SandboxId::mint();
        let spec = SandboxSpec {
            sandbox_id,
            command: server.spec.command.clone(),
            env,
            scratch_root: self.config.scratch_root.clone(),
            stderr_cap: self.config.stderr_cap,
            stderr_file: self
                .config
                .stderr_dir
                .as_ref()
                .map(|dir| lodge_sandbox::StderrFile {
                    path: dir.join(format!("{}-{sandbox_id}.log", server.spec.name)),
                    max_bytes: self.config.stderr_file_bytes,
                }),
            limits: server.spec.limits.clone(),
            reached_over_tcp: matches!(server.spec.transport, Transport::Http { .. }),
            kept: self.kept_dir(server, owner),
        };
        let started = std::time::Instant::now();
        let sandbox = server.spec.backend.spawn(&spec)?;
        server.meter.sandbox_started(started.elapsed());
        Ok(sandbox)
    }

    /// Where `owner`'s `/session` files of `server` are kept (`storage = principal`).
    fn kept_dir(&self, server: &Server, owner: &Principal) -> Option<std::path::PathBuf> {
        let kept = crate::storage::kept_dir(&self.config.scratch_root, &server.spec, owner);
        if kept.is_none() && server.spec.storage == crate::Storage::Principal {
            // Without authentication everyone is the anonymous principal: keeping its
            // files would hand one user's files to the next. The configuration layer
            // cannot refuse it (auth is checked elsewhere), so it acts as `session`.
            server.anonymous_storage.call_once(|| {
                tracing::warn!(server = %server.spec.name, "storage = \"principal\" keeps files per authenticated user; without authentication each session's /session is its own (as storage = \"session\")");
            });
        }
        kept
    }

    /// Removes kept `/session` files unused for their server's `storage_ttl`: once now
    /// (with saves a killed Lodge cut short), then periodically, until shutdown.
    pub fn start_storage_sweeps(self: &Arc<Self>) {
        for server in self.servers.iter() {
            if server.spec.storage != crate::Storage::Principal {
                continue;
            }
            let runtime = self.clone();
            let server = server.clone();
            tokio::spawn(async move {
                let every = crate::storage::sweep_interval(server.spec.storage_ttl);
                let mut at_start = true;
                while !runtime.is_draining() {
                    let (runtime, server) = (runtime.clone(), server.clone());
                    let swept = tokio::task::spawn_blocking(move || {
                        crate::storage::sweep(&runtime.config.scratch_root, &server.spec, at_start)
                    });
                    if swept.await.is_err() {
                        return;
                    }
                    at_start = false;
                    tokio::time::sleep(every).await;
                }
            });
        }
    }

    /// Keeps each server's warm pool full, in the background, until shutdown.
    pub fn start_warm_pools(self: &Arc<Self>) {
        for server in self.servers.iter().filter(|s| s.spec.warm_pool > 0) {
            let runtime = self.clone();
            let server = server.clone();
            tokio::spawn(async move {
                while !runtime.is_draining() {
                    let taken = server.taken.notified();
                    while lock(&server.pool).len() < server.spec.warm_pool && !runtime.is_draining()
                    {
                        let spawned = tokio::task::spawn_blocking({
                            let (runtime, server) = (runtime.clone(), server.clone());
                            move || runtime.spawn_sandbox(&server, &Principal::anonymous())
                        })
                        .await;
                        match spawned {
                            Ok(Ok(sandbox)) => lock(&server.pool).push_back(sandbox),
                            Ok(Err(e)) => {
                                tracing::warn!(server = %server.spec.name, error = %e, "warm pool: cannot start a sandbox; retrying in 5s");
                                tokio::time::sleep(Duration::from_secs(5)).await;
                            }
                            Err(_) => return,
                        }
                    }
                    taken.await;
                    // Let the session that took a sandbox hear from its server before the
                    // replacement starts: on a small machine the replacement's start (fork,
                    // exec, the server's own start-up) competes with that first answer.
                    // A burst that empties the pool refills at once.
                    if !lock(&server.pool).is_empty() {
                        let _ = tokio::time::timeout(REFILL_PAUSE, server.settled.notified()).await;
                    }
                }
            });
        }
    }

    /// Called by an ending actor: the id now answers 404 with `reason`.
    pub(crate) fn retire(&self, id: &SessionId, reason: EndReason) {
        let owner = lock(&self.sessions)
            .remove(id)
            .map(|s| s.owner().clone())
            .unwrap_or_default();
        let mut ended = lock(&self.ended);
        if ended.order.len() >= ENDED_REMEMBERED
            && let Some(old) = ended.order.pop_front()
        {
            ended.reasons.remove(&old);
        }
        ended.order.push_back(id.clone());
        ended.reasons.insert(id.clone(), (reason, owner));
    }

    /// Called when a session counted against a quota is gone.
    pub(crate) fn release_quota(&self, server: &Arc<str>, principal: &Principal) {
        lock(&self.quotas).release(server, principal, Instant::now());
    }

    /// Called when a session's sandbox is gone.
    pub(crate) fn release(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.released.notify_waiters();
    }

    /// A node leaving the cluster: takes no new sessions from now on (and empties its
    /// warm pools), while its live sessions are served until they end.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
        for server in &self.servers {
            lock(&server.pool).clear(); // dropping a sandbox kills it and removes its scratch
            server.taken.notify_one();
        }
    }

    /// Waits until no session is live, or `deadline` passes; says whether none is.
    pub async fn sessions_ended(&self, deadline: Instant) -> bool {
        while self.live_sessions() > 0 {
            let released = self.released.notified();
            if self.live_sessions() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return self.live_sessions() == 0;
            }
        }
        true
    }

    /// Drains: refuses new sessions and requests, lets in-flight calls finish for up
    /// to `grace`, then ends every session and waits for their sandboxes to go.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.store(true, Ordering::Relaxed);
        self.drain();
        let until = Instant::now() + grace;
        while Instant::now() < until && self.sessions().iter().any(|s| s.in_flight() > 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut stopping = JoinSet::new();
        for session in self.sessions() {
            stopping.spawn(async move { session.stop(EndReason::ShuttingDown).await });
        }
        while stopping.join_next().await.is_some() {}
        // Sessions created or ending concurrently release on their own; wait for them.
        while self.live_sessions() > 0 {
            let released = self.released.notified();
            if self.live_sessions() == 0 {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), released).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{Anonymous, Transport};
    use lodge_sandbox::{Limits, ProcessBackend};

    fn runtime(scratch: &std::path::Path) -> Arc<Runtime> {
        let spec = ServerSpec {
            name: "cat".into(),
            // Reads its input until the session ends; says nothing.
            command: vec!["cat".into()],
            env: Default::default(),
            limits: Limits::default(),
            backend: Arc::new(ProcessBackend),
            protocol: crate::Protocol::Auto,
            anonymous: Anonymous::Fresh,
            warm_pool: 0,
            transport: Transport::Stdio,
            quota: crate::Quota::default(),
            continuity: Default::default(),
            storage: Default::default(),
            storage_ttl: crate::DEFAULT_STORAGE_TTL,
        };
        let config = SessionConfig {
            max_sessions: 1,
            scratch_root: scratch.to_path_buf(),
            ..SessionConfig::default()
        };
        Runtime::new(vec![spec], config)
    }

    /// Waits (real time, bounded) until `done` holds.
    async fn eventually(what: &str, done: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < until, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_panicking_actor_frees_its_slot_and_its_id_answers_404() {
        let scratch = tempfile::tempdir().unwrap();
        let runtime = runtime(scratch.path());
        let server = runtime.servers()[0].clone();
        let session = runtime
            .create_session(&server, &Principal::anonymous())
            .await
            .unwrap();
        assert_eq!(runtime.live_sessions(), 1);
        assert!(matches!(
            runtime
                .create_session(&server, &Principal::anonymous())
                .await,
            Err(RuntimeError::AtCapacity(1))
        ));
        session.panic().await;
        eventually("the slot is free", || runtime.live_sessions() == 0).await;
        assert!(matches!(
            runtime.lookup(session.id()),
            Lookup::Ended(EndReason::Failed)
        ));
        let reason = EndReason::Failed.to_string();
        assert_eq!(reason, "Lodge hit an internal error in this session");
        // The freed slot takes a new session.
        let again = runtime
            .create_session(&server, &Principal::anonymous())
            .await
            .unwrap();
        again.stop(EndReason::Deleted).await;
        assert_eq!(runtime.live_sessions(), 0);
    }

    #[tokio::test]
    async fn a_session_request_cancelled_while_its_sandbox_starts_frees_its_slot() {
        let scratch = tempfile::tempdir().unwrap();
        let runtime = runtime(scratch.path());
        let server = runtime.servers()[0].clone();
        // Polled once: the slot is taken and the spawn is under way; then dropped,
        // as a client that disconnects during its initialize. On a fast path the first
        // poll may finish the start: that session is ended, and the start tried again.
        let mut cancelled = false;
        for _ in 0..20 {
            let anonymous = Principal::anonymous();
            let mut start = Box::pin(runtime.create_session(&server, &anonymous));
            let first = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(start.as_mut(), cx))
            })
            .await;
            match first {
                std::task::Poll::Pending => {
                    drop(start);
                    cancelled = true;
                    break;
                }
                std::task::Poll::Ready(session) => session.unwrap().stop(EndReason::Deleted).await,
            }
        }
        assert!(
            cancelled,
            "no start was still under way after its first poll"
        );
        eventually("the slot is free", || runtime.live_sessions() == 0).await;
        let session = runtime
            .create_session(&server, &Principal::anonymous())
            .await
            .unwrap();
        session.stop(EndReason::Deleted).await;
    }

    /// The only sandbox scratch directory under `root` (32 hex digits), once one exists.
    fn only_scratch(root: &std::path::Path) -> Option<std::path::PathBuf> {
        let mut dirs = std::fs::read_dir(root).ok()?.filter_map(|e| {
            let e = e.ok()?;
            (e.file_name().len() == 32).then(|| e.path())
        });
        let dir = dirs.next()?;
        dirs.next().is_none().then_some(dir)
    }

    /// Runs one session of `owner` until its server has recorded its `nth` visit, then
    /// ends it.
    async fn visit(runtime: &Arc<Runtime>, owner: &Principal, nth: usize) {
        let server = runtime.servers()[0].clone();
        let session = runtime.create_session(&server, owner).await.unwrap();
        let root = runtime.config.scratch_root.clone();
        eventually("the server recorded the visit", || {
            only_scratch(&root)
                .and_then(|d| std::fs::read_to_string(d.join("visits")).ok())
                .is_some_and(|v| v.lines().count() == nth)
        })
        .await;
        session.stop(EndReason::Deleted).await;
        eventually("the sandbox is gone", || {
            runtime.live_sessions() == 0 && only_scratch(&root).is_none()
        })
        .await;
    }

    #[tokio::test]
    async fn principal_storage_keeps_a_users_files_for_their_next_session_only() {
        let scratch = tempfile::tempdir().unwrap();
        let spec = ServerSpec {
            name: "notes".into(),
            // Records what the last session left, adds a visit, then waits.
            command: [
                "sh",
                "-c",
                "cat visits > seen 2>/dev/null; echo v >> visits; exec cat",
            ]
            .map(String::from)
            .to_vec(),
            env: Default::default(),
            limits: Limits::default(),
            backend: Arc::new(ProcessBackend),
            protocol: crate::Protocol::Auto,
            anonymous: Anonymous::Fresh,
            warm_pool: 0,
            transport: Transport::Stdio,
            quota: crate::Quota::default(),
            continuity: Default::default(),
            storage: crate::Storage::Principal,
            storage_ttl: Duration::from_secs(3600),
        };
        let config = SessionConfig {
            scratch_root: scratch.path().to_path_buf(),
            ..SessionConfig::default()
        };
        let runtime = Runtime::new(vec![spec], config);
        let (alice, bob) = (
            Principal::new("https://idp", "alice"),
            Principal::new("https://idp", "bob"),
        );
        let kept = |p: &Principal| {
            crate::storage::kept_dir(scratch.path(), &runtime.servers()[0].spec, p).unwrap()
        };
        let read = |p: &Principal, f: &str| std::fs::read_to_string(kept(p).join(f)).unwrap();

        visit(&runtime, &alice, 1).await;
        assert_eq!(
            (read(&alice, "seen"), read(&alice, "visits")),
            ("".into(), "v\n".into())
        );
        visit(&runtime, &alice, 2).await;
        assert_eq!(
            (read(&alice, "seen"), read(&alice, "visits")),
            ("v\n".into(), "v\nv\n".into())
        );
        // Another user starts from nothing, and leaves alice's files alone.
        visit(&runtime, &bob, 1).await;
        assert_eq!(
            (read(&bob, "seen"), read(&bob, "visits")),
            ("".into(), "v\n".into())
        );
        assert_eq!(read(&alice, "visits"), "v\nv\n");
        // Without authentication nothing is kept: it would be everyone's.
        visit(&runtime, &Principal::anonymous(), 1).await;
        let stores = std::fs::read_dir(crate::storage::server_root(scratch.path(), "notes"))
            .unwrap()
            .count();
        assert_eq!(stores, 2);
        assert!(
            crate::storage::kept_dir(
                scratch.path(),
                &runtime.servers()[0].spec,
                &Principal::anonymous()
            )
            .is_none()
        );
        // A store unused for storage_ttl is swept; a fresher one stays.
        let old = std::time::SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::open(kept(&alice))
            .unwrap()
            .set_modified(old)
            .unwrap();
        crate::storage::sweep(scratch.path(), &runtime.servers()[0].spec, false);
        assert!(!kept(&alice).exists());
        assert!(kept(&bob).exists());
        // Alice's next session starts afresh.
        visit(&runtime, &alice, 1).await;
        assert_eq!(read(&alice, "seen"), "");
    }

    /// A legacy server in Python: answers `initialize`, and `tools/call` with its pid
    /// and the principal it runs for.
    const WHO_SERVER: &str = r#"
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m or "method" not in m:
        continue
    if m["method"] == "initialize":
        r = {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}},
             "serverInfo": {"name": "who", "version": "1"}}
    elif m["method"] == "tools/call":
        who = "%d %s" % (os.getpid(), os.environ.get("LODGE_PRINCIPAL", ""))
        r = {"content": [{"type": "text", "text": who}]}
    else:
        r = {}
    print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": r}), flush=True)
"#;

    async fn answer(session: &SessionHandle, body: serde_json::Value) -> serde_json::Value {
        let message = crate::Message::parse(bytes::Bytes::from(body.to_string())).unwrap();
        let mut events = session.requests(vec![message], false).await.unwrap();
        while let Some(event) = events.recv().await {
            if event.is_response {
                return serde_json::from_slice(&event.data).unwrap();
            }
        }
        panic!("no response to {body}");
    }

    /// A legacy client's whole session: initialize, one call; returns the call's text.
    async fn legacy_who(runtime: &Arc<Runtime>, owner: &Principal) -> (SessionHandle, String) {
        let server = runtime.servers()[0].clone();
        let session = runtime.create_session(&server, owner).await.unwrap();
        let init = answer(
            &session,
            serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
                "protocolVersion":"2025-06-18","capabilities":{},
                "clientInfo":{"name":"t","version":"1"}}}),
        )
        .await;
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
        let initialized = serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        let initialized =
            crate::Message::parse(bytes::Bytes::from(initialized.to_string())).unwrap();
        session.deliver(initialized).await.unwrap();
        let call = answer(
            &session,
            serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
                "params":{"name":"who","arguments":{}}}),
        )
        .await;
        let text = call["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{call}"));
        (session, text.to_owned())
    }

    #[tokio::test]
    async fn with_principal_continuity_a_principals_legacy_sessions_share_its_one_sandbox() {
        if std::process::Command::new("python3")
            .arg("-c")
            .arg("")
            .status()
            .is_err()
        {
            eprintln!("skipping: no python3 on PATH");
            return;
        }
        let scratch = tempfile::tempdir().unwrap();
        let mut spec = runtime(scratch.path()).servers()[0].spec.clone();
        spec.command = ["python3", "-c", WHO_SERVER].map(String::from).to_vec();
        spec.continuity = crate::Continuity::Principal;
        let config = SessionConfig {
            scratch_root: scratch.path().to_path_buf(),
            ..SessionConfig::default()
        };
        let runtime = Runtime::new(vec![spec], config);
        let (alice, bob) = (
            Principal::new("https://idp", "alice"),
            Principal::new("https://idp", "bob"),
        );

        let (first, a1) = legacy_who(&runtime, &alice).await;
        assert!(a1.ends_with(" alice"), "{a1}");
        // The first client's session ends; the sandbox does not.
        first.stop(EndReason::Deleted).await;
        let (second, a2) = legacy_who(&runtime, &alice).await;
        assert_eq!(
            a2, a1,
            "a second session of alice reaches the same server process"
        );
        assert_ne!(second.id(), first.id());
        let (_, b) = legacy_who(&runtime, &bob).await;
        assert!(b.ends_with(" bob"), "{b}");
        assert_ne!(
            b.split(' ').next(),
            a1.split(' ').next(),
            "bob gets a sandbox of his own"
        );
        // Two sandboxes (alice's, bob's), two live views (alice's second, bob's).
        assert_eq!(runtime.live_sessions(), 4);
        // When alice's sandbox ends, so does her view of it.
        let behind = runtime
            .sessions()
            .into_iter()
            .find(|s| s.is_modern() && s.owner() == &alice)
            .unwrap();
        behind.stop(EndReason::Deleted).await;
        eventually("alice's view ends with her sandbox", || {
            matches!(runtime.lookup(second.id()), Lookup::Ended(_))
        })
        .await;
        assert_eq!(runtime.live_sessions(), 2);
        runtime.shutdown(Duration::from_secs(1)).await;
    }
}
