//! The sandbox's root filesystem, built by the supervisor in its new mount namespace: a
//! small tmpfs on the plan's mount point, filled with the plan's entries (directories,
//! symlinks, generated files, read-only binds, tmpfs mounts, the session's scratch dir at
//! `/session`, masks). The init later `pivot_root`s into it.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

use super::OrFail;
use crate::plan::{Entry, Plan, SESSION_DIR, SessionPlan};

pub(super) fn build_root(plan: &Plan, session: &SessionPlan) {
    let root = &plan.root;
    // Lodge made it at startup; a temp-dir cleaner may have removed it since.
    let _ = fs::create_dir_all(root);
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=4m"),
    )
    .or_fail(|| format!("mounting the sandbox root on {}", root.display()));
    for entry in plan.entries.iter().chain(&session.extra) {
        apply(root, entry, session);
    }
}

fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn apply(root: &Path, entry: &Entry, session: &SessionPlan) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
    let parent_dirs = |p: &Path| {
        if let Some(parent) = p.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .or_fail(|| format!("creating {}", parent.display()));
        }
    };
    match entry {
        Entry::Dir { path, mode } => {
            let p = inside(root, path);
            if p.is_dir() {
                return; // e.g. inside a bind already
            }
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&p)
                .or_fail(|| format!("creating {}", path.display()));
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
                .or_fail(|| format!("chmod {}", path.display()));
        }
        Entry::Symlink { path, target } => {
            let p = inside(root, path);
            parent_dirs(&p);
            symlink(target, &p).or_fail(|| format!("creating symlink {}", path.display()));
        }
        Entry::File { path, contents } => {
            let p = inside(root, path);
            parent_dirs(&p);
            fs::write(&p, contents).or_fail(|| format!("writing {}", path.display()));
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                .or_fail(|| format!("chmod {}", path.display()));
        }
        Entry::Bind {
            src,
            dst,
            file,
            rw,
            dev,
        } => bind(root, src, dst, *file, *rw, *dev),
        Entry::Tmpfs { path, mode, size } => {
            let p = inside(root, path);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&p)
                .or_fail(|| format!("creating {}", path.display()));
            let size = size.unwrap_or(session.tmp_size);
            mount(
                Some("tmpfs"),
                &p,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(format!("mode={mode:o},size={size}").as_str()),
            )
            .or_fail(|| format!("mounting a tmpfs on {}", path.display()));
        }
        Entry::Session => bind(
            root,
            &session.scratch,
            Path::new(SESSION_DIR),
            false,
            true,
            false,
        ),
        Entry::Hide { path, file } => {
            let p = inside(root, path);
            if !p.exists() {
                return;
            }
            if *file {
                bind_at(Path::new("/dev/null"), &p, false, false)
                    .or_fail(|| format!("hiding {}", path.display()));
            } else {
                mount(
                    Some("tmpfs"),
                    &p,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some("mode=0555,size=4k"),
                )
                .or_fail(|| format!("hiding {}", path.display()));
            }
        }
    }
}

fn bind(root: &Path, src: &Path, dst: &Path, file: bool, rw: bool, dev: bool) {
    use std::os::unix::fs::DirBuilderExt;
    let target = inside(root, dst);
    if !target.exists() {
        if file {
            if let Some(parent) = target.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .or_fail(|| format!("creating the mount point for {}", dst.display()));
            }
            fs::File::create(&target)
                .or_fail(|| format!("creating the mount point for {}", dst.display()));
        } else {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&target)
                .or_fail(|| format!("creating the mount point for {}", dst.display()));
        }
    }
    bind_at(src, &target, rw, dev)
        .or_fail(|| format!("binding {} at {}", src.display(), dst.display()));
}

fn bind_at(src: &Path, target: &Path, rw: bool, dev: bool) -> nix::Result<()> {
    mount(
        Some(src),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID;
    if !rw {
        flags |= MsFlags::MS_RDONLY;
    }
    if !dev {
        flags |= MsFlags::MS_NODEV;
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
}
