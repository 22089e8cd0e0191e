//! Removing a directory tree that a hostile server built.
//!
//! A server can make its scratch directory tens of thousands of levels deep in seconds
//! (`mkdir d; cd d` in a loop never meets `PATH_MAX`). A recursive removal then overflows
//! Lodge's stack (every session dies with it) or, holding a descriptor per level, fails
//! with EMFILE and leaves the tree on the host forever. This removal:
//!
//! - uses constant stack: the walk is a loop; the path from the root is kept on the heap
//!   (one name and inode number per level);
//! - holds at most four descriptors at any time (the root, the current directory, one
//!   directory listing, and the child being opened), however deep the tree: it goes down
//!   with `openat(name)` and back up with `openat("..")`, checking that `..` is the
//!   directory it came from (same device and inode) and otherwise walking down again from
//!   the root by the recorded names;
//! - never follows a symlink: directories are opened `O_NOFOLLOW | O_DIRECTORY`, checked
//!   against the `lstat` that chose them, and everything else is unlinked, never opened;
//! - never crosses a device: a directory on another file system than the root (a mount
//!   point) is left alone and reported;
//! - makes directories owner-writable only through a descriptor of the directory itself
//!   (`fchmod`, or `chmod` of `/proc/self/fd/N` for an `O_PATH` descriptor when the
//!   directory cannot even be read), so the chmod cannot follow a symlink either.
//!
//! Entries that cannot be removed are skipped (each at most once per directory, so the
//! walk always ends); the first error is returned after everything else is gone.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// One directory on the way down from the root.
struct Level {
    /// Its name in its parent (empty for the root).
    name: CString,
    ino: u64,
    /// Entries that could not be removed: skipped when the directory is listed again.
    stuck: HashSet<CString>,
}

/// Removes `path` and everything beneath it. A missing `path` is not an error; a
/// symlink at `path` is removed, never followed.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let root = match open_dir(AT_FDCWD, path) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        // Not a directory (a symlink or a file where the scratch dir was): just unlink it.
        Err(Errno::ELOOP | Errno::ENOTDIR) => return missing_ok(std::fs::remove_file(path)),
        Err(e) => return Err(e.into()),
    };
    let root_stat = fstat(&root)?;
    make_owner_rwx(&root, &root_stat)?;
    let mut walk = Walk {
        dev: root_stat.st_dev,
        root,
        levels: vec![Level {
            name: CString::default(),
            ino: root_stat.st_ino,
            stuck: HashSet::new(),
        }],
        first_error: None,
    };
    walk.run()?;
    let Walk {
        root, first_error, ..
    } = walk;
    drop(root);
    if let Some(error) = first_error {
        return Err(error);
    }
    missing_ok(std::fs::remove_dir(path))
}

