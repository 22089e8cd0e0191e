//! How a server process ended.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::signal::Signal;

/// How the server process ended: an exit code, or the signal that killed it.
/// Both are `None` only if the status could not be determined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitReport {
    /// The exit code, if the process exited normally.
    pub code: Option<i32>,
    /// The signal number, if the process was killed by a signal.
    pub signal: Option<i32>,
    /// The kernel killed a process of the sandbox for exceeding its memory limit
    /// (`namespaces` backend with a `memory` limit).
    pub oom: bool,
    /// The memory limit in force, bytes (set with `oom`).
    pub memory_limit: Option<u64>,
}

impl ExitReport {
    /// A report for a process whose status could not be collected.
    pub(crate) const UNKNOWN: ExitReport = ExitReport {
        code: None,
        signal: None,
        oom: false,
        memory_limit: None,
    };

    /// A report for a process that exited with `code`.
    pub fn exited(code: i32) -> Self {
        ExitReport {
            code: Some(code),
            ..Self::default()
        }
    }

    /// A report for a process killed by `signal`.
    pub fn killed(signal: i32) -> Self {
        ExitReport {
            signal: Some(signal),
            ..Self::default()
        }
    }

    /// Whether the process exited normally with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<ExitStatus> for ExitReport {
    fn from(status: ExitStatus) -> Self {
        ExitReport {
            code: status.code(),
            signal: status.signal(),
            ..ExitReport::default()
        }
    }
}

impl fmt::Display for ExitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.oom {
            let limit = self
                .memory_limit
                .map(|l| format!(" (limit {})", crate::cgroup::format_bytes(l)))
                .unwrap_or_default();
            return match self.code {
                Some(code) => write!(
                    f,
                    "exited with status {code} after running out of memory{limit}"
                ),
                None => write!(f, "was killed: out of memory{limit}"),
            };
        }
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with status {code}"),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(name) => write!(f, "was killed by signal {sig} ({})", name.as_str()),
                Err(_) => write!(f, "was killed by signal {sig}"),
            },
            (None, None) => f.write_str("exited with unknown status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let r = |code, signal| {
            ExitReport {
                code,
                signal,
                ..ExitReport::default()
            }
            .to_string()
        };
        assert_eq!(r(Some(0), None), "exited with status 0");
        assert_eq!(r(Some(3), None), "exited with status 3");
        assert_eq!(r(None, Some(9)), "was killed by signal 9 (SIGKILL)");
        assert_eq!(r(None, Some(15)), "was killed by signal 15 (SIGTERM)");
        assert_eq!(r(None, Some(1000)), "was killed by signal 1000");
        assert_eq!(r(None, None), "exited with unknown status");
        let oom = ExitReport {
            oom: true,
            memory_limit: Some(64 << 20),
            ..ExitReport::killed(9)
        };
        assert_eq!(oom.to_string(), "was killed: out of memory (limit 64MiB)");
        let oom = ExitReport {
            oom: true,
            ..ExitReport::exited(1)
        };
        assert_eq!(
            oom.to_string(),
            "exited with status 1 after running out of memory"
        );
    }

    #[test]
    fn from_status() {
        assert_eq!(
            ExitReport::from(ExitStatus::from_raw(3 << 8)),
            ExitReport::exited(3)
        );
        assert_eq!(
            ExitReport::from(ExitStatus::from_raw(9)),
            ExitReport::killed(9)
        );
    }
}
