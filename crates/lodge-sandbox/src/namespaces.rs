//! The `namespaces` backend: each session's server in its own user, pid, mount, network,
//! ipc, uts and cgroup namespaces, on a minimal read-only root, under cgroup limits, with
//! no capabilities, no_new_privs, a seccomp deny-list and Landlock.
//!
//! Lodge's side of a spawn (this module) is cheap and does no namespace work itself:
//! 1. the server's [`Plan`](crate::plan::Plan) — its root filesystem and argv — is
//!    computed once per command ([`crate::layout`]) and cached as JSON;
//! 2. per session, [`crate::launch`] makes the scratch dir and gives it to the session's
//!    host uid, makes the cgroup directories and writes the limits ([`crate::cgroup`]),
//!    and starts the sandbox helper ([`crate::helper`]) with both plans in its
//!    environment, stdin/stdout/stderr piped, in its own process group.
//!
//! The helper builds the sandbox and execs the server; see its module docs for the steps.
//! Lodge supervises the helper like any process ([`SandboxProcess`]), plus the cgroup
//! (out-of-memory detection, cleanup) and, for a server reached over TCP, a pidfd for
//! opening connections inside the sandbox's network namespace
//! ([`SandboxProcess::connect_tcp`]).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use crate::command::validate_env;
use crate::launch::{LaunchRequest, PreparedPlan, launch, prepare_plan};
use crate::net::TcpConnector;
use crate::options::{NamespacesOptions, Network};
use crate::plan::INNER_ID;
use crate::probe::Host;
use crate::stderr::StderrCapture;
use crate::supervise::Extras;
use crate::{
    Backend, Limits, Sandbox, SandboxError, SandboxIo, SandboxProcess, SandboxSpec, descriptors,
    sys,
};

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

impl Backend for NamespacesBackend {
    fn name(&self) -> &'static str {
        "namespaces"
    }

    /// The stdin, stdout and stderr pipes, the process handle (a pidfd) and the lock on
    /// the host uid: 5; plus a pidfd into the sandbox's network namespace for a server
    /// reached over TCP with `network = "none"`: 6. (With `network = "host"` Lodge
    /// connects on the host.)
    fn descriptors_per_session(&self, reached_over_tcp: bool) -> u64 {
        let netns = reached_over_tcp && self.options.network == Network::None;
        descriptors::BASE
            + descriptors::HOST_ID_LOCK
            + if netns { descriptors::NETNS_HANDLE } else { 0 }
    }

    fn spawn(&self, spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        let program = spec.command.first().ok_or(SandboxError::EmptyCommand)?;
        let spawn_err = |source| SandboxError::Spawn {
            program: program.clone(),
            source,
        };
        validate_env(&spec.env)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(spawn_err(io::Error::other(
                "sandboxes must be started from within a Tokio runtime",
            )));
        }
        let plan = self.plan(&spec.command)?;
        let request = LaunchRequest {
            program,
            sandbox_id: spec.sandbox_id,
            scratch_root: &spec.scratch_root,
            env: &spec.env,
            limits: &spec.limits,
            kept: spec.kept_files(),
        };
        let launched = launch(&self.host, &plan, request, |cmd| {
            let mut cmd = tokio::process::Command::from(cmd);
            cmd.kill_on_drop(true);
            cmd.spawn()
        })?;
        let mut child = launched.child;
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
        let stderr = StderrCapture::spawn(
            stderr,
            spec.sandbox_id,
            spec.stderr_cap,
            spec.stderr_file.clone(),
        );
        tracing::debug!(
            sandbox = %spec.sandbox_id,
            pid = child.id(),
            uid = launched.host_id.uid(),
            "server started (namespaces backend)"
        );
        let extras = Extras {
            cgroup: launched.cgroup,
            host_id: Some(launched.host_id),
            connector,
            pid_namespace: true,
        };
        let process =
            SandboxProcess::with_extras(spec.sandbox_id, child, launched.scratch, stderr, extras);
        Ok(Sandbox {
            io: SandboxIo { stdin, stdout },
            process,
        })
    }
}

/// The inner uid/gid servers run as, for tests and docs.
pub const SANDBOX_UID: u32 = INNER_ID;
