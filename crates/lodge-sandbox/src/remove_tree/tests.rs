#![allow(clippy::unwrap_used)]
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::stat::mkdirat;

use super::*;

/// Builds `levels` nested directories under `top` the way a hostile server would: one
/// relative `mkdirat` + `openat` step at a time (no path ever exceeds one component).
fn deep_tree(top: &Path, levels: usize) {
    let mut fd = open_dir(AT_FDCWD, top).unwrap();
    for _ in 0..levels {
        mkdirat(&fd, c"d", Mode::from_bits_truncate(0o700)).unwrap();
        fd = open_dir(&fd, c"d").unwrap();
    }
    // A file and a mode-0 directory at the bottom.
    let f = openat(
        &fd,
        c"file",
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    drop(f);
    mkdirat(&fd, c"locked", Mode::empty()).unwrap();
}

/// The highest descriptor number now open.
fn highest_fd() -> u64 {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(2)
}

/// 50,000 levels, removed on a thread with a 256 KiB stack while this process may open
/// only a few more descriptors than it already has. A recursive removal overflows the
/// stack or runs out of descriptors here.
#[test]
fn removes_a_50000_level_tree_with_little_stack_and_few_descriptors() {
    // On a tmpfs where there is one: 50,000 directories on a busy disk take minutes.
    let tmp = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let top = tmp.path().join("scratch");
    fs::create_dir(&top).unwrap();
    deep_tree(&top, 50_000);

    // The limit is process-wide: lower it only where this test has the process to itself
    // (nextest's process-per-test mode; `cargo test` runs tests side by side).
    let alone = std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test");
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if alone {
        let budget = highest_fd() + 1 + 8;
        setrlimit(Resource::RLIMIT_NOFILE, budget, hard).unwrap();
    }
    let path = top.clone();
    let result = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || remove_tree(&path))
        .unwrap()
        .join();
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    result.unwrap().unwrap();
    assert!(!top.exists());
}

/// Symlinks are unlinked, never followed, and the chmod that makes directories writable
/// never reaches what a symlink points at.
#[test]
fn never_follows_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep"), b"x").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o500)).unwrap();

    let top = tmp.path().join("scratch");
    fs::create_dir_all(top.join("a/b")).unwrap();
    symlink(&outside, top.join("a/b/link")).unwrap();
    symlink(&outside, top.join("link")).unwrap();
    fs::set_permissions(top.join("a/b"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(top.join("a"), fs::Permissions::from_mode(0o500)).unwrap();

    remove_tree(&top).unwrap();
    assert!(!top.exists());
    assert!(outside.join("keep").exists());
    let mode = fs::metadata(&outside).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o500, "the symlink's target was chmodded");
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o700)).unwrap();

    // A symlink where the tree should be is removed, not followed.
    let top = tmp.path().join("scratch2");
    symlink(&outside, &top).unwrap();
    remove_tree(&top).unwrap();
    assert!(fs::symlink_metadata(&top).is_err());
    assert!(outside.join("keep").exists());
    // A missing tree is fine.
    remove_tree(&top).unwrap();
}

/// A mount point inside the tree is reported and left alone (root only: it mounts a
/// tmpfs).
#[test]
fn never_crosses_a_device() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root to mount a tmpfs");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let top = tmp.path().join("scratch");
    let mnt = top.join("a/mnt");
    fs::create_dir_all(&mnt).unwrap();
    fs::write(top.join("a/f"), b"x").unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=64k"),
    )
    .unwrap();
    fs::write(mnt.join("other-device"), b"x").unwrap();
    let err = remove_tree(&top);
    let survived = mnt.join("other-device").exists();
    nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH).unwrap();
    let err = err.unwrap_err();
    assert!(err.to_string().contains("mount point"), "{err}");
    assert!(survived, "removal crossed into another file system");
    assert!(!top.join("a/f").exists(), "the rest was removed");
    remove_tree(&top).unwrap();
    assert!(!top.exists());
}
