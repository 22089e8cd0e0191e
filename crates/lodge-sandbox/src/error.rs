//! Errors from starting a sandbox.

use std::io;
use std::path::PathBuf;

/// Why a sandbox could not be started. Messages are meant for the person who configured
/// the server: they name the program or path and include the OS error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The configured command is empty.
    #[error("no command configured: the server command is empty")]
    EmptyCommand,

    /// The program does not exist (or is not an executable file).
    #[error("command `{program}` not found{}", not_found_where(.program))]
    CommandNotFound {
        /// The program as configured.
        program: String,
    },

    /// A configured environment variable cannot be passed to a process.
    #[error(
        "invalid environment variable `{name}`: names must be non-empty and contain no `=` or NUL, values no NUL"
    )]
    InvalidEnv {
        /// The variable's name.
        name: String,
    },

    /// The scratch directory (or its root) could not be created or is unsafe to use.
    #[error("cannot set up scratch directory {}: {source}", .path.display())]
    Scratch {
        /// The directory that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// No host uid could be allocated for the sandbox (all in use, or the lock directory
    /// cannot be used).
    #[error("cannot allocate a host uid for the sandbox: {source}")]
    HostIds {
        /// The underlying error.
        source: io::Error,
    },

    /// The backend cannot run on this host.
    #[error("the namespaces sandbox is not available on this host: {why}")]
    Unsupported {
        /// What is missing.
        why: String,
    },

    /// The session's resource limits could not be set up.
    #[error("cannot apply the sandbox's resource limits: {source}")]
    Limits {
        /// What failed, and whether the host or the configuration is to blame.
        source: LimitsError,
    },

    /// The sandbox configuration cannot be used (a bind, the rootfs, …).
    #[error("invalid sandbox configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },

    /// The OS refused to start the program.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program as configured.
        program: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Why a sandbox's cgroup limits could not be set up: the configuration (a limit this
/// host cannot enforce, a value out of range) or the kernel refusing a cgroup operation,
/// with the errno that says whether the host ran out of something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    /// A configured limit needs a cgroup controller Lodge cannot use here.
    #[error("the {controller} cgroup controller is unavailable: {why}")]
    ControllerUnavailable {
        /// `memory`, `cpu` or `pids`.
        controller: &'static str,
        /// Why it is unavailable.
        why: String,
    },

    /// `cpus` is not a positive number.
    #[error("cpus must be a positive number, not {0}")]
    InvalidCpus(f64),

    /// The kernel refused to make the session's cgroup or to write a limit into it.
    #[error("cannot {action} {}: {source}", .path.display())]
    Cgroup {
        /// `create`, or `write VALUE to`.
        action: String,
        /// The cgroup directory or file.
        path: PathBuf,
        /// The kernel's answer.
        source: io::Error,
    },
}

impl LimitsError {
    /// Whether the host is out of cgroups, processes, descriptors or memory, rather than
    /// the configuration being wrong: the pids controller and cgroup creation answer
    /// EAGAIN at `pids.max` or `cgroup.max.descendants`, v1 memory cgroups ENOSPC when
    /// their ids run out; EMFILE/ENFILE and ENOMEM need no explanation. A limit the host
    /// cannot enforce, or a value it rejects (EINVAL, EBUSY), stays a configuration error.
    pub fn is_host_exhausted(&self) -> bool {
        match self {
            LimitsError::Cgroup { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::EAGAIN | libc::ENOSPC | libc::EMFILE | libc::ENFILE | libc::ENOMEM)
            ),
            LimitsError::ControllerUnavailable { .. } | LimitsError::InvalidCpus(_) => false,
        }
    }
}

impl SandboxError {
    /// Whether the host, not the configuration, refused: out of open files, processes,
    /// cgroups or memory. Worth retrying later; the server itself is fine.
    pub fn is_host_exhausted(&self) -> bool {
        let source = match self {
            SandboxError::Spawn { source, .. } | SandboxError::Scratch { source, .. } => source,
            SandboxError::Limits { source } => return source.is_host_exhausted(),
            SandboxError::HostIds { source } if source.kind() == io::ErrorKind::ResourceBusy => {
                return true;
            }
            SandboxError::HostIds { source } => source,
            _ => return false,
        };
        matches!(
            source.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
        )
    }
}

