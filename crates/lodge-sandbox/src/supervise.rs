//! [`SandboxProcess`]: waits for a server, stops it and everything it started, and
//! removes its scratch directory. Backend-agnostic: a backend hands over a child that
//! leads its own process group, a scratch dir and a stderr capture, plus optional
//! [`Extras`]: the session's cgroup (out-of-memory detection, kill-all, removal) and the
//! way into its network namespace (for [`SandboxProcess::connect_tcp`]).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::SandboxId;
use crate::cgroup::SessionCgroup;
use crate::exit::ExitReport;
use crate::host_ids::HostIdLease;
use crate::net::TcpConnector;
use crate::scratch::{ScratchDir, remove_tree_logged};
use crate::stderr::StderrCapture;

/// How long to let the stderr reader catch up after the server exits, so the tail is
/// complete. Bounded: a grandchild that escaped the group may hold the pipe open.
const STDERR_DRAIN: Duration = Duration::from_millis(250);
/// How long to wait for the server to be reaped after SIGKILL before giving up on its
/// status (a process stuck in uninterruptible sleep). Tokio reaps it later.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long to wait for a session cgroup to empty before giving up on removing it.
const CGROUP_WAIT: Duration = Duration::from_secs(10);

/// Backend-specific parts of a sandbox that [`SandboxProcess`] also looks after.
#[derive(Debug)]
pub(crate) struct Extras {
    /// The session's cgroup, if limits were set.
    pub cgroup: Option<SessionCgroup>,
    /// The host uid the server runs as: released only once the sandbox is gone.
    pub host_id: Option<HostIdLease>,
    /// How to open TCP connections into the sandbox.
    pub connector: TcpConnector,
    /// The child is a supervisor whose child is a pid-namespace init: `terminate` returns
    /// only once that init (and so everything in its pid namespace) is gone.
    pub pid_namespace: bool,
}

/// A running server: wait for it, stop it, inspect it.
///
/// Dropping it without [`terminate`](SandboxProcess::terminate) SIGKILLs the server's
/// process group and removes the scratch directory (synchronously, best effort): a drop
/// guard, so nothing is left behind even on panic.
#[derive(Debug)]
pub struct SandboxProcess {
    sandbox_id: SandboxId,
    child: Child,
    /// The server's process group; `None` once it is known to be empty.
    pgid: Option<Pid>,
    exit: Option<ExitReport>,
    /// Set by `terminate` once the group has been killed and scratch handed off.
    finished: bool,
    stderr: StderrCapture,
    scratch: ScratchDir,
    cgroup: Option<SessionCgroup>,
    host_id: Option<HostIdLease>,
    connector: TcpConnector,
    pid_namespace: bool,
}

impl SandboxProcess {
    /// `child` must lead its own process group (its pid is the group id).
    pub(crate) fn new(
        sandbox_id: SandboxId,
        child: Child,
        scratch: ScratchDir,
        stderr: StderrCapture,
    ) -> Self {
        let extras = Extras {
            cgroup: None,
            host_id: None,
            connector: TcpConnector::host(),
            pid_namespace: false,
        };
        Self::with_extras(sandbox_id, child, scratch, stderr, extras)
    }

    /// Like [`new`](Self::new), with a cgroup and/or network namespace to look after.
    pub(crate) fn with_extras(
        sandbox_id: SandboxId,
        child: Child,
        scratch: ScratchDir,
        stderr: StderrCapture,
        extras: Extras,
    ) -> Self {
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        SandboxProcess {
            sandbox_id,
            child,
            pgid,
            exit: None,
            finished: false,
            stderr,
            scratch,
            cgroup: extras.cgroup,
            host_id: extras.host_id,
            connector: extras.connector,
            pid_namespace: extras.pid_namespace,
        }
    }

