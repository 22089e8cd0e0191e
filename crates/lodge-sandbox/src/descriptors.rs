//! What one live sandbox costs Lodge in file descriptors, by part, so each backend can say
//! its own total ([`Backend::descriptors_per_session`](crate::Backend::descriptors_per_session))
//! and `lodge serve` can size its open-file limit from the backends it really runs.
//!
//! Counted: what a sandbox holds open in Lodge for as long as it runs. Not counted: what
//! the runtime opens for the session (client connections, its connection to an
//! HTTP-transport server, even though [`TcpConnector`](crate::TcpConnector) makes that
//! one), and descriptors held only for a moment (the pidfd of the sandbox's init while it
//! is terminated, the helper's pipes while it starts), which the caller's reserve covers.

/// Lodge's ends of the server's stdin, stdout and stderr pipes.
pub(crate) const STDIO_PIPES: u64 = 3;
/// The child's process handle: on Linux Tokio waits for a child through a pidfd (where
/// the kernel has none it falls back to SIGCHLD and this is an upper bound).
pub(crate) const PROCESS_HANDLE: u64 = 1;
/// The `namespaces` backend's way into the sandbox's network namespace (a pidfd of its
/// supervisor), kept only for a server reached over TCP in a namespace of its own
/// (`network = "none"`).
pub(crate) const NETNS_HANDLE: u64 = 1;

/// The `namespaces` backend's lock on the sandbox's host uid (`host_ids`), held for as
/// long as the sandbox runs.
pub(crate) const HOST_ID_LOCK: u64 = 1;

/// Every sandbox: its pipes and its process handle.
pub(crate) const BASE: u64 = STDIO_PIPES + PROCESS_HANDLE;
