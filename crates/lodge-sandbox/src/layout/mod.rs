//! The sandbox's filesystem: which host paths the server sees, computed once per server
//! command.
//!
//! Host mode (no `rootfs`): a tmpfs root holding
//! - the system directories read-only: `/usr`, and `/bin`, `/sbin`, `/lib*` (as the host has
//!   them: symlinks into `/usr` on merged-/usr systems, else read-only binds);
//! - `/etc` with only what programs need: loader cache, name-service config, TLS
//!   certificates, time zone, `alternatives`, MIME types, protocols/services, a `resolv.conf`
//!   only with `network = "host"`, and generated `passwd`, `group`, `hosts`, `hostname`;
//! - the server's install directories read-only: the prefix of the program the command
//!   resolves to on Lodge's `PATH` (and of its symlink target and `#!` interpreter) — a
//!   virtualenv whole, else `PREFIX/bin` and `PREFIX/lib*` under a home directory, else the
//!   whole prefix; a pyenv shim is resolved (`pyenv which`) to the real interpreter first;
//! - the directory of every argument that names an existing file (the directory itself
//!   for a directory argument), with its dotfiles (`.env`, `.git`) and Unix sockets
//!   masked (`mask`), and the project root above any `node_modules`;
//! - configured extra binds;
//! - fresh `/proc`, a minimal `/dev`, tmpfs `/tmp` and `/dev/shm`, the scratch dir at
//!   `/session`.
//!
//! Never bound automatically: `/`, `/root`, `/home` or a whole home directory, `/var`,
//! `/etc`, `/run`, `/tmp`, `/boot`, `/mnt`, `/media`, `/srv`, `/opt`, `/proc`, `/sys`,
//! `/dev`. An argument file directly in one of those is bound alone. Paths in `hide`
//! (Lodge's config file) are masked wherever a bind would expose them.
//!
//! Rootfs mode (`rootfs = DIR`): every top-level entry of DIR is bound read-only (so an
//! unpacked container image runs as is), plus the same `/proc`, `/dev`, `/tmp`, `/session`
//! and extra binds; the command is looked up inside DIR.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::SandboxError;
use crate::command::{FALLBACK_PATH, resolve_program};
use crate::options::{NamespacesOptions, Network};
use crate::plan::{Entry, HOSTNAME, INNER_ID, SESSION_DIR};

mod install;
mod mask;

use install::{install_dirs, node_project_root, pyenv_shim_target, shebang_interpreter};

/// Top-level system entries bound (or mirrored as symlinks) in host mode.
const SYSTEM: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// `/etc` entries copied in as read-only binds (or symlinks, as on the host).
const ETC: [&str; 17] = [
    "ld.so.cache",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "localtime",
    "timezone",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "crypto-policies",
    "alternatives",
    "mime.types",
    "protocols",
    "services",
    "os-release",
];
/// Never bound automatically (a whole home directory is never bound either).
const FORBIDDEN: [&str; 19] = [
    "/",
    "/root",
    "/home",
    "/var",
    "/etc",
    "/run",
    "/tmp",
    "/boot",
    "/mnt",
    "/media",
    "/srv",
    "/opt",
    "/proc",
    "/sys",
    "/dev",
    "/usr",
    "/bin",
    "/sbin",
    "/lost+found",
];
/// Paths the sandbox itself provides; binds may not replace them.
const RESERVED: [&str; 4] = ["/proc", "/dev", "/session", "/tmp"];
/// `PATH` inside a rootfs.
const ROOTFS_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The computed filesystem and command for one server command.
#[derive(Debug)]
pub(crate) struct Layout {
    pub entries: Vec<Entry>,
    pub program: PathBuf,
    pub argv: Vec<String>,
    /// `PATH` for the server.
    pub path: String,
    /// Host directories bound in, `(source, destination)`, for masking paths under them.
    pub binds: Vec<(PathBuf, PathBuf)>,
}

/// A bind from the host, before ordering.
#[derive(Clone, Debug)]
struct HostBind {
    src: PathBuf,
    dst: PathBuf,
    rw: bool,
}

pub(crate) fn compute(
    options: &NamespacesOptions,
    command: &[String],
    host_path: &OsStr,
) -> Result<Layout, SandboxError> {
    let (program, args) = command.split_first().ok_or(SandboxError::EmptyCommand)?;
    if program.is_empty() {
        return Err(SandboxError::EmptyCommand);
    }
    match &options.rootfs {
        Some(rootfs) => rootfs_layout(rootfs, options, program, args),
        None => host_layout(options, program, args, host_path),
    }
}