    /// Opens a TCP connection to `127.0.0.1:port` as the server sees it: inside the
    /// sandbox's network namespace for `namespaces` with `network = "none"`, else on the
    /// host. For HTTP-transport servers: a sandbox spawned without
    /// [`reached_over_tcp`](crate::SandboxSpec::reached_over_tcp) answers `Unsupported`.
    /// See [`TcpConnector`].
    pub async fn connect_tcp(&self, port: u16) -> std::io::Result<tokio::net::TcpStream> {
        self.connector.connect(port).await
    }

    /// A handle that opens such connections from other tasks while the sandbox runs.
    pub fn tcp_connector(&self) -> TcpConnector {
        self.connector.clone()
    }

    /// Adds what the cgroup knows (an out-of-memory kill) to a report.
    fn annotate(&self, mut report: ExitReport) -> ExitReport {
        if let Some(cg) = &self.cgroup
            && cg.oom_kills() > 0
        {
            report.oom = true;
            report.memory_limit = cg.memory_limit();
        }
        report
    }

    /// The sandbox's id (what its log lines, scratch directory and cgroups are named by).
    pub fn sandbox_id(&self) -> SandboxId {
        self.sandbox_id
    }

    /// The server's pid, or `None` once it has been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Where to read what the sandbox's processes use (its cgroup's members, else the
    /// server's process group).
    pub fn usage_probe(&self) -> crate::UsageProbe {
        match &self.cgroup {
            Some(cgroup) => crate::UsageProbe::cgroup(cgroup.procs_files()),
            None => crate::UsageProbe::group(self.pgid.map(Pid::as_raw)),
        }
    }

    /// The session's scratch directory (the server's cwd, `HOME` and `TMPDIR`).
    pub fn scratch_dir(&self) -> &Path {
        self.scratch.path()
    }

