//! Checking a spec's command and environment before anything is started. Backend-agnostic:
//! programs are always resolved on Lodge's own `PATH`, whatever the sandbox looks like.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::SandboxError;

/// `PATH` used when Lodge's own is unset or empty.
pub(crate) const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Lodge's own `PATH` (or [`FALLBACK_PATH`]).
pub(crate) fn host_path() -> OsString {
    std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| FALLBACK_PATH.into())
}

/// Resolve a program to an absolute path.
///
/// With a `/` in it, the program is a path (made absolute against Lodge's cwd) and must
/// exist; whether it is executable is left to the spawn, which reports a precise error.
/// Otherwise it is looked up in `search_path`'s directories (empty entries skipped,
/// relative ones taken against Lodge's cwd): the first executable regular file wins.
pub(crate) fn resolve_program(program: &str, search_path: &OsStr) -> Result<PathBuf, SandboxError> {
    let not_found = || SandboxError::CommandNotFound {
        program: program.to_owned(),
    };
    if program.is_empty() {
        return Err(SandboxError::EmptyCommand);
    }
    if program.contains('/') {
        let path = std::path::absolute(program).map_err(|_| not_found())?;
        return if path.exists() {
            Ok(path)
        } else {
            Err(not_found())
        };
    }
    std::env::split_paths(search_path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .filter_map(|dir| std::path::absolute(dir.join(program)).ok())
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(not_found)
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Every configured variable must be passable to `execve`.
pub(crate) fn validate_env(env: &BTreeMap<String, String>) -> Result<(), SandboxError> {
    match env
        .iter()
        .find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
    {
        Some((name, _)) => Err(SandboxError::InvalidEnv { name: name.clone() }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::fs;

    #[test]
    fn searches_path_in_order_and_skips_non_executables() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("tool"), "").unwrap(); // not executable
        fs::create_dir(a.join("dir")).unwrap(); // not a file
        for dir in [&a, &b] {
            fs::write(dir.join("exe"), "").unwrap();
            fs::set_permissions(dir.join("exe"), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(b.join("tool"), "").unwrap();
        fs::set_permissions(b.join("tool"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(b.join("dir"), "").unwrap();
        fs::set_permissions(b.join("dir"), fs::Permissions::from_mode(0o700)).unwrap();
        let path = std::env::join_paths(["", a.to_str().unwrap(), b.to_str().unwrap()]).unwrap();

        assert_eq!(resolve_program("exe", &path).unwrap(), a.join("exe"));
        assert_eq!(resolve_program("tool", &path).unwrap(), b.join("tool"));
        assert_eq!(resolve_program("dir", &path).unwrap(), b.join("dir"));
        let err = resolve_program("nope", &path).unwrap_err();
        assert_eq!(err.to_string(), "command `nope` not found on PATH");
        assert!(matches!(
            resolve_program("", &path),
            Err(SandboxError::EmptyCommand)
        ));
    }

    #[test]
    fn paths_are_made_absolute() {
        let sh = resolve_program("/bin/sh", OsStr::new("")).unwrap();
        assert_eq!(sh, Path::new("/bin/sh"));
        // Relative to Lodge's cwd (the crate dir under `cargo test`).
        let rel = resolve_program("./Cargo.toml", OsStr::new("")).unwrap();
        assert!(rel.is_absolute() && rel.ends_with("Cargo.toml"), "{rel:?}");
        let err = resolve_program("./no/such/thing", OsStr::new("")).unwrap_err();
        assert!(matches!(err, SandboxError::CommandNotFound { .. }));
        assert!(err.to_string().contains("`./no/such/thing`"));
    }

    #[test]
    fn env_names() {
        let ok: BTreeMap<_, _> = [("A_B".to_owned(), "x=y".to_owned())].into();
        assert!(validate_env(&ok).is_ok());
        for (k, v) in [("", "x"), ("A=B", "x"), ("A\0", "x"), ("A", "x\0")] {
            let env: BTreeMap<_, _> = [(k.to_owned(), v.to_owned())].into();
            assert!(
                matches!(validate_env(&env), Err(SandboxError::InvalidEnv { .. })),
                "{k:?}"
            );
        }
    }
}
