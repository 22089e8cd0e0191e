//! The open-file budget. Every session holds descriptors in Lodge: what its sandbox holds
//! (the backend says: [`Backend::descriptors_per_session`] — pipes, a process handle, for
//! some a handle on the sandbox's network namespace), its client's connection and, for an
//! HTTP-transport server, the connection to it. The usual soft limit (1024) would stop
//! Lodge at a few hundred sessions with "Too many open files", so `lodge serve` raises it
//! to fit `max_sessions` sessions of the costliest configured server, and where the hard
//! limit is too low, accepts only the sessions that fit: a clear 503 "at its limit"
//! instead of failures in the middle of a spawn or a teardown.

use lodge_runtime::{ServerSpec, Transport};
use lodge_sandbox::Backend;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Listeners, logs, the runtime's own descriptors, connections without a session, and
/// the headroom a session's teardown needs.
const RESERVE: u64 = 1024;
/// Where the kernel caps any process's limit.
const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// The client connection a session is used over.
const CLIENT_CONNECTION: u64 = 1;
/// Lodge's connection to an HTTP-transport server (one per call in flight; one counted).
const SERVER_CONNECTION: u64 = 1;

/// Descriptors one live session of a server may hold: its sandbox's, as `backend` counts
/// them, plus its client connection and, for a server reached over TCP, the connection
/// to it.
pub fn fds_per_session(backend: &dyn Backend, reached_over_tcp: bool) -> u64 {
    let server_connection = if reached_over_tcp {
        SERVER_CONNECTION
    } else {
        0
    };
    backend.descriptors_per_session(reached_over_tcp) + CLIENT_CONNECTION + server_connection
}

/// The most descriptors a session of any of `servers` may hold: the budget is sized for
/// sessions of the costliest one.
pub fn largest_fds_per_session(servers: &[ServerSpec]) -> u64 {
    largest(
        servers
            .iter()
            .map(|s| (&*s.backend, matches!(s.transport, Transport::Http { .. }))),
    )
}

fn largest<'a>(servers: impl IntoIterator<Item = (&'a dyn Backend, bool)>) -> u64 {
    servers
        .into_iter()
        .map(|(backend, tcp)| fds_per_session(backend, tcp))
        .max()
        .unwrap_or(CLIENT_CONNECTION)
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

    /// A backend that only reports a cost.
    struct Costs {
        stdio: u64,
        tcp: u64,
    }

    impl Backend for Costs {
        fn name(&self) -> &'static str {
            "costs"
        }
        fn descriptors_per_session(&self, reached_over_tcp: bool) -> u64 {
            if reached_over_tcp {
                self.tcp
            } else {
                self.stdio
            }
        }
        fn spawn(
            &self,
            _: &lodge_sandbox::SandboxSpec,
        ) -> Result<lodge_sandbox::Sandbox, lodge_sandbox::SandboxError> {
            Err(lodge_sandbox::SandboxError::EmptyCommand)
        }
    }

    #[test]
    fn a_session_costs_its_sandbox_plus_its_connections() {
        let process = lodge_sandbox::ProcessBackend;
        assert_eq!(fds_per_session(&process, false), 5);
        assert_eq!(fds_per_session(&process, true), 6);
        let costly = Costs { stdio: 4, tcp: 5 };
        assert_eq!(fds_per_session(&costly, false), 5);
        assert_eq!(fds_per_session(&costly, true), 7);
    }

    #[test]
    fn the_budget_is_sized_for_the_costliest_server() {
        let cheap = Costs { stdio: 4, tcp: 4 };
        let netns = Costs { stdio: 4, tcp: 5 };
        let odd = Costs { stdio: 9, tcp: 1 };
        assert_eq!(largest([(&cheap as &dyn Backend, false)]), 5);
        assert_eq!(
            largest([(&cheap as &dyn Backend, false), (&netns, false)]),
            5
        );
        assert_eq!(
            largest([(&cheap as &dyn Backend, true), (&netns, false)]),
            6
        );
        assert_eq!(
            largest([(&cheap as &dyn Backend, false), (&netns, true)]),
            7
        );
        // Whatever each backend says for the transport its server uses.
        assert_eq!(largest([(&netns as &dyn Backend, true), (&odd, false)]), 10);
        assert_eq!(largest([(&odd as &dyn Backend, true)]), 3);
    }

    #[test]
    fn budgets_leave_a_reserve() {
        assert_eq!(wanted(1000, 5), 6024);
        assert_eq!(wanted(1000, 7), 8024);
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
