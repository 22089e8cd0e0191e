//! One session's cgroup ([`SessionCgroup`]): its directories in each hierarchy a
//! configured limit needs, the limits written into them, the out-of-memory count read
//! back, and removal once the sandbox is gone (killing whatever is left, if anything is).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CPU_PERIOD_US, CgroupRoots, CgroupVersion, SUPERVISOR_PIDS};
use crate::{Limits, LimitsError, SandboxId};

/// The name of a sandbox's directory in each cgroup hierarchy (`…/lodge/<name>`).
///
/// Derived from the sandbox id, never from a session id: cgroup trees are shared by every
/// Lodge on the host, so the name must be unique host-wide, which 128 random bits are.
/// Its own type so that the cgroup naming can change (a prefix, a principal's slice)
/// without changing scratch directory names or log ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupName(String);

impl CgroupName {
    pub(crate) fn for_sandbox(id: &SandboxId) -> Self {
        CgroupName(id.hex())
    }
}

/// v1's limit on a cgroup's socket buffers (TCP and UDP).
const TCP_LIMIT_V1: &str = "memory.kmem.tcp.limit_in_bytes";

/// The socket-buffer limit on v1 for a memory limit of `memory` bytes: a quarter of it.
/// (v2 counts socket buffers in `memory.current`, inside `memory.max`.)
pub(crate) fn socket_buffers_v1(memory: u64) -> u64 {
    memory / 4
}

/// One session's cgroup directories (one per hierarchy a limit needs).
#[derive(Debug)]
pub(crate) struct SessionCgroup {
    dirs: Vec<(CgroupVersion, PathBuf)>,
    memory: Option<(CgroupVersion, PathBuf)>,
    memory_limit: Option<u64>,
}

impl SessionCgroup {
    /// Makes the directories and writes the limits. `None` if `limits` sets nothing.
    pub(crate) fn create(
        roots: &CgroupRoots,
        name: &CgroupName,
        limits: &Limits,
    ) -> Result<Option<SessionCgroup>, LimitsError> {
        if limits.is_empty() {
            return Ok(None);
        }
        let mut cg = SessionCgroup {
            dirs: Vec::new(),
            memory: None,
            memory_limit: limits.memory,
        };
        // On error `cg` is dropped, which removes what was made.
        if let Some(bytes) = limits.memory {
            let (v, dir) = cg.dir_for(roots, "memory", name)?;
            match v {
                CgroupVersion::V1 => {
                    write(&dir, "memory.limit_in_bytes", bytes)?;
                    // Count swap too, so the limit cannot be dodged by swapping.
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write(&dir, "memory.memsw.limit_in_bytes", bytes)?;
                    }
                    // v1 keeps socket buffers out of `memory.usage_in_bytes`: a session
                    // could hold GiBs of TCP and UDP buffers under a 256 MiB limit. Their
                    // own counter (TCP and UDP both charge it) gets a quarter of the limit;
                    // it must be set before any socket exists, i.e. now.
                    if dir.join(TCP_LIMIT_V1).exists() {
                        write(&dir, TCP_LIMIT_V1, socket_buffers_v1(bytes))?;
                    }
                }
                CgroupVersion::V2 => {
                    write(&dir, "memory.max", bytes)?;
                    if dir.join("memory.swap.max").exists() {
                        write(&dir, "memory.swap.max", 0)?;
                    }
                }
            }
            cg.memory = Some((v, dir));
        }
        if let Some(cpus) = limits.cpus {
            if !(cpus.is_finite() && cpus > 0.0) {
                return Err(LimitsError::InvalidCpus(cpus));
            }
            let quota = ((cpus * CPU_PERIOD_US as f64) as u64).max(1000);
            let (v, dir) = cg.dir_for(roots, "cpu", name)?;
            match v {
                CgroupVersion::V1 => {
                    write(&dir, "cpu.cfs_period_us", CPU_PERIOD_US)?;
                    write(&dir, "cpu.cfs_quota_us", quota)?;
                }
                CgroupVersion::V2 => {
                    write_str(&dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
                }
            }
        }
        if let Some(pids) = limits.pids {
            let (_, dir) = cg.dir_for(roots, "pids", name)?;
            write(&dir, "pids.max", pids.saturating_add(SUPERVISOR_PIDS))?;
        }
        Ok(Some(cg))
    }

