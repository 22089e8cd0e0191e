//! Per-sandbox scratch directories: `scratch_root/<name>` ([`ScratchName`], derived from
//! the sandbox id), mode 0700, removed when the sandbox ends. Backend-agnostic.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, Uid, access, geteuid};

use crate::{SandboxError, SandboxId};

mod kept;
mod tmpfs;

pub use kept::sweep as sweep_kept;
pub(crate) use kept::{Budget, KeptFiles};
pub use tmpfs::unmount_stale;

/// The default root for scratch directories: `$XDG_RUNTIME_DIR/lodge` if that variable
/// names an absolute, writable directory, else `<temp dir>/lodge-<uid>`.
pub fn default_scratch_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && dir.is_absolute()
        && dir.is_dir()
        && access(&dir, AccessFlags::W_OK | AccessFlags::X_OK).is_ok()
    {
        return dir.join("lodge");
    }
    std::env::temp_dir().join(format!("lodge-{}", geteuid()))
}

/// The name of a sandbox's scratch directory under the scratch root: always exactly one
/// normal path component.
///
/// Derived from the sandbox id, not the session id (which is public and the runtime's to
/// shape). Its own type so that scratch naming can change alone: e.g. a directory kept per
/// principal across sandboxes (`storage = "principal"`) would be named by the principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScratchName(String);

impl ScratchName {
    pub(crate) fn for_sandbox(id: &SandboxId) -> Self {
        ScratchName(id.hex())
    }
}

/// A sandbox's scratch directory. Removed (best effort) on drop unless [`disarm`]ed.
///
/// [`disarm`]: ScratchDir::disarm
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
    armed: bool,
    /// Where `/session` is saved when the sandbox is terminated (`storage = "principal"`).
    kept: Option<KeptFiles>,
}

impl ScratchDir {
    /// Create `root/<name>` with mode 0700, creating `root` (0700) first if needed.
    ///
    /// Fails if the session directory already exists, or if `root` belongs to another user
    /// (a shared temp dir where someone else pre-created our root).
    pub(crate) fn create(root: &Path, name: &ScratchName) -> Result<Self, SandboxError> {
        let scratch_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SandboxError::Scratch { path, source }
        };
        let root = std::path::absolute(root).map_err(scratch_err(root))?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(scratch_err(&root))?;
        check_root_owner(&root).map_err(scratch_err(&root))?;

        let path = root.join(&name.0);
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(scratch_err(&path))?;
        let dir = ScratchDir {
            path,
            armed: true,
            kept: None,
        };
        // The umask may have cleared bits we need; make it exactly 0700.
        fs::set_permissions(&dir.path, Permissions::from_mode(0o700))
            .map_err(scratch_err(&dir.path))?;
        Ok(dir)
    }

    /// [`create`](Self::create), then, with `limits = Some((bytes, inodes))`, a tmpfs of
    /// that size mounted on it ([`tmpfs`] docs), its root owned by `owner` (uid, gid).
    /// Without limits the directory is given to `owner` as it is.
    pub(crate) fn create_limited(
        root: &Path,
        name: &ScratchName,
        limits: Option<(u64, u64)>,
        (uid, gid): (u32, u32),
    ) -> Result<Self, SandboxError> {
        let dir = Self::create(root, name)?;
        let result = match limits {
            Some((bytes, inodes)) => tmpfs::mount_on(&dir.path, bytes, inodes, uid, gid),
            None => std::os::unix::fs::chown(&dir.path, Some(uid), Some(gid)),
        };
        // On error `dir` is dropped, which removes it.
        result.map_err(|source| SandboxError::Scratch {
            path: dir.path.clone(),
            source,
        })?;
        Ok(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Fills the directory with `kept`'s files (each given to `owner`, uid and gid, when
    /// set) and remembers to save them back at the end ([`take_kept`](Self::take_kept)).
    /// Files that do not fit are an error: a sandbox never starts with part of them.
    pub(crate) fn keep(
        &mut self,
        kept: Option<KeptFiles>,
        owner: Option<(u32, u32)>,
    ) -> Result<(), SandboxError> {
        let Some(kept) = kept else { return Ok(()) };
        kept::load(&kept.dir, &self.path, owner, kept.budget).map_err(|source| {
            SandboxError::Scratch {
                path: kept.dir.clone(),
                source,
            }
        })?;
        self.kept = Some(kept);
        Ok(())
    }

    /// Where the files are to be saved, once the sandbox's processes are gone.
    pub(crate) fn take_kept(&mut self) -> Option<KeptFiles> {
        self.kept.take()
    }

    /// Give up responsibility for removing the directory; returns its path so the caller
    /// can remove it (e.g. with [`remove_tree`] on a blocking thread).
    pub(crate) fn disarm(&mut self) -> PathBuf {
        self.armed = false;
        self.path.clone()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            remove_tree_logged(&self.path);
        }
    }
}

