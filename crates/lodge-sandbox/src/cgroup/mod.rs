//! Per-session resource limits through cgroups, on cgroup v2 and on v1/hybrid hosts.
//!
//! At startup ([`CgroupRoots::detect`]) Lodge finds, for each controller it uses
//! (`memory`, `cpu`, `pids`), the hierarchy that carries it — a v1 hierarchy mounted with
//! that controller, or the v2 unified hierarchy where it is enabled — and makes a `lodge`
//! directory under its own cgroup there. Per session ([`SessionCgroup::create`]) it makes
//! `<that dir>/<name>` ([`CgroupName`], from the sandbox id) in each hierarchy a configured limit needs, writes the limits,
//! and hands the `cgroup.procs` files to the sandbox helper, which moves itself in before
//! it starts anything (so every process of the sandbox is counted). After the sandbox is
//! gone the directories are removed.
//!
//! | limit    | v1 file(s)                                         | v2 file(s)                 |
//! |----------|----------------------------------------------------|----------------------------|
//! | memory   | `memory.limit_in_bytes` (+ `memory.memsw.limit_in_bytes`: no swap; + `memory.kmem.tcp.limit_in_bytes` = ¼ of it: socket buffers, which v1 counts apart) | `memory.max` (socket buffers included), `memory.swap.max = 0` |
//! | cpus     | `cpu.cfs_period_us`, `cpu.cfs_quota_us`            | `cpu.max`                  |
//! | pids     | `pids.max`                                         | `pids.max`                 |
//!
//! The out-of-memory kill count comes from `memory.oom_control` (v1, `oom_kill`) or
//! `memory.events` (v2, `oom_kill`).
//!
//! On a pure v2 host whose Lodge cgroup is not the root, v2's "no internal processes" rule
//! means Lodge must leave its own cgroup to enable controllers for children: it moves
//! itself into `<own>/lodge-supervisor` and enables the controllers in `<own>`. If other
//! processes share its cgroup (nothing was delegated to Lodge) that fails, and limits are
//! reported as unavailable.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Limits;

mod session;

pub(crate) use session::{CgroupName, SessionCgroup};

/// Extra pids for the sandbox's own supervisor processes (the helper and the init).
pub(crate) const SUPERVISOR_PIDS: u64 = 2;
/// CFS period used for CPU quotas.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup version a hierarchy is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// A v1 hierarchy (one or more controllers mounted on their own).
    V1,
    /// The v2 unified hierarchy.
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// Where Lodge makes session cgroups for one controller.
#[derive(Clone, Debug)]
pub struct ControllerRoot {
    /// The hierarchy's version.
    pub version: CgroupVersion,
    /// The directory session cgroups are made in (`…/lodge`).
    pub dir: PathBuf,
}

/// The controllers Lodge can use, or why not.
#[derive(Clone, Debug)]
pub struct CgroupRoots {
    /// `memory`, `cpu` and `pids`, each usable or with the reason it is not.
    pub controllers: BTreeMap<&'static str, Result<ControllerRoot, String>>,
}

/// The controllers Lodge uses.
pub(crate) const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

#[derive(Debug)]
struct Mount {
    /// Root of the mount within its hierarchy (mountinfo field 4).
    root: PathBuf,
    point: PathBuf,
    version: CgroupVersion,
    /// v1: the controllers of the hierarchy.
    controllers: Vec<String>,
}

