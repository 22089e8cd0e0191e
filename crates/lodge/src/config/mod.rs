//! `lodge serve` settings: the TOML file, then command-line flags, then `LODGE_*`
//! environment variables, each overriding the one before (DESIGN.md §3).
//!
//! [`Settings::load`] only parses, checks and resolves: it never probes the host nor
//! builds a sandbox backend, so it can be tested anywhere. [`build_servers`] is the
//! step that does, when Lodge starts serving.

mod auth;
mod backend;
mod file;
mod server;

pub use auth::AdminSettings;
pub use lodge_http::auth::AuthConfig;

pub use backend::{BackendKind, build_servers, probe_host, sandbox_helper};
pub use server::ServerConfig;

use anyhow::{Context, bail};
use clap::Args;
use file::FileConfig;
use lodge_http::FrontConfig;
use lodge_runtime::SessionConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Address of the MCP endpoint [default: 127.0.0.1:8787].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address of the admin listener (/healthz, /readyz, /admin/sessions).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Sandbox backend for every server, whatever the config file says: process | namespaces.
    #[arg(long)]
    pub backend: Option<BackendKind>,
    /// End a session after this long with no request in flight (e.g. 90s, 15m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// End a session this long after it started, busy or not (e.g. 8h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_lifetime: Option<Duration>,
    /// Most live sessions at once.
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// Host the bundled demo server (a trip planner that elicits, samples and reports progress).
    #[arg(long, conflicts_with = "command")]
    pub demo: bool,
    /// A stdio MCP server to host, e.g. `-- python3 server.py`.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Everything `lodge serve` needs, resolved.
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub front: FrontConfig,
    pub session: SessionConfig,
    pub servers: Vec<ServerConfig>,
    /// `[auth]`: `None` when authentication is off. [`Settings::bound`] builds the
    /// front's validator from it once the listener's address is known.
    pub auth: Option<AuthConfig>,
    /// `[auth] resource` was not set: it is this Lodge's own address.
    pub resource_from_listen: bool,
    /// `[admin]`: who may use the admin listener.
    pub admin: AdminSettings,
    /// The config file, as an absolute path: no sandbox may read it.
    pub config_file: Option<PathBuf>,
    /// Check every server once before serving, and refuse to start on a broken one
    /// (`startup_check`, `LODGE_STARTUP_CHECK`; on by default).
    pub startup_check: bool,
    /// `log_format`, `LODGE_LOG_FORMAT`: text (default) or JSON lines.
    pub log_format: LogFormat,
    /// `[audit]`: `None` when off; `lodge serve` starts it.
    pub audit: Option<lodge_runtime::AuditConfig>,
    /// `[otlp]`, `LODGE_OTLP_ENDPOINT`: `None` when spans are not exported.
    pub otlp: Option<OtlpConfig>,
    /// `[cluster]` with a `node_id`: `None` for a Lodge on its own.
    pub cluster: Option<ClusterSettings>,
}

/// One node of a cluster: how it meets the others.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node: lodge_cluster::NodeId,
    pub keys: Arc<lodge_runtime::KeyRing>,
    pub redis_url: String,
    /// The node-to-node listener.
    pub internal_listen: SocketAddr,
    /// `host:port` other nodes reach `internal_listen` at.
    pub advertise: String,
    /// On SIGTERM: how long live sessions are still served before they are ended.
    pub drain_deadline: Duration,
    /// Live sessions in the whole cluster (`None`: only each node's own limit).
    pub max_sessions: Option<u32>,
}

/// `[cluster] drain_deadline` unless set.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Where `lodge serve` exports its spans (the `otlp` cargo feature).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// `[otlp] endpoint` + `/v1/traces`.
    pub traces_url: String,
    pub service_name: String,
}

impl OtlpConfig {
    fn new(endpoint: &str, service_name: Option<String>) -> anyhow::Result<OtlpConfig> {
        let Some((scheme, rest)) = endpoint
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
        else {
            bail!(
                "[otlp] endpoint {endpoint:?} must be an http:// or https:// URL (the collector's OTLP/HTTP port, usually 4318)"
            );
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
            bail!("[otlp] endpoint {endpoint:?} names no host");
        }
        let service_name = service_name.unwrap_or_else(|| "lodge".into());
        if service_name.trim().is_empty() {
            bail!("[otlp] service_name must not be empty");
        }
        Ok(OtlpConfig {
            traces_url: format!("{scheme}://{rest}/v1/traces"),
            service_name,
        })
    }
}

/// How `lodge serve` writes its log on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line, with the span fields (session, server, method, principal).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log_format {other:?}; expected text or json"
            )),
        }
    }
}

