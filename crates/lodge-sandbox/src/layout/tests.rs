//! The layout rules on paths alone (no filesystem needed beyond temp dirs).
#![allow(clippy::unwrap_used)]

use super::*;

fn b(src: &str, rw: bool) -> HostBind {
    HostBind {
        src: src.into(),
        dst: src.into(),
        rw,
    }
}

#[test]
fn install_dirs_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    fs::create_dir_all(venv.join("bin")).unwrap();
    fs::write(venv.join("pyvenv.cfg"), "").unwrap();
    assert_eq!(install_dirs(&venv.join("bin/python")), vec![venv.clone()]);
    let opt = tmp.path().join("opt/tool");
    assert_eq!(install_dirs(&opt.join("bin/tool")), vec![opt.clone()]);
    assert_eq!(
        install_dirs(Path::new("/root/.cargo/bin/x")),
        vec![PathBuf::from("/root/.cargo/bin")]
    );
    assert_eq!(
        install_dirs(Path::new("/root/tool")),
        vec![PathBuf::from("/root/tool")]
    );
    assert_eq!(
        install_dirs(Path::new("/work/target/debug/lodge")),
        vec![PathBuf::from("/work/target/debug")]
    );
    assert!(
        install_dirs(Path::new("/bin/sh"))
            .iter()
            .all(|d| d != Path::new("/"))
    );
}

#[test]
fn node_roots() {
    assert_eq!(
        node_project_root(Path::new("/w/app/node_modules/@s/x/dist/index.js")),
        Some(PathBuf::from("/w/app"))
    );
    assert_eq!(node_project_root(Path::new("/w/app/index.js")), None);
    assert_eq!(node_project_root(Path::new("/home/u/node_modules/x")), None);
}

#[test]
fn dedupe_keeps_outermost() {
    let out = dedupe(vec![
        b("/a/b", false),
        b("/a", false),
        b("/c", false),
        b("/a", false),
    ]);
    let dsts: Vec<_> = out.iter().map(|b| b.dst.clone()).collect();
    assert_eq!(dsts, [PathBuf::from("/a"), PathBuf::from("/c")]);
    // A writable child of a read-only parent stays.
    let out = dedupe(vec![b("/a/b", true), b("/a", false)]);
    assert_eq!(out.len(), 2);
}

#[test]
fn forbidden() {
    for p in ["/", "/root", "/home", "/home/alice", "/etc", "/tmp"] {
        assert!(is_forbidden(Path::new(p)), "{p}");
    }
    for p in ["/root/project", "/home/alice/app", "/tmp/x", "/work"] {
        assert!(!is_forbidden(Path::new(p)), "{p}");
    }
    assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    assert_eq!(
        dirs_before_parent_refs(Path::new("/w/crates/lodge/../../t/s.py")),
        [PathBuf::from("/w/crates/lodge"), PathBuf::from("/w/crates")]
    );
}
