//! [`SandboxProcess`]: waits for a server, stops it and everything it started, and
//! removes its scratch directory. Backend-agnostic: a backend hands over a child that
//! leads its own process group, a scratch dir and a stderr capture.

use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::exit::ExitReport;
use crate::scratch::{ScratchDir, remove_tree_logged};
use crate::stderr::StderrCapture;

/// How long to let the stderr reader catch up after the server exits, so the tail is
/// complete. Bounded: a grandchild that escaped the group may hold the pipe open.
const STDERR_DRAIN: Duration = Duration::from_millis(250);
/// How long to wait for the server to be reaped after SIGKILL before giving up on its
/// status (a process stuck in uninterruptible sleep). Tokio reaps it later.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// A running server: wait for it, stop it, inspect it.
///
/// Dropping it without [`terminate`](SandboxProcess::terminate) SIGKILLs the server's
/// process group and removes the scratch directory (synchronously, best effort): a drop
/// guard, so nothing is left behind even on panic.
#[derive(Debug)]
pub struct SandboxProcess {
    session_id: String,
    child: Child,
    /// The server's process group; `None` once it is known to be empty.
    pgid: Option<Pid>,
    exit: Option<ExitReport>,
    /// Set by `terminate` once the group has been killed and scratch handed off.
    finished: bool,
    stderr: StderrCapture,
    scratch: ScratchDir,
}

impl SandboxProcess {
    /// `child` must lead its own process group (its pid is the group id).
    pub(crate) fn new(
        session_id: String,
        child: Child,
        scratch: ScratchDir,
        stderr: StderrCapture,
    ) -> Self {
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        SandboxProcess {
            session_id,
            child,
            pgid,
            exit: None,
            finished: false,
            stderr,
            scratch,
        }
    }

    /// The server's pid, or `None` once it has been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
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
                tracing::warn!(session = %self.session_id, %error, "cannot collect server exit status");
                ExitReport::UNKNOWN
            }
        };
        self.stderr.drain(STDERR_DRAIN).await;
        self.note_group_state();
        self.exit = Some(report.clone());
        report
    }

    /// Stop the server: SIGTERM to its whole process group, wait up to `grace` for the
    /// server to exit, then SIGKILL the group (also any members left after the server
    /// exited on its own); then remove the scratch directory.
    pub async fn terminate(mut self, grace: Duration) -> ExitReport {
        self.signal_group(Signal::SIGTERM);
        let report = match self.exit.clone() {
            Some(report) => report,
            None => match tokio::time::timeout(grace, self.child.wait()).await {
                Ok(Ok(status)) => status.into(),
                Ok(Err(error)) => {
                    tracing::warn!(session = %self.session_id, %error, "cannot collect server exit status");
                    ExitReport::UNKNOWN
                }
                Err(_elapsed) => {
                    tracing::info!(
                        session = %self.session_id,
                        ?grace,
                        "server did not exit after SIGTERM; sending SIGKILL"
                    );
                    self.kill_all().await
                }
            },
        };
        // Members of the group that outlived the server (or ignored SIGTERM).
        self.signal_group(Signal::SIGKILL);
        self.stderr.drain(STDERR_DRAIN).await;
        self.stderr.abort();
        self.exit = Some(report.clone());
        self.finished = true;

        let path = self.scratch.disarm();
        if let Err(error) = tokio::task::spawn_blocking(move || remove_tree_logged(&path)).await {
            tracing::warn!(session = %self.session_id, %error, "scratch directory removal failed");
        }
        tracing::debug!(session = %self.session_id, "server {report}");
        report
    }

    /// SIGKILL the group and the server itself, and collect the server's status.
    async fn kill_all(&mut self) -> ExitReport {
        self.signal_group(Signal::SIGKILL);
        // In case the server left its group: kill it by pid too.
        let _ = self.child.start_kill();
        match tokio::time::timeout(KILL_WAIT, self.child.wait()).await {
            Ok(Ok(status)) => status.into(),
            Ok(Err(error)) => {
                tracing::warn!(session = %self.session_id, %error, "cannot collect server exit status");
                ExitReport::UNKNOWN
            }
            Err(_elapsed) => {
                tracing::warn!(session = %self.session_id, "server still not reaped after SIGKILL");
                ExitReport::UNKNOWN
            }
        }
    }

    /// Send `signal` to the process group, unless it is known to be empty.
    fn signal_group(&mut self, signal: Signal) {
        let Some(pgid) = self.pgid else { return };
        match killpg(pgid, signal) {
            Ok(()) => {}
            Err(Errno::ESRCH) => self.pgid = None,
            Err(error) => {
                tracing::debug!(session = %self.session_id, %error, ?signal, "cannot signal process group");
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
        // `self.scratch` removes the directory when dropped, unless `terminate` did.
    }
}
