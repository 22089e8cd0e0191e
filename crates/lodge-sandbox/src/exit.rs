//! How a server process ended.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::signal::Signal;

/// How the server process ended: an exit code, or the signal that killed it.
/// Both are `None` only if the status could not be determined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitReport {
    /// The exit code, if the process exited normally.
    pub code: Option<i32>,
    /// The signal number, if the process was killed by a signal.
    pub signal: Option<i32>,
}

impl ExitReport {
    /// A report for a process whose status could not be collected.
    pub(crate) const UNKNOWN: ExitReport = ExitReport {
        code: None,
        signal: None,
    };

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
        }
    }
}

impl fmt::Display for ExitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        let r = |code, signal| ExitReport { code, signal }.to_string();
        assert_eq!(r(Some(0), None), "exited with status 0");
        assert_eq!(r(Some(3), None), "exited with status 3");
        assert_eq!(r(None, Some(9)), "was killed by signal 9 (SIGKILL)");
        assert_eq!(r(None, Some(15)), "was killed by signal 15 (SIGTERM)");
        assert_eq!(r(None, Some(1000)), "was killed by signal 1000");
        assert_eq!(r(None, None), "exited with unknown status");
    }

    #[test]
    fn from_status() {
        assert_eq!(
            ExitReport::from(ExitStatus::from_raw(3 << 8)),
            ExitReport {
                code: Some(3),
                signal: None
            }
        );
        assert_eq!(
            ExitReport::from(ExitStatus::from_raw(9)),
            ExitReport {
                code: None,
                signal: Some(9)
            }
        );
    }
}