fn host_layout(
    options: &NamespacesOptions,
    program: &str,
    args: &[String],
    host_path: &OsStr,
) -> Result<Layout, SandboxError> {
    let resolved = resolve_program(program, host_path)?;
    let (exec, argv0) = match pyenv_shim_target(&resolved) {
        Some(real) => (real.clone(), real.display().to_string()),
        None => (resolved, program.to_owned()),
    };
    check_executable(program, &exec)?;

    let mut entries = skeleton();
    for name in SYSTEM {
        let host = Path::new("/").join(name);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = fs::read_link(&host) {
                    entries.push(Entry::Symlink { path: host, target });
                }
            }
            Ok(m) if m.is_dir() => entries.push(bind(&host, &host, false, false)),
            _ => {}
        }
    }
    entries.extend(etc_entries(options.network));
    entries.extend(dev_and_tmp());

    let exec = normalize(&exec);
    let mut binds = Vec::new();
    let mut add_at = |src: PathBuf, dst: PathBuf| {
        if !is_visible_system(&dst) {
            binds.push(HostBind {
                src,
                dst,
                rw: false,
            });
        }
    };
    let mut programs = vec![exec.clone()];
    if let Ok(real) = fs::canonicalize(&exec) {
        programs.push(real);
    }
    if let Some(interp) = shebang_interpreter(&exec, host_path) {
        programs.push(interp.clone());
        if let Ok(real) = fs::canonicalize(&interp) {
            programs.push(real);
        }
    }
    for p in &programs {
        for dir in install_dirs(p) {
            add_at(dir.clone(), dir);
        }
        if let Some(root) = node_project_root(p) {
            add_at(root.clone(), root);
        }
    }
    // Paths as the server will open them: `a/../b` needs `a` to exist inside too.
    let mut lexical_dirs = Vec::new();
    // Directories bound because an argument names them or a file in them.
    let mut arg_dirs = Vec::new();
    for arg in std::iter::once(&argv0).chain(args) {
        let raw = Path::new(arg);
        if !raw.is_absolute() {
            continue;
        }
        let Ok(meta) = fs::metadata(raw) else {
            continue;
        };
        lexical_dirs.extend(dirs_before_parent_refs(raw));
        if arg == &argv0 {
            continue; // the program: its install dirs are bound above
        }
        let lexical = normalize(raw);
        let real = fs::canonicalize(raw).unwrap_or_else(|_| lexical.clone());
        if meta.is_dir() {
            if !is_forbidden(&lexical) {
                add_at(real.clone(), lexical.clone());
                arg_dirs.push((real.clone(), lexical.clone()));
            }
        } else {
            match (real.parent(), lexical.parent()) {
                (Some(real_dir), Some(dir)) if !is_forbidden(dir) => {
                    add_at(real_dir.to_path_buf(), dir.to_path_buf());
                    arg_dirs.push((real_dir.to_path_buf(), dir.to_path_buf()));
                }
                _ => add_at(real.clone(), lexical.clone()),
            }
        }
        if let Some(root) = node_project_root(&real) {
            add_at(root.clone(), root);
        }
    }
    let auto = dedupe(binds);
    let user = user_binds(options)?;
    let mut all_binds = auto.clone();
    all_binds.extend(user.iter().cloned());
    push_binds(&mut entries, auto);
    push_binds(&mut entries, user);
    entries.extend(hides(&options.hide, &pairs(&all_binds)));
    let keep: Vec<PathBuf> = all_binds
        .iter()
        .map(|b| b.dst.clone())
        .filter(|d| !arg_dirs.iter().any(|(_, a)| a == d))
        .collect();
    entries.extend(mask::masks(&arg_dirs, &keep));
    for path in lexical_dirs {
        entries.push(Entry::Dir { path, mode: 0o755 });
    }

    let path = inside_path(host_path, &all_binds);
    let mut argv = vec![argv0];
    argv.extend(args.iter().cloned());
    Ok(Layout {
        entries,
        program: exec,
        argv,
        path,
        binds: pairs(&all_binds),
    })
}