fn missing_ok(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

struct Walk {
    root: OwnedFd,
    dev: u64,
    /// The root first, the current directory last.
    levels: Vec<Level>,
    first_error: Option<io::Error>,
}

impl Walk {
    fn note(&mut self, what: &CStr, error: impl Into<io::Error>) {
        let error = error.into();
        if self.first_error.is_none() {
            let name = what.to_string_lossy();
            self.first_error = Some(io::Error::new(error.kind(), format!("{name}: {error}")));
        }
    }

    /// Empties the root. Errors out only when the walk itself cannot go on (the way back
    /// up is gone); failures to remove single entries are noted and skipped.
    fn run(&mut self) -> io::Result<()> {
        let mut cur = reopen(&self.root)?;
        loop {
            match self.next_subdir(&cur)? {
                Some((name, ino)) => match self.open_child(&cur, &name, ino) {
                    Ok(child) => {
                        cur = child;
                        self.levels.push(Level {
                            name,
                            ino,
                            stuck: HashSet::new(),
                        });
                    }
                    Err(e) => {
                        self.note(&name, e);
                        self.current().stuck.insert(name);
                    }
                },
                None => {
                    let Some(done) = self.levels.pop() else {
                        return Ok(());
                    };
                    if self.levels.is_empty() {
                        return Ok(()); // the root: its caller removes it by path
                    }
                    let parent = self.open_parent(&cur)?;
                    drop(cur);
                    cur = parent;
                    if let Err(e) = unlinkat(&cur, done.name.as_c_str(), UnlinkatFlags::RemoveDir)
                        && e != Errno::ENOENT
                    {
                        self.note(&done.name, e);
                        self.current().stuck.insert(done.name);
                    }
                }
            }
        }
    }

    fn current(&mut self) -> &mut Level {
        // `levels` always holds the root while the walk runs.
        let last = self.levels.len() - 1;
        &mut self.levels[last]
    }

    /// Unlinks every non-directory in `dir` and every empty subdirectory; returns the
    /// first subdirectory that needs emptying first (its name and inode), or `None` when
    /// nothing removable is left.
    fn next_subdir(&mut self, dir: &OwnedFd) -> io::Result<Option<(CString, u64)>> {
        let mut listing = Dir::from_fd(reopen(dir)?)?;
        for entry in listing.iter() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.note(c"(reading a directory)", e);
                    return Ok(None);
                }
            };
            let name = entry.file_name();
            if name == c"." || name == c".." || self.current().stuck.contains(name) {
                continue;
            }
            let maybe_dir = matches!(entry.file_type(), Some(Type::Directory) | None);
            if !maybe_dir {
                match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => continue,
                    Err(Errno::EISDIR) => {}
                    Err(e) => {
                        let name = name.to_owned();
                        self.note(&name, e);
                        self.current().stuck.insert(name);
                        continue;
                    }
                }
            }
            let stat = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::ENOENT) => continue,
                Err(e) => {
                    let name = name.to_owned();
                    self.note(&name, e);
                    self.current().stuck.insert(name);
                    continue;
                }
            };
            if !is_dir(&stat) {
                // DT_UNKNOWN (or swapped since listing): not a directory, so unlink it.
                if let Err(e) = unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
                    && e != Errno::ENOENT
                {
                    let name = name.to_owned();
                    self.note(&name, e);
                    self.current().stuck.insert(name);
                }
                continue;
            }
            if stat.st_dev != self.dev {
                let name = name.to_owned();
                self.note(&name, io::Error::other("a mount point: not crossed"));
                self.current().stuck.insert(name);
                continue;
            }
            match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => continue,
                // Not empty (or not writable yet): go down into it.
                Err(_) => return Ok(Some((name.to_owned(), stat.st_ino))),
            }
        }
        Ok(None)
    }

    /// Opens subdirectory `name` of `dir`, which `lstat` showed as directory `ino` on the
    /// root's device, and makes it owner-writable.
    fn open_child(&self, dir: &OwnedFd, name: &CStr, ino: u64) -> io::Result<OwnedFd> {
        let child = match open_dir(dir, name) {
            Ok(fd) => fd,
            Err(Errno::EACCES) => {
                // Unreadable (mode 0 or so): make it readable through an O_PATH handle on
                // the directory itself, never through its name.
                let handle = openat(
                    dir,
                    name,
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let stat = fstat(&handle)?;
                self.check(&stat, ino)?;
                chmod_via_proc(&handle, stat.st_mode | 0o700)?;
                open_dir(&handle, c".")?
            }
            Err(e) => return Err(e.into()),
        };
        let stat = fstat(&child)?;
        self.check(&stat, ino)?;
        make_owner_rwx(&child, &stat)?;
        Ok(child)
    }

    /// The directory just above the current one, which is `levels.last()`.
    fn open_parent(&self, cur: &OwnedFd) -> io::Result<OwnedFd> {
        let Some(expected) = self.levels.last() else {
            return Err(io::Error::other("no parent"));
        };
        if let Ok(parent) = open_dir(cur, c"..")
            && fstat(&parent).is_ok_and(|s| self.check(&s, expected.ino).is_ok())
        {
            return Ok(parent);
        }
        // `..` is not where we came from (the tree was moved): walk down from the root.
        let mut fd = reopen(&self.root)?;
        for level in &self.levels[1..] {
            let next = open_dir(&fd, level.name.as_c_str())?;
            self.check(&fstat(&next)?, level.ino)?;
            fd = next;
        }
        Ok(fd)
    }

    fn check(&self, stat: &FileStat, ino: u64) -> io::Result<()> {
        if stat.st_dev != self.dev || stat.st_ino != ino || !is_dir(stat) {
            return Err(io::Error::other(
                "the directory changed while it was being removed",
            ));
        }
        Ok(())
    }
}

fn is_dir(stat: &FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

fn open_dir<P: ?Sized + nix::NixPath>(dir: impl AsFd, name: &P) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A new open file description of the same directory (its own read offset, so a fresh
/// listing starts at the beginning).
fn reopen(dir: &OwnedFd) -> io::Result<OwnedFd> {
    Ok(open_dir(dir, c".")?)
}

/// Adds `u+rwx` if missing, so the directory can be listed and emptied.
fn make_owner_rwx(dir: &OwnedFd, stat: &FileStat) -> io::Result<()> {
    if stat.st_mode & 0o700 == 0o700 {
        return Ok(());
    }
    let mode = Mode::from_bits_truncate((stat.st_mode | 0o700) & 0o7777);
    Ok(fchmod(dir, mode)?)
}

/// `chmod` of the directory an `O_PATH` descriptor refers to (`fchmod` refuses O_PATH
/// descriptors). `/proc/self/fd/N` names the directory itself, not a path to it.
fn chmod_via_proc(handle: &OwnedFd, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let link = format!("/proc/self/fd/{}", handle.as_raw_fd());
    std::fs::set_permissions(link, std::fs::Permissions::from_mode(mode & 0o7777))
}

#[cfg(test)]
mod tests;