impl CgroupRoots {
    /// Finds the hierarchies and creates Lodge's directories in them. Run once, at startup.
    pub fn detect() -> CgroupRoots {
        let mut controllers = BTreeMap::new();
        let mounts = match fs::read_to_string("/proc/self/mountinfo") {
            Ok(text) => parse_mountinfo(&text),
            Err(e) => {
                for c in CONTROLLERS {
                    controllers.insert(c, Err(format!("cannot read /proc/self/mountinfo: {e}")));
                }
                return CgroupRoots { controllers };
            }
        };
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let own = parse_proc_cgroup(&own);
        let v2 = mounts.iter().find(|m| m.version == CgroupVersion::V2);
        let mut v2_dir: Option<Result<PathBuf, String>> = None;
        for c in CONTROLLERS {
            let v1 = mounts
                .iter()
                .find(|m| m.version == CgroupVersion::V1 && m.controllers.iter().any(|x| x == c));
            let found = if let Some(m) = v1 {
                let path = own
                    .iter()
                    .find(|(ctrls, _)| ctrls.split(',').any(|x| x == c))
                    .map(|(_, p)| p.clone());
                match path {
                    Some(path) => setup_v1(m, &path).map(|dir| ControllerRoot {
                        version: CgroupVersion::V1,
                        dir,
                    }),
                    None => Err(format!("not listed in /proc/self/cgroup for {c}")),
                }
            } else if let Some(m) = v2 {
                let dir = v2_dir
                    .get_or_insert_with(|| {
                        let path = own
                            .iter()
                            .find(|(ctrls, _)| ctrls.is_empty())
                            .map(|(_, p)| p.clone())
                            .unwrap_or_else(|| PathBuf::from("/"));
                        setup_v2(m, &path)
                    })
                    .clone();
                dir.and_then(|dir| {
                    let enabled =
                        fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                    if enabled.split_whitespace().any(|x| x == c) {
                        Ok(ControllerRoot {
                            version: CgroupVersion::V2,
                            dir,
                        })
                    } else {
                        Err(format!(
                            "the {c} controller is not available in the v2 hierarchy"
                        ))
                    }
                })
            } else {
                Err("no cgroup hierarchy is mounted".to_owned())
            };
            if let Ok(root) = &found {
                sweep(&root.dir);
            }
            controllers.insert(c, found);
        }
        CgroupRoots { controllers }
    }

    /// No controllers (e.g. for hosts where probing was skipped).
    pub fn none(why: &str) -> CgroupRoots {
        CgroupRoots {
            controllers: CONTROLLERS
                .iter()
                .map(|c| (*c, Err(why.to_owned())))
                .collect(),
        }
    }

    pub(crate) fn get(&self, controller: &str) -> Result<&ControllerRoot, &str> {
        match self.controllers.get(controller) {
            Some(Ok(root)) => Ok(root),
            Some(Err(why)) => Err(why),
            None => Err("unknown controller"),
        }
    }

