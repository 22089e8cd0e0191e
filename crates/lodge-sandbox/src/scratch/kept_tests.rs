#![allow(clippy::unwrap_used)]
use super::*;

const ROOMY: Budget = Budget {
    bytes: 1 << 20,
    inodes: 100,
};

fn tree(root: &Path) {
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("top"), b"top").unwrap();
    fs::write(root.join("a/b/deep"), b"deep").unwrap();
    fs::set_permissions(root.join("a"), Permissions::from_mode(0o500)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
}

#[test]
fn save_then_load_gives_the_files_back_without_symlinks_or_fifos() {
    let tmp = tempfile::tempdir().unwrap();
    let (scratch, kept, next) = (
        tmp.path().join("s"),
        tmp.path().join("k/store"),
        tmp.path().join("n"),
    );
    fs::create_dir(&scratch).unwrap();
    tree(&scratch);
    let saved = save(&scratch, &kept, "t1", ROOMY).unwrap();
    assert_eq!((saved.files, saved.bytes, saved.skipped), (2, 7, 2));
    fs::create_dir(&next).unwrap();
    load(&kept, &next, None, ROOMY).unwrap();
    assert_eq!(fs::read(next.join("a/b/deep")).unwrap(), b"deep");
    assert_eq!(fs::read(next.join("top")).unwrap(), b"top");
    assert_eq!(fs::metadata(next.join("a")).unwrap().mode() & 0o777, 0o500);
    assert!(fs::symlink_metadata(next.join("link")).is_err());
    assert!(fs::symlink_metadata(next.join("fifo")).is_err());
    // Only the store is left: the swap's leftovers are gone.
    let names: Vec<_> = fs::read_dir(tmp.path().join("k"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["store"]);
}

#[test]
fn a_second_save_replaces_the_store_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (scratch, kept) = (tmp.path().join("s"), tmp.path().join("store"));
    fs::create_dir(&scratch).unwrap();
    fs::write(scratch.join("old"), b"1").unwrap();
    save(&scratch, &kept, "t1", ROOMY).unwrap();
    fs::remove_file(scratch.join("old")).unwrap();
    fs::write(scratch.join("new"), b"2").unwrap();
    save(&scratch, &kept, "t2", ROOMY).unwrap();
    assert!(!kept.join("old").exists());
    assert_eq!(fs::read(kept.join("new")).unwrap(), b"2");
}

#[test]
fn a_save_over_budget_keeps_the_previous_store() {
    let tmp = tempfile::tempdir().unwrap();
    let (scratch, kept) = (tmp.path().join("s"), tmp.path().join("store"));
    fs::create_dir(&scratch).unwrap();
    fs::write(scratch.join("f"), b"small").unwrap();
    save(&scratch, &kept, "t1", ROOMY).unwrap();
    // A sparse file: tiny on disk, far past the budget in bytes.
    let big = File::create(scratch.join("sparse")).unwrap();
    big.set_len(10 << 20).unwrap();
    let err = save(&scratch, &kept, "t2", ROOMY).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
    assert!(!kept.join("sparse").exists());
    assert_eq!(fs::read(kept.join("f")).unwrap(), b"small");
    // Too many files fails the same way.
    fs::remove_file(scratch.join("sparse")).unwrap();
    for i in 0..5 {
        fs::write(scratch.join(format!("n{i}")), b"").unwrap();
    }
    let few = Budget {
        bytes: 1 << 20,
        inodes: 3,
    };
    assert_eq!(
        save(&scratch, &kept, "t3", few).unwrap_err().kind(),
        io::ErrorKind::StorageFull
    );
    // And a load that does not fit fails, rather than starting with part of the files.
    let next = tmp.path().join("n");
    fs::create_dir(&next).unwrap();
    let tiny = Budget {
        bytes: 2,
        inodes: 100,
    };
    assert_eq!(
        load(&kept, &next, None, tiny).unwrap_err().kind(),
        io::ErrorKind::StorageFull
    );
}

#[test]
fn exactly_the_budget_fits() {
    let tmp = tempfile::tempdir().unwrap();
    let (scratch, kept) = (tmp.path().join("s"), tmp.path().join("store"));
    fs::create_dir(&scratch).unwrap();
    fs::write(scratch.join("f"), b"12345").unwrap();
    save(
        &scratch,
        &kept,
        "t",
        Budget {
            bytes: 5,
            inodes: 1,
        },
    )
    .unwrap();
    assert_eq!(fs::read(kept.join("f")).unwrap(), b"12345");
}

#[test]
fn a_very_deep_tree_is_cut_at_max_depth() {
    let tmp = tempfile::tempdir().unwrap();
    let (scratch, kept) = (tmp.path().join("s"), tmp.path().join("store"));
    let mut deep = scratch.clone();
    for _ in 0..MAX_DEPTH + 5 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).unwrap();
    let copied = save(&scratch, &kept, "t", ROOMY).unwrap();
    assert_eq!(copied.skipped, 1);
    let mut kept_deep = kept.clone();
    for _ in 0..MAX_DEPTH {
        kept_deep.push("d");
    }
    assert!(kept_deep.is_dir());
    assert!(!kept_deep.join("d").exists());
}

#[test]
fn a_missing_store_loads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let copied = load(&tmp.path().join("none"), tmp.path(), None, ROOMY).unwrap();
    assert_eq!(copied, Copied::default());
}

#[test]
fn sweep_removes_stale_stores_and_cut_short_saves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for name in ["fresh", "stale", "fresh.new-abc"] {
        fs::create_dir(dir.join(name)).unwrap();
        fs::write(dir.join(name).join("f"), b"x").unwrap();
    }
    let old = SystemTime::now() - Duration::from_secs(3600);
    File::open(dir.join("stale"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(sweep(dir, Duration::from_secs(600), false).unwrap(), 1);
    assert!(!dir.join("stale").exists());
    assert!(dir.join("fresh").exists() && dir.join("fresh.new-abc").exists());
    assert_eq!(sweep(dir, Duration::from_secs(600), true).unwrap(), 1);
    assert!(!dir.join("fresh.new-abc").exists());
    assert!(dir.join("fresh").exists());
    // A load is a use: it refreshes the store's age.
    File::open(dir.join("fresh"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let next = tmp.path().join("n");
    fs::create_dir(&next).unwrap();
    load(&dir.join("fresh"), &next, None, ROOMY).unwrap();
    assert_eq!(sweep(dir, Duration::from_secs(600), false).unwrap(), 0);
    assert_eq!(
        sweep(&dir.join("missing"), Duration::ZERO, true).unwrap(),
        0
    );
}
