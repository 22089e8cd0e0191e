//! Sandboxes for Lodge's per-session servers.
//!
//! A [`Backend`] turns a [`SandboxSpec`] into a running [`Sandbox`]: the server's
//! stdin/stdout ([`SandboxIo`]) and a handle that supervises it ([`SandboxProcess`]).
//! This crate knows nothing about MCP: it starts a program, hands over its pipes, and
//! makes sure the program, everything it started, and its scratch directory are gone
//! when the session ends.
//!
//! Backend-agnostic pieces live in their own modules so every backend reuses them:
//! `scratch` (per-session scratch dir), `stderr` (capped stderr logging and the tail kept
//! for error messages), `exit` (exit reports) and `supervise`
//! ([`SandboxProcess`]: wait, terminate, drop guard). `process` holds the `process`
//! backend; `command` resolves programs on Lodge's own `PATH`.

#![forbid(unsafe_code)]

mod command;
mod error;
mod exit;
mod process;
mod scratch;
mod stderr;
mod supervise;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use error::SandboxError;
pub use exit::ExitReport;
pub use process::ProcessBackend;
pub use scratch::default_scratch_root;
pub use supervise::SandboxProcess;

/// What to run, and how, for one session.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    /// Names the scratch directory and tags log lines. Must be usable as a single path
    /// component (non-empty, no `/`, not `.` or `..`).
    pub session_id: String,
    /// Program and arguments. The program is resolved on Lodge's own `PATH` (or taken as
    /// a path if it contains `/`).
    pub command: Vec<String>,
    /// Configured environment variables; they win over the defaults Lodge sets.
    pub env: BTreeMap<String, String>,
    /// The per-session scratch directory is `scratch_root/<session_id>`.
    pub scratch_root: PathBuf,
    /// Maximum number of stderr bytes logged per session; the rest is read and dropped.
    pub stderr_cap: usize,
    /// Resource limits. Ignored by the `process` backend (it warns once per process).
    pub limits: Limits,
}

/// Resource limits for one sandbox.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit, in CPUs (1.0 = one full CPU).
    pub cpus: Option<f64>,
    /// Maximum number of processes/threads.
    pub pids: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none() && self.pids.is_none()
    }
}

/// A way to run a server in isolation.
pub trait Backend: Send + Sync + 'static {
    /// The backend's name as used in configuration (`"process"`).
    fn name(&self) -> &'static str;

    /// Start the server described by `spec`.
    ///
    /// Synchronous and fast (it is called from async code), but it must be called from
    /// within a Tokio runtime: the returned pipes and the stderr reader live on it.
    fn spawn(&self, spec: &SandboxSpec) -> Result<Sandbox, SandboxError>;
}

/// A running server: its pipes and its supervisor handle.
#[derive(Debug)]
pub struct Sandbox {
    /// The server's stdin and stdout.
    pub io: SandboxIo,
    /// Wait for, inspect and stop the server.
    pub process: SandboxProcess,
}

/// The server's stdin and stdout.
#[derive(Debug)]
pub struct SandboxIo {
    /// Write to the server. Dropping it closes the server's stdin.
    pub stdin: tokio::process::ChildStdin,
    /// Read from the server.
    pub stdout: tokio::process::ChildStdout,
}

/// Names of the backends this host can run, best first.
///
/// The entry point that later grows into `lodge doctor`.
pub fn available_backends() -> Vec<&'static str> {
    vec![ProcessBackend.name()]
}