/// `LODGE_*` variables, read once so tests can pass their own.
pub struct Env(pub BTreeMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Env(std::env::vars()
            .filter(|(k, _)| k.starts_with("LODGE_"))
            .collect())
    }

    fn get<T: std::str::FromStr>(&self, key: &str) -> anyhow::Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.0
            .get(key)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| anyhow::anyhow!("{key}={v:?}: {e}"))
            })
            .transpose()
    }

    fn duration(&self, key: &str) -> anyhow::Result<Option<Duration>> {
        self.0
            .get(key)
            .map(|v| {
                humantime::parse_duration(v)
                    .with_context(|| format!("{key}={v:?} is not a duration like 90s or 15m"))
            })
            .transpose()
    }
}

impl Settings {
    pub fn load(args: ServeArgs, env: &Env) -> anyhow::Result<Settings> {
        let config_path = args.config.clone().or(env.get::<PathBuf>("LODGE_CONFIG")?);
        let (file, file_dir) = match &config_path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let file: FileConfig = toml::from_str(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?;
                (
                    file,
                    path.parent().map(Path::to_path_buf).unwrap_or_default(),
                )
            }
            None => (FileConfig::default(), PathBuf::new()),
        };
        Settings::resolve(file, &file_dir, config_path, args, env)
    }

    /// Config text checked as `lodge serve --config FILE` checks it, with no flags and
    /// no `LODGE_*` variables (what `fuzz/` runs on arbitrary text). Files the text
    /// names are resolved against `file_dir`.
    #[doc(hidden)]
    pub fn from_text(text: &str, file_dir: &Path) -> anyhow::Result<Settings> {
        let file: FileConfig = toml::from_str(text).context("invalid config")?;
        Settings::resolve(
            file,
            file_dir,
            None,
            ServeArgs::default(),
            &Env(BTreeMap::new()),
        )
    }

    fn resolve(
        file: FileConfig,
        file_dir: &Path,
        config_path: Option<PathBuf>,
        args: ServeArgs,
        env: &Env,
    ) -> anyhow::Result<Settings> {
        // --backend and LODGE_BACKEND apply to every server; otherwise each server's
        // own `[server.sandbox] backend` applies to it alone.
        let every_server = env.get::<BackendKind>("LODGE_BACKEND")?.or(args.backend);
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let servers = if args.demo {
            let exe = std::env::current_exe().context("cannot find the lodge executable")?;
            let command = vec![exe.display().to_string(), "demo-server".into()];
            vec![ServerConfig::plain("demo", command, every_server).with_quota(file.quota)]
        } else if !args.command.is_empty() {
            let command = server::absolutize_paths(args.command.clone(), &cwd);
            let name = Path::new(&command[0])
                .file_stem()
                .map_or("server".into(), |s| s.to_string_lossy().into_owned());
            vec![ServerConfig::plain(&name, command, every_server).with_quota(file.quota)]
        } else {
            file.server
                .into_iter()
                .map(|s| ServerConfig::from_section(s, file_dir, every_server, file.quota))
                .collect::<anyhow::Result<_>>()?
        };
        if servers.is_empty() {
            bail!(
                "nothing to serve: put a stdio MCP server command after `--` (lodge serve -- python3 server.py), use --demo, or add a [[server]] to the config file"
            );
        }
        let mut names = std::collections::HashSet::new();
        for s in &servers {
            if !names.insert(s.name.as_str()) {
                bail!(
                    "two servers are named {:?}; names must be unique (each is served at /mcp/NAME)",
                    s.name
                );
            }
        }

        let (cluster_keys, cluster) = cluster_settings(&file.cluster, file_dir)?;
        let defaults = SessionConfig::default();
        let s = file.session;
        let session = SessionConfig {
            idle_timeout: pick(
                env.duration("LODGE_IDLE_TIMEOUT")?,
                args.idle_timeout,
                s.idle_timeout,
                defaults.idle_timeout,
            ),
            max_lifetime: pick(
                env.duration("LODGE_MAX_LIFETIME")?,
                args.max_lifetime,
                s.max_lifetime,
                defaults.max_lifetime,
            ),
            max_sessions: pick(
                env.get("LODGE_MAX_SESSIONS")?,
                args.max_sessions,
                s.max_sessions,
                defaults.max_sessions,
            ),
            event_buffer: s.event_buffer.unwrap_or(defaults.event_buffer),
            terminate_grace: s.terminate_grace.unwrap_or(defaults.terminate_grace),
            scratch_root: s.scratch_root.unwrap_or(defaults.scratch_root),
            request_state_ttl: s.request_state_ttl.unwrap_or(defaults.request_state_ttl),
            request_timeout: s.request_timeout.unwrap_or(defaults.request_timeout),
            max_buffered_bytes: bytes_setting(
                "max_buffered_bytes",
                s.max_buffered_bytes.as_deref(),
                defaults.max_buffered_bytes,
            )?,
            max_buffered_bytes_total: bytes_setting(
                "max_buffered_bytes_total",
                s.max_buffered_bytes_total.as_deref(),
                defaults.max_buffered_bytes_total,
            )?,
            stderr_dir: s.stderr_dir.as_ref().map(|dir| file_dir.join(dir)),
            stderr_file_bytes: bytes_setting(
                "stderr_file_bytes",
                s.stderr_file_bytes.as_deref(),
                defaults.stderr_file_bytes as usize,
            )? as u64,
            request_state_keys: match &s.request_state_key_file {
                Some(path) => Some(Arc::new(read_key_file(&file_dir.join(path))?)),
                // A cluster's retries open on any node: the cluster key seals them.
                None => cluster.as_ref().map(|c| c.keys.clone()),
            },
            event_payloads: file.admin.event_payloads,
            session_tokens: cluster_keys
                .clone()
                .map(|(keys, node)| lodge_cluster::TokenCodec::new(keys, node)),
            ..defaults
        };
        if session.max_sessions == 0 {
            bail!("max_sessions must be at least 1");
        }
        let front_defaults = FrontConfig::default();
        let header_read_timeout = file
            .header_read_timeout
            .unwrap_or(front_defaults.header_read_timeout);
        let body_read_timeout = file
            .body_read_timeout
            .unwrap_or(front_defaults.body_read_timeout);
        let keep_alive_timeout = file
            .keep_alive_timeout
            .unwrap_or(front_defaults.keep_alive_timeout);
        let max_connections_per_client = file
            .max_connections_per_client
            .unwrap_or(front_defaults.max_connections_per_client);
        if header_read_timeout.is_zero()
            || body_read_timeout.is_zero()
            || keep_alive_timeout.is_zero()
        {
            bail!(
                "header_read_timeout, body_read_timeout and keep_alive_timeout must be longer than 0s"
            );
        }
        if max_connections_per_client == 0 {
            bail!("max_connections_per_client must be at least 1");
        }
        let default_listen = SocketAddr::from(([127, 0, 0, 1], 8787));
        let listen = pick(
            env.get("LODGE_LISTEN")?,
            args.listen,
            file.listen,
            default_listen,
        );
        let resource_from_listen = file.auth.resource.is_none();
        let auth_config = auth::auth(file.auth, listen, file_dir)?;
        let admin = auth::admin(file.admin, auth_config.as_ref(), file_dir)?;
        Ok(Settings {
            listen,
            cluster,
            admin_listen: env
                .get("LODGE_ADMIN_LISTEN")?
                .or(args.admin_listen)
                .or(file.admin_listen),
            startup_check: env
                .get("LODGE_STARTUP_CHECK")?
                .or(file.startup_check)
                .unwrap_or(true),
            audit: match file.audit.path {
                None => None,
                Some(path) => Some(lodge_runtime::AuditConfig {
                    path: file_dir.join(path),
                    include_content: file.audit.include_content.unwrap_or(false),
                    max_file_bytes: match file.audit.max_file_bytes.as_deref() {
                        None => 64 << 20,
                        Some(text) => {
                            server::parse_bytes(text).context("invalid audit.max_file_bytes")?
                        }
                    },
                    keep_files: file.audit.keep_files.unwrap_or(5),
                }),
            },
            otlp: match env
                .get::<String>("LODGE_OTLP_ENDPOINT")?
                .or(file.otlp.endpoint)
            {
                Some(endpoint) if !endpoint.is_empty() => {
                    Some(OtlpConfig::new(&endpoint, file.otlp.service_name)?)
                }
                _ => None,
            },
            log_format: match env.get("LODGE_LOG_FORMAT")? {
                Some(format) => format,
                None => file
                    .log_format
                    .as_deref()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e: String| anyhow::anyhow!("log_format: {e}"))?
                    .unwrap_or_default(),
            },
            front: FrontConfig {
                allowed_origins: file.allowed_origins,
                allowed_hosts: file.allowed_hosts,
                max_body_bytes: file
                    .max_body_bytes
                    .unwrap_or(FrontConfig::default().max_body_bytes),
                shutdown_grace: file
                    .shutdown_grace
                    .unwrap_or(FrontConfig::default().shutdown_grace),
                header_read_timeout,
                keep_alive_timeout,
                body_read_timeout,
                max_connections_per_client,
                // `lodge serve` adds these once it runs: the validator and the members.
                auth: None,
                cluster: None,
            },
            session,
            servers,
            auth: auth_config,
            resource_from_listen,
            admin,
            config_file: config_path.map(|p| std::path::absolute(&p).unwrap_or(p)),
        })
    }
}

