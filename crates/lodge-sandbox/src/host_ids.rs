//! Host uids for sandboxed servers, allocated host-wide.
//!
//! Per-uid kernel limits (inotify instances and watches, `RLIMIT_NPROC`, user-namespace
//! counts, message queues) are shared by every process of a uid, so two concurrent
//! sessions must never run as the same host uid: not two sessions of one Lodge (which
//! used to cycle through 65,536 ids and wrap), nor sessions of two Lodge processes on one
//! host (which both started at the first id).
//!
//! A uid is held by an exclusive `flock` on `LOCK_DIR/<uid>.lock`, taken before the
//! sandbox starts and released once it is gone. The kernel drops the lock if Lodge dies,
//! so a crash leaks nothing. Candidates are picked at random from [`HOST_ID_COUNT`] ids,
//! so concurrent allocators rarely even try the same one.
//!
//! Lock files exist only while held: the holder unlinks its file before it unlocks. A
//! waiter that opened the file just before and gets the lock afterwards finds the path
//! gone or naming another inode, and tries again; so a lock is only ever held on the
//! file the path names, and two holders of one uid cannot exist.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// First host uid/gid given to sandboxed servers (`"lo"` << 16). These ids own nothing on
/// the host.
pub const HOST_ID_BASE: u32 = 0x6c6f_0000;
/// How many host ids sandboxes are allocated from (at random, never one in use).
pub const HOST_ID_COUNT: u32 = 1 << 20;
/// Where the host-wide uid locks live (a tmpfs: they never outlive a boot).
pub(crate) const LOCK_DIR: &str = "/run/lodge/uids";
/// Random picks before giving up: with a million ids, failing this many times means
/// nearly all are in use.
const ATTEMPTS: usize = 256;

/// Hands out host uids from `[base, base + count)`, coordinated through lock files in
/// `dir` with every other allocator on the host that uses the same directory.
#[derive(Debug)]
pub(crate) struct HostIds {
    dir: PathBuf,
    base: u32,
    count: u32,
}

/// A host uid (= gid) held for one sandbox; released when dropped.
#[derive(Debug)]
pub(crate) struct HostIdLease {
    uid: u32,
    path: PathBuf,
    lock: Option<Flock<File>>,
}

impl HostIdLease {
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for HostIdLease {
    fn drop(&mut self) {
        // Unlink while still holding the lock (see the module docs), then unlock.
        let _ = fs::remove_file(&self.path);
        drop(self.lock.take());
    }
}

impl HostIds {
    /// The host-wide allocator.
    pub(crate) fn host() -> Self {
        HostIds::new(LOCK_DIR, HOST_ID_BASE, HOST_ID_COUNT)
    }

    pub(crate) fn new(dir: impl Into<PathBuf>, base: u32, count: u32) -> Self {
        HostIds {
            dir: dir.into(),
            base,
            count: count.max(1),
        }
    }

    /// A uid no other sandbox on this host (of any Lodge using the same lock directory)
    /// holds, held until the lease is dropped.
    pub(crate) fn allocate(&self) -> io::Result<HostIdLease> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        for _ in 0..ATTEMPTS {
            let uid = self.base + rand::random_range(0..self.count);
            if let Some(lease) = self.try_take(uid)? {
                return Ok(lease);
            }
        }
        // Nearly full (or a tiny range): look at every id once before giving up.
        let start = rand::random_range(0..self.count);
        for i in 0..self.count {
            let uid = self.base + (start + i) % self.count;
            if let Some(lease) = self.try_take(uid)? {
                return Ok(lease);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "all {} host uids from {} are in use by sandboxes",
                self.count, self.base
            ),
        ))
    }

    fn try_take(&self, uid: u32) -> io::Result<Option<HostIdLease>> {
        let path = self.dir.join(format!("{uid}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(e.into()),
        };
        if !still_named(&lock, &path) {
            // Its holder unlinked it between our open and our lock: that id may be
            // taken again by now; pick another.
            return Ok(None);
        }
        Ok(Some(HostIdLease {
            uid,
            path,
            lock: Some(lock),
        }))
    }
}

/// Whether `path` still names the file `lock` is held on.
fn still_named(lock: &Flock<File>, path: &Path) -> bool {
    match (lock.metadata(), fs::symlink_metadata(path)) {
        (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;

    /// Two allocators sharing a lock directory (as two Lodge processes on one host do)
    /// never hand out a uid the other holds, even when every id is in use; released ids
    /// are handed out again. (The old scheme, a per-process counter from the first id,
    /// gave both processes' first sessions the same uid.)
    #[test]
    fn two_allocators_never_share_a_held_uid() {
        let tmp = tempfile::tempdir().unwrap();
        let a = HostIds::new(tmp.path(), 5000, 16);
        let b = HostIds::new(tmp.path(), 5000, 16);
        let mut held = Vec::new();
        for i in 0..16 {
            let lease = if i % 2 == 0 {
                a.allocate()
            } else {
                b.allocate()
            }
            .unwrap();
            held.push(lease);
        }
        let uids: HashSet<u32> = held.iter().map(HostIdLease::uid).collect();
        assert_eq!(uids.len(), 16, "a uid was handed out twice: {uids:?}");
        assert!(uids.iter().all(|u| (5000..5016).contains(u)));
        let err = a.allocate().unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        assert!(b.allocate().is_err());

        // Releasing one frees exactly that one, and its lock file is gone.
        let freed = held.remove(3);
        let uid = freed.uid();
        drop(freed);
        assert!(!tmp.path().join(format!("{uid}.lock")).exists());
        assert_eq!(b.allocate().unwrap().uid(), uid);
    }

    /// Concurrent allocators on many threads: every held uid is unique.
    #[test]
    fn concurrent_allocations_are_unique() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let ids = HostIds::new(dir, 1 << 20, 64);
                    (0..16).map(|_| ids.allocate().unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        let leases: Vec<HostIdLease> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let uids: HashSet<u32> = leases.iter().map(HostIdLease::uid).collect();
        assert_eq!(uids.len(), 64);
    }
}
