//! Sandboxes for Lodge's per-session servers.
//!
//! A [`Backend`] turns a [`SandboxSpec`] into a running [`Sandbox`]: the server's
//! stdin/stdout ([`SandboxIo`]) and a handle that supervises it ([`SandboxProcess`]).
//! This crate knows nothing about MCP: it starts a program, hands over its pipes, and
//! makes sure the program, everything it started, and its scratch directory are gone
//! when the session ends.
//!
//! # Backends
//!
//! - [`ProcessBackend`] (`process`): a plain child process in its own process group with
//!   its own scratch directory and a cleared environment. No isolation, no limits: for
//!   development, and the only backend off Linux.
//! - [`NamespacesBackend`] (`namespaces`, the default on Linux where it works): every
//!   session's server in its own user, pid, mount, network, ipc, uts and cgroup
//!   namespaces, on a minimal read-only root, under cgroup limits, hardened. It needs
//!   root (rootless mode is not implemented) and is probed once at startup
//!   ([`Host::probe`]); `lodge doctor` prints the findings ([`HostReport`]).
//!
//! # How a `namespaces` sandbox is built
//!
//! Lodge computes the server's filesystem layout once per command ([`layout`] docs: the
//! system directories, a few `/etc` files, the program's install prefix, the directories
//! of file arguments, extra binds — never `/root`, `/home`, `/var`, `/etc/shadow` or
//! Lodge's config), then per session makes the scratch dir and the cgroup and starts the
//! sandbox helper — Lodge's own binary in a hidden mode, because after `fork` in
//! multi-threaded Lodge only async-signal-safe calls are allowed ([`helper`] docs). The
//! helper joins the cgroup, unshares the namespaces, builds a tmpfs root of read-only
//! binds, forks a tiny init (pid 1: `pivot_root`, fresh `/proc`, reaps, forwards
//! signals), and the init forks the server, which enters its own user namespace as uid
//! 1000 (an unprivileged host uid), drops everything and `execve`s.
//!
//! # Layers, and what happens on a kernel without each
//!
//! | layer | what it does | without it |
//! |---|---|---|
//! | user namespace | the server is uid/gid 1000 inside, an unprivileged host id outside; its namespace owns none of the sandbox's other namespaces, so even "root" inside could not change them | required: the backend is unavailable, `lodge serve` falls back to `process` and says why |
//! | pid, mount, network, ipc, uts namespaces | own process tree (a tiny init as pid 1), own root filesystem, loopback-only network (`network = "none"`), own SysV IPC and host name | required (as above) |
//! | cgroup namespace | `/proc/self/cgroup` shows `/` | the host cgroup path is visible; nothing else changes |
//! | minimal read-only root | only system dirs, a few `/etc` files and the server's own install dirs, read-only; writable: `/session` (the scratch dir: a tmpfs of its own, `disk` bytes and `inodes` files, unless `disk = "unlimited"`), tmpfs `/tmp` and `/dev/shm` | — (always built) |
//! | cgroups v1 or v2 | `memory` (OOM kills end the session with "ran out of memory"), `cpus` (CFS quota), `pids` (fork bombs) | servers that configure a limit the host cannot enforce refuse to start; without limits they run |
//! | no_new_privs | setuid/file-capability binaries cannot raise privileges | required |
//! | capabilities | bounding, ambient, effective, permitted and inheritable sets emptied | — (always) |
//! | seccomp deny-list | [`seccomp`] docs: mount, namespaces, ptrace, modules, kexec, bpf, keyring, … fail with EPERM | not installed; the layers above still hold; `lodge doctor` says so |
//! | Landlock | writes only beneath `/session`, `/tmp`, `/dev/shm` (and to `/dev` nodes), even where a mount would allow more; abstract unix sockets of other domains unreachable | writes are confined by the read-only mounts alone; `lodge doctor` says so |
//!
//! # Modules
//!
//! The `namespaces` backend's parts: `options` (its configuration types), `layout` (the
//! server's filesystem, per command), `plan` (what the helper is told to build), `launch`
//! (the one way a sandbox helper is started, for sessions and for the probe's trial),
//! `namespaces` (the backend: plans cached per command, a launch per session), `cgroup`
//! (controllers found at startup; a session's cgroup), [`helper`] (the code that runs
//! inside the helper process: building the root, the supervisor, init and server, and
//! its `probe` mode), `probe` (Lodge's side of the probe: [`Host`], [`HostReport`]),
//! [`seccomp`], `net` (TCP into a sandbox's network namespace), `host_ids` (host uids
//! allocated host-wide through lock files, never shared by two live sandboxes).
//!
//! Backend-agnostic pieces live in their own modules so every backend reuses them:
//! `scratch` (per-session scratch dir) and `remove_tree` (its removal: constant stack, a
//! few descriptors, no symlinks followed, no device crossed), `stderr` (capped, escaped,
//! cheap stderr logging and the tail kept for error messages), `exit` (exit reports) and `supervise` ([`SandboxProcess`]: wait,
//! terminate, drop guard), `descriptors` (what a sandbox costs Lodge in file
//! descriptors). All `unsafe` code is in `sys`.

