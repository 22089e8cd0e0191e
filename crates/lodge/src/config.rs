//! `lodge serve` settings: the TOML file, then command-line flags, then `LODGE_*`
//! environment variables, each overriding the one before (DESIGN.md §3).

use anyhow::{Context, bail};
use clap::Args;
use lodge_http::FrontConfig;
use lodge_runtime::{Anonymous, Protocol, ServerSpec, SessionConfig, Transport};
use lodge_sandbox::{
    Backend, BindMount, HelperCommand, Host, Limits, NamespacesBackend, NamespacesOptions, Network,
    ProcessBackend,
};
use serde::Deserialize;
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
    /// Sandbox backend for every server: process | namespaces.
    #[arg(long)]
    pub backend: Option<String>,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    max_body_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    shutdown_grace: Option<Duration>,
    #[serde(default)]
    session: SessionSection,
    #[serde(default)]
    server: Vec<ServerSection>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SessionSection {
    #[serde(default, with = "humantime_serde")]
    idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_lifetime: Option<Duration>,
    max_sessions: Option<usize>,
    event_buffer: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    terminate_grace: Option<Duration>,
    scratch_root: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    request_state_ttl: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    name: String,
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    transport: Option<String>,
    /// `transport = "http"`: the port the server listens on inside its sandbox.
    port: Option<u16>,
    /// `transport = "http"`: the path of its MCP endpoint.
    path: Option<String>,
    /// How 2026-07-28 clients reach it: auto | legacy (bridged) | modern (passed through).
    #[serde(default)]
    protocol: Protocol,
    /// Where 2026-07-28 requests without Lodge-Session-Id run: fresh | shared.
    #[serde(default)]
    anonymous: Anonymous,
    /// Sandboxes kept started ahead of demand.
    #[serde(default)]
    warm_pool: usize,
    #[serde(default)]
    sandbox: SandboxSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SandboxSection {
    backend: Option<String>,
    memory: Option<String>,
    cpus: Option<f64>,
    pids: Option<u64>,
    network: Option<String>,
    /// A directory to use as the sandbox's root (an unpacked container image).
    rootfs: Option<PathBuf>,
    /// Extra bind mounts, `SRC[:DST][:ro|rw]`.
    #[serde(default)]
    binds: Vec<String>,
}

/// Everything `lodge serve` needs, resolved.
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub front: FrontConfig,
    pub session: SessionConfig,
    pub servers: Vec<ServerSpec>,
    pub backend: &'static str,
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

        let backend_name = env
            .get::<String>("LODGE_BACKEND")?
            .or(args.backend.clone())
            .or_else(|| file.server.iter().find_map(|s| s.sandbox.backend.clone()));
        let backend = select_backend(backend_name.as_deref(), config_path.as_deref())?;

        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let servers = if args.demo {
            let exe = std::env::current_exe().context("cannot find the lodge executable")?;
            let command = vec![exe.display().to_string(), "demo-server".into()];
            let sandbox =
                backend.build(&command, &Limits::default(), &SandboxSection::default())?;
            vec![server_spec(
                "demo",
                command,
                BTreeMap::new(),
                Limits::default(),
                &sandbox,
            )]
        } else if !args.command.is_empty() {
            let command = absolutize_paths(args.command.clone(), &cwd);
            let name = Path::new(&command[0])
                .file_stem()
                .map_or("server".into(), |s| s.to_string_lossy().into_owned());
            let sandbox =
                backend.build(&command, &Limits::default(), &SandboxSection::default())?;
            vec![server_spec(
                &name,
                command,
                BTreeMap::new(),
                Limits::default(),
                &sandbox,
            )]
        } else {
            file.server
                .into_iter()
                .map(|s| s.into_spec(&file_dir, &backend))
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
            ..defaults
        };
        if session.max_sessions == 0 {
            bail!("max_sessions must be at least 1");
        }
        let default_listen = SocketAddr::from(([127, 0, 0, 1], 8787));
        Ok(Settings {
            listen: pick(
                env.get("LODGE_LISTEN")?,
                args.listen,
                file.listen,
                default_listen,
            ),
            admin_listen: env
                .get("LODGE_ADMIN_LISTEN")?
                .or(args.admin_listen)
                .or(file.admin_listen),
            front: FrontConfig {
                allowed_origins: file.allowed_origins,
                allowed_hosts: file.allowed_hosts,
                max_body_bytes: file
                    .max_body_bytes
                    .unwrap_or(FrontConfig::default().max_body_bytes),
                shutdown_grace: file
                    .shutdown_grace
                    .unwrap_or(FrontConfig::default().shutdown_grace),
            },
            session,
            servers,
            backend: backend.name(),
        })
    }
}

