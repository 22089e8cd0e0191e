//! What a sandbox's processes use right now, read from `/proc`: resident memory and
//! CPU time, summed over every process of the sandbox (its cgroup's members when it
//! has one, else the server's process group).

use std::fs;
use std::path::PathBuf;

/// Resident memory and CPU time of a sandbox's processes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub memory_bytes: u64,
    /// User and system time, including that of children already reaped.
    pub cpu_seconds: f64,
}

/// `/proc`'s clock ticks per second (`USER_HZ`), fixed at 100 by Linux's user ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// Where to find a sandbox's processes, to read their [`Usage`] later from any
/// thread (reading `/proc` takes a moment: keep it off the relay's tasks).
#[derive(Clone, Debug)]
pub struct UsageProbe(Members);

#[derive(Clone, Debug)]
enum Members {
    /// The `cgroup.procs` files of the sandbox's cgroups.
    Cgroup(Vec<PathBuf>),
    /// The server's process group.
    Group(i32),
    Gone,
}

impl UsageProbe {
    pub(crate) fn cgroup(procs_files: Vec<PathBuf>) -> Self {
        UsageProbe(Members::Cgroup(procs_files))
    }

    pub(crate) fn group(pgid: Option<i32>) -> Self {
        UsageProbe(pgid.map_or(Members::Gone, Members::Group))
    }

    /// What the sandbox's processes use now.
    pub fn read(&self) -> Usage {
        match &self.0 {
            Members::Cgroup(files) => of(pids_in(files)),
            Members::Group(pgid) => of(group_members(*pgid)),
            Members::Gone => Usage::default(),
        }
    }
}

/// The pids listed in `cgroup.procs` files, each once.
pub(crate) fn pids_in(procs_files: &[PathBuf]) -> Vec<i32> {
    let mut pids: Vec<i32> = procs_files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The usage of `pids`; processes gone meanwhile count for nothing.
fn of(pids: impl IntoIterator<Item = i32>) -> Usage {
    let mut usage = Usage::default();
    for pid in pids {
        if let Some(ticks) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| cpu_ticks(&s))
        {
            usage.cpu_seconds += ticks as f64 / TICKS_PER_SECOND;
        }
        if let Some(bytes) = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| resident_bytes(&s))
        {
            usage.memory_bytes += bytes;
        }
    }
    usage
}

/// The processes whose process group is `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| field_after_comm(&s, 2)?.parse::<i32>().ok())
                == Some(pgid)
        })
        .collect()
}

/// Field `n` (0-based) after the `(comm)` of a `/proc/PID/stat` line: 0 is the
/// state, 1 the parent, 2 the process group, 11 and 12 user and system time.
/// The command name may hold spaces and parentheses, so fields start after the last `)`.
fn field_after_comm(stat: &str, n: usize) -> Option<&str> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(n)
}

/// utime + stime + cutime + cstime.
fn cpu_ticks(stat: &str) -> Option<u64> {
    (11..=14)
        .map(|n| field_after_comm(stat, n)?.parse::<u64>().ok())
        .sum()
}

/// `VmRSS` of a `/proc/PID/status` (absent for a zombie).
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_a_command_name_with_spaces_and_parens() {
        let stat =
            "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 1 1000 200";
        assert_eq!(field_after_comm(stat, 2), Some("42"));
        assert_eq!(cpu_ticks(stat), Some(310));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn resident_memory_comes_from_vmrss() {
        assert_eq!(
            resident_bytes("Name:\tcat\nVmRSS:\t    1500 kB\n"),
            Some(1500 * 1024)
        );
        assert_eq!(resident_bytes("Name:\tzombie\n"), None);
    }

    #[test]
    fn this_process_uses_memory_and_is_in_its_own_group() {
        let me = std::process::id() as i32;
        let usage = of([me]);
        assert!(usage.memory_bytes > 1 << 20, "{usage:?}");
        let group = nix::unistd::getpgrp().as_raw();
        assert!(group_members(group).contains(&me));
    }
}