    fn dir_for(
        &mut self,
        roots: &CgroupRoots,
        controller: &'static str,
        name: &CgroupName,
    ) -> Result<(CgroupVersion, PathBuf), LimitsError> {
        let root = roots
            .get(controller)
            .map_err(|why| LimitsError::ControllerUnavailable {
                controller,
                why: why.to_owned(),
            })?;
        let dir = root.dir.join(&name.0);
        if !self.dirs.iter().any(|(_, d)| *d == dir) {
            // Names come from fresh random sandbox ids: one that exists is not ours to reuse.
            fs::create_dir(&dir).map_err(|source| LimitsError::Cgroup {
                action: "create".to_owned(),
                path: dir.clone(),
                source,
            })?;
            self.dirs.push((root.version, dir.clone()));
        }
        Ok((root.version, dir))
    }

    /// The `cgroup.procs` files the sandbox helper writes itself into.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|(_, d)| d.join("cgroup.procs"))
            .collect()
    }

    pub(crate) fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// How many processes the kernel killed for running out of memory in this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        let Some((v, dir)) = &self.memory else {
            return 0;
        };
        let file = match v {
            CgroupVersion::V1 => "memory.oom_control",
            CgroupVersion::V2 => "memory.events",
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    fn members(&self) -> Vec<i32> {
        crate::usage::pids_in(&self.procs_files())
    }

    /// SIGKILLs every process still in the cgroup.
    pub(crate) fn kill_all(&self) {
        for (v, dir) in &self.dirs {
            if *v == CgroupVersion::V2 && fs::write(dir.join("cgroup.kill"), "1").is_ok() {
                return;
            }
        }
        for pid in self.members() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Waits (blocking, up to `timeout`) for the cgroup to empty, then removes it.
    /// Returns whether everything was removed.
    pub(crate) fn remove(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_micros(200);
        loop {
            self.dirs.retain(|(_, d)| match fs::remove_dir(d) {
                Ok(()) => false,
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            });
            if self.dirs.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                for (_, d) in &self.dirs {
                    tracing::warn!(cgroup = %d.display(), "cannot remove session cgroup: still in use");
                }
                self.dirs.clear();
                return false;
            }
            if delay >= Duration::from_millis(20) {
                // Something outlived the sandbox's init (it should not): kill it.
                self.kill_all();
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }
}

impl Drop for SessionCgroup {
    fn drop(&mut self) {
        // Only reached with directories left when the sandbox never started (spawn
        // failed) or on a drop without `terminate`, where `supervise` already killed it.
        if !self.dirs.is_empty() {
            self.kill_all();
            let mut rest = SessionCgroup {
                dirs: std::mem::take(&mut self.dirs),
                memory: None,
                memory_limit: None,
            };
            // Usually empty already; otherwise finish in the background.
            if !rest.try_remove_now() {
                let _ = std::thread::Builder::new()
                    .name("lodge-cgroup-cleanup".into())
                    .spawn(move || {
                        rest.remove(Duration::from_secs(10));
                    });
            }
        }
    }
}

impl SessionCgroup {
    fn try_remove_now(&mut self) -> bool {
        self.dirs.retain(|(_, d)| match fs::remove_dir(d) {
            Ok(()) => false,
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        });
        self.dirs.is_empty()
    }
}

fn write(dir: &Path, file: &str, value: u64) -> Result<(), LimitsError> {
    write_str(dir, file, &value.to_string())
}

fn write_str(dir: &Path, file: &str, value: &str) -> Result<(), LimitsError> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|source| LimitsError::Cgroup {
        action: format!("write {value} to"),
        path,
        source,
    })
}
