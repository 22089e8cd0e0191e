//! The `namespaces` backend: each session's server in its own user, pid, mount, network,
//! ipc, uts and cgroup namespaces, on a minimal read-only root, under cgroup limits, with
//! no capabilities, no_new_privs, a seccomp deny-list and Landlock.
//!
//! Lodge's side of a spawn (this module) is cheap and does no namespace work itself:
//! 1. the server's [`Plan`](crate::plan::Plan) — its root filesystem and argv — is
//!    computed once per command ([`crate::layout`]) and cached as JSON;
//! 2. per session: make the scratch dir and give it to the session's host uid, make the
//!    cgroup directories and write the limits ([`crate::cgroup`]), pick a host uid/gid;
//! 3. start the sandbox helper ([`crate::helper`]) with both plans in its environment,
//!    stdin/stdout/stderr piped, in its own process group.
//!
//! The helper builds the sandbox and execs the server; see its module docs for the steps.
//! Lodge supervises the helper like any process ([`SandboxProcess`]), plus the cgroup
//! (out-of-memory detection, cleanup) and, for a server reached over TCP, a pidfd for
//! opening connections inside the sandbox's network namespace
//! ([`SandboxProcess::connect_tcp`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::process::Command;

use crate::cgroup::SessionCgroup;
use crate::command::{host_path, validate_env};
use crate::net::TcpConnector;
use crate::plan::{Entry, INNER_ID, PLAN_VAR, Plan, SESSION_DIR, SESSION_VAR, SessionPlan};
use crate::probe::Host;
use crate::scratch::{ScratchDir, validate_session_id};
use crate::stderr::StderrCapture;
use crate::supervise::Extras;
use crate::{Backend, Limits, Sandbox, SandboxError, SandboxIo, SandboxProcess, SandboxSpec, sys};

/// First host uid/gid given to sandboxed servers (`"lo"` << 16); each session takes the
/// next of [`HOST_ID_COUNT`], wrapping. These ids own nothing on the host.
pub const HOST_ID_BASE: u32 = 0x6c6f_0000;
/// How many host ids sessions cycle through.
pub const HOST_ID_COUNT: u32 = 65_536;
/// `/tmp` and `/dev/shm` size when no memory limit is set (tmpfs pages are charged to the
/// session's memory cgroup, so a memory limit caps them anyway).
const DEFAULT_TMP_SIZE: u64 = 1 << 30;

/// How to start the sandbox helper: a program and the arguments that make it run
/// [`run_helper`](crate::run_helper) (Lodge: its own binary and `sandbox-helper`).
#[derive(Clone, Debug)]
pub struct HelperCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the helper's own (`run` / `probe`).
    pub args: Vec<OsString>,
}

impl HelperCommand {
    /// `program args…`.
    pub fn new<I, A>(program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        HelperCommand {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The running executable with `args` (for binaries that dispatch to
    /// [`run_helper`](crate::run_helper) themselves).
    pub fn current_exe<I, A>(args: I) -> io::Result<Self>
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        Ok(Self::new(std::env::current_exe()?, args))
    }
}

/// Network access of a sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// Its own network namespace with only loopback (the default).
    #[default]
    None,
    /// The host's network.
    Host,
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            other => Err(format!("unknown network {other:?}; expected none or host")),
        }
    }
}

/// An extra bind mount: host `src` at `dst` inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// Host path.
    pub src: PathBuf,
    /// Path inside the sandbox.
    pub dst: PathBuf,
    /// Read-write (default read-only).
    pub writable: bool,
}

impl FromStr for BindMount {
    type Err = String;
    /// `SRC`, `SRC:DST`, `SRC:ro`, `SRC:DST:rw`… (DST defaults to SRC; mode to `ro`).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts: Vec<&str> = s.split(':').collect();
        let writable = match parts.last() {
            Some(&"rw") if parts.len() > 1 => {
                parts.pop();
                true
            }
            Some(&"ro") if parts.len() > 1 => {
                parts.pop();
                false
            }
            _ => false,
        };
        let (src, dst) = match parts.as_slice() {
            [src] => (*src, *src),
            [src, dst] => (*src, *dst),
            _ => return Err(format!("bind {s:?}: expected SRC[:DST][:ro|rw]")),
        };
        if !src.starts_with('/') || !dst.starts_with('/') {
            return Err(format!("bind {s:?}: paths must be absolute"));
        }
        Ok(BindMount {
            src: src.into(),
            dst: dst.into(),
            writable,
        })
    }
}