impl Settings {
    /// Settings for a Lodge whose MCP listener is bound to `addr` (port 0 resolved):
    /// the default resource names that address, and the front gets its validator.
    pub fn bound(mut self, addr: SocketAddr) -> Settings {
        if let Some(auth) = &mut self.auth {
            if self.resource_from_listen {
                auth.resource = auth::default_resource(addr);
            }
            self.front.auth = Some(lodge_http::auth::Auth::new(auth.clone()));
        }
        self
    }
}

/// Environment, then flag, then file, then default.
fn pick<T>(env: Option<T>, flag: Option<T>, file: Option<T>, default: T) -> T {
    env.or(flag).or(file).unwrap_or(default)
}

/// A `[session]` byte size ("64MiB"), or its default.
fn bytes_setting(key: &str, text: Option<&str>, default: usize) -> anyhow::Result<usize> {
    let Some(text) = text else {
        return Ok(default);
    };
    let bytes = server::parse_bytes(text).with_context(|| format!("invalid session.{key}"))?;
    match usize::try_from(bytes) {
        Ok(bytes) if bytes > 0 => Ok(bytes),
        _ => bail!("session.{key} must be more than 0 bytes and fit this machine"),
    }
}

/// A key or secret file holds a line or two: anything past this is not one
/// (`/dev/zero`, say).
const KEY_FILE_MAX_BYTES: u64 = 64 * 1024;