/// Environment, then flag, then file, then default.
fn pick<T>(env: Option<T>, flag: Option<T>, file: Option<T>, default: T) -> T {
    env.or(flag).or(file).unwrap_or(default)
}

/// The sandbox backend every server uses, chosen once at startup.
enum BackendChoice {
    Process,
    /// The probed host, and files no sandbox may read (Lodge's config).
    Namespaces(Arc<Host>, Vec<PathBuf>),
}

/// How to run the sandbox helper: this binary's hidden `sandbox-helper` command.
pub fn sandbox_helper() -> anyhow::Result<HelperCommand> {
    HelperCommand::current_exe(["sandbox-helper"]).context("cannot find the lodge executable")
}

/// Probes the host once (unit tests never do: their executable is not `lodge`).
fn probe_host() -> anyhow::Result<Host> {
    let helper = sandbox_helper()?;
    if cfg!(test) {
        return Ok(Host::unavailable(helper, "not probed in unit tests"));
    }
    Ok(Host::probe(helper))
}

/// `namespaces` by default where it works, else `process` with a printed reason (never
/// silently); an explicit `namespaces` where it cannot run is an error naming what is
/// missing.
fn select_backend(name: Option<&str>, config: Option<&Path>) -> anyhow::Result<BackendChoice> {
    let hide = config
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
        .into_iter()
        .collect();
    match name {
        Some("process") => Ok(BackendChoice::Process),
        Some("namespaces") => {
            let host = probe_host()?;
            if let Err(why) = host.namespaces_supported() {
                bail!(
                    "the namespaces sandbox backend cannot run on this host: {why}\n(`lodge doctor` shows the details; --backend process runs servers without isolation)"
                );
            }
            Ok(BackendChoice::Namespaces(Arc::new(host), hide))
        }
        None => {
            let host = probe_host()?;
            match host.namespaces_supported() {
                Ok(()) => Ok(BackendChoice::Namespaces(Arc::new(host), hide)),
                Err(why) => {
                    eprintln!(
                        "lodge: falling back to the process sandbox backend (no isolation): the namespaces backend cannot run here: {why}. Run `lodge doctor` for details."
                    );
                    Ok(BackendChoice::Process)
                }
            }
        }
        Some(other) => bail!("unknown sandbox backend {other:?}; expected process or namespaces"),
    }
}

impl BackendChoice {
    fn name(&self) -> &'static str {
        match self {
            BackendChoice::Process => "process",
            BackendChoice::Namespaces(..) => "namespaces",
        }
    }

    /// The backend for one server, with its sandbox settings.
    fn build(
        &self,
        command: &[String],
        limits: &Limits,
        sandbox: &SandboxSection,
    ) -> anyhow::Result<Arc<dyn Backend>> {
        let network = sandbox
            .network
            .as_deref()
            .map(str::parse::<Network>)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .unwrap_or_default();
        let binds = sandbox
            .binds
            .iter()
            .map(|b| b.parse::<BindMount>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        match self {
            BackendChoice::Process => {
                if sandbox.rootfs.is_some() || !binds.is_empty() {
                    bail!("sandbox.rootfs and sandbox.binds need the namespaces backend");
                }
                Ok(Arc::new(ProcessBackend))
            }
            BackendChoice::Namespaces(host, hide) => {
                let options = NamespacesOptions {
                    network,
                    rootfs: sandbox.rootfs.clone(),
                    binds,
                    hide: hide.clone(),
                };
                let backend = NamespacesBackend::new(host.clone(), options)?;
                backend.check_limits(limits)?;
                // Compute the sandbox layout now; a command that cannot start (a typo)
                // is reported when a session starts, as with every backend.
                if let Err(e) = backend.prepare(command) {
                    tracing::warn!(error = %e, command = ?command, "this server will not start");
                }
                Ok(Arc::new(backend))
            }
        }
    }
}

