//! What the sandbox helper is told to build: the [`Plan`] (per server command, computed
//! once and reused for every session) and the [`SessionPlan`] (per session). Lodge
//! serializes both as JSON into the helper's environment (not its argv: `/proc/PID/cmdline`
//! is world-readable, the environment is not, and the session part carries configured
//! secrets).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::seccomp::Filters;

/// Environment variable carrying the [`Plan`] JSON.
pub(crate) const PLAN_VAR: &str = "LODGE_SANDBOX_PLAN";
/// Environment variable carrying the [`SessionPlan`] JSON.
pub(crate) const SESSION_VAR: &str = "LODGE_SANDBOX_SESSION";
/// Set for the server: the host pid of the sandbox's supervisor (the process Lodge waits
/// on; it and everything inside are gone once it is).
pub const SANDBOX_PID_VAR: &str = "LODGE_SANDBOX_PID";

/// The server's user and group id inside the sandbox (mapped to an unprivileged host id).
pub(crate) const INNER_ID: u32 = 1000;
/// Where the session's scratch directory appears, and the server's cwd and `HOME`.
pub(crate) const SESSION_DIR: &str = "/session";
/// The sandbox's host name.
pub(crate) const HOSTNAME: &str = "lodge";

/// How to build a sandbox for one server command.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// A directory on the host, empty, that the helper mounts the new root on (in its own
    /// mount namespace, so sessions never see each other's).
    pub root: PathBuf,
    /// The root's contents, applied in order.
    pub entries: Vec<Entry>,
    /// The program to `execve`, as a path inside the sandbox.
    pub program: PathBuf,
    /// `argv`, including `argv[0]`.
    pub argv: Vec<String>,
    /// Whether to make a network namespace (`network = "none"`).
    pub new_netns: bool,
    /// Whether to apply Landlock (the host supports it).
    pub landlock: bool,
    /// Paths besides `/session`, `/tmp` and `/dev/shm` Landlock lets the server write
    /// beneath (read-write extra binds).
    pub writable: Vec<PathBuf>,
    /// Seccomp filters to install, in order (empty: the host has no seccomp).
    pub seccomp: Filters,
}

/// Per-session settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SessionPlan {
    /// The session's scratch directory on the host (bound at `/session`).
    pub scratch: PathBuf,
    /// Host uid and gid the server runs as (mapped to [`INNER_ID`] inside).
    pub uid: u32,
    pub gid: u32,
    /// The server's complete environment, `NAME=value`.
    pub env: Vec<String>,
    /// `cgroup.procs` files the helper writes itself into first.
    pub cgroups: Vec<PathBuf>,
    /// Size limit of `/tmp` and `/dev/shm`, bytes.
    pub tmp_size: u64,
    /// The server's rlimits, set just before it execs.
    pub rlimits: crate::Rlimits,
    /// Entries applied after the plan's (masks for the scratch root).
    pub extra: Vec<Entry>,
}

/// One step of building the root. Paths are inside the sandbox (absolute).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// A directory with `mode`.
    Dir { path: PathBuf, mode: u32 },
    /// A symbolic link.
    Symlink { path: PathBuf, target: PathBuf },
    /// A small generated file (mode 0644).
    File { path: PathBuf, contents: String },
    /// A bind mount of host path `src` at `dst`; read-only unless `rw`; device nodes
    /// usable only if `dev`; always nosuid.
    Bind {
        src: PathBuf,
        dst: PathBuf,
        file: bool,
        rw: bool,
        dev: bool,
    },
    /// A tmpfs with `mode`; `size` in bytes, or the session's `tmp_size` if `None`.
    Tmpfs {
        path: PathBuf,
        mode: u32,
        size: Option<u64>,
    },
    /// The session's scratch directory, read-write, at [`SESSION_DIR`].
    Session,
    /// Makes `path` unreadable: `/dev/null` without device access over a file (opening it
    /// fails with EACCES), an empty read-only tmpfs over a directory.
    Hide { path: PathBuf, file: bool },
}
