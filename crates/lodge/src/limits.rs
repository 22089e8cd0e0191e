//! The open-file budget. Every session holds descriptors in Lodge: three pipes to its
//! server, two more handles (network namespace, process) with the `namespaces` backend,
//! and its clients' connections. The usual soft limit (1024) would stop Lodge at a few hundred sessions
//! with "Too many open files", so `lodge serve` raises it to fit `max_sessions`.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Descriptors one live session may hold: stdin, stdout, stderr pipes, the sandbox's
/// network namespace and process handles, and one client connection.
pub const FDS_PER_SESSION: u64 = 6;
/// Listeners, logs, the runtime's own descriptors and connections without a session.
const RESERVE: u64 = 1024;
/// Where the kernel caps any process's limit.
const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// What the limit allows after [`fit_open_files`].
#[derive(Debug, PartialEq, Eq)]
pub struct Budget {
    pub limit: u64,
    /// Sessions that fit, at [`FDS_PER_SESSION`] each.
    pub sessions: u64,
}

/// Raises the soft open-file limit (and, if privileged, the hard one) as far as
/// `max_sessions` needs. Returns the budget, or why the limit could not be read.
pub fn fit_open_files(max_sessions: usize) -> nix::Result<Budget> {
    let needed = wanted(max_sessions);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let mut limit = soft;
    if soft < needed {
        // Raising the hard limit needs CAP_SYS_RESOURCE; without it, go as far as it allows.
        let ceiling = std::fs::read_to_string(NR_OPEN)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(hard);
        let target = needed.min(ceiling.max(hard));
        limit = if target > hard && setrlimit(Resource::RLIMIT_NOFILE, target, target).is_ok() {
            target
        } else {
            let target = needed.min(hard);
            setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
            target
        };
    }
    Ok(Budget {
        limit,
        sessions: limit.saturating_sub(RESERVE) / FDS_PER_SESSION,
    })
}

fn wanted(max_sessions: usize) -> u64 {
    (max_sessions as u64)
        .saturating_mul(FDS_PER_SESSION)
        .saturating_add(RESERVE)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_sessions_need_about_seven_thousand_descriptors() {
        assert_eq!(wanted(1000), 7024);
        assert_eq!(wanted(usize::MAX), u64::MAX);
    }

    #[test]
    fn the_limit_is_raised_to_fit_and_never_lowered() {
        let (soft_before, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let budget = fit_open_files(1).unwrap();
        assert!(budget.limit >= soft_before.min(wanted(1)));
        let (soft_after, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft_after, soft_before.max(budget.limit));
    }
}
