//! A size- and inode-limited `/session`: each `namespaces` sandbox's scratch dir is a tmpfs
//! of its own, mounted by Lodge in the host's mount namespace at `scratch_root/<name>`.
//!
//! Why a tmpfs: the limit must cost microseconds per session (sessions start in
//! milliseconds), cover blocks and inodes, keep the files visible on the host, and hold on
//! any host Lodge's `namespaces` backend runs on. Project quotas would be the other fit,
//! but need quota support in the kernel (`CONFIG_QUOTA` for ext4, `CONFIG_XFS_QUOTA`),
//! which hosts do not always have; a loop-backed filesystem per session costs an `mkfs`
//! and a loop device each. tmpfs's `size=` and `nr_inodes=` give ENOSPC at the limit; its
//! pages are charged to the memory cgroup of the process that writes them, i.e. the
//! session's own, so `/session` is part of the session's memory (the configuration layer
//! refuses a `disk` larger than `memory`).
//!
//! The mount's source names the Lodge that made it (`lodge-scratch:<pid>:<start time>`),
//! so a Lodge that starts after one was killed can unmount what the dead one left
//! ([`unmount_stale`]) without touching the mounts of a Lodge still running.
//! Removal ([`unmount`]) is a lazy unmount: constant time however the tree looks.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// The prefix of the source of every scratch tmpfs Lodge mounts.
const SOURCE_PREFIX: &str = "lodge-scratch:";

/// Mounts a tmpfs of at most `bytes` and `inodes` on the existing, empty directory `dir`,
/// its root owned by `uid`/`gid`, mode 0700.
pub(crate) fn mount_on(dir: &Path, bytes: u64, inodes: u64, uid: u32, gid: u32) -> io::Result<()> {
    let data = format!("size={bytes},nr_inodes={inodes},mode=0700,uid={uid},gid={gid}");
    mount(
        Some(source().as_str()),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

/// Lazily unmounts whatever is mounted at `dir` (never following a symlink there).
/// Nothing mounted there is not an error.
pub(crate) fn unmount(dir: &Path) -> io::Result<()> {
    match umount2(dir, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
        // EINVAL: not a mount point; ENOENT: gone; EPERM: Lodge cannot mount either, so
        // it mounted nothing (the `process` backend as an ordinary user).
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT | Errno::EPERM) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `lodge-scratch:<pid>:<start time>` for this process.
fn source() -> &'static String {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let pid = std::process::id();
        let start = start_time(pid).unwrap_or_default();
        format!("{SOURCE_PREFIX}{pid}:{start}")
    })
}

/// A process's start time (field 22 of `/proc/PID/stat`, clock ticks since boot):
/// with the pid, it names one process for the life of the host.
/// `None` for a process that is gone or only a zombie (exited, not yet reaped).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Unmounts (and removes the empty mount points of) scratch tmpfs mounts left by Lodge
/// processes that are gone, e.g. killed with SIGKILL before their sessions ended. Mounts
/// of a Lodge that is still running are left alone. Returns the paths unmounted.
pub fn unmount_stale() -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for (point, source) in scratch_mounts(&text) {
        if owner_alive(&source) {
            continue;
        }
        match umount2(&point, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => {
                let _ = fs::remove_dir(&point);
                tracing::info!(path = %point.display(), "unmounted a scratch tmpfs left by a Lodge that is gone");
                done.push(point);
            }
            Err(error) => {
                tracing::warn!(path = %point.display(), %error, "cannot unmount a stale scratch tmpfs")
            }
        }
    }
    done
}

/// Whether the Lodge named by a mount source (`lodge-scratch:<pid>:<start>`) still runs.
/// A source that does not parse counts as alive: never unmount what is not clearly ours.
fn owner_alive(source: &str) -> bool {
    let Some((pid, start)) = source
        .strip_prefix(SOURCE_PREFIX)
        .and_then(|rest| rest.split_once(':'))
    else {
        return true;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return true;
    };
    start_time(pid) == Some(start)
}

/// `(mount point, source)` of every tmpfs in `mountinfo` whose source is Lodge's.
fn scratch_mounts(mountinfo: &str) -> Vec<(PathBuf, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let (fstype, source) = (right.next()?, right.next()?);
            (fstype == "tmpfs" && source.starts_with(SOURCE_PREFIX))
                .then(|| (PathBuf::from(unescape(point)), source.to_owned()))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let digits = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        if bytes[i] == b'\\'
            && let Some(n) = octal
        {
            out.push(n);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn finds_only_lodge_tmpfs_mounts_and_unescapes_them() {
        let text = "\
36 35 0:50 / /tmp/a\\040b/s1 rw,nosuid,nodev - tmpfs lodge-scratch:12:34 rw,size=1024k
37 35 0:51 / /tmp/other rw - tmpfs tmpfs rw
38 35 8:1 / /tmp/x rw - ext4 lodge-scratch:1:2 rw
";
        assert_eq!(
            scratch_mounts(text),
            [(
                PathBuf::from("/tmp/a b/s1"),
                "lodge-scratch:12:34".to_owned()
            )]
        );
    }

    #[test]
    fn only_a_gone_owner_is_stale() {
        assert!(owner_alive(source()), "{}", source());
        let me = std::process::id();
        assert!(!owner_alive(&format!("{SOURCE_PREFIX}{me}:1")));
        assert!(!owner_alive(&format!("{SOURCE_PREFIX}{}:1", u32::MAX)));
        assert!(owner_alive("lodge-scratch:garbage"));
    }
}