#![deny(unsafe_code)]

mod cgroup;
mod command;
mod descriptors;
mod error;
mod exit;
pub mod helper;
mod host_ids;
mod id;
mod launch;
pub mod layout;
mod namespaces;
mod net;
mod options;
mod plan;
mod probe;
mod process;
mod remove_tree;
mod scratch;
pub mod seccomp;
mod stderr;
mod supervise;
#[allow(unsafe_code)]
mod sys;
mod usage;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use cgroup::{CgroupRoots, CgroupVersion, ControllerRoot};
pub use error::{LimitsError, SandboxError};
pub use exit::ExitReport;
pub use helper::run_helper;
pub use host_ids::{HOST_ID_BASE, HOST_ID_COUNT};
pub use id::SandboxId;
pub use namespaces::{NamespacesBackend, SANDBOX_UID};
pub use net::TcpConnector;
pub use options::{BindMount, HelperCommand, NamespacesOptions, Network};
pub use plan::SANDBOX_PID_VAR;
pub use probe::{Feature, Host, HostReport};
pub use process::ProcessBackend;
pub use scratch::{default_scratch_root, sweep_kept, unmount_stale};
pub use stderr::log_server_stdout;
pub use supervise::SandboxProcess;
pub use usage::{Usage, UsageProbe};

/// What to run, and how, for one session.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    /// The sandbox's own id ([`SandboxId::mint`]; not a session id): tags its log lines
    /// and names its scratch directory and cgroups.
    pub sandbox_id: SandboxId,
    /// Program and arguments. The program is resolved on Lodge's own `PATH` (or taken as
    /// a path if it contains `/`).
    pub command: Vec<String>,
    /// Configured environment variables; they win over the defaults Lodge sets.
    pub env: BTreeMap<String, String>,
    /// The sandbox's scratch directory is made under it, named after the sandbox id.
    pub scratch_root: PathBuf,
    /// Maximum number of stderr bytes logged per session; the rest is read and dropped.
    pub stderr_cap: usize,
    /// Also write the server's stderr, as it is, to this file (made, mode 0600).
    pub stderr_file: Option<StderrFile>,
    /// Resource limits. Ignored by the `process` backend (it warns once per process).
    pub limits: Limits,
    /// Lodge will reach the server over TCP ([`SandboxProcess::connect_tcp`]). Only then
    /// does the `namespaces` backend keep a handle on the sandbox's network namespace: a
    /// stdio server's session holds one descriptor fewer.
    pub reached_over_tcp: bool,
    /// Files kept across sandboxes (`storage = "principal"`): a host directory, made by
    /// Lodge, whose files `/session` starts with and to which `/session` is saved when the
    /// sandbox is terminated (bounded by `/session`'s limits; see [`sweep_kept`]). `None`:
    /// `/session` starts empty and is thrown away.
    pub kept: Option<PathBuf>,
}

/// Where a sandbox's stderr is also written, and how much of it at most.
#[derive(Clone, Debug)]
pub struct StderrFile {
    pub path: PathBuf,
    /// Past this many bytes the file says so in a last line and grows no more.
    pub max_bytes: u64,
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
    /// The server's open-file limit (`RLIMIT_NOFILE`, soft and hard), or
    /// [`DEFAULT_OPEN_FILES`]. Servers never inherit Lodge's own, raised limit. Enforced
    /// by every backend, like the two below.
    pub open_files: Option<u64>,
    /// The largest file the server may write, bytes (`RLIMIT_FSIZE`; unlimited if unset).
    /// Writing past it fails with EFBIG (the server's SIGXFSZ is ignored).
    pub file_size: Option<u64>,
    /// The size of `/session` (`namespaces` backend). See [`Disk`].
    #[serde(default)]
    pub disk: Disk,
    /// How many files and directories `/session` may hold (`namespaces` backend), or
    /// [`DEFAULT_INODES`]. Ignored with [`Disk::Unlimited`].
    pub inodes: Option<u64>,
}

/// The open-file limit servers get when none is configured.
pub const DEFAULT_OPEN_FILES: u64 = 1024;

