use crate::session::Protocol;
use lodge_sandbox::{Backend, Limits};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Session lifecycle and buffering settings shared by every server.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Idle time (no client request in flight) after which a session ends.
    pub idle_timeout: Duration,
    /// Absolute lifetime of a session, counted from its creation.
    pub max_lifetime: Duration,
    /// Live sessions allowed at once, over all servers.
    pub max_sessions: usize,
    /// Events kept per stream for `Last-Event-ID` replay.
    pub event_buffer: usize,
    /// Time a server gets between SIGTERM and SIGKILL.
    pub terminate_grace: Duration,
    /// Bytes of a server's stderr logged per session.
    pub stderr_cap: usize,
    /// `[session] stderr_dir`: each session's server stderr also goes to
    /// `DIR/SERVER-SANDBOX.log` (the sandbox id is in the `session started` log line).
    pub stderr_dir: Option<std::path::PathBuf>,
    /// `[session] stderr_file_bytes`: the most one such file holds.
    pub stderr_file_bytes: u64,
    /// `[audit]`, started (`Audit::start`): `None` when off.
    pub audit: Option<Arc<crate::Audit>>,
    /// Longest message line accepted from a server.
    pub max_message_bytes: usize,
    /// Where per-session scratch directories are made.
    pub scratch_root: PathBuf,
    /// How long a 2026-07-28 client has to retry an `input_required` result Lodge
    /// made for a bridged legacy server (the sealed `requestState`'s lifetime).
    pub request_state_ttl: Duration,
    /// How long a call may wait for its server's answer, from its start or from the
    /// server's last progress report on it; then the client gets an error and the
    /// server a cancellation. Not counted while the server waits on the client.
    pub request_timeout: Duration,
    /// Bytes of server messages one session may keep unread (held for a stream that
    /// is not open, buffered for replay, queued for a client that does not read); past
    /// it, finished streams' replay logs go first, then the session ends.
    pub max_buffered_bytes: usize,
    /// The same, for all sessions together; past it, the sessions holding more than a
    /// 64th of it end.
    pub max_buffered_bytes_total: usize,
    /// Keys for sealing `requestState`s (`None`: a random key, valid in this process).
    pub request_state_keys: Option<Arc<lodge_proto::seal::KeyRing>>,
    /// Mints and opens session ids (`None`: this node alone, with a random key).
    pub session_tokens: Option<lodge_cluster::TokenCodec>,
    /// Cluster-wide limits every new session is admitted against (cluster mode).
    pub admission: Option<Arc<dyn crate::Admission>>,
    /// `[admin] event_payloads`: each protocol event of a session (the admin API's
    /// `events`) keeps its message's JSON text, cut to 4 KiB; at most 50 events, so
    /// 200 KiB a session. Off by default: payloads may hold users' data.
    pub event_payloads: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout: Duration::from_secs(15 * 60),
            max_lifetime: Duration::from_secs(8 * 3600),
            max_sessions: 1000,
            event_buffer: 1024,
            terminate_grace: Duration::from_secs(2),
            stderr_cap: 1 << 20,
            stderr_dir: None,
            stderr_file_bytes: 16 << 20,
            audit: None,
            max_message_bytes: 16 << 20,
            scratch_root: lodge_sandbox::default_scratch_root(),
            request_state_ttl: Duration::from_secs(600),
            request_state_keys: None,
            session_tokens: None,
            admission: None,
            request_timeout: Duration::from_secs(30 * 60),
            max_buffered_bytes: 64 << 20,
            max_buffered_bytes_total: 1 << 30,
            event_payloads: false,
        }
    }
}

/// One MCP server Lodge hosts: how to start it, and in which sandbox.
#[derive(Clone)]
pub struct ServerSpec {
    pub name: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub limits: Limits,
    pub backend: Arc<dyn Backend>,
    /// The era 2026-07-28 clients are served in: passed through, or bridged.
    pub protocol: Protocol,
    /// Where 2026-07-28 requests without `Lodge-Session-Id` run.
    pub anonymous: Anonymous,
    /// Sandboxes kept started and waiting, so a new session skips the spawn.
    pub warm_pool: usize,
    pub transport: Transport,
    /// What one principal may start of this server.
    pub quota: crate::Quota,
    /// Whether one principal's requests share one sandbox.
    pub continuity: Continuity,
    /// Whether a principal's `/session` files outlive its sandboxes.
    pub storage: crate::Storage,
    /// With `storage = principal`: kept files unused this long are removed.
    pub storage_ttl: Duration,
}

/// How Lodge speaks to a hosted server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// JSON-RPC lines on stdin/stdout.
    #[default]
    Stdio,
    /// Streamable HTTP on a port inside the sandbox.
    Http { port: u16, path: String },
}

/// Where a 2026-07-28 request that names no runtime session runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anonymous {
    /// In a fresh sandbox of its own: no state leaks between such requests.
    #[default]
    Fresh,
    /// In one sandbox shared by all such requests: cheaper, and server-wide
    /// notifications (list changes) reach every listener.
    Shared,
}

/// How much of a principal's use of a server one sandbox serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Continuity {
    /// Each session its own sandbox; a 2026-07-28 request lands in the runtime session
    /// its `Lodge-Session-Id` names.
    #[default]
    Session,
    /// Every 2026-07-28 request of one principal lands in that principal's one runtime
    /// session of the server, whatever `Lodge-Session-Id` it names (an ended one
    /// included), until the sandbox's idle timeout or lifetime ends it: for clients
    /// that drop or never keep session ids. Without authentication every client is
    /// the one anonymous principal: they all share one sandbox.
    Principal,
}