impl fmt::Display for BindMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.writable { "rw" } else { "ro" };
        write!(f, "{}:{}:{mode}", self.src.display(), self.dst.display())
    }
}

/// Per-server settings of the `namespaces` backend.
#[derive(Clone, Debug, Default)]
pub struct NamespacesOptions {
    /// Loopback only (default) or the host's network.
    pub network: Network,
    /// Use this directory (e.g. an unpacked container image) as the root instead of the
    /// host's system directories.
    pub rootfs: Option<PathBuf>,
    /// Extra bind mounts.
    pub binds: Vec<BindMount>,
    /// Host paths that must never be readable inside even if a bind covers them (Lodge's
    /// config file, keys).
    pub hide: Vec<PathBuf>,
}

/// A plan prepared for one command.
#[derive(Debug)]
pub(crate) struct PreparedPlan {
    pub json: String,
    pub path_env: String,
    pub new_netns: bool,
    /// Host directories bound in, `(canonical source, destination)`.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Masks for the scratch roots seen so far (a script directory may contain one: other
    /// sessions' scratch dirs must not show, even as names).
    scratch_masks: Mutex<HashMap<PathBuf, Arc<Vec<Entry>>>>,
}

impl PreparedPlan {
    fn scratch_mask(&self, scratch_root: &Path) -> Arc<Vec<Entry>> {
        let mut masks = self
            .scratch_masks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        masks
            .entry(scratch_root.to_path_buf())
            .or_insert_with(|| {
                let root = std::path::absolute(scratch_root)
                    .unwrap_or_else(|_| scratch_root.to_path_buf());
                Arc::new(crate::layout::hides(&[root], &self.binds))
            })
            .clone()
    }
}

/// The `namespaces` backend for one server (its [`NamespacesOptions`]); plans are cached
/// per command.
pub struct NamespacesBackend {
    host: Arc<Host>,
    options: NamespacesOptions,
    plans: Mutex<HashMap<Vec<String>, Arc<PreparedPlan>>>,
}

impl fmt::Debug for NamespacesBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamespacesBackend")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl NamespacesBackend {
    /// A backend on a probed host. Fails if the host cannot run it (the error says what is
    /// missing).
    pub fn new(host: Arc<Host>, options: NamespacesOptions) -> Result<Self, SandboxError> {
        host.namespaces_supported()
            .map_err(|why| SandboxError::Unsupported { why })?;
        Ok(NamespacesBackend {
            host,
            options,
            plans: Mutex::default(),
        })
    }

    /// Computes (and caches) the plan for `command` now rather than at the first session,
    /// so errors show at startup and the first session starts as fast as the rest.
    pub fn prepare(&self, command: &[String]) -> Result<(), SandboxError> {
        self.plan(command).map(drop)
    }

    /// Whether every limit in `limits` can be enforced on this host.
    pub fn check_limits(&self, limits: &Limits) -> Result<(), SandboxError> {
        self.host
            .check_limits(limits)
            .map_err(|why| SandboxError::Unsupported { why })
    }

    fn plan(&self, command: &[String]) -> Result<Arc<PreparedPlan>, SandboxError> {
        let mut plans = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(plan) = plans.get(command) {
            return Ok(plan.clone());
        }
        let plan = Arc::new(prepare_plan(&self.host, &self.options, command)?);
        plans.insert(command.to_vec(), plan.clone());
        Ok(plan)
    }
}

/// Computes the plan for `command` on `host`.
pub(crate) fn prepare_plan(
    host: &Host,
    options: &NamespacesOptions,
    command: &[String],
) -> Result<PreparedPlan, SandboxError> {
    let layout = crate::layout::compute(options, command, &host_path())?;
    let plan = Plan {
        root: host.root_dir.clone(),
        entries: layout.entries,
        program: layout.program,
        argv: layout.argv,
        new_netns: options.network == Network::None,
        landlock: host.landlock,
        writable: options
            .binds
            .iter()
            .filter(|b| b.writable)
            .map(|b| b.dst.clone())
            .collect(),
        seccomp: host.seccomp.clone(),
    };
    let json = serde_json::to_string(&plan).map_err(|e| SandboxError::Config {
        message: format!("cannot encode the sandbox plan: {e}"),
    })?;
    Ok(PreparedPlan {
        json,
        path_env: layout.path,
        new_netns: plan.new_netns,
        binds: layout.binds,
        scratch_masks: Mutex::default(),
    })
}