/// `/session`'s size when none is configured and no memory limit is set.
pub const DEFAULT_DISK: u64 = 1 << 30;
/// `/session`'s inode limit when none is configured.
pub const DEFAULT_INODES: u64 = 65_536;

/// The size limit of a `namespaces` sandbox's `/session`.
///
/// `/session` is a tmpfs of its own (mounted on the host at the scratch dir, so the host
/// still sees the files), sized `size=` and `nr_inodes=`: past either, the server's
/// writes fail with ENOSPC and nothing else notices. Its pages are the session's memory
/// (charged to its memory cgroup, like `/tmp`), which is why `disk` may not exceed
/// `memory`: a full `/session` must be ENOSPC, not an out-of-memory kill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum Disk {
    /// Half the memory limit, at most [`DEFAULT_DISK`]; [`DEFAULT_DISK`] without one.
    #[default]
    Default,
    /// This many bytes.
    Limited(u64),
    /// No limit of its own: `/session` is a plain directory on the scratch root's
    /// filesystem (the behaviour before limits existed; an explicit choice).
    Unlimited,
}

impl Limits {
    /// `/session`'s `(bytes, inodes)` limits, or `None` for a plain directory.
    pub fn scratch_limits(&self) -> Option<(u64, u64)> {
        let bytes = match self.disk {
            Disk::Unlimited => return None,
            Disk::Limited(bytes) => bytes,
            Disk::Default => self
                .memory
                .map_or(DEFAULT_DISK, |m| (m / 2).min(DEFAULT_DISK)),
        };
        Some((bytes, self.inodes.unwrap_or(DEFAULT_INODES)))
    }
}

impl SandboxSpec {
    /// The kept files of this sandbox, if any, bounded by its `/session` limits.
    pub(crate) fn kept_files(&self) -> Option<scratch::KeptFiles> {
        let dir = self.kept.clone()?;
        Some(scratch::KeptFiles {
            dir,
            budget: self.limits.kept_budget(),
        })
    }
}

impl Limits {
    /// What a sandbox may keep across sandboxes (`storage = "principal"`): `/session`'s
    /// limits, and the defaults where `/session` has none (`disk = "unlimited"`, or the
    /// `process` backend, whose `/session` is a plain directory): never unbounded.
    pub(crate) fn kept_budget(&self) -> scratch::Budget {
        let (bytes, inodes) = self
            .scratch_limits()
            .unwrap_or((DEFAULT_DISK, self.inodes.unwrap_or(DEFAULT_INODES)));
        scratch::Budget { bytes, inodes }
    }

    /// Whether any cgroup limit (memory, cpus, pids) is set. The rlimits
    /// (`open_files`, `file_size`, and core dumps, always off) are not counted: every
    /// backend applies them.
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.cpus.is_none() && self.pids.is_none()
    }

    /// The rlimits to set for the server, each as (soft = hard) values.
    pub(crate) fn rlimits(&self) -> Rlimits {
        Rlimits {
            open_files: self.open_files.unwrap_or(DEFAULT_OPEN_FILES),
            file_size: self.file_size,
        }
    }
}

/// The rlimits a server runs under; core dumps are always off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Rlimits {
    pub open_files: u64,
    pub file_size: Option<u64>,
}

impl Rlimits {
    /// `(resource, value)` pairs, each value lowered to the current hard limit (raising a
    /// hard limit needs a privilege the server, or Lodge, may lack).
    pub(crate) fn clamped(&self) -> [(nix::sys::resource::Resource, u64); 3] {
        use nix::sys::resource::{Resource, getrlimit};
        let clamp = |resource, value: u64| {
            let hard = getrlimit(resource).map_or(value, |(_, hard)| hard);
            (resource, value.min(hard))
        };
        [
            clamp(Resource::RLIMIT_NOFILE, self.open_files),
            clamp(Resource::RLIMIT_CORE, 0),
            clamp(
                Resource::RLIMIT_FSIZE,
                self.file_size.unwrap_or(libc::RLIM_INFINITY),
            ),
        ]
    }
}

/// A way to run a server in isolation.
pub trait Backend: Send + Sync + 'static {
    /// The backend's name as used in configuration (`"process"`, `"namespaces"`).
    fn name(&self) -> &'static str;

    /// How many of Lodge's own file descriptors one live sandbox of this backend holds,
    /// for a server reached over TCP ([`SandboxSpec::reached_over_tcp`]) or not. Lodge
    /// sizes its open-file limit with it. Each backend documents its breakdown.
    fn descriptors_per_session(&self, reached_over_tcp: bool) -> u64;

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