/// A small file a setting names (`key` says which, in errors).
fn read_small_file(path: &Path, key: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(KEY_FILE_MAX_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("cannot read {key} {}", path.display()))?;
    if text.len() as u64 > KEY_FILE_MAX_BYTES {
        bail!(
            "{key} {} is over {KEY_FILE_MAX_BYTES} bytes: not a key file",
            path.display()
        );
    }
    Ok(text)
}

/// `[cluster]`: `None` (a random key, node `local`) unless a key file is set.
type ClusterKeys = (Arc<lodge_runtime::KeyRing>, lodge_cluster::NodeId);

/// `[cluster]`: the key session tokens are sealed with (`None`: a random one, node
/// `local`) and, with a `node_id`, the node's cluster settings.
fn cluster_settings(
    cluster: &file::ClusterSection,
    file_dir: &Path,
) -> anyhow::Result<(Option<ClusterKeys>, Option<ClusterSettings>)> {
    let node = match &cluster.node_id {
        Some(id) => lodge_cluster::NodeId::parse(id)
            .map_err(|e| anyhow::anyhow!("[cluster] node_id {id:?}: {e}"))?,
        None => lodge_cluster::NodeId::single(),
    };
    let keys = match &cluster.key_file {
        Some(path) => {
            let path = file_dir.join(path);
            let text = read_small_file(&path, "[cluster] key_file")?;
            let keys = lodge_runtime::KeyRing::parse(&text)
                .with_context(|| format!("invalid [cluster] key_file {}", path.display()))?;
            Some((Arc::new(keys), node.clone()))
        }
        None => None,
    };
    if cluster.node_id.is_none() {
        let set = [
            ("redis_url", cluster.redis_url.is_some()),
            ("internal_listen", cluster.internal_listen.is_some()),
            ("advertise", cluster.advertise.is_some()),
            ("drain_deadline", cluster.drain_deadline.is_some()),
            ("max_sessions", cluster.max_sessions.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
            bail!("[cluster] {key} needs node_id: it configures a node of a cluster");
        }
        return Ok((keys, None));
    }
    let Some((ring, _)) = &keys else {
        bail!(
            "[cluster] node_id needs key_file: every node seals and opens session ids \
             with the same key (`lodge cluster keygen --out FILE` writes one)"
        );
    };
    let Some(redis_url) = cluster.redis_url.clone() else {
        bail!("[cluster] node_id needs redis_url: nodes find each other through Redis");
    };
    if !redis_url.starts_with("redis://") && !redis_url.starts_with("unix://") {
        bail!("[cluster] redis_url {redis_url:?} must start with redis:// (or unix://)");
    }
    let Some(internal_listen) = cluster.internal_listen else {
        bail!(
            "[cluster] node_id needs internal_listen: the address other nodes forward requests to"
        );
    };
    let advertise = match &cluster.advertise {
        Some(advertise) => {
            lodge_cluster::Member::parse(node.clone(), &format!("v1 {advertise} 0")).map_err(
                |_| anyhow::anyhow!("[cluster] advertise {advertise:?} is not HOST:PORT"),
            )?;
            advertise.clone()
        }
        None if internal_listen.ip().is_unspecified() => bail!(
            "[cluster] internal_listen {internal_listen} listens on every address: set advertise to the one other nodes reach"
        ),
        None => internal_listen.to_string(),
    };
    if cluster.max_sessions == Some(0) {
        bail!("[cluster] max_sessions must be at least 1");
    }
    let settings = ClusterSettings {
        node,
        keys: ring.clone(),
        redis_url,
        internal_listen,
        advertise,
        drain_deadline: cluster.drain_deadline.unwrap_or(DEFAULT_DRAIN_DEADLINE),
        max_sessions: cluster.max_sessions,
    };
    Ok((keys, Some(settings)))
}

/// Reads the keys that seal `requestState`s (several nodes share one file, so a
/// client's retry opens on whichever node it reaches).
fn read_key_file(path: &Path) -> anyhow::Result<lodge_runtime::KeyRing> {
    let text = read_small_file(path, "request_state_key_file")?;
    lodge_runtime::KeyRing::parse(&text)
        .with_context(|| format!("invalid request_state_key_file {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    const FILE: &str = r#"
listen = "127.0.0.1:9000"
[session]
idle_timeout = "10m"
max_lifetime = "2h"
max_sessions = 5
max_buffered_bytes = "8MiB"
[[server]]
name = "a"
command = ["cat"]
env = { GREETING = "hi" }
[server.sandbox]
memory = "512MiB"
open_files = 64
file_size = "1GiB"
[[server]]
name = "b"
command = ["cat"]
"#;

    #[test]
    fn file_then_flags_then_env() {
        let f = config_file(FILE);
        let args = || ServeArgs {
            config: Some(f.path().into()),
            ..ServeArgs::default()
        };
        let s = Settings::load(args(), &env(&[])).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.session.idle_timeout, Duration::from_secs(600));
        assert_eq!(s.session.max_sessions, 5);
        assert!(!s.session.event_payloads, "off by default");
        assert_eq!(s.session.max_buffered_bytes, 8 << 20);
        assert_eq!(s.session.max_buffered_bytes_total, 1 << 30, "the default");
        assert_eq!(s.servers.len(), 2);
        assert_eq!(s.servers[0].env["GREETING"], "hi");
        assert_eq!(s.servers[0].limits.memory, Some(512 << 20));
        assert_eq!(s.servers[0].limits.open_files, Some(64));
        assert_eq!(s.servers[0].limits.file_size, Some(1 << 30));
        assert_eq!(s.servers[1].limits.open_files, None);

        let flagged = ServeArgs {
            idle_timeout: Some(Duration::from_secs(90)),
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..args()
        };
        let s = Settings::load(flagged, &env(&[])).unwrap();
        assert_eq!(s.session.idle_timeout, Duration::from_secs(90));
        assert_eq!(s.listen.port(), 9001);

        let flagged = ServeArgs {
            idle_timeout: Some(Duration::from_secs(90)),
            ..args()
        };
        let s = Settings::load(
            flagged,
            &env(&[
                ("LODGE_IDLE_TIMEOUT", "3s"),
                ("LODGE_LISTEN", "127.0.0.1:9002"),
            ]),
        )
        .unwrap();
        assert_eq!(s.session.idle_timeout, Duration::from_secs(3));
        assert_eq!(s.listen.port(), 9002);
    }

    #[test]
    fn request_state_keys_come_from_their_file_beside_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let key = "k2 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n";
        std::fs::write(dir.path().join("state.key"), key).unwrap();
        let config = dir.path().join("lodge.toml");
        let text = "[session]\nrequest_state_key_file = \"state.key\"\n[[server]]\nname = \"a\"\ncommand = [\"cat\"]\n";
        std::fs::write(&config, text).unwrap();
        let args = || ServeArgs {
            config: Some(config.clone()),
            ..ServeArgs::default()
        };
        let s = Settings::load(args(), &env(&[])).unwrap();
        assert_eq!(s.session.request_state_keys.unwrap().current_id(), "k2");
        std::fs::write(dir.path().join("state.key"), "k2 short\n").unwrap();
        let err = format!("{:#}", Settings::load(args(), &env(&[])).err().unwrap());
        assert!(err.starts_with("invalid request_state_key_file"), "{err}");
        assert!(
            err.ends_with("line 1: the key is not valid base64"),
            "{err}"
        );
        // A path to something endless is refused after 64 KiB, not read until memory ends.
        let endless = "[session]\nrequest_state_key_file = \"/dev/zero\"\n[[server]]\nname = \"a\"\ncommand = [\"cat\"]\n";
        let err = format!(
            "{:#}",
            Settings::from_text(endless, dir.path()).err().unwrap()
        );
        assert_eq!(
            err,
            "request_state_key_file /dev/zero is over 65536 bytes: not a key file"
        );
    }

    #[test]
    fn cluster_session_tokens_name_the_node_and_use_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let server = "[[server]]\nname = \"a\"\ncommand = [\"cat\"]\n";
        let load = |cluster: &str| {
            Settings::from_text(&format!("[cluster]\n{cluster}\n{server}"), dir.path())
                .map_err(|e| format!("{e:#}"))
        };
        assert!(load("").unwrap().session.session_tokens.is_none());
        std::fs::write(
            dir.path().join("cluster.key"),
            lodge_cluster::generate_key_file(),
        )
        .unwrap();
        let node = "node_id = \"lodge-1\"\nkey_file = \"cluster.key\"\n";
        let full = format!(
            "{node}redis_url = \"redis://10.0.0.9\"\ninternal_listen = \"10.0.0.1:8790\"\nmax_sessions = 9\n"
        );
        let settings = load(&full).unwrap();
        let tokens = settings.session.session_tokens.unwrap();
        assert_eq!(tokens.node().as_str(), "lodge-1");
        let cluster = settings.cluster.unwrap();
        assert_eq!(cluster.advertise, "10.0.0.1:8790");
        assert_eq!(cluster.drain_deadline, DEFAULT_DRAIN_DEADLINE);
        assert_eq!(cluster.max_sessions, Some(9));
        // A cluster's requestStates open on every node: they use the cluster key.
        assert_eq!(
            settings.session.request_state_keys.unwrap().current_id(),
            cluster.keys.current_id()
        );
        let err = load(node).err().unwrap();
        assert!(
            err.starts_with("[cluster] node_id needs redis_url"),
            "{err}"
        );
        let err = load(&format!("{node}redis_url = \"redis://x\""))
            .err()
            .unwrap();
        assert!(
            err.starts_with("[cluster] node_id needs internal_listen"),
            "{err}"
        );
        let every = format!("{node}redis_url = \"redis://x\"\ninternal_listen = \"0.0.0.0:8790\"");
        let err = load(&every).err().unwrap();
        assert!(
            err.contains("set advertise to the one other nodes reach"),
            "{err}"
        );
        let settings = load(&format!(
            "{every}\nadvertise = \"lodge-0.lodge:8790\"\ndrain_deadline = \"90s\""
        ));
        let cluster = settings.unwrap().cluster.unwrap();
        assert_eq!(cluster.advertise, "lodge-0.lodge:8790");
        assert_eq!(cluster.drain_deadline, Duration::from_secs(90));
        let err = load(&format!("{every}\nadvertise = \"a/b\""))
            .err()
            .unwrap();
        assert!(err.contains("advertise \"a/b\" is not HOST:PORT"), "{err}");
        let err = load(&format!("{node}redis_url = \"http://x\""))
            .err()
            .unwrap();
        assert!(err.contains("must start with redis://"), "{err}");
        let alone = load("key_file = \"cluster.key\"")
            .unwrap()
            .session
            .session_tokens;
        assert_eq!(alone.unwrap().node().as_str(), "local");
        assert!(
            load("node_id = \"a\"")
                .err()
                .unwrap()
                .starts_with("[cluster] node_id needs key_file")
        );
        assert!(
            load("node_id = \"a b\"\nkey_file = \"cluster.key\"")
                .err()
                .unwrap()
                .starts_with("[cluster] node_id \"a b\": a node id is 1 to 63 letters")
        );
        std::fs::write(dir.path().join("cluster.key"), "k1 AAAA\n").unwrap();
        let err = load("key_file = \"cluster.key\"").err().unwrap();
        assert!(err.starts_with("invalid [cluster] key_file"), "{err}");
        assert!(err.ends_with("the key must be exactly 32 bytes"), "{err}");
        let err = load("redis_url = \"redis://x\"").err().unwrap();
        assert_eq!(
            err,
            "[cluster] redis_url needs node_id: it configures a node of a cluster"
        );
        let err = load("colour = 1").err().unwrap();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn clear_errors_for_bad_input() {
        let err = |text: &str| {
            let f = config_file(text);
            Settings::load(
                ServeArgs {
                    config: Some(f.path().into()),
                    ..ServeArgs::default()
                },
                &env(&[]),
            )
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
        };
        assert!(err("").contains("nothing to serve"));
        assert!(err("lisen = 1").contains("unknown field `lisen`"));
        assert!(err("[session]\nidle_timeout = \"soon\"").contains("idle_timeout"));
        assert!(
            err("[[server]]\nname=\"a\"\ncommand=[\"x\"]\n[[server]]\nname=\"a\"\ncommand=[\"y\"]")
                .contains("unique")
        );
        assert!(
            err("[[server]]\nname=\"a b\"\ncommand=[\"x\"]").contains("must be non-empty letters")
        );
        assert!(
            err("[[server]]\nname=\"a\"\ncommand=[\"x\"]\n[server.sandbox]\nmemory=\"lots\"")
                .contains("invalid sandbox.memory")
        );
        let bad_env = Settings::load(
            ServeArgs {
                demo: true,
                ..ServeArgs::default()
            },
            &env(&[("LODGE_IDLE_TIMEOUT", "x")]),
        );
        assert!(format!("{:#}", bad_env.err().unwrap()).contains("LODGE_IDLE_TIMEOUT"));
    }

    #[test]
    fn otlp_export_is_off_unless_an_endpoint_is_set() {
        let load = |text: &str, pairs: &[(&str, &str)]| {
            let f = config_file(&format!(
                "[[server]]\nname = \"a\"\ncommand = [\"cat\"]\n{text}"
            ));
            let args = ServeArgs {
                config: Some(f.path().into()),
                ..ServeArgs::default()
            };
            Settings::load(args, &env(pairs)).map_err(|e| format!("{e:#}"))
        };
        assert_eq!(load("", &[]).unwrap().otlp, None);
        let on = load("[otlp]\nendpoint = \"http://collector:4318/\"\n", &[]).unwrap();
        assert_eq!(
            on.otlp,
            Some(OtlpConfig {
                traces_url: "http://collector:4318/v1/traces".into(),
                service_name: "lodge".into(),
            })
        );
        let named = load(
            "[otlp]\nendpoint = \"http://a:4318\"\nservice_name = \"edge\"\n",
            &[("LODGE_OTLP_ENDPOINT", "https://b:4318")],
        )
        .unwrap()
        .otlp
        .unwrap();
        assert_eq!(
            (named.traces_url.as_str(), named.service_name.as_str()),
            ("https://b:4318/v1/traces", "edge"),
            "the environment's endpoint wins"
        );
        let off = load(
            "[otlp]\nendpoint = \"http://a:4318\"\n",
            &[("LODGE_OTLP_ENDPOINT", "")],
        );
        assert_eq!(
            off.unwrap().otlp,
            None,
            "an empty variable turns export off"
        );
        for (text, says) in [
            (
                "endpoint = \"collector:4318\"",
                "must be an http:// or https:// URL",
            ),
            ("endpoint = \"http://\"", "names no host"),
            (
                "endpoint = \"http://a\"\nservice_name = \" \"",
                "service_name must not be empty",
            ),
            ("endpont = \"http://a\"", "unknown field `endpont`"),
        ] {
            let err = load(&format!("[otlp]\n{text}\n"), &[]).err().unwrap();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn auth_admin_and_quota_resolve_with_their_defaults_and_overrides() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("admin.token"), "0123456789abcdef0123\n").unwrap();
        let text = r#"
listen = "127.0.0.1:9000"
[auth]
mode = "oauth"
issuers = ["https://idp.example"]
scopes = ["mcp"]
introspection = { url = "https://idp.example/introspect", client_id = "lodge", client_secret_file = "secret" }
[quota]
max_sessions = 3
sessions_per_minute = 10
[admin]
token_file = "admin.token"
scope = "mcp:admin"
event_payloads = true
[[server]]
name = "a"
command = ["cat"]
quota = { max_sessions = 1 }
"#;
        let s = Settings::from_text(text, dir.path()).unwrap();
        let auth = s.auth.as_ref().unwrap();
        assert_eq!(auth.resource, "http://127.0.0.1:9000/mcp");
        assert_eq!(auth.principal_claim, "sub");
        assert_eq!(auth.leeway, Duration::from_secs(60));
        assert_eq!(auth.introspection_cache, Duration::from_secs(30));
        assert_eq!(auth.introspection.as_ref().unwrap().client_secret, "s3cret");
        let s = s.bound("127.0.0.1:9001".parse().unwrap());
        assert!(s.front.auth.is_some());
        assert_eq!(
            s.auth.as_ref().unwrap().resource,
            "http://127.0.0.1:9001/mcp"
        );
        assert_eq!(s.admin.token.as_deref(), Some("0123456789abcdef0123"));
        assert_eq!(s.admin.scope.as_deref(), Some("mcp:admin"));
        assert!(
            s.session.event_payloads,
            "[admin] event_payloads reaches the sessions"
        );
        let quota = s.servers[0].quota;
        assert_eq!((quota.max_sessions, quota.sessions_per_minute), (1, 10));
    }

    /// The README's example configuration is one Lodge accepts, as written.
    #[test]
    fn the_readme_configuration_block_is_valid() {
        let readme = include_str!("../../../../README.md");
        let section = readme.split("## Configuration").nth(1).unwrap();
        let block = section.split("```toml\n").nth(1).unwrap();
        let block = block.split("```").next().unwrap();
        let dir = tempfile::tempdir().unwrap();
        if let Err(e) = Settings::from_text(block, dir.path()) {
            panic!("{e:#}");
        }
    }

    #[test]
    fn auth_mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = |text: &str| {
            let text = format!("{text}\n[[server]]\nname = \"a\"\ncommand = [\"cat\"]\n");
            format!(
                "{:#}",
                Settings::from_text(&text, dir.path()).err().unwrap()
            )
        };
        assert!(err("[auth]\nmode = \"jwt\"").contains("expected \"none\" or \"oauth\""));
        assert!(err("[auth]\nmode = \"oauth\"").contains("needs issuers"));
        assert!(err("[auth]\nissuers = [\"https://i\"]").contains("mode is not \"oauth\""));
        let oauth = "[auth]\nmode = \"oauth\"\nissuers = [\"https://i\"]\n";
        assert!(err(&format!("{oauth}introspection_cache = \"5m\"")).contains("at most 60s"));
        assert!(err(&format!("{oauth}leeway = \"1h\"")).contains("at most 5m"));
        assert!(
            err("[auth]\nmode = \"oauth\"\nissuers = [\"idp\"]").contains("not an http(s) URL")
        );
        assert!(err("[admin]\nscope = \"admin\"").contains("needs [auth]"));
        let anywhere = format!("listen = \"0.0.0.0:8787\"\n{oauth}");
        assert!(err(&anywhere).contains("set it to the URL clients reach Lodge at"));
        std::fs::write(dir.path().join("short"), "abc").unwrap();
        assert!(err("[admin]\ntoken_file = \"short\"").contains("shorter than 16"));
        assert!(
            err("[admin]\ntoken_file = \"missing\"").contains("cannot read [admin] token_file")
        );
        assert!(err("[quota]\nmax_session = 1").contains("unknown field `max_session`"));
    }

    #[test]
    fn sizes() {
        assert_eq!(server::parse_bytes("4096").unwrap(), 4096);
        assert_eq!(server::parse_bytes("1GiB").unwrap(), 1 << 30);
        assert!(server::parse_bytes("1TB").is_err());
    }

    #[test]
    fn relative_script_paths_become_absolute() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.py"), "").unwrap();
        let cmd = server::absolutize_paths(
            vec!["python3".into(), "server.py".into(), "--flag".into()],
            dir.path(),
        );
        assert_eq!(cmd[0], "python3");
        assert_eq!(cmd[1], dir.path().join("server.py").display().to_string());
        assert_eq!(cmd[2], "--flag");
    }

    const MIXED: &str = r#"
