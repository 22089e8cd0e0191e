//! The TOML config file's format, exactly as written: every key optional, unknown keys
//! refused. Nothing here checks values or applies defaults.

use lodge_runtime::{Anonymous, Protocol};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    pub max_body_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub keep_alive_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub body_read_timeout: Option<Duration>,
    pub max_connections_per_client: Option<usize>,
    pub startup_check: Option<bool>,
    pub log_format: Option<String>,
    #[serde(default)]
    pub session: SessionSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub quota: QuotaSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub otlp: OtlpSection,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub server: Vec<ServerSection>,
}

/// `[cluster]`: this node's name, the key its session tokens are sealed with, and,
/// with a `node_id`, how it meets the other nodes.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterSection {
    pub node_id: Option<String>,
    pub key_file: Option<PathBuf>,
    pub redis_url: Option<String>,
    pub internal_listen: Option<std::net::SocketAddr>,
    pub advertise: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub drain_deadline: Option<std::time::Duration>,
    /// Live sessions in the whole cluster.
    pub max_sessions: Option<u32>,
}

/// `[auth]`: Lodge as an OAuth resource server.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthSection {
    /// none (default) | oauth
    pub mode: Option<String>,
    /// The canonical resource URI (RFC 8707); default `http://LISTEN/mcp`.
    pub resource: Option<String>,
    #[serde(default)]
    pub issuers: Vec<String>,
    pub jwks_url: Option<String>,
    pub introspection: Option<IntrospectionSection>,
    /// Required on every MCP request.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    pub principal_claim: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub leeway: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub introspection_cache: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IntrospectionSection {
    pub url: String,
    pub client_id: String,
    pub client_secret_file: PathBuf,
}

/// `[quota]`, and a `[[server]]`'s `quota`: per principal; 0 = unlimited.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaSection {
    pub max_sessions: Option<u32>,
    pub sessions_per_minute: Option<u32>,
}

/// `[audit]`: the audit log; off without `path`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditSection {
    pub path: Option<PathBuf>,
    pub include_content: Option<bool>,
    pub max_file_bytes: Option<String>,
    pub keep_files: Option<u32>,
}

/// `[otlp]`: span export to an OpenTelemetry collector; off without `endpoint`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct OtlpSection {
    /// The collector's OTLP/HTTP base URL; spans go to `ENDPOINT/v1/traces`.
    pub endpoint: Option<String>,
    /// `service.name` of the spans; default `lodge`.
    pub service_name: Option<String>,
}

/// `[admin]`: who may use the admin listener.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminSection {
    pub token_file: Option<PathBuf>,
    /// Or an `[auth]` token with this scope.
    pub scope: Option<String>,
    /// Protocol events in `GET /admin/sessions/{id}` carry their message's JSON text
    /// (its first 4 KiB).
    #[serde(default)]
    pub event_payloads: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionSection {
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max_lifetime: Option<Duration>,
    pub max_sessions: Option<usize>,
    pub event_buffer: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub terminate_grace: Option<Duration>,
    pub scratch_root: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub request_state_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
    /// Unread server messages one session may keep ("64MiB").
    pub max_buffered_bytes: Option<String>,
    /// The same for all sessions together ("1GiB").
    pub max_buffered_bytes_total: Option<String>,
    /// Keys that seal `requestState`s: `KEY_ID BASE64_OF_32_BYTES` per line, current first.
    pub request_state_key_file: Option<PathBuf>,
    /// Each session's server stderr also goes to a file of its own in this directory.
    pub stderr_dir: Option<PathBuf>,
    /// The most one such file holds ("16MiB").
    pub stderr_file_bytes: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSection {
    pub name: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub transport: Option<String>,
    /// `transport = "http"`: the port the server listens on inside its sandbox.
    pub port: Option<u16>,
    /// `transport = "http"`: the path of its MCP endpoint.
    pub path: Option<String>,
    /// How 2026-07-28 clients reach it: auto | legacy (bridged) | modern (passed through).
    #[serde(default)]
    pub protocol: Protocol,
    /// Where 2026-07-28 requests without Lodge-Session-Id run: fresh | shared.
    #[serde(default)]
    pub anonymous: Anonymous,
    /// Sandboxes kept started ahead of demand.
    #[serde(default)]
    pub warm_pool: usize,
    /// Overrides `[quota]` for this server.
    pub quota: Option<QuotaSection>,
    /// Which sandbox a principal's requests land in: session | principal (one for all).
    #[serde(default)]
    pub continuity: lodge_runtime::Continuity,
    /// Whose /session files these are: session | principal (kept across sandboxes).
    #[serde(default)]
    pub storage: lodge_runtime::Storage,
    /// storage = "principal": kept files unused this long are removed (default 14d).
    #[serde(default, with = "humantime_serde")]
    pub storage_ttl: Option<Duration>,
    #[serde(default)]
    pub sandbox: SandboxSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SandboxSection {
    /// This server's backend: process | namespaces (others keep their own).
    pub backend: Option<String>,
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    /// The server's RLIMIT_NOFILE (default 1024), every backend.
    pub open_files: Option<u64>,
    /// The server's RLIMIT_FSIZE, e.g. "1GiB" (default unlimited), every backend.
    pub file_size: Option<String>,
    /// `/session`'s size, e.g. "256MiB", or "unlimited" (default: half of `memory`, at
    /// most 1GiB), namespaces backend.
    pub disk: Option<String>,
    /// How many files and directories `/session` may hold (default 65536).
    pub inodes: Option<u64>,
    pub network: Option<String>,
    /// A directory to use as the sandbox's root (an unpacked container image).
    pub rootfs: Option<PathBuf>,
    /// Extra bind mounts, `SRC[:DST][:ro|rw]`.
    #[serde(default)]
    pub binds: Vec<String>,
}
