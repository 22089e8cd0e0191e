//! Files kept across sandboxes (`storage = "principal"`): a host directory, Lodge's own,
//! whose files a sandbox's `/session` starts with, and to which `/session` is saved when
//! the sandbox ends.
//!
//! Why copies and not a bind mount of the kept directory: `/session`'s size and inode
//! limits come from its own tmpfs (`tmpfs` module); a bind of a host directory would be
//! bounded by nothing Lodge can set without project quotas. Copying in at start and out
//! at the end keeps every limit as it is, and the copy back is itself bounded (a sparse
//! file's apparent size counts), so what a user keeps is never more than one `/session`.
//!
//! - The copy is a loop, not recursion, and stops at [`MAX_DEPTH`] levels; it copies only
//!   directories and regular files: symlinks, devices, fifos and sockets are skipped,
//!   never followed. Permission bits are kept (`& 0o777`: no set-id bits), owners are not:
//!   the store is Lodge's, `/session` the sandbox's uid.
//! - The save happens once the sandbox's processes are all gone, so nothing changes the
//!   tree while it is read. It fills `<kept>.new-<sandbox>` and swaps it in with one
//!   `renameat2(RENAME_EXCHANGE)`: the store is always the whole of some sandbox's
//!   `/session`, never a mix. A crash (or a sandbox Lodge could not end cleanly) loses
//!   that sandbox's changes only. Two sandboxes of one principal at once each start from
//!   the store as it was; the last to end wins.
//! - A store unused for its server's `storage_ttl` is removed by [`sweep`]; a use (start
//!   or save) counts from the directory's mtime, which both refresh.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

/// Deeper directories are not copied (logged): a hostile tree may be thousands deep.
pub(crate) const MAX_DEPTH: usize = 64;
/// Paths longer than this (bytes) are skipped: the store's paths are longer than
/// `/session`'s, and `PATH_MAX` is 4096.
const MAX_PATH: usize = 3800;
/// The infix of a save under way (`<kept>.new-<sandbox id>`).
const NEW_INFIX: &str = ".new-";

/// What one copy may write: the `/session` limits (`Limits::scratch_limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    pub bytes: u64,
    pub inodes: u64,
}

/// What a copy did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Copied {
    pub files: u64,
    pub bytes: u64,
    /// Entries left out: not a directory or regular file, too deep, unreadable.
    pub skipped: u64,
}

/// One sandbox's kept files: where they live and what they may hold.
#[derive(Debug)]
pub(crate) struct KeptFiles {
    pub dir: PathBuf,
    pub budget: Budget,
}

impl KeptFiles {
    /// Saves the ended sandbox `tag`'s `/session` (at `scratch`), logging the outcome:
    /// a save that fails leaves the previous files, and the sandbox ends all the same.
    pub(crate) fn save_logged(&self, scratch: &Path, tag: &str) {
        match save(scratch, &self.dir, tag, self.budget) {
            Ok(copied) => tracing::debug!(
                sandbox = tag,
                files = copied.files,
                bytes = copied.bytes,
                skipped = copied.skipped,
                "kept /session's files"
            ),
            Err(error) => tracing::warn!(
                sandbox = tag, path = %self.dir.display(), %error,
                "cannot keep /session's files; the previous ones stay"
            ),
        }
    }
}

/// Fills the new sandbox's `scratch` from `kept` (nothing if there is none yet), giving
/// every entry to `owner` (uid, gid) when set. Fails if the files do not fit `budget`.
pub(crate) fn load(
    kept: &Path,
    scratch: &Path,
    owner: Option<(u32, u32)>,
    budget: Budget,
) -> io::Result<Copied> {
    match fs::symlink_metadata(kept) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(io::Error::other("the kept files are not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Copied::default()),
        Err(e) => return Err(e),
    }
    // A use: the store's disuse is counted from here.
    File::open(kept)?.set_modified(SystemTime::now())?;
    copy_tree(kept, scratch, owner, budget)
}

/// Saves an ended sandbox's `scratch` as `kept` (see the module docs); `tag` names the
/// sandbox (unique among those running). On error the previous store is left as it was.
pub(crate) fn save(scratch: &Path, kept: &Path, tag: &str, budget: Budget) -> io::Result<Copied> {
    let parent = kept
        .parent()
        .ok_or_else(|| io::Error::other("the kept files' directory has no parent"))?;
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)?;
    let name = kept
        .file_name()
        .ok_or_else(|| io::Error::other("the kept files' directory has no name"))?;
    let mut new_name = name.to_os_string();
    new_name.push(format!("{NEW_INFIX}{tag}"));
    let new = parent.join(new_name);
    crate::remove_tree::remove_tree(&new)?;
    DirBuilder::new().mode(0o700).create(&new)?;
    let copied = match copy_tree(scratch, &new, None, budget) {
        Ok(copied) => copied,
        Err(e) => {
            let _ = crate::remove_tree::remove_tree(&new);
            return Err(e);
        }
    };
    swap_in(&new, kept)?;
    // `new` now holds the previous store (or nothing).
    crate::remove_tree::remove_tree(&new)?;
    Ok(copied)
}