    /// Whether every limit set in `limits` can be enforced here, else which cannot and why.
    pub fn check(&self, limits: &Limits) -> Result<(), String> {
        let wanted = [
            ("memory", limits.memory.is_some(), "memory"),
            ("cpu", limits.cpus.is_some(), "cpus"),
            ("pids", limits.pids.is_some(), "pids"),
        ];
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(_, set, _)| *set)
            .filter_map(|(c, _, key)| {
                self.get(c)
                    .err()
                    .map(|why| format!("`{key}` needs the {c} cgroup controller ({why})"))
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    }
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let fstype = *post.first()?;
            let version = match fstype {
                "cgroup" => CgroupVersion::V1,
                "cgroup2" => CgroupVersion::V2,
                _ => return None,
            };
            let controllers = post
                .get(2)
                .map(|opts| opts.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            Some(Mount {
                root: PathBuf::from(unescape(pre.get(3)?)),
                point: PathBuf::from(unescape(pre.get(4)?)),
                version,
                controllers,
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// `(controllers, path)` per line of /proc/self/cgroup; v2 has empty controllers.
fn parse_proc_cgroup(text: &str) -> Vec<(String, PathBuf)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let ctrls = parts.next()?.to_owned();
            let path = PathBuf::from(parts.next()?);
            Some((ctrls, path))
        })
        .collect()
}

/// Where our cgroup `path` (as /proc/self/cgroup says) is under mount `m`.
fn own_dir(m: &Mount, path: &Path) -> Result<PathBuf, String> {
    let rel = path
        .strip_prefix(&m.root)
        .map_err(|_| {
            format!(
                "Lodge's cgroup {} is outside the mounted part {} of the hierarchy",
                path.display(),
                m.root.display()
            )
        })?
        .to_path_buf();
    Ok(m.point.join(rel))
}

fn setup_v1(m: &Mount, path: &Path) -> Result<PathBuf, String> {
    let dir = own_dir(m, path)?.join("lodge");
    make_dir(&dir)?;
    Ok(dir)
}

fn setup_v2(m: &Mount, path: &Path) -> Result<PathBuf, String> {
    let own = own_dir(m, path)?;
    let want = CONTROLLERS
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let available = fs::read_to_string(own.join("cgroup.controllers")).map_err(|e| {
        format!(
            "cannot read {}: {e}",
            own.join("cgroup.controllers").display()
        )
    })?;
    let enable_in = |dir: &Path| {
        // Enable what is available; the per-controller check happens afterwards.
        let list: Vec<String> = CONTROLLERS
            .iter()
            .filter(|c| available.split_whitespace().any(|x| x == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if list.is_empty() {
            return Ok(());
        }
        fs::write(dir.join("cgroup.subtree_control"), list.join(" "))
    };
    let is_root = path == Path::new("/") || own == m.point;
    if !is_root && enable_in(&own).is_err() {
        // No internal processes: move Lodge into a leaf, then enable in `own`.
        let leaf = own.join("lodge-supervisor");
        make_dir(&leaf)?;
        fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| format!("cannot move Lodge into {}: {e}", leaf.display()))?;
        if let Err(e) = enable_in(&own) {
            let _ = fs::write(own.join("cgroup.procs"), std::process::id().to_string());
            return Err(format!(
                "cannot enable {want} in {} ({e}); other processes share Lodge's cgroup (delegate a cgroup to Lodge, e.g. systemd Delegate=yes)",
                own.display()
            ));
        }
    } else if is_root {
        let _ = enable_in(&own);
    }
    let dir = own.join("lodge");
    make_dir(&dir)?;
    let _ = enable_in(&dir);
    Ok(dir)
}

/// Session cgroups outlive a Lodge that was killed (SIGKILL leaves no time to remove
/// them; its sandboxes end on their own when their stdin closes). Remove the empty ones
/// older than a minute; younger ones may be another Lodge's, about to be joined.
fn sweep(dir: &Path) {
    const STALE: Duration = Duration::from_secs(60);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE);
        let empty =
            fs::read_to_string(path.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty());
        if entry.file_type().is_ok_and(|t| t.is_dir()) && old && empty {
            let _ = fs::remove_dir(&path);
        }
    }
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
    }
}

/// Formats a byte count the way configs write it: `64MiB`, `1GiB`, `1536KiB`, `1000 bytes`.
pub(crate) fn format_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_hybrid_mountinfo() {
        let text = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/x /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
22 1 8:1 / / rw - ext4 /dev/vda rw";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[1].controllers, ["rw", "cpu", "cpuacct"]);
        assert_eq!(mounts[2].root, Path::new("/docker/x"));
        assert_eq!(mounts[3].version, CgroupVersion::V2);
        let dir = own_dir(&mounts[2], Path::new("/docker/x/sub")).unwrap();
        assert_eq!(dir, Path::new("/sys/fs/cgroup/memory/sub"));
        assert!(own_dir(&mounts[2], Path::new("/other")).is_err());
    }

    #[test]
    fn parses_proc_cgroup() {
        let own = parse_proc_cgroup("4:memory:/a/b\n2:cpu,cpuacct:/\n0::/u\n");
        assert_eq!(own[0], ("memory".into(), PathBuf::from("/a/b")));
        assert_eq!(own[2], (String::new(), PathBuf::from("/u")));
    }

    #[test]
    fn bytes() {
        assert_eq!(format_bytes(64 << 20), "64MiB");
        assert_eq!(format_bytes(1 << 30), "1GiB");
        assert_eq!(format_bytes(1536 << 10), "1536KiB");
        assert_eq!(format_bytes(1000), "1000 bytes");
    }
}