[[server]]
name = "plain"
command = ["cat"]
[server.sandbox]
backend = "process"
[[server]]
name = "boxed"
command = ["cat"]
[server.sandbox]
backend = "namespaces"
[[server]]
name = "unsaid"
command = ["cat"]
"#;

    fn backends(args: ServeArgs, env: &Env) -> Vec<(String, Option<BackendKind>)> {
        Settings::load(args, env)
            .unwrap()
            .servers
            .into_iter()
            .map(|s| (s.name, s.backend))
            .collect()
    }

    fn named(pairs: &[(&str, Option<BackendKind>)]) -> Vec<(String, Option<BackendKind>)> {
        pairs.iter().map(|(n, b)| (n.to_string(), *b)).collect()
    }

    #[test]
    fn each_server_keeps_its_own_backend() {
        let f = config_file(MIXED);
        let args = ServeArgs {
            config: Some(f.path().into()),
            ..ServeArgs::default()
        };
        assert_eq!(
            backends(args, &env(&[])),
            named(&[
                ("plain", Some(BackendKind::Process)),
                ("boxed", Some(BackendKind::Namespaces)),
                ("unsaid", None),
            ])
        );
    }

    #[test]
    fn the_flag_then_the_environment_override_every_server() {
        let f = config_file(MIXED);
        let args = |backend| ServeArgs {
            config: Some(f.path().into()),
            backend,
            ..ServeArgs::default()
        };
        let all = |kind| named(&[("plain", kind), ("boxed", kind), ("unsaid", kind)]);
        assert_eq!(
            backends(args(Some(BackendKind::Process)), &env(&[])),
            all(Some(BackendKind::Process))
        );
        assert_eq!(
            backends(
                args(Some(BackendKind::Process)),
                &env(&[("LODGE_BACKEND", "namespaces")])
            ),
            all(Some(BackendKind::Namespaces))
        );
        assert_eq!(
            backends(args(None), &env(&[("LODGE_BACKEND", "process")])),
            all(Some(BackendKind::Process))
        );
        let demo = ServeArgs {
            demo: true,
            backend: Some(BackendKind::Namespaces),
            ..ServeArgs::default()
        };
        assert_eq!(
            backends(demo, &env(&[])),
            named(&[("demo", Some(BackendKind::Namespaces))])
        );
    }

    #[test]
    fn backend_mistakes_name_the_server_or_the_variable() {
        let load = |text: &str, env: &Env| {
            let f = config_file(text);
            let args = ServeArgs {
                config: Some(f.path().into()),
                ..ServeArgs::default()
            };
            format!("{:#}", Settings::load(args, env).err().unwrap())
        };
        let server = |sandbox: &str| {
            format!("[[server]]\nname = \"x\"\ncommand = [\"cat\"]\n[server.sandbox]\n{sandbox}\n")
        };
        assert_eq!(
            load(&server("backend = \"vm\""), &env(&[])),
            "server \"x\": sandbox.backend: unknown sandbox backend \"vm\"; expected process or namespaces"
        );
        assert_eq!(
            load(&server(""), &env(&[("LODGE_BACKEND", "vm")])),
            "LODGE_BACKEND=\"vm\": unknown sandbox backend \"vm\"; expected process or namespaces"
        );
        assert_eq!(
            load(
                &server("backend = \"process\"\nbinds = [\"/srv\"]"),
                &env(&[])
            ),
            "server \"x\": sandbox.rootfs and sandbox.binds need the namespaces backend"
        );
        // The override reaches a server whose own backend could have used its binds.
        assert_eq!(
            load(
                &server("backend = \"namespaces\"\nbinds = [\"/srv\"]"),
                &env(&[("LODGE_BACKEND", "process")])
            ),
            "server \"x\": sandbox.rootfs and sandbox.binds need the namespaces backend"
        );
    }
}