fn check_root_owner(root: &Path) -> io::Result<()> {
    let owner = fs::metadata(root)?.uid();
    let me = geteuid();
    if owner == me.as_raw() || Uid::from_raw(owner).is_root() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("it is owned by uid {owner}, not by Lodge's user (uid {me}) or root"),
    ))
}

/// Remove a directory tree, logging (not returning) failures.
pub(crate) fn remove_tree_logged(path: &Path) {
    if let Err(error) = remove_tree(path) {
        tracing::warn!(path = %path.display(), %error, "cannot remove scratch directory");
    }
}

/// Remove a directory tree; a missing tree is not an error. A scratch tmpfs mounted
/// there is unmounted first (lazily: constant time, its pages freed with it). The tree
/// is otherwise the server's work: it may be very deep, read-only, full of symlinks, or
/// hold a mount point; [`crate::remove_tree`] copes with each.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    tmpfs::unmount(path)?;
    crate::remove_tree::remove_tree(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn name(s: &str) -> ScratchName {
        ScratchName(s.to_owned())
    }

    #[test]
    fn creates_0700_and_removes_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b");
        let dir = ScratchDir::create(&root, &name("s1")).unwrap();
        let path = dir.path().to_path_buf();
        assert_eq!(path, root.join("s1"));
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o077, 0);
        fs::create_dir_all(path.join("x/y")).unwrap();
        fs::write(path.join("x/y/f"), b"hi").unwrap();
        fs::set_permissions(path.join("x"), Permissions::from_mode(0o500)).unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn existing_session_dir_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let _dir = ScratchDir::create(tmp.path(), &name("s1")).unwrap();
        let err = ScratchDir::create(tmp.path(), &name("s1")).unwrap_err();
        assert!(matches!(err, SandboxError::Scratch { .. }), "{err}");
    }

    #[test]
    fn names_from_sandbox_ids_are_one_plain_path_component() {
        for _ in 0..100 {
            let id = SandboxId::mint();
            let name = ScratchName::for_sandbox(&id);
            let components: Vec<_> = Path::new(&name.0).components().collect();
            assert_eq!(
                components,
                [std::path::Component::Normal(name.0.as_ref())],
                "{name:?}"
            );
            assert_eq!(name.0.len(), 32);
            assert!(
                name.0
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let id = SandboxId::mint();
        let dir = ScratchDir::create(tmp.path(), &ScratchName::for_sandbox(&id)).unwrap();
        assert_eq!(dir.path(), tmp.path().join(id.to_string()));
    }

    #[test]
    fn disarm_keeps_the_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dir = ScratchDir::create(tmp.path(), &name("s")).unwrap();
        let path = dir.disarm();
        drop(dir);
        assert!(path.is_dir());
        remove_tree(&path).unwrap();
        assert!(!path.exists());
        remove_tree(&path).unwrap();
    }

    #[test]
    fn default_root_is_absolute() {
        assert!(default_scratch_root().is_absolute());
    }
}
