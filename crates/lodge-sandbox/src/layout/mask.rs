//! Masks inside the directories bound because the command names a file in them (the
//! server's script directory, usually a project directory).
//!
//! The directory is bound whole so the server finds its sibling modules and data, but it
//! also holds what the server has no business with: dotfiles (`.env`, `.git`, `.npmrc`,
//! `.netrc`) and Unix sockets of host services, which a pathname `connect` reaches even
//! with `network = "none"`. So in each such directory:
//! - every top-level entry whose name starts with `.` is masked (a file by `/dev/null`, a
//!   directory by an empty read-only tmpfs), unless another bind lives at or under it (a
//!   project's `.venv` that holds the interpreter) or a configured bind places it;
//! - every Unix socket is masked (`/dev/null` over it), found by a bounded walk
//!   ([`MAX_ENTRIES`] entries, [`MAX_DEPTH`] levels, no symlinks followed, never
//!   crossing into another file system).
//!
//! The layout is computed once per command, so sockets made later are not seen; Landlock
//! (which cannot restrict pathname sockets) does not help there.

use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::plan::Entry;

/// Entries looked at per directory, at most (a huge tree is masked only in part).
const MAX_ENTRIES: usize = 20_000;
/// Levels below the directory walked for sockets.
const MAX_DEPTH: usize = 6;

/// Masks for the argument directories `dirs` (`(host source, destination)`). `keep`:
/// destinations of the other binds; nothing at or above one is masked (a bind placed
/// inside a mask would vanish under it).
pub(super) fn masks(dirs: &[(PathBuf, PathBuf)], keep: &[PathBuf]) -> Vec<Entry> {
    let mut out = Vec::new();
    for (src, dst) in dirs {
        let Ok(root) = fs::symlink_metadata(src) else {
            continue;
        };
        let mut add = |host: &Path, is_dir: bool| {
            let Ok(rest) = host.strip_prefix(src) else {
                return;
            };
            let path = dst.join(rest);
            let clashes = keep.iter().any(|k| k.starts_with(&path));
            let entry = Entry::Hide {
                path,
                file: !is_dir,
            };
            if !clashes && !out.contains(&entry) {
                out.push(entry);
            }
        };
        let mut queue = VecDeque::from([(src.clone(), 0usize)]);
        let mut seen = 0;
        while let Some((dir, depth)) = queue.pop_front() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                seen += 1;
                if seen > MAX_ENTRIES {
                    tracing::debug!(dir = %src.display(), "stopped looking for sockets to mask");
                    queue.clear();
                    break;
                }
                let Ok(meta) = entry.metadata() else { continue };
                let path = entry.path();
                let dot = depth == 0 && entry.file_name().as_encoded_bytes().starts_with(b".");
                if meta.file_type().is_socket() || dot {
                    add(&path, meta.is_dir());
                } else if meta.is_dir() && depth + 1 < MAX_DEPTH && meta.dev() == root.dev() {
                    queue.push_back((path, depth + 1));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn hidden(entries: &[Entry]) -> Vec<(String, bool)> {
        let mut out: Vec<_> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Hide { path, file } => Some((path.display().to_string(), *file)),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn dotfiles_and_sockets_are_masked_but_not_other_binds() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("project");
        for dir in [".git", ".venv/bin", "pkg/run", "lib"] {
            fs::create_dir_all(src.join(dir)).unwrap();
        }
        for file in ["server.py", ".env", "pkg/mod.py", "pkg/.hidden-but-nested"] {
            fs::write(src.join(file), "x").unwrap();
        }
        let _a = std::os::unix::net::UnixListener::bind(src.join("agent.sock")).unwrap();
        let _b = std::os::unix::net::UnixListener::bind(src.join("pkg/run/d.sock")).unwrap();
        let dst = PathBuf::from("/p");
        // The interpreter's virtualenv is bound on its own at /p/.venv.
        let keep = [PathBuf::from("/"), dst.clone(), dst.join(".venv")];
        let got = hidden(&masks(&[(src, dst)], &keep));
        assert_eq!(
            got,
            [
                ("/p/.env".to_owned(), true),
                ("/p/.git".to_owned(), false),
                ("/p/agent.sock".to_owned(), true),
                ("/p/pkg/run/d.sock".to_owned(), true),
            ]
        );
    }
}
