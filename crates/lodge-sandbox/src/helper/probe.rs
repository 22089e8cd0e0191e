//! The helper's `probe` mode: tries each kernel feature the `namespaces` backend uses in
//! a throw-away child of this single-threaded helper and prints the findings as JSON on
//! stdout. Lodge's side ([`crate::probe`]) reads them into the [`Host`](crate::Host)
//! report; the format ([`HelperFindings`]) and the table of namespaces ([`NAMESPACES`])
//! are shared by both sides, so they are defined here once.

use std::collections::BTreeMap;

use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;
use serde::{Deserialize, Serialize};

use crate::{seccomp, sys};

/// What the helper's `probe` mode prints: `None` for a feature that works, else the error.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HelperFindings {
    pub(crate) namespaces: BTreeMap<String, Option<String>>,
    pub(crate) no_new_privs: Option<String>,
    pub(crate) seccomp: Option<String>,
    pub(crate) landlock: Result<i64, String>,
}

pub(crate) const NAMESPACES: [(&str, &str, CloneFlags, bool, &str); 7] = [
    (
        "user",
        "user namespaces",
        CloneFlags::CLONE_NEWUSER,
        true,
        "no sandbox: the server could not run under its own unprivileged uid",
    ),
    (
        "pid",
        "pid namespaces",
        CloneFlags::CLONE_NEWPID,
        true,
        "no sandbox: the server would see and could signal host processes",
    ),
    (
        "mount",
        "mount namespaces",
        CloneFlags::CLONE_NEWNS,
        true,
        "no sandbox: the server would see the host's whole filesystem",
    ),
    (
        "net",
        "network namespaces",
        CloneFlags::CLONE_NEWNET,
        true,
        "no sandbox: network = \"none\" could not be enforced",
    ),
    (
        "ipc",
        "ipc namespaces",
        CloneFlags::CLONE_NEWIPC,
        true,
        "no sandbox: the server would share System V IPC with the host",
    ),
    (
        "uts",
        "uts namespaces",
        CloneFlags::CLONE_NEWUTS,
        true,
        "no sandbox: the server would share the host name",
    ),
    (
        "cgroup",
        "cgroup namespaces",
        CloneFlags::CLONE_NEWCGROUP,
        false,
        "the server can read its cgroup path on the host in /proc/self/cgroup",
    ),
];

/// The helper's `probe` mode: each check in a throw-away child; JSON on stdout.
pub(super) fn probe_main() -> ! {
    let mut findings = HelperFindings {
        namespaces: BTreeMap::new(),
        no_new_privs: None,
        seccomp: None,
        landlock: Err("not probed".into()),
    };
    for (key, _, flag, _, _) in NAMESPACES {
        findings.namespaces.insert(
            key.to_owned(),
            in_child(|| nix::sched::unshare(flag).map_err(|e| e as i32)),
        );
    }
    findings.no_new_privs = in_child(|| nix::sys::prctl::set_no_new_privs().map_err(|e| e as i32));
    findings.seccomp = match seccomp::build() {
        Ok(filters) => in_child(|| {
            seccomp::install(&filters).map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))
        }),
        Err(e) => Some(e),
    };
    findings.landlock = sys::landlock_abi().map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => "not built into this kernel".to_owned(),
        Some(libc::EOPNOTSUPP) => "built in but not enabled at boot (lsm=)".to_owned(),
        _ => e.to_string(),
    });
    match serde_json::to_string(&findings) {
        Ok(json) => {
            println!("{json}");
            std::process::exit(0)
        }
        Err(e) => crate::helper::fail(e),
    }
}

/// Runs `check` in a forked child; `None` if it succeeded, else the errno's description.
fn in_child(check: impl FnOnce() -> Result<(), i32>) -> Option<String> {
    match sys::fork_single_threaded() {
        Ok(ForkResult::Child) => {
            let code = match check() {
                Ok(()) => 0,
                Err(errno) => errno.clamp(1, 255),
            };
            std::process::exit(code)
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => None,
            Ok(WaitStatus::Exited(_, errno)) => {
                Some(std::io::Error::from_raw_os_error(errno).to_string())
            }
            Ok(other) => Some(format!("the check ended oddly: {other:?}")),
            Err(e) => Some(e.to_string()),
        },
        Err(e) => Some(format!("fork: {e}")),
    }
}