fn not_found_where(program: &str) -> &'static str {
    if program.contains('/') {
        " (no such executable file)"
    } else {
        " on PATH"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_program() {
        let e = SandboxError::CommandNotFound {
            program: "foo".into(),
        };
        assert_eq!(e.to_string(), "command `foo` not found on PATH");
        let e = SandboxError::CommandNotFound {
            program: "./bin/foo".into(),
        };
        assert_eq!(
            e.to_string(),
            "command `./bin/foo` not found (no such executable file)"
        );
        let e = SandboxError::Spawn {
            program: "foo".into(),
            source: io::Error::from_raw_os_error(13),
        };
        assert!(
            e.to_string()
                .starts_with("cannot start `foo`: Permission denied")
        );
        assert!(!e.is_host_exhausted());
    }

    #[test]
    fn running_out_of_descriptors_is_the_host_not_the_server() {
        let e = SandboxError::Spawn {
            program: "foo".into(),
            source: io::Error::from_raw_os_error(libc::EMFILE),
        };
        assert!(e.is_host_exhausted());
        assert!(!SandboxError::EmptyCommand.is_host_exhausted());
    }

    fn cgroup_error(errno: i32) -> LimitsError {
        LimitsError::Cgroup {
            action: "create".into(),
            path: "/sys/fs/cgroup/pids/lodge/ab".into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn cgroup_errors_from_an_exhausted_host_are_the_host() {
        let exhausted = [
            libc::EAGAIN,
            libc::ENOSPC,
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
        ];
        let not = [
            libc::EINVAL,
            libc::EBUSY,
            libc::EACCES,
            libc::EPERM,
            libc::EROFS,
            libc::ENOENT,
            libc::EEXIST,
        ];
        for errno in exhausted {
            assert!(cgroup_error(errno).is_host_exhausted(), "errno {errno}");
            let e = SandboxError::Limits {
                source: cgroup_error(errno),
            };
            assert!(e.is_host_exhausted(), "errno {errno}");
        }
        for errno in not {
            assert!(!cgroup_error(errno).is_host_exhausted(), "errno {errno}");
            let e = SandboxError::Limits {
                source: cgroup_error(errno),
            };
            assert!(!e.is_host_exhausted(), "errno {errno}");
        }
    }

    #[test]
    fn limits_the_host_cannot_enforce_are_the_configuration() {
        let unavailable = LimitsError::ControllerUnavailable {
            controller: "pids",
            why: "no cgroup hierarchy is mounted".into(),
        };
        assert_eq!(
            unavailable.to_string(),
            "the pids cgroup controller is unavailable: no cgroup hierarchy is mounted"
        );
        assert!(!unavailable.is_host_exhausted());
        let e = SandboxError::Limits {
            source: LimitsError::InvalidCpus(-1.0),
        };
        assert_eq!(
            e.to_string(),
            "cannot apply the sandbox's resource limits: cpus must be a positive number, not -1"
        );
        assert!(!e.is_host_exhausted());
        assert!(
            !SandboxError::Limits {
                source: unavailable
            }
            .is_host_exhausted()
        );
    }

    #[test]
    fn cgroup_errors_name_the_operation_and_the_path() {
        let e = LimitsError::Cgroup {
            action: "write 258 to".into(),
            path: "/sys/fs/cgroup/pids/lodge/ab/pids.max".into(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        assert_eq!(
            e.to_string(),
            "cannot write 258 to /sys/fs/cgroup/pids/lodge/ab/pids.max: Invalid argument (os error 22)"
        );
        assert_eq!(
            cgroup_error(libc::EAGAIN).to_string(),
            "cannot create /sys/fs/cgroup/pids/lodge/ab: Resource temporarily unavailable (os error 11)"
        );
    }
}