    /// The last (up to 10) lines the server wrote to stderr, oldest first, for error
    /// messages. Long lines are cut.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr.tail()
    }

    /// Resolves when the server process exits (at once if it already has).
    ///
    /// Cancel-safe. Only the server process itself is awaited; processes it started keep
    /// running until [`terminate`](Self::terminate) or drop. Once it resolves,
    /// [`stderr_tail`](Self::stderr_tail) holds the server's last lines (the reader gets
    /// a short grace to catch up).
    pub async fn exited(&mut self) -> ExitReport {
        if let Some(report) = &self.exit {
            return report.clone();
        }
        // `Child::wait` is cancel-safe and returns the stored status once reaped.
        let report = match self.child.wait().await {
            Ok(status) => ExitReport::from(status),
            Err(error) => {
                tracing::warn!(sandbox = %self.sandbox_id, %error, "cannot collect server exit status");
                ExitReport::UNKNOWN
            }
        };
        let report = self.annotate(report);
        self.stderr.drain(STDERR_DRAIN).await;
        self.note_group_state();
        self.exit = Some(report.clone());
        report
    }

    /// Stop the server: SIGTERM to its whole process group, wait up to `grace` for the
    /// server to exit, then SIGKILL the group (also any members left after the server
    /// exited on its own); then remove the scratch directory.
    pub async fn terminate(mut self, grace: Duration) -> ExitReport {
        // Found before anything is signalled, while it surely exists.
        let init = self.pid_namespace_init();
        self.signal_group(Signal::SIGTERM);
        let report = match self.exit.clone() {
            Some(report) => report,
            None => match tokio::time::timeout(grace, self.child.wait()).await {
                Ok(Ok(status)) => status.into(),
                Ok(Err(error)) => {
                    tracing::warn!(sandbox = %self.sandbox_id, %error, "cannot collect server exit status");
                    ExitReport::UNKNOWN
                }
                Err(_elapsed) => {
                    tracing::info!(
                        sandbox = %self.sandbox_id,
                        ?grace,
                        "server did not exit after SIGTERM; sending SIGKILL"
                    );
                    self.kill_all().await
                }
            },
        };
        let report = self.annotate(report);
        // Members of the group that outlived the server (or ignored SIGTERM).
        self.signal_group(Signal::SIGKILL);
        if let Some(init) = init {
            // The init dies with the supervisor; the kernel kills the rest of its pid
            // namespace before the init itself is gone.
            if tokio::time::timeout(KILL_WAIT, exited_pidfd(init))
                .await
                .is_err()
            {
                tracing::warn!(sandbox = %self.sandbox_id, "the sandbox's init did not exit");
            }
        }
        self.stderr.drain(STDERR_DRAIN).await;
        self.stderr.abort();
        self.exit = Some(report.clone());
        self.finished = true;

        let kept = self.scratch.take_kept();
        let path = self.scratch.disarm();
        let tag = self.sandbox_id.hex();
        let cgroup = self.cgroup.take();
        let host_id = self.host_id.take();
        let cleanup = move || {
            // Once the cgroup is empty every process of the sandbox is gone.
            if let Some(mut cg) = cgroup {
                cg.remove(CGROUP_WAIT);
            }
            // Nothing of the sandbox runs now: the tree holds still while it is saved.
            if let Some(kept) = kept {
                kept.save_logged(&path, &tag);
            }
            remove_tree_logged(&path);
            // Only now may another sandbox run as this uid.
            drop(host_id);
        };
        if let Err(error) = tokio::task::spawn_blocking(cleanup).await {
            tracing::warn!(sandbox = %self.sandbox_id, %error, "sandbox cleanup failed");
        }
        tracing::debug!(sandbox = %self.sandbox_id, "server {report}");
        report
    }

    /// SIGKILL the group and the server itself, and collect the server's status.
    async fn kill_all(&mut self) -> ExitReport {
        self.signal_group(Signal::SIGKILL);
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
        // In case the server left its group: kill it by pid too.
        let _ = self.child.start_kill();
        match tokio::time::timeout(KILL_WAIT, self.child.wait()).await {
            Ok(Ok(status)) => status.into(),
            Ok(Err(error)) => {
                tracing::warn!(sandbox = %self.sandbox_id, %error, "cannot collect server exit status");
                ExitReport::UNKNOWN
            }
            Err(_elapsed) => {
                tracing::warn!(sandbox = %self.sandbox_id, "server still not reaped after SIGKILL");
                ExitReport::UNKNOWN
            }
        }
    }

    /// A pidfd of the pid-namespace init (the supervisor's only child), if it runs.
    fn pid_namespace_init(&self) -> Option<OwnedFd> {
        if !self.pid_namespace || self.exit.is_some() {
            return None;
        }
        let pid = self.child.id()?;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        let init: i32 = children.split_whitespace().next()?.parse().ok()?;
        crate::sys::pidfd_open(Pid::from_raw(init)).ok()
    }

    /// Send `signal` to the process group, unless it is known to be empty.
    fn signal_group(&mut self, signal: Signal) {
        let Some(pgid) = self.pgid else { return };
        match killpg(pgid, signal) {
            Ok(()) => {}
            Err(Errno::ESRCH) => self.pgid = None,
            Err(error) => {
                tracing::debug!(sandbox = %self.sandbox_id, %error, ?signal, "cannot signal process group");
            }
        }
    }

    /// Once the group is empty its id may be reused: stop signalling it.
    fn note_group_state(&mut self) {
        if let Some(pgid) = self.pgid
            && killpg(pgid, None) == Err(Errno::ESRCH)
        {
            self.pgid = None;
        }
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        if !self.finished {
            // The server itself is also killed by the child's `kill_on_drop` and reaped
            // by Tokio in the background.
            self.signal_group(Signal::SIGKILL);
        }
        self.stderr.abort();
        // `self.scratch` removes the directory when dropped, unless `terminate` did;
        // `self.cgroup` kills what is left in it and removes it (in the background if
        // it does not empty at once).
    }
}

/// Resolves once the process behind `pidfd` has exited (a pidfd polls readable then).
async fn exited_pidfd(pidfd: OwnedFd) {
    match crate::sys::async_readable(pidfd) {
        Ok(fd) => {
            let _ = fd.readable().await;
        }
        Err(error) => tracing::debug!(%error, "cannot watch the sandbox's init"),
    }
}