/// The next host uid/gid for a session.
pub(crate) fn next_ids() -> (u32, u32) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % HOST_ID_COUNT;
    (HOST_ID_BASE + n, HOST_ID_BASE + n)
}

/// The per-session JSON for the helper.
pub(crate) fn session_plan_json(
    plan: &PreparedPlan,
    scratch: &Path,
    (uid, gid): (u32, u32),
    env: &std::collections::BTreeMap<String, String>,
    cgroup: Option<&SessionCgroup>,
    limits: &Limits,
) -> String {
    let mut vars: std::collections::BTreeMap<&str, &str> = [
        ("PATH", plan.path_env.as_str()),
        ("HOME", SESSION_DIR),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("USER", "lodge"),
        ("LOGNAME", "lodge"),
    ]
    .into_iter()
    .collect();
    for (k, v) in env {
        vars.insert(k, v);
    }
    let session = SessionPlan {
        scratch: scratch.to_path_buf(),
        uid,
        gid,
        env: vars.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cgroups: cgroup.map(SessionCgroup::procs_files).unwrap_or_default(),
        tmp_size: limits.memory.unwrap_or(DEFAULT_TMP_SIZE),
        extra: plan
            .scratch_mask(scratch.parent().unwrap_or(scratch))
            .as_ref()
            .clone(),
    };
    // Plain strings and numbers: encoding cannot fail.
    serde_json::to_string(&session).unwrap_or_default()
}

impl Backend for NamespacesBackend {
    fn name(&self) -> &'static str {
        "namespaces"
    }

    fn spawn(&self, spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        let program = spec.command.first().ok_or(SandboxError::EmptyCommand)?;
        let spawn_err = |source| SandboxError::Spawn {
            program: program.clone(),
            source,
        };
        validate_session_id(&spec.session_id)?;
        validate_env(&spec.env)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(spawn_err(io::Error::other(
                "sandboxes must be started from within a Tokio runtime",
            )));
        }
        let plan = self.plan(&spec.command)?;
        let scratch = ScratchDir::create(&spec.scratch_root, &spec.session_id)?;
        let ids = next_ids();
        std::os::unix::fs::chown(scratch.path(), Some(ids.0), Some(ids.1)).map_err(|source| {
            SandboxError::Scratch {
                path: scratch.path().to_path_buf(),
                source,
            }
        })?;
        let cgroup = SessionCgroup::create(&self.host.cgroups, &spec.session_id, &spec.limits)
            .map_err(|why| SandboxError::Limits { why })?;
        let session = session_plan_json(
            &plan,
            scratch.path(),
            ids,
            &spec.env,
            cgroup.as_ref(),
            &spec.limits,
        );

        let helper = &self.host.helper;
        let mut cmd = Command::new(&helper.program);
        cmd.args(&helper.args)
            .arg("run")
            .env_clear()
            .env(PLAN_VAR, &plan.json)
            .env(SESSION_VAR, session)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // On failure `scratch` and `cgroup` are dropped, which removes them.
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_err(io::Error::other(
                "a standard stream was not piped",
            )));
        };
        // A pidfd, not the pid: a recycled pid can never be joined.
        let connector = match (plan.new_netns, spec.reached_over_tcp, child.id()) {
            (false, _, _) => TcpConnector::host(),
            (true, true, Some(pid)) => {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                TcpConnector::namespace(Arc::new(sys::pidfd_open(pid).map_err(spawn_err)?))
            }
            (true, _, _) => TcpConnector::unreachable(),
        };
        let stderr = StderrCapture::spawn(stderr, spec.session_id.clone(), spec.stderr_cap);
        tracing::debug!(
            session = %spec.session_id,
            pid = child.id(),
            uid = ids.0,
            "server started (namespaces backend)"
        );
        let extras = Extras {
            cgroup,
            connector,
            pid_namespace: true,
        };
        let process =
            SandboxProcess::with_extras(spec.session_id.clone(), child, scratch, stderr, extras);
        Ok(Sandbox {
            io: SandboxIo { stdin, stdout },
            process,
        })
    }
}

/// The inner uid/gid servers run as, for tests and docs.
pub const SANDBOX_UID: u32 = INNER_ID;