fn rootfs_layout(
    rootfs: &Path,
    options: &NamespacesOptions,
    program: &str,
    args: &[String],
) -> Result<Layout, SandboxError> {
    let bad = |why: String| SandboxError::Config {
        message: format!("rootfs {}: {why}", rootfs.display()),
    };
    let rootfs = fs::canonicalize(rootfs).map_err(|e| bad(e.to_string()))?;
    let listing = fs::read_dir(&rootfs).map_err(|e| bad(e.to_string()))?;
    let mut entries = skeleton();
    let mut names: Vec<_> = listing.flatten().collect();
    names.sort_by_key(|e| e.file_name());
    for entry in names {
        let name = entry.file_name();
        let inside = Path::new("/").join(&name);
        if ["proc", "dev", "tmp", "sys", "session"]
            .iter()
            .any(|r| OsStr::new(r) == name)
        {
            continue;
        }
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_symlink() {
            if let Ok(target) = fs::read_link(entry.path()) {
                entries.push(Entry::Symlink {
                    path: inside,
                    target,
                });
            }
        } else if ft.is_dir() {
            entries.push(bind(&entry.path(), &inside, false, false));
        } else if ft.is_file() {
            entries.push(Entry::Bind {
                src: entry.path(),
                dst: inside,
                file: true,
                rw: false,
                dev: false,
            });
        }
    }
    entries.extend(dev_and_tmp());
    let user = user_binds(options)?;
    push_binds(&mut entries, user.clone());
    entries.extend(hides(&options.hide, &pairs(&user)));

    let exec = if program.contains('/') {
        if !program.starts_with('/') {
            return Err(bad(format!(
                "the program `{program}` must be an absolute path inside the rootfs, or a name on its PATH"
            )));
        }
        PathBuf::from(program)
    } else {
        std::env::split_paths(ROOTFS_PATH)
            .map(|dir| dir.join(program))
            .find(|p| fs::symlink_metadata(rootfs.join(p.strip_prefix("/").unwrap_or(p))).is_ok())
            .ok_or_else(|| bad(format!("`{program}` not found on its PATH ({ROOTFS_PATH})")))?
    };
    let mut argv = vec![program.to_owned()];
    argv.extend(args.iter().cloned());
    Ok(Layout {
        entries,
        program: exec,
        argv,
        path: ROOTFS_PATH.to_owned(),
        binds: pairs(&user),
    })
}

/// Directories every sandbox has, before anything is mounted.
fn skeleton() -> Vec<Entry> {
    ["/proc", "/etc", "/session"]
        .iter()
        .map(|p| Entry::Dir {
            path: p.into(),
            mode: 0o755,
        })
        .collect()
}

fn bind(src: &Path, dst: &Path, rw: bool, file: bool) -> Entry {
    Entry::Bind {
        src: src.to_path_buf(),
        dst: dst.to_path_buf(),
        file,
        rw,
        dev: false,
    }
}

fn etc_entries(network: Network) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut names: Vec<&str> = ETC.to_vec();
    if network == Network::Host {
        names.push("resolv.conf");
    }
    for name in names {
        let host = Path::new("/etc").join(name);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = fs::read_link(&host) {
                    entries.push(Entry::Symlink { path: host, target });
                }
            }
            Ok(m) if m.is_dir() => entries.push(bind(&host, &host, false, false)),
            Ok(m) if m.is_file() => entries.push(bind(&host, &host, false, true)),
            _ => {}
        }
    }
    let file = |name: &str, contents: String| Entry::File {
        path: Path::new("/etc").join(name),
        contents,
    };
    let id = INNER_ID;
    entries.push(file(
        "passwd",
        format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n\
             lodge:x:{id}:{id}:Lodge session:{SESSION_DIR}:/usr/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
    ));
    entries.push(file(
        "group",
        format!("root:x:0:\nlodge:x:{id}:\nnogroup:x:65534:\n"),
    ));
    entries.push(file(
        "hosts",
        format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    ));
    entries.push(file("hostname", format!("{HOSTNAME}\n")));
    entries
}

/// `/dev`, `/dev/shm`, `/tmp` and `/session`.
fn dev_and_tmp() -> Vec<Entry> {
    let mut entries = vec![Entry::Tmpfs {
        path: "/dev".into(),
        mode: 0o755,
        size: Some(64 << 10),
    }];
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(dev);
        if host.exists() {
            entries.push(Entry::Bind {
                src: host.clone(),
                dst: host,
                file: true,
                rw: true,
                dev: true,
            });
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        entries.push(Entry::Symlink {
            path: Path::new("/dev").join(name),
            target: target.into(),
        });
    }
    for path in ["/dev/shm", "/tmp"] {
        entries.push(Entry::Tmpfs {
            path: path.into(),
            mode: 0o1777,
            size: None,
        });
    }
    entries.push(Entry::Session);
    entries
}