/// Makes `new` the store at `kept`, atomically; afterwards `new` holds the old store,
/// if there was one.
fn swap_in(new: &Path, kept: &Path) -> io::Result<()> {
    for _ in 0..2 {
        match renameat2(AT_FDCWD, new, AT_FDCWD, kept, RenameFlags::RENAME_EXCHANGE) {
            Ok(()) => return Ok(()),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        // No store yet. Another save may create one meanwhile: then exchange with it.
        match renameat2(AT_FDCWD, new, AT_FDCWD, kept, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other("the kept files changed during the save"))
}

/// Removes the stores in `dir` unused for `ttl`, and saves that were cut short (all of
/// them when `at_start`: no sandbox of this process is saving yet). Returns how many.
pub fn sweep(dir: &Path, ttl: Duration, at_start: bool) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let partial = entry.file_name().to_string_lossy().contains(NEW_INFIX);
        let idle = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|at| now.duration_since(at).unwrap_or_default())
            .unwrap_or(Duration::MAX);
        if (partial && at_start) || idle >= ttl {
            match crate::remove_tree::remove_tree(&path) {
                Ok(()) => removed += 1,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove kept files")
                }
            }
        }
    }
    Ok(removed)
}

/// One directory to copy: source, destination (already made), depth below the root.
struct Pending {
    from: PathBuf,
    to: PathBuf,
    depth: usize,
}

/// Copies the contents of directory `from` into the existing directory `to` (see the
/// module docs). Errors reading the source skip that entry; errors writing, or going
/// past `budget`, end the copy with an error.
fn copy_tree(
    from: &Path,
    to: &Path,
    owner: Option<(u32, u32)>,
    budget: Budget,
) -> io::Result<Copied> {
    let mut copied = Copied::default();
    let mut inodes = 0u64;
    let mut stack = vec![Pending {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        depth: 0,
    }];
    // Directory modes are set last (deepest first): a read-only directory must be filled
    // before it becomes read-only.
    let mut modes: Vec<(PathBuf, u32)> = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir.from) else {
            copied.skipped += 1;
            continue;
        };
        for entry in entries {
            let Ok(entry) = entry else {
                copied.skipped += 1;
                continue;
            };
            let (src, dst) = (entry.path(), dir.to.join(entry.file_name()));
            let Ok(meta) = fs::symlink_metadata(&src) else {
                copied.skipped += 1;
                continue;
            };
            let wanted = meta.is_dir() || meta.is_file();
            if !wanted || dst.as_os_str().len() > MAX_PATH {
                copied.skipped += 1;
                continue;
            }
            if meta.is_dir() && dir.depth + 1 > MAX_DEPTH {
                copied.skipped += 1;
                continue;
            }
            inodes += 1;
            if inodes > budget.inodes {
                return Err(over_budget(budget));
            }
            if meta.is_dir() {
                DirBuilder::new().mode(0o700).create(&dst)?;
                give(&dst, owner)?;
                modes.push((dst.clone(), meta.mode() & 0o777));
                stack.push(Pending {
                    from: src,
                    to: dst,
                    depth: dir.depth + 1,
                });
                continue;
            }
            let Ok(mut source) = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&src)
            else {
                copied.skipped += 1;
                continue;
            };
            let mut target = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dst)?;
            let left = budget.bytes - copied.bytes;
            // One byte more than is left tells "too big" from "exactly fits".
            let n = io::copy(&mut (&mut source).take(left.saturating_add(1)), &mut target)?;
            if n > left {
                return Err(over_budget(budget));
            }
            target.flush()?;
            copied.bytes += n;
            copied.files += 1;
            target.set_permissions(Permissions::from_mode(meta.mode() & 0o777))?;
            if let Ok(modified) = meta.modified() {
                target.set_modified(modified)?;
            }
            give(&dst, owner)?;
        }
    }
    for (dir, mode) in modes.into_iter().rev() {
        fs::set_permissions(&dir, Permissions::from_mode(mode))?;
    }
    Ok(copied)
}

fn give(path: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

fn over_budget(budget: Budget) -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        format!(
            "the files are more than /session holds ({} bytes, {} files and directories)",
            budget.bytes, budget.inodes
        ),
    )
}

#[cfg(test)]
#[path = "kept_tests.rs"]
mod tests;