fn server_spec(
    name: &str,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    limits: Limits,
    backend: &Arc<dyn Backend>,
) -> ServerSpec {
    ServerSpec {
        name: name.into(),
        command,
        env,
        limits,
        backend: backend.clone(),
        protocol: Protocol::Auto,
        anonymous: Anonymous::Fresh,
        warm_pool: 0,
        transport: Transport::Stdio,
    }
}

/// The server runs in its own scratch directory, so arguments naming files relative
/// to where the user started Lodge (or to the config file) are made absolute.
fn absolutize_paths(command: Vec<String>, base: &Path) -> Vec<String> {
    command
        .into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let path = Path::new(&arg);
            let looks_like_path = i > 0 || arg.contains('/');
            if looks_like_path
                && path.is_relative()
                && !arg.starts_with('-')
                && base.join(path).exists()
            {
                base.join(path).display().to_string()
            } else {
                arg
            }
        })
        .collect()
}

impl ServerSection {
    fn into_spec(self, config_dir: &Path, backend: &BackendChoice) -> anyhow::Result<ServerSpec> {
        let name = self.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "server name {name:?} must be non-empty letters, digits, '-' or '_' (it becomes /mcp/{name})"
            );
        }
        if self.command.is_empty() {
            bail!("server {name:?} has an empty command");
        }
        let transport = match self.transport.as_deref() {
            None | Some("stdio") => {
                if self.port.is_some() || self.path.is_some() {
                    bail!("server {name:?}: port and path are for transport = \"http\"");
                }
                Transport::Stdio
            }
            Some("http") => {
                let path = self.path.as_deref().unwrap_or("/mcp");
                if !path.starts_with('/') {
                    bail!("server {name:?}: path {path:?} must start with /");
                }
                if self.port == Some(0) {
                    bail!("server {name:?}: port must not be 0");
                }
                Transport::Http {
                    port: self.port.unwrap_or(8000),
                    path: path.to_string(),
                }
            }
            Some(other) => {
                bail!("server {name:?}: unknown transport {other:?}; expected stdio or http")
            }
        };
        let memory = self
            .sandbox
            .memory
            .as_deref()
            .map(parse_bytes)
            .transpose()
            .with_context(|| format!("server {name:?}: invalid sandbox.memory"))?;
        let limits = Limits {
            memory,
            cpus: self.sandbox.cpus,
            pids: self.sandbox.pids,
        };
        let command = absolutize_paths(self.command, config_dir);
        let sandbox = backend
            .build(&command, &limits, &self.sandbox)
            .with_context(|| format!("server {name:?}"))?;
        let mut spec = server_spec(&name, command, self.env, limits, &sandbox);
        spec.protocol = self.protocol;
        spec.anonymous = self.anonymous;
        spec.warm_pool = self.warm_pool;
        spec.transport = transport;
        Ok(spec)
    }
}

/// `512MiB`, `1GiB`, `800M`, `4096` → bytes.
fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a size like 512MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        other => bail!("unknown size unit {other:?} in {text:?}; use KiB, MiB or GiB"),
    };
    number
        .checked_mul(factor)
        .with_context(|| format!("{text:?} is too large"))
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
[[server]]
name = "a"
command = ["cat"]
env = { GREETING = "hi" }
[server.sandbox]
memory = "512MiB"
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
        assert_eq!(s.servers.len(), 2);
        assert_eq!(s.servers[0].env["GREETING"], "hi");
        assert_eq!(s.servers[0].limits.memory, Some(512 << 20));

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
    fn sizes() {
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert!(parse_bytes("1TB").is_err());
    }

    #[test]
    fn relative_script_paths_become_absolute() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.py"), "").unwrap();
        let cmd = absolutize_paths(
            vec!["python3".into(), "server.py".into(), "--flag".into()],
            dir.path(),
        );
        assert_eq!(cmd[0], "python3");
        assert_eq!(cmd[1], dir.path().join("server.py").display().to_string());
        assert_eq!(cmd[2], "--flag");
    }
}