fn check_executable(program: &str, path: &Path) -> Result<(), SandboxError> {
    let meta = fs::metadata(path).map_err(|source| SandboxError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(SandboxError::Spawn {
            program: program.to_owned(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        });
    }
    Ok(())
}

fn user_binds(options: &NamespacesOptions) -> Result<Vec<HostBind>, SandboxError> {
    options
        .binds
        .iter()
        .map(|b| {
            let bad = |why: &str| SandboxError::Config {
                message: format!("bind {}: {why}", b),
            };
            if !b.src.is_absolute() || !b.dst.is_absolute() {
                return Err(bad("paths must be absolute"));
            }
            let dst = normalize(&b.dst);
            if dst == Path::new("/")
                || RESERVED
                    .iter()
                    .any(|r| dst == Path::new(r) || (*r != "/tmp" && dst.starts_with(r)))
            {
                return Err(bad("the sandbox provides that path itself"));
            }
            if !b.src.exists() {
                return Err(bad("the source does not exist"));
            }
            Ok(HostBind {
                src: normalize(&b.src),
                dst,
                rw: b.writable,
            })
        })
        .collect()
}

/// Drops binds already visible through another bind of the same or wider access.
fn dedupe(mut binds: Vec<HostBind>) -> Vec<HostBind> {
    binds.sort_by(|a, b| a.dst.cmp(&b.dst));
    binds.dedup_by(|a, b| {
        a.dst == b.dst && a.src == b.src && {
            b.rw |= a.rw;
            true
        }
    });
    let all = binds.clone();
    binds
        .into_iter()
        .filter(|b| {
            !all.iter().any(|o| {
                o.dst != b.dst
                    && b.dst.starts_with(&o.dst)
                    && b.src.starts_with(&o.src)
                    && b.src.strip_prefix(&o.src).ok() == b.dst.strip_prefix(&o.dst).ok()
                    && (o.rw || !b.rw)
            })
        })
        .collect()
}

/// Appends binds, parents before children.
fn push_binds(entries: &mut Vec<Entry>, mut binds: Vec<HostBind>) {
    binds.sort_by_key(|b| b.dst.components().count());
    for b in binds {
        let file = !b.src.is_dir();
        entries.push(Entry::Bind {
            src: b.src,
            dst: b.dst,
            file,
            rw: b.rw,
            dev: false,
        });
    }
}

/// Masks for `options.hide` paths a bind would expose.
fn pairs(binds: &[HostBind]) -> Vec<(PathBuf, PathBuf)> {
    binds
        .iter()
        .map(|b| {
            let src = fs::canonicalize(&b.src).unwrap_or_else(|_| b.src.clone());
            (src, b.dst.clone())
        })
        .collect()
}

/// Masks for the `hidden` host paths that `binds` (canonical source, destination) would
/// expose.
pub(crate) fn hides(hidden: &[PathBuf], binds: &[(PathBuf, PathBuf)]) -> Vec<Entry> {
    let mut out = Vec::new();
    for hidden in hidden {
        let hidden = fs::canonicalize(hidden).unwrap_or_else(|_| normalize(hidden));
        for (src, dst) in binds {
            if let Ok(rest) = hidden.strip_prefix(src) {
                let path = if rest.as_os_str().is_empty() {
                    dst.clone()
                } else {
                    dst.join(rest)
                };
                let entry = Entry::Hide {
                    path,
                    file: !hidden.is_dir(),
                };
                if !out.contains(&entry) {
                    out.push(entry);
                }
            }
        }
    }
    out
}

/// Lodge's `PATH`, less the directories the sandbox does not have.
fn inside_path(host_path: &OsStr, binds: &[HostBind]) -> String {
    let kept: Vec<String> = std::env::split_paths(host_path)
        .filter(|d| d.is_absolute())
        .filter(|d| is_visible_system(d) || binds.iter().any(|b| d.starts_with(&b.dst)))
        .filter_map(|d| d.to_str().map(str::to_owned))
        .collect();
    if kept.is_empty() {
        FALLBACK_PATH.to_owned()
    } else {
        kept.join(":")
    }
}

/// Inside a system directory the sandbox always has.
fn is_visible_system(path: &Path) -> bool {
    SYSTEM
        .iter()
        .any(|s| path.starts_with(Path::new("/").join(s)))
}

fn is_forbidden(path: &Path) -> bool {
    FORBIDDEN.iter().any(|f| path == Path::new(f)) || is_home(path)
}

/// `/home/NAME` itself.
fn is_home(path: &Path) -> bool {
    path.parent() == Some(Path::new("/home"))
}

/// Inside `/root` or a `/home/NAME`.
fn in_home(path: &Path) -> bool {
    path.starts_with("/root") || path.starts_with("/home")
}

/// For `/a/b/../c`: `/a/b` (every directory a `..` steps out of, lexically normalized).
fn dirs_before_parent_refs(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.push(cur.clone());
                cur.pop();
            }
            Component::Normal(n) => cur.push(n),
            _ => {}
        }
    }
    out
}

/// Lexically normalized absolute path (`.` and `..` resolved, no symlinks followed).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
