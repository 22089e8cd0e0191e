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

    /// The backend cannot run on this host.
    #[error("the namespaces sandbox is not available on this host: {why}")]
    Unsupported {
        /// What is missing.
        why: String,
    },

    /// The session's resource limits could not be set up.
    #[error("cannot apply the sandbox's resource limits: {why}")]
    Limits {
        /// What failed.
        why: String,
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

impl SandboxError {
    /// Whether the host, not the configuration, refused: out of open files, processes or
    /// memory. Worth retrying later; the server itself is fine.
    pub fn is_host_exhausted(&self) -> bool {
        let source = match self {
            SandboxError::Spawn { source, .. } | SandboxError::Scratch { source, .. } => source,
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
}
