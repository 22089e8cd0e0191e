//! Which host directories an installed program needs besides the system ones: its
//! install prefix (a virtualenv whole; under a home directory only `bin` and `lib*`),
//! the project root above `node_modules`, the interpreter of a `#!` script, and the real
//! interpreter behind a pyenv shim.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{in_home, is_forbidden, normalize};
use crate::command::resolve_program;

/// Directories to bind for an installed program at `path`.
pub(super) fn install_dirs(path: &Path) -> Vec<PathBuf> {
    let path = normalize(path);
    let Some(dir) = path.parent() else {
        return Vec::new();
    };
    let in_bin = matches!(
        dir.file_name().and_then(OsStr::to_str),
        Some("bin" | "sbin")
    );
    if !in_bin {
        return if is_forbidden(dir) {
            vec![path.clone()]
        } else {
            vec![dir.to_path_buf()]
        };
    }
    let Some(prefix) = dir.parent() else {
        return Vec::new();
    };
    if prefix.join("pyvenv.cfg").is_file() && !is_forbidden(prefix) {
        return vec![prefix.to_path_buf()];
    }
    if is_forbidden(prefix) || in_home(prefix) {
        // Only the parts of the prefix a program needs, not the rest of a home directory.
        let mut dirs = vec![dir.to_path_buf()];
        if !is_forbidden(prefix) {
            for sub in ["lib", "lib64", "libexec"] {
                let p = prefix.join(sub);
                if p.is_dir() {
                    dirs.push(p);
                }
            }
        }
        return dirs.into_iter().filter(|d| !is_forbidden(d)).collect();
    }
    vec![prefix.to_path_buf()]
}

/// The directory holding the outermost `node_modules` in `path`, if any.
pub(super) fn node_project_root(path: &Path) -> Option<PathBuf> {
    let mut root = PathBuf::new();
    for c in path.components() {
        if c.as_os_str() == "node_modules" {
            return (!is_forbidden(&root)).then_some(root);
        }
        root.push(c);
    }
    None
}

/// The interpreter of a `#!` script (through `/usr/bin/env NAME` too).
pub(super) fn shebang_interpreter(path: &Path, host_path: &OsStr) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    let interp = PathBuf::from(words.next()?);
    if interp.file_name() == Some(OsStr::new("env")) {
        let name = words.find(|w| !w.starts_with('-'))?;
        return resolve_program(name, host_path).ok();
    }
    Some(interp)
}

/// A pyenv shim runs `pyenv exec`, which needs pyenv's whole tree and version files; the
/// sandbox runs the interpreter the shim would pick instead (asked once, via `pyenv which`).
pub(super) fn pyenv_shim_target(path: &Path) -> Option<PathBuf> {
    let shims = path.parent()?;
    if shims.file_name() != Some(OsStr::new("shims")) {
        return None;
    }
    let mut head = [0u8; 512];
    let n = fs::File::open(path).ok()?.read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    if !text.starts_with("#!") || !text.contains("pyenv") {
        return None;
    }
    let root = shims.parent()?;
    let pyenv = root.join("libexec/pyenv");
    let name = path.file_name()?;
    let out = std::process::Command::new(&pyenv)
        .arg("which")
        .arg(name)
        .env("PYENV_ROOT", root)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let real = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && real.is_absolute() && real.is_file()).then_some(real)
}
