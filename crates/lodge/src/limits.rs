//! The open-file budget. Every session holds descriptors in Lodge: three pipes to its
//! server, a handle on its process, its clients' connections and, for an HTTP-transport
//! server, the connection to it and (`namespaces`) a handle on its network namespace. The usual soft limit (1024) would stop Lodge at a few
//! hundred sessions with "Too many open files", so `lodge serve` raises it to fit
//! `max_sessions`, and where the hard limit is too low, accepts only the sessions that
//! fit: a clear 503 "at its limit" instead of failures in the middle of a spawn or a
//! teardown.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Listeners, logs, the runtime's own descriptors, connections without a session, and
/// the headroom a session's teardown needs.
const RESERVE: u64 = 1024;
/// Where the kernel caps any process's limit.
const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// Descriptors one live session may hold: stdin, stdout and stderr pipes, the process
/// handle (a pidfd) and one client connection; with `http_servers`, also the connection
/// to the server and a handle on its network namespace.
pub fn fds_per_session(http_servers: bool) -> u64 {
    if http_servers { 7 } else { 5 }
}

/// What the limit allows after [`fit_open_files`].
#[derive(Debug, PartialEq, Eq)]
pub struct Budget {
    pub limit: u64,
    /// Sessions that fit.
    pub sessions: u64,
}

/// Raises the soft open-file limit (and, if privileged, the hard one) as far as
/// `max_sessions` sessions of `per_session` descriptors need. Returns the budget, or
/// why the limit could not be read or set.
pub fn fit_open_files(max_sessions: usize, per_session: u64) -> nix::Result<Budget> {
    let needed = wanted(max_sessions, per_session);
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
        sessions: sessions_within(limit, per_session),
    })
}

fn wanted(max_sessions: usize, per_session: u64) -> u64 {
    (max_sessions as u64)
        .saturating_mul(per_session)
        .saturating_add(RESERVE)
}

fn sessions_within(limit: u64, per_session: u64) -> u64 {
    limit.saturating_sub(RESERVE) / per_session.max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn budgets_leave_a_reserve_and_count_http_servers() {
        assert_eq!(wanted(1000, fds_per_session(false)), 6024);
        assert_eq!(wanted(1000, fds_per_session(true)), 8024);
        assert_eq!(wanted(usize::MAX, 6), u64::MAX);
        assert_eq!(sessions_within(20_000, 5), 3795);
        assert_eq!(sessions_within(1000, 5), 0);
    }

    #[test]
    fn the_limit_is_raised_to_fit_and_never_lowered() {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        if hard < wanted(100, 4) {
            return; // this host cannot show a raise
        }
        // Start low, as under the usual default soft limit, then ask for 100 sessions.
        setrlimit(Resource::RLIMIT_NOFILE, 512, hard).unwrap();
        let budget = fit_open_files(100, 4).unwrap();
        let (raised, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(budget.limit, wanted(100, 4));
        assert_eq!(raised, budget.limit);
        assert_eq!(budget.sessions, 100);
        // Already enough: left as it is.
        assert_eq!(fit_open_files(1, 4).unwrap().limit, raised);
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    }
}
